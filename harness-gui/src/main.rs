//! `greenlight-dashboard`: the release dashboard (egui/eframe).

use clap::Parser;
use harness_gui::app::AppState;
use harness_gui::backend::{Backend, Intervals};
use harness_gui::settings::Settings;
use harness_gui::Dashboard;
use rollout::audit::AuditFile;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "greenlight-dashboard",
    version,
    about = "greenlight release dashboard"
)]
struct Cli {
    /// Edge base URL (overrides the saved setting).
    #[arg(long)]
    edge: Option<String>,
    /// Load target URL (overrides the saved setting; normally the edge).
    #[arg(long)]
    target: Option<String>,
    /// Load rate, requests/s (overrides the saved setting).
    #[arg(long)]
    rate: Option<f64>,
    /// TOML request mix for the load (overrides the saved setting), e.g. a
    /// POST of a streamed chat-completions body.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Verdict policy flags, as `greenlight-rollout` spells them (each
    /// overrides the saved policy), e.g. `--metric ttfb`.
    #[command(flatten)]
    policy: greenlight_verdict::policy_args::PolicyArgs,
    /// Name of the environment variable holding the admin token.
    #[arg(long)]
    token_env: Option<String>,
    /// Settings file (default: the platform config dir, e.g. ~/.config/greenlight/dashboard.json).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Audit log, JSON lines (default: the platform data dir, e.g. ~/.local/share/greenlight/audit.jsonl).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Start the load as soon as the window opens.
    #[arg(long)]
    start_load: bool,
    #[command(flatten)]
    transport: greenlight_engine::admin_client::AdminTransportArgs,
    /// Window size, e.g. 1600x1000.
    #[arg(long, default_value = "1600x1000")]
    size: String,
}

struct App(Dashboard);

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.0.ui(ui);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings_path = cli.settings.clone().or_else(Settings::default_path);
    let (mut settings, warning) = match &settings_path {
        Some(p) => Settings::load(p),
        None => (Settings::default(), None),
    };
    if let Some(e) = cli.edge {
        settings.edge_url = e;
    }
    if let Some(t) = cli.target {
        settings.load.target_url = t;
    }
    if let Some(r) = cli.rate {
        settings.load.rate = r;
    }
    if let Some(p) = cli.scenario {
        settings.load.scenario = p.display().to_string();
    }
    settings.policy = cli.policy.apply(settings.policy);
    if let Err(e) = settings.policy.validate() {
        eprintln!("greenlight-dashboard: policy: {e}");
        return ExitCode::from(2);
    }
    if let Some(t) = cli.token_env {
        settings.token_env = t;
    }
    let token = settings.resolve_token();
    let admin_options = cli.transport.options();
    if admin_options.tls.insecure {
        eprintln!(
            "greenlight-dashboard: {}",
            greenlight_engine::tls::INSECURE_WARNING
        );
    }
    let audit_path = cli.audit.or_else(AuditFile::default_path);
    let (w, h) = cli
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<f32>().ok()?, h.parse::<f32>().ok()?)))
        .unwrap_or((1600.0, 1000.0));
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("greenlight dashboard")
            .with_inner_size([w, h]),
        ..Default::default()
    };
    let start_load = cli.start_load;
    let result = eframe::run_native(
        "greenlight dashboard",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let backend = Backend::start(
                AuditFile::new(audit_path.clone()),
                Intervals::default(),
                Some(Arc::new(move || ctx.request_repaint())),
            )?;
            let mut state = AppState::new(settings, settings_path, token.clone());
            state.admin_options = admin_options.clone();
            state.audit_path = audit_path;
            if state.admin_options.tls.insecure {
                state.notice = Some(harness_gui::app::Notice {
                    level: harness_gui::app::Level::Warning,
                    text: greenlight_engine::tls::INSECURE_WARNING.into(),
                });
            } else if let Some(w) = warning {
                state.notice = Some(harness_gui::app::Notice {
                    level: harness_gui::app::Level::Warning,
                    text: w,
                });
            } else if token.is_none() {
                state.notice = Some(harness_gui::app::Notice {
                    level: harness_gui::app::Level::Warning,
                    text: format!(
                        "${} is not set: admin calls will be refused",
                        state.settings.token_env
                    ),
                });
            }
            let mut dash = Dashboard::new(state, backend);
            if start_load {
                dash.act(harness_gui::app::Action::StartLoad);
            }
            Ok(Box::new(App(dash)))
        }),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greenlight-dashboard: {e}");
            ExitCode::from(3)
        }
    }
}
