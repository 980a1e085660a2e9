//! ES256 compact JWS, encoded here with base64url and aws-lc-rs rather than through a JWT crate:
//! the DPS only ever signs one fixed header shape with one algorithm, which is a few lines over the
//! audited primitive (`ECDSA_P256_SHA256_FIXED_SIGNING` gives the r‖s form JWS requires), and
//! keeps the dependency tree as it is. The public key is published as a JWK (RFC 7517) whose `kid`
//! is its RFC 7638 thumbprint, so every replica with the same key file announces the same `kid`.

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use serde_json::{Map, Value};

/// Why a signing key could not be loaded or a token not signed.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The PEM holds no private key.
    #[error("no private key in the PEM: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
    /// The key is not a P-256 key (or is malformed).
    #[error("not a P-256 (prime256v1) private key")]
    NotP256,
    /// aws-lc-rs refused to generate or to sign.
    #[error("signing failed")]
    Sign,
    /// The claims could not be serialized.
    #[error("cannot encode the claims: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A P-256 key that signs tokens, with its public JWK.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Load a PEM private key (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, JwtError> {
        let der = PrivateKeyDer::from_pem_slice(pem)?;
        let pair = match &der {
            PrivateKeyDer::Pkcs8(k) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_pkcs8_der())
            }
            PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_sec1_der(),
            ),
            _ => return Err(JwtError::NotP256),
        }
        .map_err(|_| JwtError::NotP256)?;
        Self::from_pair(pair)
    }

    /// A fresh random key (for hubs without a configured key).
    pub fn generate() -> Result<Self, JwtError> {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| JwtError::Sign)?;
        Self::from_pair(pair)
    }

    /// A fresh key as PKCS#8 PEM, the file `dps-server init` writes.
    pub fn generate_pem() -> Result<String, JwtError> {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| JwtError::Sign)?;
        let doc = pair.to_pkcs8v1().map_err(|_| JwtError::Sign)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(pem)
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, JwtError> {
        // Uncompressed SEC1 point: 0x04 ‖ x ‖ y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let (x, y) = match point {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return Err(JwtError::NotP256),
        };
        let (x, y) = (B64.encode(x), B64.encode(y));
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(digest(&SHA256, canonical.as_bytes()));
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "use": "sig", "alg": "ES256", "kid": kid,
        });
        Ok(Self { pair, kid, jwk })
    }

    /// The key id (RFC 7638 thumbprint), sent as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// A compact JWS over `claims` with header `{"alg":"ES256","typ":"JWT","kid":…}`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, JwtError> {
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": self.kid });
        let mut out = B64.encode(serde_json::to_vec(&header)?);
        out.push('.');
        out.push_str(&B64.encode(serde_json::to_vec(claims)?));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), out.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        out.push('.');
        out.push_str(&B64.encode(sig.as_ref()));
        Ok(out)
    }
}

/// The claims of a compact JWS, without verifying it (for checking what a token endpoint returned
/// over its authenticated channel); `None` when `token` is not a JWT with a JSON object payload.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = B64.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn verify(token: &str, jwk: &Value) -> bool {
        let coord = |k: &str| {
            jwk[k]
                .as_str()
                .and_then(|s| B64.decode(s).ok())
                .unwrap_or_default()
        };
        let mut point = vec![0x04];
        point.extend(coord("x"));
        point.extend(coord("y"));
        let Some((signed, sig)) = token.rsplit_once('.') else {
            return false;
        };
        let Ok(sig) = B64.decode(sig) else {
            return false;
        };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(signed.as_bytes(), &sig)
            .is_ok()
    }

    #[test]
    fn signed_token_verifies_against_its_jwk_and_carries_kid() {
        let key = SigningKey::from_pem(SigningKey::generate_pem().expect("pem").as_bytes())
            .expect("load");
        let mut claims = Map::new();
        claims.insert("iss".into(), "dps".into());
        let token = key.sign(&claims).expect("sign");
        assert!(verify(&token, key.jwk()));
        let header = unverified_claims(&format!(
            "{}.{}.x",
            "e30",
            token.split('.').next().expect("header")
        ))
        .expect("header json");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid());
        assert_eq!(unverified_claims(&token), Some(claims));
        // A changed payload no longer verifies.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(br#"{"iss":"evil"}"#);
        parts[1] = &forged;
        assert!(!verify(&parts.join("."), key.jwk()));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 §3.1 uses RSA; this checks the EC member order against a hand-built input.
        let key = SigningKey::generate().expect("key");
        let jwk = key.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().expect("x"),
            jwk["y"].as_str().expect("y")
        );
        assert_eq!(key.kid(), B64.encode(digest(&SHA256, canonical.as_bytes())));
        assert_eq!(jwk["kid"], key.kid());
        assert_ne!(SigningKey::generate().expect("key").kid(), key.kid());
    }

    #[test]
    fn other_keys_and_garbage_are_refused() {
        assert!(matches!(
            SigningKey::from_pem(b"not pem"),
            Err(JwtError::Pem(_))
        ));
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        assert!(matches!(
            SigningKey::from_pem(p384.serialize_pem().as_bytes()),
            Err(JwtError::NotP256)
        ));
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
        SigningKey::from_pem(p256.serialize_pem().as_bytes()).expect("rcgen P-256 PKCS#8");
    }

    #[test]
    fn unverified_claims_needs_three_parts_and_an_object() {
        assert!(unverified_claims("opaque-token").is_none());
        assert!(unverified_claims("a.b").is_none());
        assert!(unverified_claims("a.b.c.d").is_none());
        let array = B64.encode(b"[1]");
        assert!(unverified_claims(&format!("e30.{array}.sig")).is_none());
    }
}
