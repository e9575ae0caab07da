//! The `greenlight` binary's error handling: bad input is one clear line
//! naming the problem, exit code 2.

use std::process::{Command, Output};

fn greenlight(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_greenlight"))
        .args(args)
        .env_remove("GREENLIGHT_ADMIN_TOKEN")
        .env_remove("GREENLIGHT_EDGE")
        .env("XDG_CONFIG_HOME", "/nonexistent-greenlight-test")
        .output()
        .expect("run greenlight")
}

fn assert_usage(args: &[&str], needle: &str) {
    let out = greenlight(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in {stderr}"
    );
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
}

#[test]
fn bad_load_input_exits_2_with_one_clear_message() {
    assert_usage(
        &["load", "not a url", "--rate", "10"],
        "invalid URL \"not a url\"",
    );
    assert_usage(
        &["load", "ftp://127.0.0.1/", "--rate", "10"],
        "must be http(s)://",
    );
    assert_usage(
        &["load", "http://127.0.0.1:9/", "--rate", "0"],
        "--rate: rate must be greater than 0",
    );
    assert_usage(
        &["load", "http://127.0.0.1:9/", "--rate", "abc"],
        "not a number",
    );
    assert_usage(&["load", "http://127.0.0.1:9/"], "--rate is required");
    assert_usage(
        &["load", "http://127.0.0.1:9/", "--rate", "5", "--max"],
        "not both",
    );
    assert_usage(
        &[
            "load",
            "http://127.0.0.1:9/",
            "--rate",
            "5",
            "--duration",
            "soon",
        ],
        "--duration",
    );
    assert_usage(
        &["load", "http://127.0.0.1:9/", "--rate", "5", "--users", "0"],
        "--users must be at least 1",
    );
    assert_usage(
        &[
            "load",
            "http://127.0.0.1:9/",
            "--rate",
            "5",
            "--identity",
            "hs256",
        ],
        "--jwt-secret",
    );
    assert_usage(
        &[
            "load",
            "http://127.0.0.1:9/",
            "--rate",
            "5",
            "--p99-ratio",
            "0.5",
        ],
        "p99_ratio_max",
    );
    assert_usage(
        &[
            "load",
            "http://127.0.0.1:9/",
            "--rate",
            "5",
            "--baseline",
            "red",
        ],
        "--baseline",
    );
    assert_usage(
        &[
            "load",
            "http://127.0.0.1:9/",
            "--rate",
            "5",
            "--scenario",
            "/nonexistent/s.toml",
        ],
        "/nonexistent/s.toml",
    );
    // A request from the command line: its body file, headers and method.
    let load = [
        "load",
        "http://127.0.0.1:9/v1/chat/completions",
        "--rate",
        "5",
    ];
    assert_usage(
        &[&load[..], &["--body-file", "/nonexistent/chat.json"]].concat(),
        "/nonexistent/chat.json",
    );
    assert_usage(&[&load[..], &["-H", "no colon"]].concat(), "name: value");
    assert_usage(
        &[&load[..], &["--method", "G T"]].concat(),
        "not an HTTP method",
    );
    assert_usage(
        &[&load[..], &["--scenario", "s.toml", "--method", "POST"]].concat(),
        "cannot be used with",
    );
    assert_usage(
        &[&load[..], &["--metric", "p99"]].concat(),
        "not total or ttfb",
    );
    // clap's own errors also exit 2.
    assert_usage(&["load"], "<URL>");
    assert_usage(&["load", "http://x/", "--rate", "5", "--bogus"], "--bogus");
}

#[test]
fn scenario_errors_name_the_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mix.toml");
    std::fs::write(&path, "[[requests]]\nname = \"list\"\npath = \"items\"\n").unwrap();
    let p = path.to_str().unwrap();
    assert_usage(
        &[
            "load",
            "http://127.0.0.1:9/",
            "--rate",
            "5",
            "--scenario",
            p,
        ],
        "list: path \"items\" must start with '/'",
    );
    std::fs::write(&path, "[[requests]\n").unwrap();
    assert_usage(
        &[
            "load",
            "http://127.0.0.1:9/",
            "--rate",
            "5",
            "--scenario",
            p,
        ],
        "mix.toml",
    );
}

#[test]
fn bad_origin_and_admin_input_exit_2() {
    assert_usage(
        &["origin", "--color", "blue", "--latency", "gamma:1ms"],
        "--latency: unknown latency distribution",
    );
    assert_usage(
        &["origin", "--color", "blue", "--error-rate", "150%"],
        "--error-rate",
    );
    assert_usage(&["origin", "--color", "blue", "--stall", "1s"], "--stall");
    assert_usage(
        &["origin", "--color", "blue", "--host", "localhost"],
        "--host",
    );
    assert_usage(&["status"], "no edge URL");
    assert_usage(&["status", "--edge", "nope"], "edge URL");
    assert_usage(
        &["weight", "150", "--edge", "http://127.0.0.1:9"],
        "within 0..=100",
    );
}

#[test]
fn unreachable_edge_is_a_runtime_error_not_usage() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = greenlight(&["status", "--edge", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the edge"));
}

#[test]
fn load_against_a_plain_origin_reports_unknown_color() {
    // A real (short) run: a greenlight origin, no edge → all "unknown", no verdict, exit 0.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut origin = Command::new(env!("CARGO_BIN_EXE_greenlight"))
        .args([
            "origin",
            "--color",
            "blue",
            "--port",
            &port.to_string(),
            "--latency",
            "fixed:1ms",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for it to listen.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "origin did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let url = format!("http://127.0.0.1:{port}/");
    let out = greenlight(&[
        "load",
        &url,
        "--rate",
        "100",
        "--duration",
        "1s",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
        "--hgrm-dir",
        dir.path().to_str().unwrap(),
    ]);
    // `--json -`: the report on stdout, the summary on stderr.
    let piped = greenlight(&[
        "load",
        &url,
        "--rate",
        "50",
        "--duration",
        "1s",
        "--quiet",
        "--json",
        "-",
    ]);
    let _ = origin.kill();
    let _ = origin.wait();
    let piped_report =
        greenlight_engine::report::Report::from_json(&String::from_utf8_lossy(&piped.stdout))
            .unwrap();
    assert_eq!(piped_report.requests, 50);
    assert!(String::from_utf8_lossy(&piped.stderr).contains("no verdict"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("unknown") && stdout.contains("no verdict"),
        "{stdout}"
    );
    let report =
        greenlight_engine::report::Report::from_json(&std::fs::read_to_string(&json).unwrap())
            .unwrap();
    assert_eq!(report.requests, 100);
    assert!(
        report.colors[&greenlight_engine::histogram::SeenColor::Unknown]
            .latency_ms
            .p50
            >= 1.0
    );
    let hgrm = std::fs::read_to_string(dir.path().join("unknown.hgrm")).unwrap();
    assert!(hgrm.contains("Total count    =          100]"), "{hgrm}");
}
