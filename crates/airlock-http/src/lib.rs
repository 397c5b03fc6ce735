//! `airlock serve`: the deployment gate, status and metrics over HTTP. The only
//! crate that knows HTTP; it asks `airlock-exec` the same questions the CLI does
//! and never runs a migration.
//!
//! | route | answers |
//! |---|---|
//! | `GET /` | the page: every environment at a glance (`page.rs`) |
//! | `GET /env/NAME`, `GET /env/NAME/migrations/VERSION` | an environment's page, a migration's page |
//! | `GET /events?env=NAME` | server-sent events: `change` when what a page shows changed |
//! | `GET /healthz` | 200 while the server runs (it does not touch a database) |
//! | `GET /status?env=NAME` | 200 with the status JSON; 503 when the database cannot be read |
//! | `GET /gate?require=V\|latest&env=NAME` | 200 with the gate JSON when satisfied, 503 with it otherwise |
//! | `GET /metrics` | Prometheus/OpenMetrics text for every environment |
//!
//! Each environment has one read-only connection, kept between requests and
//! opened again after any failure (a database that went away is answered with
//! 503 and the reason, and is read again once it is back). Requests never queue
//! a read each: a request is answered from the newest read that started no more
//! than `max_age` before it arrived, and concurrent requests share one read.
//! With a token (`Config::token`), every route but `/healthz` asks for it
//! (`auth.rs`).

mod auth;
mod metrics;
mod page;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_core::Version;
use airlock_exec::{Assessment, ExecError, GateReport, HistoryEntry, Options, PlanReport, Requirement, Watcher};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// One environment the server answers for.
pub struct Environment {
    /// Its name in `?env=NAME` and in metric labels.
    pub name: String,
    /// How to reach it, or why its configuration is unusable (answered as 503).
    pub options: Result<Options, String>,
}

/// What the server needs.
pub struct Config {
    /// The environments, in the order `/metrics` lists them.
    pub environments: Vec<Environment>,
    /// The environment answered when a request names none; None means `?env=` is required.
    pub default: Option<String>,
    /// How old a read may be when it answers a request. Defaults to 250 ms in the CLI; zero
    /// means every request waits for a read that started after it arrived.
    pub max_age: Duration,
    /// How long one read of a database (connecting included) may take before it counts as failed.
    pub read_timeout: Duration,
    /// The secret every request but `/healthz` must carry (as a bearer token,
    /// or as the password of basic authentication); None lets anyone read.
    pub token: Option<String>,
    /// The fleets of airlock.toml, each with its members or why they could
    /// not be listed.
    pub fleets: Vec<Fleet>,
}

/// A fleet `serve` shows: `/fleet/NAME` (its page) and `/fleets/NAME`
/// (its status as JSON).
pub struct Fleet {
    /// Its name.
    pub name: String,
    /// Its members, or why they could not be listed.
    pub members: Result<Vec<airlock_exec::Member>, String>,
    /// Members read at the same time.
    pub parallel: usize,
}

/// A fleet's members and its newest status, read at most every
/// [`FLEET_MAX_AGE`]: asking every member is heavier than one database.
pub(crate) struct FleetState {
    pub(crate) name: String,
    members: Result<Arc<Vec<airlock_exec::Member>>, String>,
    parallel: usize,
    /// Held while the members are read: one reading at a time.
    reading: tokio::sync::Mutex<()>,
    /// The newest status and when it was read; never held across a read.
    newest: Mutex<Option<(Instant, Arc<airlock_exec::FleetStatusReport>)>>,
}

/// How old a fleet's status may be when it answers.
const FLEET_MAX_AGE: Duration = Duration::from_secs(5);

impl FleetState {
    /// The fleet's status, at most [`FLEET_MAX_AGE`] old (one reading at a time).
    pub(crate) async fn status(&self) -> Result<Arc<airlock_exec::FleetStatusReport>, String> {
        let members = self.members.as_ref().map_err(Clone::clone)?;
        let fresh = || {
            self.newest
                .lock()
                .ok()
                .and_then(|n| n.as_ref().filter(|(at, _)| at.elapsed() < FLEET_MAX_AGE).map(|(_, r)| Arc::clone(r)))
        };
        if let Some(report) = fresh() {
            return Ok(report);
        }
        let _reading = self.reading.lock().await;
        // Read by the request this one waited for.
        if let Some(report) = fresh() {
            return Ok(report);
        }
        let report = Arc::new(airlock_exec::fleet_status(&self.name, members, self.parallel).await);
        if let Ok(mut newest) = self.newest.lock() {
            *newest = Some((Instant::now(), Arc::clone(&report)));
        }
        Ok(report)
    }

    /// The status as last read, if it was; never waits for a reading.
    pub(crate) fn last(&self) -> Option<Arc<airlock_exec::FleetStatusReport>> {
        self.newest.lock().ok()?.as_ref().map(|(_, r)| Arc::clone(r))
    }
}

/// One read of an environment: when it started and ended, and what it found.
#[derive(Clone)]
pub(crate) struct Read {
    started: Instant,
    finished: Instant,
    pub(crate) answer: Arc<Result<Assessment, String>>,
    /// A hash of what a page shows of it, made once for every page and stream the read answers.
    digest: Arc<std::sync::OnceLock<u64>>,
}

impl Read {
    fn new(started: Instant, answer: Result<Assessment, String>) -> Read {
        Read { started, finished: Instant::now(), answer: Arc::new(answer), digest: Default::default() }
    }

    /// A hash of what a page shows of this read (its status, audit entries and backups, or why it failed).
    pub(crate) fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        *self.digest.get_or_init(|| {
            let mut hasher = std::hash::DefaultHasher::new();
            match self.answer.as_ref() {
                Ok(a) => {
                    serde_json::to_string(&a.status).unwrap_or_default().hash(&mut hasher);
                    serde_json::to_string(&a.audit).unwrap_or_default().hash(&mut hasher);
                    // The page says whether each backup's file is still there.
                    serde_json::to_string(&a.backups).unwrap_or_default().hash(&mut hasher);
                    serde_json::to_string(&a.drift).unwrap_or_default().hash(&mut hasher);
                }
                Err(why) => why.hash(&mut hasher),
            }
            hasher.finish()
        })
    }

    /// Whether this read may answer a request that arrived at `arrived`: it
    /// started at most `max_age` before, or it failed after the request arrived
    /// (the database was unreachable while the request waited).
    fn answers(&self, arrived: Instant, max_age: Duration) -> bool {
        arrived.saturating_duration_since(self.started) <= max_age || (self.answer.is_err() && self.finished >= arrived)
    }
}

/// A plan of an environment's pending migrations, shared by the pages that
/// show it; its generation tells one plan from the next.
pub(crate) type PlanAnswer = (u64, Arc<Result<PlanReport, String>>);

/// An environment's plans: the newest made, and whether one is being made.
#[derive(Default)]
struct Plans {
    /// The newest plan, and the pending files it was made for.
    made: Option<(String, Instant, PlanAnswer)>,
    /// A plan is being made now (one at a time, per environment).
    making: bool,
    /// Plans made so far.
    generation: u64,
}

/// How old a plan may be when a page is loaded before it is made again
/// (shown meanwhile): its data checks and row estimates move with the data.
const PLAN_MAX_AGE: Duration = Duration::from_secs(60);
/// How long making one plan may take.
const PLAN_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Env {
    pub(crate) name: String,
    options: Arc<Result<Options, String>>,
    /// Held while reading, so that concurrent requests share one read.
    watcher: Arc<tokio::sync::Mutex<Option<Watcher>>>,
    last: Arc<Mutex<Option<Read>>>,
    plans: Arc<Mutex<Plans>>,
    /// Told each time a plan is made.
    planned: Arc<tokio::sync::watch::Sender<()>>,
}

fn fresh(last: &Mutex<Option<Read>>, arrived: Instant, max_age: Duration) -> Option<Read> {
    let last = last.lock().unwrap_or_else(|e| e.into_inner());
    last.as_ref().filter(|r| r.answers(arrived, max_age)).cloned()
}

impl Env {
    /// The newest read that may answer a request that arrived at `arrived`,
    /// reading now if there is none. The read runs in a task of its own: a
    /// client that hangs up does not cut it off, and it is kept for the next request.
    async fn read(&self, arrived: Instant, max_age: Duration, timeout: Duration) -> Read {
        if let Some(read) = fresh(&self.last, arrived, max_age) {
            return read;
        }
        let (watcher, last, options) = (Arc::clone(&self.watcher), Arc::clone(&self.last), Arc::clone(&self.options));
        let task = tokio::spawn(async move {
            let mut watcher = watcher.lock_owned().await;
            // Another request may have read while this one waited for the watcher.
            if let Some(read) = fresh(&last, arrived, max_age) {
                return read;
            }
            let started = Instant::now();
            let answer = match options.as_ref() {
                Err(why) => Err(why.clone()),
                Ok(options) => {
                    let watcher = watcher.get_or_insert_with(|| {
                        Watcher::new(options).with_timeout(timeout).with_audit(page::AUDIT_SHOWN)
                    });
                    watcher.assess().await.map_err(|e| e.to_string())
                }
            };
            let read = Read::new(started, answer);
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(read.clone());
            read
        });
        task.await.unwrap_or_else(|e| Read::new(Instant::now(), Err(format!("the read stopped: {e}"))))
    }

    /// The plan of the migrations `assessment` found pending, when one is
    /// on hand for the same pending files; else one is made (read-only, at
    /// most `PLAN_TIMEOUT`, one at a time) and waited for at most `wait`.
    /// None while it is being made: it goes on in its own task and is kept.
    /// With `refresh`, a plan older than `PLAN_MAX_AGE` is made again (the
    /// old one answers meanwhile).
    pub(crate) async fn plan(&self, assessment: &Assessment, wait: Duration, refresh: bool) -> Option<PlanAnswer> {
        let key = page::plan_key(assessment);
        let mut made = self.planned.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
                let on_hand = plans.made.as_ref().filter(|(k, _, _)| *k == key).map(|(_, at, p)| (*at, p.clone()));
                let old = on_hand.as_ref().is_none_or(|(at, _)| refresh && at.elapsed() >= PLAN_MAX_AGE);
                if old && !plans.making {
                    plans.making = true;
                    self.make_plan(key.clone());
                }
                if let Some((_, answer)) = on_hand {
                    return Some(answer);
                }
            }
            // A plan is being made (for these files or older ones): wait for it.
            tokio::time::timeout_at(deadline, made.changed()).await.ok()?.ok()?;
        }
    }

    /// Makes a plan for the pending files `key` names, in a task of its own.
    fn make_plan(&self, key: String) {
        let (plans, planned, options) = (Arc::clone(&self.plans), Arc::clone(&self.planned), Arc::clone(&self.options));
        tokio::spawn(async move {
            let answer = match options.as_ref() {
                Err(why) => Err(why.clone()),
                Ok(options) => match tokio::time::timeout(PLAN_TIMEOUT, airlock_exec::plan(options)).await {
                    Ok(made) => made.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("planning took longer than {} s", PLAN_TIMEOUT.as_secs())),
                },
            };
            {
                let mut plans = plans.lock().unwrap_or_else(|e| e.into_inner());
                plans.generation += 1;
                plans.made = Some((key, Instant::now(), (plans.generation, Arc::new(answer))));
                plans.making = false;
            }
            planned.send_replace(());
        });
    }

    /// Everything recorded of one migration, over the environment's connection.
    pub(crate) async fn migration_events(
        &self,
        version: &Version,
        timeout: Duration,
    ) -> Result<Vec<HistoryEntry>, String> {
        let options = match self.options.as_ref() {
            Ok(options) => options,
            Err(why) => return Err(why.clone()),
        };
        let (watcher, options, version) = (Arc::clone(&self.watcher), options.clone(), version.clone());
        // In a task of its own, like a read: a client that hangs up does not
        // leave the connection in the middle of a transaction.
        let task = tokio::spawn(async move {
            let mut watcher = watcher.lock_owned().await;
            let watcher = watcher
                .get_or_insert_with(|| Watcher::new(&options).with_timeout(timeout).with_audit(page::AUDIT_SHOWN));
            watcher.migration_events(&version, 200).await.map_err(|e: ExecError| e.to_string())
        });
        match tokio::time::timeout(timeout * 2, task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Err(format!("the read stopped: {e}")),
            Err(_) => Err(format!("no answer within {} s", (timeout * 2).as_secs())),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) envs: BTreeMap<String, Env>,
    pub(crate) order: Vec<String>,
    default: Option<String>,
    max_age: Duration,
    pub(crate) read_timeout: Duration,
    /// Becomes true when the server stops: event streams end then.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    token: Option<String>,
    pub(crate) fleets: BTreeMap<String, FleetState>,
}

/// `GET /fleets/NAME`: the fleet's status as `airlock --fleet NAME status
/// --format json` prints it (at most 5 s old); 503 when its members could
/// not be listed, 404 for a fleet airlock.toml does not name.
async fn fleet_status(State(shared): AppState, Path(name): Path<String>) -> Response {
    let Some(fleet) = shared.fleets.get(&name) else {
        let known: Vec<&str> = shared.fleets.keys().map(String::as_str).collect();
        let error = format!(
            "no fleet `{name}` (known: {})",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        );
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": error }))).into_response();
    };
    match fleet.status().await {
        Ok(report) => Json(report.as_ref().clone()).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": why }))).into_response(),
    }
}

/// The routes, ready to serve.
pub fn router(config: Config) -> Router {
    // Never told to stop (the sender is dropped): the router's owner ends it.
    let (_, stopping) = tokio::sync::watch::channel(false);
    routes(config, stopping)
}

fn routes(config: Config, stopping: tokio::sync::watch::Receiver<bool>) -> Router {
    let order = config.environments.iter().map(|e| e.name.clone()).collect();
    let envs = config
        .environments
        .into_iter()
        .map(|e| {
            let env = Env {
                name: e.name.clone(),
                options: Arc::new(e.options),
                watcher: Default::default(),
                last: Default::default(),
                plans: Default::default(),
                planned: Arc::new(tokio::sync::watch::channel(()).0),
            };
            (e.name, env)
        })
        .collect();
    let shared = Arc::new(Shared {
        envs,
        order,
        default: config.default,
        max_age: config.max_age,
        read_timeout: config.read_timeout,
        stopping,
        token: config.token,
        fleets: config
            .fleets
            .into_iter()
            .map(|f| {
                let state = FleetState {
                    name: f.name.clone(),
                    members: f.members.map(Arc::new),
                    parallel: f.parallel,
                    reading: Default::default(),
                    newest: Default::default(),
                };
                (f.name, state)
            })
            .collect(),
    });
    let guarded = Router::new()
        .route("/", get(page::overview))
        .route("/env/{name}", get(page::environment))
        .route("/env/{name}/migrations/{version}", get(page::migration))
        .route("/events", get(page::events))
        .route("/fleet/{name}", get(page::fleet))
        .route("/fleets/{name}", get(fleet_status))
        .route("/status", get(status))
        .route("/gate", get(gate))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        // `layer`, not `route_layer`: the fallback asks for the token too.
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), auth::check));
    Router::new().route("/healthz", get(healthz)).merge(guarded).with_state(shared)
}

/// Serves `config` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        // Open pages' event streams end, so the server does not wait on them.
        let _ = stop.send(true);
    };
    axum::serve(listener, routes(config, stopping)).with_graceful_shutdown(shutdown).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvQuery {
    env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateQuery {
    env: Option<String>,
    require: Option<String>,
}

pub(crate) type AppState = State<Arc<Shared>>;

/// How long `/metrics` waits for any one environment: under Prometheus's default 10 s scrape timeout.
const METRICS_DEADLINE: Duration = Duration::from_secs(5);

pub(crate) fn reply(code: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (code, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn problem(code: StatusCode, message: String) -> Response {
    reply(code, json!({ "error": message }))
}

impl Shared {
    /// The environment a request names, or a 400/404 that says which exist.
    fn env(&self, asked: Option<&str>) -> Result<&Env, Box<Response>> {
        let known = || self.order.join(", ");
        let name = match (asked, &self.default) {
            (Some(name), _) if !name.is_empty() => name,
            (_, Some(default)) => default.as_str(),
            _ => {
                return Err(Box::new(problem(
                    StatusCode::BAD_REQUEST,
                    format!("name an environment with ?env=NAME (known: {})", known()),
                )));
            }
        };
        self.envs.get(name).ok_or_else(|| Box::new(problem(StatusCode::NOT_FOUND, self.unknown(name))))
    }

    /// What a request naming an environment that is not served is told.
    pub(crate) fn unknown(&self, name: &str) -> String {
        format!("no environment `{name}` (known: {})", self.order.join(", "))
    }

    pub(crate) async fn read(&self, env: &Env, arrived: Instant) -> Read {
        env.read(arrived, self.max_age, self.read_timeout).await
    }

    /// As `read`, answered by a read that started up to `max_age` before (at least `--max-age`).
    pub(crate) async fn read_within(&self, env: &Env, arrived: Instant, max_age: Duration) -> Read {
        env.read(arrived, self.max_age.max(max_age), self.read_timeout).await
    }
}

async fn healthz() -> Response {
    let mut response = "ok\n".into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A query string that does not parse (an unknown or misspelt parameter) is a 400:
/// a typo must not quietly gate the default environment.
pub(crate) fn query<T>(parsed: Result<Query<T>, QueryRejection>) -> Result<T, Box<Response>> {
    parsed.map(|Query(q)| q).map_err(|e| Box::new(problem(StatusCode::BAD_REQUEST, e.body_text())))
}

async fn status(State(shared): AppState, parsed: Result<Query<EnvQuery>, QueryRejection>) -> Response {
    let arrived = Instant::now();
    let query = match query(parsed) {
        Ok(q) => q,
        Err(response) => return *response,
    };
    let env = match shared.env(query.env.as_deref()) {
        Ok(env) => env,
        Err(response) => return *response,
    };
    let read = shared.read(env, arrived).await;
    match read.answer.as_ref() {
        Ok(assessment) => {
            let mut body = serde_json::to_value(&assessment.status).unwrap_or_default();
            body["environment"] = json!(env.name);
            reply(StatusCode::OK, body)
        }
        Err(why) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "environment": env.name, "error": format!("cannot read the database: {why}") }),
        ),
    }
}

async fn gate(State(shared): AppState, parsed: Result<Query<GateQuery>, QueryRejection>) -> Response {
    let arrived = Instant::now();
    let query = match query(parsed) {
        Ok(q) => q,
        Err(response) => return *response,
    };
    let requirement = match query.require.as_deref().map(str::trim) {
        None | Some("latest") | Some("") => Requirement::Latest,
        Some(text) => match Version::parse(text) {
            Ok(version) => Requirement::Version(version),
            Err(e) => return problem(StatusCode::BAD_REQUEST, format!("require={text}: {e}")),
        },
    };
    let env = match shared.env(query.env.as_deref()) {
        Ok(env) => env,
        Err(response) => return *response,
    };
    let read = shared.read(env, arrived).await;
    let report = match read.answer.as_ref() {
        Ok(assessment) => assessment.gate(&requirement),
        Err(why) => unknown(&requirement, why),
    };
    let code = if report.satisfied { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = serde_json::to_value(&report).unwrap_or_default();
    body["environment"] = json!(env.name);
    reply(code, body)
}

/// The gate's answer when the database cannot be read: not satisfied, state unknown.
fn unknown(requirement: &Requirement, why: &str) -> GateReport {
    GateReport {
        satisfied: false,
        required: match requirement {
            Requirement::Version(v) => Some(v.to_string()),
            Requirement::Latest => None,
        },
        current_version: None,
        state: "unknown",
        reasons: vec![format!("cannot read the database: {why}")],
        behind: Vec::new(),
        lock: None,
    }
}

async fn metrics(State(shared): AppState) -> Response {
    let arrived = Instant::now();
    let shared = shared.as_ref();
    // One slow environment must not fail the whole scrape: past the deadline it
    // shows as down, and its read goes on for the next scrape.
    let deadline = shared.read_timeout.min(METRICS_DEADLINE);
    let reads = futures_util::future::join_all(shared.order.iter().map(|name| {
        let env = &shared.envs[name];
        async move { (env.name.as_str(), tokio::time::timeout(deadline, shared.read(env, arrived)).await.ok()) }
    }))
    .await;
    let observed: Vec<(&str, Option<&Assessment>)> =
        reads.iter().map(|(name, read)| (*name, read.as_ref().and_then(|r| r.answer.as_ref().as_ref().ok()))).collect();
    match metrics::encode(&observed) {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the metrics failed: {e}")),
    }
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such route; try /, /healthz, /status, /gate?require=V or /metrics".to_owned())
}
