//! How the CLI speaks: stdout that tolerates a closed pipe, and user
//! mistakes as one line with exit code 2.

use std::process::ExitCode;

/// A user mistake: printed as one line, exit code 2.
pub struct Usage(pub String);

impl From<String> for Usage {
    fn from(s: String) -> Usage {
        Usage(s)
    }
}

/// Prints to stdout, ignoring a closed pipe (`greenlight load ... | head`).
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints a human-readable report: to stdout, or to stderr when stdout
/// carries the JSON report (`--json -`), so that stays parseable.
pub fn print_human(text: &str, json_on_stdout: bool) {
    if json_on_stdout {
        eprint!("{text}");
    } else {
        print_stdout(text);
    }
}

/// Reports a user mistake: exit code 2.
pub fn usage_exit(msg: &str) -> ExitCode {
    eprintln!("greenlight: error: {msg}");
    ExitCode::from(2)
}
