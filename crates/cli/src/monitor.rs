//! `rserpool monitor`: a live view of a scope. Every interval it reads each
//! registrar's peer list and handle table over ENRP, as `rserpool hsdump`
//! does (a reader that never becomes a peer), finds the registrars those
//! peer lists name, and shows who owns how many PEs and what changed since
//! the previous read: in a terminal (ratatui), or as plain lines when
//! standard output is not one.
//!
//! Unlike `hsdump`, which opens one association, reads and closes it, the
//! monitor reads many registrars at once over one endpoint and keeps each
//! association for the next read, so it multiplexes the requests itself.

use crate::hsdump::{self, Dump};
use crate::node::addr::EndpointSpec;
use crate::node::duration::Dur;
use crate::node::transport::{self, TransportArgs};
use crate::node::{block_on, config_error, output, shutdown_signal};
use crate::registrar::settings::ENRP_PORT;
use bytes::Bytes;
use ratatui::crossterm::event::{self as term_event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use rserpool_net::transport::{
    AssociationId, CloseMode, EndpointConfig, Event, Ppid, Transport, TransportError,
};
use rserpool_wire::{EnrpMessage, Message, PeId, PoolEntry, PoolHandle, PrId, Servers};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Flags of `rserpool monitor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A registrar's ENRP endpoint (IP or IP:PORT, comma-separated for a
    /// multi-homed one; port default 9901); repeat the flag for several.
    /// The registrars their peer lists name are read too.
    #[arg(long = "registrar", value_name = "ADDR", default_value = "127.0.0.1")]
    registrars: Vec<EndpointSpec>,
    /// How often to read the registrars; one that has not answered by the
    /// next read is shown as not answering [default: 1s].
    #[arg(long, value_name = "DUR")]
    interval: Option<Dur>,
    /// Local IP to ask from [default: chosen by the routing table].
    #[arg(long, value_name = "IP")]
    local: Option<IpAddr>,
    /// Read once, print the plain view and exit.
    #[arg(long)]
    once: bool,
    /// Print plain lines instead of the terminal view (the default when
    /// standard output is not a terminal).
    #[arg(long)]
    plain: bool,
    #[command(flatten)]
    transport: TransportArgs,
}

pub const AFTER_HELP: &str = "\
Shows a scope live: for each registrar, how many PEs it owns (as it \
reports itself, or as most of the others see it when it does not answer) \
and whether it answers, and the changes between two reads: PEs that moved \
home, appeared or vanished, registrars that appeared, stopped answering or \
came back. Registrars named in the peer lists of those read are read too \
(at most 32). Like hsdump, the monitor reads as a reader that never \
becomes a peer; the registrars answer only hosts their trust model admits \
(--enrp-allow of the registrar), so --local may be needed.

In a terminal, q or Ctrl-C quits. When standard output is not a terminal, \
or with --plain, each read prints one line, then one line per change:
  12:00:01 0x00000001:5 0x00000002:4 | pools=1 pes=9
  12:00:02 event: PE 0x1a2b3c4d moved 0x00000002 -> 0x00000001 (pool echo)
until SIGINT, SIGTERM or the reader of the output goes away.

Exit status: 0; with --once, 1 when no registrar answered; 2 for bad flags.";

/// The most registrars read at once (given and discovered).
const MAX_REGISTRARS: usize = 32;

/// Changes kept for the terminal view.
const EVENTS_KEPT: usize = 15;

/// A PE in the scope: its pool and ID (a PE ID is unique only in a pool).
type PeKey = (PoolHandle, PeId);

pub fn run(args: Args) -> ExitCode {
    let kind = match args.transport.backend() {
        Ok(k) => k,
        Err(e) => return config_error(e),
    };
    let tunables = match args.transport.tunables() {
        Ok(t) => t,
        Err(e) => return config_error(e),
    };
    let interval = args.interval.map_or(Duration::from_secs(1), |d| d.0);
    if interval.is_zero() {
        return config_error("--interval must be positive");
    }
    if args.registrars.len() > MAX_REGISTRARS {
        return config_error(format!("at most {MAX_REGISTRARS} --registrar"));
    }
    let plain = args.plain || args.once || !std::io::stdout().is_terminal();
    let mode = match (args.once, plain) {
        (true, _) => Mode::Once,
        (false, true) => Mode::Plain,
        (false, false) => Mode::Terminal,
    };
    let given: Vec<Vec<SocketAddr>> = args
        .registrars
        .iter()
        .map(|r| r.resolve(ENRP_PORT))
        .collect();
    block_on(async move {
        let local = args.local.map(|ip| SocketAddr::new(ip, 0));
        let ec = EndpointConfig::client(local).with_transport(tunables);
        let endpoint = match transport::bind(kind, ec, &args.transport.udp(0)) {
            Ok(t) => t,
            Err(e) => return config_error(format!("cannot bind: {e}")),
        };
        let mut monitor = Monitor::new(endpoint, interval);
        for addrs in given {
            monitor.add(addrs, None, true);
        }
        match mode {
            Mode::Terminal => terminal(monitor).await,
            Mode::Plain | Mode::Once => plain_lines(monitor, mode == Mode::Once).await,
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Terminal,
    Plain,
    Once,
}

/// One registrar being read.
struct Target {
    addrs: Vec<SocketAddr>,
    /// Its ID, once it answered (or as the peer list that named it said).
    id: Option<PrId>,
    /// Named on the command line (kept when a discovered one turns out to
    /// be the same registrar, and never dropped from the view).
    given: bool,
    assoc: Option<AssociationId>,
    up: bool,
    /// The ID asked under on this association.
    reader: PrId,
    reading: Option<Reading>,
    round: Round,
    ever_answered: bool,
}

impl Target {
    fn label(&self) -> String {
        self.addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn key(&self) -> String {
        self.id.map_or_else(|| self.label(), |id| id.to_string())
    }
}

/// What a registrar has answered of the current read so far.
struct Reading {
    since: Instant,
    sender: Option<PrId>,
    peers: Option<Vec<rserpool_wire::ServerInformation>>,
    pools: Vec<PoolEntry>,
    table_done: bool,
    refused: bool,
}

/// A registrar's part in the current round.
enum Round {
    Pending,
    Answered(Dump),
    Failed(String),
}

/// A registrar's state in one round's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Answering,
    NoAnswer,
    /// Known from peer lists or PE homes, but not read (no usable address,
    /// or beyond the limit).
    NotRead,
}

/// One registrar in a round's view.
#[derive(Debug, Clone)]
struct Row {
    key: String,
    /// The addresses it is read at, for telling a registrar that answered
    /// for the first time apart from a new one.
    label: Option<String>,
    has_id: bool,
    owned: usize,
    status: Status,
    answered_before: bool,
}

/// What one round showed.
#[derive(Debug, Clone, Default)]
struct Survey {
    time: String,
    rows: Vec<Row>,
    pools: usize,
    pes: usize,
    /// The changes since the previous round.
    changes: Vec<String>,
}

struct Monitor<E> {
    endpoint: E,
    targets: Vec<Target>,
    interval: Duration,
    /// PEs and their homes as of the last round in which someone answered:
    /// a round without answers tells nothing about PEs.
    last_pes: Option<BTreeMap<PeKey, Option<PrId>>>,
    last_rows: Option<Vec<Row>>,
    events: VecDeque<(String, String)>,
    /// Associations of registrars no longer read, to close.
    orphans: Vec<AssociationId>,
}

impl<E: Transport> Monitor<E> {
    fn new(endpoint: E, interval: Duration) -> Self {
        Self {
            endpoint,
            targets: Vec::new(),
            interval,
            last_pes: None,
            last_rows: None,
            events: VecDeque::new(),
            orphans: Vec::new(),
        }
    }

    fn add(&mut self, addrs: Vec<SocketAddr>, id: Option<PrId>, given: bool) {
        self.targets.push(Target {
            addrs,
            id,
            given,
            assoc: None,
            up: false,
            reader: reader_id(),
            reading: None,
            round: Round::Pending,
            ever_answered: false,
        });
    }

    fn index_of(&self, assoc: AssociationId) -> Option<usize> {
        self.targets.iter().position(|t| t.assoc == Some(assoc))
    }

    /// A read that outlived this has lost a request or an answer: only a
    /// new association (and reader ID) is sure to start clean.
    fn stale_after(&self) -> Duration {
        (self.interval * 3).max(Duration::from_secs(5))
    }

    async fn start_round(&mut self) {
        for a in std::mem::take(&mut self.orphans) {
            let _ = self.endpoint.close(a, CloseMode::Graceful).await;
        }
        let now = Instant::now();
        let stale = self.stale_after();
        for i in 0..self.targets.len() {
            self.targets[i].round = Round::Pending;
            let t = &self.targets[i];
            match (t.assoc, &t.reading) {
                (None, _) => self.connect(i).await,
                (Some(_), None) if t.up => self.request(i).await,
                (Some(_), Some(r)) if now.duration_since(r.since) > stale => {
                    self.drop_assoc(i, "no complete answer; reconnecting".into())
                        .await;
                }
                _ => {}
            }
        }
    }

    async fn connect(&mut self, i: usize) {
        // A registrar keys its paged handle-table answers by the reader's
        // ID: a fresh ID per association never continues an abandoned read.
        let reader = reader_id();
        let addrs = self.targets[i].addrs.clone();
        let result = self.endpoint.connect(&addrs).await;
        let t = &mut self.targets[i];
        t.reader = reader;
        t.up = false;
        t.reading = None;
        match result {
            Ok(a) => t.assoc = Some(a),
            Err(e) => {
                t.assoc = None;
                t.round = Round::Failed(format!("cannot reach it: {e}"));
            }
        }
    }

    async fn drop_assoc(&mut self, i: usize, why: String) {
        let t = &mut self.targets[i];
        let assoc = t.assoc.take();
        t.up = false;
        t.reading = None;
        if matches!(t.round, Round::Pending) {
            t.round = Round::Failed(why);
        }
        if let Some(a) = assoc {
            let _ = self.endpoint.close(a, CloseMode::Abort).await;
        }
    }

    async fn send(&mut self, i: usize, m: EnrpMessage) -> bool {
        let Some(assoc) = self.targets[i].assoc else {
            return false;
        };
        let mut buf = Vec::new();
        if let Err(e) = Message::Enrp(m).encode(&mut buf) {
            self.drop_assoc(i, format!("cannot encode a request: {e}"))
                .await;
            return false;
        }
        match self
            .endpoint
            .send(assoc, 0, Ppid::ENRP, false, Bytes::from(buf))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                self.drop_assoc(i, format!("cannot send: {e}")).await;
                false
            }
        }
    }

    fn servers(&self, i: usize) -> Servers {
        Servers {
            sender: self.targets[i].reader,
            receiver: None,
        }
    }

    async fn request(&mut self, i: usize) {
        self.targets[i].reading = Some(Reading {
            since: Instant::now(),
            sender: None,
            peers: None,
            pools: Vec::new(),
            table_done: false,
            refused: false,
        });
        let servers = self.servers(i);
        if self.send(i, EnrpMessage::ListRequest { servers }).await {
            self.request_table(i).await;
        }
    }

    async fn request_table(&mut self, i: usize) {
        let servers = self.servers(i);
        let m = EnrpMessage::HandleTableRequest {
            servers,
            own_children_only: false,
        };
        self.send(i, m).await;
    }

    fn settled(&self) -> bool {
        self.targets
            .iter()
            .all(|t| !matches!(t.round, Round::Pending))
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::AssociationUp { assoc, .. } => {
                let Some(i) = self.index_of(assoc) else {
                    return;
                };
                self.targets[i].up = true;
                let t = &self.targets[i];
                if t.reading.is_none() && matches!(t.round, Round::Pending) {
                    self.request(i).await;
                }
            }
            Event::AssociationDown { assoc, reason } => {
                if let Some(i) = self.index_of(assoc) {
                    let t = &mut self.targets[i];
                    t.assoc = None;
                    t.up = false;
                    t.reading = None;
                    if matches!(t.round, Round::Pending) {
                        t.round = Round::Failed(format!("association ended: {reason}"));
                    }
                }
            }
            Event::Message(m) if m.ppid == Ppid::ENRP => {
                if let Some(i) = self.index_of(m.assoc) {
                    self.on_message(i, &m.data).await;
                }
            }
            Event::Message(_) => {}
        }
    }

    async fn on_message(&mut self, i: usize, data: &Bytes) {
        let msg = match EnrpMessage::decode_bytes(data) {
            Ok(d) => d.message,
            Err(e) => {
                tracing::debug!(%e, "undecodable ENRP message ignored");
                return;
            }
        };
        let sender = msg.servers().sender;
        let Some(reading) = self.targets[i].reading.as_mut() else {
            return;
        };
        match msg {
            EnrpMessage::ListResponse {
                rejected, peers, ..
            } => {
                reading.sender = Some(sender);
                reading.refused |= rejected;
                reading.peers = Some(peers);
            }
            EnrpMessage::HandleTableResponse {
                rejected,
                more_to_send,
                pools,
                ..
            } => {
                reading.sender = Some(sender);
                reading.refused |= rejected;
                reading.pools.extend(pools);
                if more_to_send && !rejected {
                    return self.request_table(i).await;
                }
                reading.table_done = true;
            }
            _ => return,
        }
        if reading.peers.is_some() && reading.table_done {
            self.finish(i).await;
        }
    }

    async fn finish(&mut self, i: usize) {
        let Some(r) = self.targets[i].reading.take() else {
            return;
        };
        if r.refused {
            self.targets[i].round = Round::Failed("refused (still starting)".into());
            return;
        }
        let dump = Dump {
            registrar: r.sender,
            peers: r.peers.unwrap_or_default(),
            pools: merge(r.pools),
        };
        let peers = dump.peers.clone();
        let t = &mut self.targets[i];
        if r.sender.is_some() {
            t.id = r.sender;
        }
        t.round = Round::Answered(dump);
        self.dedupe(i).await;
        self.discover(&peers).await;
    }

    /// Drops one of two targets that turned out to be the same registrar,
    /// keeping a given one over a discovered one, the older over the newer.
    async fn dedupe(&mut self, i: usize) {
        let Some(id) = self.targets[i].id else {
            return;
        };
        let Some(j) = (0..self.targets.len()).find(|&j| j != i && self.targets[j].id == Some(id))
        else {
            return;
        };
        let (ti, tj) = (&self.targets[i], &self.targets[j]);
        let keep_j = (tj.given && !ti.given) || (tj.given == ti.given && j < i);
        let (keep, gone) = if keep_j { (j, i) } else { (i, j) };
        if matches!(self.targets[keep].round, Round::Pending) {
            let round = std::mem::replace(&mut self.targets[gone].round, Round::Pending);
            self.targets[keep].round = round;
        }
        self.targets[keep].ever_answered |= self.targets[gone].ever_answered;
        if let Some(a) = self.targets[gone].assoc {
            let _ = self.endpoint.close(a, CloseMode::Graceful).await;
        }
        self.targets.remove(gone);
    }

    async fn discover(&mut self, peers: &[rserpool_wire::ServerInformation]) {
        for p in peers {
            if self.targets.len() >= MAX_REGISTRARS {
                return;
            }
            let addrs = enrp_addrs(p);
            let known = self
                .targets
                .iter()
                .any(|t| t.id == Some(p.server_id) || t.addrs.iter().any(|a| addrs.contains(a)));
            if known || addrs.is_empty() {
                continue;
            }
            self.add(addrs, Some(p.server_id), false);
            let i = self.targets.len() - 1;
            self.connect(i).await;
        }
    }

    /// Ends a round: the view, and the changes since the previous one.
    fn conclude(&mut self) -> Survey {
        let time = clock();
        let answers: Vec<&Dump> = self
            .targets
            .iter()
            .filter_map(|t| match &t.round {
                Round::Answered(d) => Some(d),
                _ => None,
            })
            .collect();
        let pes = (!answers.is_empty()).then(|| consolidate(&answers));
        let listed: BTreeSet<PrId> = answers
            .iter()
            .flat_map(|d| d.peers.iter().map(|p| p.server_id))
            .collect();
        let mut homes: BTreeMap<PrId, usize> = BTreeMap::new();
        for home in pes.iter().flat_map(|p| p.values()).flatten() {
            *homes.entry(*home).or_default() += 1;
        }
        let pools = answers
            .iter()
            .flat_map(|d| d.pools.iter().map(|p| p.pool_handle.clone()))
            .collect::<BTreeSet<_>>()
            .len();
        if pes.is_some() {
            // A registrar that went away for good leaves the peer lists and
            // owns nothing once taken over: stop reading it.
            let (keep, gone): (Vec<Target>, Vec<Target>) = std::mem::take(&mut self.targets)
                .into_iter()
                .partition(|t| {
                    t.given
                        || matches!(t.round, Round::Answered(_))
                        || t.id
                            .is_some_and(|id| listed.contains(&id) || homes.contains_key(&id))
                });
            self.targets = keep;
            self.orphans.extend(gone.iter().filter_map(|t| t.assoc));
        }

        let mut rows: Vec<Row> = Vec::new();
        for t in &self.targets {
            let (status, owned) = match (&t.round, t.id) {
                (Round::Answered(d), Some(id)) => (
                    Status::Answering,
                    hsdump::owners(d).get(&id.to_string()).copied().unwrap_or(0),
                ),
                (Round::Answered(_), None) => (Status::Answering, 0),
                (_, id) => (
                    Status::NoAnswer,
                    id.and_then(|id| homes.get(&id).copied()).unwrap_or(0),
                ),
            };
            rows.push(Row {
                key: t.key(),
                label: Some(t.label()),
                has_id: t.id.is_some(),
                owned,
                status,
                answered_before: t.ever_answered,
            });
        }
        let read: BTreeSet<PrId> = self.targets.iter().filter_map(|t| t.id).collect();
        for id in listed.iter().chain(homes.keys()) {
            if read.contains(id) || rows.iter().any(|r| r.key == id.to_string()) {
                continue;
            }
            rows.push(Row {
                key: id.to_string(),
                label: None,
                has_id: true,
                owned: homes.get(id).copied().unwrap_or(0),
                status: Status::NotRead,
                answered_before: false,
            });
        }
        rows.sort_by(|a, b| a.key.cmp(&b.key));

        let mut changes = Vec::new();
        if let Some(before) = &self.last_rows {
            changes.extend(registrar_changes(before, &rows));
        }
        if let (Some(before), Some(now)) = (&self.last_pes, &pes) {
            changes.extend(pe_changes(before, now));
        }
        for t in &mut self.targets {
            t.ever_answered |= matches!(t.round, Round::Answered(_));
        }
        for c in &changes {
            if self.events.len() == EVENTS_KEPT {
                self.events.pop_front();
            }
            self.events.push_back((time.clone(), c.clone()));
        }
        let survey = Survey {
            time,
            pes: pes.as_ref().map_or(0, BTreeMap::len),
            pools,
            rows: rows.clone(),
            changes,
        };
        self.last_rows = Some(rows);
        if pes.is_some() {
            self.last_pes = pes;
        }
        survey
    }

    /// Why the registrars that did not answer this round did not.
    fn failures(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter_map(|t| match &t.round {
                Round::Answered(_) => None,
                Round::Failed(why) => Some(format!("{} ({why})", t.label())),
                Round::Pending => Some(format!("{} (no answer in time)", t.label())),
            })
            .collect()
    }
}

/// A random reader ID (odd, so never 0).
fn reader_id() -> PrId {
    PrId::new(rand::random::<u32>() | 1).expect("an odd number is not 0")
}

/// The ENRP endpoint a peer list gives for a registrar, without the
/// addresses that cannot be a peer's.
fn enrp_addrs(p: &rserpool_wire::ServerInformation) -> Vec<SocketAddr> {
    let port = p.transport.port;
    if port == 0 {
        return Vec::new();
    }
    p.transport
        .addresses
        .iter()
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
        .map(|ip| SocketAddr::new(*ip, port))
        .collect()
}

/// Pages split a pool at any element: one entry per pool handle.
fn merge(pools: Vec<PoolEntry>) -> Vec<PoolEntry> {
    let mut by_handle: BTreeMap<PoolHandle, PoolEntry> = BTreeMap::new();
    for entry in pools {
        match by_handle.get_mut(&entry.pool_handle) {
            Some(e) => e.pool_elements.extend(entry.pool_elements),
            None => {
                by_handle.insert(entry.pool_handle.clone(), entry);
            }
        }
    }
    by_handle.into_values().collect()
}

/// A registrar's view of a PE's home: (the registrar, the home).
type Said = (Option<PrId>, Option<PrId>);

/// Each PE's home: the registrar that claims it when one that answered
/// does (replication lags behind a takeover), else what most answers say.
fn consolidate(answers: &[&Dump]) -> BTreeMap<PeKey, Option<PrId>> {
    // Per PE: which registrar said what home.
    let mut views: BTreeMap<PeKey, Vec<Said>> = BTreeMap::new();
    for d in answers {
        for pool in &d.pools {
            for pe in &pool.pool_elements {
                views
                    .entry((pool.pool_handle.clone(), pe.id))
                    .or_default()
                    .push((d.registrar, pe.home_registrar));
            }
        }
    }
    views
        .into_iter()
        .map(|(key, seen)| {
            let claims: Vec<Option<PrId>> = seen
                .iter()
                .filter(|(by, home)| by.is_some() && by == home)
                .map(|(_, home)| *home)
                .collect();
            let home = if claims.is_empty() {
                most_common(seen.iter().map(|(_, home)| *home))
            } else {
                most_common(claims.into_iter())
            };
            (key, home)
        })
        .collect()
}

/// The most frequent item; the smallest of those tied.
fn most_common<T: Ord + Copy>(items: impl Iterator<Item = Option<T>>) -> Option<T> {
    let mut counts: BTreeMap<Option<T>, usize> = BTreeMap::new();
    for i in items {
        *counts.entry(i).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|(_, n)| *n == best)
        .and_then(|(i, _)| i)
}

fn home_text(h: Option<PrId>) -> String {
    h.map_or_else(|| "none".into(), |h| h.to_string())
}

fn pool_text(p: &PoolHandle) -> String {
    p.to_string()
}

fn pe_changes(
    before: &BTreeMap<PeKey, Option<PrId>>,
    now: &BTreeMap<PeKey, Option<PrId>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for ((pool, id), home) in now {
        match before.get(&(pool.clone(), *id)) {
            None => out.push(format!(
                "PE {id} appeared in pool {} (home {})",
                pool_text(pool),
                home_text(*home)
            )),
            Some(old) if old != home => out.push(format!(
                "PE {id} moved {} -> {} (pool {})",
                home_text(*old),
                home_text(*home),
                pool_text(pool)
            )),
            Some(_) => {}
        }
    }
    for ((pool, id), home) in before {
        if !now.contains_key(&(pool.clone(), *id)) {
            out.push(format!(
                "PE {id} vanished from pool {} (home {})",
                pool_text(pool),
                home_text(*home)
            ));
        }
    }
    out
}

fn registrar_changes(before: &[Row], now: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    let mut matched: BTreeSet<&str> = BTreeSet::new();
    for row in now {
        let by_key = before.iter().find(|b| b.key == row.key);
        // A registrar read at an address is shown by its ID once it answers.
        let renamed = || {
            row.label
                .as_deref()
                .and_then(|l| before.iter().find(|b| !b.has_id && b.key == l))
        };
        let Some(old) = by_key.or_else(renamed) else {
            let how = match row.status {
                Status::Answering => "",
                Status::NoAnswer => " (no answer)",
                Status::NotRead => " (not read)",
            };
            out.push(format!("registrar {} appeared{how}", row.key));
            continue;
        };
        matched.insert(old.key.as_str());
        let at = if old.key == row.key {
            String::new()
        } else {
            format!(" (at {})", old.key)
        };
        match (old.status, row.status) {
            (Status::Answering, Status::NoAnswer) => {
                out.push(format!("registrar {}{at} stopped answering", row.key));
            }
            (Status::NoAnswer | Status::NotRead, Status::Answering) => {
                let again = if row.answered_before { " again" } else { "" };
                out.push(format!("registrar {}{at} answers{again}", row.key));
            }
            _ => {}
        }
    }
    for old in before {
        if !matched.contains(old.key.as_str()) {
            out.push(format!("registrar {} left the scope", old.key));
        }
    }
    out
}

/// The local time of day, HH:MM:SS.
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t = libc::time_t::try_from(secs).unwrap_or(0);
    // SAFETY: `tm` is plain data (its one pointer may be null) that
    // localtime_r fills from `t`, both valid for the call.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return utc_clock(secs);
        }
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

fn utc_clock(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The plain line of a round: `12:00:01 0x00000001:5 0x00000002:4 | pools=1 pes=9`.
fn plain_line(s: &Survey) -> String {
    let mut line = s.time.clone();
    for r in &s.rows {
        line.push(' ');
        if r.has_id {
            line.push_str(&format!("{}:{}", r.key, r.owned));
        } else {
            line.push_str(&r.key);
        }
        match r.status {
            Status::Answering => {}
            Status::NoAnswer => line.push_str(" (no answer)"),
            Status::NotRead => line.push_str(" (not read)"),
        }
    }
    line.push_str(&format!(" | pools={} pes={}", s.pools, s.pes));
    line
}

/// Why one wait in the main loop ended.
enum Wake {
    Net(Result<Event, TransportError>),
    Deadline,
    Quit,
    Redraw,
}

/// Waits for the endpoint, the deadline, a signal or a key.
async fn wait<E: Transport>(
    endpoint: &mut E,
    deadline: Instant,
    signal: &mut (impl Future<Output = &'static str> + Unpin),
    input: &mut Option<&mut mpsc::UnboundedReceiver<Input>>,
) -> Wake {
    tokio::select! {
        ev = endpoint.next_event() => Wake::Net(ev),
        () = tokio::time::sleep_until(deadline) => Wake::Deadline,
        _ = signal => Wake::Quit,
        i = next_input(input) => match i {
            Input::Quit => Wake::Quit,
            Input::Redraw => Wake::Redraw,
        },
    }
}

/// Runs rounds until a signal, a key or `show` (given each round's survey,
/// or `None` to draw again) returning false ends them; with `once`, one
/// round. Whether the last round had an answer.
async fn rounds<E: Transport>(
    monitor: &mut Monitor<E>,
    once: bool,
    mut input: Option<&mut mpsc::UnboundedReceiver<Input>>,
    mut show: impl FnMut(&Monitor<E>, Option<&Survey>) -> bool,
) -> Result<bool, String> {
    let mut signal = Box::pin(shutdown_signal());
    let mut deadline = Instant::now();
    loop {
        deadline += monitor.interval;
        monitor.start_round().await;
        // Until every registrar answered or gave up, or the interval is
        // over; then until the interval is over, with nothing left to ask.
        for early in [true, false] {
            while !(early && monitor.settled()) {
                match wait(&mut monitor.endpoint, deadline, &mut signal, &mut input).await {
                    Wake::Net(Ok(ev)) => monitor.handle(ev).await,
                    Wake::Net(Err(e)) => return Err(format!("transport stopped: {e}")),
                    Wake::Deadline => break,
                    Wake::Quit => return Ok(true),
                    Wake::Redraw => {
                        if !show(monitor, None) {
                            return Ok(true);
                        }
                    }
                }
            }
            if early {
                let survey = monitor.conclude();
                if !show(monitor, Some(&survey)) {
                    return Ok(true);
                }
                if once {
                    return Ok(survey.rows.iter().any(|r| r.status == Status::Answering));
                }
            }
        }
        // A round that ran late (a slow terminal) starts the next at once
        // rather than piling rounds up.
        deadline = deadline.max(Instant::now());
    }
}

async fn next_input(input: &mut Option<&mut mpsc::UnboundedReceiver<Input>>) -> Input {
    match input {
        Some(rx) => match rx.recv().await {
            Some(i) => i,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn plain_lines<E: Transport>(mut monitor: Monitor<E>, once: bool) -> ExitCode {
    let result = rounds(&mut monitor, once, None, |_, survey| {
        let Some(s) = survey else { return true };
        if !output::line(&plain_line(s)) {
            return false;
        }
        s.changes
            .iter()
            .all(|c| output::line(&format!("{} event: {c}", s.time)))
    })
    .await;
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "error: no registrar answered within {} ms: {}",
                monitor.interval.as_millis(),
                monitor.failures().join(", ")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the keyboard asks for.
enum Input {
    Quit,
    Redraw,
}

/// The terminal in raw mode on the alternate screen, given back on every
/// way out: return, early error, panic (ratatui's panic hook restores it
/// before the message is printed, this on unwinding).
struct TerminalGuard {
    terminal: Option<ratatui::DefaultTerminal>,
}

impl TerminalGuard {
    fn new() -> std::io::Result<Self> {
        // Created before raw mode is switched on, so that a failure half
        // way through is undone too.
        let mut guard = Self { terminal: None };
        guard.terminal = Some(ratatui::try_init()?);
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(t) = self.terminal.as_mut() {
            let _ = t.show_cursor();
        }
        ratatui::restore();
    }
}

/// Reads keys on a thread of its own: crossterm's reads block.
fn read_keys(stop: Arc<AtomicBool>, tx: mpsc::UnboundedSender<Input>) {
    while !stop.load(Ordering::Relaxed) {
        match term_event::poll(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return,
        }
        let input = match term_event::read() {
            Ok(term_event::Event::Key(k)) if k.kind == KeyEventKind::Press => {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || k.code == KeyCode::Char('q') {
                    Input::Quit
                } else {
                    continue;
                }
            }
            Ok(term_event::Event::Resize(..)) => Input::Redraw,
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.send(input).is_err() {
            return;
        }
    }
}

async fn terminal<E: Transport>(mut monitor: Monitor<E>) -> ExitCode {
    let mut guard = match TerminalGuard::new() {
        Ok(g) => g,
        Err(e) => return config_error(format!("cannot set up the terminal: {e}")),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let keys = {
        let stop = stop.clone();
        std::thread::spawn(move || read_keys(stop, tx))
    };
    let mut last = Survey {
        time: clock(),
        ..Survey::default()
    };
    let mut failed: Option<std::io::Error> = None;
    let mut draw = |monitor: &Monitor<E>, survey: Option<&Survey>| {
        if let Some(s) = survey {
            last = s.clone();
        }
        let Some(t) = guard.terminal.as_mut() else {
            return false;
        };
        match t.draw(|f| view(f, &last, &monitor.events, monitor.targets.len())) {
            Ok(_) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    };
    draw(&monitor, None);
    let result = rounds(&mut monitor, false, Some(&mut rx), &mut draw).await;
    stop.store(true, Ordering::Relaxed);
    drop(guard);
    let _ = keys.join();
    if let Some(e) = failed {
        eprintln!("error: cannot draw: {e}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn view(
    f: &mut ratatui::Frame<'_>,
    s: &Survey,
    events: &VecDeque<(String, String)>,
    reading: usize,
) {
    let rows_height = u16::try_from(s.rows.len().max(1) + 2).unwrap_or(u16::MAX);
    let [head, regs, evs] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(rows_height),
        Constraint::Min(3),
    ])
    .areas(f.area());
    let dim = Style::default().add_modifier(Modifier::DIM);
    const STATUS_W: usize = 9;
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                format!(
                    "scope: {} registrars, {} pools, {} PEs",
                    s.rows.len(),
                    s.pools,
                    s.pes
                ),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("   {}", s.time)),
            Span::styled("   q quits", dim),
        ])),
        head,
    );

    let block = Block::bordered().title(" registrars ");
    let inner = block.inner(regs);
    let key_w = s.rows.iter().map(|r| r.key.len()).max().unwrap_or(10);
    let count_w = s
        .rows
        .iter()
        .map(|r| r.owned.to_string().len())
        .max()
        .unwrap_or(1);
    let bar_w = usize::from(inner.width).saturating_sub(key_w + count_w + STATUS_W + 3);
    // A full bar is every PE of the scope, so shares compare across reads;
    // views that disagree for a moment can add up to more.
    let most = s.rows.iter().map(|r| r.owned).max().unwrap_or(0).max(s.pes);
    let mut lines: Vec<Line<'_>> = s
        .rows
        .iter()
        .map(|r| {
            let filled = if most == 0 {
                0
            } else {
                (r.owned * bar_w).div_ceil(most)
            };
            let (status, colour) = match r.status {
                Status::Answering => ("answering", Color::Green),
                Status::NoAnswer => ("no answer", Color::Red),
                Status::NotRead => ("not read", Color::DarkGray),
            };
            let bar_colour = if r.status == Status::Answering {
                Color::Cyan
            } else {
                Color::DarkGray
            };
            Line::from(vec![
                Span::raw(format!("{:<key_w$} ", r.key)),
                Span::styled("█".repeat(filled), Style::default().fg(bar_colour)),
                Span::raw(" ".repeat(bar_w - filled)),
                Span::raw(format!(" {:>count_w$} ", r.owned)),
                Span::styled(status, Style::default().fg(colour)),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(
            format!("reading {reading} registrar(s)..."),
            dim,
        ));
    }
    f.render_widget(Paragraph::new(lines).block(block), regs);

    let mut lines: Vec<Line<'_>> = events
        .iter()
        .rev()
        .map(|(time, text)| {
            Line::from(vec![
                Span::styled(format!("{time} "), dim),
                Span::raw(text.as_str()),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled("no changes yet", dim));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" events (newest first) ")),
        evs,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> PrId {
        PrId::new(n).expect("not 0")
    }

    fn row(key: &str, status: Status) -> Row {
        Row {
            key: key.into(),
            label: None,
            has_id: key.starts_with("0x"),
            owned: 0,
            status,
            answered_before: true,
        }
    }

    #[test]
    fn most_common_prefers_the_smallest_of_a_tie() {
        let v = [Some(id(2)), Some(id(1)), Some(id(2)), Some(id(1))];
        assert_eq!(most_common(v.into_iter()), Some(id(1)));
        let v = [Some(id(2)), None, Some(id(2))];
        assert_eq!(most_common(v.into_iter()), Some(id(2)));
    }

    #[test]
    fn registrar_changes_tell_stops_returns_and_arrivals() {
        let before = vec![
            row("0x00000001", Status::Answering),
            row("0x00000002", Status::Answering),
            row("0x00000009", Status::NotRead),
        ];
        let mut renamed = row("0x00000003", Status::Answering);
        renamed.label = Some("127.0.0.1:9901".into());
        renamed.answered_before = false;
        let now = vec![
            row("0x00000001", Status::Answering),
            row("0x00000002", Status::NoAnswer),
            renamed.clone(),
        ];
        let mut before_renamed = before.clone();
        before_renamed.push(row("127.0.0.1:9901", Status::NoAnswer));
        let c = registrar_changes(&before_renamed, &now);
        assert_eq!(
            c,
            [
                "registrar 0x00000002 stopped answering",
                "registrar 0x00000003 (at 127.0.0.1:9901) answers",
                "registrar 0x00000009 left the scope",
            ]
        );
        let c = registrar_changes(&now, &before);
        assert!(c.contains(&"registrar 0x00000002 answers again".to_string()));
        assert!(c.contains(&"registrar 0x00000009 appeared (not read)".to_string()));
    }

    #[test]
    fn plain_line_lists_owners_and_silence() {
        let mut a = row("0x00000001", Status::Answering);
        a.owned = 5;
        let mut b = row("0x00000002", Status::NoAnswer);
        b.owned = 4;
        let s = Survey {
            time: "12:00:01".into(),
            rows: vec![a, b, row("127.0.0.1:9901", Status::NoAnswer)],
            pools: 1,
            pes: 9,
            changes: Vec::new(),
        };
        assert_eq!(
            plain_line(&s),
            "12:00:01 0x00000001:5 0x00000002:4 (no answer) 127.0.0.1:9901 (no answer) | pools=1 pes=9"
        );
    }

    #[test]
    fn the_clock_reads_hours_minutes_seconds() {
        assert_eq!(utc_clock(3600 * 25 + 61), "01:01:01");
        assert_eq!(clock().len(), 8);
    }
}
