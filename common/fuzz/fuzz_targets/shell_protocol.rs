//! The Worker shell's string protocol (`greenlight_common::shell`): a
//! request head as the JavaScript shell sends it, action by the core, and
//! an arbitrary attempt report and origin header list coming back.
//!
//! Invariants: nothing panics; every step the core writes parses back in
//! the documented framing (`reply` header count, `forward` and `deliver`
//! deltas whose counts match their fields); no field the core writes into a
//! header list contains a line feed (it would shift every field after it);
//! an unreadable attempt report is a failure, never an answer; the admin
//! namespace is never forwarded.
#![no_main]

use arbitrary::Arbitrary;
use greenlight_common::edge::{self, BodyMode, EdgeConfig, Action, LoadedState};
use greenlight_common::{shell, RolloutState};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    head: &'a str,
    report: &'a str,
    origin_lines: &'a str,
    status: u16,
    weight_bp: u16,
    random: u64,
    buffer_body: bool,
}

fn config() -> EdgeConfig {
    let vars = [
        ("BLUE_ORIGIN", "http://127.0.0.1:9001"),
        ("GREEN_ORIGIN", "http://127.0.0.1:9002"),
        ("ADMIN_TOKEN", "fuzz-admin-token"),
        ("AUTH_ROUTES", "/api:required,/:off"),
        ("REWRITE_LOCATION", "true"),
    ];
    EdgeConfig::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .expect("fuzz configuration")
}

/// Reads `n` then `n` fields (`pairs`: 2n fields); the fields must exist.
fn take_list<'a>(fields: &mut impl Iterator<Item = &'a str>, pairs: bool) -> usize {
    let n: usize = fields
        .next()
        .expect("a count")
        .parse()
        .expect("a count is a number");
    for _ in 0..n * if pairs { 2 } else { 1 } {
        fields.next().expect("a field the count promised");
    }
    n
}

/// Checks a `<deletes>\n<appends>` delta and returns what follows it.
fn check_delta<'a>(fields: &mut impl Iterator<Item = &'a str>) {
    take_list(fields, false);
    take_list(fields, true);
}

fn check_step(step: &str) {
    let step = match step.strip_prefix(shell::PERSIST_PREFIX) {
        Some(rest) => {
            let (delay, rest) = rest.split_once('\n').expect("persist delay");
            delay.parse::<u64>().expect("delay is a number");
            rest
        }
        None => step,
    };
    let mut fields = step.split('\n');
    match fields.next().expect("a kind") {
        "reply" => {
            let status: u16 = fields.next().unwrap().parse().expect("status");
            assert!((100..=599).contains(&status));
            take_list(&mut fields, true);
            // The rest is the body, line feeds and all.
        }
        "forward" => {
            for _ in 0..6 {
                fields.next().expect("forward head field");
            }
            check_delta(&mut fields);
            check_delta(&mut fields);
            assert!(fields.next().is_none(), "trailing fields: {step:?}");
        }
        "deliver" => {
            fields.next().unwrap().parse::<u16>().expect("status");
            check_delta(&mut fields);
            assert!(fields.next().is_none(), "trailing fields: {step:?}");
        }
        other => panic!("unexpected step kind {other:?}"),
    }
}

fuzz_target!(|input: Input<'_>| {
    let cfg = config();
    let mut state = RolloutState::initial("fuzz");
    state.candidate_weight_bp = input.weight_bp % 10_001;
    let loaded = LoadedState {
        state,
        degraded: false,
    };
    let request = shell::ShellRequest::parse(input.head);
    let head = request.head("cf-connecting-ip");
    let action = edge::action(&cfg, &loaded, &head, 1_800_000_000_000, input.random);
    let mut fwd = match action {
        Action::Reply(r) => return check_step(&shell::reply(&r)),
        Action::Admin(_) => return,
        Action::Forward(fwd) => fwd,
    };
    // Only the path: a query may say anything (`/;?x/__greenlight/` is the
    // path `/;`, and no origin reads a query as a path).
    let (forwarded_path, _) = greenlight_common::http::path_and_query(&fwd.url);
    assert!(
        !greenlight_common::path::in_namespace(
            forwarded_path,
            greenlight_common::http::ADMIN_NAMESPACE
        ),
        "the admin namespace was forwarded: {}",
        fwd.url
    );
    let body = if input.buffer_body {
        fwd.body_mode(Some("10"), false)
    } else {
        BodyMode::Empty
    };
    check_step(&shell::forward(
        7,
        request.method,
        body,
        &request.headers,
        &fwd,
    ));
    let result = shell::attempt_result(input.report, fwd.timeout_ms);
    if let Some(lines) = result.header_lines {
        let status: u16 = input.report.split('\n').next().unwrap().parse().unwrap();
        assert!((100..=599).contains(&status));
        check_step(&shell::deliver(status, lines, &fwd));
    } else {
        assert!(result.outcome.failed(), "no headers but not a failure");
    }
    let status = 100 + input.status % 500;
    check_step(&shell::deliver(status, input.origin_lines, &fwd));
});
