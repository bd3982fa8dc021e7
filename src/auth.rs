//! Authentication: password hashing (argon2id), session tokens (random 256-bit, stored as SHA-256),
//! one-time passwords, and login throttling.
//!
//! Throttling slows guessing without locking the owner out for good: after N failures for an account
//! (or M for one client address) each further attempt must wait 2^k seconds, capped; the counters
//! decay after a quiet period and a successful login clears the account's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("too many failed logins; try again in {0} s")]
    Throttled(u64),
    #[error("the session is missing, expired or revoked; log in again")]
    NoSession,
    #[error("this account is disabled; ask a manager")]
    Disabled,
    #[error("password hashing failed")]
    Hash,
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|_| AuthError::Hash)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash of a random password, used to spend the same time on unknown usernames (no user probing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

/// A new session token (256 random bits, URL-safe hex) and the hash we store.
pub fn new_token() -> (String, String) {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let token = hex::encode(b);
    let h = token_hash(&token);
    (token, h)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A one-time password a person can type on a tablet: 16 characters without look-alikes.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char).collect()
}

/// Minimum rules for a chosen password; the message is shown to the user.
pub fn check_new_password(p: &str) -> Result<(), &'static str> {
    if p.chars().count() < 10 {
        return Err("must be at least 10 characters");
    }
    if p.len() > 256 {
        return Err("must be at most 256 bytes");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// In-memory login throttle keyed by account and by client address.
pub struct Throttle {
    account_threshold: u32,
    address_threshold: u32,
    max_delay: Duration,
    decay: Duration,
    accounts: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    pub fn new(account_threshold: u32, address_threshold: u32, max_delay: Duration) -> Throttle {
        Throttle {
            account_threshold,
            address_threshold,
            max_delay,
            // Forget failures after a quiet quarter of an hour (or the max delay, if longer).
            decay: max_delay.max(Duration::from_secs(900)),
            accounts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    fn wait_for(&self, f: Option<&Failures>, threshold: u32, now: Instant) -> Option<Duration> {
        let f = f?;
        if f.count < threshold || now.duration_since(f.last) > self.decay {
            return None;
        }
        let exp = (f.count - threshold).min(20);
        let delay = Duration::from_secs(1u64 << exp).min(self.max_delay);
        let elapsed = now.duration_since(f.last);
        (elapsed < delay).then(|| delay - elapsed)
    }

    /// Err(seconds to wait) if this attempt must be refused without checking the password.
    pub fn check(&self, account: &str, addr: &str) -> Result<(), u64> {
        let now = Instant::now();
        let acc = self.accounts.lock().ok().and_then(|m| self.wait_for(m.get(account), self.account_threshold, now));
        let adr = self.addresses.lock().ok().and_then(|m| self.wait_for(m.get(addr), self.address_threshold, now));
        match acc.max(adr) {
            Some(d) => Err(d.as_secs().max(1)),
            None => Ok(()),
        }
    }

    pub fn failed(&self, account: &str, addr: &str) {
        let now = Instant::now();
        let decay = self.decay;
        let bump = |m: &Mutex<HashMap<String, Failures>>, key: &str| {
            if let Ok(mut m) = m.lock() {
                // Bound memory under a spray of random usernames: drop stale entries when large.
                if m.len() > 10_000 {
                    m.retain(|_, f| now.duration_since(f.last) < decay);
                }
                let e = m.entry(key.to_string()).or_insert(Failures { count: 0, last: now });
                if now.duration_since(e.last) > decay {
                    e.count = 0;
                }
                e.count += 1;
                e.last = now;
            }
        };
        bump(&self.accounts, account);
        bump(&self.addresses, addr);
    }

    pub fn succeeded(&self, account: &str) {
        if let Ok(mut m) = self.accounts.lock() {
            m.remove(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_256_bit_and_stored_hashed() {
        let (t, h) = new_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, h);
        assert_eq!(token_hash(&t), h);
        assert_ne!(new_token().0, t);
    }

    #[test]
    fn throttle_delays_after_threshold_and_is_bounded() {
        let th = Throttle::new(3, 100, Duration::from_secs(4));
        for _ in 0..3 {
            assert!(th.check("alice", "1.2.3.4").is_ok());
            th.failed("alice", "1.2.3.4");
        }
        let wait = th.check("alice", "1.2.3.4").unwrap_err();
        assert!((1..=4).contains(&wait), "{wait}");
        // Other accounts are not affected by alice's failures.
        assert!(th.check("bob", "5.6.7.8").is_ok());
        for _ in 0..10 {
            th.failed("alice", "1.2.3.4");
        }
        // Capped: never more than the configured maximum.
        assert!(th.check("alice", "1.2.3.4").unwrap_err() <= 4);
        th.succeeded("alice");
        assert!(th.check("alice", "9.9.9.9").is_ok());
    }

    #[test]
    fn one_time_passwords_are_long_and_random() {
        let a = generate_password();
        assert_eq!(a.chars().count(), 16);
        assert_ne!(a, generate_password());
        assert!(check_new_password(&a).is_ok());
        assert!(check_new_password("short").is_err());
    }
}
