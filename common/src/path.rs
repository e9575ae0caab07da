//! Request path normalization: the one reading of a path that the edge
//! decides on and the origin receives.
//!
//! An edge that authorises `/public/..%2Fapi/hello` as "under `/public`"
//! while the origin decodes `%2F`, resolves `..` and serves `/api/hello` has
//! let an anonymous caller through. So before any decision the edge turns
//! the path into one normal form ([`normalize`]), decides on it, and sends
//! exactly that path to the origin: nothing is left for the origin to
//! resolve differently.
//!
//! The normal form (RFC 3986 §6.2.2, plus the escaped-slash rule):
//! - percent-encodings of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded, every other percent-encoding is kept with upper-case hex;
//!   characters not allowed raw in a path (space, `"`, `<`, `|`, non-ASCII…)
//!   are percent-encoded (UTF-8, upper-case hex);
//! - encoded slashes `%2F`, encoded backslashes `%5C` and raw backslashes are
//!   handled as configured ([`EscapedSlashes`]): refused (the default),
//!   decoded to `/`, or kept (as `%2F` / `%5C`);
//! - dot segments are removed (RFC 3986 §5.2.4), after the decoding above,
//!   so `%2e%2e` is `..`;
//! - with `merge_slashes`, runs of `/` become one (before dot segments are
//!   removed: empty segments then do not exist at all).
//!
//! Always refused ([`PathError`]): a path that does not start with `/`, a `%`
//! not followed by two hex digits, an encoded NUL, overlong UTF-8 forms such
//! as `%C0%AF` (lax decoders turn them into `/`), a dot segment carrying `;`
//! parameters (`..;x`, which Tomcat-style origins read as `..`), and, under
//! `reject`, a double-encoded slash, backslash or dot (`%252F`, `%255C`,
//! `%252E`).
//!
//! Route matching goes further ([`readings`]): the auth mode of a path is the
//! strictest mode of every reading an origin is known to make of the path it
//! receives (escapes decoded, `;` parameters dropped, empty segments merged,
//! ASCII case ignored), so even an origin that reads more into the path
//! than the normal form says cannot be reached below a stricter prefix.

use std::borrow::Cow;
use std::fmt;

/// What the edge does with `%2F`, `%5C` and raw `\` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// `400` problem: the request never reaches an origin.
    #[default]
    Reject,
    /// Decoded to `/` (then dot segments are resolved across them).
    Decode,
    /// Kept as `%2F` / `%5C` (a raw `\` becomes `%5C`): for origins that
    /// treat an encoded slash as data. Route matching still considers the
    /// decoded reading ([`readings`]).
    Keep,
}

impl EscapedSlashes {
    /// Parses `reject`, `decode` or `keep` (case-insensitive).
    pub fn parse(v: &str) -> Option<EscapedSlashes> {
        match v.trim().to_ascii_lowercase().as_str() {
            "reject" => Some(EscapedSlashes::Reject),
            "decode" => Some(EscapedSlashes::Decode),
            "keep" => Some(EscapedSlashes::Keep),
            _ => None,
        }
    }
}

/// How paths are normalized (`PATH_ESCAPED_SLASHES`, `MERGE_SLASHES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathPolicy {
    pub escaped_slashes: EscapedSlashes,
    pub merge_slashes: bool,
}

/// Why a path was refused (answered `400`, never forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an absolute path (`*`, or no leading `/`).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `%00`, or an overlong UTF-8 form (`%C0%AF`, `%E0%80%AF`...).
    ForbiddenEncoding,
    /// `%2F`, `%5C` or a raw `\` under [`EscapedSlashes::Reject`].
    EscapedSlash,
    /// `%25` followed by an encoded slash, backslash or dot, under
    /// [`EscapedSlashes::Reject`].
    DoubleEncoding,
    /// A `.` or `..` segment with `;` parameters.
    DotSegmentParameters,
}

impl PathError {
    /// The problem detail sent to the client.
    pub fn detail(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request target must be an absolute path",
            PathError::BadPercentEncoding => "a % in the path is not followed by two hex digits",
            PathError::ForbiddenEncoding => {
                "the path holds an encoded NUL or an overlong UTF-8 sequence"
            }
            PathError::EscapedSlash => {
                "encoded slashes (%2F), encoded backslashes (%5C) and backslashes are not accepted in paths"
            }
            PathError::DoubleEncoding => {
                "the path holds a double-encoded slash, backslash or dot (%252F, %255C, %252E)"
            }
            PathError::DotSegmentParameters => "a . or .. path segment may not carry ; parameters",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for PathError {}

/// RFC 3986 unreserved characters: their encodings are decoded.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters kept raw in the normal form: unreserved, sub-delims, `:`,
/// `@` (RFC 3986 `pchar`) and `/`. Everything else is percent-encoded.
fn raw_ok(b: u8) -> bool {
    unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_encoded(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// The byte of the escape at `at` (`%XY`), if `bytes[at..]` starts with one.
fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    let hi = hex_value(*bytes.get(at + 1)?)?;
    let lo = hex_value(*bytes.get(at + 2)?)?;
    Some(hi << 4 | lo)
}

/// Whether the bytes `first`, `second` start an overlong UTF-8 encoding
/// (or a lead byte no UTF-8 has, F8–FF, which lax decoders still read).
fn overlong(first: u8, second: Option<u8>) -> bool {
    let continuation = second.is_some_and(|b| (0x80..=0xBF).contains(&b));
    match first {
        0xC0 | 0xC1 | 0xF8..=0xFF => continuation,
        0xE0 => second.is_some_and(|b| (0x80..=0x9F).contains(&b)),
        0xF0 => second.is_some_and(|b| (0x80..=0x8F).contains(&b)),
        _ => false,
    }
}

/// Whether `path` is already in normal form for `policy`, so the common
/// case allocates nothing: only plain characters, no dot segment, and no
/// `//` to merge.
fn already_normal(path: &str, policy: PathPolicy) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || !bytes.iter().all(|b| raw_ok(*b)) {
        return false;
    }
    if policy.merge_slashes && path.contains("//") {
        return false;
    }
    !path
        .split('/')
        .any(|s| s == "." || s == ".." || dot_with_parameters(s))
}

fn dot_with_parameters(segment: &str) -> bool {
    matches!(segment.split_once(';'), Some((".", _)) | Some(("..", _)))
}

/// The normal form of `path` (the path of a request target, without its
/// query) under `policy`, or why it is refused. See the module docs.
pub fn normalize(path: &str, policy: PathPolicy) -> Result<Cow<'_, str>, PathError> {
    if already_normal(path, policy) {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let v = escape_at(bytes, i).ok_or(PathError::BadPercentEncoding)?;
            match v {
                0 => return Err(PathError::ForbiddenEncoding),
                b'/' | b'\\' => match policy.escaped_slashes {
                    EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                    EscapedSlashes::Decode => out.push('/'),
                    EscapedSlashes::Keep => push_encoded(&mut out, v),
                },
                b'%' => {
                    if policy.escaped_slashes == EscapedSlashes::Reject
                        && matches!(
                            (bytes.get(i + 3), bytes.get(i + 4)),
                            (Some(b'2'), Some(b'f' | b'F' | b'e' | b'E'))
                                | (Some(b'5'), Some(b'c' | b'C'))
                        )
                    {
                        return Err(PathError::DoubleEncoding);
                    }
                    push_encoded(&mut out, v);
                }
                v if unreserved(v) => out.push(char::from(v)),
                v => {
                    if v >= 0x80 && overlong(v, escape_at(bytes, i + 3)) {
                        return Err(PathError::ForbiddenEncoding);
                    }
                    push_encoded(&mut out, v);
                }
            }
            i += 3;
        } else if b == b'\\' {
            match policy.escaped_slashes {
                EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                EscapedSlashes::Decode => out.push('/'),
                EscapedSlashes::Keep => push_encoded(&mut out, b),
            }
            i += 1;
        } else {
            if b == 0 {
                // A raw NUL is the same byte `%00` names, refused the same
                // way (encoding it would give a form that is itself refused).
                return Err(PathError::ForbiddenEncoding);
            }
            if raw_ok(b) {
                out.push(char::from(b));
            } else {
                // Includes every byte of a non-ASCII character (UTF-8).
                push_encoded(&mut out, b);
            }
            i += 1;
        }
    }
    // Checked on the result too: `%25` followed by characters that were
    // themselves encoded (`%252%65`, `%25%32e`) spells a double-encoded
    // slash or dot only once decoded, and the normal form must be refused
    // exactly when the input is.
    if policy.escaped_slashes == EscapedSlashes::Reject && double_encoded(&out) {
        return Err(PathError::DoubleEncoding);
    }
    if out.split('/').any(dot_with_parameters) {
        return Err(PathError::DotSegmentParameters);
    }
    if policy.merge_slashes {
        out = merge_slashes(&out).into_owned();
    }
    Ok(Cow::Owned(remove_dot_segments(&out).into_owned()))
}

/// Whether `path` holds `%25` followed by `2F`, `2E` or `5C` (any case):
/// an escaped slash, dot or backslash once an origin decodes twice.
fn double_encoded(path: &str) -> bool {
    path.as_bytes().windows(5).any(|w| {
        w[..3] == *b"%25"
            && matches!(
                (w[3], w[4].to_ascii_uppercase()),
                (b'2', b'F' | b'E') | (b'5', b'C')
            )
    })
}

/// `path` with every run of `/` made one.
pub fn merge_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c != '/' || !out.ends_with('/') {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments go, `..` removes the
/// segment before it (never above the root); a path ending in a dot
/// segment keeps its trailing `/`.
pub fn remove_dot_segments(path: &str) -> Cow<'_, str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if !rest.split('/').any(|s| s == "." || s == "..") {
        return Cow::Borrowed(path);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len() - 1;
    for (i, s) in segments.iter().enumerate() {
        match *s {
            "." | ".." => {
                if *s == ".." {
                    kept.pop();
                }
                if i == last {
                    kept.push("");
                }
            }
            s => kept.push(s),
        }
    }
    Cow::Owned(format!("/{}", kept.join("/")))
}

/// Decodes every percent-encoding (invalid ones are left as they are;
/// bytes that do not form UTF-8 become U+FFFD).
fn decode_all(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match escape_at(bytes, i) {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Each segment without its `;` parameters (`/a;x/b;y=1` → `/a/b`).
fn strip_parameters(s: &str) -> Cow<'_, str> {
    if !s.contains(';') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.split('/')
            .map(|seg| seg.split_once(';').map_or(seg, |(before, _)| before))
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// The readings an origin may make of the normalized path `path`, for route
/// matching: the path itself, and each combination of decoding every
/// escape none, once or twice (so `%252F` is `%2F` to an origin that
/// decodes once and `/` to one that decodes twice; backslashes read as
/// `/`), dropping `;` parameters (before or after decoding) and merging
/// empty segments, each with its dot segments resolved. Route prefixes are
/// then compared both exactly and ignoring ASCII case. A path with no `%`,
/// `;` or `//` has one reading, itself (no allocation). Duplicates are
/// removed.
pub fn readings(path: &str) -> Vec<Cow<'_, str>> {
    let mut out: Vec<Cow<'_, str>> = vec![Cow::Borrowed(path)];
    if !has_other_readings(path) {
        return out;
    }
    for decodes in 0..=2 {
        // 0: keep `;` parameters; 1: drop them before decoding; 2: after.
        for strip in 0..=2 {
            if strip == 1 && decodes == 0 {
                continue; // the same as dropping them after no decoding
            }
            for merge in [false, true] {
                let mut r: String = path.to_string();
                if strip == 1 {
                    r = strip_parameters(&r).into_owned();
                }
                for _ in 0..decodes {
                    r = decode_all(&r).replace('\\', "/");
                }
                if strip == 2 {
                    r = strip_parameters(&r).into_owned();
                }
                if merge {
                    r = merge_slashes(&r).into_owned();
                }
                let r = remove_dot_segments(&r).into_owned();
                let r = if r.starts_with('/') {
                    r
                } else {
                    format!("/{r}")
                };
                if !out.iter().any(|o| *o == r) {
                    out.push(Cow::Owned(r));
                }
            }
        }
    }
    out
}

/// Whether [`readings`] of `path` are more than `path` itself.
pub fn has_other_readings(path: &str) -> bool {
    path.bytes().any(|b| b == b'%' || b == b';') || path.contains("//")
}

/// Whether `path` starts with `prefix`, exactly or ignoring ASCII case.
pub fn starts_with(path: &str, prefix: &str, ignore_case: bool) -> bool {
    if ignore_case {
        path.len() >= prefix.len()
            && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    } else {
        path.starts_with(prefix)
    }
}

/// Whether the first segment of some reading of `path` is `name`, ignoring
/// ASCII case (`/__GREENLIGHT/x`, `//__greenlight`, `/__greenlight;v=1/`).
pub fn in_namespace(path: &str, name: &str) -> bool {
    let first_is = |r: &str| {
        let rest = r.strip_prefix('/').unwrap_or(r);
        rest.split('/')
            .next()
            .is_some_and(|first| first.eq_ignore_ascii_case(name))
    };
    // The common case allocates nothing.
    if !has_other_readings(path) {
        return first_is(path);
    }
    readings(path).iter().any(|r| first_is(r))
}

#[cfg(test)]
mod tests;
