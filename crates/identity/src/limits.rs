//! The login and mail limits as the user routes apply them: counted in memory on one node
//! ([`Limiter`]), or in the store when several nodes share a database ([`SharedLimiter`]), so
//! that attempts spread over the nodes behind a load balancer meet one limit.
//!
//! Both count the same buckets (see [`crate::auth`]: per account and per client address, for
//! each kind of [`Attempt`]) with the same rules; the shared one keeps each bucket as a counter
//! of `homebase_store`'s rate limits (`Store::hit_limits`), keyed by the bucket's hash, and
//! checks and counts a request's buckets in one transaction. A database that cannot be reached
//! fails the request ([`LimitError::Store`], a 503) rather than let it through uncounted.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use homebase_store::{LimitCounter, LimitHit, Store, StoreError};

use crate::auth::{Attempt, Key, Limit, Limiter, LoginLimits, Refused, Reservation, SWEEP_EVERY, Subject, key};

/// Why [`Limits::reserve`] did not reserve.
#[derive(Debug)]
pub enum LimitError {
    /// Over a limit.
    Refused(Refused),
    /// The store could not be asked.
    Store(StoreError),
}

/// The limits of one server: in memory, or in the store.
#[derive(Debug)]
pub enum Limits {
    /// One node: the counts live in this process.
    Local(Limiter),
    /// Several nodes: the counts live in the database they share.
    Shared(SharedLimiter),
}

impl Limits {
    pub fn local(limits: LoginLimits) -> Limits {
        Limits::Local(Limiter::new(limits))
    }

    pub fn shared(limits: LoginLimits, store: Store) -> Limits {
        Limits::Shared(SharedLimiter { limits, store, next_sweep: Mutex::new(Instant::now() + SWEEP_EVERY) })
    }

    pub fn limits(&self) -> LoginLimits {
        match self {
            Limits::Local(limiter) => limiter.limits(),
            Limits::Shared(shared) => shared.limits,
        }
    }

    /// Counts one `attempt`, or refuses it (see [`Limiter::reserve`] for the rules).
    pub async fn reserve(
        &self,
        attempt: Attempt,
        app_id: &str,
        subject: Subject<'_>,
    ) -> Result<Reservation, LimitError> {
        match self {
            Limits::Local(limiter) => limiter.reserve(attempt, app_id, subject).map_err(LimitError::Refused),
            Limits::Shared(shared) => shared.reserve(attempt, app_id, subject).await,
        }
    }

    /// Gives a reservation back after a success (see [`Limiter::refund`]).
    pub async fn refund(&self, reservation: Reservation) {
        match self {
            Limits::Local(limiter) => limiter.refund(reservation),
            Limits::Shared(shared) => shared.refund(reservation).await,
        }
    }

    /// Ends the account's run of failed `attempt`s (see [`Limiter::clear_account`]).
    pub async fn clear_account(&self, attempt: Attempt, app_id: &str, account: &str) {
        match self {
            Limits::Local(limiter) => limiter.clear_account(attempt, app_id, account),
            Limits::Shared(shared) => {
                shared.forget(&key(attempt, b'a', app_id, account.as_bytes())).await;
            }
        }
    }
}

/// The limits of several nodes, counted in the store they share.
#[derive(Debug)]
pub struct SharedLimiter {
    limits: LoginLimits,
    store: Store,
    /// When this node next deletes the counters of ended windows.
    next_sweep: Mutex<Instant>,
}

/// A bucket's key in the store.
fn counter_key(key: &Key) -> String {
    let mut text = String::with_capacity(38);
    text.push_str("auth:");
    for byte in key {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

impl SharedLimiter {
    async fn reserve(&self, attempt: Attempt, app_id: &str, subject: Subject<'_>) -> Result<Reservation, LimitError> {
        self.sweep_when_due().await;
        let (per_account, per_address) = self.limits.limits(attempt);
        let keys = Limiter::keys(attempt, app_id, subject);
        let mut counters = Vec::with_capacity(2);
        let mut kinds = Vec::with_capacity(2);
        for (key, kind) in keys.iter().flatten() {
            let account = *kind == 0;
            // Right passwords and codes still pass an address's limit (see `Limiter`).
            let (max, refuse) = if account { (per_account, true) } else { (per_address, attempt == Attempt::Mail) };
            counters.push(LimitCounter { key: counter_key(key), max, refuse });
            kinds.push(account);
        }
        // The store's windows are counted in milliseconds.
        let window = self.limits.window.max(Duration::from_millis(1));
        let hit = self.store.hit_limits(&counters, window).await.map_err(LimitError::Store)?;
        let address_limited = match hit {
            LimitHit::Refused { index, retry_after } => {
                let limit = if kinds[index] { Limit::Account } else { Limit::Address };
                return Err(LimitError::Refused(Refused { limit, retry_after }));
            }
            LimitHit::Counted { over } => over.iter().zip(&kinds).find(|(_, account)| !**account).and_then(|(o, _)| *o),
        };
        Ok(Reservation { keys: keys.map(|k| k.map(|(key, _)| key)), address_limited })
    }

    async fn refund(&self, reservation: Reservation) {
        let [account, address] = reservation.keys;
        if let Some(account) = account {
            self.forget(&account).await;
        }
        if let Some(address) = address
            && let Err(error) = self.store.give_back_limit(&counter_key(&address)).await
        {
            tracing::warn!(%error, "could not give a counted attempt back to its address");
        }
    }

    async fn forget(&self, key: &Key) {
        if let Err(error) = self.store.reset_limit(&counter_key(key)).await {
            tracing::warn!(%error, "could not clear an account's failed attempts");
        }
    }

    /// Deletes the counters of ended windows, at most every [`SWEEP_EVERY`] on this node.
    async fn sweep_when_due(&self) {
        {
            let mut next = self.next_sweep.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if now < *next {
                return;
            }
            *next = now + SWEEP_EVERY;
        }
        if let Err(error) = self.store.sweep_limits().await {
            tracing::warn!(%error, "could not delete the rate-limit counters of ended windows");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login<'a>(account: &'a str, address: [u8; 4]) -> Subject<'a> {
        Subject { account: Some(account), address: Some(address.into()) }
    }

    /// The shared limiter applies the rules of the local one (`auth::tests` has them all):
    /// here on SQLite, across nodes in the nodes tests.
    #[tokio::test]
    async fn the_shared_limiter_counts_accounts_and_addresses_like_the_local_one() {
        let store = Store::open_sqlite_in_memory().await.unwrap();
        let limits = LoginLimits {
            per_account: 2,
            per_address: 3,
            mail_per_address: 4,
            window: Duration::from_secs(60),
            ..LoginLimits::default()
        };
        for limiter in [Limits::local(limits), Limits::shared(limits, store)] {
            let ip = [10, 0, 0, 1];
            let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", ip)).await.unwrap();
            let ann = limiter.reserve(Attempt::Login, "a", login("ann@x", ip)).await.unwrap();
            let Err(LimitError::Refused(refused)) = limiter.reserve(Attempt::Login, "a", login("ann@x", ip)).await
            else {
                panic!("the account is locked")
            };
            assert_eq!(refused.limit, Limit::Account);
            assert!(refused.retry_after <= Duration::from_secs(60) && refused.retry_after > Duration::ZERO);
            assert!(limiter.reserve(Attempt::Login, "b", login("ann@x", [10, 0, 0, 2])).await.is_ok(), "per app");
            let bob = limiter.reserve(Attempt::Login, "a", login("bob@x", ip)).await.unwrap();
            assert!(bob.address_limited().is_none(), "the address's third failure");
            let carl = limiter.reserve(Attempt::Login, "a", login("carl@x", ip)).await.unwrap();
            assert!(carl.address_limited().is_some(), "past the address's limit, reserved and marked");
            // A right password: the account starts afresh, the address gets one attempt back.
            limiter.refund(ann).await;
            let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 3])).await.unwrap();
            limiter.clear_account(Attempt::Login, "a", "ann@x").await;
            for _ in 0..2 {
                let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 4])).await.unwrap();
            }
            // Mail past the address's limit is refused outright.
            for account in ["m1@x", "m2@x", "m3@x", "m4@x", "m5@x"] {
                let _ = limiter.reserve(Attempt::Mail, "a", login(account, [10, 0, 0, 9])).await;
            }
            let mail =
                limiter.reserve(Attempt::Mail, "a", Subject { account: None, address: Some([10, 0, 0, 9].into()) });
            assert!(matches!(mail.await, Err(LimitError::Refused(Refused { limit: Limit::Address, .. }))));
        }
    }
}
