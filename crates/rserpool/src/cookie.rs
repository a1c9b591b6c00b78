//! Signed cookies: how a pool element hands session state to the pool
//! user so that another PE can trust it after a failover.
//!
//! RFC 5352 §3.8 leaves the cookie opaque and says the PE that makes it
//! should sign it and the PE that receives it should verify it, with keys
//! the pool's PEs share by their own means. [`CookieSigner`] does that
//! with HMAC-SHA-256 and one key for the pool: a cookie is a version byte,
//! a count of padding bytes, the state, that many zero bytes, and a 32-byte
//! tag over all before it. The padding makes every cookie a multiple of 4
//! bytes long: the reference implementation counts parameter padding in
//! the Cookie parameter's length and refuses a cookie whose length is not
//! a multiple of 4, so only such cookies survive a pool user of it.
//!
//! ```
//! use rserpool::CookieSigner;
//! let signer = CookieSigner::new(b"the pool's shared secret");
//! let cookie = signer.sign(b"counter=41");
//! assert_eq!(&signer.verify(&cookie).unwrap()[..], b"counter=41");
//! assert_eq!(cookie.len() % 4, 0);
//! let mut forged = cookie.to_vec();
//! forged[2] ^= 1;
//! assert!(signer.verify(&forged).is_err());
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 2;
const TAG: usize = 32;
/// Version byte and padding count.
const HEAD: usize = 2;

/// Signs and verifies cookies with a key shared by a pool's PEs.
#[derive(Clone)]
pub struct CookieSigner {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSigner { .. }")
    }
}

/// Why a cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Shorter than a version byte and a tag.
    #[error("cookie too short")]
    TooShort,
    /// Made by another format version.
    #[error("unknown cookie version {0}")]
    Version(u8),
    /// The tag does not match: another key made it, or it was changed.
    #[error("cookie signature does not verify")]
    BadSignature,
}

impl CookieSigner {
    /// A signer with `key` (any length; 32 random bytes are plenty).
    pub fn new(key: &[u8]) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The cookie carrying `state`.
    pub fn sign(&self, state: &[u8]) -> Bytes {
        let pad = (4 - (HEAD + state.len() + TAG) % 4) % 4;
        let mut out = BytesMut::with_capacity(HEAD + state.len() + pad + TAG);
        out.put_u8(VERSION);
        out.put_u8(pad as u8);
        out.put_slice(state);
        out.put_bytes(0, pad);
        let mut mac = self.mac.clone();
        mac.update(&out);
        out.put_slice(&mac.finalize().into_bytes());
        out.freeze()
    }

    /// The state in `cookie`, if this pool's key signed it.
    pub fn verify(&self, cookie: &[u8]) -> Result<Bytes, CookieError> {
        if cookie.len() < HEAD + TAG {
            return Err(CookieError::TooShort);
        }
        if cookie[0] != VERSION {
            return Err(CookieError::Version(cookie[0]));
        }
        let (body, tag) = cookie.split_at(cookie.len() - TAG);
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(tag)
            .map_err(|_| CookieError::BadSignature)?;
        let pad = usize::from(body[1]);
        let state = body[HEAD..]
            .len()
            .checked_sub(pad)
            .ok_or(CookieError::TooShort)?;
        Ok(Bytes::copy_from_slice(&body[HEAD..HEAD + state]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_length_signs_to_a_multiple_of_four_and_verifies() {
        let signer = CookieSigner::new(b"key");
        for n in 0..40 {
            let state: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let cookie = signer.sign(&state);
            assert_eq!(cookie.len() % 4, 0, "state of {n} bytes");
            assert_eq!(signer.verify(&cookie).unwrap(), state);
        }
    }

    #[test]
    fn changed_truncated_or_foreign_cookies_are_refused() {
        let signer = CookieSigner::new(b"key");
        let cookie = signer.sign(b"state");
        for i in 0..cookie.len() {
            let mut c = cookie.to_vec();
            c[i] ^= 0x40;
            assert!(signer.verify(&c).is_err(), "byte {i} changed");
        }
        assert_eq!(signer.verify(&cookie[..10]), Err(CookieError::TooShort));
        assert_eq!(
            CookieSigner::new(b"other").verify(&cookie),
            Err(CookieError::BadSignature)
        );
    }
}
