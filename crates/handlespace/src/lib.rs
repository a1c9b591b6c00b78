//! The RSerPool handlespace: everything a registrar knows about pools and
//! pool elements, and every decision about which PEs a pool user gets.
//!
//! * Registration rules of RFC 5352 §3.1 / RFC 5353 §3.3 with the Operation
//!   Error cause each violation gets ([`RegisterError::cause`]).
//! * Indices: by pool (selection), by home registrar (ownership counts and
//!   sets for takeover and balance), by deadline (registration life and
//!   keep-alive, next deadline in O(1)), and (pool handle, PE ID) order for
//!   paged handle table transfers.
//! * The per-registrar PE checksum of RFC 5353 §3.6.2, kept incrementally.
//! * Every selection policy of RFC 5356, the delay-sensitive ones of
//!   draft-dreibholz-rserpool-delay and the reference implementation's
//!   private ones, deterministic for a given RNG.
//!
//! Time is a `u64` in the caller's unit; randomness comes from the caller.
//!
//! # Structure and costs
//!
//! | what | structure | cost |
//! |---|---|---|
//! | entries | slab of [`PeEntry`] addressed by [`EntryId`], plus compact side arrays (selection links, positions, timers) | - |
//! | (pool, PE ID) -> entry | seeded hash map | O(1) |
//! | pools | seeded hash map by handle, B-tree in handle order | O(1) / O(log P) |
//! | PE ID order in a pool | B-tree (paging only) | O(log n) |
//! | RR, PRIO, LU family, WRR | key-ordered groups of circular lists (round robin within ties) | update O(log n), resolve O(k) |
//! | RAND | member array | resolve O(k) |
//! | WRAND, RLU family, WRAND-DPF | Fenwick tree of weights | update O(log n), resolve O(k log n) |
//! | ownership | per-registrar member array, count and checksum | O(1) |
//! | deadlines | radix heap (monotone), lazy re-arm | next O(1), arm O(1), pop amortised O(bits) |
//! | custody (registration association, unreachability reports, outstanding keep-alive) | side array; per-association intrusive lists | O(1); an association's PEs O(its PEs) |
//!
//! Identical re-registrations keep the stored copy. Performance figures against the
//! reference implementation are in `docs/PERFORMANCE.md` (bench:
//! `cargo bench -p rserpool-handlespace --bench handlespace`).
//!
//! ```
//! use rserpool_handlespace::Handlespace;
//! use rserpool_wire::*;
//! use rand::SeedableRng;
//!
//! let mut hs = Handlespace::default();
//! let pool = PoolHandle::try_from("EchoPool").unwrap();
//! let pe = PoolElement {
//!     id: PeId(1),
//!     home_registrar: PrId::new(7),
//!     registration_life: RegistrationLife(30_000),
//!     user_transport: UserTransport::Address(TransportAddress::sctp(
//!         7, TransportUse::DataOnly, vec!["10.0.0.1".parse().unwrap()])),
//!     policy: Policy::RoundRobin,
//!     asap_transport: None,
//! };
//! hs.register(&pool, pe, 0).unwrap();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let mut out = Vec::new();
//! hs.resolve(&pool, None, &mut rng, &mut out).unwrap();
//! assert_eq!(hs.entry(out[0]).unwrap().id(), PeId(1));
//! assert_eq!(hs.owned_count(PrId::new(7).unwrap()), 1);
//! ```

mod custody;
mod entry;
mod error;
mod handlespace;
mod hashing;
mod id_order;
mod key_index;
mod owners;
mod pool;
mod selection;
mod timers;

pub use entry::{EntryId, PeEntry};
pub use error::RegisterError;
pub use handlespace::{
    Config, Expired, Handlespace, OwnerChange, RegisterOutcome, Removed, UnknownPool,
};
pub use pool::{PoolInfo, TransportKind};
pub use timers::TimerKind;
