//! Origin authentication: the edge signs every request it forwards with an
//! HTTP Message Signature (RFC 9421, `hmac-sha256`), so an origin can
//! refuse traffic that bypassed the edge, replays outside a short window,
//! and a request signed for one origin sent to another.
//!
//! The edge adds two fields under the label [`LABEL`]:
//!
//! ```text
//! signature-input: greenlight=("@method" "@target-uri" "x-greenlight-principal");created=1800000000;nonce="…";alg="hmac-sha256";keyid="greenlight-edge"
//! signature: greenlight=:<base64 HMAC-SHA256 of the signature base>:
//! ```
//!
//! What is covered, and why:
//! - `@method` and `@target-uri`: the whole URL the edge sent, scheme,
//!   origin authority and any base path included, so a request signed for
//!   blue's origin does not verify at green's (they share the secret);
//! - `x-greenlight-principal`, whenever the edge sends it: who the edge
//!   authenticated. A verifier must refuse a request that carries the
//!   principal without covering it ([`verify`] does);
//! - not the body: a streamed body passes through without being held, and
//!   a digest (`content-digest`) would have to be known before the headers
//!   are sent. Between edge and origin the body is protected by TLS; a
//!   signed request is good once (`nonce`) and for [`DEFAULT_WINDOW_S`].
//!
//! Any RFC 9421 library verifies these with the shared secret as an
//! `hmac-sha256` key; the origin builds `@target-uri` from its own scheme,
//! the `Host` it received and the request target ([`target_uri`]).

use crate::http::HEADER_PRINCIPAL;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;

/// The fields this module writes; an edge that signs drops client copies.
pub const HEADER_SIGNATURE_INPUT: &str = "signature-input";
pub const HEADER_SIGNATURE: &str = "signature";
pub const HEADERS: [&str; 2] = [HEADER_SIGNATURE_INPUT, HEADER_SIGNATURE];
/// The signature's label in both dictionaries.
pub const LABEL: &str = "greenlight";
pub const KEY_ID: &str = "greenlight-edge";
pub const ALG: &str = "hmac-sha256";
/// How far a request's `created` may be from the origin's clock.
pub const DEFAULT_WINDOW_S: u64 = 30;

/// `scheme://authority/path?query` as RFC 9421's `@target-uri` takes it:
/// scheme and host lower-cased, a default port (`:80` for http, `:443`
/// for https) dropped, the request target as sent. The edge and the
/// origin both build it this way, so `https://Origin.example:443/a` and
/// `Host: origin.example` agree.
pub fn target_uri(scheme: &str, authority: &str, path_and_query: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    let path = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    format!("{scheme}://{}{path}", authority.to_ascii_lowercase())
}

/// [`target_uri`] of an absolute URL (`scheme://authority/path?query`).
pub fn target_uri_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(at);
    Some(target_uri(scheme, authority, path_and_query))
}

/// The `@signature-params` value: the covered components and parameters.
fn params(covered: &[&str], created: u64, nonce: &str) -> String {
    let list: Vec<String> = covered.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "({});created={created};nonce=\"{nonce}\";alg=\"{ALG}\";keyid=\"{KEY_ID}\"",
        list.join(" ")
    )
}

/// The signature base (RFC 9421 §2.5): one line per covered component,
/// then `@signature-params`. `value` gives each component's value.
fn base<'a>(
    covered: &[&'a str],
    value: impl Fn(&'a str) -> Option<&'a str>,
    signature_params: &str,
) -> Option<String> {
    let mut out = String::new();
    for c in covered {
        out.push_str(&format!("\"{c}\": {}\n", value(c)?.trim()));
    }
    out.push_str(&format!("\"@signature-params\": {signature_params}"));
    Some(out)
}

fn mac(secret: &[u8], base: &str) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length; the Option keeps request paths free of
    // panics all the same.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(base.as_bytes());
    Some(mac)
}

/// Standard base64 with padding (RFC 4648 §4: RFC 8941's `sf-binary`).
/// Written out, not the crate's encoder: that one took the Worker's wasm
/// past its size budget; the unit tests check both agree.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The two fields to add to a forwarded request of `method` to `url`
/// (the origin's absolute URL), covering `principal` when there is one.
pub fn sign(
    secret: &[u8],
    method: &str,
    url: &str,
    principal: Option<&str>,
    created: u64,
    nonce: &str,
) -> [(String, String); 2] {
    let target = target_uri_of(url).unwrap_or_else(|| url.to_string());
    let mut covered = vec!["@method", "@target-uri"];
    if principal.is_some() {
        covered.push(HEADER_PRINCIPAL);
    }
    let signature_params = params(&covered, created, nonce);
    let value = |c: &str| match c {
        "@method" => Some(method),
        "@target-uri" => Some(target.as_str()),
        _ => principal,
    };
    let signature = base(&covered, value, &signature_params)
        .and_then(|b| mac(secret, &b))
        .map(|m| base64(&m.finalize().into_bytes()))
        .unwrap_or_default();
    [
        (
            HEADER_SIGNATURE_INPUT.to_string(),
            format!("{LABEL}={signature_params}"),
        ),
        (
            HEADER_SIGNATURE.to_string(),
            format!("{LABEL}=:{signature}:"),
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginAuthError {
    /// The signature fields are absent or malformed, or leave out a
    /// component that must be covered.
    Missing,
    /// The signature does not match (wrong secret, or a changed method,
    /// URL or principal).
    BadSignature,
    /// `created` is outside the window.
    Stale,
    /// This nonce was already seen inside the window.
    Replayed,
}

impl fmt::Display for OriginAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OriginAuthError::Missing => "missing edge signature",
            OriginAuthError::BadSignature => "bad edge signature",
            OriginAuthError::Stale => "edge signature outside the time window",
            OriginAuthError::Replayed => "replayed edge signature",
        })
    }
}

/// Remembers nonces for one window so a captured request cannot be replayed.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<String, u64>,
}

impl ReplayGuard {
    fn check_and_insert(&mut self, nonce: &str, ts: u64, now_s: u64, window_s: u64) -> bool {
        // Forget what can no longer pass the time check anyway.
        self.seen
            .retain(|_, t| now_s.saturating_sub(*t) <= window_s);
        if self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_string(), ts);
        true
    }
}

/// Splits a structured-field dictionary (RFC 8941) into its members'
/// `name=value` texts, at commas outside quotes and parentheses.
fn members(dictionary: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0i32, false, false, 0);
    for (i, c) in dictionary.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(dictionary[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(dictionary[start..].trim());
    out
}

/// The value of member `label` of a dictionary field.
fn member<'a>(dictionary: &'a str, label: &str) -> Option<&'a str> {
    members(dictionary)
        .into_iter()
        .find_map(|m| m.strip_prefix(label)?.strip_prefix('='))
}

/// The signature's parameters, as [`sign`] writes them.
struct Input<'a> {
    covered: Vec<&'a str>,
    created: u64,
    nonce: &'a str,
}

fn parse_input(value: &str) -> Option<Input<'_>> {
    let inner = value.strip_prefix('(')?;
    let (list, params) = inner.split_once(')')?;
    let covered = list
        .split(' ')
        .filter(|c| !c.is_empty())
        .map(|c| c.strip_prefix('"')?.strip_suffix('"'))
        .collect::<Option<Vec<_>>>()?;
    let (mut created, mut nonce, mut alg, mut keyid) = (None, None, None, None);
    for p in params.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=')?;
        let text = || v.strip_prefix('"')?.strip_suffix('"');
        match k {
            "created" => created = v.parse::<u64>().ok(),
            "nonce" => nonce = text(),
            "alg" => alg = text(),
            "keyid" => keyid = text(),
            _ => {}
        }
    }
    (alg? == ALG && keyid? == KEY_ID).then_some(())?;
    Some(Input {
        covered,
        created: created?,
        nonce: nonce.filter(|n| (8..=64).contains(&n.len()))?,
    })
}

/// Verifies the edge's signature on a request of `method` to `target`
/// ([`target_uri`] of what the origin received); `header` looks a request
/// field up by lower-case name. Refuses a signature that does not cover
/// `@method`, `@target-uri` and, when the request carries it, the
/// principal.
pub fn verify<'a>(
    secret: &[u8],
    method: &str,
    target: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    now_s: u64,
    window_s: u64,
    guard: &mut ReplayGuard,
) -> Result<(), OriginAuthError> {
    let input_field = header(HEADER_SIGNATURE_INPUT).ok_or(OriginAuthError::Missing)?;
    let signature_params = member(input_field, LABEL).ok_or(OriginAuthError::Missing)?;
    let input = parse_input(signature_params).ok_or(OriginAuthError::Missing)?;
    let principal = header(HEADER_PRINCIPAL);
    let must_cover = ["@method", "@target-uri"]
        .into_iter()
        .chain(principal.map(|_| HEADER_PRINCIPAL));
    for c in must_cover {
        if !input.covered.contains(&c) {
            return Err(OriginAuthError::Missing);
        }
    }
    let signature = header(HEADER_SIGNATURE)
        .and_then(|f| member(f, LABEL))
        .and_then(|v| v.strip_prefix(':')?.strip_suffix(':'))
        .and_then(|b64| STANDARD.decode(b64).ok())
        .ok_or(OriginAuthError::Missing)?;
    let value = |c: &str| match c {
        "@method" => Some(method),
        "@target-uri" => Some(target),
        c if c.starts_with('@') => None,
        c => header(c),
    };
    let base = base(&input.covered, value, signature_params).ok_or(OriginAuthError::Missing)?;
    mac(secret, &base)
        .ok_or(OriginAuthError::BadSignature)?
        .verify_slice(&signature)
        .map_err(|_| OriginAuthError::BadSignature)?;
    if input.created.abs_diff(now_s) > window_s {
        return Err(OriginAuthError::Stale);
    }
    if !guard.check_and_insert(input.nonce, input.created, now_s, window_s) {
        return Err(OriginAuthError::Replayed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"origin-secret";
    const NOW: u64 = 1_800_000_000;
    const BLUE: &str = "https://blue.example:443/base/a?b=1";

    fn check(
        h: &[(String, String)],
        method: &str,
        target: &str,
        now: u64,
        g: &mut ReplayGuard,
    ) -> Result<(), OriginAuthError> {
        let lookup = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        verify(SECRET, method, target, lookup, now, DEFAULT_WINDOW_S, g)
    }

    fn signed(
        method: &str,
        url: &str,
        principal: Option<&str>,
        nonce: &str,
    ) -> Vec<(String, String)> {
        let mut h = sign(SECRET, method, url, principal, NOW, nonce).to_vec();
        if let Some(p) = principal {
            h.push((HEADER_PRINCIPAL.to_string(), p.to_string()));
        }
        h
    }

    #[test]
    fn the_fields_are_rfc_9421_shaped() {
        let h = signed("GET", BLUE, Some("s:alice"), "nonce-0001");
        assert_eq!(
            h[0].1,
            "greenlight=(\"@method\" \"@target-uri\" \"x-greenlight-principal\");\
             created=1800000000;nonce=\"nonce-0001\";alg=\"hmac-sha256\";keyid=\"greenlight-edge\""
        );
        let sig = h[1]
            .1
            .strip_prefix("greenlight=:")
            .unwrap()
            .strip_suffix(':')
            .unwrap();
        assert_eq!(STANDARD.decode(sig).unwrap().len(), 32);
        // The base, as RFC 9421 §2.5 spells it, signed with the secret.
        let base = "\"@method\": GET\n\
                    \"@target-uri\": https://blue.example/base/a?b=1\n\
                    \"x-greenlight-principal\": s:alice\n\
                    \"@signature-params\": (\"@method\" \"@target-uri\" \"x-greenlight-principal\");\
                    created=1800000000;nonce=\"nonce-0001\";alg=\"hmac-sha256\";keyid=\"greenlight-edge\"";
        let expected = STANDARD.encode(mac(SECRET, base).unwrap().finalize().into_bytes());
        assert_eq!(sig, expected);
    }

    #[test]
    fn the_written_out_base64_is_the_crates() {
        for len in 0..70usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64(&bytes), STANDARD.encode(&bytes), "{len} bytes");
        }
    }

    #[test]
    fn the_signature_base_matches_rfc_9421s_hmac_example() {
        // RFC 9421 B.2.5: signing a request with HMAC-SHA256.
        let key = STANDARD
            .decode(
                "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==",
            )
            .unwrap();
        let covered = ["date", "@authority", "content-type"];
        let value = |c: &str| match c {
            "date" => Some("Tue, 20 Apr 2021 02:07:55 GMT"),
            "@authority" => Some("example.com"),
            "content-type" => Some("application/json"),
            _ => None,
        };
        let params = "(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"";
        let base = base(&covered, value, params).unwrap();
        let signature = base64(&mac(&key, &base).unwrap().finalize().into_bytes());
        assert_eq!(signature, "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=");
    }

    #[test]
    fn another_rfc_9421_library_verifies_the_edges_signature() {
        use httpsig::prelude::message_component::HttpMessageComponent;
        use httpsig::prelude::{HttpSignatureBase, HttpSignatureParams, SharedKey, VerifyingKey};
        let h = signed("POST", BLUE, Some("s:alice"), "nonce-0005");
        let params = h[0].1.strip_prefix("greenlight=").unwrap();
        let params = HttpSignatureParams::try_from(params).expect("httpsig parses the input");
        // The base httpsig builds from the edge's parameters and the
        // request as an origin at `target` sees it.
        let their_base = |target: &str| {
            let lines: Vec<HttpMessageComponent> = [
                "\"@method\": POST".to_string(),
                format!("\"@target-uri\": {target}"),
                "\"x-greenlight-principal\": s:alice".to_string(),
            ]
            .iter()
            .map(|l| HttpMessageComponent::try_from(l.as_str()).expect("a component line"))
            .collect();
            HttpSignatureBase::try_new(&lines, &params)
                .expect("a signature base")
                .as_bytes()
        };
        let sig = h[1]
            .1
            .strip_prefix("greenlight=:")
            .unwrap()
            .strip_suffix(':')
            .unwrap();
        let sig = STANDARD.decode(sig).unwrap();
        let key = SharedKey::HmacSha256(SECRET.to_vec());
        let blue = target_uri("https", "blue.example", "/base/a?b=1");
        assert!(key.verify(&their_base(&blue), &sig).is_ok());
        // And it refuses the signature at the other origin's URL.
        let green = target_uri("https", "green.example", "/base/a?b=1");
        assert!(key.verify(&their_base(&green), &sig).is_err());
    }

    #[test]
    fn target_uris_agree_between_edge_and_origin() {
        assert_eq!(
            target_uri_of("https://Blue.Example:443/base/a?b=1").unwrap(),
            target_uri("https", "blue.example", "/base/a?b=1")
        );
        assert_eq!(
            target_uri_of("http://127.0.0.1:8080/x").unwrap(),
            "http://127.0.0.1:8080/x"
        );
        assert_eq!(target_uri_of("http://h:80").unwrap(), "http://h/");
        assert_eq!(target_uri("https", "h:8443", "/"), "https://h:8443/");
    }

    #[test]
    fn signed_requests_verify_once() {
        let h = signed("GET", BLUE, Some("s:alice"), "nonce-0001");
        let target = target_uri("https", "blue.example", "/base/a?b=1");
        let mut g = ReplayGuard::default();
        assert_eq!(check(&h, "GET", &target, NOW + 5, &mut g), Ok(()));
        assert_eq!(
            check(&h, "GET", &target, NOW + 6, &mut g),
            Err(OriginAuthError::Replayed)
        );
    }

    #[test]
    fn tampering_staleness_and_absence_are_refused() {
        let target = target_uri("https", "blue.example", "/base/a?b=1");
        let h = signed("GET", BLUE, Some("s:alice"), "nonce-0002");
        let mut g = ReplayGuard::default();
        let refused =
            |h: &[(String, String)], method: &str, target: &str, now: u64, g: &mut ReplayGuard| {
                check(h, method, target, now, g).unwrap_err()
            };
        assert_eq!(
            refused(&h, "POST", &target, NOW, &mut g),
            OriginAuthError::BadSignature
        );
        // Sent to the other color's origin, or without its base path.
        for other in [
            target_uri("https", "green.example", "/base/a?b=1"),
            target_uri("https", "blue.example", "/a?b=1"),
            target_uri("https", "blue.example", "/base/a?b=2"),
        ] {
            assert_eq!(
                refused(&h, "GET", &other, NOW, &mut g),
                OriginAuthError::BadSignature
            );
        }
        // Another principal on the same signed request.
        let mut other_principal = h.clone();
        other_principal[2].1 = "s:mallory".into();
        assert_eq!(
            refused(&other_principal, "GET", &target, NOW, &mut g),
            OriginAuthError::BadSignature
        );
        // A principal added to a request signed without one.
        let mut added = signed("GET", BLUE, None, "nonce-0003");
        added.push((HEADER_PRINCIPAL.to_string(), "s:mallory".into()));
        assert_eq!(
            refused(&added, "GET", &target, NOW, &mut g),
            OriginAuthError::Missing
        );
        assert_eq!(
            refused(&h, "GET", &target, NOW + 31, &mut g),
            OriginAuthError::Stale
        );
        assert_eq!(
            refused(&h, "GET", &target, NOW - 31, &mut g),
            OriginAuthError::Stale
        );
        let other = sign(
            b"other-secret",
            "GET",
            BLUE,
            Some("s:alice"),
            NOW,
            "nonce-0002",
        )
        .to_vec();
        let mut other = other;
        other.push(h[2].clone());
        assert_eq!(
            refused(&other, "GET", &target, NOW, &mut g),
            OriginAuthError::BadSignature
        );
        assert_eq!(
            refused(&[], "GET", &target, NOW, &mut g),
            OriginAuthError::Missing
        );
        let mut bad = h.clone();
        bad[1].1 = "greenlight=:not base64!:".into();
        assert_eq!(
            refused(&bad, "GET", &target, NOW, &mut g),
            OriginAuthError::Missing
        );
        let mut wrong_alg = h.clone();
        wrong_alg[0].1 = wrong_alg[0].1.replace("hmac-sha256", "ed25519");
        assert_eq!(
            refused(&wrong_alg, "GET", &target, NOW, &mut g),
            OriginAuthError::Missing
        );
        // None of the refused attempts used up the nonce.
        assert_eq!(check(&h, "GET", &target, NOW, &mut g), Ok(()));
    }

    #[test]
    fn other_signatures_beside_the_edges_are_ignored() {
        let mut h = signed("GET", BLUE, None, "nonce-0004");
        h[0].1 = format!("client=(\"@method\");created=1;keyid=\"a, b\", {}", h[0].1);
        h[1].1 = format!("client=:AAAA:, {}", h[1].1);
        let target = target_uri("https", "blue.example", "/base/a?b=1");
        assert_eq!(
            check(&h, "GET", &target, NOW, &mut ReplayGuard::default()),
            Ok(())
        );
    }

    #[test]
    fn the_guard_forgets_after_the_window() {
        let mut g = ReplayGuard::default();
        let target = target_uri_of("http://o/").unwrap();
        for i in 0..1_000u64 {
            let h = sign(
                SECRET,
                "GET",
                "http://o/",
                None,
                NOW + i,
                &format!("nonce-{i:05}"),
            )
            .to_vec();
            assert_eq!(check(&h, "GET", &target, NOW + i, &mut g), Ok(()));
        }
        assert!(g.seen.len() <= 32, "guard kept {} nonces", g.seen.len());
    }
}
