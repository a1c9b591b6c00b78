//! `rserpool pu`'s terminal: a session with a pool driven by standard
//! input (the counterpart of the reference implementation's rspterminal).
//!
//! Each input line is one message, sent with resend on failover; each
//! message that comes back answers the oldest line still unanswered,
//! which is then released. So after a failover the new PE gets the newest
//! cookie and then, in order, the lines the old PE had not answered: a
//! service that answers each line once (echo, daytime, pingpong, calcapp)
//! prints every answer once and in order across PE failures.

use crate::metrics::{Endpoint, TerminalMetrics};
use crate::node::config_error;
use crate::node::output;
use crate::node::transport::{self, NodePlace};
use crate::pu::Plan;
use rserpool::SendOptions;
use rserpool::pu::{Session, SessionEvent};
use rserpool_net::transport::select::BackendKind;
use std::collections::VecDeque;
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Runs the terminal until the input ends and the answers are in.
pub async fn run(plan: Plan, kind: BackendKind, endpoint: Option<Endpoint>) -> ExitCode {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = TerminalMetrics::register(&mut registry);
    if let Err(e) = crate::metrics::serve(endpoint, registry, crate::metrics::no_refresh) {
        return config_error(e);
    }
    let place = NodePlace {
        registrars: &plan.config.hunt.registrars,
        announce: plan.announce,
        local: &plan.local,
        seed: plan.seed,
    };
    // A pool user only connects out: an ephemeral UDP port lets it share
    // an IP with a registrar or PE.
    let options = match transport::options(&plan.transport, kind, 0, place) {
        Ok(o) => o,
        Err(e) => return config_error(e),
    };
    let mut session = match Session::with_config(plan.pool.clone(), plan.config.clone())
        .options(options)
        .connect()
        .await
    {
        Ok(s) => s,
        Err(e) => return config_error(e),
    };
    let searching = crate::node::hunt_description(&plan.config.hunt.registrars, plan.announce);
    let resend = SendOptions {
        resend: true,
        ..SendOptions::default()
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Sequence numbers of the lines without an answer, and since when the
    // oldest has waited at the PE now serving.
    let mut unanswered: VecDeque<u64> = VecDeque::new();
    let mut waiting_since: Option<tokio::time::Instant> = None;
    let mut input_open = true;
    let mut connected = false;
    // Since when the session has been without a PE after a failover.
    let mut failing_over: Option<std::time::Instant> = None;
    let started = tokio::time::Instant::now();
    let mut next_word = started + std::time::Duration::from_secs(1);
    let mut deadline = None;
    let code = loop {
        if !input_open && unanswered.is_empty() {
            break ExitCode::SUCCESS;
        }
        tokio::select! {
            line = lines.next_line(), if input_open => match line {
                Ok(Some(line)) => match session.send_with(rserpool::pe::DEFAULT_PPID, line, resend).await {
                    Ok(seq) => {
                        metrics.lines_sent.inc();
                        unanswered.push_back(seq);
                        waiting_since.get_or_insert_with(tokio::time::Instant::now);
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        break ExitCode::FAILURE;
                    }
                },
                Ok(None) | Err(_) => {
                    input_open = false;
                    deadline = Some(tokio::time::Instant::now() + plan.reply_timeout);
                }
            },
            event = session.next() => match event {
                Some(SessionEvent::Data { data, .. }) => {
                    let text = String::from_utf8_lossy(&data);
                    if !output::line(text.trim_end_matches('\n')) {
                        break ExitCode::SUCCESS;
                    }
                    if let Some(seq) = unanswered.pop_front() {
                        metrics.lines_answered.inc();
                        let _ = session.release(seq).await;
                    }
                    waiting_since = (!unanswered.is_empty()).then(tokio::time::Instant::now);
                    if !input_open {
                        deadline = Some(tokio::time::Instant::now() + plan.reply_timeout);
                    }
                }
                Some(SessionEvent::Connected { pe_id, .. }) => {
                    if !connected {
                        tracing::info!("connected to PE {pe_id} of pool {}", plan.pool);
                    }
                    connected = true;
                    metrics.connected.set(1);
                    if let Some(t) = failing_over.take() {
                        metrics.failover_duration.observe(t.elapsed().as_secs_f64());
                    }
                }
                Some(SessionEvent::Failover { from, to, reason, .. }) => {
                    eprintln!("failover: PE {from} -> PE {to} ({reason})");
                    metrics.failover(&reason);
                    metrics.connected.set(0);
                    // A PE chosen next that fails too prolongs the same outage.
                    failing_over.get_or_insert_with(std::time::Instant::now);
                    // The next PE gets the unanswered lines again; its clock starts now.
                    waiting_since = (!unanswered.is_empty()).then(tokio::time::Instant::now);
                }
                Some(SessionEvent::Unavailable { reason, retry_in }) => {
                    metrics.unavailable.inc();
                    metrics.connected.set(0);
                    eprintln!(
                        "no pool element of {} available ({}); trying again in {} ms",
                        plan.pool,
                        crate::pu::failure_text(&reason),
                        retry_in.as_millis()
                    );
                }
                None => {
                    eprintln!("error: the session stopped");
                    break ExitCode::FAILURE;
                }
            },
            () = tokio::time::sleep_until(next_word), if !connected => {
                tracing::warn!(
                    "not connected yet after {:.0} s: {searching}",
                    started.elapsed().as_secs_f64()
                );
                next_word += std::time::Duration::from_secs(5);
            }
            () = sleep_until(answer_due(waiting_since, plan.answer_timeout)) => {
                tracing::info!("no answer within the answer timeout; giving up the PE");
                waiting_since = None;
                if session.fail_over().await.is_err() {
                    eprintln!("error: the session stopped");
                    break ExitCode::FAILURE;
                }
            }
            () = sleep_until(deadline) => {
                tracing::info!(
                    "{} line(s) without an answer after {} ms; closing",
                    unanswered.len(),
                    plan.reply_timeout.as_millis()
                );
                break ExitCode::SUCCESS;
            }
        }
    };
    session.close().await;
    code
}

/// When the oldest unanswered line has waited too long, if a limit is set.
fn answer_due(
    since: Option<tokio::time::Instant>,
    limit: Option<std::time::Duration>,
) -> Option<tokio::time::Instant> {
    Some(since? + limit?)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
