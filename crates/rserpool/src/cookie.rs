//! Signed cookies: how a pool element hands session state to the pool
//! user so that another PE can trust it after a failover.
//!
//! RFC 5352 §3.8 leaves the cookie opaque and says the PE that makes it
//! should sign it and the PE that receives it should verify it, with keys
//! the pool's PEs share by their own means. [`CookieSigner`] does that
//! with HMAC-SHA-256 and one key for the pool: a cookie is a version byte,
//! the state, and a 32-byte tag over both.
//!
//! ```
//! use rserpool::CookieSigner;
//! let signer = CookieSigner::new(b"the pool's shared secret");
//! let cookie = signer.sign(b"counter=41");
//! assert_eq!(&signer.verify(&cookie).unwrap()[..], b"counter=41");
//! let mut forged = cookie.to_vec();
//! forged[1] ^= 1;
//! assert!(signer.verify(&forged).is_err());
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const TAG: usize = 32;

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
        let mut out = BytesMut::with_capacity(1 + state.len() + TAG);
        out.put_u8(VERSION);
        out.put_slice(state);
        let mut mac = self.mac.clone();
        mac.update(&out);
        out.put_slice(&mac.finalize().into_bytes());
        out.freeze()
    }

    /// The state in `cookie`, if this pool's key signed it.
    pub fn verify(&self, cookie: &[u8]) -> Result<Bytes, CookieError> {
        if cookie.len() < 1 + TAG {
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
        Ok(Bytes::copy_from_slice(&body[1..]))
    }
}
