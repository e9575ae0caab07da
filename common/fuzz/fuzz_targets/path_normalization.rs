//! `path::normalize` and route matching on arbitrary paths and policies.
//!
//! Invariants: normalizing never panics; a normal form starts with `/`,
//! holds no dot segment, only characters allowed raw in a path and valid
//! upper-case escapes of anything but unreserved characters (and no
//! `%2F`/`%5C` unless kept, no `//` when merged); normalizing it again
//! changes nothing; and the auth mode the edge applies to it is at least as
//! strict as the one implied by the path an origin makes of it (escapes
//! decoded once or twice, `\` as `/`, `;` parameters dropped, slashes
//! merged, dot segments resolved, ASCII case ignored).
#![no_main]

use arbitrary::Arbitrary;
use greenlight_common::auth::{parse_routes, AuthConfig, JwtSettings};
use greenlight_common::path::{
    merge_slashes, normalize, remove_dot_segments, EscapedSlashes, PathPolicy,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    escaped: u8,
    merge: bool,
    /// Which of the origin's readings to apply (bit set).
    origin_steps: u8,
    /// Last, so it takes the rest of the input (seeds are 3 bytes + a path).
    path: &'a str,
}

const ROUTES: &str = "/:off,/api:required,/api/open:optional,/public:off";

fn decode_all(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn origin_reads(path: &str, steps: u8) -> String {
    let mut p = path.to_string();
    for _ in 0..(steps & 3).min(2) {
        p = decode_all(&p).replace('\\', "/");
    }
    if steps & 4 != 0 {
        p = p
            .split('/')
            .map(|s| s.split_once(';').map_or(s, |(a, _)| a))
            .collect::<Vec<_>>()
            .join("/");
    }
    if steps & 8 != 0 {
        p = merge_slashes(&p).into_owned();
    }
    p = remove_dot_segments(&p).into_owned();
    if steps & 16 != 0 {
        p = p.to_ascii_lowercase();
    }
    p
}

fuzz_target!(|input: Input<'_>| {
    let policy = PathPolicy {
        escaped_slashes: match input.escaped % 3 {
            0 => EscapedSlashes::Reject,
            1 => EscapedSlashes::Decode,
            _ => EscapedSlashes::Keep,
        },
        merge_slashes: input.merge,
    };
    let Ok(p) = normalize(input.path, policy) else {
        return;
    };
    assert!(p.starts_with('/'), "{p:?}");
    assert!(
        p.split('/').all(|s| s != "." && s != ".."),
        "dot segment in {p:?}"
    );
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let esc = &b[i + 1..i + 3];
            assert!(
                esc.iter()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
                "escape in {p:?}"
            );
            let v = u8::from_str_radix(std::str::from_utf8(esc).unwrap(), 16).unwrap();
            assert!(
                !(v.is_ascii_alphanumeric() || b"-._~".contains(&v)),
                "encoded unreserved in {p:?}"
            );
            i += 3;
        } else {
            assert!(
                b[i].is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b[i]),
                "raw {:?} in {p:?}",
                b[i] as char
            );
            i += 1;
        }
    }
    if policy.escaped_slashes != EscapedSlashes::Keep {
        assert!(!p.contains("%2F") && !p.contains("%5C"), "{p:?}");
    }
    if policy.merge_slashes {
        assert!(!p.contains("//"), "{p:?}");
    }
    assert_eq!(
        normalize(&p, policy).as_deref(),
        Ok(p.as_ref()),
        "not idempotent"
    );

    let cfg = AuthConfig::new(
        parse_routes(ROUTES).unwrap(),
        vec![],
        JwtSettings::default(),
    )
    .unwrap();
    let origin_path = origin_reads(&p, input.origin_steps);
    let origin = if input.origin_steps & 16 != 0 {
        let lower = AuthConfig::new(
            parse_routes(&ROUTES.to_ascii_lowercase()).unwrap(),
            vec![],
            JwtSettings::default(),
        )
        .unwrap();
        lower.mode_for(&origin_path)
    } else {
        cfg.mode_for(&origin_path)
    };
    assert!(
        cfg.route_mode(&p).strictness() >= origin.strictness(),
        "{:?} -> {p:?}: edge {:?}, origin reading {origin_path:?} {origin:?}",
        input.path,
        cfg.route_mode(&p)
    );
});
