//! The dashboard's worker: a thread with a tokio runtime that owns the
//! admin client, the load engine and the automated rollout. The UI sends it
//! [`Request`]s and drains [`Event`]s every frame; nothing here blocks a frame.

use crate::metrics::{self, MetricsView};
use greenlight_common::admin::StateView;
use greenlight_common::history::HistoryView;
use greenlight_common::plan::PlanSpec;
use greenlight_common::rollout::PlanControl;
use greenlight_common::Color;
use greenlight_engine::admin_client::{AdminClient, AdminError, AdminOptions};
use greenlight_engine::client::{self as engine, Control};
use greenlight_engine::recorder::{Recorder, Snapshot};
use greenlight_engine::sampling::PreviewCredential;
use greenlight_verdict::Policy;
use rollout::audit::{AuditEntry, AuditFile};
use rollout::synthetic::{self, Sampling, SyntheticLoad};
use rollout::{
    drive, Command, Controller, DriveEvent, Evidence, RolloutPlan, RolloutStatus, UserCmd,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// A change made by hand from the dashboard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ManualOp {
    Weight(f64),
    Promote,
    Rollback,
    Abort,
    /// The rollout plan the edge carries out by itself.
    EdgePlan(EdgePlanOp),
}

/// What the dashboard does to the plan held at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgePlanOp {
    /// Start the steps and dwell of the rollout panel at the edge.
    Start,
    Pause,
    Resume,
    Abort,
}

impl ManualOp {
    pub fn name(&self) -> String {
        match self {
            ManualOp::Weight(p) => format!("weight {p}%"),
            ManualOp::Promote => "promote".into(),
            ManualOp::Rollback => "rollback".into(),
            ManualOp::Abort => "abort".into(),
            ManualOp::EdgePlan(EdgePlanOp::Start) => "plan start at the edge".into(),
            ManualOp::EdgePlan(EdgePlanOp::Pause) => "plan pause".into(),
            ManualOp::EdgePlan(EdgePlanOp::Resume) => "plan resume".into(),
            ManualOp::EdgePlan(EdgePlanOp::Abort) => "plan abort".into(),
        }
    }

    /// The admin call this change makes (the edge plan's calls are made by
    /// [`ManualOp::execute`] itself).
    pub fn command(self, expected_epoch: u64, reason: String) -> Option<Command> {
        Some(match self {
            ManualOp::Weight(percent) => Command::SetWeight {
                percent,
                expected_epoch,
                reason,
            },
            ManualOp::Promote => Command::Promote {
                expected_epoch,
                reason,
            },
            ManualOp::Rollback => Command::Rollback {
                expected_epoch,
                reason,
            },
            ManualOp::Abort => Command::Abort {
                expected_epoch,
                reason,
            },
            ManualOp::EdgePlan(_) => return None,
        })
    }

    /// Makes the change at the edge; `plan` is the plan an
    /// [`EdgePlanOp::Start`] starts.
    pub async fn execute(
        self,
        client: &AdminClient,
        actor: &str,
        expected_epoch: u64,
        reason: String,
        plan: Option<PlanSpec>,
    ) -> Result<StateView, AdminError> {
        let control = match self {
            ManualOp::EdgePlan(EdgePlanOp::Start) => {
                let Some(plan) = plan else {
                    return Err(AdminError::Usage("no plan to start".into()));
                };
                return client.start_plan(plan, Some(expected_epoch), &reason).await;
            }
            ManualOp::EdgePlan(EdgePlanOp::Pause) => PlanControl::Pause,
            ManualOp::EdgePlan(EdgePlanOp::Resume) => PlanControl::Resume,
            ManualOp::EdgePlan(EdgePlanOp::Abort) => PlanControl::Abort,
            op => match op.command(expected_epoch, reason) {
                Some(command) => return command.execute(client, actor).await,
                None => return Err(AdminError::Usage(format!("{} is no change", op.name()))),
            },
        };
        client
            .control_plan(control, Some(expected_epoch), &reason)
            .await
    }
}

/// What the load panel starts.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadRequest {
    pub url: String,
    pub rate: f64,
    /// Sticky users for weighted traffic; 0: a fresh identity per request.
    pub users: usize,
    pub scenario: Option<PathBuf>,
    /// Upper bound of the run (the Stop button ends it earlier).
    pub duration: Duration,
    /// The preview credential for comparison traffic, or why there is none.
    pub preview: Result<PreviewCredential, String>,
    /// Share of requests that follow the weight (routing check).
    pub weighted_share: f64,
    /// Certificate trust for an https:// target.
    pub tls: greenlight_engine::tls::TlsOptions,
}

#[derive(Debug, Clone)]
pub enum Request {
    /// Point at an edge (token already resolved; never stored).
    Connect {
        edge: String,
        token: Option<String>,
        actor: String,
        /// TLS trust and the plain-HTTP token guard.
        options: AdminOptions,
    },
    SetPolicy(Policy),
    Refresh,
    Change {
        op: ManualOp,
        expected_epoch: u64,
        reason: String,
        /// The plan an [`EdgePlanOp::Start`] starts.
        plan: Option<PlanSpec>,
    },
    StartLoad(LoadRequest),
    StopLoad,
    SetRate(f64),
    StartRollout(RolloutPlan),
    Rollout(UserCmd),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadStatus {
    pub running: bool,
    pub target: String,
    pub rate: f64,
    /// Last message (why it stopped, or an error).
    pub message: Option<String>,
    /// How the evidence is sampled (once the load runs).
    pub sampling: Option<Sampling>,
}

#[derive(Debug, Clone)]
pub enum Event {
    State(Result<StateView, AdminError>),
    Changed {
        op: ManualOp,
        result: Result<StateView, AdminError>,
    },
    Audit(AuditEntry),
    /// The edge's history, read again whenever the epoch moves (an edge
    /// without the route keeps the last one shown).
    History(HistoryView),
    /// Real users' answers as the edge counted them.
    RealUsers(greenlight_common::telemetry::MetricsView),
    /// A Workers edge's read replicas and how far behind each is.
    Replicas(greenlight_common::propagation::ReplicasView),
    Metrics(Arc<MetricsView>),
    Load(LoadStatus),
    Rollout(RolloutStatus),
    /// A request could not be carried out (bad URL, no edge configured...).
    Error(String),
}

type Repaint = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
struct Sink {
    tx: std::sync::mpsc::Sender<Event>,
    repaint: Option<Repaint>,
}

impl Sink {
    fn send(&self, e: Event) {
        let _ = self.tx.send(e);
        if let Some(r) = &self.repaint {
            r();
        }
    }
}

#[derive(Default)]
struct Shared {
    client: Option<AdminClient>,
    actor: String,
    policy: Policy,
    active: Option<Color>,
    recorder: Option<Arc<Recorder>>,
    /// How the running (or last) load samples, and its rate.
    sampling: Option<(Sampling, f64)>,
    load: Option<Control>,
    /// Metrics must be recomputed (load running, or just stopped).
    metrics_dirty: bool,
    rollout: Option<mpsc::UnboundedSender<UserCmd>>,
    rollout_base: Option<Snapshot>,
    /// The running load's per-location tracker (changes are marked on it).
    locations: Option<Arc<greenlight_engine::locations::LocationTracker>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Timing of the background loops.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub state: Duration,
    pub metrics: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            state: Duration::from_secs(1),
            metrics: Duration::from_millis(500),
        }
    }
}

/// The UI's handle on the worker thread.
pub struct Backend {
    tx: mpsc::UnboundedSender<Request>,
    rx: std::sync::mpsc::Receiver<Event>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Backend {
    /// Starts the worker. `repaint` is called after every event (wakes the UI).
    pub fn start(
        audit: AuditFile,
        intervals: Intervals,
        repaint: Option<Repaint>,
    ) -> std::io::Result<Backend> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dashboard-worker")
            .enable_all()
            .build()?;
        let (tx, mut req_rx) = mpsc::unbounded_channel::<Request>();
        let (ev_tx, rx) = std::sync::mpsc::channel();
        let sink = Sink { tx: ev_tx, repaint };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let refresh = Arc::new(Notify::new());

        runtime.spawn(state_poller(
            shared.clone(),
            sink.clone(),
            refresh.clone(),
            intervals.state,
        ));
        runtime.spawn(metrics_sampler(
            shared.clone(),
            sink.clone(),
            intervals.metrics,
        ));
        runtime.spawn(async move {
            while let Some(req) = req_rx.recv().await {
                handle(req, &shared, &sink, &refresh, &audit);
            }
        });
        Ok(Backend {
            tx,
            rx,
            runtime: Some(runtime),
        })
    }

    pub fn send(&self, r: Request) {
        let _ = self.tx.send(r);
    }

    /// Everything the worker reported since the last call.
    pub fn drain(&self) -> Vec<Event> {
        self.rx.try_iter().collect()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

fn handle(
    req: Request,
    shared: &Arc<Mutex<Shared>>,
    sink: &Sink,
    refresh: &Arc<Notify>,
    audit: &AuditFile,
) {
    match req {
        Request::Connect {
            edge,
            token,
            actor,
            options,
        } => match AdminClient::with_options(&edge, token, &options) {
            Ok(c) => {
                let mut s = lock(shared);
                s.client = Some(c);
                s.actor = actor;
                drop(s);
                refresh.notify_one();
            }
            Err(e) => {
                lock(shared).client = None;
                sink.send(Event::State(Err(e)));
            }
        },
        Request::SetPolicy(p) => {
            let mut s = lock(shared);
            s.policy = p;
            s.metrics_dirty = true;
        }
        Request::Refresh => refresh.notify_one(),
        Request::Change {
            op,
            expected_epoch,
            reason,
            plan,
        } => {
            let (client, actor) = {
                let s = lock(shared);
                (s.client.clone(), s.actor.clone())
            };
            let Some(client) = client else {
                sink.send(Event::Error("no edge is configured".into()));
                return;
            };
            let sink = sink.clone();
            let refresh = refresh.clone();
            let audit = audit.clone();
            let locations = lock(shared).locations.clone();
            tokio::spawn(async move {
                let e = Some(expected_epoch);
                let result = op
                    .execute(&client, &actor, expected_epoch, reason.clone(), plan)
                    .await;
                if let (Ok(view), Some(t)) = (&result, &locations) {
                    t.mark_change(view.state.epoch);
                }
                let entry = AuditEntry::for_change(&actor, op.name(), e, &result, &reason);
                let _ = audit.append(&entry);
                sink.send(Event::Audit(entry));
                sink.send(Event::Changed { op, result });
                refresh.notify_one();
            });
        }
        Request::StartLoad(l) => start_load(l, shared, sink, audit),
        Request::StopLoad => {
            if let Some(c) = lock(shared).load.take() {
                c.stop();
            }
        }
        Request::SetRate(r) => {
            if let Some(c) = &lock(shared).load {
                c.rate.set(Some(r));
            }
        }
        Request::StartRollout(plan) => start_rollout(plan, shared, sink, audit),
        Request::Rollout(cmd) => {
            if let Some(tx) = &lock(shared).rollout {
                let _ = tx.send(cmd);
            }
        }
    }
}

fn start_load(l: LoadRequest, shared: &Arc<Mutex<Shared>>, sink: &Sink, audit: &AuditFile) {
    let recorder = Recorder::new();
    let control = Control::default();
    let actor = {
        let mut s = lock(shared);
        if s.load.is_some() {
            drop(s);
            sink.send(Event::Error("load is already running".into()));
            return;
        }
        // Claimed now: a second Start while the preview is probed is refused.
        s.load = Some(control.clone());
        s.actor.clone()
    };
    let shared = shared.clone();
    let sink = sink.clone();
    let audit = audit.clone();
    tokio::spawn(async move {
        let target = l.url.clone();
        let rate = l.rate;
        let configured = synthetic::configure(SyntheticLoad {
            url: l.url,
            rate: l.rate,
            users: l.users,
            scenario: l.scenario,
            duration: l.duration,
            preview: l.preview,
            weighted_share: l.weighted_share,
            tls: l.tls,
        })
        .await;
        let (cfg, sampling) = match configured {
            Ok(c) => c,
            Err(m) => {
                lock(&shared).load = None;
                sink.send(Event::Load(LoadStatus {
                    running: false,
                    target,
                    rate,
                    message: Some(m),
                    sampling: None,
                }));
                return;
            }
        };
        {
            let mut s = lock(&shared);
            s.recorder = Some(recorder.clone());
            s.locations = Some(cfg.locations.clone());
            s.sampling = Some((sampling.clone(), rate));
            s.metrics_dirty = true;
        }
        let status = LoadStatus {
            running: true,
            target: target.clone(),
            rate,
            message: None,
            sampling: Some(sampling.clone()),
        };
        sink.send(Event::Load(status.clone()));
        let e = AuditEntry::info(
            &actor,
            "load start",
            None,
            format!("{target} at {rate} rps; {}", sampling.describe()),
        );
        let _ = audit.append(&e);
        sink.send(Event::Audit(e));
        let end = engine::run(cfg, recorder, control).await;
        {
            let mut s = lock(&shared);
            s.load = None;
            s.metrics_dirty = true;
        }
        let message = match end {
            Ok(e) => format!(
                "stopped after {:.0} s, {} requests sent",
                e.elapsed.as_secs_f64(),
                e.sent
            ),
            Err(e) => format!("load failed: {e}"),
        };
        sink.send(Event::Load(LoadStatus {
            running: false,
            message: Some(message),
            ..status
        }));
    });
}

fn start_rollout(plan: RolloutPlan, shared: &Arc<Mutex<Shared>>, sink: &Sink, audit: &AuditFile) {
    let (client, recorder, sampling) = {
        let s = lock(shared);
        if s.rollout.is_some() {
            drop(s);
            sink.send(Event::Error("a rollout is already running".into()));
            return;
        }
        (s.client.clone(), s.recorder.clone(), s.sampling.clone())
    };
    let Some(client) = client else {
        sink.send(Event::Error("no edge is configured".into()));
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (sampling, rate) = sampling.unwrap_or((
        Sampling::Weighted {
            why: "no load is running".into(),
        },
        0.0,
    ));
    let mut evidence = Evidence::since_now(recorder, sampling, rate).with_judge(plan.judge);
    {
        let mut s = lock(shared);
        s.rollout = Some(tx);
        s.rollout_base = evidence.base().cloned();
        s.metrics_dirty = true;
    }
    let shared = shared.clone();
    let sink = sink.clone();
    let audit = audit.clone();
    tokio::spawn(async move {
        let mut ctrl = Controller::new(plan);
        let limit = ctrl.plan().max_duration() * 2 + Duration::from_secs(600);
        let ev_sink = sink.clone();
        let base_shared = shared.clone();
        let locations = lock(&shared).locations.clone();
        drive(
            &mut ctrl,
            &client,
            &mut evidence,
            &mut rx,
            &audit,
            limit,
            move |e| match e {
                DriveEvent::Status(s) => ev_sink.send(Event::Rollout(s)),
                DriveEvent::Audit(a) => ev_sink.send(Event::Audit(a)),
                DriveEvent::State(v) => ev_sink.send(Event::State(Ok(v))),
                DriveEvent::StateError(e) => ev_sink.send(Event::State(Err(e))),
                DriveEvent::StepEvidence(base) => {
                    let mut s = lock(&base_shared);
                    s.rollout_base = base.map(|b| *b);
                    s.metrics_dirty = true;
                }
                // Already a line of the rollout's log.
                DriveEvent::RoutingCheck(_) => {}
                DriveEvent::Changed { epoch } => {
                    if let Some(t) = &locations {
                        t.mark_change(epoch);
                    }
                }
            },
        )
        .await;
        sink.send(Event::Rollout(ctrl.status(Duration::ZERO)));
        let mut s = lock(&shared);
        s.rollout = None;
        s.metrics_dirty = true;
    });
}

async fn state_poller(
    shared: Arc<Mutex<Shared>>,
    sink: Sink,
    refresh: Arc<Notify>,
    every: Duration,
) {
    // The epoch whose history was last read.
    let mut history_of = None;
    loop {
        let client = lock(&shared).client.clone();
        if let Some(c) = client {
            let r = c.state().await;
            let epoch = r.as_ref().ok().map(|v| v.state.epoch);
            if let Ok(v) = &r {
                let mut s = lock(&shared);
                if s.active != Some(v.state.active) {
                    s.active = Some(v.state.active);
                    s.metrics_dirty = true;
                }
            }
            sink.send(Event::State(r));
            // Real users' counts, for the panel beside the synthetic
            // figures (an edge without the route shows none).
            if let Ok(m) = c.metrics().await {
                sink.send(Event::RealUsers(m));
            }
            // Workers edges only (a Spin edge answers 404: none shown).
            if let Ok(r) = c.replicas().await {
                sink.send(Event::Replicas(r));
            }
            if epoch.is_some() && epoch != history_of {
                if let Ok(h) = c.history().await {
                    history_of = epoch;
                    sink.send(Event::History(h));
                }
            }
        }
        tokio::select! {
            _ = refresh.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn metrics_sampler(shared: Arc<Mutex<Shared>>, sink: Sink, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let job = {
            let mut s = lock(&shared);
            let dirty = s.metrics_dirty || s.load.is_some();
            s.metrics_dirty = false;
            match (&s.recorder, dirty) {
                (Some(r), true) => Some((
                    r.clone(),
                    s.rollout.as_ref().and(s.rollout_base.clone()),
                    s.policy.clone(),
                    s.active.unwrap_or(Color::Blue),
                    s.sampling.as_ref().is_some_and(|(m, _)| m.is_comparison()),
                    s.locations.clone(),
                )),
                _ => None,
            }
        };
        if let Some((rec, base, policy, active, comparison, locations)) = job {
            // Snapshots and statistics are CPU work: keep them off the reactor.
            let view = tokio::task::spawn_blocking(move || {
                let snap = rec.snapshot();
                let mut view = metrics::build(&snap, base.as_ref(), &policy, active, comparison);
                view.locations = locations
                    .map(|t| t.summary())
                    .filter(|l| !l.locations.is_empty());
                view
            })
            .await;
            if let Ok(v) = view {
                sink.send(Event::Metrics(Arc::new(v)));
            }
        }
    }
}
