//! App users: accounts per app with e-mail and password, one-time codes, and per-app auth
//! settings.
//!
//! * **E-mail** is trimmed and lowercased before it is stored or looked up, so it is unique per
//!   app regardless of case.
//! * **Passwords** are hashed with Argon2id (the `argon2` crate's defaults, a PHC string with its
//!   own random salt); the plaintext never reaches the database. [`Store::check_password`]
//!   hashes a dummy password when the account is unknown, so an unknown account and a wrong
//!   password take about the same time.
//! * **Codes** (the e-mail verification code and the password reset token) are stored as a
//!   SHA-256 of the app, the user, the purpose and the code; one per user and purpose (a new one
//!   replaces the old), with an expiry, single-use (taken codes are deleted) and, for the short
//!   verification code, at most [`MAX_CODE_ATTEMPTS`] wrong guesses. A new verification code
//!   does not restore the guesses: while the old code is live its count carries over, and once
//!   the count is spent no code verifies until the spent one would have expired.
//! * **Hashing** is bounded: at most [`hash_permits`] Argon2 hashes (about 19 MiB each) run at
//!   once, whatever the number of requests; the others wait their turn.
//! * **Password stamp**: [`User::password_stamp`] is a short fingerprint of the stored password
//!   hash and the user's session epoch. User tokens carry it, so a password change or reset signs
//!   out old tokens; disabling a user bumps the epoch (migration 5), so its tokens stay void even
//!   once it is enabled again.
//! * **Change notices**: every committed change of a user's sign-in state (password, disabled
//!   flag, deletion) is announced to the listeners of [`Store::on_user_change`], which is how a
//!   server drops what it cached about the user.

use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::Semaphore;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, StoreError};
use crate::ids;
use crate::sqlite::Sqlite;
use crate::{App, Change, ChangeKind, Store};

/// Wrong guesses of a verification code before the code is void.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// Password length bounds, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// An app user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    User,
    Admin,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::User => "user",
            UserRole::Admin => "admin",
        }
    }

    /// `user` or `admin`; anything else is [`StoreError::Invalid`].
    pub fn parse(text: &str) -> Result<UserRole> {
        match text {
            "user" => Ok(UserRole::User),
            "admin" => Ok(UserRole::Admin),
            other => Err(StoreError::invalid(format!("The role '{other}' is not known; use 'user' or 'admin'"))),
        }
    }
}

/// A stored app user. The password hash is never handed out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// 24 lowercase hex characters, random.
    pub id: String,
    pub app_id: String,
    /// Lowercased.
    pub email: String,
    pub full_name: Option<String>,
    pub role: UserRole,
    pub is_verified: bool,
    pub disabled: bool,
    /// Whether a password is set (an invited user has none until they reset it).
    pub has_password: bool,
    /// Custom fields, a JSON object.
    pub data: Map<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
    /// A fingerprint of the stored password hash and the session epoch (16 hex characters; also
    /// defined without a password). It changes whenever the password is set or the user is
    /// disabled, so tokens that carry it go stale.
    #[serde(skip)]
    pub password_stamp: String,
}

/// A committed change of sign-in states, as told to the listeners of [`Store::on_user_change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange<'a> {
    /// This user's password was set (and with it its stamp), its disabled flag was set either
    /// way, or it was deleted.
    User { app_id: &'a str, user_id: &'a str },
    /// Changes may have been missed (PostgreSQL: the `LISTEN` connection was lost and is back,
    /// or a notice could not be read): forget what is known about every user.
    Everything,
}

/// A listener of [`Store::on_user_change`].
type UserListener = Arc<dyn Fn(UserChange<'_>) + Send + Sync>;

/// The listeners of [`Store::on_user_change`], shared by the handle and (on PostgreSQL) the
/// `LISTEN` connection that hears the other nodes' changes.
#[derive(Default)]
pub(crate) struct UserListeners {
    listeners: RwLock<Vec<UserListener>>,
}

impl UserListeners {
    fn add(&self, listener: UserListener) {
        self.listeners.write().unwrap_or_else(|e| e.into_inner()).push(listener);
    }

    /// Tells every listener about `change`.
    pub(crate) fn announce(&self, change: UserChange<'_>) {
        let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner()).clone();
        for listener in listeners {
            listener(change);
        }
    }
}

/// The kind of change `update` makes: a sign-in change when it sets the disabled flag.
pub(crate) fn update_kind(update: &UserUpdate) -> ChangeKind {
    if update.disabled.is_some() { ChangeKind::SignIn } else { ChangeKind::Users }
}

/// What [`Store::create_user`] takes.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    /// `None`: no password yet (an invited user).
    pub password: Option<String>,
    pub full_name: Option<String>,
    pub role: UserRole,
    pub is_verified: bool,
}

/// A change to a user; `None` fields stay as they are. `data` is merged into the custom fields
/// (a key with `null` is stored as `null`).
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub full_name: Option<Option<String>>,
    pub role: Option<UserRole>,
    pub is_verified: Option<bool>,
    pub disabled: Option<bool>,
    pub data: Map<String, Value>,
}

/// What a one-time code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    /// The e-mail verification code (OTP).
    Verify,
    /// The password reset token.
    Reset,
}

impl CodePurpose {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Verify => "verify",
            CodePurpose::Reset => "reset",
        }
    }
}

/// The outcome of [`Store::take_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code matched; it is deleted.
    Valid,
    /// No code, a wrong code, an expired code or one guessed wrong too often: all alike.
    Invalid,
}

/// Characters an address may not contain: they delimit or quote addresses in mail headers.
const EMAIL_FORBIDDEN: &[char] = &['<', '>', ',', '"', ';', '(', ')', '\\'];

/// Trims and lowercases an e-mail address and checks its shape: at most 254 bytes, exactly one
/// `@` with text on both sides, no spaces, control characters or `<>,";()\`.
pub fn normalize_email(email: &str) -> Result<String> {
    let trimmed = email.trim();
    if trimmed.is_empty() {
        return Err(StoreError::invalid("The e-mail address is empty"));
    }
    if trimmed.len() > 254 {
        // Not echoed: it could be as long as the request body.
        return Err(StoreError::invalid(format!(
            "The e-mail address is {} bytes long; an address has at most 254",
            trimmed.len()
        )));
    }
    let email = trimmed.to_lowercase();
    let bad = |why: &str| StoreError::invalid(format!("{email:?} is not an e-mail address: {why}"));
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    if let Some(c) = email.chars().find(|c| EMAIL_FORBIDDEN.contains(c)) {
        return Err(bad(&format!("'{c}' is not allowed in an address (send the bare address, like ann@example.test)")));
    }
    let Some((local, domain)) = email.split_once('@') else { return Err(bad("it has no '@'")) };
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err(bad("it needs exactly one '@' with text on both sides"));
    }
    Ok(email)
}

/// Checks a new password's length.
pub fn validate_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(StoreError::invalid(format!(
            "The password is too short: it needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(StoreError::invalid(format!("The password is too long: at most {MAX_PASSWORD_CHARS} characters")));
    }
    Ok(())
}

/// How many Argon2 hashes may run at once: twice the available parallelism (at least 2). Each
/// takes about 19 MiB while it runs, so this bounds their memory.
pub fn hash_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_mul(2).max(2)
}

fn hash_semaphore() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(hash_permits()))
}

/// Runs `f` (an Argon2 hash or check) on the blocking pool once one of the [`hash_permits`] is
/// free, holding it until `f` is done.
async fn hashing<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
    let permit = hash_semaphore()
        .acquire()
        .await
        .map_err(|e| StoreError::Database(format!("The hashing limit is closed: {e}")))?;
    let result = blocking(f).await;
    drop(permit);
    result
}

/// The [`User::password_stamp`] of a stored password hash (`None`: no password) and session
/// epoch. Epoch 0 (every user before migration 5, and every user never disabled) gives the
/// stamp of earlier versions, so their tokens stay valid across the upgrade.
pub(crate) fn password_stamp(user_id: &str, hash: Option<&str>, epoch: i64) -> String {
    let mut input = Vec::with_capacity(96 + user_id.len());
    input.extend_from_slice(b"homebase password stamp\0");
    input.extend_from_slice(user_id.as_bytes());
    input.push(0);
    input.extend_from_slice(hash.unwrap_or("").as_bytes());
    if epoch != 0 {
        input.push(0);
        input.extend_from_slice(epoch.to_string().as_bytes());
    }
    ids::sha256_hex(&input)[..16].to_string()
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Database(format!("Hashing a password failed: {e}")))
}

fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of a random password, for comparing against when the account is unknown.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password: [u8; 16] = rand::random();
        hash_password(&ids::hex(&password)).unwrap_or_default()
    })
}

fn code_hash(app_id: &str, user_id: &str, purpose: CodePurpose, code: &str) -> String {
    let mut input = Vec::with_capacity(app_id.len() + user_id.len() + code.len() + 16);
    for part in [app_id, user_id, purpose.as_str(), code.trim()] {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    ids::sha256_hex(&input)
}

/// A reset token carries its user: `<user id>.<random>`; only its hash is stored.
fn split_reset_token(token: &str) -> Option<(&str, &str)> {
    token.trim().split_once('.').filter(|(user, secret)| !user.is_empty() && !secret.is_empty())
}

async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Database(format!("A hashing task failed: {e}")))
}

impl Store {
    /// Makes sure an app with this id exists (creating it with `name` if not) and returns it:
    /// for `dev`, whose app id comes from the project.
    pub async fn ensure_app(&self, id: &str, name: &str) -> Result<App> {
        if let Some(app) = self.get_app(id).await? {
            return Ok(app);
        }
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(StoreError::invalid(format!(
                "'{id}' is not a usable app id: use letters, digits, '-' and '_' (at most 128)"
            )));
        }
        let name = crate::content::validate_app_name(name)?;
        self.insert_app(App { id: id.to_string(), name, created_at: ids::now_ms() }).await
    }

    /// Creates a user. [`StoreError::Conflict`] when the app already has a user with this
    /// e-mail (in any case), [`StoreError::NotFound`] for an unknown app.
    pub async fn create_user(&self, app_id: &str, new: NewUser) -> Result<User> {
        let email = normalize_email(&new.email)?;
        let hash = match new.password {
            Some(password) => {
                validate_password(&password)?;
                Some(hashing(move || hash_password(&password)).await??)
            }
            None => None,
        };
        let now = ids::now_ms();
        let id = ids::new_user_id();
        let user = User {
            password_stamp: password_stamp(&id, hash.as_deref(), 0),
            id,
            app_id: app_id.to_string(),
            email,
            full_name: new.full_name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
            role: new.role,
            is_verified: new.is_verified,
            disabled: false,
            has_password: hash.is_some(),
            data: Map::new(),
            created_at: now,
            updated_at: now,
        };
        let user = on_backend!(self, db => db.insert_user(user, hash).await)?;
        self.announce(Change::user(app_id, ChangeKind::Users, &user.id));
        Ok(user)
    }

    /// The app's user with this id.
    pub async fn user(&self, app_id: &str, id: &str) -> Result<Option<User>> {
        let found = on_backend!(self, db => db.find_user(app_id.to_string(), "id", id.to_string()).await)?;
        Ok(found.map(|(user, _)| user))
    }

    /// The app's user with this e-mail (any case); `None` also for a malformed address.
    pub async fn user_by_email(&self, app_id: &str, email: &str) -> Result<Option<User>> {
        let Ok(email) = normalize_email(email) else { return Ok(None) };
        let found = on_backend!(self, db => db.find_user(app_id.to_string(), "email", email).await)?;
        Ok(found.map(|(user, _)| user))
    }

    /// The app's users, oldest first.
    pub async fn list_users(&self, app_id: &str) -> Result<Vec<User>> {
        on_backend!(self, db => db.list_users(app_id.to_string()).await)
    }

    /// The user with this e-mail and password, or `None` when the account is unknown, has no
    /// password or the password is wrong. An unknown account costs one Argon2 hash too.
    pub async fn check_password(&self, app_id: &str, email: &str, password: &str) -> Result<Option<User>> {
        let found = match normalize_email(email) {
            Ok(email) => on_backend!(self, db => db.find_user(app_id.to_string(), "email", email).await)?,
            Err(_) => None,
        };
        let password = password.to_string();
        hashing(move || {
            let (user, hash) = match found {
                Some((user, Some(hash))) => (Some(user), hash),
                _ => (None, dummy_hash().to_string()),
            };
            let matches = password_matches(&password, &hash);
            user.filter(|_| matches)
        })
        .await
    }

    /// Sets a user's password (checked for length, hashed). Announced to the
    /// [`on_user_change`](Store::on_user_change) listeners.
    pub async fn set_password(&self, app_id: &str, user_id: &str, password: &str) -> Result<()> {
        validate_password(password)?;
        let password = password.to_string();
        let hash = hashing(move || hash_password(&password)).await??;
        let (app_id, user_id) = (app_id.to_string(), user_id.to_string());
        self.changing_user(app_id.clone(), user_id.clone(), move |store| async move {
            on_backend!(store, db => db.set_password(app_id.clone(), user_id.clone(), hash, ids::now_ms()).await)?;
            store.announce(Change::user(&app_id, ChangeKind::SignIn, &user_id));
            Ok(())
        })
        .await
    }

    /// Applies `update` to the user and returns the result. Disabling an enabled user bumps its
    /// session epoch, so its tokens never come back to life. A change of the disabled flag is
    /// announced to the [`on_user_change`](Store::on_user_change) listeners.
    pub async fn update_user(&self, app_id: &str, user_id: &str, update: UserUpdate) -> Result<User> {
        let (app_id, user_id) = (app_id.to_string(), user_id.to_string());
        if update.disabled.is_none() {
            return self.write_user(app_id, user_id, update).await;
        }
        self.changing_user(app_id.clone(), user_id.clone(), move |store| async move {
            store.write_user(app_id, user_id, update).await
        })
        .await
    }

    /// Applies `update` and announces the change.
    async fn write_user(&self, app_id: String, user_id: String, update: UserUpdate) -> Result<User> {
        let kind = update_kind(&update);
        let (app, id, now) = (app_id.clone(), user_id.clone(), ids::now_ms());
        let user = on_backend!(self, db => db.update_user(app, id, update, now).await)?;
        self.announce(Change::user(&app_id, kind, &user_id));
        Ok(user)
    }

    /// Deletes a user (and its codes); `false` when there was none. Announced to the
    /// [`on_user_change`](Store::on_user_change) listeners.
    pub async fn delete_user(&self, app_id: &str, user_id: &str) -> Result<bool> {
        let (app_id, user_id) = (app_id.to_string(), user_id.to_string());
        self.changing_user(app_id.clone(), user_id.clone(), move |store| async move {
            let deleted = on_backend!(store, db => db.delete_user(app_id.clone(), user_id.clone()).await)?;
            if deleted {
                store.announce(Change::user(&app_id, ChangeKind::SignIn, &user_id));
            }
            Ok(deleted)
        })
        .await
    }

    /// Calls `listener` after every committed change of a user's sign-in state: a new password
    /// (reset, change, invitation accepted), the disabled flag set either way, a deletion
    /// ([`UserChange::User`]). A change this handle makes is told on the writer's task, before
    /// the write returns, so the listener must be quick (drop a cache entry, say).
    ///
    /// On PostgreSQL it also hears the changes other nodes (other handles) commit, from the
    /// store's `LISTEN` connection (the [`ChangeKind::SignIn`] changes), shortly after they
    /// commit; and when that connection was lost and is back, or a notice could not be read,
    /// it is told [`UserChange::Everything`]: changes may have been missed.
    pub fn on_user_change(&self, listener: impl Fn(UserChange<'_>) + Send + Sync + 'static) {
        self.inner.user_listeners.add(Arc::new(listener));
    }

    /// Runs `write` on a task of its own and announces the change once it succeeded, or once
    /// its outcome is unknown (the connection to PostgreSQL was lost: it may have committed,
    /// and dropping what a listener cached is harmless). The task finishes even when the caller
    /// stops waiting (a client that hung up), so a committed change is always announced.
    async fn changing_user<R, F, Fut>(&self, app_id: String, user_id: String, write: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Store) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<R>> + Send + 'static,
    {
        let store = self.clone();
        tokio::spawn(async move {
            let result = write(store.clone()).await;
            if matches!(result, Ok(_) | Err(StoreError::Unavailable(_))) {
                store.inner.user_listeners.announce(UserChange::User { app_id: &app_id, user_id: &user_id });
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(format!("A user write failed: {e}")))?
    }

    /// Stores `code` for the user and purpose (replacing an earlier one), valid for `ttl_ms`. A
    /// verification code inherits the wrong guesses of a live earlier one; when those are spent,
    /// it also inherits its expiry (and verifies nothing before then).
    pub async fn put_code(
        &self,
        app_id: &str,
        user_id: &str,
        purpose: CodePurpose,
        code: &str,
        ttl_ms: i64,
    ) -> Result<()> {
        let hash = code_hash(app_id, user_id, purpose, code);
        let now = ids::now_ms();
        let expires_at = now.saturating_add(ttl_ms);
        on_backend!(self, db => db.put_code(user_id.to_string(), purpose, hash, now, expires_at).await)
    }

    /// Checks `code` for the user and purpose. A match deletes it (single use); a wrong guess
    /// counts, and the code is void after [`MAX_CODE_ATTEMPTS`] of them. A spent verification
    /// code is kept (void) until it expires, so that a new code does not bring the guesses back.
    pub async fn take_code(&self, app_id: &str, user_id: &str, purpose: CodePurpose, code: &str) -> Result<CodeCheck> {
        let hash = code_hash(app_id, user_id, purpose, code);
        on_backend!(self, db => db.take_code(user_id.to_string(), purpose, hash, ids::now_ms()).await)
    }

    /// A new password reset token for the user (replacing an earlier one), valid for `ttl_ms`:
    /// `<user id>.<32 random bytes in hex>`.
    pub async fn new_reset_token(&self, app_id: &str, user_id: &str, ttl_ms: i64) -> Result<String> {
        let secret: [u8; 32] = rand::random();
        let token = format!("{user_id}.{}", ids::hex(&secret));
        self.put_code(app_id, user_id, CodePurpose::Reset, &token, ttl_ms).await?;
        Ok(token)
    }

    /// Takes a reset token: the user it belongs to when it is valid (and then it is deleted).
    pub async fn take_reset_token(&self, app_id: &str, token: &str) -> Result<Option<User>> {
        let Some((user_id, _)) = split_reset_token(token) else { return Ok(None) };
        let Some(user) = self.user(app_id, user_id).await? else { return Ok(None) };
        match self.take_code(app_id, &user.id, CodePurpose::Reset, token.trim()).await? {
            CodeCheck::Valid => Ok(Some(user)),
            CodeCheck::Invalid => Ok(None),
        }
    }

    /// Whether the app requires e-mail verification before login; `None` when never set.
    pub async fn require_verification(&self, app_id: &str) -> Result<Option<bool>> {
        on_backend!(self, db => db.require_verification(app_id.to_string()).await)
    }

    /// Switches e-mail verification on or off for the app.
    pub async fn set_require_verification(&self, app_id: &str, required: bool) -> Result<()> {
        on_backend!(self, db => db.set_require_verification(app_id.to_string(), required).await)?;
        self.announce(Change::app(app_id, ChangeKind::Users));
        Ok(())
    }
}

const USER_COLUMNS: &str = "SELECT id, app_id, email, full_name, role, is_verified, disabled, data, created_at, \
                            updated_at, password_hash, session_epoch FROM users";

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, Option<String>)> {
    user_row(r).map(|(user, hash, _)| (user, hash))
}

/// A user, its password hash and its session epoch.
fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, Option<String>, i64)> {
    let role: String = r.get(4)?;
    let data: String = r.get(7)?;
    let hash: Option<String> = r.get(10)?;
    let epoch: i64 = r.get(11)?;
    let user = User {
        id: r.get(0)?,
        app_id: r.get(1)?,
        email: r.get(2)?,
        full_name: r.get(3)?,
        role: if role == "admin" { UserRole::Admin } else { UserRole::User },
        is_verified: r.get(5)?,
        disabled: r.get(6)?,
        has_password: hash.is_some(),
        data: serde_json::from_str(&data).unwrap_or_default(),
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        password_stamp: String::new(),
    };
    let user = User { password_stamp: password_stamp(&user.id, hash.as_deref(), epoch), ..user };
    Ok((user, hash, epoch))
}

pub(crate) fn not_found(user_id: &str) -> StoreError {
    StoreError::not_found(format!("User '{user_id}'"))
}

impl Sqlite {
    pub(crate) async fn insert_user(&self, user: User, hash: Option<String>) -> Result<User> {
        self.write("create_user", move |tx| {
            crate::sqlite::ensure_app(tx, &user.app_id)?;
            let taken = tx
                .query_row("SELECT 1 FROM users WHERE app_id = ?1 AND email = ?2", [&user.app_id, &user.email], |_| {
                    Ok(())
                })
                .optional()?
                .is_some();
            if taken {
                return Err(StoreError::conflict(format!("A user with the e-mail '{}' already exists", user.email)));
            }
            tx.execute(
                "INSERT INTO users (id, app_id, email, password_hash, full_name, role, is_verified, disabled, data,
                                    created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    user.id,
                    user.app_id,
                    user.email,
                    hash,
                    user.full_name,
                    user.role.as_str(),
                    user.is_verified,
                    user.disabled,
                    Value::Object(user.data.clone()).to_string(),
                    user.created_at,
                    user.updated_at
                ],
            )?;
            Ok((user, true))
        })
        .await
    }

    /// By `column` (`id` or `email`).
    pub(crate) async fn find_user(
        &self,
        app_id: String,
        column: &'static str,
        value: String,
    ) -> Result<Option<(User, Option<String>)>> {
        self.read(move |conn| {
            let sql = format!("{USER_COLUMNS} WHERE app_id = ?1 AND {column} = ?2");
            Ok(conn.prepare_cached(&sql)?.query_row([app_id, value], user_from_row).optional()?)
        })
        .await
    }

    pub(crate) async fn list_users(&self, app_id: String) -> Result<Vec<User>> {
        self.read(move |conn| {
            let sql = format!("{USER_COLUMNS} WHERE app_id = ?1 ORDER BY created_at, rowid");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([app_id], |r| user_from_row(r).map(|(u, _)| u))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(crate) async fn set_password(&self, app_id: String, user_id: String, hash: String, now: i64) -> Result<()> {
        self.write("set_password", move |tx| {
            let n = tx.execute(
                "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE app_id = ?1 AND id = ?2",
                params![app_id, user_id, hash, now],
            )?;
            if n == 0 {
                return Err(not_found(&user_id));
            }
            // A new password voids an outstanding reset token.
            tx.execute("DELETE FROM user_codes WHERE user_id = ?1 AND purpose = 'reset'", [&user_id])?;
            Ok(((), true))
        })
        .await
    }

    pub(crate) async fn update_user(
        &self,
        app_id: String,
        user_id: String,
        update: UserUpdate,
        now: i64,
    ) -> Result<User> {
        self.write("update_user", move |tx| {
            let sql = format!("{USER_COLUMNS} WHERE app_id = ?1 AND id = ?2");
            let (mut user, hash, epoch) =
                tx.query_row(&sql, [&app_id, &user_id], user_row).optional()?.ok_or_else(|| not_found(&user_id))?;
            // Disabling ends every session for good: a new epoch, a new stamp.
            let epoch = if update.disabled == Some(true) && !user.disabled { epoch + 1 } else { epoch };
            user.password_stamp = password_stamp(&user.id, hash.as_deref(), epoch);
            if let Some(name) = update.full_name {
                user.full_name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
            }
            user.role = update.role.unwrap_or(user.role);
            user.is_verified = update.is_verified.unwrap_or(user.is_verified);
            user.disabled = update.disabled.unwrap_or(user.disabled);
            user.data.extend(update.data);
            user.updated_at = now;
            tx.execute(
                "UPDATE users SET full_name = ?3, role = ?4, is_verified = ?5, disabled = ?6, data = ?7, updated_at = ?8,
                                  session_epoch = ?9
                 WHERE app_id = ?1 AND id = ?2",
                params![
                    app_id,
                    user_id,
                    user.full_name,
                    user.role.as_str(),
                    user.is_verified,
                    user.disabled,
                    Value::Object(user.data.clone()).to_string(),
                    now,
                    epoch
                ],
            )?;
            Ok((user, true))
        })
        .await
    }

    pub(crate) async fn delete_user(&self, app_id: String, user_id: String) -> Result<bool> {
        self.write("delete_user", move |tx| {
            let n = tx.execute("DELETE FROM users WHERE app_id = ?1 AND id = ?2", params![app_id, user_id])?;
            Ok((n > 0, n > 0))
        })
        .await
    }

    pub(crate) async fn put_code(
        &self,
        user_id: String,
        purpose: CodePurpose,
        hash: String,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        self.write("put_code", move |tx| {
            // A verification code keeps the guesses of a live earlier one, and the expiry of a
            // spent one: resending is no way to more guesses.
            let n = tx.execute(
                "INSERT INTO user_codes (user_id, purpose, code_hash, expires_at, attempts)
                 SELECT ?1, ?2, ?3, ?4, 0 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)
                 ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = excluded.code_hash,
                     expires_at = CASE WHEN ?6 AND user_codes.expires_at > ?5 AND user_codes.attempts >= ?7
                                       THEN user_codes.expires_at ELSE excluded.expires_at END,
                     attempts = CASE WHEN ?6 AND user_codes.expires_at > ?5
                                     THEN user_codes.attempts ELSE 0 END",
                params![
                    user_id,
                    purpose.as_str(),
                    hash,
                    expires_at,
                    now,
                    purpose == CodePurpose::Verify,
                    MAX_CODE_ATTEMPTS
                ],
            )?;
            if n == 0 {
                return Err(not_found(&user_id));
            }
            Ok(((), true))
        })
        .await
    }

    pub(crate) async fn take_code(
        &self,
        user_id: String,
        purpose: CodePurpose,
        hash: String,
        now: i64,
    ) -> Result<CodeCheck> {
        let purpose_name = purpose.as_str();
        self.write("take_code", move |tx| {
            let stored: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT code_hash, expires_at, attempts FROM user_codes WHERE user_id = ?1 AND purpose = ?2",
                    params![user_id, purpose_name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((stored, expires_at, attempts)) = stored else { return Ok((CodeCheck::Invalid, false)) };
            let delete = |tx: &rusqlite::Transaction<'_>| {
                tx.execute("DELETE FROM user_codes WHERE user_id = ?1 AND purpose = ?2", params![user_id, purpose_name])
            };
            if expires_at <= now {
                delete(tx)?;
                return Ok((CodeCheck::Invalid, true));
            }
            if attempts >= MAX_CODE_ATTEMPTS {
                // A spent verification code stays until it expires, carrying its count.
                if purpose == CodePurpose::Verify {
                    return Ok((CodeCheck::Invalid, false));
                }
                delete(tx)?;
                return Ok((CodeCheck::Invalid, true));
            }
            if constant_time_eq(stored.as_bytes(), hash.as_bytes()) {
                delete(tx)?;
                return Ok((CodeCheck::Valid, true));
            }
            tx.execute(
                "UPDATE user_codes SET attempts = attempts + 1 WHERE user_id = ?1 AND purpose = ?2",
                params![user_id, purpose_name],
            )?;
            Ok((CodeCheck::Invalid, true))
        })
        .await
    }

    pub(crate) async fn require_verification(&self, app_id: String) -> Result<Option<bool>> {
        self.read(move |conn| {
            Ok(conn
                .query_row("SELECT require_verification FROM auth_settings WHERE app_id = ?1", [app_id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    pub(crate) async fn set_require_verification(&self, app_id: String, required: bool) -> Result<()> {
        self.write("set_auth_settings", move |tx| {
            crate::sqlite::ensure_app(tx, &app_id)?;
            tx.execute(
                "INSERT INTO auth_settings (app_id, require_verification) VALUES (?1, ?2)
                 ON CONFLICT (app_id) DO UPDATE SET require_verification = excluded.require_verification",
                params![app_id, required],
            )?;
            Ok(((), true))
        })
        .await
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Ann@Example.TEST ").unwrap(), "ann@example.test");
        for bad in [
            "",
            "ann",
            "@x",
            "ann@",
            "a@b@c",
            "a b@c",
            "a\tb@c",
            "a\u{7}@c",
            "<a@b.c>",
            "a@b.c, d@e.f",
            "\"a\"@b.c",
            "a;b@c",
            "a(x)@b.c",
            "a\\b@c",
            "Ann <a@b.c>",
        ] {
            assert_eq!(normalize_email(bad).unwrap_err().code(), "invalid", "{bad}");
        }
        let long = format!("{}@example.test", "a".repeat(300_000));
        let message = normalize_email(&long).unwrap_err().to_string();
        assert!(message.contains("254") && message.len() < 200, "the address is not echoed: {message}");
        assert!(normalize_email(&format!("{}@b.c", "a".repeat(250))).is_ok());
    }

    #[test]
    fn password_stamps_follow_the_hash_and_the_epoch() {
        let a = password_stamp("u1", Some("$argon2id$one"), 0);
        assert_eq!(a.len(), 16);
        assert_eq!(a, password_stamp("u1", Some("$argon2id$one"), 0));
        assert_ne!(a, password_stamp("u1", Some("$argon2id$two"), 0));
        assert_ne!(a, password_stamp("u2", Some("$argon2id$one"), 0));
        assert_ne!(a, password_stamp("u1", None, 0));
        assert_ne!(a, password_stamp("u1", Some("$argon2id$one"), 1));
        assert_ne!(password_stamp("u1", Some("$argon2id$one"), 1), password_stamp("u1", Some("$argon2id$one"), 2));
        // Epoch 0 is the stamp of the versions before epochs, so their tokens stay valid.
        assert_eq!(a, ids::sha256_hex(b"homebase password stamp\0u1\0$argon2id$one")[..16]);
    }

    /// However many hashes are asked for at once, at most `hash_permits()` run together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hashing_is_bounded_by_the_permits() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..hash_permits() * 4)
            .map(|_| {
                let (running, peak) = (running.clone(), peak.clone());
                tokio::spawn(hashing(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let hash = hash_password("correct horse").unwrap();
                    running.fetch_sub(1, Ordering::SeqCst);
                    hash
                }))
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=hash_permits()).contains(&peak), "{peak} hashes ran at once; the bound is {}", hash_permits());
    }

    #[test]
    fn passwords_are_argon2id_and_salted() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(password_matches("correct horse", &a));
        assert!(!password_matches("wrong horse", &a));
        assert!(!password_matches("correct horse", "not a hash"));
        validate_password("12345678").unwrap();
        assert!(validate_password("1234567").is_err());
    }
}
