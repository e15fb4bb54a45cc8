//! HTTP basic auth against the bcrypt hashes of the web config.
//!
//! bcrypt is slow on purpose (about 50 ms at cost 10), so a check runs on the blocking pool,
//! and a header that was accepted once is remembered (at most [`CACHE`] of them, dropped
//! all together when full): Prometheus sends the same header at every scrape. What is
//! remembered is the header as received, in memory only, like the toolkit's own cache.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;

const CACHE: usize = 64;

/// The paths left open for the kubelet's probes, which cannot send credentials portably.
pub const OPEN_PATHS: [&str; 2] = ["/livez", "/readyz"];

#[derive(Clone)]
pub struct BasicAuth {
    users: Arc<BTreeMap<String, String>>,
    accepted: Arc<Mutex<HashSet<String>>>,
}

impl BasicAuth {
    /// `None` when there are no users: nothing to check.
    pub fn new(users: BTreeMap<String, String>) -> Option<BasicAuth> {
        (!users.is_empty()).then(|| BasicAuth {
            users: Arc::new(users),
            accepted: Arc::default(),
        })
    }

    /// Whether the request carries the credentials of a configured user.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if self
            .accepted
            .lock()
            .map(|a| a.contains(value))
            .unwrap_or(false)
        {
            return true;
        }
        let Some((user, password)) = decode(value) else {
            return false;
        };
        let Some(hash) = self.users.get(&user).cloned() else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok {
            if let Ok(mut a) = self.accepted.lock() {
                if a.len() >= CACHE {
                    a.clear();
                }
                a.insert(value.to_owned());
            }
        }
        ok
    }
}

/// `Basic base64(user:password)` → (user, password).
fn decode(value: &str) -> Option<(String, String)> {
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn header(user: &str, pw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn only_the_right_password_passes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(BTreeMap::from([("prom".to_owned(), hash)])).unwrap();
        assert!(auth.allows(&header("prom", "s3cret")).await);
        // Twice: the second answer comes from the cache and must agree.
        assert!(auth.allows(&header("prom", "s3cret")).await);
        assert!(!auth.allows(&header("prom", "wrong")).await);
        assert!(!auth.allows(&header("other", "s3cret")).await);
        assert!(!auth.allows(&HeaderMap::new()).await);
        assert!(BasicAuth::new(BTreeMap::new()).is_none());
    }
}
