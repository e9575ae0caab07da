//! Remote JWKS (`JWKS_URL`) through both runtimes, against a key server on
//! 127.0.0.1 that rotates its keys, goes down and answers garbage.
//!
//! What must hold (README, "Remote JWKS"): the set is fetched once and
//! cached (in isolate memory on the Worker, in key-value on Spin); a token
//! naming a key the set lacks refetches it at most once per
//! `REFETCH_INTERVAL_MS`, so forged `kid`s cannot make the edge hammer the
//! provider; a rotation is picked up by the first token signed with the new
//! key after that interval; while the provider is down or answers garbage
//! the last good set keeps verifying; and a URL named by a token (`jku`)
//! is never fetched.

use greenlight_common::jwks::REFETCH_INTERVAL_MS;
use greenlight_e2e::fixtures::{self, EC_OTHER_PRIVATE, EC_PRIVATE};
use greenlight_e2e::rig::Rig;
use greenlight_e2e::Runtime;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the key server answers on `/jwks.json`.
#[derive(Clone)]
enum Answer {
    Keys(String),
    Down,
    Garbage,
}

/// A JWKS provider on 127.0.0.1: one answer at a time, every request
/// counted by path.
struct KeyServer {
    url: String,
    answer: Arc<Mutex<Answer>>,
    jwks_hits: Arc<AtomicU64>,
    other_hits: Arc<AtomicU64>,
}

impl KeyServer {
    async fn start(keys: String) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(Answer::Keys(keys)));
        let jwks_hits = Arc::new(AtomicU64::new(0));
        let other_hits = Arc::new(AtomicU64::new(0));
        let (a, j, o) = (answer.clone(), jwks_hits.clone(), other_hits.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (a, j, o) = (a.clone(), j.clone(), o.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head);
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (status, content_type, body) = if path == "/jwks.json" {
                        j.fetch_add(1, Ordering::SeqCst);
                        match a.lock().unwrap().clone() {
                            Answer::Keys(keys) => ("200 OK", "application/json", keys),
                            Answer::Down => {
                                ("503 Service Unavailable", "text/plain", "down".into())
                            }
                            Answer::Garbage => {
                                ("200 OK", "application/json", "<html>{\"keys\":".into())
                            }
                        }
                    } else {
                        o.fetch_add(1, Ordering::SeqCst);
                        ("404 Not Found", "text/plain", String::new())
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n\
                         cache-control: max-age=300\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        KeyServer {
            url,
            answer,
            jwks_hits,
            other_hits,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> u64 {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

/// The public JWK of the P-256 key in `pem`, named `kid`.
fn public_jwk(pem: &str, kid: &str) -> serde_json::Value {
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    let mut v = serde_json::to_value(&jwk).unwrap();
    // A JWKS carries public keys only.
    v.as_object_mut().unwrap().remove("d");
    v
}

fn key_set(keys: &[serde_json::Value]) -> String {
    let set = serde_json::json!({ "keys": keys });
    // Parses as a JWKS on our side too.
    serde_json::from_value::<JwkSet>(set.clone()).unwrap();
    set.to_string()
}

fn token(pem: &str, kid: &str, jku: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    header.jku = jku.map(str::to_string);
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    encode(&header, &fixtures::claims("jwks-user"), &key).unwrap()
}

async fn status(rig: &Rig, token: &str) -> u16 {
    rig.get("/api/items")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends `n` tokens with forged `kid`s; all must be refused.
async fn forged_flood(rig: &Rig, n: usize, round: &str) {
    for i in 0..n {
        let t = token(EC_OTHER_PRIVATE, &format!("forged-{round}-{i}"), None);
        assert_eq!(status(rig, &t).await, 401, "forged kid {i}");
    }
}

/// Waits out the refetch interval (plus a margin for clock granularity).
async fn after_interval() {
    tokio::time::sleep(Duration::from_millis(REFETCH_INTERVAL_MS + 300)).await;
}

async fn keys_rotate_and_survive_outages(runtime: Runtime) {
    let first = key_set(&[public_jwk(EC_PRIVATE, "ec-1")]);
    let rotated = key_set(&[public_jwk(EC_OTHER_PRIVATE, "ec-2")]);
    let server = KeyServer::start(first).await;
    let jwks_url = format!("{}/jwks.json", server.url);
    let rig = Rig::start(runtime, |setup| {
        setup.vars.remove("JWKS");
        setup.vars.insert("JWKS_URL".into(), jwks_url.clone());
        // Spin allows outbound hosts, not URLs: the origin of JWKS_URL.
        setup.vars.insert("JWKS_ORIGIN".into(), server.url.clone());
    })
    .await;
    let old_key = token(EC_PRIVATE, "ec-1", None);
    let new_key = token(EC_OTHER_PRIVATE, "ec-2", None);

    // Fetched once, then cached.
    assert_eq!(status(&rig, &old_key).await, 200);
    assert_eq!(status(&rig, &old_key).await, 200);
    assert_eq!(server.hits(), 1, "the set is cached");
    // Forged kids right after a fetch: no fetch at all.
    forged_flood(&rig, 20, "a").await;
    assert_eq!(server.hits(), 1, "forged kids made the edge fetch");

    // Rotation: the first token with the new key after the interval
    // refetches, and the old key is gone.
    server.set(Answer::Keys(rotated));
    after_interval().await;
    assert_eq!(status(&rig, &new_key).await, 200, "rotated key");
    assert_eq!(server.hits(), 2);
    assert_eq!(status(&rig, &old_key).await, 401, "rotated-out key");
    forged_flood(&rig, 20, "b").await;
    assert_eq!(server.hits(), 2, "at most one refetch per interval");

    // Down, then garbage: the refetch fails, the last good set verifies.
    for (what, answer) in [("down", Answer::Down), ("garbage", Answer::Garbage)] {
        server.set(answer);
        after_interval().await;
        let before = server.hits();
        forged_flood(&rig, 5, what).await;
        assert_eq!(server.hits(), before + 1, "{what}: one refetch");
        assert_eq!(status(&rig, &new_key).await, 200, "{what}: last good set");
    }

    // A URL in the token is never fetched.
    after_interval().await;
    let evil = format!("{}/evil-jwks.json", server.url);
    let jku = token(EC_OTHER_PRIVATE, "ec-evil", Some(&evil));
    assert_eq!(status(&rig, &jku).await, 401);
    assert_eq!(server.other_hits.load(Ordering::SeqCst), 0, "jku fetched");
    assert_eq!(
        rig.origin_hits(),
        5,
        "only the accepted requests reached an origin"
    );
}

greenlight_e2e::for_each_runtime!(keys_rotate_and_survive_outages);
