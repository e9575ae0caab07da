//! `edge/spin/spin.toml` must match what the component needs. The wasmtime
//! test host does not read the manifest (routes, variable templates,
//! allowed hosts), so this is what keeps a real `spin up` working.

use greenlight_common::edge::{CONFIG_VARIABLES, REQUIRED_VARIABLES, SECRET_VARIABLES};
use std::collections::BTreeSet;
use toml::{Table, Value};

/// The key-value store label the adapter opens (`KV_STORE` in edge/spin).
const STORE: &str = "default";
const COMPONENT: &str = "greenlight-edge";

fn manifest() -> Table {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge/spin/spin.toml");
    let text = std::fs::read_to_string(&path).expect("edge/spin/spin.toml");
    text.parse::<Table>().expect("spin.toml is valid TOML")
}

fn table<'a>(t: &'a Table, key: &str) -> &'a Table {
    t.get(key)
        .and_then(Value::as_table)
        .unwrap_or_else(|| panic!("[{key}] missing or not a table"))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn spin_name(config_name: &str) -> String {
    config_name.to_lowercase()
}

#[test]
fn manifest_version_trigger_and_source() {
    let m = manifest();
    assert_eq!(
        m.get("spin_manifest_version").and_then(Value::as_integer),
        Some(2)
    );
    let triggers = m["trigger"]["http"].as_array().expect("[[trigger.http]]");
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0]["route"].as_str(), Some("/..."));
    assert_eq!(triggers[0]["component"].as_str(), Some(COMPONENT));
    let component = table(table(&m, "component"), COMPONENT);
    let source = component["source"]
        .as_str()
        .expect("component source is a path");
    // Where scripts/build-spin.sh copies the chosen build.
    assert_eq!(source, "../../target/spin/greenlight_edge_spin.wasm");
}

#[test]
fn key_value_store_is_declared() {
    let m = manifest();
    let component = table(table(&m, "component"), COMPONENT);
    assert_eq!(
        strings(component.get("key_value_stores")),
        vec![STORE.to_string()]
    );
}

#[test]
fn every_config_variable_is_declared_and_secrets_are_secret() {
    let m = manifest();
    let app_vars = table(&m, "variables");
    let component_vars = table(table(table(&m, "component"), COMPONENT), "variables");
    let wanted: BTreeSet<String> = CONFIG_VARIABLES.iter().map(|n| spin_name(n)).collect();
    let declared: BTreeSet<String> = app_vars.keys().cloned().collect();
    let passed: BTreeSet<String> = component_vars.keys().cloned().collect();
    assert_eq!(
        declared, wanted,
        "[variables] vs EdgeConfig's CONFIG_VARIABLES"
    );
    assert_eq!(
        passed, wanted,
        "[component.{COMPONENT}.variables] vs CONFIG_VARIABLES"
    );
    for name in CONFIG_VARIABLES {
        let spin = spin_name(name);
        assert!(
            spin.starts_with(|c: char| c.is_ascii_lowercase())
                && spin
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{spin} is not a valid Spin variable name"
        );
        let decl = app_vars[&spin]
            .as_table()
            .unwrap_or_else(|| panic!("{spin}: not a table"));
        let required = decl
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let has_default = decl.contains_key("default");
        assert!(
            required != has_default,
            "{spin}: Spin needs exactly one of required / default"
        );
        assert_eq!(
            required,
            REQUIRED_VARIABLES.contains(name),
            "{spin}: required"
        );
        if SECRET_VARIABLES.contains(name) {
            assert_eq!(
                decl.get("secret").and_then(Value::as_bool),
                Some(true),
                "{spin}: secret"
            );
        }
        assert_eq!(
            component_vars[&spin].as_str(),
            Some(format!("{{{{ {spin} }}}}").as_str()),
            "{spin}: the component variable must be the application variable"
        );
    }
}

#[test]
fn outbound_hosts_are_the_two_origins_and_the_jwks_origin() {
    let m = manifest();
    let component = table(table(&m, "component"), COMPONENT);
    let hosts: BTreeSet<String> = strings(component.get("allowed_outbound_hosts"))
        .into_iter()
        .collect();
    let wanted: BTreeSet<String> = ["BLUE_ORIGIN", "GREEN_ORIGIN", "JWKS_ORIGIN"]
        .iter()
        .map(|n| format!("{{{{ {} }}}}", spin_name(n)))
        .collect();
    assert_eq!(hosts, wanted);
    // JWKS_ORIGIN's default must be an allowed host too (Spin checks the
    // template with defaults): the reserved name that means "none".
    let jwks_default = table(&m, "variables")["jwks_origin"]
        .get("default")
        .and_then(Value::as_str)
        .map(str::to_string);
    assert_eq!(
        jwks_default.as_deref(),
        Some(greenlight_common::jwks::UNSET_URL)
    );
    // Both origins must be required: an empty template would allow nothing
    // and fail every forward.
    for n in ["BLUE_ORIGIN", "GREEN_ORIGIN"] {
        assert!(REQUIRED_VARIABLES.contains(&n));
    }
}
