//! `greenlight credential`: a named admin token and its `ADMIN_CREDENTIALS`
//! entry. The edge keeps only the token's SHA-256, so the token is shown
//! once, here, and never stored by greenlight.

use crate::output::{print_stdout, usage_exit};
use clap::Args;
use greenlight_common::admin_credentials::AdminCredentials;
use greenlight_common::auth::hash_api_key;
use rand::RngCore;
use std::io::Read;
use std::process::ExitCode;

#[derive(Args)]
pub struct CredentialArgs {
    /// The credential's name, recorded with every change it makes (letters,
    /// digits, '.', '_', '-', '@'; at most 64).
    name: String,
    /// viewer (reads state and history), operator (changes the rollout) or
    /// admin (everything).
    #[arg(long, value_parser = ["viewer", "operator", "admin"])]
    role: String,
    /// Hash a token read from standard input instead of making a new one.
    #[arg(long)]
    token_from_stdin: bool,
}

pub fn run(a: CredentialArgs) -> ExitCode {
    let token = if a.token_from_stdin {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            return usage_exit(&format!("reading the token from standard input: {e}"));
        }
        let token = text.trim().to_string();
        if token.len() < 16 {
            return usage_exit("the token must be at least 16 characters");
        }
        token
    } else {
        new_token()
    };
    let entry = serde_json::json!({
        "name": a.name,
        "sha256": hash_api_key(&token),
        "role": a.role,
    });
    // The edge's own rules for a name (and the rest of the entry).
    if let Err(e) = AdminCredentials::parse(None, Some(&format!("[{entry}]"))) {
        return usage_exit(&e.0);
    }
    let mut out = String::new();
    if !a.token_from_stdin {
        out.push_str(&format!(
            "token (give it to {}; shown only now): {token}\n",
            a.name
        ));
    }
    out.push_str(&format!(
        "ADMIN_CREDENTIALS entry (add it to the JSON list):\n{entry}\n"
    ));
    print_stdout(&out);
    ExitCode::SUCCESS
}

/// 32 bytes from the operating system's secure source, hex encoded.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("glc_{hex}")
}
