use super::*;

#[test]
fn bad_gateway_replies_are_problems() {
    for r in [
        Reply::misconfigured(&ConfigError("BLUE_ORIGIN is not set".into())),
        Reply::origin_failed("connection refused"),
    ] {
        assert_eq!(r.status, 502);
        let p: crate::admin::Problem = serde_json::from_str(&r.body).unwrap();
        assert_eq!(p.status, 502);
    }
    // The body says nothing about the configuration (values may be origin
    // addresses); the adapters log the error.
    let leaky = ConfigError("BLUE_ORIGIN must be an http(s) URL, got \"ftp://10.0.0.5\"".into());
    let body = Reply::misconfigured(&leaky).body;
    assert!(
        !body.contains("10.0.0.5") && !body.contains("BLUE_ORIGIN"),
        "{body}"
    );
    assert_eq!(Reply::store_unavailable("down").status, 503);
}

#[test]
fn a_failed_idempotent_request_is_retried_once_on_the_other_live_color() {
    let cfg = config_with(&[
        ("ORIGIN_TIMEOUT_MS", "300"),
        ("FAILOVER_DEADLINE_MS", "500"),
    ]);
    let f = plan_method(&cfg, &canary(5_000), "GET", "app-key");
    let first = f.decision.color;
    assert_eq!((f.timeout_ms, f.deadline_ms), (300, 500));
    assert_eq!(
        f.after_attempt(&AttemptOutcome::Answered(200), 10),
        AfterAttempt::Deliver
    );
    assert_eq!(
        f.after_attempt(&AttemptOutcome::Answered(404), 10),
        AfterAttempt::Deliver
    );
    for failure in [
        AttemptOutcome::Unreachable("connection refused".into()),
        AttemptOutcome::TimedOut { after_ms: 300 },
        AttemptOutcome::Answered(503),
    ] {
        let AfterAttempt::Retry(retry) = f.after_attempt(&failure, 300) else {
            panic!("{failure:?} should be retried");
        };
        assert_eq!(retry.decision.color, first.other());
        assert_eq!(retry.url, format!("{}/x", cfg.origin(first.other())));
        assert_eq!(
            header(&retry.response_headers, HEADER_COLOR),
            Some(first.other().as_str())
        );
        assert_eq!(
            header(&retry.response_headers, HEADER_REASON),
            Some("failover")
        );
        assert_eq!(retry.request_headers, f.request_headers);
        // The retry gets what is left of the deadline, and no retry of its own.
        assert_eq!((retry.timeout_ms, retry.deadline_ms), (200, 200));
        assert_eq!(retry.fallback, None);
        let AfterAttempt::Reply(r) = retry.after_attempt(&failure, 200) else {
            panic!("a failed retry ends the request");
        };
        assert_eq!(r.status, 503);
        assert_eq!(header(&r.headers, "retry-after"), Some("5"));
        assert!(
            r.body.contains(&format!("{} origin", first.other())),
            "{}",
            r.body
        );
    }
    // Deadline spent: no retry, 503.
    let AfterAttempt::Reply(r) = f.after_attempt(&AttemptOutcome::TimedOut { after_ms: 500 }, 500)
    else {
        panic!("no time left for a retry");
    };
    assert_eq!(r.status, 503);
}

#[test]
fn non_idempotent_failures_are_502_and_never_retried() {
    let cfg = config();
    for method in ["POST", "PATCH", "PUT", "DELETE"] {
        let f = plan_method(&cfg, &canary(5_000), method, "app-key");
        assert_eq!((f.fallback.clone(), f.retryable), (None, false), "{method}");
        let AfterAttempt::Reply(r) = f.after_attempt(&AttemptOutcome::Answered(500), 1) else {
            panic!("{method} must not be retried");
        };
        assert_eq!(r.status, 502);
        let p: crate::admin::Problem = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (p.status, p.kind.as_str()),
            (502, "urn:greenlight:problem:origin-failed")
        );
        assert!(p.detail.contains("answered 500"), "{}", p.detail);
    }
}

#[test]
fn put_and_delete_are_retried_only_when_configured_and_replayable() {
    let cfg = config_with(&[("RETRY_METHODS", "GET,PUT,DELETE")]);
    let mut small = plan_method(&cfg, &canary(5_000), "PUT", "app-key");
    assert!(small.fallback.is_some());
    assert_eq!(small.body_mode(Some("1024"), false), BodyMode::Buffer);
    assert!(small.fallback.is_some());
    let mut big = plan_method(&cfg, &canary(5_000), "PUT", "app-key");
    assert_eq!(big.body_mode(Some("2000000"), false), BodyMode::Stream);
    assert_eq!((big.fallback.clone(), big.retryable), (None, false));
    let mut chunked = plan_method(&cfg, &canary(5_000), "DELETE", "app-key");
    assert_eq!(chunked.body_mode(None, true), BodyMode::Stream);
    assert_eq!(chunked.fallback, None);
    let mut junk = plan_method(&cfg, &canary(5_000), "DELETE", "app-key");
    assert_eq!(junk.body_mode(Some("12x"), false), BodyMode::Stream);
    assert_eq!(junk.fallback, None);
    for len in [None, Some("0")] {
        let mut get = plan_method(&cfg, &canary(5_000), "GET", "app-key");
        assert_eq!(get.body_mode(len, false), BodyMode::Empty);
        assert!(get.fallback.is_some());
    }
    // A GET with a (small) body is kept for the retry too.
    let mut get = plan_method(&cfg, &canary(5_000), "GET", "app-key");
    assert_eq!(get.body_mode(Some("7"), false), BodyMode::Buffer);
    // Not retryable anyway: a small body is still kept (timed whole, never
    // a streamed attempt that fails), a large one streamed.
    let mut post = plan_method(&cfg, &canary(5_000), "POST", "app-key");
    assert_eq!(post.body_mode(Some("7"), false), BodyMode::Buffer);
    assert_eq!(post.fallback, None);
    let mut post = plan_method(&cfg, &canary(5_000), "POST", "app-key");
    let over = (crate::failover::MAX_REPLAY_BODY + 1).to_string();
    assert_eq!(post.body_mode(Some(&over), false), BodyMode::Stream);
    // POST cannot be configured at all.
    let v = vars();
    let bad = EdgeConfig::from_lookup(|k| {
        if k == "RETRY_METHODS" {
            Some("GET,POST".into())
        } else {
            v.get(k).cloned()
        }
    });
    assert!(bad.unwrap_err().0.contains("POST is not idempotent"));
}

#[test]
fn only_live_colors_are_failover_targets() {
    let cfg = config();
    // Stable: the candidate takes no traffic, so a failure of blue is a 503.
    let stable = plan_method(&cfg, &RolloutState::initial("s"), "GET", "app-key");
    assert_eq!(stable.fallback, None);
    assert!(stable.retryable);
    let AfterAttempt::Reply(r) =
        stable.after_attempt(&AttemptOutcome::Unreachable("refused".into()), 1)
    else {
        panic!("nothing to retry on");
    };
    assert_eq!(r.status, 503);
    // Promoted: green serves, blue (the rollback target) is the fallback.
    let p = plan_method(&cfg, &promoted(), "GET", "app-key");
    assert_eq!(p.decision.color, Color::Green);
    assert_eq!(p.fallback.map(|(c, _)| c), Some(Color::Blue));
}

#[test]
fn an_interim_answer_is_not_delivered_nor_counted() {
    let f = forward(plan_request(
        &config(),
        "GET",
        "/api",
        &[("x-api-key", "app-key")],
        None,
    ));
    let outcome = AttemptOutcome::Answered(103);
    assert!(!outcome.failed());
    let AfterAttempt::Reply(r) = f.after_attempt(&outcome, 1) else {
        panic!("an interim answer must not be delivered");
    };
    assert_eq!(r.status, 502);
    assert!(
        r.body.contains("103") && r.body.contains("blue"),
        "{}",
        r.body
    );
    assert_eq!(
        f.after_attempt(&AttemptOutcome::Answered(302), 1),
        AfterAttempt::Deliver
    );
}

#[test]
fn model_routes_set_the_model_per_color() {
    let cfg = ai_config(&[
        ("MODEL_ROUTES", "/v1/chat/completions"),
        ("BLUE_MODEL", "model-a"),
        ("GREEN_MODEL", "model-b"),
    ]);
    let mut f = forward(run(
        &cfg,
        &canary(5_000),
        "/v1/chat/completions",
        &[("x-api-key", "app-key")],
    ));
    let (mine, other) = match f.decision.color {
        Color::Blue => ("model-a", "model-b"),
        Color::Green => ("model-b", "model-a"),
    };
    assert_eq!(header(&f.response_headers, HEADER_MODEL), Some(mine));
    assert_eq!(f.body_mode(Some("40"), false), BodyMode::Rewrite);
    assert_eq!(f.body_mode(None, true), BodyMode::Rewrite);
    assert_eq!(
        f.model_body(br#"{"model":"x","stream":true}"#).unwrap(),
        format!(r#"{{"model":"{mine}","stream":true}}"#).into_bytes()
    );
    let refused = f.model_body(b"[1]").unwrap_err();
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("bad-model-request"),
        "{}",
        refused.body
    );
    // A retry sends the other color's model, and says so.
    let AfterAttempt::Retry(retry) = f.after_attempt(&AttemptOutcome::Answered(502), 10) else {
        panic!("no retry");
    };
    assert_eq!(header(&retry.response_headers, HEADER_MODEL), Some(other));
    assert_eq!(
        retry.model_body(b"{}").unwrap(),
        format!(r#"{{"model":"{other}"}}"#).into_bytes()
    );
    // No body: passed on as it is, the answer names no model.
    let mut get = forward(run(
        &cfg,
        &RolloutState::initial("s"),
        "/v1/chat/completions",
        &[("x-api-key", "app-key")],
    ));
    assert_eq!(get.body_mode(None, false), BodyMode::Empty);
    assert_eq!(header(&get.response_headers, HEADER_MODEL), None);
    // Other routes are untouched.
    let other_route = forward(run(
        &cfg,
        &RolloutState::initial("s"),
        "/v1/models",
        &[("x-api-key", "app-key")],
    ));
    assert!(other_route.models.is_none());
    assert_eq!(header(&other_route.response_headers, HEADER_MODEL), None);
}

#[test]
fn a_body_read_before_forwarding_must_be_whole() {
    assert!(body_complete(Some("100"), 100, 1_024));
    assert!(!body_complete(Some("100"), 1, 1_024));
    assert!(!body_complete(Some(" 100 "), 99, 1_024));
    // Announced over the limit: the limit's worth is whole enough (the
    // model route then refuses it as too large).
    assert!(body_complete(Some("5000"), 1_024, 1_024));
    assert!(!body_complete(Some("5000"), 1_000, 1_024));
    // Chunked, or a length the runtime would not have accepted anyway.
    assert!(body_complete(None, 3, 1_024));
    assert!(body_complete(Some("x"), 0, 1_024));
}

#[test]
fn an_attempt_the_client_or_the_edge_broke_is_answered_not_counted() {
    let f = forward(run(
        &config(),
        &RolloutState::initial("s"),
        "/public/x",
        &[],
    ));
    assert_eq!(
        f.attempt_outcome(Ok(503)),
        Ok(AttemptOutcome::Answered(503))
    );
    assert_eq!(
        f.attempt_outcome(Err(AttemptFailure::TimedOut)),
        Ok(AttemptOutcome::TimedOut {
            after_ms: f.timeout_ms
        })
    );
    assert_eq!(
        f.attempt_outcome(Err(AttemptFailure::Unreachable("refused".into()))),
        Ok(AttemptOutcome::Unreachable("refused".into()))
    );
    assert_eq!(
        f.attempt_outcome(Err(AttemptFailure::ClientGone)),
        Err(Reply::incomplete_body())
    );
    let refused = Reply::headers_not_forwardable("no");
    assert_eq!(
        f.attempt_outcome(Err(AttemptFailure::NotSent(refused.clone()))),
        Err(refused)
    );
}
