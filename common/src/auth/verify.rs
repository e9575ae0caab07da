//! JWS signature verification for the three algorithms greenlight accepts.
//!
//! jsonwebtoken parses headers and JWKs; the signature check itself uses the
//! RustCrypto primitives directly. jsonwebtoken's own crypto backend links
//! signers and verifiers for every JWA algorithm (EdDSA, ES384, PS*, ...),
//! which more than doubled the Worker's wasm; this keeps only what the
//! allow-list can ever select.

use crate::config_error::ConfigError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::Algorithm;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature as EcSignature, VerifyingKey};
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest, Sha256};

/// Claims of a token whose signature checked out.
pub type Claims = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone)]
enum PublicKey {
    Rs256(RsaPublicKey),
    Es256(VerifyingKey),
}

#[derive(Debug, Clone)]
struct NamedKey {
    kid: Option<String>,
    key: PublicKey,
}

/// The asymmetric keys of a JWKS, ready to verify with.
#[derive(Debug, Clone, Default)]
pub struct VerifyKeys {
    keys: Vec<NamedKey>,
}

impl VerifyKeys {
    pub fn from_jwks(jwks: Option<&JwkSet>) -> Result<VerifyKeys, ConfigError> {
        let Some(jwks) = jwks else {
            return Ok(VerifyKeys::default());
        };
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| parse_jwk(jwk, true).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VerifyKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The cheap part of `from_jwks`: every key we would use decodes and has
    /// the right lengths. Building the keys (RSA modulus checks, P-256 point
    /// validation) is left to the first token that needs them, because every
    /// new Spin instance or isolate checks the configuration and most
    /// requests carry no JWT.
    pub fn check_jwks(jwks: Option<&JwkSet>) -> Result<(), ConfigError> {
        for jwk in jwks.map(|j| j.keys.as_slice()).unwrap_or_default() {
            parse_jwk(jwk, false)?;
        }
        Ok(())
    }

    /// The key that may verify `alg`: the one named by `kid`, or the only key
    /// of the right type when the token names none. A key never verifies an
    /// algorithm of another family, so RS/ES/HS confusion is impossible.
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Option<&PublicKey> {
        let fits = |k: &&NamedKey| {
            matches!(
                (&k.key, alg),
                (PublicKey::Rs256(_), Algorithm::RS256) | (PublicKey::Es256(_), Algorithm::ES256)
            )
        };
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .filter(fits)
                .map(|k| &k.key),
            None => {
                let mut fitting = self.keys.iter().filter(fits);
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Some(&only.key),
                    _ => None,
                }
            }
        }
    }
}

/// Keys of other types or algorithms are skipped (a JWKS may list keys for
/// other consumers); a key we should understand but cannot parse is an error.
/// With `build` false only the encoding is checked and `Ok(None)` returned.
fn parse_jwk(jwk: &Jwk, build: bool) -> Result<Option<NamedKey>, ConfigError> {
    let kid = jwk.common.key_id.clone();
    let name = kid.clone().unwrap_or_else(|| "(no kid)".into());
    let declared = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
    let bad = |what: &str| ConfigError(format!("JWKS key {name}: {what}"));
    let b64 = |field: &str, v: &str| {
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|_| bad(&format!("{field} is not base64url")))
    };
    // A key published for another use, or for operations that do not
    // include verifying, never verifies a token (RFC 7517 §4.2, §4.3).
    let for_signatures = match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => true,
        Some(_) => false,
    };
    let may_verify = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    if !(for_signatures && may_verify) {
        return Ok(None);
    }
    let key = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) if declared.as_deref().is_none_or(|a| a == "RS256") => {
            let (n, e) = (b64("n", &p.n)?, b64("e", &p.e)?);
            if !build {
                return Ok(None);
            }
            let (n, e) = (BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e));
            let key = RsaPublicKey::new(n, e).map_err(|e| bad(&format!("bad RSA key: {e}")))?;
            PublicKey::Rs256(key)
        }
        AlgorithmParameters::EllipticCurve(p)
            if p.curve == EllipticCurve::P256
                && declared.as_deref().is_none_or(|a| a == "ES256") =>
        {
            let (x, y) = (b64("x", &p.x)?, b64("y", &p.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err(bad("P-256 coordinates must be 32 bytes"));
            }
            if !build {
                return Ok(None);
            }
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(4);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let key =
                VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| bad("not a point on P-256"))?;
            PublicKey::Es256(key)
        }
        _ => return Ok(None),
    };
    Ok(Some(NamedKey { kid, key }))
}

/// Checks the signature of a compact JWS and returns its claims, or `None`
/// for any failure (the caller maps every failure to one answer).
pub fn verify_signature(
    token: &str,
    alg: Algorithm,
    kid: Option<&str>,
    hs256_secret: Option<&[u8]>,
    keys: &VerifyKeys,
) -> Option<Claims> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let valid = match alg {
        Algorithm::HS256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(hs256_secret?).ok()?;
            mac.update(signing_input.as_bytes());
            // Constant-time comparison.
            mac.verify_slice(&signature).is_ok()
        }
        Algorithm::RS256 => match keys.select(alg, kid)? {
            PublicKey::Rs256(key) => {
                let digest = Sha256::digest(signing_input.as_bytes());
                key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
                    .is_ok()
            }
            PublicKey::Es256(_) => false,
        },
        Algorithm::ES256 => match keys.select(alg, kid)? {
            PublicKey::Es256(key) => {
                // JWS ES256 signatures are the raw 64-byte r || s.
                let sig = EcSignature::from_slice(&signature).ok()?;
                key.verify(signing_input.as_bytes(), &sig).is_ok()
            }
            PublicKey::Rs256(_) => false,
        },
        _ => false,
    };
    if !valid {
        return None;
    }
    super::jose::decode_object(payload)
}
