use super::*;

#[test]
fn config_errors_name_the_variable() {
    let mut v = vars();
    v.remove("GREEN_ORIGIN");
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("GREEN_ORIGIN"), "{err}");
    let mut v = vars();
    v.insert("BLUE_ORIGIN", "ftp://x".into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned())
        .unwrap_err()
        .0
        .contains("BLUE_ORIGIN"));
    let mut v = vars();
    v.insert("API_KEYS", "{".into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned())
        .unwrap_err()
        .0
        .contains("API_KEYS"));
    let mut v = vars();
    v.insert("STATE_CACHE_TTL_MS", "soon".into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned())
        .unwrap_err()
        .0
        .contains("STATE_CACHE_TTL_MS"));
    assert_eq!(config().state_cache_ttl_ms, DEFAULT_STATE_CACHE_TTL_MS);
    assert_eq!(
        config().blue_origin,
        "http://127.0.0.1:9001",
        "trailing slash trimmed"
    );
}

#[test]
fn config_variables_lists_exactly_what_from_lookup_reads() {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    // Every name is set, so no early return hides a later read.
    let asked = RefCell::new(BTreeSet::new());
    let full = vars();
    let _ = EdgeConfig::from_lookup(|k| {
        asked.borrow_mut().insert(k.to_string());
        full.get(k).cloned()
    });
    let listed: BTreeSet<String> = CONFIG_VARIABLES.iter().map(|s| s.to_string()).collect();
    assert_eq!(asked.into_inner(), listed);
    assert!(SECRET_VARIABLES
        .iter()
        .all(|s| CONFIG_VARIABLES.contains(s)));
    assert!(REQUIRED_VARIABLES
        .iter()
        .all(|s| CONFIG_VARIABLES.contains(s)));
    // The required ones really are required, and nothing else is.
    for name in CONFIG_VARIABLES {
        let without =
            EdgeConfig::from_lookup(|k| (k != *name).then(|| full.get(k).cloned()).flatten());
        assert_eq!(
            without.is_err(),
            REQUIRED_VARIABLES.contains(name),
            "{name}"
        );
    }
}

#[test]
fn new_variables_are_checked() {
    for (name, bad) in [
        ("PATH_ESCAPED_SLASHES", "allow"),
        ("MERGE_SLASHES", "sometimes"),
        ("ALLOW_METHOD_OVERRIDE", "2"),
        ("TRUSTED_CLIENT_IP_HEADER", "x real ip"),
    ] {
        let mut v = vars();
        v.insert(name, bad.to_string());
        let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
        assert!(err.0.contains(name), "{err}");
    }
    let cfg = config();
    assert_eq!(cfg.paths, PathPolicy::default());
    assert_eq!(cfg.paths.escaped_slashes, EscapedSlashes::Reject);
    assert!(!cfg.paths.merge_slashes && !cfg.allow_method_override);
    assert_eq!(cfg.trusted_client_ip_header, None);
}

// ---- a transparent proxy ---------------------------------------------------

#[test]
fn origin_host_policies_parse_and_are_refused_where_the_platform_cannot() {
    assert_eq!(OriginHost::parse("origin").unwrap(), OriginHost::default());
    let both = OriginHost::parse("client").unwrap();
    assert_eq!(
        (both.blue, both.green),
        (HostPolicy::Client, HostPolicy::Client)
    );
    let per = OriginHost::parse("green:client").unwrap();
    assert_eq!(
        (per.blue, per.green),
        (HostPolicy::Origin, HostPolicy::Client)
    );
    let per = OriginHost::parse("blue:client, green:origin").unwrap();
    assert_eq!(per.of(Color::Blue), HostPolicy::Client);
    for bad in ["edge", "red:client", "blue:edge", "blue"] {
        assert!(OriginHost::parse(bad).is_err(), "{bad}");
    }
    assert!(config().check_platform("Spin").is_ok());
    let client = config_with(&[("ORIGIN_HOST", "green:client")]);
    let e = client.check_platform("Spin").unwrap_err();
    assert!(
        e.0.contains("green") && e.0.contains("x-forwarded-host"),
        "{}",
        e.0
    );
}

#[test]
fn remote_jwks_configuration() {
    let mut v = vars();
    v.insert("JWKS_URL", "http://127.0.0.1:7/jwks.json".into());
    let cfg = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap();
    assert_eq!(
        cfg.jwks_url.as_deref(),
        Some("http://127.0.0.1:7/jwks.json")
    );
    // JWKS_ORIGIN (Spin's allowed outbound host): its default means none;
    // when set, the URL must be under it.
    v.insert("JWKS_ORIGIN", crate::jwks::UNSET_URL.into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned()).is_ok());
    v.insert("JWKS_ORIGIN", "http://127.0.0.1:7".into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned()).is_ok());
    v.insert("JWKS_ORIGIN", "http://127.0.0.1:70".into());
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("JWKS_ORIGIN"), "{}", err.0);
    v.remove("JWKS_ORIGIN");
    v.insert("JWKS_URL", "http://idp.example.com/jwks".into());
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("JWKS_URL"), "{}", err.0);
    v.insert("JWKS_URL", "https://idp.example.com/jwks".into());
    v.insert("JWKS", r#"{"keys":[]}"#.into());
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("not both"), "{}", err.0);
    // Which requests need the remote set.
    let head = |auth: &str| {
        let hs = headers(&[("authorization", auth)]);
        let req = RequestHead {
            method: "GET",
            path: "/x",
            query: None,
            headers: &hs,
            client_addr: None,
            scheme: None,
        };
        jwks_key_id(&req)
    };
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let es = format!("Bearer {}.e30.sig", b64(r#"{"alg":"ES256","kid":"k1"}"#));
    assert_eq!(head(&es), Some(Some("k1".into())));
    let rs = format!("Bearer {}.e30.sig", b64(r#"{"alg":"RS256"}"#));
    assert_eq!(head(&rs), Some(None));
    let hs = format!("Bearer {}.e30.sig", b64(r#"{"alg":"HS256","kid":"k1"}"#));
    assert_eq!(head(&hs), None);
    let crit = format!("Bearer {}.e30.sig", b64(r#"{"alg":"ES256","crit":["x"]}"#));
    assert_eq!(head(&crit), None, "refused anyway: nothing to fetch for");
}
