//! Both edges served over HTTPS (`wrangler dev --local-protocol https` with
//! a certificate the test generates, `spin up --tls-cert/--tls-key`), driven
//! only through TLS clients that trust the test CA: auth, the weighted split
//! under a load verdict, promote and rollback from the CLI, an automated
//! rollout from `greenlight-rollout`, and the refusal of an untrusted edge.

use greenlight_common::{Color, Phase};
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, APP_KEY};
use greenlight_e2e::pki::TestPki;
use greenlight_e2e::process::{built_binary, greenlight_bin};
use greenlight_e2e::{EdgeTls, Runtime};
use greenlight_engine::admin_client::{AdminClient, AdminError, AdminOptions, TOKEN_ENV};
use greenlight_engine::tls::TlsOptions;
use greenlight_test_origin::{Behavior, Origin};
use std::path::PathBuf;
use std::process::Output;

greenlight_e2e::for_each_runtime!(release_over_https);

async fn run(bin: PathBuf, args: Vec<String>) -> Output {
    tokio::process::Command::new(bin)
        .args(args)
        .env(TOKEN_ENV, ADMIN_TOKEN)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn release_over_https(runtime: Runtime) {
    let pki = TestPki::generate().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let blue = Origin::start(any, "blue", Behavior::default())
        .await
        .unwrap();
    let green = Origin::start(any, "green", Behavior::default())
        .await
        .unwrap();
    let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
    setup.tls = Some(EdgeTls {
        files: pki.server.clone(),
        ca: pki.ca.clone(),
    });
    let edge = runtime.start(&setup).await.unwrap();
    let base = edge.base_url.clone();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = pki.ca.to_str().unwrap().to_string();
    let trust = AdminOptions {
        tls: TlsOptions {
            cacert: Some(pki.ca.clone()),
            insecure: false,
        },
        ..AdminOptions::default()
    };

    // The edge's certificate is not in the system store: refused, in words.
    let e = AdminClient::new(&base, Some(ADMIN_TOKEN.into()))
        .unwrap()
        .state()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("127.0.0.1") && e.contains("certificate not trusted"),
        "{e}"
    );
    // Auth over TLS: the admin API wants the token, a protected route a key.
    let anonymous = AdminClient::with_options(&base, None, &trust).unwrap();
    assert!(matches!(
        anonymous.state().await,
        Err(AdminError::Unauthorized { .. })
    ));
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let private = format!("{base}/private/x");
    assert_eq!(http.get(&private).send().await.unwrap().status(), 401);
    let ok = http
        .get(&private)
        .header("x-api-key", APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // Weighted split, judged by a load run over HTTPS.
    let admin = AdminClient::with_options(&base, Some(ADMIN_TOKEN.into()), &trust).unwrap();
    admin.set_weight(50.0, None, "https e2e").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let load = run(
        greenlight_bin(),
        [
            "load",
            &format!("{base}/public/items"),
            "--cacert",
            &ca,
            "--rate",
            "40",
            "--duration",
            "6s",
            "--users",
            "200",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .unwrap_or_else(|e| panic!("no report ({e}): {}", text(&load)));
    let colors = &report["colors"];
    assert!(
        colors["blue"]["requests"].as_u64() > Some(20)
            && colors["green"]["requests"].as_u64() > Some(20),
        "{}",
        text(&load)
    );
    assert!(report["verdict"]["verdict"].is_string(), "{}", text(&load));
    let conns = &report["connections"];
    assert_eq!(conns["tls"], true);
    assert_eq!(conns["failed"], 0);
    let served = conns["protocols"]["green"].as_object().unwrap();
    assert!(
        served.contains_key("HTTP/1.1") || served.contains_key("HTTP/2"),
        "{conns}"
    );

    // Promote and roll back from the CLI, over HTTPS.
    let cli = |op: &str| {
        vec![
            op.to_string(),
            "--edge".into(),
            base.clone(),
            "--cacert".into(),
            ca.clone(),
            "--reason".into(),
            "https e2e".into(),
        ]
    };
    let out = run(greenlight_bin(), cli("promote")).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(admin.state().await.unwrap().state.active, Color::Green);
    let out = run(greenlight_bin(), cli("rollback")).await;
    assert!(out.status.success(), "{}", text(&out));
    let view = admin.state().await.unwrap();
    assert_eq!(
        (view.state.active, view.phase),
        (Color::Blue, Phase::Stable)
    );

    // An automated rollout from greenlight-rollout, over HTTPS to the end.
    let out = run(
        built_binary("greenlight-rollout", "greenlight-rollout"),
        [
            "--edge",
            &base,
            "--cacert",
            &ca,
            "--target",
            &format!("{base}/public/e2e"),
            "--rate",
            "40",
            "--steps",
            "50,100",
            "--dwell",
            "3s",
            "--max-extensions",
            "0",
            "--on-inconclusive",
            "advance",
            "--timeout",
            "2m",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(admin.state().await.unwrap().state.active, Color::Green);
    assert!(green.hits() > 0 && blue.hits() > 0);
}
