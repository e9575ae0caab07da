use super::*;

#[test]
fn corrupt_documents_fall_back_and_flag_degraded() {
    let good = canary(700);
    let ready = |load: StateLoad| match load {
        StateLoad::Ready(l) => (l.state, l.degraded),
        StateLoad::NeedsBackup => panic!("no backup needed here"),
    };
    assert_eq!(
        ready(load_state(Ok(Some("{not json")), Some(&good), "s")),
        (good.clone(), true)
    );
    assert_eq!(
        ready(load_state(Err(()), Some(&good), "s")),
        (good.clone(), true)
    );
    assert_eq!(
        ready(load_state(Ok(None), Some(&good), "salt")),
        (RolloutState::initial("salt"), false)
    );
    assert_eq!(
        ready(load_state(Ok(Some(&good.to_json())), None, "s")),
        (good, false)
    );
    // Without a last good state, an unreadable document or a failed
    // store goes to the backup copy.
    assert_eq!(
        load_state(Ok(Some(r#"{"schema":9}"#)), None, "s"),
        StateLoad::NeedsBackup
    );
    assert_eq!(load_state(Err(()), None, "s"), StateLoad::NeedsBackup);
    let cfg = config();
    let hs = headers(&[("x-api-key", "app-key")]);
    let req = RequestHead {
        method: "GET",
        path: "/x",
        query: None,
        headers: &hs,
        client_addr: None,
        scheme: Some("https"),
    };
    let degraded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: true,
    };
    let f = forward(action(&cfg, &degraded, &req, NOW_MS, 1));
    assert_eq!(header(&f.response_headers, HEADER_DEGRADED), Some("1"));
    assert_eq!(f.url, "http://127.0.0.1:9001/x");
}

#[test]
fn a_backup_copy_stands_in_for_an_unreadable_document() {
    let good = canary(700);
    let l = state_from_backup(Some(&good.to_json()), "s");
    assert_eq!((l.state, l.degraded), (good, true));
    for junk in [None, Some("{oops"), Some(r#"{"schema":99}"#)] {
        let l = state_from_backup(junk, "salt");
        assert_eq!((l.state, l.degraded), (RolloutState::initial("salt"), true));
    }
}

#[test]
fn the_backup_copy_never_goes_back_an_epoch() {
    let s1 = RolloutState::initial("s");
    let s2 = canary(2_000);
    assert!(s2.epoch > s1.epoch);
    assert!(replaces_backup(None, s1.epoch));
    assert!(replaces_backup(Some("{broken"), s1.epoch));
    assert!(replaces_backup(Some(&s1.to_json()), s2.epoch));
    assert!(!replaces_backup(Some(&s2.to_json()), s1.epoch));
    assert!(!replaces_backup(Some(&s2.to_json()), s2.epoch));
}
