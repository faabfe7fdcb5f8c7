//! The tokens Homebase signs: HS256 JWTs, all under one key.
//!
//! - **Service tokens** (`role: "service"`) are minted for every function request, short-lived,
//!   bound to one app (`app_id`).
//! - **User tokens** (`role: "user"`) are an app user's access token: the user id in `sub`, the
//!   app in `app_id`, an expiry, and `stamp`, the user's password stamp when the token was
//!   issued: the user routes compare it with the stored one, so a password change or reset
//!   signs old tokens out. The user's app role (`user`/`admin`) is not in the token; it is read
//!   from the store where it matters, so a change applies at once.
//!
//! The key comes from a file created on first start ([`TokenMinter::from_key_file`]), so tokens
//! survive a restart. The HMAC key is expanded once; minting is a JSON write, two base64
//! encodings and one HMAC over ~200 bytes, about a microsecond, so it stays off the profile of
//! the request path. Verification checks the fixed header (no algorithm choice is taken from the
//! token), the signature, the expiry and, with [`TokenMinter::verify_for_app`], the app.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Claims of a token: `role` is `service` or `user`; `sub` is `service` or the user's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub role: String,
    pub app_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// User tokens: the user's password stamp when it was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    pub iat: u64,
    pub exp: u64,
}

/// The claims of a service token (the same shape as every token's).
pub type ServiceClaims = Claims;

pub const ROLE_SERVICE: &str = "service";
pub const ROLE_USER: &str = "user";

#[derive(Clone)]
pub struct TokenMinter {
    mac: Hmac<Sha256>,
    header: String,
    ttl: Duration,
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token belongs to another app")]
    OtherApp,
    #[error("the token is not of the kind this needs")]
    WrongKind,
}

impl TokenMinter {
    pub fn new(key: &[u8], ttl: Duration) -> TokenMinter {
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        TokenMinter { mac, header, ttl }
    }

    /// A minter with a fresh random key (dev: tokens need not survive a restart).
    pub fn random(ttl: Duration) -> TokenMinter {
        let key: [u8; 32] = rand::random();
        TokenMinter::new(&key, ttl)
    }

    /// The key in `path` (64 hex digits), or a new random key written there (mode 0600, folders
    /// created) when the file does not exist yet. The new file is written whole under a temporary
    /// name and then linked into place without replacing anything, so a second process starting
    /// at the same moment either sees no file or the complete one, and both end up with the key
    /// that is in the file.
    pub fn from_key_file(path: &Path, ttl: Duration) -> std::io::Result<TokenMinter> {
        match read_key_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => return other.map(|key| TokenMinter::new(&key, ttl)),
        }
        let key: [u8; 32] = rand::random();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "auth.key".into());
        let temp = path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        write_private(&temp, &format!("{hex}\n"))?;
        let placed = match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            // A file system without hard links: a rename, when there is still nothing to replace.
            Err(_) if !path.exists() => std::fs::rename(&temp, path).map(|()| true),
            Err(_) => Ok(false),
        };
        let _ = std::fs::remove_file(&temp);
        if placed? {
            return Ok(TokenMinter::new(&key, ttl));
        }
        // Another process created it first: use its key.
        read_key_file(path).map(|key| TokenMinter::new(&key, ttl))
    }

    /// How long a service token lives.
    pub fn service_ttl(&self) -> Duration {
        self.ttl
    }

    pub fn mint_service(&self, app_id: &str) -> String {
        self.mint(ROLE_SERVICE, "service", app_id, None, None, self.ttl)
    }

    /// A user access token for `user_id` of `app_id` with the user's password `stamp`, valid for
    /// `ttl`.
    pub fn mint_user(&self, app_id: &str, user_id: &str, email: &str, stamp: &str, ttl: Duration) -> String {
        self.mint(ROLE_USER, user_id, app_id, Some(email), Some(stamp), ttl)
    }

    fn mint(
        &self,
        role: &str,
        sub: &str,
        app_id: &str,
        email: Option<&str>,
        stamp: Option<&str>,
        ttl: Duration,
    ) -> String {
        let now = unix_now();
        let claims = Claims {
            iss: "homebase".into(),
            sub: sub.into(),
            role: role.into(),
            app_id: app_id.into(),
            email: email.map(String::from),
            stamp: stamp.map(String::from),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialise");
        let mut token = String::with_capacity(256);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        let signature = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }

    /// Checks signature and expiry of a service token and returns its claims.
    pub fn verify_service(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.verify(token)?;
        if claims.role != ROLE_SERVICE {
            return Err(TokenError::WrongKind);
        }
        Ok(claims)
    }

    /// Checks a token of either kind and that it belongs to `app_id`.
    pub fn verify_for_app(&self, token: &str, app_id: &str) -> Result<Claims, TokenError> {
        let claims = self.verify(token)?;
        if claims.app_id != app_id {
            return Err(TokenError::OtherApp);
        }
        if claims.role != ROLE_SERVICE && claims.role != ROLE_USER {
            return Err(TokenError::WrongKind);
        }
        Ok(claims)
    }

    /// Checks signature and expiry and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if header != self.header {
            return Err(TokenError::Malformed);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The lifetime of service tokens for functions that may run `function_timeout`: long enough
/// for the slowest function to call back, and no longer.
pub fn service_ttl(function_timeout: Duration) -> Duration {
    function_timeout + Duration::from_secs(60)
}

/// The 32-byte key in a key file of 64 hex digits; `InvalidData` with what is wrong and what to
/// do otherwise.
fn read_key_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let bad = |why: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the token signing key {} {why}; delete it to make a new one (signed-in users must sign in again)",
                path.display()
            ),
        )
    };
    let text = std::fs::read_to_string(path)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(bad("is empty (was it cut short while being written?)"));
    }
    if text.len() < 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(&format!("is too short: {} hex digits where 64 are needed", text.len())));
    }
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("is not 64 hex digits"));
    }
    Ok((0..32).map(|i| u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).unwrap_or(0)).collect())
}

/// Writes `contents` to a new file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_the_app() {
        let minter = TokenMinter::new(b"k", Duration::from_secs(60));
        let token = minter.mint_service("app1");
        assert_eq!(token.split('.').count(), 3);
        let claims = minter.verify_service(&token).unwrap();
        assert_eq!(claims.app_id, "app1");
        assert_eq!(claims.role, "service");
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn tampered_foreign_and_expired_tokens_fail() {
        let minter = TokenMinter::new(b"k", Duration::from_secs(60));
        let token = minter.mint_service("app1");
        let other = TokenMinter::new(b"other", Duration::from_secs(60));
        assert_eq!(other.verify_service(&token), Err(TokenError::BadSignature));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            br#"{"iss":"homebase","sub":"service","role":"service","app_id":"app2","iat":0,"exp":99999999999}"#,
        );
        parts[1] = &forged;
        assert_eq!(minter.verify_service(&parts.join(".")), Err(TokenError::BadSignature));
        assert_eq!(minter.verify_service("nonsense"), Err(TokenError::Malformed));
        let expired = TokenMinter::new(b"k", Duration::ZERO).mint_service("app1");
        assert_eq!(minter.verify_service(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn user_tokens_are_bound_to_their_app_and_kind() {
        let minter = TokenMinter::new(b"k", Duration::from_secs(60));
        let token = minter.mint_user("app1", "u1", "ann@example.test", "s1", Duration::from_secs(3600));
        let claims = minter.verify_for_app(&token, "app1").unwrap();
        assert_eq!((claims.sub.as_str(), claims.role.as_str()), ("u1", ROLE_USER));
        assert_eq!(claims.email.as_deref(), Some("ann@example.test"));
        assert_eq!(claims.stamp.as_deref(), Some("s1"));
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(minter.verify_for_app(&token, "app2"), Err(TokenError::OtherApp));
        assert_eq!(minter.verify_service(&token), Err(TokenError::WrongKind), "a user token is not a service token");
        // A token signed with another algorithm in its header is refused before any signature check.
        let (_, rest) = token.split_once('.').unwrap();
        let none = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(minter.verify(&none), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.key");
        let first = TokenMinter::from_key_file(&path, Duration::from_secs(60)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let again = TokenMinter::from_key_file(&path, Duration::from_secs(60)).unwrap();
        assert!(again.verify_service(&first.mint_service("a")).is_ok(), "the same key after a restart");
        std::fs::write(&path, "not a key").unwrap();
        let err = TokenMinter::from_key_file(&path, Duration::from_secs(60)).err().unwrap();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        for (text, says) in [("", "is empty"), ("\n", "is empty"), ("abcd", "too short")] {
            std::fs::write(&path, text).unwrap();
            let err = TokenMinter::from_key_file(&path, Duration::from_secs(60)).err().unwrap();
            assert!(err.to_string().contains(says) && err.to_string().contains("delete it"), "{err}");
        }
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["auth.key"], "no temporary file is left behind");
    }

    /// Processes starting together all end up with the key that is in the file.
    #[test]
    fn racing_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.key");
        let minters: Vec<TokenMinter> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| TokenMinter::from_key_file(&path, Duration::from_secs(60)).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let from_file = TokenMinter::from_key_file(&path, Duration::from_secs(60)).unwrap();
        for minter in &minters {
            assert!(from_file.verify_service(&minter.mint_service("a")).is_ok(), "every starter uses the file's key");
        }
    }
}
