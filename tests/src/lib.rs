//! Support for greenlight's end-to-end tests: starting edge runtimes and
//! origins on 127.0.0.1, and the fixtures they are configured with.

pub mod cloudflare;
pub mod edge;
pub mod fixtures;
pub mod flips;
pub mod pki;
pub mod process;
pub mod raw;
pub mod rig;
pub mod runtime;
pub mod spin;

pub use runtime::{EdgeSetup, EdgeTls, RunningEdge, Runtime, Server};

/// Writes `line` to the process's stderr, bypassing the test harness's
/// capture so the figures show for passing tests too.
pub fn report(line: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// Declares one `#[tokio::test]` per runtime for each named behaviour:
/// `cloudflare::<name>` and `spin::<name>`, each calling
/// `<name>(Runtime::…)` of the suite's module. Every suite is run against both
/// edges through this one macro.
#[macro_export]
macro_rules! for_each_runtime {
    ($($test:ident),* $(,)?) => {
        mod cloudflare {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::Runtime::Cloudflare).await
                }
            )*
        }
        mod spin {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::Runtime::Spin).await
                }
            )*
        }
    };
}
