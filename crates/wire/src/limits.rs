//! Explicit bounds on what the decoder accepts.
//!
//! Every one of these is enforced while decoding, so a hostile peer cannot
//! make the decoder allocate or recurse beyond them.

/// Largest message the header's 16-bit length field can describe.
///
/// Decoding accepts lengths up to the largest multiple of four below it
/// (65532): a longer message, once padded, could not be encoded again.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// Deepest nesting of parameters inside one another that is accepted.
///
/// The deepest legal structure is a Pool Element (1) holding a transport (2)
/// holding an address (3); an Operation Error cause may embed a further
/// parameter, so one more level is allowed as slack.
pub const MAX_NESTING_DEPTH: usize = 4;

/// Most IP addresses accepted in one SCTP transport parameter.
pub const MAX_ADDRESSES: usize = 32;

/// Longest pool handle accepted, in bytes.
///
/// RFC 5354 leaves the length open; handles are human-chosen names, and a
/// bound keeps the handlespace's keys small.
pub const MAX_POOL_HANDLE_LEN: usize = 256;

/// Most error causes accepted in one Operation Error parameter.
pub const MAX_CAUSES: usize = 64;

/// Most unrecognized-parameter reports collected while decoding one message.
pub const MAX_REPORTS: usize = 16;

/// Most transport parameters accepted in one ASAP_SERVER_ANNOUNCE.
pub const MAX_ANNOUNCED_TRANSPORTS: usize = 16;
