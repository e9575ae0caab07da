//! Per-location tracking through the real edges: the origins answer a
//! Cloudflare-style `cf-ray: <id>-<CODE>` (blue from "FRA", green from
//! "AMS"), the edge relays it with its epoch header, and a weight change made
//! during the run is followed per location from its acknowledgement.

use greenlight_e2e::fixtures::{self, ADMIN_TOKEN};
use greenlight_e2e::process::built_binary;
use greenlight_e2e::Runtime;
use greenlight_engine::admin_client::AdminClient;
use greenlight_engine::client::{self, Control, LoadConfig};
use greenlight_engine::histogram::SeenColor;
use greenlight_engine::recorder::Recorder;
use greenlight_test_origin::{Behavior, Origin};
use std::time::Duration;

greenlight_e2e::for_each_runtime!(convergence_per_location);

async fn convergence_per_location(runtime: Runtime) {
    let any = "127.0.0.1:0".parse().unwrap();
    let blue = Origin::start(any, "blue", Behavior::default())
        .await
        .unwrap();
    let green = Origin::start(any, "green", Behavior::default())
        .await
        .unwrap();
    blue.set_location("FRA");
    green.set_location("AMS");
    let edge = runtime
        .start(&fixtures::edge_setup(&blue.url(), &green.url()))
        .await
        .unwrap();
    let admin = AdminClient::new(&edge.base_url, Some(ADMIN_TOKEN.into())).unwrap();
    let before = admin.set_weight(50.0, None, "locations").await.unwrap();

    let url = reqwest::Url::parse(&format!("{}/public/loc", edge.base_url)).unwrap();
    let cfg = LoadConfig::constant(url, 40.0, Duration::from_secs(4)).unwrap();
    let tracker = cfg.locations.clone();
    let rec = Recorder::new();
    let run = tokio::spawn(client::run(cfg, rec.clone(), Control::default()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = admin.set_weight(60.0, None, "locations").await.unwrap();
    tracker.mark_change(after.state.epoch);
    run.await.unwrap().unwrap();

    let s = tracker.summary();
    assert_eq!(s.header, "cf-ray");
    assert_eq!(s.changes.len(), 1);
    assert!(s.changes[0].acknowledged && s.changes[0].epoch == after.state.epoch);
    assert!((1.0..3.0).contains(&s.changes[0].at_s), "{s:?}");
    for (code, color) in [("FRA", SeenColor::Blue), ("AMS", SeenColor::Green)] {
        let loc = &s.locations[code];
        assert!(loc.requests[&color] > 5, "{code}: {loc:?}");
        assert_eq!(loc.requests.len(), 1, "{code} serves one color: {loc:?}");
        assert!(
            loc.epochs.contains(&before.state.epoch) && loc.epochs.contains(&after.state.epoch),
            "{code}: {loc:?}"
        );
        let c = &loc.convergence[0];
        // Slightly negative is possible: an answer with the new epoch can
        // arrive before the acknowledgement does.
        let first_new = c.new_first_seen_s.expect("new epoch seen");
        assert!((-0.5..2.5).contains(&first_new), "{code}: {c:?}");
    }
    let text = s.text();
    assert!(text.contains("FRA") && text.contains("AMS"), "{text}");

    // The CLI: another header names the location (here the origin's color
    // header, relayed by the edge); the JSON report carries the table.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = tokio::process::Command::new(built_binary("greenlight", "greenlight-cli"))
        .args([
            "load",
            &format!("{}/public/loc", edge.base_url),
            "--rate",
            "30",
            "--duration",
            "2s",
            "--quiet",
            "--location-header",
            "x-origin-color",
            "--json",
        ])
        .arg(&json)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("per location (x-origin-color)"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let locs = &report["locations"]["locations"];
    assert!(
        locs["blue"]["requests"]["blue"].as_u64() > Some(0),
        "{report}"
    );
    assert!(
        locs["green"]["requests"]["green"].as_u64() > Some(0),
        "{report}"
    );
}
