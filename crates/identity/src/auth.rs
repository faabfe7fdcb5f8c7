//! Who is calling: bearer tokens checked against the app they are used for, the caller a
//! request or an automation run acts as ([`Identity`]), and the login rate limiter.
//!
//! - A user token is accepted for its own app only; a service token likewise. A service-role
//!   request may carry `on-behalf-of: Bearer <user token>` (reference §2.2); that token is
//!   checked the same way, and a bad one fails the request.
//! - Anything that does not verify (forged, expired, malformed, another app's) is refused
//!   ([`Unauthorized`], a 401 on the wire), never silently treated as anonymous.
//! - [`LoginLimiter`] counts failed logins per account and per client address in a fixed window.
//!   An account past its limit is refused; an address past its limit is not refused a right
//!   password or code (many people share an address: behind a proxy, or functions signing users
//!   in through the API socket), only told to slow down when it is wrong ([`Reservation::address_limited`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::token::{Claims, ROLE_SERVICE, TokenError, TokenMinter};

/// The name of the header that carries the user a service-role request acts for.
pub const ON_BEHALF_OF: &str = "on-behalf-of";

/// The user a verified user token names, with the password stamp it carries (`None` for a
/// token without one, which the user routes refuse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUser {
    pub id: String,
    pub stamp: Option<String>,
}

/// A verified caller of an app's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An app user.
    User(TokenUser),
    /// The app's service role; `on_behalf_of` is the user of a verified `on-behalf-of`.
    Service { on_behalf_of: Option<TokenUser> },
}

impl Identity {
    /// The user this request acts for: the user, or the service role's `on-behalf-of` user.
    pub fn user(&self) -> Option<&TokenUser> {
        match self {
            Identity::User(user) => Some(user),
            Identity::Service { on_behalf_of } => on_behalf_of.as_ref(),
        }
    }

    /// The id of [`Identity::user`].
    pub fn user_id(&self) -> Option<&str> {
        self.user().map(|user| user.id.as_str())
    }
}

/// Why a caller is not let in (the server answers 401 `unauthorized`). The message is the
/// error's `Display`; [`detail`](Unauthorized::detail) says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthorized {
    /// `Authorization` is present but not `Bearer <token>`.
    #[error("The Authorization header is not a bearer token")]
    NotBearer,
    /// The bearer does not verify for the app.
    #[error("The token is not valid: {0}")]
    BadToken(TokenError),
    /// `on-behalf-of` is present but not `Bearer <token>`.
    #[error("The on-behalf-of header is not a bearer token")]
    OnBehalfOfNotBearer,
    /// The `on-behalf-of` bearer does not verify for the app.
    #[error("The on-behalf-of token is not valid: {0}")]
    BadOnBehalfOf(TokenError),
    /// `on-behalf-of` carries a service token where a user's is needed.
    #[error("The on-behalf-of token is a service token")]
    OnBehalfOfService,
    /// The route needs a signed-in caller and none was named.
    #[error("You need to sign in")]
    SignInRequired,
    /// The token's user was deleted (or never was in this app).
    #[error("The token's user does not exist")]
    UserGone,
    /// The token's user is disabled.
    #[error("This account is disabled")]
    UserDisabled,
    /// The user's password changed (or the user was disabled) after the token was issued.
    #[error(
        "The token is no longer valid: the account's password changed, or the account was disabled, after it \
         was issued"
    )]
    Stale,
    /// A router that keeps no users was sent a user token.
    #[error("This server does not accept user tokens here")]
    UserTokensRefused,
}

impl Unauthorized {
    /// What the caller can do about it.
    pub fn detail(&self) -> &'static str {
        match self {
            Unauthorized::NotBearer => {
                "Send Authorization: Bearer <token>, or no Authorization header to call anonymously."
            }
            Unauthorized::BadToken(error) | Unauthorized::BadOnBehalfOf(error) => match error {
                TokenError::Expired => "Sign in again to get a new token.",
                TokenError::OtherApp => "Use a token issued by this app (the app id in the URL or X-App-Id).",
                _ => "Send a token this server issued: Authorization: Bearer <token>.",
            },
            Unauthorized::OnBehalfOfNotBearer => "Send on-behalf-of: Bearer <user token>.",
            Unauthorized::OnBehalfOfService => "on-behalf-of names a user: send that user's token.",
            Unauthorized::SignInRequired => "Send Authorization: Bearer <access token> (from auth/login).",
            Unauthorized::UserGone => "Sign in again.",
            Unauthorized::UserDisabled => "Ask an admin of the app.",
            Unauthorized::Stale => "Sign in again with the current password.",
            Unauthorized::UserTokensRefused => {
                "Call without Authorization, or through a server that keeps the app's users."
            }
        }
    }
}

/// The token of an `Authorization`-style header value: `Some` for `Bearer <token>`.
fn bearer_token(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty())
}

/// The credentials a request carries: the text of its `Authorization` and `on-behalf-of`
/// headers (a header that is not text counts as present and empty).
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub on_behalf_of: Option<&'a str>,
}

/// The caller of `app_id` named by `credentials`: `Ok(None)` without an `Authorization`, an
/// error for any bearer or `on-behalf-of` that is not a bearer or does not verify for this app.
pub fn identify(
    tokens: &TokenMinter,
    credentials: Credentials<'_>,
    app_id: &str,
) -> Result<Option<Identity>, Unauthorized> {
    let Some(value) = credentials.authorization else { return Ok(None) };
    let Some(token) = bearer_token(value) else { return Err(Unauthorized::NotBearer) };
    let claims = tokens.verify_for_app(token, app_id).map_err(Unauthorized::BadToken)?;
    Ok(Some(identity_of(tokens, credentials, app_id, &claims)?))
}

fn identity_of(
    tokens: &TokenMinter,
    credentials: Credentials<'_>,
    app_id: &str,
    claims: &Claims,
) -> Result<Identity, Unauthorized> {
    if claims.role != ROLE_SERVICE {
        return Ok(Identity::User(TokenUser { id: claims.sub.clone(), stamp: claims.stamp.clone() }));
    }
    let on_behalf_of = match credentials.on_behalf_of {
        None => None,
        Some(value) => {
            let token = bearer_token(value).ok_or(Unauthorized::OnBehalfOfNotBearer)?;
            let user = tokens.verify_for_app(token, app_id).map_err(Unauthorized::BadOnBehalfOf)?;
            if user.role == ROLE_SERVICE {
                return Err(Unauthorized::OnBehalfOfService);
            }
            Some(TokenUser { id: user.sub, stamp: user.stamp })
        }
    };
    Ok(Identity::Service { on_behalf_of })
}

/// For the function routes: an `Authorization: Bearer` a caller sends (`authorization`, the
/// header's text) must verify for the app (refused otherwise), so that a function only ever sees
/// a bearer this server issued for it. Returns the user of a user token, whose sign-in state the
/// caller checks next ([`crate::user_states::UserStates::check`]). Other schemes are left to the
/// server's header rules, which drop them.
pub fn check_function_bearer(
    tokens: &TokenMinter,
    authorization: Option<&str>,
    app_id: &str,
) -> Result<Option<TokenUser>, Unauthorized> {
    let Some(token) = authorization.and_then(bearer_token) else { return Ok(None) };
    let claims = tokens.verify_for_app(token, app_id).map_err(Unauthorized::BadToken)?;
    Ok((claims.role != ROLE_SERVICE).then_some(TokenUser { id: claims.sub, stamp: claims.stamp }))
}

/// What a [`Limiter`] counts, each in its own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attempt {
    /// A login or a current-password check: refunded when the password was right.
    Login,
    /// A verification code guess: refunded when the code was right.
    Otp,
    /// A request that sends mail or hashes a new password (`register`, `resend-otp`,
    /// `reset-password-request`, `invite-user`): never refunded.
    Mail,
}

/// What is counted against: the account (an e-mail, normalised) or a caller, and the client
/// address.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The account or caller; `None` counts the address only.
    pub account: Option<&'a str>,
    pub address: Option<IpAddr>,
}

/// The limits of a [`Limiter`], per `window`: failed logins per account and per client address,
/// verification code guesses, and mail-sending requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins (and current-password checks) per account.
    pub per_account: u32,
    /// Failed logins per client address.
    pub per_address: u32,
    pub window: Duration,
    /// Wrong verification codes per account, whatever the number of codes sent.
    pub otp_per_account: u32,
    /// Wrong verification codes per client address.
    pub otp_per_address: u32,
    /// Mail-sending requests per recipient account or inviting caller.
    pub mail_per_account: u32,
    /// Mail-sending requests (and registrations) per client address.
    pub mail_per_address: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_account: 5,
            per_address: 30,
            window: Duration::from_secs(15 * 60),
            otp_per_account: 5,
            otp_per_address: 30,
            mail_per_account: 5,
            mail_per_address: 20,
        }
    }
}

impl LoginLimits {
    pub(crate) fn limits(&self, attempt: Attempt) -> (u32, u32) {
        match attempt {
            Attempt::Login => (self.per_account, self.per_address),
            Attempt::Otp => (self.otp_per_account, self.otp_per_address),
            Attempt::Mail => (self.mail_per_account, self.mail_per_address),
        }
    }
}

/// A bucket's key: a hash of what it counts, so its size does not depend on the request.
pub(crate) type Key = [u8; 16];

/// Counts attempts in fixed windows, in memory (per node). An attempt is counted *before* the
/// work it guards ([`Limiter::reserve`]), under one lock, so concurrent attempts cannot all pass
/// the check; a successful login or code gives its reservation back ([`Limiter::refund`]).
///
/// The per-address limit refuses outright only the attempts that are never refunded
/// ([`Attempt::Mail`]). Past it, a login or a code is still checked, and counted (a failure stays
/// counted): a right one passes, a wrong one is answered as over the limit. Otherwise anyone could
/// lock everyone behind a shared address out of an app with a few wrong guesses (the per-account
/// limit still stops guessing at one account; the Argon2 work is bounded by the store).
///
/// The map holds at most [`MAX_ENTRIES`] buckets; expired ones are swept on a schedule (every
/// [`SWEEP_EVERY`] at most once), and when it is full. When it is still full after that, new
/// buckets are refused (the request answers 429) rather than letting the limits lapse.
#[derive(Debug)]
pub struct Limiter {
    limits: LoginLimits,
    state: Mutex<Buckets>,
}

/// The old name: the limiter started with logins.
pub type LoginLimiter = Limiter;

#[derive(Debug)]
struct Buckets {
    counts: HashMap<Key, (Instant, u32)>,
    last_sweep: Instant,
    next_sweep: Instant,
}

/// Buckets kept at most (about 40 bytes each).
pub const MAX_ENTRIES: usize = 200_000;
/// How often expired buckets are swept at most.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What a reservation took, to give back with [`Limiter::refund`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Reservation {
    pub(crate) keys: [Option<Key>; 2],
    /// The address was past its limit when this was reserved: how long until its window ends.
    pub(crate) address_limited: Option<Duration>,
}

impl Reservation {
    /// `Some(retry after)` when the client address was past its limit: a right password or code
    /// still passes, a wrong one is answered [`Limit::Address`].
    pub fn address_limited(&self) -> Option<Duration> {
        self.address_limited
    }
}

/// Which limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The account's (or caller's): a completed password reset lifts a login lock.
    Account,
    /// The client address's.
    Address,
    /// The limiter cannot track a new caller now (it is full).
    Full,
}

/// An attempt refused: which limit, and how long until it may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub limit: Limit,
    pub retry_after: Duration,
}

/// The per-address part of a client address: the address itself for IPv4 (and IPv4-mapped
/// IPv6), the /64 network for IPv6, which a single client commonly holds whole.
pub fn address_prefix(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

pub(crate) fn key(attempt: Attempt, kind: u8, app_id: &str, what: &[u8]) -> Key {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update([attempt as u8, kind]);
    hash.update(app_id.as_bytes());
    hash.update([0]);
    hash.update(what);
    let digest = hash.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

impl Limiter {
    pub fn new(limits: LoginLimits) -> Self {
        Limiter {
            limits,
            state: Mutex::new(Buckets {
                counts: HashMap::new(),
                last_sweep: Instant::now(),
                next_sweep: Instant::now() + SWEEP_EVERY,
            }),
        }
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    pub(crate) fn keys(attempt: Attempt, app_id: &str, subject: Subject<'_>) -> [Option<(Key, u32)>; 2] {
        [
            subject.account.map(|account| (key(attempt, b'a', app_id, account.as_bytes()), 0)),
            subject.address.map(|address| {
                let bytes = match address_prefix(address) {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                (key(attempt, b'i', app_id, &bytes), 1)
            }),
        ]
    }

    /// Counts one `attempt` for the subject's account and address, or refuses it (then nothing
    /// is counted) when the account is at its limit, or the address is and the attempt is
    /// [`Attempt::Mail`]. A login or code past the address's limit is counted and reserved with
    /// [`Reservation::address_limited`] set. Check and count happen under one lock.
    pub fn reserve(&self, attempt: Attempt, app_id: &str, subject: Subject<'_>) -> Result<Reservation, Refused> {
        let (per_account, per_address) = self.limits.limits(attempt);
        let window = self.limits.window;
        let keys = Self::keys(attempt, app_id, subject);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Swept on schedule, and when full (then at most once a second, so that a flood cannot
        // make every request scan the map).
        let due = now >= state.next_sweep;
        let full =
            state.counts.len() + 2 > MAX_ENTRIES && now.duration_since(state.last_sweep) >= Duration::from_secs(1);
        if due || full {
            state.counts.retain(|_, (start, _)| now.duration_since(*start) < window);
            state.last_sweep = now;
            state.next_sweep = now + SWEEP_EVERY;
        }
        let mut address_limited = None;
        for (key, kind) in keys.iter().flatten() {
            let (limit, which) = if *kind == 0 { (per_account, Limit::Account) } else { (per_address, Limit::Address) };
            let over = match state.counts.get(key) {
                Some((start, n)) if now.duration_since(*start) < window && *n >= limit => {
                    Some(window.saturating_sub(now.duration_since(*start)))
                }
                _ if limit == 0 => Some(window),
                Some(_) => None,
                None if state.counts.len() >= MAX_ENTRIES => {
                    tracing::warn!(
                        entries = MAX_ENTRIES,
                        "the rate limiter is full; refusing new callers until it drains"
                    );
                    return Err(Refused { limit: Limit::Full, retry_after: window });
                }
                None => None,
            };
            match over {
                // Right passwords and codes still pass an address's limit (see the type's doc).
                Some(retry_after) if which == Limit::Address && attempt != Attempt::Mail => {
                    address_limited = Some(retry_after);
                }
                Some(retry_after) => return Err(Refused { limit: which, retry_after }),
                None => {}
            }
        }
        for (key, _) in keys.iter().flatten() {
            let entry = state.counts.entry(*key).or_insert((now, 0));
            if now.duration_since(entry.0) >= window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
        Ok(Reservation { keys: keys.map(|k| k.map(|(key, _)| key)), address_limited })
    }

    /// Gives a reservation back after a success: the account's count is cleared (a right
    /// password or code ends its run of failures) and the address's attempt is returned.
    pub fn refund(&self, reservation: Reservation) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let [account, address] = reservation.keys;
        if let Some(account) = account {
            state.counts.remove(&account);
        }
        if let Some(address) = address
            && let Some(entry) = state.counts.get_mut(&address)
        {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    /// Ends the account's run of failed `attempt`s (its lock, if it had reached the limit): a
    /// completed password reset proves the mailbox, so the account's owner may sign in again.
    /// The per-address counts stay.
    pub fn clear_account(&self, attempt: Attempt, app_id: &str, account: &str) {
        let key = key(attempt, b'a', app_id, account.as_bytes());
        self.state.lock().unwrap_or_else(|e| e.into_inner()).counts.remove(&key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().unwrap().counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn auth(authorization: &str) -> Credentials<'_> {
        Credentials { authorization: Some(authorization), on_behalf_of: None }
    }

    #[test]
    fn bearers_are_verified_for_their_app() {
        let tokens = TokenMinter::new(b"k", Duration::from_secs(60));
        let user = bearer(&tokens.mint_user("app1", "u1", "a@b.c", "s1", Duration::from_secs(60)));
        let service = bearer(&tokens.mint_service("app1"));
        assert_eq!(identify(&tokens, Credentials::default(), "app1"), Ok(None));
        let u1 = TokenUser { id: "u1".into(), stamp: Some("s1".into()) };
        assert_eq!(identify(&tokens, auth(&user), "app1"), Ok(Some(Identity::User(u1.clone()))));
        assert_eq!(identify(&tokens, auth(&service), "app1"), Ok(Some(Identity::Service { on_behalf_of: None })));
        let on_behalf = Credentials { authorization: Some(&service), on_behalf_of: Some(&user) };
        assert_eq!(identify(&tokens, on_behalf, "app1").unwrap().unwrap().user(), Some(&u1));
        let not_a_token = bearer("not.a.token");
        for bad in [
            auth(&user),
            auth("Basic eDp5"),
            auth(&not_a_token),
            Credentials { authorization: Some(&service), on_behalf_of: Some("Bearer forged") },
        ] {
            assert!(identify(&tokens, bad, "app2").is_err(), "{bad:?}");
        }
        let forged = bearer(&TokenMinter::new(b"other", Duration::from_secs(60)).mint_user(
            "app1",
            "u1",
            "a@b.c",
            "s1",
            Duration::from_secs(60),
        ));
        let err = identify(&tokens, auth(&forged), "app1").unwrap_err();
        assert!(err.to_string().contains("signature"), "{err:?}");
        assert_eq!(check_function_bearer(&tokens, Some("Basic eDp5"), "app1"), Ok(None));
        assert!(check_function_bearer(&tokens, Some(&user), "app2").is_err());
        assert_eq!(check_function_bearer(&tokens, Some(&user), "app1"), Ok(Some(u1)), "a user to check next");
        assert_eq!(check_function_bearer(&tokens, Some(&service), "app1"), Ok(None));
    }

    fn limits(per_account: u32, per_address: u32) -> LoginLimits {
        LoginLimits { per_account, per_address, window: Duration::from_secs(60), ..LoginLimits::default() }
    }

    fn login<'a>(account: &'a str, address: [u8; 4]) -> Subject<'a> {
        Subject { account: Some(account), address: Some(address.into()) }
    }

    #[test]
    fn the_limiter_blocks_an_account_and_an_address() {
        let limiter = Limiter::new(limits(2, 3));
        let ip = [10, 0, 0, 1];
        let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", ip)).unwrap();
        let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", ip)).unwrap();
        assert!(limiter.reserve(Attempt::Login, "a", login("ann@x", ip)).is_err(), "the account is blocked");
        assert!(limiter.reserve(Attempt::Login, "b", login("ann@x", [10, 0, 0, 2])).is_ok(), "per app");
        assert!(limiter.reserve(Attempt::Otp, "a", login("ann@x", [10, 0, 0, 2])).is_ok(), "per kind of attempt");
        let bob = limiter.reserve(Attempt::Login, "a", login("bob@x", ip)).unwrap();
        assert_eq!(bob.address_limited(), None, "the address's third failure is within its limit");
        // Past the address's limit a login is still reserved (a right password passes), marked.
        let carl = limiter.reserve(Attempt::Login, "a", login("carl@x", ip)).unwrap();
        let retry = carl.address_limited().expect("the address is past its limit");
        assert!(retry <= Duration::from_secs(60) && retry > Duration::ZERO, "{retry:?}");
        // The account's limit still refuses, and names itself.
        let refused = limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 9])).unwrap_err();
        assert_eq!(refused.limit, Limit::Account);
    }

    /// Mail is never refunded: past the address's limit it is refused outright.
    #[test]
    fn mail_past_the_address_limit_is_refused() {
        let limiter = Limiter::new(LoginLimits { mail_per_address: 2, ..limits(100, 100) });
        let ip = [10, 0, 0, 1];
        for account in ["a@x", "b@x"] {
            let _ = limiter.reserve(Attempt::Mail, "a", login(account, ip)).unwrap();
        }
        let refused = limiter.reserve(Attempt::Mail, "a", login("c@x", ip)).unwrap_err();
        assert_eq!(refused.limit, Limit::Address);
        assert!(limiter.reserve(Attempt::Login, "a", login("c@x", ip)).unwrap().address_limited().is_none());
    }

    /// The check and the count are one step: of many attempts, exactly the limit get through.
    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let limiter = std::sync::Arc::new(Limiter::new(limits(3, 1000)));
        let passed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    for _ in 0..8 {
                        if limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 1])).is_ok() {
                            passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(passed.into_inner(), 3);
    }

    #[test]
    fn a_refund_clears_the_account_and_returns_the_address_attempt() {
        let limiter = Limiter::new(limits(2, 2));
        let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 1])).unwrap();
        let good = limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 1])).unwrap();
        limiter.refund(good);
        // The account starts afresh and the address has one attempt back.
        let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 1])).unwrap();
        let bob = limiter.reserve(Attempt::Login, "a", login("bob@x", [10, 0, 0, 1])).unwrap();
        assert!(bob.address_limited().is_some(), "the address is used up");
    }

    #[test]
    fn clearing_an_account_lifts_its_lock_only() {
        let limiter = Limiter::new(limits(2, 3));
        let ip = [10, 0, 0, 1];
        for _ in 0..2 {
            let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", ip)).unwrap();
        }
        assert!(limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 2])).is_err(), "locked");
        limiter.clear_account(Attempt::Login, "b", "ann@x");
        assert!(limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 2])).is_err(), "another app's account");
        limiter.clear_account(Attempt::Login, "a", "ann@x");
        let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", ip)).unwrap();
        // The address keeps its count: two failures and this one are its three.
        let bob = limiter.reserve(Attempt::Login, "a", login("bob@x", ip)).unwrap();
        assert!(bob.address_limited().is_some(), "the address is used up");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limiter = Limiter::new(limits(100, 2));
        let v6 = |s: &str| Subject { account: None, address: Some(s.parse().unwrap()) };
        let _ = limiter.reserve(Attempt::Login, "a", v6("2001:db8:1:2::1")).unwrap();
        let _ = limiter.reserve(Attempt::Login, "a", v6("2001:db8:1:2:ffff::9")).unwrap();
        let same = limiter.reserve(Attempt::Login, "a", v6("2001:db8:1:2:abcd::1")).unwrap();
        assert!(same.address_limited().is_some(), "one /64");
        let other = limiter.reserve(Attempt::Login, "a", v6("2001:db8:1:3::1")).unwrap();
        assert!(other.address_limited().is_none(), "another /64");
        assert_eq!(address_prefix("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn buckets_are_hashed_and_swept() {
        let limiter = Limiter::new(LoginLimits { window: Duration::ZERO, ..limits(5, 5) });
        let long = "a".repeat(1_000_000);
        for i in 0..10u8 {
            let _ = limiter.reserve(Attempt::Login, "a", login(&long, [10, 0, 0, i]));
        }
        assert_eq!(limiter.len(), 11, "one account, ten addresses");
        // Force the schedule: the next reservation sweeps every expired bucket.
        limiter.state.lock().unwrap().next_sweep = Instant::now();
        let _ = limiter.reserve(Attempt::Login, "a", login("ann@x", [10, 0, 0, 1]));
        assert_eq!(limiter.len(), 2, "only the new buckets are left");
    }
}
