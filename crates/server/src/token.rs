//! Service tokens: short-lived HS256 JWTs minted for every function request.
//!
//! The HMAC key is expanded once; minting is a JSON write, two base64 encodings and one HMAC
//! over ~200 bytes, about a microsecond, so it stays off the profile of the request path.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Claims of a service token. `role` is always `service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    pub iss: String,
    pub sub: String,
    pub role: String,
    pub app_id: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Clone)]
pub struct TokenMinter {
    mac: Hmac<Sha256>,
    header: String,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
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

    pub fn mint_service(&self, app_id: &str) -> String {
        let now = unix_now();
        let claims = ServiceClaims {
            iss: "homebase".into(),
            sub: "service".into(),
            role: "service".into(),
            app_id: app_id.into(),
            iat: now,
            exp: now + self.ttl.as_secs(),
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

    /// Checks signature and expiry and returns the claims.
    pub fn verify_service(&self, token: &str) -> Result<ServiceClaims, TokenError> {
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
        let claims: ServiceClaims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
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
}
