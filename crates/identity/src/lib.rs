//! Who a caller is and how much it may try: identity without HTTP.
//!
//! It owns the tokens Homebase signs and the key they are signed with ([`token`]: service tokens
//! minted per function request, app users' access tokens, the key file), the caller a request
//! or an automation run acts as ([`auth::Identity`], from a bearer and an `on-behalf-of` token
//! checked for their app by [`auth::identify`]), the login, code and mail limits
//! ([`auth::Limiter`] and its [`auth::LoginLimits`]; [`limits::Limits`] applies them in
//! memory, or in the store when several nodes share it), the cached sign-in state that voids a
//! user's tokens once the password changed or the user was disabled or deleted
//! ([`user_states`]), and the mail sent to app users ([`mail`]: SMTP, or the log).
//!
//! It knows nothing of HTTP: callers hand it the text of a credential, and its refusals are
//! typed errors ([`auth::Unauthorized`], [`IdentityError`]) that the server maps to answers
//! through its error table. It stores nothing itself: users, passwords and codes are the
//! store's (`homebase-store`), which is the only crate of the workspace it depends on.

pub mod auth;
pub mod limits;
pub mod mail;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod token;
pub mod user_states;

pub use auth::{Identity, Limiter, LoginLimits, TokenUser, Unauthorized};
pub use mail::Mailer;
pub use token::TokenMinter;
pub use user_states::UserStates;

/// Why identity refused or could not decide: the caller is not let in, or the store failed
/// while the caller's state was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Unauthorized(#[from] Unauthorized),
    #[error(transparent)]
    Store(#[from] homebase_store::StoreError),
}

impl IdentityError {
    /// Whether the caller was refused (the server's 401), not failed by the store.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, IdentityError::Unauthorized(_))
    }
}
