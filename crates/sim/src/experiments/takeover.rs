//! The draft's Takeover Suggestion experiment: registrars are cut off (or
//! crash) long enough that their PEs move to the others, then come back;
//! the run measures how ownership (each registrar's count of the PEs it owns
//! in its own handlespace) returns.
//!
//! A [`Plan`] says what to run; an [`Experiment`] runs it, handing out a
//! [`Sample`] every [`Plan::sample`] and, at the end, an [`Outcome`] with the
//! summary figures.

use super::imbalance;
use crate::node::{CrashMode, NodeId};
use crate::roles::RoleEvent;
use crate::scenario::{Scenario, ScenarioBuilder};
use crate::trace::Happening;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rserpool_core::registrar::{BalancePolicy, BalancedConfig, Registrar, RegistrarConfig};
use rserpool_core::{Instant, PoolElementEvent};
use rserpool_wire::{PoolHandle, PrId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// When the outage starts: every PE has registered and re-registered once.
pub const OUTAGE_AT: Duration = Duration::from_secs(60);
/// PEs start one after another within this time (from 1 s on), so their
/// re-registrations are spread as in a deployment.
pub const START_SPREAD: Duration = Duration::from_secs(10);
/// Ownership counts as balanced at max/mean <= this (the draft's criterion).
pub const BALANCED: f64 = 1.1;
/// A stricter criterion, timed as well when [`Plan::watch_rehoming`] is set.
pub const BALANCED_TIGHT: f64 = 1.05;
/// How often ownership is checked after the recovery, to time the balance.
pub const FINE: Duration = Duration::from_millis(100);
/// How long into each outage every [`FINE`] step is checked, to time the
/// re-homing of the PEs.
pub const REHOME_WATCH: Duration = Duration::from_secs(120);
/// How long after the (last) recovery the plot keeps every [`FINE`] sample,
/// for a view that zooms in on the return of the PEs.
pub const ZOOM: Duration = Duration::from_secs(90);
/// The whole run is plotted from about this many samples (at least one a
/// second), which bounds the memory whatever the duration is.
pub const PLOT_POINTS: u32 = 2000;
/// Mixed into the seed for the PEs' registrar orders, so that they are not
/// the stream the world draws from.
const HUNT_ORDER_SALT: u64 = 0x6875_6e74;

/// Who an outage hits, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Indices of the registrars.
    pub who: Vec<usize>,
    /// `None`: each is cut off on a network side of its own and the network
    /// heals at the end; `Some`: they crash, and restart at the end.
    pub crash: Option<CrashMode>,
}

/// What part of the run a moment is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the first outage.
    Normal,
    /// During an outage.
    Outage,
    /// After an outage, before the next if any.
    Recovered,
}

impl Phase {
    /// The word the tables print.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Outage => "outage",
            Self::Recovered => "recovered",
        }
    }
}

/// The parameters of one run. One pool of `pes` PEs, every PE knowing every
/// registrar in an order of its own (shuffled by the seed), registration
/// life 3 x T4, PEs starting from 1 s over [`START_SPREAD`].
#[derive(Clone, Debug)]
pub struct Plan {
    /// World seed: registrar and PE IDs, the PEs' registrar orders, timer
    /// and network jitter.
    pub seed: u64,
    /// Registrars in the scope.
    pub registrars: usize,
    /// Pool elements.
    pub pes: usize,
    /// The Takeover Suggestion policy of every registrar.
    pub balance: BalancePolicy,
    /// PE re-registration interval.
    pub t4: Duration,
    /// Simulated time to run.
    pub duration: Duration,
    /// A [`Sample`] this often.
    pub sample: Duration,
    /// (cut, heal) of every outage, in order, none overlapping.
    pub outages: Vec<(Duration, Duration)>,
    /// Who each outage hits (same order as `outages`).
    pub targets: Vec<Target>,
    /// Also check every [`FINE`] step early in each outage, to time the
    /// re-homing ([`Outcome::rehomed`]) and the return to
    /// [`BALANCED_TIGHT`].
    pub watch_rehoming: bool,
    /// Keep the ownership every this often for a plot
    /// ([`Outcome::plot`]); see [`plot_step`].
    pub plot_step: Option<Duration>,
    /// Per registrar (by index), the policy it runs instead of
    /// [`Self::balance`]: a scope of mixed policies. Empty: all the same.
    pub policies: Vec<BalancePolicy>,
    /// Per registrar (by index), its capacity, which every registrar's
    /// balanced policy knows by registrar ID (as `--capacity-of` configures
    /// it). Empty: all equal.
    pub capacities: Vec<u32>,
    /// Registrar timers of the balancing that differ from the defaults.
    pub tuning: Tuning,
}

/// The registrar parameters that damp and pace the balancing
/// (`RegistrarConfig`); `None` keeps the registrar's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuning {
    /// `move_cooldown`: a PE that arrived by a suggestion stays this long.
    pub cooldown: Option<Duration>,
    /// `peer_settle_time`: a peer counts this long after it came back.
    pub settle: Option<Duration>,
    /// `peer_settle_time_max`: the most a flapping peer's settle time grows to.
    pub settle_max: Option<Duration>,
    /// `peer_stable_time`: a peer dropping off sooner after coming back flaps.
    pub stable: Option<Duration>,
    /// `move_grace`: how long a suggested move may take.
    pub grace: Option<Duration>,
}

impl Tuning {
    fn apply(&self, cfg: &mut RegistrarConfig) {
        let set = |v: Option<Duration>, field: &mut Duration| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(self.cooldown, &mut cfg.move_cooldown);
        set(self.settle, &mut cfg.peer_settle_time);
        set(self.settle_max, &mut cfg.peer_settle_time_max);
        set(self.stable, &mut cfg.peer_stable_time);
        set(self.grace, &mut cfg.move_grace);
    }
}

/// The outages of `down` registrars (the last ones) cut off for `outage`
/// from [`OUTAGE_AT`], repeated every `period` `n` times if `flap` says so.
pub fn cut_off_last(
    registrars: usize,
    down: usize,
    outage: Duration,
    flap: Option<(Duration, u32)>,
) -> (Vec<(Duration, Duration)>, Vec<Target>) {
    let outages: Vec<(Duration, Duration)> = match (down, flap) {
        (0, _) => Vec::new(),
        (_, None) => vec![(OUTAGE_AT, OUTAGE_AT + outage)],
        (_, Some((period, n))) => (0..n)
            .map(|k| {
                let cut = OUTAGE_AT + period * k;
                (cut, cut + outage)
            })
            .collect(),
    };
    let target = Target {
        who: (registrars - down..registrars).collect(),
        crash: None,
    };
    let targets = vec![target; outages.len()];
    (outages, targets)
}

/// The Takeover Suggestion policies an experiment chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Never suggest.
    Off,
    /// The reference implementation's XOR rule.
    Xor,
    /// Balance owned PEs (with a tolerance).
    Balanced,
}

/// `policy`, with `tolerance` for the balanced one; the error names `flag`
/// (the option or key the tolerance came from).
pub fn balance_policy(
    policy: Policy,
    tolerance: Option<f64>,
    flag: &str,
) -> Result<BalancePolicy, String> {
    Ok(match (policy, tolerance) {
        (Policy::Off | Policy::Xor, Some(_)) => {
            return Err(format!("{flag} applies only to policy balanced"));
        }
        (Policy::Off, None) => BalancePolicy::Off,
        (Policy::Xor, None) => BalancePolicy::Xor,
        (Policy::Balanced, t) => {
            let mut b = BalancedConfig::default();
            if let Some(t) = t {
                if !(t.is_finite() && t >= 0.0) {
                    return Err(format!("{flag} must be a number >= 0"));
                }
                b.tolerance = t;
            }
            BalancePolicy::Balanced(b)
        }
    })
}

/// Step of the plot's samples for a run of `duration`: a multiple of
/// [`FINE`], at least a second, about [`PLOT_POINTS`] over the run.
pub fn plot_step(duration: Duration) -> Duration {
    (duration / PLOT_POINTS)
        .as_nanos()
        .div_ceil(FINE.as_nanos())
        .try_into()
        .map_or(Duration::from_secs(1), |n: u32| FINE * n)
        .max(Duration::from_secs(1))
}

impl Plan {
    /// The draft's experiment: seed 1, 5 registrars, 1,000 PEs, T4 30 s,
    /// the last two cut off from 60 s for 163 s, balanced policy, 600 s,
    /// a sample every 10 s.
    pub fn draft() -> Self {
        let (outages, targets) = cut_off_last(5, 2, Duration::from_secs(163), None);
        Self {
            seed: 1,
            registrars: 5,
            pes: 1000,
            balance: BalancePolicy::default(),
            t4: Duration::from_secs(30),
            duration: Duration::from_secs(600),
            sample: Duration::from_secs(10),
            outages,
            targets,
            watch_rehoming: false,
            plot_step: None,
            policies: Vec::new(),
            capacities: Vec::new(),
            tuning: Tuning::default(),
        }
    }

    /// The policy registrar `i` runs.
    pub fn policy_of(&self, i: usize) -> &BalancePolicy {
        self.policies.get(i).unwrap_or(&self.balance)
    }

    /// Each registrar's fair share of `total` PEs: in proportion to its
    /// capacity (equal without [`Self::capacities`]).
    pub fn fair_shares(&self, total: usize) -> Vec<f64> {
        if self.capacities.is_empty() {
            return vec![total as f64 / self.registrars as f64; self.registrars];
        }
        let sum: f64 = self.capacities.iter().map(|&c| f64::from(c)).sum();
        self.capacities
            .iter()
            .map(|&c| total as f64 * f64::from(c) / sum)
            .collect()
    }

    /// The highest ratio of a registrar's count to its fair share: max/mean
    /// with equal capacities (1 when nobody owns anything).
    pub fn load_ratio(&self, owned: &[usize]) -> f64 {
        let total: usize = owned.iter().sum();
        if self.capacities.is_empty() || total == 0 {
            // The same arithmetic as before capacities existed, so that
            // equal-capacity runs print the same digits.
            return imbalance(owned);
        }
        owned
            .iter()
            .zip(self.fair_shares(total))
            .map(|(&c, fair)| c as f64 / fair)
            .fold(0.0, f64::max)
    }

    /// The fewest PE moves that bring every registrar down to its fair
    /// share (rounded down) of the plan's PEs.
    pub fn minimum_moves(&self, owned: &[usize]) -> usize {
        if self.capacities.is_empty() {
            return super::minimum_moves(owned, self.pes / self.registrars);
        }
        owned
            .iter()
            .zip(self.fair_shares(self.pes))
            .map(|(&c, fair)| c.saturating_sub(fair as usize))
            .sum()
    }

    /// The IDs each registrar will run with, for every start it has
    /// (a crashed registrar restarts with a fresh state and a new ID):
    /// the capacities are configured by ID before any registrar runs.
    fn registrar_ids(&self) -> Vec<Vec<PrId>> {
        (0..self.registrars)
            .map(|i| {
                let restarts = self
                    .targets
                    .iter()
                    .filter(|t| t.crash.is_some() && t.who.contains(&i))
                    .count();
                (0..=restarts)
                    .map(|k| {
                        // Registrars are the scope's first nodes, so
                        // registrar i is node i; the ID is drawn the way the
                        // registrar itself draws it, from its machine seed.
                        let node = u32::try_from(i).expect("fewer than 2^32 registrars");
                        let k = u32::try_from(k).expect("fewer than 2^32 restarts");
                        let seed = crate::machine_seed(self.seed, node, k);
                        Registrar::new(RegistrarConfig::default(), seed, Instant::ZERO)
                            .expect("the default configuration is valid")
                            .id()
                    })
                    .collect()
            })
            .collect()
    }

    /// Every ID a registrar will have with its capacity.
    fn capacity_map(&self) -> BTreeMap<PrId, u32> {
        self.registrar_ids()
            .into_iter()
            .zip(&self.capacities)
            .flat_map(|(ids, &c)| ids.into_iter().map(move |id| (id, c)))
            .collect()
    }

    /// The end of the (last) outage, if there is one: the recovery.
    pub fn heal_at(&self) -> Option<Duration> {
        self.outages.last().map(|o| o.1)
    }

    /// The outage that starts at `t`.
    pub fn cut_at(&self, t: Duration) -> Option<usize> {
        self.outages.binary_search_by_key(&t, |o| o.0).ok()
    }

    /// The outage that ends at `t`.
    pub fn heal_at_time(&self, t: Duration) -> Option<usize> {
        self.outages.binary_search_by_key(&t, |o| o.1).ok()
    }

    /// The outage going on at `t`.
    pub fn outage_during(&self, t: Duration) -> Option<usize> {
        let started = self.outages.partition_point(|o| o.0 <= t);
        let i = started.checked_sub(1)?;
        (t < self.outages[i].1).then_some(i)
    }

    /// Every registrar some outage hits.
    pub fn hit(&self) -> BTreeSet<usize> {
        self.targets
            .iter()
            .flat_map(|t| t.who.iter().copied())
            .collect()
    }

    /// The phase at `t`.
    pub fn phase(&self, t: Duration) -> Phase {
        // The outage that started last at or before t.
        let started = self.outages.partition_point(|o| o.0 <= t);
        match started.checked_sub(1).map(|i| self.outages[i]) {
            Some((_, heal)) if t < heal => Phase::Outage,
            Some(_) => Phase::Recovered,
            None => Phase::Normal,
        }
    }

    /// The moments the run stops at: every sample, the start and end of
    /// every outage, every [`FINE`] step after the recovery, early in each
    /// outage if [`Self::watch_rehoming`], and every plot step.
    pub fn marks(&self) -> BTreeSet<Duration> {
        let mut marks = BTreeSet::new();
        let every = |from: Duration, step: Duration, marks: &mut BTreeSet<Duration>| {
            let mut t = from;
            while t <= self.duration {
                marks.insert(t);
                t += step;
            }
        };
        every(Duration::ZERO, self.sample, &mut marks);
        for &(cut, heal) in &self.outages {
            marks.extend([cut, heal].into_iter().filter(|t| *t <= self.duration));
        }
        if let Some(heal) = self.heal_at() {
            every(heal, FINE, &mut marks);
        }
        if self.watch_rehoming {
            for &(cut, heal) in &self.outages {
                let mut t = cut;
                while t < heal.min(cut + REHOME_WATCH) && t <= self.duration {
                    marks.insert(t);
                    t += FINE;
                }
            }
        }
        if let Some(step) = self.plot_step {
            every(Duration::ZERO, step, &mut marks);
        }
        marks
    }

    /// Whether `t` is a sample moment.
    pub fn is_sample(&self, t: Duration) -> bool {
        t.as_nanos() % self.sample.as_nanos() == 0
    }

    /// Whether the plot keeps the ownership at `t`: every plot step, and
    /// every mark (each [`FINE`] step) for [`ZOOM`] after the recovery.
    pub fn is_plot_point(&self, t: Duration) -> bool {
        self.plot_step.is_some_and(|step| {
            t.as_nanos() % step.as_nanos() == 0
                || self
                    .heal_at()
                    .is_some_and(|heal| t >= heal && t <= heal + ZOOM)
        })
    }

    /// The scope of the plan, nothing run yet.
    pub fn build(&self) -> Scenario {
        let pool = PoolHandle::try_from("EchoPool").expect("a valid pool handle");
        let mut b = ScenarioBuilder::new(self.seed);
        let capacities = (!self.capacities.is_empty()).then(|| self.capacity_map());
        let nodes = b.registrars(self.registrars, |pr| {
            let mut balance = self.policy_of(pr.index).clone();
            if let (BalancePolicy::Balanced(c), Some(map)) = (&mut balance, &capacities) {
                c.capacities = map.clone();
            }
            pr.config.balance = balance;
            self.tuning.apply(&mut pr.config);
            // PEs know the registrars from their configuration.
            pr.config.announce = false;
        });
        assert!(
            nodes.iter().enumerate().all(|(i, n)| n.index() == i),
            "the registrars are the first nodes (their IDs were drawn so)"
        );
        let m = self.pes;
        // Each PE knows the registrars in an order of its own, as in a
        // deployment (and in the draft's experiment): the PEs of a lost
        // registrar scatter over the others instead of all trying the next.
        let mut order = ChaCha8Rng::seed_from_u64(self.seed ^ HUNT_ORDER_SALT);
        b.pool_elements(m, &pool, |pe| {
            pe.config.hunt.registrars.shuffle(&mut order);
            pe.config.registration_life = Some(3 * self.t4);
            pe.config.t4_reregistration = Some(self.t4);
            let offset = START_SPREAD.mul_f64((pe.index as f64 + 0.5) / m as f64);
            pe.start = Some(Instant::from_epoch(Duration::from_secs(1) + offset));
        });
        b.build()
    }
}

/// Sums of the registrars' takeover suggestion counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Suggestions {
    /// Suggestions sent.
    pub sent: u64,
    /// Suggestions the receiving registrar took.
    pub accepted: u64,
    /// Suggestions the receiving registrar declined.
    pub declined: u64,
}

/// The state of the run at one sample moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Simulated time.
    pub t: Duration,
    /// The phase at `t`.
    pub phase: Phase,
    /// The PEs each registrar owns by its own handlespace (0 when down).
    pub owned: Vec<usize>,
    /// PEs that changed home so far (`PoolElementEvent::HomeChanged`:
    /// takeovers and accepted suggestions).
    pub moves: usize,
    /// Suggestion counters summed over the registrars running now.
    pub suggestions: Suggestions,
    /// ASAP and ENRP messages each registrar sent and received since the
    /// previous sample (since the start for the first).
    pub messages: Vec<u64>,
    /// The time those messages were counted over (zero for the sample at
    /// the start).
    pub interval: Duration,
}

impl Sample {
    /// max/mean of [`Self::owned`], or `None` when nobody owns anything.
    pub fn imbalance(&self) -> Option<f64> {
        (self.owned.iter().sum::<usize>() > 0).then(|| imbalance(&self.owned))
    }

    /// Messages per second of each registrar over [`Self::interval`]
    /// (0 over an empty interval).
    pub fn messages_per_second(&self) -> Vec<f64> {
        let secs = self.interval.as_secs_f64();
        self.messages
            .iter()
            .map(|&m| if secs > 0.0 { m as f64 / secs } else { 0.0 })
            .collect()
    }
}

/// What a whole run measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Ownership when the (last) outage ended; `None` without an outage or
    /// when the run ended first.
    pub at_recovery: Option<Vec<usize>>,
    /// Time from the recovery until max/mean <= [`BALANCED`], judged every
    /// [`FINE`] step at moments when the counts add up to the PEs.
    pub balanced_after: Option<Duration>,
    /// Highest max/mean once balanced.
    pub worst_after: f64,
    /// Time from the recovery until max/mean <= [`BALANCED_TIGHT`].
    pub tight_after: Option<Duration>,
    /// PEs that changed home over the whole run.
    pub moves: usize,
    /// PEs that changed home after the recovery.
    pub moves_after: usize,
    /// PEs that changed home from the first cut to the recovery.
    pub moves_flapping: usize,
    /// With [`Plan::watch_rehoming`]: for each outage, the time from its
    /// start until the registrars it did not hit owned every PE (checked
    /// for [`REHOME_WATCH`]).
    pub rehomed: Vec<Option<Duration>>,
    /// Ownership at the end.
    pub final_owned: Vec<usize>,
    /// Running PEs registered at the end.
    pub registered: usize,
    /// Each registrar's ID at the end (`None`: not running).
    pub registrar_ids: Vec<Option<PrId>>,
    /// With [`Plan::plot_step`]: (time, ownership per registrar) at every
    /// plot point.
    pub plot: Vec<(Duration, Vec<u32>)>,
    /// How often each PE (by index) changed home over the whole run.
    pub pe_moves: Vec<u32>,
}

impl Outcome {
    /// The most home changes of any one PE.
    pub fn most_moves_of_a_pe(&self) -> u32 {
        self.pe_moves.iter().copied().max().unwrap_or(0)
    }

    /// The PEs that changed home at least once.
    pub fn pes_moved(&self) -> usize {
        self.pe_moves.iter().filter(|&&m| m > 0).count()
    }
}

/// One run in progress and what it measured so far.
pub struct Experiment<'p> {
    plan: &'p Plan,
    s: Scenario,
    marks: std::collections::btree_set::IntoIter<Duration>,
    now: Duration,
    out: Outcome,
    /// `moves` when the first outage started.
    moves_at_first_cut: Option<usize>,
    /// Per registrar: (ID, its message total) at the last sample, to count
    /// the messages in between; a new ID is a restarted registrar whose
    /// counters began again at zero.
    messages_seen: Vec<(Option<PrId>, u64)>,
    last_sample: Option<Duration>,
}

impl<'p> Experiment<'p> {
    /// Builds the scope and starts it at time zero (so that the registrar
    /// IDs can be read).
    pub fn new(plan: &'p Plan) -> Self {
        let mut s = plan.build();
        s.world.run_until(Instant::ZERO);
        Self {
            plan,
            s,
            marks: plan.marks().into_iter(),
            now: Duration::ZERO,
            out: Outcome {
                rehomed: vec![None; plan.outages.len()],
                pe_moves: vec![0; plan.pes],
                ..Outcome::default()
            },
            moves_at_first_cut: None,
            messages_seen: vec![(None, 0); plan.registrars],
            last_sample: None,
        }
    }

    /// The plan being run.
    pub fn plan(&self) -> &Plan {
        self.plan
    }

    /// The scope, to look at more than the samples give.
    pub fn scenario(&self) -> &Scenario {
        &self.s
    }

    /// Simulated time reached so far.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Each registrar's ID now (`None`: not running).
    pub fn registrar_ids(&self) -> Vec<Option<PrId>> {
        self.s
            .registrars
            .iter()
            .map(|n| self.s.registrar(*n).map(Registrar::id))
            .collect()
    }

    /// Runs to the next sample moment and returns the sample; `None` once
    /// the run is over.
    pub fn next_sample(&mut self) -> Option<Sample> {
        while let Some(t) = self.marks.next() {
            if let Some(sample) = self.step(t) {
                return Some(sample);
            }
        }
        None
    }

    /// Runs to the end; every sample.
    pub fn run_to_end(&mut self) -> Vec<Sample> {
        std::iter::from_fn(|| self.next_sample()).collect()
    }

    /// What the run measured (call after the last sample; earlier it is
    /// the state so far).
    pub fn finish(mut self) -> Outcome {
        self.out.final_owned = self.owned();
        self.out.registered = self.s.registered();
        self.out.registrar_ids = self.registrar_ids();
        self.out
    }

    fn step(&mut self, t: Duration) -> Option<Sample> {
        let plan = self.plan;
        let heal = plan.heal_at();
        self.s.world.run_until(Instant::from_epoch(t));
        self.now = t;
        let moved = self.drain_moves();
        self.out.moves += moved;
        if self.out.at_recovery.is_some() {
            self.out.moves_after += moved;
        }
        // An outage may end when the next starts: the end first.
        if let Some(i) = plan.heal_at_time(t) {
            self.end_outage(i);
        }
        if let Some(i) = plan.cut_at(t) {
            self.moves_at_first_cut.get_or_insert(self.out.moves);
            self.start_outage(i);
        }
        // Once per mark: counting walks every registrar's handlespace.
        let owned = self.owned();
        if heal == Some(t) {
            self.out.moves_flapping =
                self.out.moves - self.moves_at_first_cut.unwrap_or(self.out.moves);
            self.out.at_recovery = Some(owned.clone());
        }
        if let Some(heal) = heal.filter(|_| self.out.at_recovery.is_some()) {
            self.watch_balance(&owned, t - heal);
        }
        if plan.watch_rehoming {
            self.watch_rehoming(&owned, t);
        }
        if plan.is_plot_point(t) {
            let row = owned.iter().map(|&c| c as u32).collect();
            self.out.plot.push((t, row));
        }
        if !plan.is_sample(t) {
            return None;
        }
        let interval = t - self.last_sample.unwrap_or(t);
        self.last_sample = Some(t);
        Some(Sample {
            t,
            phase: plan.phase(t),
            messages: self.messages_since_last_sample(),
            owned,
            moves: self.out.moves,
            suggestions: self.suggestions(),
            interval,
        })
    }

    /// Counts the PEs that changed home since the last call (and drops the
    /// trace, which would otherwise grow for the whole run).
    fn drain_moves(&mut self) -> usize {
        let first_pe = self.s.pool_elements.first().map_or(0, |n| n.index());
        let mut moved = 0;
        for e in self.s.world.take_trace() {
            if matches!(
                e.what,
                Happening::Event(RoleEvent::PoolElement(PoolElementEvent::HomeChanged { .. }))
            ) {
                moved += 1;
                // The PEs are consecutive nodes.
                if let Some(m) = e
                    .node
                    .index()
                    .checked_sub(first_pe)
                    .and_then(|i| self.out.pe_moves.get_mut(i))
                {
                    *m += 1;
                }
            }
        }
        moved
    }

    /// Starts outage `i`: crashes its registrars, or puts each on a network
    /// side of its own.
    fn start_outage(&mut self, i: usize) {
        let target = &self.plan.targets[i];
        if let Some(mode) = target.crash {
            for &r in &target.who {
                self.s.world.crash(self.s.registrars[r], mode);
            }
            return;
        }
        let rest: Vec<NodeId> = (0..self.plan.registrars)
            .filter(|r| !target.who.contains(r))
            .map(|r| self.s.registrars[r])
            .chain(self.s.pool_elements.iter().copied())
            .collect();
        let alone: Vec<[NodeId; 1]> = target.who.iter().map(|&r| [self.s.registrars[r]]).collect();
        let mut groups: Vec<&[NodeId]> = vec![&rest];
        groups.extend(alone.iter().map(|g| &g[..]));
        self.s.world.partition(&groups);
    }

    /// Ends outage `i`: restarts its registrars, or heals the network.
    fn end_outage(&mut self, i: usize) {
        let target = &self.plan.targets[i];
        if target.crash.is_none() {
            self.s.world.heal();
            return;
        }
        for &r in &target.who {
            let node = self.s.registrars[r];
            if !self.s.world.is_running(node) {
                self.s.world.restart(node);
            }
        }
    }

    /// Times the re-homing in the outage going on at `t`.
    fn watch_rehoming(&mut self, owned: &[usize], t: Duration) {
        let Some(i) = self.plan.outage_during(t) else {
            return;
        };
        if self.out.rehomed[i].is_some() {
            return;
        }
        let who = &self.plan.targets[i].who;
        let others: usize = owned
            .iter()
            .enumerate()
            .filter(|(r, _)| !who.contains(r))
            .map(|(_, c)| c)
            .sum();
        if others >= self.plan.pes {
            self.out.rehomed[i] = Some(t - self.plan.outages[i].0);
        }
    }

    /// Each registrar's count of the PEs it owns by its own handlespace.
    fn owned(&self) -> Vec<usize> {
        self.s
            .registrars
            .iter()
            .map(|n| self.s.registrar(*n).map_or(0, |r| r.owned_count(r.id())))
            .collect()
    }

    fn watch_balance(&mut self, owned: &[usize], since_heal: Duration) {
        // A PE in the middle of moving is counted at both registrars or at
        // neither: judge only consistent moments.
        if owned.iter().sum::<usize>() != self.plan.pes {
            return;
        }
        let im = self.plan.load_ratio(owned);
        let out = &mut self.out;
        if out.balanced_after.is_none() && im <= BALANCED {
            out.balanced_after = Some(since_heal);
        }
        if out.tight_after.is_none() && im <= BALANCED_TIGHT {
            out.tight_after = Some(since_heal);
        }
        if out.balanced_after.is_some() {
            out.worst_after = out.worst_after.max(im);
        }
    }

    fn suggestions(&self) -> Suggestions {
        let mut sum = Suggestions::default();
        for r in self
            .s
            .registrars
            .iter()
            .filter_map(|n| self.s.registrar(*n))
        {
            let st = r.stats();
            sum.sent += st.suggestions_sent;
            sum.accepted += st.suggestions_accepted;
            sum.declined += st.suggestions_declined;
        }
        sum
    }

    fn messages_since_last_sample(&mut self) -> Vec<u64> {
        let mut counts = Vec::with_capacity(self.s.registrars.len());
        for (i, n) in self.s.registrars.iter().enumerate() {
            let now = self.s.registrar(*n).map(|r| {
                let st = r.stats();
                let total: u64 = st.sent.iter().chain(st.received.iter()).map(|c| c.1).sum();
                (r.id(), total)
            });
            let (seen_id, seen) = self.messages_seen[i];
            counts.push(match now {
                None => 0,
                Some((id, total)) => {
                    self.messages_seen[i] = (Some(id), total);
                    // A restart starts the counters again.
                    if seen_id == Some(id) && total >= seen {
                        total - seen
                    } else {
                        total
                    }
                }
            });
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(down: usize, outage: u64, duration: u64, sample_ms: u64) -> Plan {
        let (outages, targets) = cut_off_last(3, down, Duration::from_secs(outage), None);
        Plan {
            registrars: 3,
            pes: 10,
            balance: BalancePolicy::Off,
            duration: Duration::from_secs(duration),
            sample: Duration::from_millis(sample_ms),
            outages,
            targets,
            ..Plan::draft()
        }
    }

    #[test]
    fn marks_cover_samples_outage_and_fine_steps_after_the_heal() {
        let p = plan(1, 25, 100, 30_000);
        let marks = p.marks();
        let s = Duration::from_secs;
        for t in [s(0), s(30), s(60), s(90), s(85), s(85) + FINE, s(100)] {
            assert!(marks.contains(&t), "{t:?} missing");
        }
        assert!(
            !marks.contains(&(s(85) - FINE)),
            "fine steps before the heal"
        );
        assert!(p.is_sample(s(90)) && !p.is_sample(s(85)));
        assert_eq!(p.phase(s(59)), Phase::Normal);
        assert_eq!(p.phase(s(60)), Phase::Outage);
        assert_eq!(p.phase(s(85)), Phase::Recovered);
    }

    #[test]
    fn without_down_registrars_there_is_no_outage() {
        let p = plan(0, 25, 100, 10_000);
        assert_eq!(p.marks().len(), 11);
        assert_eq!(p.phase(Duration::from_secs(70)), Phase::Normal);
    }

    #[test]
    fn flapping_outages_repeat_and_the_recovery_is_the_last_heal() {
        let s = Duration::from_secs;
        let mut p = plan(1, 20, 600, 10_000);
        (p.outages, p.targets) = cut_off_last(3, 1, s(20), Some((s(60), 6)));
        assert_eq!(p.outages.len(), 6);
        assert_eq!(p.outages[1], (s(120), s(140)));
        assert_eq!(p.heal_at(), Some(s(380)));
        assert!(p.cut_at(s(180)).is_some() && p.heal_at_time(s(200)).is_some());
        assert!(p.cut_at(s(200)).is_none());
        assert_eq!(p.phase(s(79)), Phase::Outage);
        assert_eq!(p.phase(s(80)), Phase::Recovered);
        assert_eq!(p.phase(s(130)), Phase::Outage);
        assert_eq!(p.outage_during(s(130)), Some(1));
        assert_eq!(p.outage_during(s(150)), None);
        let marks = p.marks();
        assert!(
            p.outages
                .iter()
                .all(|(c, h)| marks.contains(c) && marks.contains(h))
        );
    }

    #[test]
    fn the_plot_keeps_a_bounded_number_of_samples() {
        assert_eq!(plot_step(Duration::from_secs(600)), Duration::from_secs(1));
        // A day: 43.2 s steps, about 2,000 samples plus the zoom after the
        // recovery.
        let mut day = plan(1, 20, 86_400, 10_000);
        day.plot_step = Some(plot_step(day.duration));
        assert_eq!(day.plot_step, Some(Duration::from_millis(43_200)));
        let kept = day
            .marks()
            .into_iter()
            .filter(|t| day.is_plot_point(*t))
            .count();
        assert!(kept <= 2_001 + 901, "{kept}");
    }

    #[test]
    fn capacities_are_configured_for_the_ids_the_registrars_draw() {
        let s = Duration::from_secs;
        let mut p = plan(1, 25, 100, 10_000);
        p.targets[0].crash = Some(CrashMode::Host);
        p.capacities = vec![3, 1, 1];
        let ids = p.registrar_ids();
        assert_eq!(ids.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 2]);
        let mut run = Experiment::new(&p);
        let first: Vec<PrId> = run.registrar_ids().into_iter().flatten().collect();
        assert_eq!(first, ids.iter().map(|v| v[0]).collect::<Vec<_>>());
        while run.now() < s(90) {
            run.next_sample();
        }
        // pr2 restarted at 85 s with its second ID.
        assert_eq!(run.registrar_ids()[2], Some(ids[2][1]));
        assert_eq!(p.capacity_map().get(&ids[2][1]), Some(&1));
        assert_eq!(p.capacity_map().get(&ids[0][0]), Some(&3));
    }

    #[test]
    fn fair_shares_follow_the_capacities() {
        let mut p = plan(0, 25, 100, 10_000);
        assert_eq!(p.fair_shares(30), [10.0; 3]);
        assert_eq!(p.load_ratio(&[20, 10, 0]), imbalance(&[20, 10, 0]));
        p.capacities = vec![2, 1, 1];
        assert_eq!(p.fair_shares(40), [20.0, 10.0, 10.0]);
        assert_eq!(p.load_ratio(&[20, 10, 10]), 1.0);
        assert!((p.load_ratio(&[10, 15, 15]) - 1.5).abs() < 1e-9);
        p.pes = 40;
        assert_eq!(p.minimum_moves(&[10, 30, 0]), 20);
    }

    #[test]
    fn a_tolerance_needs_the_balanced_policy() {
        assert!(balance_policy(Policy::Xor, Some(0.1), "--tolerance").is_err());
        assert!(balance_policy(Policy::Balanced, Some(-1.0), "tolerance").is_err());
        match balance_policy(Policy::Balanced, Some(0.2), "tolerance") {
            Ok(BalancePolicy::Balanced(b)) => assert_eq!(b.tolerance, 0.2),
            other => panic!("{other:?}"),
        }
    }
}
