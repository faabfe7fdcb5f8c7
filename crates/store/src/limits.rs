//! Rate-limit counters the nodes share: how many times something happened in a fixed window.
//!
//! The server's login and mail limits count failed logins, code guesses and mail-sending
//! requests per account and per client address. With one node it keeps them in memory; with
//! several nodes on PostgreSQL they live here, so that an attacker who spreads guesses over
//! the nodes behind a load balancer meets one limit (see `homebase_server::limits`).
//!
//! A counter is a row `(key, count, expires_at)`: the caller picks the key (a hash of what it
//! counts), the store keeps the count of the current window, and a window that has ended
//! starts again at zero. [`Store::hit_limits`] checks and counts several counters in one
//! transaction, each row locked (PostgreSQL: the upsert's row lock; SQLite: the write lock), so
//! that concurrent hits on any number of nodes cannot all pass a check: of N concurrent hits on
//! a counter with room for M, exactly M pass. Rows of ended windows are deleted by
//! [`Store::sweep_limits`]. The decision (which counter refuses, how long until it may be tried
//! again) is [`decide`], shared by both backends.

use std::time::Duration;

use rusqlite::params;

use crate::error::{Result, StoreError};
use crate::{Store, sqlite::Sqlite};

/// The longest key a counter may have.
pub const MAX_LIMIT_KEY: usize = 200;

/// One counter that [`Store::hit_limits`] checks and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCounter {
    /// What is counted: the caller's key (a hash, say), 1 to [`MAX_LIMIT_KEY`] bytes.
    pub key: String,
    /// Hits allowed per window; at this count the counter is over its limit.
    pub max: u32,
    /// Whether a counter over its limit refuses the hit (then nothing is counted anywhere), or
    /// counts it anyway and reports that it is over ([`LimitHit::Counted`]).
    pub refuse: bool,
}

/// What [`Store::hit_limits`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// Every counter was counted. `over[i]` is `Some(time left in the window)` when counter
    /// `i` was already at its limit (a counter that does not refuse).
    Counted { over: Vec<Option<Duration>> },
    /// Counter `index` is at its limit and refuses: nothing was counted. It may be tried again
    /// after `retry_after`.
    Refused { index: usize, retry_after: Duration },
}

/// The decision of a hit, from each counter's state `(count, expires_at)` in the current
/// window (a counter whose window has ended is `(0, now + window)`).
pub(crate) fn decide(counters: &[LimitCounter], states: &[(i64, i64)], now: i64) -> LimitHit {
    let left = |expires_at: i64| Duration::from_millis(expires_at.saturating_sub(now).max(0) as u64);
    let mut over = Vec::with_capacity(counters.len());
    for (index, (counter, (count, expires_at))) in counters.iter().zip(states).enumerate() {
        if *count >= i64::from(counter.max) {
            if counter.refuse {
                return LimitHit::Refused { index, retry_after: left(*expires_at) };
            }
            over.push(Some(left(*expires_at)));
        } else {
            over.push(None);
        }
    }
    LimitHit::Counted { over }
}

fn check(counters: &[LimitCounter], window: Duration) -> Result<()> {
    if window.is_zero() {
        return Err(StoreError::invalid("A rate-limit window must be longer than zero"));
    }
    for (i, counter) in counters.iter().enumerate() {
        if counter.key.is_empty() || counter.key.len() > MAX_LIMIT_KEY {
            return Err(StoreError::invalid(format!(
                "A rate-limit key needs 1 to {MAX_LIMIT_KEY} bytes (got {})",
                counter.key.len()
            )));
        }
        if counters[..i].iter().any(|other| other.key == counter.key) {
            return Err(StoreError::invalid("A rate-limit hit names the same key twice"));
        }
    }
    Ok(())
}

fn millis(window: Duration) -> i64 {
    window.as_millis().min(i64::MAX as u128) as i64
}

impl Store {
    /// Checks and counts one hit on every counter, in one transaction: when a counter that
    /// refuses is at its limit nothing is counted ([`LimitHit::Refused`]); otherwise every
    /// counter is counted and the result says which were already at their limit. A counter's
    /// window starts at its first hit and lasts `window`; the first hit after it ends starts a
    /// new one.
    pub async fn hit_limits(&self, counters: &[LimitCounter], window: Duration) -> Result<LimitHit> {
        check(counters, window)?;
        if counters.is_empty() {
            return Ok(LimitHit::Counted { over: Vec::new() });
        }
        let (counters, window, now) = (counters.to_vec(), millis(window), crate::ids::now_ms());
        on_backend!(self, db => db.hit_limits(counters, window, now).await)
    }

    /// Ends the counter's window: its next hit counts from zero (a completed password reset
    /// lifts an account's lock, a right password ends its run of failures).
    pub async fn reset_limit(&self, key: &str) -> Result<()> {
        on_backend!(self, db => db.reset_limit(key.to_string()).await)
    }

    /// Takes one hit back from the counter (a login that turned out right), if its window is
    /// still running and it has one.
    pub async fn give_back_limit(&self, key: &str) -> Result<()> {
        on_backend!(self, db => db.give_back_limit(key.to_string(), crate::ids::now_ms()).await)
    }

    /// Deletes the counters whose window has ended; returns how many.
    pub async fn sweep_limits(&self) -> Result<u64> {
        on_backend!(self, db => db.sweep_limits(crate::ids::now_ms()).await)
    }
}

/// Starts or continues a counter's window and returns its `(count, expires_at)`.
pub(crate) const UPSERT_SQLITE: &str = "INSERT INTO limit_counters (key, count, expires_at) VALUES (?1, 0, ?2)
     ON CONFLICT (key) DO UPDATE SET
         count = CASE WHEN limit_counters.expires_at <= ?3 THEN 0 ELSE limit_counters.count END,
         expires_at = CASE WHEN limit_counters.expires_at <= ?3 THEN ?2 ELSE limit_counters.expires_at END
     RETURNING count, expires_at";

impl Sqlite {
    pub(crate) async fn hit_limits(&self, counters: Vec<LimitCounter>, window: i64, now: i64) -> Result<LimitHit> {
        self.write("hit_limits", move |tx| {
            let mut states = Vec::with_capacity(counters.len());
            {
                let mut upsert = tx.prepare_cached(UPSERT_SQLITE)?;
                for counter in &counters {
                    states.push(upsert.query_row(params![counter.key, now + window, now], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })?);
                }
            }
            let hit = decide(&counters, &states, now);
            let counted = matches!(hit, LimitHit::Counted { .. });
            if counted {
                let mut increment = tx.prepare_cached("UPDATE limit_counters SET count = count + 1 WHERE key = ?1")?;
                for counter in &counters {
                    increment.execute([&counter.key])?;
                }
            }
            // A refused hit writes nothing: the window restarts, if it had ended, with the next hit.
            Ok((hit, counted))
        })
        .await
    }

    pub(crate) async fn reset_limit(&self, key: String) -> Result<()> {
        self.write("reset_limit", move |tx| {
            let deleted = tx.execute("DELETE FROM limit_counters WHERE key = ?1", [key])?;
            Ok(((), deleted > 0))
        })
        .await
    }

    pub(crate) async fn give_back_limit(&self, key: String, now: i64) -> Result<()> {
        self.write("give_back_limit", move |tx| {
            let changed = tx.execute(
                "UPDATE limit_counters SET count = count - 1 WHERE key = ?1 AND count > 0 AND expires_at > ?2",
                params![key, now],
            )?;
            Ok(((), changed > 0))
        })
        .await
    }

    pub(crate) async fn sweep_limits(&self, now: i64) -> Result<u64> {
        self.write("sweep_limits", move |tx| {
            let deleted = tx.execute("DELETE FROM limit_counters WHERE expires_at <= ?1", [now])? as u64;
            Ok((deleted, deleted > 0))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(key: &str, max: u32, refuse: bool) -> LimitCounter {
        LimitCounter { key: key.into(), max, refuse }
    }

    #[test]
    fn the_first_refusing_counter_at_its_limit_refuses() {
        let counters = [counter("a", 2, true), counter("b", 1, false)];
        assert_eq!(decide(&counters, &[(1, 5_000), (0, 9_000)], 1_000), LimitHit::Counted { over: vec![None, None] });
        assert_eq!(
            decide(&counters, &[(1, 5_000), (1, 9_000)], 1_000),
            LimitHit::Counted { over: vec![None, Some(Duration::from_secs(8))] },
            "a counter that does not refuse is counted and reported over"
        );
        assert_eq!(
            decide(&counters, &[(2, 5_000), (0, 9_000)], 1_000),
            LimitHit::Refused { index: 0, retry_after: Duration::from_secs(4) }
        );
        let none = [counter("z", 0, true)];
        assert!(matches!(decide(&none, &[(0, 2_000)], 1_000), LimitHit::Refused { .. }), "a limit of 0 refuses all");
    }

    #[test]
    fn keys_and_windows_are_checked() {
        let window = Duration::from_secs(60);
        assert!(check(&[counter("", 1, true)], window).is_err());
        assert!(check(&[counter(&"k".repeat(MAX_LIMIT_KEY + 1), 1, true)], window).is_err());
        assert!(check(&[counter("a", 1, true), counter("a", 2, false)], window).is_err());
        assert!(check(&[counter("a", 1, true)], Duration::ZERO).is_err());
        assert!(check(&[counter("a", 1, true), counter("b", 1, true)], window).is_ok());
    }
}
