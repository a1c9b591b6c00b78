//! Service state in signed cookies: `key=value` pairs, one per line.

use rserpool::CookieSigner;
use std::collections::BTreeMap;

/// A service's state as it travels in a cookie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    fields: BTreeMap<String, String>,
}

impl Checkpoint {
    /// A checkpoint of `service` (the name guards against a cookie of
    /// another service in the same pool).
    pub fn new(service: &str) -> Self {
        let mut c = Self::default();
        c.set("service", service);
        c
    }

    pub fn set(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.fields.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// The signed cookie.
    pub fn seal(&self, signer: &CookieSigner) -> bytes::Bytes {
        let text: String = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        signer.sign(text.as_bytes())
    }

    /// The checkpoint in `cookie`, if the pool's key signed it and it is
    /// `service`'s; the reason otherwise.
    pub fn open(cookie: &[u8], signer: &CookieSigner, service: &str) -> Result<Self, String> {
        let body = signer.verify(cookie).map_err(|e| e.to_string())?;
        let text = std::str::from_utf8(&body).map_err(|_| "cookie is not text".to_string())?;
        let mut c = Self::default();
        for line in text.lines() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("malformed cookie line `{line}`"))?;
            c.set(k, v);
        }
        match c.get("service") {
            Some(s) if s == service => Ok(c),
            other => Err(format!("cookie of service {other:?}, not {service}")),
        }
    }
}

/// Opens a cookie echoed to `service`, logging (and ignoring) bad ones.
pub fn restore(cookie: &[u8], signer: &CookieSigner, service: &str) -> Option<Checkpoint> {
    match Checkpoint::open(cookie, signer, service) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("cookie echo refused ({e}); starting the session afresh");
            None
        }
    }
}
