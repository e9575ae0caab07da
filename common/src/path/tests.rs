use super::*;
use crate::auth::{parse_routes, AuthConfig, AuthMode, JwtSettings};
use proptest::prelude::*;

const REJECT: PathPolicy = PathPolicy {
    escaped_slashes: EscapedSlashes::Reject,
    merge_slashes: false,
};
const DECODE: PathPolicy = PathPolicy {
    escaped_slashes: EscapedSlashes::Decode,
    merge_slashes: false,
};
const KEEP: PathPolicy = PathPolicy {
    escaped_slashes: EscapedSlashes::Keep,
    merge_slashes: false,
};
const MERGE: PathPolicy = PathPolicy {
    escaped_slashes: EscapedSlashes::Reject,
    merge_slashes: true,
};

fn norm(path: &str, policy: PathPolicy) -> Result<String, PathError> {
    normalize(path, policy).map(Cow::into_owned)
}

#[test]
fn plain_paths_are_borrowed_unchanged() {
    for p in [
        "/",
        "/api/items",
        "/a/b/",
        "/a;b=1/c",
        "/x:y@z/!$&'()*+,=",
        "/.well-known/x",
        "//a",
    ] {
        assert!(
            matches!(normalize(p, REJECT), Ok(Cow::Borrowed(b)) if b == p),
            "{p}"
        );
    }
}

#[test]
fn dot_segments_are_removed() {
    for (raw, want) in [
        ("/public/../api/hello", "/api/hello"),
        ("/public/%2e%2e/api/hello", "/api/hello"),
        ("/public/%2E%2e/api/hello", "/api/hello"),
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/..", "/"),
        ("/../../x", "/x"),
        ("/a//../b", "/a/b"),
        ("/a/.../b", "/a/.../b"),
        ("/a/..b/c", "/a/..b/c"),
        ("/.%2e/x", "/x"),
    ] {
        assert_eq!(norm(raw, REJECT).as_deref(), Ok(want), "{raw}");
    }
    assert_eq!(norm("/a//../b", MERGE).as_deref(), Ok("/b"));
    assert_eq!(norm("//a///b//", MERGE).as_deref(), Ok("/a/b/"));
}

#[test]
fn percent_encodings_are_decoded_or_upper_cased() {
    for (raw, want) in [
        ("/%41%7e%2D%5f", "/A~-_"),
        ("/a%3bb", "/a%3Bb"),
        ("/a%3Fb%23c", "/a%3Fb%23c"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
        ("/a b\"<>|^`{}[]", "/a%20b%22%3C%3E%7C%5E%60%7B%7D%5B%5D"),
        ("/%25", "/%25"),
        ("/%2541", "/%2541"),
        ("/latin%E9", "/latin%E9"),
    ] {
        assert_eq!(norm(raw, REJECT).as_deref(), Ok(want), "{raw}");
    }
}

/// Encoded slashes, dot segments and the other tricks that make an edge and
/// its origin read two different paths.
#[test]
fn escaped_slashes_follow_the_policy() {
    let cases = [
        (
            "/public%2F..%2Fapi%2Fhello",
            "/api/hello",
            "/public%2F..%2Fapi%2Fhello",
        ),
        (
            "/public/..%2Fapi/hello",
            "/api/hello",
            "/public/..%2Fapi/hello",
        ),
        (
            "/public/..%5capi/hello",
            "/api/hello",
            "/public/..%5Capi/hello",
        ),
        (
            "/public/..\\api/hello",
            "/api/hello",
            "/public/..%5Capi/hello",
        ),
        ("/public%2fx", "/public/x", "/public%2Fx"),
    ];
    for (raw, decoded, kept) in cases {
        assert_eq!(norm(raw, REJECT), Err(PathError::EscapedSlash), "{raw}");
        assert_eq!(norm(raw, DECODE).as_deref(), Ok(decoded), "{raw}");
        assert_eq!(norm(raw, KEEP).as_deref(), Ok(kept), "{raw}");
    }
}

#[test]
fn always_refused() {
    for (raw, err) in [
        ("", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        ("api/x", PathError::NotAbsolute),
        ("/a%", PathError::BadPercentEncoding),
        ("/a%2", PathError::BadPercentEncoding),
        ("/a%zz", PathError::BadPercentEncoding),
        ("/a%00b", PathError::ForbiddenEncoding),
        ("/public/..%C0%AFapi", PathError::ForbiddenEncoding),
        ("/x%c1%9c", PathError::ForbiddenEncoding),
        ("/x%E0%80%AF", PathError::ForbiddenEncoding),
        ("/x%F0%80%80%AF", PathError::ForbiddenEncoding),
        ("/x%F8%80%80%80%AF", PathError::ForbiddenEncoding),
        ("/public/..;/api/hello", PathError::DotSegmentParameters),
        ("/public/.;x/api", PathError::DotSegmentParameters),
        ("/public/%2e%2e;x/api", PathError::DotSegmentParameters),
    ] {
        for policy in [REJECT, DECODE, KEEP, MERGE] {
            assert_eq!(norm(raw, policy), Err(err), "{raw} {policy:?}");
        }
    }
    for raw in ["/public%252F..%252Fapi", "/a/%252e%252e/b", "/a%255cb"] {
        assert_eq!(norm(raw, REJECT), Err(PathError::DoubleEncoding), "{raw}");
        // Decoded once, like a correct origin: the %25 stays an escape.
        assert!(norm(raw, DECODE).is_ok_and(|p| p.contains("%25")), "{raw}");
    }
}

#[test]
fn readings_cover_what_origins_do() {
    assert_eq!(readings("/api/x"), vec![Cow::Borrowed("/api/x")]);
    let r = readings("/public%2F..%2Fapi");
    assert!(r.iter().any(|r| r == "/api"), "{r:?}");
    let r = readings("/public%252F..%252Fapi");
    assert!(r.iter().any(|r| r == "/api"), "{r:?}");
    let r = readings("//x;p/y");
    for want in ["//x;p/y", "/x;p/y", "//x/y", "/x/y"] {
        assert!(r.iter().any(|r| r == want), "{want} in {r:?}");
    }
}

fn routes(spec: &str) -> AuthConfig {
    AuthConfig::new(parse_routes(spec).unwrap(), vec![], JwtSettings::default()).unwrap()
}

#[test]
fn route_mode_is_the_strictest_reading() {
    let cfg = routes("/:off,/api:required,/api/open:optional");
    assert_eq!(cfg.route_mode("/public/x"), AuthMode::Off);
    assert_eq!(cfg.route_mode("/api/x"), AuthMode::Required);
    assert_eq!(cfg.route_mode("/API/x"), AuthMode::Required, "case");
    assert_eq!(cfg.route_mode("//api/x"), AuthMode::Required, "merged");
    assert_eq!(
        cfg.route_mode("/;x/api/x"),
        AuthMode::Required,
        "parameters"
    );
    assert_eq!(cfg.route_mode("/api;x/open"), AuthMode::Required);
    assert_eq!(cfg.route_mode("/api/open/x"), AuthMode::Optional);
    // Kept escapes are read decoded too.
    let public = routes("/public:off,/:required");
    assert_eq!(
        public.route_mode("/public%2F..%2Fapi%2Fhello"),
        AuthMode::Required
    );
    assert_eq!(public.route_mode("/public%2Fx"), AuthMode::Off);
    assert_eq!(public.route_mode("/PUBLIC/x"), AuthMode::Required);
    // Upper-case prefixes still match themselves.
    let upper = routes("/Public:off,/:required");
    assert_eq!(upper.route_mode("/Public/x"), AuthMode::Off);
}

#[test]
fn the_admin_namespace_is_matched_loosely() {
    for p in [
        "/__greenlight/state",
        "/__greenlight",
        "/__GREENLIGHT/state",
        "/__GreenLight/",
        "//__greenlight/state",
        "/__greenlight;v=1/state",
        "/%5F%5Fgreenlight%2Fstate",
    ] {
        assert!(in_namespace(p, "__greenlight"), "{p}");
    }
    for p in ["/__greenlightx/state", "/api/__greenlight", "/"] {
        assert!(!in_namespace(p, "__greenlight"), "{p}");
    }
}

/// Path segments that make trouble, for the generated paths below.
const PIECES: &[&str] = &[
    "public",
    "api",
    "PUBLIC",
    "Api",
    "__greenlight",
    "open",
    "..",
    ".",
    "%2e%2e",
    "%2E",
    "%2e",
    "%2F",
    "%2f",
    "%5c",
    "%5C",
    "\\",
    "%252F",
    "%252e",
    "%255c",
    "",
    ";x",
    "..;x",
    "a;b",
    "%3B",
    "x",
    "%41",
    "%7e",
    "%C0%AF",
    "%",
    "%zz",
    "%00",
    "é",
    " ",
    "%25",
    "//",
    "?",
    "#",
];

fn tricky_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..8).prop_map(|pieces| {
        let mut p = String::from("/");
        for (i, piece) in pieces.iter().enumerate() {
            // Glue some pieces into one segment, separate others.
            if i % 3 != 2 {
                p.push('/');
            }
            p.push_str(piece);
        }
        p
    })
}

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![
        tricky_path(),
        "/[a-zA-Z0-9%./;\\\\:@ _~-]{0,40}",
        any::<String>(),
    ]
}

fn any_policy() -> impl Strategy<Value = PathPolicy> {
    (0..3u8, any::<bool>()).prop_map(|(e, merge_slashes)| PathPolicy {
        escaped_slashes: [
            EscapedSlashes::Reject,
            EscapedSlashes::Decode,
            EscapedSlashes::Keep,
        ][usize::from(e)],
        merge_slashes,
    })
}

/// What an origin might do with the path it receives: decode escapes (zero,
/// one or two times; `\` as `/`), drop `;` parameters, merge slashes,
/// resolve dot segments, ignore case; in the orders real stacks use.
fn origin_reads(path: &str, steps: u8) -> String {
    let mut p = path.to_string();
    let strip_first = steps & 16 != 0;
    if strip_first && steps & 4 != 0 {
        p = strip_parameters(&p).into_owned();
    }
    for _ in 0..(steps & 3).min(2) {
        p = decode_all(&p).replace('\\', "/");
    }
    if !strip_first && steps & 4 != 0 {
        p = strip_parameters(&p).into_owned();
    }
    if steps & 8 != 0 {
        p = merge_slashes(&p).into_owned();
    }
    p = remove_dot_segments(&p).into_owned();
    if steps & 32 != 0 {
        p = p.to_ascii_lowercase();
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    #[test]
    fn normalizing_twice_changes_nothing(path in any_path(), policy in any_policy()) {
        if let Ok(once) = normalize(&path, policy) {
            let twice = normalize(&once, policy);
            prop_assert_eq!(twice.as_deref(), Ok(once.as_ref()));
        }
    }

    #[test]
    fn normal_forms_are_plain(path in any_path(), policy in any_policy()) {
        if let Ok(p) = normalize(&path, policy) {
            prop_assert!(p.starts_with('/'));
            for seg in p.split('/') {
                prop_assert!(seg != "." && seg != "..", "dot segment in {}", p);
            }
            let b = p.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let v = escape_at(b, i);
                    prop_assert!(v.is_some(), "bad escape in {}", p);
                    prop_assert!(!unreserved(v.unwrap_or(0)), "encoded unreserved in {}", p);
                    prop_assert!(!b[i + 1..i + 3].iter().any(u8::is_ascii_lowercase), "lower-case hex in {}", p);
                    i += 3;
                } else {
                    prop_assert!(raw_ok(b[i]), "raw {:?} in {}", b[i] as char, p);
                    i += 1;
                }
            }
            if policy.escaped_slashes != EscapedSlashes::Keep {
                prop_assert!(!p.contains("%2F") && !p.contains("%5C"), "{}", p);
            }
            if policy.merge_slashes {
                prop_assert!(!p.contains("//"), "{}", p);
            }
        }
    }

    /// The auth decision on the normalized path is at least as strict as
    /// the one the origin's own reading of that path implies, however the
    /// origin reads it: nothing anonymous gets below a protected prefix.
    #[test]
    fn the_edge_decides_on_what_the_origin_serves(
        path in tricky_path(),
        policy in any_policy(),
        steps in 0..64u8,
        spec in prop::sample::select(&[
            "/public:off,/:required",
            "/:off,/api:required,/api/open:optional",
            "/:optional,/__greenlight:required,/PUBLIC:off",
        ][..]),
    ) {
        let cfg = routes(spec);
        if let Ok(p) = normalize(&path, policy) {
            let edge = cfg.route_mode(&p);
            let origin_path = origin_reads(&p, steps);
            // A case-insensitive origin serves one resource for every
            // case, so the configured prefixes apply to it in any case.
            let origin = if steps & 32 != 0 {
                routes(&spec.to_ascii_lowercase()).mode_for(&origin_path)
            } else {
                cfg.mode_for(&origin_path)
            }
            .strictness();
            prop_assert!(
                edge.strictness() >= origin,
                "{} -> {} decided {:?}; an origin reading {} implies {}",
                path, p, edge, origin_path, origin
            );
        }
    }
}

#[test]
fn raw_nul_bytes_normalize_to_a_form_that_normalizes_to_itself() {
    // Found by the path_normalization fuzz target within 37 runs.
    let policy = PathPolicy {
        escaped_slashes: EscapedSlashes::Reject,
        merge_slashes: false,
    };
    let input = "/\0\0//__GREEN\"reasonate";
    // A raw NUL is refused like `%00`: encoding it gave `/%00%00//...`,
    // which is itself refused.
    assert_eq!(normalize(input, policy), Err(PathError::ForbiddenEncoding));
    assert_eq!(
        normalize("/a%00", policy),
        Err(PathError::ForbiddenEncoding)
    );
    let once = normalize("/a\x01b\"c", policy).unwrap();
    assert_eq!(normalize(&once, policy).as_deref(), Ok(once.as_ref()));
}

#[test]
fn double_encoding_spelled_with_encoded_characters_is_refused_too() {
    // Found by the path_normalization fuzz target after 626 930 runs:
    // `%25` then `%32` ("2") then "e" normalized to `%252e`, which
    // normalizing again refused.
    let policy = PathPolicy {
        escaped_slashes: EscapedSlashes::Reject,
        merge_slashes: false,
    };
    for input in ["/ip%25%32e", "/a%252%65", "/a%25%35c", "/a%25%32%46"] {
        assert_eq!(
            normalize(input, policy),
            Err(PathError::DoubleEncoding),
            "{input}"
        );
    }
    let keep = PathPolicy {
        escaped_slashes: EscapedSlashes::Keep,
        merge_slashes: false,
    };
    let once = normalize("/ip%25%32e", keep).unwrap();
    assert_eq!(normalize(&once, keep).as_deref(), Ok(once.as_ref()));
}

#[test]
fn an_origin_that_decodes_once_is_one_of_the_readings() {
    // Found by `the_edge_decides_on_what_the_origin_serves`: under `keep`,
    // an origin decoding once (then merging slashes) reads `/api/%2F/open`,
    // below `/api` (required) and not `/api/open` (optional); the edge only
    // read it decoded twice (`/api/open`) or not at all, and let it through
    // anonymously.
    let policy = PathPolicy {
        escaped_slashes: EscapedSlashes::Keep,
        merge_slashes: false,
    };
    let cfg = routes("/:off,/api:required,/api/open:optional");
    let p = normalize("//%2F///api/%252F/open", policy).unwrap();
    assert_eq!(cfg.route_mode(&p), AuthMode::Required, "{p}");
    assert!(
        readings(&p).iter().any(|r| r == "/api/%2F/open"),
        "{:?}",
        readings(&p)
    );
}
