//! `greenlight-spin-host`: a small Spin-compatible host for greenlight's Spin
//! component, built on wasmtime. **Test tooling for local runs and CI;
//! production uses Spin.** The Spin CLI cannot be installed on the build
//! machines, so this host provides just what the component imports:
//!
//! - `wasi:http/handler@0.3.0` served over HTTP/1.1 on `--listen`, with
//!   instances reused as Spin (and `wasmtime serve`) reuse WASIp3 instances:
//!   up to 128 requests per instance (`--max-instance-reuse-count`), up to 16
//!   of them at once (`--max-instance-concurrent-reuse-count`), an idle
//!   instance dropped after 5 s (`--idle-instance-timeout-ms`); the dispatch
//!   is wasmtime-wasi-http's `handler::ProxyHandler`, the one `wasmtime serve`
//!   uses. `--max-instance-reuse-count 1` gives a fresh instance per request.
//!   Instances come from wasmtime's pooling allocator (Spin's default) when
//!   the machine can reserve its address space;
//! - `wasi:http/client` outbound HTTP, refused (`HTTP-request-denied`, as
//!   Spin) unless the URL matches an `--allow-outbound` pattern
//!   (`scheme://host:port`, each part may be `*`);
//! - `spin:key-value@3.0.0`: in memory, shared by all requests, one map per
//!   store label (`--kv-store`, default `default`), optionally loaded from and
//!   saved to `--kv-file` (JSON) after every write, and reloaded from it when
//!   another process replaces the file (tests plant documents that way);
//! - `spin:variables@3.0.0`: from `--var name=value`, `--vars-file` (lines of
//!   `name=value`, `#` comments) and `SPIN_VARIABLE_<NAME>` environment
//!   variables (as Spin's environment provider), later sources winning.
//!
//! It does not read `spin.toml` (routes, templates); the manifest check in
//! `tests/tests/spin_manifest.rs` keeps the two in step.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt as _, Full};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::component::{Accessor, Component, HasData, Linker, Resource, ResourceTable};
use wasmtime::component::{FutureReader, GuestTaskId, StreamReader};
use wasmtime::error::Context as _;
use wasmtime::{bail, format_err};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{self, ProxyHandler, ProxyPre, ShouldAccept, WorkerStatus};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

mod spin {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "spin-imports",
        imports: { default: async | store | trappable },
        with: { "spin:key-value/key-value.store": super::KvStore },
    });
}
use spin::spin::key_value::key_value as kv;
use spin::spin::variables::variables as vars;

const USAGE: &str = "usage: greenlight-spin-host <component.wasm> [--listen 127.0.0.1:3000] \
[--var name=value]... [--vars-file FILE] [--kv-file FILE] [--kv-store LABEL]... \
[--allow-outbound scheme://host:port]... [--max-instance-reuse-count N] \
[--max-instance-concurrent-reuse-count N] [--idle-instance-timeout-ms MS]";

/// Spin's (and `wasmtime serve`'s) defaults for WASIp3 components.
const DEFAULT_MAX_INSTANCE_REUSE_COUNT: usize = 128;
const DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT: usize = 16;
const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(5);

/// How instances are reused.
#[derive(Clone, Copy)]
struct Reuse {
    /// Requests one instance serves before it is dropped (1: fresh instances).
    max: usize,
    /// Requests one instance serves at once.
    concurrent: usize,
    /// How long an idle instance is kept for the next request.
    idle: Duration,
}

/// Everything requests share.
struct Shared {
    variables: HashMap<String, String>,
    /// label → key → value
    kv: Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>,
    kv_file: Option<std::path::PathBuf>,
    /// The `--kv-file` as last loaded or saved, to notice outside changes.
    kv_file_seen: Mutex<Option<FileStamp>>,
    allowed: Vec<[String; 3]>,
}

/// What tells one version of a file from another: a writer that renames a
/// new file into place changes the inode even within one mtime tick.
type FileStamp = (std::time::SystemTime, u64, u64);

fn file_stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Per-instance store data (one store per instance).
struct Ctx {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Hooks,
    shared: Arc<Shared>,
}

/// An open key-value store: its label.
pub struct KvStore(String);

struct Hooks(Arc<Shared>);

#[tokio::main]
async fn main() -> wasmtime::Result<()> {
    let (component_path, listen, shared, reuse) = parse_args()?;
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    // Like Spin: instances from a pool of preallocated slots. It reserves a
    // lot of address space (not memory); fall back if the machine refuses.
    config.allocation_strategy(InstanceAllocationStrategy::pooling());
    let engine = Engine::new(&config).or_else(|e| {
        eprintln!("greenlight-spin-host: no pooling allocator ({e:#}), allocating on demand");
        config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        Engine::new(&config)
    })?;
    let component = Component::from_file(&engine, &component_path)
        .with_context(|| format!("loading {component_path}"))?;
    let mut linker = Linker::<Ctx>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    spin::SpinImports::add_to_linker::<Ctx, SpinHost>(&mut linker, |c| c)?;
    let pre = ProxyPre::P3(ServicePre::new(linker.instantiate_pre(&component)?)?);
    let handler = ProxyHandler::new(Host {
        engine,
        pre,
        shared,
        reuse,
    });
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "greenlight-spin-host: serving {component_path} on http://{listen} \
         (instances serve up to {} requests, {} at once)",
        reuse.max, reuse.concurrent
    );
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                let handler = handler.clone();
                // Like Spin: the caller's address, set by the host (any copy
                // the client sent is replaced).
                if let Ok(v) = hyper::header::HeaderValue::from_str(&peer.to_string()) {
                    req.headers_mut().insert("spin-client-addr", v);
                }
                async move {
                    Ok::<_, std::convert::Infallible>(match serve(&handler, req).await {
                        Ok(resp) => resp,
                        Err(e) => {
                            eprintln!("greenlight-spin-host: request failed: {e:#}");
                            error_response(&format!("{e:#}"))
                        }
                    })
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type HostBody = UnsyncBoxBody<Bytes, BoxError>;

fn error_response(msg: &str) -> hyper::Response<HostBody> {
    let mut resp = hyper::Response::new(
        Full::new(Bytes::from(format!("greenlight-spin-host: {msg}\n")))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
    resp
}

/// Hands one request to an instance (an idle or not yet full one, else a new
/// one). The response body streams from the instance's store, which its
/// worker task keeps running until the body is done.
async fn serve(
    handler: &ProxyHandler<Host>,
    req: hyper::Request<hyper::body::Incoming>,
) -> wasmtime::Result<hyper::Response<HostBody>> {
    let mut req = req.map(|b| {
        LingeringBody(Some(b))
            .map_err(wasmtime_wasi_http::Error::from)
            .boxed_unsync()
    });
    strip_connection_listed(req.headers_mut());
    let resp = handler.handle((), req).await?;
    Ok(resp.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
}

/// The request body as the guest gets it. A guest that answers without
/// reading all of it (a 401 to an upload) would otherwise make hyper close
/// the connection mid-upload, and the client may never read that answer.
/// Like a server's lingering close, what the guest left is read and thrown
/// away in the background (at most 64 MiB or 10 s).
struct LingeringBody(Option<hyper::body::Incoming>);

impl hyper::body::Body for LingeringBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

impl Drop for LingeringBody {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if hyper::body::Body::is_end_stream(&body) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, |d| d.len());
                    if read > 64 << 20 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        });
    }
}

/// wasmtime hides `Connection` from the guest (a forbidden header), so the
/// component cannot know which extra names it lists: as an HTTP intermediary
/// must (RFC 9110 7.6.1), the host removes them, as Cloudflare's front end does.
fn strip_connection_listed(headers: &mut http::HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in listed {
        headers.remove(name.as_str());
    }
}

// ---- instances --------------------------------------------------------------

/// What [`ProxyHandler`] needs to start instances.
struct Host {
    engine: Engine,
    pre: ProxyPre<Ctx>,
    shared: Arc<Shared>,
    reuse: Reuse,
}

impl handler::HandlerState for Host {
    type StoreData = Ctx;
    type WorkerExpiration = IdleTimeout;
    type WorkerState = Limits;

    async fn instantiate(&self) -> wasmtime::Result<handler::Instance<Ctx, IdleTimeout, Limits>> {
        let mut store = Store::new(
            &self.engine,
            Ctx {
                table: ResourceTable::new(),
                wasi: WasiCtx::builder().inherit_stderr().build(),
                http: WasiHttpCtx::new(),
                hooks: Hooks(self.shared.clone()),
                shared: self.shared.clone(),
            },
        );
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(handler::Instance {
            store,
            proxy,
            view: <Ctx as WasiHttpView>::http,
            expiration: IdleTimeout {
                after: self.reuse.idle,
                timer: Box::pin(tokio::time::sleep(self.reuse.idle)),
                since: None,
            },
            state: Limits(self.reuse),
        })
    }
}

/// How many requests an instance takes; no per-request deadline (the
/// callers' own timeouts apply).
struct Limits(Reuse);

impl handler::WorkerState for Limits {
    type StoreData = Ctx;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.0.max {
            ShouldAccept::Never
        } else if concurrent >= self.0.concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _: StoreContextMut<'_, Ctx>,
        (): (),
        _: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<Ctx>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            eprintln!("greenlight-spin-host: instance dropped after an error: {e:#}");
        }
        drop(store);
    }
}

/// Drops an instance that has been idle for `after`.
struct IdleTimeout {
    after: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The idle period the timer is set for.
    since: Option<Instant>,
}

impl handler::WorkerExpiration for IdleTimeout {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        if status != WorkerStatus::Idle {
            return Poll::Pending;
        }
        if self.since != Some(start) {
            self.since = Some(start);
            let deadline = tokio::time::Instant::from_std(start + self.after);
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx)
    }
}

// ---- outbound HTTP ---------------------------------------------------------

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let allowed = self.0.allowed.iter().any(|[s, h, p]| {
            (s == "*" || *s == scheme)
                && (h == "*" || *h == host)
                && (p == "*" || *p == port.to_string())
        });
        if !allowed {
            eprintln!("greenlight-spin-host: outbound {scheme}://{host}:{port} denied (not in --allow-outbound)");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (resp, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                resp.map(|b| b.boxed_unsync()),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

// ---- WASI plumbing ----------------------------------------------------------

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

// ---- spin:key-value and spin:variables --------------------------------------

struct SpinHost;

impl HasData for SpinHost {
    type Data<'a> = &'a mut Ctx;
}

impl kv::Host for Ctx {}
impl kv::HostStore for Ctx {}
impl vars::Host for Ctx {}

type Acc = Accessor<Ctx, SpinHost>;

/// Runs `f` on the map of the store behind `res`.
fn with_map<R>(
    acc: &Acc,
    res: &Resource<KvStore>,
    f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> R,
) -> wasmtime::Result<(R, Arc<Shared>)> {
    acc.with(|mut a| {
        let ctx = a.get();
        let label = ctx.table.get(res)?.0.clone();
        let shared = ctx.shared.clone();
        reload_kv_if_changed(&shared);
        let mut all = shared
            .kv
            .lock()
            .map_err(|_| format_err!("kv lock poisoned"))?;
        let map = all.entry(label).or_default();
        let r = f(map);
        drop(all);
        Ok((r, shared))
    })
}

impl kv::HostStoreWithStore<Ctx> for SpinHost {
    async fn drop(acc: &Acc, rep: Resource<KvStore>) -> wasmtime::Result<()> {
        acc.with(|mut a| a.get().table.delete(rep))?;
        Ok(())
    }

    async fn open(
        acc: &Acc,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, kv::Error>> {
        acc.with(|mut a| {
            let ctx = a.get();
            reload_kv_if_changed(&ctx.shared);
            let known = ctx
                .shared
                .kv
                .lock()
                .map(|m| m.contains_key(&label))
                .unwrap_or(false);
            if !known {
                return Ok(Err(kv::Error::NoSuchStore));
            }
            Ok(Ok(ctx.table.push(KvStore(label))?))
        })
    }

    async fn get(
        acc: &Acc,
        s: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        Ok(Ok(with_map(acc, &s, |m| m.get(&key).cloned())?.0))
    }

    async fn set(
        acc: &Acc,
        s: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let ((), shared) = with_map(acc, &s, |m| {
            m.insert(key, value);
        })?;
        Ok(save_kv(&shared).map_err(|e| kv::Error::Other(format!("{e:#}"))))
    }

    async fn delete(
        acc: &Acc,
        s: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let (_, shared) = with_map(acc, &s, |m| m.remove(&key))?;
        Ok(save_kv(&shared).map_err(|e| kv::Error::Other(format!("{e:#}"))))
    }

    async fn exists(
        acc: &Acc,
        s: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        Ok(Ok(with_map(acc, &s, |m| m.contains_key(&key))?.0))
    }

    async fn get_keys(
        acc: &Acc,
        s: Resource<KvStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), kv::Error>>)> {
        let (keys, _) = with_map(acc, &s, |m| m.keys().cloned().collect::<Vec<_>>())?;
        acc.with(|mut a| {
            let keys = StreamReader::new(&mut a, keys)?;
            let done = FutureReader::new(&mut a, async { wasmtime::error::Ok(Ok(())) })?;
            Ok((keys, done))
        })
    }
}

impl vars::HostWithStore<Ctx> for SpinHost {
    async fn get(acc: &Acc, name: String) -> wasmtime::Result<Result<String, vars::Error>> {
        let valid = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Ok(Err(vars::Error::InvalidName(name)));
        }
        Ok(acc.with(|mut a| match a.get().shared.variables.get(&name) {
            Some(v) => Ok(v.clone()),
            None => Err(vars::Error::Undefined(format!(
                "no variable named {name:?}"
            ))),
        }))
    }
}

/// Writes all stores to `--kv-file` (write to a temporary file, then rename).
fn save_kv(shared: &Shared) -> wasmtime::Result<()> {
    let Some(path) = &shared.kv_file else {
        return Ok(());
    };
    let json = {
        let all = shared
            .kv
            .lock()
            .map_err(|_| format_err!("kv lock poisoned"))?;
        let doc: BTreeMap<&String, BTreeMap<&String, serde_json::Value>> = all
            .iter()
            .map(|(label, m)| {
                (
                    label,
                    m.iter().map(|(k, v)| (k, kv_value_to_json(v))).collect(),
                )
            })
            .collect();
        serde_json::to_string_pretty(&doc)?
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Ok(mut seen) = shared.kv_file_seen.lock() {
        *seen = file_stamp(path);
    }
    Ok(())
}

/// Reads `--kv-file` into `shared.kv` when the file is not the one last
/// loaded or saved, i.e. another process replaced it. Its stores replace
/// the ones in memory (labels it lacks keep existing, empty); a file that
/// does not parse is reported and ignored.
fn reload_kv_if_changed(shared: &Shared) {
    let Some(path) = &shared.kv_file else {
        return;
    };
    let Ok(mut seen) = shared.kv_file_seen.lock() else {
        return;
    };
    let stamp = file_stamp(path);
    if stamp.is_none() || stamp == *seen {
        return;
    }
    *seen = stamp;
    match read_kv_file(path) {
        Ok(stores) => {
            if let Ok(mut all) = shared.kv.lock() {
                all.values_mut().for_each(BTreeMap::clear);
                all.extend(stores);
            }
        }
        Err(e) => eprintln!(
            "greenlight-spin-host: not reloading {}: {e:#}",
            path.display()
        ),
    }
}

type Stores = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

fn read_kv_file(path: &std::path::Path) -> wasmtime::Result<Stores> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    doc.into_iter()
        .map(|(label, entries)| {
            let map = entries
                .into_iter()
                .map(|(k, v)| Ok((k, kv_value_from_json(v)?)))
                .collect::<wasmtime::Result<BTreeMap<_, _>>>()?;
            Ok((label, map))
        })
        .collect()
}

/// UTF-8 values are stored as strings (readable), others as byte arrays.
fn kv_value_to_json(v: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(v) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::from(v.to_vec()),
    }
}

fn kv_value_from_json(v: serde_json::Value) -> wasmtime::Result<Vec<u8>> {
    match v {
        serde_json::Value::String(s) => Ok(s.into_bytes()),
        other => Ok(serde_json::from_value(other)?),
    }
}

// ---- command line -----------------------------------------------------------

fn parse_args() -> wasmtime::Result<(String, String, Arc<Shared>, Reuse)> {
    let mut args = std::env::args().skip(1);
    let (mut component, mut listen) = (None, "127.0.0.1:3000".to_string());
    let (mut cli_vars, mut vars_files, mut kv_file, mut labels, mut allowed) =
        (Vec::new(), Vec::new(), None, Vec::new(), Vec::new());
    let mut reuse = Reuse {
        max: DEFAULT_MAX_INSTANCE_REUSE_COUNT,
        concurrent: DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT,
        idle: DEFAULT_IDLE_INSTANCE_TIMEOUT,
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--listen" => listen = value("--listen")?,
            "--var" => cli_vars.push(value("--var")?),
            "--vars-file" => vars_files.push(value("--vars-file")?),
            "--kv-file" => kv_file = Some(std::path::PathBuf::from(value("--kv-file")?)),
            "--kv-store" => labels.push(value("--kv-store")?),
            "--allow-outbound" => allowed.push(parse_allowed(&value("--allow-outbound")?)?),
            "--max-instance-reuse-count" => reuse.max = count(&arg, &value(&arg)?)?,
            "--max-instance-concurrent-reuse-count" => {
                reuse.concurrent = count(&arg, &value(&arg)?)?
            }
            "--idle-instance-timeout-ms" => {
                reuse.idle = Duration::from_millis(count(&arg, &value(&arg)?)? as u64)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => bail!("unknown flag {s}\n{USAGE}"),
            _ if component.is_none() => component = Some(arg),
            _ => bail!("more than one component given\n{USAGE}"),
        }
    }
    let component = component.with_context(|| format!("no component given\n{USAGE}"))?;
    // Lowest precedence first: files, then the environment, then --var.
    let mut variables = HashMap::new();
    let mut set = |pair: &str, origin: &str| -> wasmtime::Result<()> {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("{origin}: expected name=value, got {pair:?}"))?;
        variables.insert(k.trim().to_lowercase(), v.to_string());
        Ok(())
    };
    for file in &vars_files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            set(line, file)?;
        }
    }
    for (k, v) in std::env::vars() {
        if let Some(name) = k.strip_prefix("SPIN_VARIABLE_") {
            set(&format!("{name}={v}"), "environment")?;
        }
    }
    for pair in &cli_vars {
        set(pair, "--var")?;
    }
    if labels.is_empty() {
        labels.push("default".to_string());
    }
    let mut kv: Stores = labels.into_iter().map(|l| (l, BTreeMap::new())).collect();
    let mut kv_file_seen = None;
    if let Some(path) = kv_file.as_ref().filter(|p| p.exists()) {
        kv_file_seen = file_stamp(path);
        for (label, entries) in read_kv_file(path)? {
            kv.entry(label).or_default().extend(entries);
        }
    }
    let shared = Shared {
        variables,
        kv: Mutex::new(kv),
        kv_file,
        kv_file_seen: Mutex::new(kv_file_seen),
        allowed,
    };
    Ok((component, listen, Arc::new(shared), reuse))
}

/// A positive number for `flag`.
fn count(flag: &str, v: &str) -> wasmtime::Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} {v:?}: expected a positive number\n{USAGE}"),
    }
}

/// `scheme://host[:port]` with `*` wildcards; no port means the scheme's default.
fn parse_allowed(spec: &str) -> wasmtime::Result<[String; 3]> {
    let (scheme, rest) = spec
        .split_once("://")
        .with_context(|| format!("--allow-outbound {spec:?}: expected scheme://host:port"))?;
    // An origin URL may carry a path: only scheme, host and port matter.
    let rest = rest.split('/').next().unwrap_or_default();
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (
            rest.to_string(),
            match scheme {
                "https" => "443".to_string(),
                "http" => "80".to_string(),
                _ => "*".to_string(),
            },
        ),
    };
    if host.is_empty() || port.is_empty() {
        bail!("--allow-outbound {spec:?}: expected scheme://host:port");
    }
    Ok([scheme.to_string(), host, port])
}
