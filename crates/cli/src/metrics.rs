//! `--metrics ADDR`: Prometheus metrics at `http://ADDR/metrics`.
//!
//! A scrape is one small GET, so a few dozen lines of HTTP/1.1 on a tokio
//! listener serve it; a web framework would outweigh the rest of the
//! feature. Each connection answers one request and closes.
//!
//! The page is the OpenMetrics text of a [`Registry`]. The PE and the pool
//! user count their events into ordinary metrics as they happen
//! ([`PeMetrics`], [`ResolveMetrics`], [`TerminalMetrics`]); the registrar
//! keeps its own counters, read on each scrape (`registrar::metrics`).

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The media type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Longest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request, and to take the answer:
/// a stalled client must not hold a connection slot for ever.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// The metrics listener, bound at start-up (so that a bad address or a
/// port in use stops the node before it joins anything) but not serving yet.
#[derive(Debug)]
pub struct Endpoint {
    listener: std::net::TcpListener,
    addr: String,
}

/// Binds `--metrics ADDR` (IP:PORT) if given. The error is the whole
/// start-up message: `cannot serve metrics on ADDR: reason`.
pub fn bind(addr: Option<&str>) -> Result<Option<Endpoint>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let fail = |reason: &dyn std::fmt::Display| format!("cannot serve metrics on {addr}: {reason}");
    let at: SocketAddr = addr
        .trim()
        .parse()
        .map_err(|_| fail(&"not an IP:PORT address (for example 127.0.0.1:9464)"))?;
    let listener = std::net::TcpListener::bind(at).map_err(|e| fail(&e))?;
    listener.set_nonblocking(true).map_err(|e| fail(&e))?;
    Ok(Some(Endpoint {
        listener,
        addr: addr.to_string(),
    }))
}

impl Endpoint {
    /// Starts answering scrapes in a task of its own: each `GET /metrics`
    /// awaits `refresh` and then encodes `registry`. The task ends with the
    /// runtime. Must run inside the runtime.
    pub fn serve<F, Fut>(self, registry: Registry, refresh: F) -> Result<(), String>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .map_err(|e| format!("cannot serve metrics on {}: {e}", self.addr))?;
        tracing::info!("serving metrics at http://{}/metrics", self.addr);
        let page = Arc::new(Page { registry, refresh });
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let page = page.clone();
                        tokio::spawn(async move {
                            answer(stream, &page).await;
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: let some
                        // connections end instead of spinning on the error.
                        tracing::warn!("metrics: cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(())
    }
}

/// Starts `endpoint` if there is one; see [`Endpoint::serve`].
pub fn serve<F, Fut>(
    endpoint: Option<Endpoint>,
    registry: Registry,
    refresh: F,
) -> Result<(), String>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match endpoint {
        Some(e) => e.serve(registry, refresh),
        None => Ok(()),
    }
}

/// A refresh for pages whose metrics are always up to date.
pub fn no_refresh() -> std::future::Ready<()> {
    std::future::ready(())
}

struct Page<F> {
    registry: Registry,
    refresh: F,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (or HEAD).
    Metrics,
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP/1 request line.
    BadRequest,
}

/// Reads the request line of a request head.
fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    if method != "GET" && method != "HEAD" {
        return Route::MethodNotAllowed;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// Where the request head ends (after its blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads the request head; `None` if the client went away or took too long.
/// A head over [`MAX_HEAD`] is returned cut, and answered as a bad request.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = head_end(&buf) {
                buf.truncate(end);
                return Some(());
            }
            if buf.len() > MAX_HEAD {
                buf.clear();
                return Some(());
            }
        }
    };
    tokio::time::timeout(IO_TIMEOUT, read).await.ok()??;
    Some(buf)
}

async fn answer<F, Fut>(mut stream: TcpStream, page: &Page<F>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body) = match route(&head) {
        Route::Metrics => {
            (page.refresh)().await;
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, &page.registry) {
                Ok(()) => ("200 OK", CONTENT_TYPE, text),
                Err(_) => (
                    "500 Internal Server Error",
                    TEXT,
                    "cannot encode the metrics\n".to_string(),
                ),
            }
        }
        Route::NotFound => (
            "404 Not Found",
            TEXT,
            "not found: the metrics are at /metrics\n".to_string(),
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            TEXT,
            "only GET and HEAD\n".to_string(),
        ),
        Route::BadRequest => ("400 Bad Request", TEXT, "bad request\n".to_string()),
    };
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    // A HEAD answer has the headers of the GET answer, without the body.
    if !head.starts_with(b"HEAD ") {
        response.extend_from_slice(body.as_bytes());
    }
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await?;
        // Closing with unread bytes from the client would reset the
        // connection and could destroy the answer in flight: read what it
        // still sends until it closes too.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(IO_TIMEOUT, write).await;
}

/// Latency buckets in seconds: 1 ms doubling to about 33 s, wide enough for
/// a cached resolution and for a failover that waits out SCTP's timers.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

/// One label, `name="value"`, as metric families here carry.
pub type Label = [(&'static str, &'static str); 1];

// Helpers for collectors that report values kept elsewhere (the registrar's
// counters): a constant metric per scrape. Their help gets the full stop
// that `Registry::register` adds to the help of the metrics it holds, so
// that every page reads alike.

/// A gauge with no labels.
pub fn const_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, &format!("{help}."), None, gauge.metric_type())?)
}

/// A counter with no labels; `name` without `_total`, which the encoder adds.
pub fn const_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(
        name,
        &format!("{help}."),
        None,
        counter.metric_type(),
    )?)
}

/// A gauge family with one label.
pub fn const_gauge_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, i64)>,
) -> std::fmt::Result {
    const_family(
        encoder,
        name,
        help,
        label,
        prometheus_client::metrics::MetricType::Gauge,
        values.into_iter().map(|(l, v)| (l, ConstGauge::new(v))),
    )
}

/// A counter family with one label; `name` without `_total`.
pub fn const_counter_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    const_family(
        encoder,
        name,
        help,
        label,
        prometheus_client::metrics::MetricType::Counter,
        values.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
    )
}

fn const_family<'a, M: prometheus_client::encoding::EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    kind: prometheus_client::metrics::MetricType,
    values: impl IntoIterator<Item = (&'a str, M)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, &format!("{help}."), None, kind)?;
    for (value_label, metric) in values {
        let labels = [(label, value_label)];
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// What `rserpool pe` counts.
#[derive(Debug, Clone, Default)]
pub struct PeMetrics {
    /// 1 while a registrar holds the registration.
    pub registered: Gauge,
    /// Registrations accepted by a new home.
    pub registrations: Counter,
    /// Homes lost.
    pub homes_lost: Counter,
    /// Sessions opened by pool users and served.
    pub sessions_opened: Counter,
    /// Served sessions that ended.
    pub sessions_closed: Counter,
    /// Sessions refused (no `--service`).
    pub sessions_refused: Counter,
}

impl PeMetrics {
    /// The metrics, registered in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        r.register(
            "rserpool_pe_registered",
            "1 while a registrar holds this PE's registration, else 0",
            m.registered.clone(),
        );
        r.register(
            "rserpool_pe_registrations",
            "Registrations accepted by a registrar that became the PE's home (first, after a hunt or an expiry; renewals not counted)",
            m.registrations.clone(),
        );
        r.register(
            "rserpool_pe_homes_lost",
            "Home registrars lost (association down or no answer), each followed by a hunt",
            m.homes_lost.clone(),
        );
        r.register(
            "rserpool_pe_sessions_opened",
            "Sessions pool users opened and the service took",
            m.sessions_opened.clone(),
        );
        r.register(
            "rserpool_pe_sessions_closed",
            "Served sessions that ended",
            m.sessions_closed.clone(),
        );
        r.register(
            "rserpool_pe_sessions_refused",
            "Sessions refused because the PE runs without --service",
            m.sessions_refused.clone(),
        );
        m
    }
}

/// What `rserpool pu --resolve` counts.
#[derive(Debug, Clone)]
pub struct ResolveMetrics {
    results: Family<Label, Counter>,
    /// Seconds each successful resolution took.
    pub duration: Histogram,
}

impl ResolveMetrics {
    /// The metrics, registered in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            results: Family::default(),
            duration: Histogram::new(latency_buckets()),
        };
        // Both series from the start, so that rate() sees failures begin.
        for result in ["success", "failure"] {
            let _ = m.results.get_or_create(&[("result", result)]);
        }
        r.register(
            "rserpool_pu_resolutions",
            "Handle resolutions by result: success (a PE was selected) or failure",
            m.results.clone(),
        );
        r.register_with_unit(
            "rserpool_pu_resolution_duration",
            "Time from asking for a resolution to the PE selected, of successful resolutions",
            Unit::Seconds,
            m.duration.clone(),
        );
        m
    }

    /// Counts one resolution.
    pub fn resolved(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.results.get_or_create(&[("result", result)]).inc();
    }
}

/// What `rserpool pu` counts in terminal mode.
#[derive(Debug, Clone)]
pub struct TerminalMetrics {
    /// 1 while the session is connected to a PE.
    pub connected: Gauge,
    /// Input lines sent to the pool.
    pub lines_sent: Counter,
    /// Lines that got their answer.
    pub lines_answered: Counter,
    failovers: Family<Label, Counter>,
    /// Seconds from a failover to the session connected again.
    pub failover_duration: Histogram,
    /// Times no PE could be found.
    pub unavailable: Counter,
}

impl TerminalMetrics {
    /// The metrics, registered in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            connected: Gauge::default(),
            lines_sent: Counter::default(),
            lines_answered: Counter::default(),
            failovers: Family::default(),
            failover_duration: Histogram::new(latency_buckets()),
            unavailable: Counter::default(),
        };
        r.register(
            "rserpool_pu_session_connected",
            "1 while the session is connected to a PE, else 0",
            m.connected.clone(),
        );
        r.register(
            "rserpool_pu_lines_sent",
            "Input lines sent to the pool",
            m.lines_sent.clone(),
        );
        r.register(
            "rserpool_pu_lines_answered",
            "Input lines that got their answer",
            m.lines_answered.clone(),
        );
        r.register(
            "rserpool_pu_failovers",
            "Failovers from one PE to another, by reason: association_down, connect_timeout or requested (--answer-timeout)",
            m.failovers.clone(),
        );
        r.register_with_unit(
            "rserpool_pu_failover_duration",
            "Time from a failover to the session connected to a PE again (back-to-back failovers count as one)",
            Unit::Seconds,
            m.failover_duration.clone(),
        );
        r.register(
            "rserpool_pu_unavailable",
            "Times no PE of the pool could be found (the session tries again)",
            m.unavailable.clone(),
        );
        m
    }

    /// Counts one failover.
    pub fn failover(&self, reason: &rserpool_core::pool_user::FailoverReason) {
        use rserpool_core::pool_user::FailoverReason as R;
        let reason = match reason {
            R::AssociationDown(_) => "association_down",
            R::ConnectTimeout => "connect_timeout",
            R::Requested => "requested",
        };
        self.failovers.get_or_create(&[("reason", reason)]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(r("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(r("GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("GET /metrics HTTP/2 x\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("GET metrics HTTP/1.1\r\n\r\n"), Route::BadRequest);
        assert_eq!(r(""), Route::BadRequest);
        assert_eq!(route(b"GET /\xff HTTP/1.1\r\n\r\n"), Route::BadRequest);
    }

    #[test]
    fn head_ends_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn bad_addresses_are_one_line_errors() {
        let e = bind(Some("localhost")).unwrap_err();
        assert!(
            e.starts_with("cannot serve metrics on localhost: not an IP:PORT"),
            "{e}"
        );
        assert!(bind(None).unwrap().is_none());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = taken.local_addr().unwrap().to_string();
        let e = bind(Some(&at)).unwrap_err();
        assert!(
            e.starts_with(&format!("cannot serve metrics on {at}: ")),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn counters_get_their_suffix_and_histograms_their_unit() {
        let mut r = Registry::default();
        let t = TerminalMetrics::register(&mut r);
        t.lines_sent.inc_by(3);
        t.failover(&rserpool_core::pool_user::FailoverReason::ConnectTimeout);
        t.failover_duration.observe(0.25);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("\nrserpool_pu_lines_sent_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nrserpool_pu_failovers_total{reason=\"connect_timeout\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nrserpool_pu_failover_duration_seconds_count 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
