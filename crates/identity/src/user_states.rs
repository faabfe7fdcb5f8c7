//! What the function routes know about the users whose tokens they see, so that a token is
//! refused everywhere once its user's password changed, its user was disabled or deleted,
//! without a store read per request.
//!
//! [`UserStates`] caches, per app and user, the user's sign-in state: the password stamp its
//! tokens must carry (see `homebase_store::User::password_stamp`), or that it is disabled or
//! gone. An entry is loaded from the store on the first token of that user; every later request
//! is a hash lookup under a read lock.
//!
//! - **Invalidation.** [`UserStates::new`] registers with `Store::on_user_change`, which the
//!   store calls after every committed password change, disabled flag change and deletion, on
//!   whatever path it came from (reset, change-password, the management API) and, on
//!   PostgreSQL, on whichever node it was made. The entry is dropped and the next token of that
//!   user loads it again. When the store says changes may have been missed
//!   (`UserChange::Everything`: its `LISTEN` connection was lost), every entry is dropped. A
//!   load that overlapped an invalidation is answered but not cached (a generation counter), so
//!   a stale state is never kept.
//! - **Bounds.** At most [`CAPACITY`] users are kept. When full, entries older than
//!   [`REFRESH_AFTER`] are dropped, and if that frees nothing the cache starts over. An entry is
//!   also reloaded once it is older than [`REFRESH_AFTER`], a backstop for a missed notice.
//! - **Failure.** A store error while loading refuses the request ([`IdentityError::Store`]);
//!   nothing is cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use homebase_store::{Store, User, UserChange};

use crate::IdentityError;
use crate::auth::{TokenUser, Unauthorized};

/// Users kept at most (about 150 bytes each).
pub const CAPACITY: usize = 100_000;
/// How long an entry is trusted before it is loaded again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(300);

/// A user's sign-in state, as far as tokens go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// Tokens carrying this password stamp are valid.
    Active {
        stamp: Box<str>,
    },
    Disabled,
    /// No such user (deleted, or never in this app).
    Gone,
}

impl SignIn {
    pub fn of(user: Option<&User>) -> SignIn {
        match user {
            None => SignIn::Gone,
            Some(user) if user.disabled => SignIn::Disabled,
            Some(user) => SignIn::Active { stamp: user.password_stamp.as_str().into() },
        }
    }

    /// Whether `token` may act for this user; why not if it may not.
    pub fn admits(&self, token: &TokenUser) -> Result<(), Unauthorized> {
        match self {
            SignIn::Gone => Err(Unauthorized::UserGone),
            SignIn::Disabled => Err(Unauthorized::UserDisabled),
            SignIn::Active { stamp } if token.stamp.as_deref() == Some(&**stamp) => Ok(()),
            SignIn::Active { .. } => Err(Unauthorized::Stale),
        }
    }
}

struct Entry {
    state: SignIn,
    loaded: Instant,
}

#[derive(Default)]
struct Cache {
    /// app id → user id → entry: looked up with the `&str`s of a token, no allocation.
    apps: HashMap<Box<str>, HashMap<Box<str>, Entry>>,
    len: usize,
}

/// The per-user sign-in states of one store; see the module documentation.
pub struct UserStates {
    store: Store,
    cache: RwLock<Cache>,
    /// Bumped by every invalidation; a load only caches its result when it did not move.
    generation: AtomicU64,
    capacity: usize,
    refresh_after: Duration,
}

impl std::fmt::Debug for UserStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStates").field("len", &self.len()).field("capacity", &self.capacity).finish()
    }
}

impl UserStates {
    /// The states of `store`'s users, kept up to date by its change notices.
    pub fn new(store: Store) -> Arc<UserStates> {
        UserStates::with_limits(store, CAPACITY, REFRESH_AFTER)
    }

    /// [`new`](UserStates::new) with its bounds given (tests).
    pub fn with_limits(store: Store, capacity: usize, refresh_after: Duration) -> Arc<UserStates> {
        let states = Arc::new(UserStates {
            store: store.clone(),
            cache: RwLock::new(Cache::default()),
            generation: AtomicU64::new(0),
            capacity: capacity.max(1),
            refresh_after,
        });
        let weak = Arc::downgrade(&states);
        store.on_user_change(move |change| {
            if let Some(states) = weak.upgrade() {
                match change {
                    UserChange::User { app_id, user_id } => states.invalidate(app_id, user_id),
                    UserChange::Everything => states.invalidate_all(),
                }
            }
        });
        states
    }

    /// Refuses `token` (a verified user token of `app_id`) unless its user exists, is enabled
    /// and still has the password stamp the token carries. A store read only on the user's
    /// first token, or after an invalidation.
    pub async fn check(&self, app_id: &str, token: &TokenUser) -> Result<(), IdentityError> {
        if let Some(verdict) = self.cached(app_id, &token.id, token) {
            return Ok(verdict?);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let user = self.store.user(app_id, &token.id).await?;
        let state = SignIn::of(user.as_ref());
        let verdict = state.admits(token);
        self.insert(generation, app_id, &token.id, state);
        Ok(verdict?)
    }

    /// Forgets what is known about a user: called for every change notice of the store.
    pub fn invalidate(&self, app_id: &str, user_id: &str) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        // Under the lock: a load that read the store before this change cannot cache it after.
        self.generation.fetch_add(1, Ordering::AcqRel);
        let Some(users) = cache.apps.get_mut(app_id) else { return };
        if users.remove(user_id).is_some() {
            if users.is_empty() {
                cache.apps.remove(app_id);
            }
            cache.len -= 1;
        }
    }

    /// Forgets every user: called when the store may have missed changes.
    pub fn invalidate_all(&self) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        cache.apps.clear();
        cache.len = 0;
    }

    /// Users cached now.
    pub fn len(&self) -> usize {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The verdict from the cache, or `None` to load the state.
    fn cached(&self, app_id: &str, user_id: &str, token: &TokenUser) -> Option<Result<(), Unauthorized>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let entry = cache.apps.get(app_id)?.get(user_id)?;
        (entry.loaded.elapsed() < self.refresh_after).then(|| entry.state.admits(token))
    }

    fn insert(&self, generation: u64, app_id: &str, user_id: &str, state: SignIn) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let now = Instant::now();
        let present = cache.apps.get(app_id).is_some_and(|users| users.contains_key(user_id));
        if !present && cache.len >= self.capacity {
            let refresh_after = self.refresh_after;
            let mut len = 0;
            cache.apps.retain(|_, users| {
                users.retain(|_, entry| now.duration_since(entry.loaded) < refresh_after);
                len += users.len();
                !users.is_empty()
            });
            cache.len = len;
            if cache.len >= self.capacity {
                tracing::debug!(capacity = self.capacity, "the user state cache is full; starting over");
                cache.apps.clear();
                cache.len = 0;
            }
        }
        let entry = Entry { state, loaded: now };
        let users = cache.apps.entry(app_id.into()).or_default();
        if users.insert(user_id.into(), entry).is_none() {
            cache.len += 1;
        }
    }
}

/// [`UserStates::check`] with the states a router was given; without any (a router built
/// without the user routes, which keeps no users) a user token is refused.
pub async fn check(states: Option<&UserStates>, app_id: &str, token: &TokenUser) -> Result<(), IdentityError> {
    match states {
        Some(states) => states.check(app_id, token).await,
        None => Err(Unauthorized::UserTokensRefused.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homebase_store::{NewUser, UserRole, UserUpdate};

    async fn store_with_user() -> (Store, String, User) {
        let store = Store::open_sqlite_in_memory().await.unwrap();
        let app = store.create_app("Shop").await.unwrap().id;
        let new = NewUser {
            email: "ann@example.test".into(),
            password: Some("pw-123456".into()),
            full_name: None,
            role: UserRole::User,
            is_verified: true,
        };
        let user = store.create_user(&app, new).await.unwrap();
        (store, app, user)
    }

    fn token(user: &User) -> TokenUser {
        TokenUser { id: user.id.clone(), stamp: Some(user.password_stamp.clone()) }
    }

    #[tokio::test]
    async fn a_state_is_loaded_once_and_dropped_by_the_stores_notices() {
        let (store, app, user) = store_with_user().await;
        let states = UserStates::new(store.clone());
        let old = token(&user);
        assert!(states.check(&app, &old).await.is_ok());
        assert_eq!(states.len(), 1);
        // Cached: a token without the stamp is judged without the store.
        let unstamped = TokenUser { id: user.id.clone(), stamp: None };
        assert!(states.check(&app, &unstamped).await.unwrap_err().is_unauthorized());
        assert_eq!(states.len(), 1);

        store.set_password(&app, &user.id, "pw-new-1234").await.unwrap();
        assert_eq!(states.len(), 0, "the change notice dropped the entry");
        assert!(states.check(&app, &old).await.unwrap_err().is_unauthorized(), "a token from before the change");
        let fresh = token(&store.user(&app, &user.id).await.unwrap().unwrap());
        assert!(states.check(&app, &fresh).await.is_ok());

        let disable = UserUpdate { disabled: Some(true), ..Default::default() };
        store.update_user(&app, &user.id, disable).await.unwrap();
        assert!(states.check(&app, &fresh).await.unwrap_err().is_unauthorized(), "disabled");
        store.delete_user(&app, &user.id).await.unwrap();
        assert!(states.check(&app, &fresh).await.unwrap_err().is_unauthorized(), "deleted");
        assert_eq!(states.cached(&app, &user.id, &fresh).map(|v| v.is_err()), Some(true), "gone is cached too");
        // Another app's id never matches.
        assert!(states.check("other", &fresh).await.unwrap_err().is_unauthorized());
    }

    #[tokio::test]
    async fn a_load_that_overlaps_a_change_is_not_kept() {
        let (store, app, user) = store_with_user().await;
        let states = UserStates::new(store.clone());
        let generation = states.generation.load(Ordering::Acquire);
        let before = SignIn::of(Some(&user));
        states.invalidate(&app, &user.id);
        states.insert(generation, &app, &user.id, before);
        assert_eq!(states.len(), 0, "the state read before the change is not cached");
    }

    #[tokio::test]
    async fn everything_drops_every_entry() {
        let (store, app, user) = store_with_user().await;
        let states = UserStates::new(store.clone());
        assert!(states.check(&app, &token(&user)).await.is_ok());
        let generation = states.generation.load(Ordering::Acquire);
        states.insert(generation, "other", "someone", SignIn::Gone);
        assert_eq!(states.len(), 2);
        states.invalidate_all();
        assert_eq!(states.len(), 0);
        assert!(states.cached(&app, &user.id, &token(&user)).is_none());
        states.insert(generation, &app, &user.id, SignIn::of(Some(&user)));
        assert_eq!(states.len(), 0, "a load from before is not kept");
        assert!(states.check(&app, &token(&user)).await.is_ok(), "loaded again");
        assert_eq!(states.len(), 1);
    }

    /// With PostgreSQL, a node's cached states follow the changes another node commits, and are
    /// all dropped when the node's `LISTEN` connection was lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn states_follow_the_changes_of_other_nodes() {
        let schema = homebase_store::pg_testing::TestSchema::new().await;
        let key = homebase_store::MasterKey::generate();
        let one = Store::open_postgres_with_key(&schema.url, key.clone()).await.unwrap();
        let two = Store::open_postgres_with_key(&schema.url, key).await.unwrap();
        let states = UserStates::new(one.clone());
        // Registered after the states' listener, so called after it: the signal that node one
        // has handled a notice.
        let (sender, mut handled) = tokio::sync::mpsc::unbounded_channel();
        one.on_user_change(move |change| {
            let _ = sender.send(matches!(change, UserChange::Everything));
        });
        let mut next_notice = async || {
            tokio::time::timeout(Duration::from_secs(10), handled.recv()).await.expect("a notice within 10 s").unwrap()
        };
        let app = two.create_app("Shop").await.unwrap().id;
        let new = NewUser {
            email: "ann@example.test".into(),
            password: Some("pw-123456".into()),
            full_name: None,
            role: UserRole::User,
            is_verified: true,
        };
        let user = two.create_user(&app, new).await.unwrap();
        let old = token(&user);
        assert!(states.check(&app, &old).await.is_ok());
        assert_eq!(states.len(), 1);

        two.set_password(&app, &user.id, "pw-new-1234").await.unwrap();
        assert!(!next_notice().await, "the change of node two, not everything");
        assert_eq!(states.len(), 0, "node two's change dropped node one's entry");
        assert!(states.check(&app, &old).await.unwrap_err().is_unauthorized(), "a token from before the change");
        let fresh = token(&two.user(&app, &user.id).await.unwrap().unwrap());
        assert!(states.check(&app, &fresh).await.is_ok());

        two.update_user(&app, &user.id, UserUpdate { disabled: Some(true), ..Default::default() }).await.unwrap();
        assert!(!next_notice().await);
        assert!(states.check(&app, &fresh).await.unwrap_err().is_unauthorized(), "disabled on node two");
        assert_eq!(states.len(), 1, "the disabled state is cached");

        assert!(schema.terminate_connections().await >= 2);
        assert!(next_notice().await, "everything, once node one listens again");
        assert_eq!(states.len(), 0, "every entry dropped");
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_old_entries_are_reloaded() {
        let (store, app, user) = store_with_user().await;
        let states = UserStates::with_limits(store.clone(), 3, Duration::from_secs(300));
        for i in 0..10 {
            let generation = states.generation.load(Ordering::Acquire);
            states.insert(generation, &app, &format!("someone-{i}"), SignIn::Gone);
            assert!(states.len() <= 3, "{}", states.len());
        }
        let stale = UserStates::with_limits(store.clone(), 10, Duration::ZERO);
        assert!(stale.check(&app, &token(&user)).await.is_ok());
        assert!(stale.cached(&app, &user.id, &token(&user)).is_none(), "too old: loaded again");
    }
}
