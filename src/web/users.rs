//! Basic authentication against `basic_auth_users` (bcrypt hashes), and the
//! two roles: scrape (every user) and admin (`promsnmp_admin_users`, or every
//! user when that key is absent).
//!
//! bcrypt is slow on purpose: checks run on the blocking pool, at most
//! [`CONCURRENT_CHECKS`] at a time (a flood of wrong passwords costs those
//! cores, not every core), and a password once verified is remembered
//! (keyed by user, hash and a keyed digest of the password, never the
//! password itself), as the toolkit does, so a scrape does not pay bcrypt
//! every time.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use tokio::sync::Semaphore;

use crate::inventory::Secret;

/// bcrypt checks running at once.
pub const CONCURRENT_CHECKS: usize = 2;
/// Verified passwords remembered (the set is emptied when full).
const REMEMBERED: usize = 1024;

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `None` without users configured (anyone who reaches the port).
    pub user: Option<String>,
    pub admin: bool,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("credentials required")]
    Missing,
    #[error("wrong user or password")]
    Wrong,
}

impl AuthError {
    pub fn label(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Wrong => "wrong",
        }
    }
}

/// The users of one web configuration.
pub struct Users {
    hashes: BTreeMap<String, Secret>,
    /// `None`: every user is an admin.
    admins: Option<HashSet<String>>,
    checks: Arc<Semaphore>,
    remembered: Mutex<HashSet<(String, u64)>>,
    /// Keys the digest of remembered passwords (random per process).
    digest_key: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.hashes.keys().collect::<Vec<_>>())
            .field("admins", &self.admins)
            .finish()
    }
}

impl Users {
    pub fn new(hashes: BTreeMap<String, Secret>, admins: Option<Vec<String>>) -> Users {
        Users {
            hashes,
            admins: admins.map(|a| a.into_iter().collect()),
            checks: Arc::new(Semaphore::new(CONCURRENT_CHECKS)),
            remembered: Mutex::new(HashSet::new()),
            digest_key: Default::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn count(&self) -> usize {
        self.hashes.len()
    }

    /// Whether `promsnmp_admin_users` is absent (every user is an admin).
    pub fn all_admins(&self) -> bool {
        self.admins.is_none()
    }

    /// Checks an `Authorization` header.
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Identity, AuthError> {
        if self.hashes.is_empty() {
            return Ok(Identity {
                user: None,
                admin: true,
            });
        }
        let (user, password) = authorization
            .and_then(parse_basic)
            .ok_or(AuthError::Missing)?;
        let hash = self.hashes.get(&user);
        // Unknown users cost a bcrypt check too: timing does not tell them apart.
        let hash = hash
            .map(|h| h.expose().to_string())
            .unwrap_or_else(|| unknown_user_hash().to_string());
        let key = (user.clone(), self.digest(&hash, &password));
        let known = self.hashes.contains_key(&user);
        let remembered = known
            && self
                .remembered
                .lock()
                .map(|r| r.contains(&key))
                .unwrap_or(false);
        if !remembered {
            let _permit = self
                .checks
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| AuthError::Wrong)?;
            let ok = tokio::task::spawn_blocking(move || {
                bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if !(ok && known) {
                return Err(AuthError::Wrong);
            }
            if let Ok(mut r) = self.remembered.lock() {
                if r.len() >= REMEMBERED {
                    r.clear();
                }
                r.insert(key);
            }
        }
        let admin = self.admins.as_ref().is_none_or(|a| a.contains(&user));
        Ok(Identity {
            user: Some(user),
            admin,
        })
    }

    fn digest(&self, hash: &str, password: &str) -> u64 {
        let mut h = self.digest_key.build_hasher();
        h.write(hash.as_bytes());
        h.write_u8(0);
        h.write(password.as_bytes());
        h.finish()
    }
}

/// `Basic base64(user:password)`, scheme case-insensitive.
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A hash no password matches, checked for unknown users.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let random = uuid::Uuid::new_v4().to_string();
        bcrypt::hash(random, bcrypt::DEFAULT_COST).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    fn two_users(admins: Option<Vec<String>>) -> Users {
        let mut hashes = BTreeMap::new();
        hashes.insert(
            "alice".to_string(),
            Secret(bcrypt::hash("wonderland", 4).unwrap()),
        );
        hashes.insert(
            "bob".to_string(),
            Secret(bcrypt::hash("builder", 5).unwrap()),
        );
        Users::new(hashes, admins)
    }

    #[tokio::test]
    async fn users_are_checked_against_their_hash_and_given_their_role() {
        let users = two_users(Some(vec!["alice".into()]));
        let alice = users
            .authenticate(Some(&header("alice", "wonderland")))
            .await;
        assert_eq!(
            alice.unwrap(),
            Identity {
                user: Some("alice".into()),
                admin: true
            }
        );
        // Twice: the second is remembered, with the same answer.
        let bob = users
            .authenticate(Some(&header("bob", "builder")))
            .await
            .unwrap();
        assert!(!bob.admin);
        let bob = users
            .authenticate(Some(&header("bob", "builder")))
            .await
            .unwrap();
        assert!(!bob.admin);
        for (h, expected) in [
            (header("alice", "builder"), AuthError::Wrong),
            (header("carol", "wonderland"), AuthError::Wrong),
            (header("alice", ""), AuthError::Wrong),
            (b"Bearer abc".to_vec(), AuthError::Missing),
            (b"Basic !!!".to_vec(), AuthError::Missing),
        ] {
            assert_eq!(users.authenticate(Some(&h)).await, Err(expected));
        }
        assert_eq!(users.authenticate(None).await, Err(AuthError::Missing));
        assert!(
            two_users(None)
                .authenticate(Some(&header("bob", "builder")))
                .await
                .unwrap()
                .admin
        );
    }

    #[tokio::test]
    async fn without_users_everyone_is_an_admin() {
        let users = Users::new(BTreeMap::new(), None);
        assert!(users.authenticate(None).await.unwrap().admin);
    }

    #[test]
    fn debug_shows_names_not_hashes() {
        let shown = format!("{:?}", two_users(None));
        assert!(shown.contains("alice") && !shown.contains("$2"), "{shown}");
    }
}
