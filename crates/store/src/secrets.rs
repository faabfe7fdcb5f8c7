//! App secrets: name checks and the authenticated encryption of values at rest.
//!
//! Each value is sealed with XChaCha20-Poly1305 under the store's master key, with a fresh
//! random 24-byte nonce and `app id`, a NUL byte and the secret name as associated data, so a
//! ciphertext copied to another app or name fails to open. Values never appear in errors.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;

use crate::error::{Result, StoreError};

/// Bytes in a master key.
pub const MASTER_KEY_LEN: usize = 32;
/// Bytes in a nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Longest secret name accepted.
const MAX_NAME_LEN: usize = 256;
/// Largest secret value accepted (bytes).
const MAX_VALUE_LEN: usize = 64 * 1024;

/// The 32-byte key secrets are encrypted under. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    /// A new random key.
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        rand::rng().fill(&mut bytes);
        MasterKey(bytes)
    }

    /// Reads a key written as 64 hex digits or as standard base64 (with or without padding) of
    /// 32 bytes; surrounding whitespace is ignored. The error never repeats the text.
    pub fn parse(text: &str) -> Result<MasterKey> {
        use base64::Engine;
        let text = text.trim();
        let bytes = if text.len() == 2 * MASTER_KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..MASTER_KEY_LEN).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .unwrap_or_default()
        };
        let bytes: [u8; MASTER_KEY_LEN] = bytes.try_into().map_err(|_| {
            StoreError::invalid(
                "The master key must be 32 bytes written as 64 hex digits or as base64 \
                 (generate one with `openssl rand -hex 32`)",
            )
        })?;
        Ok(MasterKey(bytes))
    }

    /// The key as 64 lowercase hex digits (for the key file).
    pub fn to_hex(&self) -> String {
        crate::ids::hex(&self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// `(nonce, ciphertext)` of `value` for `app_id`/`name`.
    pub(crate) fn seal(&self, app_id: &str, name: &str, value: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let aad = associated_data(app_id, name);
        let ciphertext = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: &aad })
            .map_err(|_| StoreError::Database(format!("Encrypting the secret '{name}' failed")))?;
        Ok((nonce.to_vec(), ciphertext))
    }

    /// The value sealed by [`seal`](MasterKey::seal); fails when the key, app, name, nonce or
    /// ciphertext differ from those it was sealed with.
    pub(crate) fn open(&self, app_id: &str, name: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<String> {
        let undecryptable = || {
            StoreError::Database(format!(
                "The secret '{name}' of app '{app_id}' could not be decrypted: the master key \
                 (HOMEBASE_MASTER_KEY or master.key in the data folder) is not the one it was stored with, \
                 or the stored value was altered"
            ))
        };
        if nonce.len() != NONCE_LEN {
            return Err(undecryptable());
        }
        let aad = associated_data(app_id, name);
        let plain = self
            .cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map_err(|_| undecryptable())
    }
}

fn associated_data(app_id: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(app_id.len() + 1 + name.len());
    aad.extend_from_slice(app_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Whether `name` is a valid environment-variable name: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn is_valid_secret_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a secret name (the error names it) and, when given, its value (the error never
/// shows the value).
pub(crate) fn validate(name: &str, value: Option<&str>) -> Result<()> {
    if !is_valid_secret_name(name) || name.len() > MAX_NAME_LEN {
        return Err(StoreError::invalid(format!(
            "'{name}' is not a valid secret name: use letters, digits and '_', not starting with a digit \
             (like an environment variable, e.g. STRIPE_API_KEY), at most {MAX_NAME_LEN} characters"
        )));
    }
    if let Some(value) = value {
        if value.len() > MAX_VALUE_LEN {
            return Err(StoreError::invalid(format!(
                "The value of secret '{name}' is larger than {} KiB",
                MAX_VALUE_LEN / 1024
            )));
        }
        if value.contains('\0') {
            return Err(StoreError::invalid(format!(
                "The value of secret '{name}' contains a NUL character, which an environment variable cannot hold"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_environment_variable_rules() {
        for good in ["A", "_", "a_b", "STRIPE_KEY_2", "_1"] {
            assert!(is_valid_secret_name(good), "{good}");
        }
        for bad in ["", "1BAD", "A-B", "A B", "É", "a.b", "A=B"] {
            assert!(!is_valid_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn seal_and_open_bind_key_app_and_name() {
        let key = MasterKey::generate();
        let (nonce, ct) = key.seal("app", "NAME", "s3cret").unwrap();
        assert_eq!(key.open("app", "NAME", &nonce, &ct).unwrap(), "s3cret");
        assert!(key.open("app2", "NAME", &nonce, &ct).is_err());
        assert!(key.open("app", "OTHER", &nonce, &ct).is_err());
        let err = MasterKey::generate().open("app", "NAME", &nonce, &ct).unwrap_err();
        assert!(err.to_string().contains("master key"), "{err}");
        let (nonce2, ct2) = key.seal("app", "NAME", "s3cret").unwrap();
        assert_ne!((nonce, ct), (nonce2, ct2), "a fresh nonce per value");
    }

    #[test]
    fn keys_parse_from_hex_and_base64_only() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::parse(&key.to_hex()).unwrap(), key);
        assert_eq!(MasterKey::parse(&format!(" {}\n", key.to_hex().to_uppercase())).unwrap(), key);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.0);
        assert_eq!(MasterKey::parse(&b64).unwrap(), key);
        assert_eq!(MasterKey::parse(b64.trim_end_matches('=')).unwrap(), key);
        for bad in ["", "abc", &key.to_hex()[..62], "not a key at all, definitely not", &"zz".repeat(32)] {
            let err = MasterKey::parse(bad).unwrap_err();
            assert!(err.to_string().contains("32 bytes"), "{err}");
        }
        assert_eq!(format!("{key:?}"), "MasterKey(…)");
    }
}
