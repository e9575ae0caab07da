//! Upstream credentials per color: the headers the edge sets on every
//! request to one color's origin (`BLUE_ORIGIN_HEADERS`,
//! `GREEN_ORIGIN_HEADERS`), e.g. a model provider's
//! `authorization: Bearer <key>`.
//!
//! The values are secrets: they are never printed (`Debug` shows the names
//! only), never quoted in configuration errors, and reach nothing but the
//! request to that color's origin. While either color has some, the
//! caller's own `authorization` (a greenlight credential) and every header
//! named in either list are dropped from what the caller sent, so a caller
//! can neither reach the provider with its own key nor add to the edge's.

use crate::color::Color;
use crate::config_error::ConfigError;
use crate::http::{is_hop_by_hop, same_field_name, EDGE_HEADER_PREFIX, FORWARDING_HEADERS};
use std::fmt;
use std::sync::Arc;

/// One color's headers, names lower case, in the order configured.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderSet(Arc<Vec<(String, String)>>);

impl HeaderSet {
    /// Parses a variable's value: one `name: value` a line (blank lines
    /// skipped). Errors name the variable and the line, never a value.
    pub fn parse(variable: &str, text: &str) -> Result<HeaderSet, ConfigError> {
        let mut out = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{variable} line {}", i + 1);
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ConfigError(format!("{}: not `name: value`", at())))?;
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if !is_token(&name) {
                return Err(ConfigError(format!(
                    "{}: the name is not a header name",
                    at()
                )));
            }
            if let Some(why) = refused_name(&name) {
                return Err(ConfigError(format!("{}: {name} {why}", at())));
            }
            if value.is_empty() {
                return Err(ConfigError(format!("{}: {name} has an empty value", at())));
            }
            if !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return Err(ConfigError(format!(
                    "{}: the value of {name} has a character other than printable ASCII",
                    at()
                )));
            }
            out.push((name, value.to_string()));
        }
        Ok(HeaderSet(Arc::new(out)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl fmt::Debug for HeaderSet {
    /// Names only: the values are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}: <redacted>")))
            .finish()
    }
}

/// Why the edge will not set header `name` for an origin, if it will not:
/// the ones it sets itself (forwarding, signing, its own `x-greenlight-*`)
/// and the ones the runtime frames the request with.
fn refused_name(name: &str) -> Option<&'static str> {
    if name.starts_with(EDGE_HEADER_PREFIX) {
        Some("is the edge's own (x-greenlight-*)")
    } else if FORWARDING_HEADERS.contains(&name) {
        Some("is a forwarding header the edge sets itself")
    } else if is_hop_by_hop(name, &[]) || name.starts_with("proxy-") {
        Some("is hop-by-hop or set by the runtime")
    } else if name == "cookie" {
        Some("would mix with the caller's cookies")
    } else {
        None
    }
}

/// An HTTP field name (RFC 9110 token).
fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Both colors' headers.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct OriginHeaders {
    pub blue: HeaderSet,
    pub green: HeaderSet,
}

impl OriginHeaders {
    /// From `BLUE_ORIGIN_HEADERS` and `GREEN_ORIGIN_HEADERS` (either may be unset).
    pub fn parse(blue: Option<&str>, green: Option<&str>) -> Result<OriginHeaders, ConfigError> {
        Ok(OriginHeaders {
            blue: HeaderSet::parse("BLUE_ORIGIN_HEADERS", blue.unwrap_or(""))?,
            green: HeaderSet::parse("GREEN_ORIGIN_HEADERS", green.unwrap_or(""))?,
        })
    }

    /// Whether the edge holds upstream credentials at all.
    pub fn active(&self) -> bool {
        !(self.blue.is_empty() && self.green.is_empty())
    }

    pub fn of(&self, color: Color) -> &HeaderSet {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }

    /// Whether a header the caller sent is dropped: with upstream
    /// credentials configured, the caller's `authorization` and any name
    /// either color sets, in every spelling an origin reads as that name.
    pub fn drops_client_header(&self, name: &str) -> bool {
        self.active()
            && (same_field_name(name, "authorization")
                || self
                    .blue
                    .names()
                    .chain(self.green.names())
                    .any(|n| same_field_name(n, name)))
    }

    /// `headers` (bound for `from`'s origin) made ready for `to`'s: the
    /// headers of `from` removed, those of `to` appended.
    pub fn switch(
        &self,
        headers: &[(String, String)],
        from: Color,
        to: Color,
    ) -> Vec<(String, String)> {
        let old = self.of(from);
        let mut out: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| !old.names().any(|n| n == k))
            .cloned()
            .collect();
        out.extend(self.of(to).iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_never_quotes_values() {
        let set = HeaderSet::parse(
            "BLUE_ORIGIN_HEADERS",
            "Authorization: Bearer sk-blue-123\r\n\nOpenAI-Organization:  org-7 \n",
        )
        .unwrap();
        assert_eq!(
            set.iter().cloned().collect::<Vec<_>>(),
            vec![
                (
                    "authorization".to_string(),
                    "Bearer sk-blue-123".to_string()
                ),
                ("openai-organization".to_string(), "org-7".to_string()),
            ]
        );
        let shown = format!("{set:?}");
        assert!(!shown.contains("sk-blue"), "{shown}");
        assert!(shown.contains("authorization"), "{shown}");
        for (text, why) in [
            ("Bearer sk-secret-only", "not `name: value`"),
            ("bad name: sk-secret", "not a header name"),
            ("x-greenlight-signature: sk-secret", "edge's own"),
            (
                "host: sk-secret.example",
                "hop-by-hop or set by the runtime",
            ),
            ("content-length: 5", "hop-by-hop or set by the runtime"),
            ("x-forwarded-for: sk-secret", "forwarding header"),
            ("authorization:", "empty value"),
            ("authorization: Bearer sk-secret\u{7f}", "printable ASCII"),
            ("authorization: Bearer sk-sécret", "printable ASCII"),
        ] {
            let e = HeaderSet::parse("GREEN_ORIGIN_HEADERS", &format!("a: b\n{text}")).unwrap_err();
            assert!(e.0.starts_with("GREEN_ORIGIN_HEADERS line 2: "), "{}", e.0);
            assert!(e.0.contains(why), "{text}: {}", e.0);
            assert!(
                !e.0.contains("secret") && !e.0.contains("Bearer"),
                "{}",
                e.0
            );
        }
    }

    #[test]
    fn drops_the_callers_credentials_and_switches_colors() {
        let none = OriginHeaders::parse(None, Some(" \n")).unwrap();
        assert!(!none.active());
        assert!(!none.drops_client_header("authorization"));
        let both = OriginHeaders::parse(
            Some("authorization: Bearer b\nx-b: 1"),
            Some("x-api-version: 2\nAuthorization: Bearer g"),
        )
        .unwrap();
        assert!(both.active());
        for name in ["Authorization", "x-b", "X-Api-Version"] {
            assert!(both.drops_client_header(name), "{name}");
        }
        assert!(!both.drops_client_header("accept"));
        let mut to_blue = vec![("accept".to_string(), "*/*".to_string())];
        to_blue.extend(both.blue.iter().cloned());
        let to_green = both.switch(&to_blue, Color::Blue, Color::Green);
        assert_eq!(
            to_green,
            vec![
                ("accept".to_string(), "*/*".to_string()),
                ("x-api-version".to_string(), "2".to_string()),
                ("authorization".to_string(), "Bearer g".to_string()),
            ]
        );
        assert_eq!(both.switch(&to_green, Color::Green, Color::Blue), to_blue);
    }
}
