//! The JOSE header and JWT claims rules a recipient must follow (RFC 7515,
//! RFC 7519, RFC 8725), applied before and after the signature check.
//!
//! jsonwebtoken's `decode_header` parses `crit` but never enforces it and
//! reads claims with a last-duplicate-wins parser; greenlight reads both
//! JSON objects itself so that every rule below holds. The table in the
//! README lists each rule and the test that shows it.

use super::Algorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON object whose member names are unique: a duplicate name fails the
/// parse instead of silently keeping one of the values (RFC 7515 §5.2 step
/// 4 and RFC 7519 §7.2 step 10 allow either; refusing leaves no room for
/// two parsers to read different claims from one token).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UniqueObject(pub Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut members = Map::new();
                while let Some((name, value)) = access.next_entry::<String, Value>()? {
                    if members.contains_key(&name) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    members.insert(name, value);
                }
                Ok(UniqueObject(members))
            }
        }
        d.deserialize_map(Members)
    }
}

/// Decodes one base64url segment (no padding, canonical trailing bits) and
/// parses it as a JSON object with unique member names.
pub fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice::<UniqueObject>(&bytes)
        .ok()
        .map(|o| o.0)
}

/// What greenlight uses of a JOSE header that passed [`check_header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// The header of a compact JWS, checked:
/// - `alg` a string naming one of the three supported algorithms, exactly;
/// - `crit` refused whatever it lists: greenlight understands no extension
///   parameter (RFC 7515 §4.1.11), and an empty or malformed list is
///   invalid too;
/// - `typ`, when present, `JWT` or `at+jwt` (with or without
///   `application/`, any case: RFC 7515 §4.1.9, RFC 9068 §2.1); another
///   type is another kind of token (RFC 8725 §3.11);
/// - `cty` refused: a JWT's payload is a claims set, and `cty: JWT` is a
///   nested token greenlight does not unwrap (RFC 7519 §5.2);
/// - `enc` / `zip` refused: JWE parameters in a JWS header;
/// - `kid`, when present, a string;
/// - `jku`, `x5u`, `jwk`, `x5c` are never fetched nor trusted: only the
///   configured keys verify (RFC 8725 §3.10).
pub fn check_header(segment: &str) -> Option<JoseHeader> {
    let header = decode_object(segment)?;
    let alg = match header.get("alg")?.as_str()? {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        _ => return None,
    };
    if ["crit", "cty", "enc", "zip"]
        .iter()
        .any(|name| header.contains_key(*name))
    {
        return None;
    }
    if let Some(typ) = header.get("typ") {
        let typ = typ.as_str()?.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        if typ != "jwt" && typ != "at+jwt" {
            return None;
        }
    }
    let kid = match header.get("kid") {
        None => None,
        Some(kid) => Some(kid.as_str()?.to_string()),
    };
    Some(JoseHeader { alg, kid })
}

/// The registered claims' types (RFC 7519 §4.1): `exp` is required and,
/// like `nbf` and `iat` when present, a JSON number (a NumericDate, which
/// may carry a fraction); `iss`, `sub` and `jti` strings; `aud` a string
/// or an array of strings. A claim of the wrong type makes the token
/// invalid rather than being skipped.
pub fn check_claim_types(claims: &Map<String, Value>) -> bool {
    let number = |name: &str| claims.get(name).is_none_or(Value::is_number);
    let string = |name: &str| claims.get(name).is_none_or(Value::is_string);
    let audience = match claims.get("aud") {
        None | Some(Value::String(_)) => true,
        Some(Value::Array(list)) => list.iter().all(Value::is_string),
        Some(_) => false,
    };
    claims.get("exp").is_some_and(Value::is_number)
        && number("nbf")
        && number("iat")
        && string("iss")
        && string("sub")
        && string("jti")
        && audience
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn duplicate_names_fail_at_the_top_level() {
        assert!(decode_object(&seg(r#"{"a":1,"a":1}"#)).is_none());
        assert!(decode_object(&seg(r#"{"a":1,"b":{"c":1}}"#)).is_some());
        assert!(decode_object(&seg("[]")).is_none());
        assert!(decode_object(&seg("{}")).is_some());
        // Padding and non-canonical trailing bits are not base64url.
        assert!(decode_object(&format!("{}=", seg("{}"))).is_none());
        assert!(decode_object("e30").is_some());
        assert!(decode_object("e31").is_none());
    }

    #[test]
    fn header_rules() {
        let ok = |h: &str| check_header(&seg(h));
        assert_eq!(
            ok(r#"{"alg":"RS256","kid":"k","typ":"Application/JWT"}"#),
            Some(JoseHeader {
                alg: Algorithm::RS256,
                kid: Some("k".into())
            })
        );
        assert!(ok(r#"{"alg":"ES256","typ":"application/at+jwt"}"#).is_some());
        assert!(ok(r#"{"alg":"ES256","jwk":{"kty":"EC"},"x5c":["AA"]}"#).is_some());
        for bad in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS512"}"#,
            r#"{"alg":"HS256","crit":["x"],"x":1}"#,
            r#"{"alg":"HS256","typ":"jwt+other"}"#,
            r#"{"alg":"HS256","cty":"JWT"}"#,
            r#"{"alg":"HS256","kid":1}"#,
            r#"{"alg":"HS256","typ":null}"#,
        ] {
            assert!(ok(bad).is_none(), "{bad}");
        }
    }
}
