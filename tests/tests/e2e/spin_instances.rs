//! Spin reuses a WASIp3 instance for many requests, several at once
//! (`--max-instance-concurrent-reuse-count`, 16 by default): what one
//! request holds must never leak into another served beside it. Under
//! `spin up` with up to 8 requests at once per instance and 1 000 per
//! instance, 64 callers, each with its own credential, query and body,
//! send at once through a canary (so both colors serve), in front of
//! origins slow enough that requests overlap; every origin request and
//! every answer must be the caller's own, and a second round gives each
//! caller the same color.

use greenlight_common::Color;
use greenlight_e2e::fixtures;
use greenlight_e2e::rig::Rig;
use greenlight_e2e::Runtime;
use greenlight_test_origin::{Behavior, LatencyDist};
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

const CALLERS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_served_at_once_by_one_instance_stay_apart() {
    let slow = Behavior {
        latency: LatencyDist::Fixed(Duration::from_millis(40)),
        ..Behavior::default()
    };
    let rig = Rig::start_with(Runtime::Spin, slow.clone(), slow, |setup| {
        setup.spin_up_args = [
            "--max-instance-concurrent-reuse-count",
            "8",
            "--max-instance-reuse-count",
            "1000",
        ]
        .map(String::from)
        .to_vec();
    })
    .await;
    let epoch = rig.state().await.state.epoch;
    let resp = rig
        .admin_post(
            "weight",
            serde_json::json!({"expected_epoch": epoch, "weight_percent": 50}),
        )
        .await;
    assert_eq!(resp.status(), 200);

    let first = round(&rig).await;
    let colors: Vec<Color> = first.values().copied().collect();
    assert!(
        colors.contains(&Color::Blue) && colors.contains(&Color::Green),
        "a 50 % canary over {CALLERS} callers served one color: {colors:?}"
    );
    let second = round(&rig).await;
    assert_eq!(first, second, "a caller changed color between two rounds");
}

/// Sends every caller's request at once; checks what each origin received
/// and what each caller got back; returns each caller's color.
async fn round(rig: &Rig) -> HashMap<usize, Color> {
    rig.reset_origins();
    let sends = (0..CALLERS).map(|i| {
        let token = fixtures::sign(Algorithm::HS256, &fixtures::claims(&format!("user-{i}")));
        rig.post(&format!("/api/instances?caller={i}"))
            .bearer_auth(token)
            .body(format!("the body of caller {i}"))
            .send()
    });
    let answers = futures::future::join_all(sends).await;
    let mut colors = HashMap::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let resp = answer.unwrap_or_else(|e| panic!("caller {i}: {e}"));
        assert_eq!(resp.status(), 200, "caller {i}");
        let color = resp
            .headers()
            .get("x-greenlight-color")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.parse::<Color>().ok())
            .unwrap_or_else(|| panic!("caller {i}: no color"));
        colors.insert(i, color);
    }
    for (origin, color) in [(&rig.blue, Color::Blue), (&rig.green, Color::Green)] {
        for seen in origin.recent() {
            let caller: usize = seen
                .query
                .as_deref()
                .and_then(|q| q.strip_prefix("caller="))
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("{color} origin got {:?}", seen.query));
            assert_eq!(
                seen.header("x-greenlight-principal"),
                Some(format!("s:user-{caller}").as_str()),
                "caller {caller}'s request reached the origin as another caller"
            );
            let body = format!("the body of caller {caller}");
            assert_eq!(
                seen.body_sha256,
                hex::encode(Sha256::digest(body.as_bytes())),
                "caller {caller}'s request reached the origin with another body"
            );
            assert_eq!(
                colors[&caller], color,
                "caller {caller} was told {} but served by {color}",
                colors[&caller]
            );
        }
    }
    assert_eq!(
        rig.received().len(),
        CALLERS,
        "one origin request per caller"
    );
    colors
}
