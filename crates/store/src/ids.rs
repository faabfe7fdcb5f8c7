//! Random identifiers, API key secrets, and SHA-256 in hex.

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};

/// Every API key starts with this.
pub const KEY_PREFIX: &str = "b44k_";
/// Random characters after [`KEY_PREFIX`] in a generated key.
const KEY_RANDOM_CHARS: usize = 40;
/// How many characters of a key are kept in clear for listing (`b44k_` and six more).
const KEY_VISIBLE_CHARS: usize = KEY_PREFIX.len() + 6;
/// Bounds on the part after the prefix of an imported key.
const IMPORTED_KEY_MIN_CHARS: usize = 16;
const IMPORTED_KEY_MAX_CHARS: usize = 200;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// SHA-256 of `bytes`, as 64 lowercase hex characters.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    hex(&buf)
}

/// A new app id: 24 hex characters.
pub(crate) fn new_app_id() -> String {
    random_hex(12)
}

/// A new user id: 24 hex characters.
pub(crate) fn new_user_id() -> String {
    random_hex(12)
}

/// A new key id: `key_` and 16 hex characters.
pub(crate) fn new_key_id() -> String {
    format!("key_{}", random_hex(8))
}

/// A new API key secret: `b44k_` and 40 random alphanumeric characters (about 238 bits).
pub(crate) fn new_key_secret() -> String {
    let random: String = rand::rng().sample_iter(&Alphanumeric).take(KEY_RANDOM_CHARS).map(char::from).collect();
    format!("{KEY_PREFIX}{random}")
}

/// Checks the shape of a key given from outside (`HOMEBASE_ADMIN_KEY`).
pub(crate) fn validate_key_secret(secret: &str) -> Result<()> {
    let Some(rest) = secret.strip_prefix(KEY_PREFIX) else {
        return Err(StoreError::invalid(format!("An API key must start with '{KEY_PREFIX}'")));
    };
    if !(IMPORTED_KEY_MIN_CHARS..=IMPORTED_KEY_MAX_CHARS).contains(&rest.len()) {
        return Err(StoreError::invalid(format!(
            "An API key needs {IMPORTED_KEY_MIN_CHARS} to {IMPORTED_KEY_MAX_CHARS} characters after '{KEY_PREFIX}'; \
             generate one with `openssl rand -hex 20`"
        )));
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(StoreError::invalid("An API key may only contain letters, digits, '-' and '_'"));
    }
    Ok(())
}

/// The part of a key kept in clear.
pub(crate) fn key_visible_prefix(secret: &str) -> String {
    secret.chars().take(KEY_VISIBLE_CHARS).collect()
}

/// What is stored and looked up instead of the key: SHA-256 suffices, keys are high-entropy.
pub(crate) fn key_hash(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_sha256() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn generated_ids_and_keys_have_their_shapes() {
        let app = new_app_id();
        assert_eq!(app.len(), 24);
        assert!(app.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(app, new_app_id());
        let key = new_key_id();
        assert!(key.starts_with("key_") && key.len() == 20, "{key}");
        let secret = new_key_secret();
        assert_eq!(secret.len(), 45);
        assert!(secret.starts_with("b44k_"));
        assert!(secret[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(secret, new_key_secret());
        validate_key_secret(&secret).unwrap();
        assert_eq!(key_visible_prefix(&secret), &secret[..11]);
    }

    #[test]
    fn imported_keys_are_checked() {
        validate_key_secret("b44k_0123456789abcdef").unwrap();
        validate_key_secret("b44k_0123456789abcdef-_XYZ").unwrap();
        for bad in ["0123456789abcdef0123", "b44k_short", "b44k_0123456789abcdef!", "b44k_0123456789 abcdef"] {
            let err = validate_key_secret(bad).unwrap_err();
            assert_eq!(err.code(), "invalid", "{bad}");
        }
    }
}
