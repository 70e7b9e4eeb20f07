//! The Prefect REST client: one place for the base URL, authentication, the API-version
//! header, the CSRF token exchange, timeouts and retries. It never prints credentials:
//! errors carry the method and the API path, not the URL or headers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::sys::env_vars::EnvVars;
use crate::sys::redact::mask_url_credentials;

/// The REST API version Prefect 3.9.1 speaks; the server rejects versions it does not support.
pub(crate) const API_VERSION: &str = "0.8.4";
/// `POST /…/filter` page size; the server rejects more than its default limit (200).
const PAGE_SIZE: usize = 200;
/// Most records one listing may have: far above any project (a server that keeps sending full
/// pages must not keep us reading forever).
pub(crate) const MAX_LISTING: usize = 100_000;
/// Largest successful response body read; a page of 200 deployments with big parameter
/// schemas is a few MiB.
pub(crate) const MAX_BODY_BYTES: u64 = 64 << 20;
/// Largest error body read: only its first 500 characters are shown.
const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;
/// Bounds of the numeric settings (a day per request; retries beyond this are a typo).
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
const MAX_RETRIES: u32 = 100;

/// Where the server is and how to authenticate. Built from Prefect's own variables.
#[derive(Clone)]
pub struct ApiConfig {
    pub url: String,
    pub api_key: Option<String>,
    pub auth_string: Option<String>,
    pub timeout: Duration,
    pub max_retries: u32,
}

impl std::fmt::Debug for ApiConfig {
    // Hand-written so credentials never reach a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("url", &self.display_url())
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("auth_string", &self.auth_string.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl ApiConfig {
    /// PREFECT_API_URL (required), PREFECT_API_KEY, PREFECT_API_AUTH_STRING,
    /// PREFECT_API_REQUEST_TIMEOUT (seconds), PREFECT_CLIENT_MAX_RETRIES.
    pub fn from_vars(vars: &EnvVars) -> Result<ApiConfig> {
        let non_empty_env = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let url = non_empty_env("PREFECT_API_URL").context(
            "PREFECT_API_URL is not set: point it at your Prefect server's API, e.g. http://127.0.0.1:4200/api",
        )?;
        let mut cfg = ApiConfig::for_url(&url);
        cfg.api_key = non_empty_env("PREFECT_API_KEY");
        cfg.auth_string = non_empty_env("PREFECT_API_AUTH_STRING");
        if let Some(secs) = non_empty_env("PREFECT_API_REQUEST_TIMEOUT") {
            cfg.timeout = secs
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_REQUEST_TIMEOUT.as_secs_f64())
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .with_context(|| {
                    format!(
                        "PREFECT_API_REQUEST_TIMEOUT must be a number of seconds above 0 and at \
                         most {} (got {secs:?})",
                        MAX_REQUEST_TIMEOUT.as_secs()
                    )
                })?;
        }
        if let Some(n) = non_empty_env("PREFECT_CLIENT_MAX_RETRIES") {
            cfg.max_retries = n
                .parse()
                .ok()
                .filter(|n| *n <= MAX_RETRIES)
                .with_context(|| {
                    format!(
                        "PREFECT_CLIENT_MAX_RETRIES must be a whole number from 0 to \
                         {MAX_RETRIES} (got {n:?})"
                    )
                })?;
        }
        Ok(cfg)
    }

    /// A config for `url` without credentials and with Prefect's defaults.
    pub fn for_url(url: &str) -> ApiConfig {
        ApiConfig {
            url: url.trim().trim_end_matches('/').to_string(),
            api_key: None,
            auth_string: None,
            timeout: Duration::from_secs(60),
            max_retries: 5,
        }
    }

    pub(crate) fn display_url(&self) -> String {
        mask_url_credentials(&self.url)
    }

    /// Prefect's rule: the auth string (Basic) wins over the API key (Bearer).
    fn authorization(&self) -> Option<String> {
        if let Some(auth) = &self.auth_string {
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(auth)
            ))
        } else {
            self.api_key.as_ref().map(|key| format!("Bearer {key}"))
        }
    }

    fn is_prefect_cloud(&self) -> bool {
        reqwest::Url::parse(&self.url).is_ok_and(|url| is_prefect_cloud(&url))
    }

    /// Whether requests carry credentials: an auth header, or `user:password@` in the URL.
    pub(crate) fn has_credentials(&self) -> bool {
        self.authorization().is_some()
            || reqwest::Url::parse(&self.url)
                .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
    }
}

/// The warning when credentials would cross a network in clear text: `url` is plain `http://`
/// to a host that is neither loopback nor on Fly's private network (`*.internal`, `*.flycast`,
/// whose WireGuard mesh encrypts the traffic). `None` when the transport is fine.
pub(crate) fn plain_http_warning(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    if parsed.scheme() != "http" {
        return None;
    }
    let host = parsed
        .host_str()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let private = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            host == "localhost"
                || [".localhost", ".internal", ".flycast"]
                    .iter()
                    .any(|suffix| host.ends_with(suffix))
        }
    };
    (!private).then(|| {
        format!(
            "credentials (PREFECT_API_AUTH_STRING / PREFECT_API_KEY / URL user) go to {} over \
             plain http, readable by anyone on the way; use https, or a loopback or Fly \
             private-network (*.internal, *.flycast) address",
            host
        )
    })
}

/// Printed at most once per process, however many clients are built.
static PLAIN_HTTP_WARNED: AtomicBool = AtomicBool::new(false);

/// Prefect Cloud's API host.
pub(crate) const CLOUD_API_HOST: &str = "api.prefect.cloud";

/// Whether `url` is Prefect Cloud's API: Cloud's host, or a Cloud workspace path (see
/// [`is_cloud_workspace_path`], e.g. behind a proxy). Cloud takes an API key and has no CSRF tokens.
pub(crate) fn is_prefect_cloud(url: &reqwest::Url) -> bool {
    url.host_str()
        .is_some_and(|host| host.eq_ignore_ascii_case(CLOUD_API_HOST))
        || is_cloud_workspace_path(url)
}

/// The path ends in `…/api/accounts/<uuid>/workspaces/<uuid>`.
pub(crate) fn is_cloud_workspace_path(url: &reqwest::Url) -> bool {
    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., api, accounts, account, workspaces, workspace] => {
            *api == "api"
                && *accounts == "accounts"
                && *workspaces == "workspaces"
                && uuid::Uuid::parse_str(account).is_ok()
                && uuid::Uuid::parse_str(workspace).is_ok()
        }
        _ => false,
    }
}

/// Why a request failed. Display never contains credentials.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub method: &'static str,
    pub path: String,
    pub kind: ApiErrorKind,
}

#[derive(Debug, Clone)]
pub enum ApiErrorKind {
    /// The server answered with a non-success status.
    Status { code: u16, detail: String },
    /// No answer within the timeout.
    Timeout,
    /// Connection refused/reset, DNS failure, TLS failure.
    Unreachable(String),
    /// The answer was not what the API promises (e.g. not JSON).
    InvalidResponse(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ApiErrorKind::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// 401/403 other than a CSRF problem: the credentials are missing or wrong.
    pub fn is_auth(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} failed: ", self.method, self.path)?;
        match &self.kind {
            ApiErrorKind::Status { code, detail } => {
                let reason = StatusCode::from_u16(*code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "{code} {reason}")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                if matches!(code, 401 | 403) {
                    write!(f, " (check PREFECT_API_KEY / PREFECT_API_AUTH_STRING)")?;
                }
                Ok(())
            }
            ApiErrorKind::Timeout => write!(f, "the server did not answer in time"),
            ApiErrorKind::Unreachable(why) => write!(f, "server unreachable ({why})"),
            ApiErrorKind::InvalidResponse(why) => write!(f, "unexpected response ({why})"),
        }
    }
}

impl std::error::Error for ApiError {}

/// The CSRF token state shared by clones of one client.
#[derive(Default)]
struct Csrf {
    /// None until asked; Some(None) when the server has CSRF protection off.
    token: Option<Option<(String, Instant)>>,
}

struct Inner {
    http: Client,
    cfg: ApiConfig,
    csrf_client_id: String,
    csrf: Mutex<Csrf>,
    requests: AtomicUsize,
    /// Requests sent again after a retryable answer (a busy database, an outage).
    retries: AtomicUsize,
    /// Requests for a CSRF token (a subset of `requests`).
    csrf_exchanges: AtomicUsize,
    verbose: AtomicBool,
    /// Prefect retries connection errors only once a connection has worked: a wrong URL fails fast.
    connected_once: AtomicBool,
    /// See [`PrefectClient::set_deadline`].
    deadline: Mutex<Option<Instant>>,
    /// See [`PrefectClient::set_interrupt`].
    interrupt: Mutex<Option<Arc<AtomicBool>>>,
}

/// A successful answer, with what the caller may need beyond its body.
struct Answer {
    body: Value,
    status: u16,
    /// Earlier attempts that got no answer (a timeout, a dropped connection): the server may
    /// have applied them. An attempt answered with an error status was not applied.
    unanswered: u32,
}

/// A `POST /deployments/` answer and who made the deployment it names.
pub(crate) struct Upserted {
    pub body: Value,
    pub origin: Origin,
}

/// Who made the deployment a `POST /deployments/` (an upsert by flow and name) answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// 201: this request inserted it.
    CreatedByThisRequest,
    /// 200, and no earlier attempt went unanswered: it existed already (someone else created
    /// it), and was updated.
    ExistedBefore,
    /// 200 after an attempt that got no answer: that attempt may have inserted it.
    Unknown,
}

/// A blocking Prefect API client. Cheap to clone; clones share connections and the CSRF token.
#[derive(Clone)]
pub struct PrefectClient {
    inner: Arc<Inner>,
}

impl PrefectClient {
    pub fn new(cfg: ApiConfig) -> Result<PrefectClient> {
        if !(cfg.url.starts_with("http://") || cfg.url.starts_with("https://")) {
            bail!(
                "PREFECT_API_URL must start with http:// or https:// (got {})",
                cfg.display_url()
            );
        }
        if cfg.has_credentials() {
            if let Some(warning) = plain_http_warning(&cfg.url) {
                if !PLAIN_HTTP_WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!("warning: {warning}");
                }
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "X-PREFECT-API-VERSION",
            HeaderValue::from_static(API_VERSION),
        );
        if let Some(auth) = cfg.authorization() {
            let mut value = HeaderValue::from_str(&auth)
                .map_err(|_| anyhow::anyhow!("PREFECT_API_KEY / PREFECT_API_AUTH_STRING contain characters not allowed in an HTTP header"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = Client::builder()
            .default_headers(headers)
            .user_agent(concat!(
                "prefect-xtask/",
                env!("CARGO_PKG_VERSION"),
                " (API 0.8.4)"
            ))
            .connect_timeout(Duration::from_secs(10).min(cfg.timeout))
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(16)
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(PrefectClient {
            inner: Arc::new(Inner {
                http,
                cfg,
                csrf_client_id: uuid::Uuid::new_v4().to_string(),
                csrf: Mutex::new(Csrf::default()),
                requests: AtomicUsize::new(0),
                retries: AtomicUsize::new(0),
                csrf_exchanges: AtomicUsize::new(0),
                verbose: AtomicBool::new(false),
                connected_once: AtomicBool::new(false),
                deadline: Mutex::new(None),
                interrupt: Mutex::new(None),
            }),
        })
    }

    pub fn display_url(&self) -> String {
        self.inner.cfg.display_url()
    }

    /// Log every request (method, path, status, time) to stderr.
    pub fn set_verbose(&self, verbose: bool) {
        self.inner.verbose.store(verbose, Ordering::Relaxed);
    }

    /// How many HTTP requests this client (and its clones) sent, retries included.
    pub fn request_count(&self) -> usize {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// How many of those requests were retries: a server that is often busy shows here.
    pub fn retry_count(&self) -> usize {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// How many of those requests fetched a CSRF token (once per client while it stays valid).
    pub fn csrf_exchange_count(&self) -> usize {
        self.inner.csrf_exchanges.load(Ordering::Relaxed)
    }

    // ---- raw verbs -------------------------------------------------------------------------

    /// GET; a 404 is `Ok(None)`.
    pub fn get(&self, path: &str) -> Result<Option<Value>, ApiError> {
        match self.send(Method::GET, path, None) {
            Ok(value) => Ok(Some(value)),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// POST a JSON body; returns the response body (`null` when empty).
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send(Method::POST, path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<(), ApiError> {
        self.send(Method::PATCH, path, Some(body)).map(|_| ())
    }

    /// DELETE; `Ok(false)` when the object was already gone.
    pub fn delete(&self, path: &str) -> Result<bool, ApiError> {
        match self.send(Method::DELETE, path, None) {
            Ok(_) => Ok(true),
            Err(err) if err.status() == Some(404) => Ok(false),
            Err(err) => Err(err),
        }
    }

    // ---- typed conveniences -----------------------------------------------------------------

    /// `GET /health`: unauthenticated on self-hosted servers, so it proves reachability only.
    pub fn health(&self) -> Result<(), ApiError> {
        self.send(Method::GET, "/health", None).map(|_| ())
    }

    /// An authenticated read that every role may do.
    pub fn check_auth(&self) -> Result<(), ApiError> {
        self.post("/work_pools/filter", &json!({"limit": 1}))
            .map(|_| ())
    }

    pub fn read_work_pool(&self, name: &str) -> Result<Option<Value>, ApiError> {
        self.get(&format!("/work_pools/{}", encode_segment(name)))
    }

    /// Creates the pool unless it exists.
    pub fn create_work_pool(&self, name: &str, pool_type: &str) -> Result<(), ApiError> {
        match self.post("/work_pools/", &json!({"name": name, "type": pool_type})) {
            Ok(_) => Ok(()),
            Err(err) if err.status() == Some(409) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Every deployment matching `filter` (a `/deployments/filter` body without limit/offset), all pages.
    pub fn read_deployments(&self, filter: Value) -> Result<Vec<Value>, ApiError> {
        self.read_all_pages("/deployments/filter", filter)
    }

    /// Every flow matching `filter`, all pages.
    pub fn read_flows(&self, filter: Value) -> Result<Vec<Value>, ApiError> {
        self.read_all_pages("/flows/filter", filter)
    }

    pub fn read_variable(&self, name: &str) -> Result<Option<Value>, ApiError> {
        self.get(&format!("/variables/name/{}", encode_segment(name)))
    }

    /// A block document with its secret values (templating needs them, as Prefect's CLI does).
    pub fn read_block_document(&self, slug: &str, name: &str) -> Result<Option<Value>, ApiError> {
        self.get(&format!(
            "/block_types/slug/{}/block_documents/name/{}?include_secrets=true",
            encode_segment(slug),
            encode_segment(name)
        ))
    }

    pub(crate) fn create_flow_run_from_deployment(
        &self,
        deployment_id: &str,
        parameters: Value,
    ) -> Result<Value, ApiError> {
        self.post(
            &format!(
                "/deployments/{}/create_flow_run",
                encode_segment(deployment_id)
            ),
            &json!({"parameters": parameters}),
        )
    }

    pub(crate) fn read_flow_run(&self, id: &str) -> Result<Option<Value>, ApiError> {
        self.get(&format!("/flow_runs/{}", encode_segment(id)))
    }

    /// A deployment by id (a DeploymentResponse); None when it does not exist.
    pub(crate) fn read_deployment(&self, id: &str) -> Result<Option<Value>, ApiError> {
        self.get(&deployment_path(id))
    }

    /// A deployment by its flow's name and its own; None when it does not exist.
    pub(crate) fn read_deployment_by_name(
        &self,
        flow_name: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        self.get(&format!(
            "/deployments/name/{}/{}",
            encode_segment(flow_name),
            encode_segment(name)
        ))
    }

    /// A deployment's schedules; empty when the deployment does not exist.
    pub(crate) fn read_deployment_schedules(
        &self,
        deployment_id: &str,
    ) -> Result<Vec<Value>, ApiError> {
        Ok(match self.get(&schedules_path(deployment_id))? {
            Some(Value::Array(schedules)) => schedules,
            _ => Vec::new(),
        })
    }

    // ---- typed writes ------------------------------------------------------------------------

    /// Creates the flow, or returns the one of that name (an upsert); the Flow as the server has it.
    pub(crate) fn create_flow(&self, name: &str) -> Result<Value, ApiError> {
        self.post("/flows/", &json!({"name": name, "tags": [], "labels": {}}))
    }

    /// Creates a deployment, or replaces the one of that flow and name (an upsert); the
    /// DeploymentResponse.
    pub(crate) fn create_deployment(&self, body: &Value) -> Result<Value, ApiError> {
        self.post("/deployments/", body)
    }

    /// [`Self::create_deployment`], telling who made the row: the server answers 201 only when
    /// this request inserted it (its `created` is not before the request), 200 when it updated a
    /// deployment that already existed. A 200 after an attempt that got no answer is ambiguous:
    /// that attempt may have inserted it (attempts refused with a status, e.g. a busy 503, did not).
    pub(crate) fn create_deployment_answered(&self, body: &Value) -> Result<Upserted, ApiError> {
        let answer = self.send_answered(Method::POST, "/deployments/", Some(body))?;
        let origin = if answer.status == 201 {
            Origin::CreatedByThisRequest
        } else if answer.unanswered == 0 {
            Origin::ExistedBefore
        } else {
            Origin::Unknown
        };
        Ok(Upserted {
            body: answer.body,
            origin,
        })
    }

    /// Sets the given fields of a deployment, leaving the others as they are.
    pub(crate) fn update_deployment(
        &self,
        id: &str,
        fields: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        self.patch(&deployment_path(id), &Value::Object(fields.clone()))
    }

    /// Deletes a deployment (and its scheduled runs); one already gone is no error.
    pub fn delete_deployment(&self, id: &str) -> Result<(), ApiError> {
        self.delete(&deployment_path(id)).map(|_| ())
    }

    /// Adds one schedule (a `DeploymentScheduleCreate` body) to a deployment.
    pub(crate) fn create_schedule(
        &self,
        deployment_id: &str,
        schedule: Value,
    ) -> Result<(), ApiError> {
        self.post(
            &schedules_path(deployment_id),
            &Value::Array(vec![schedule]),
        )
        .map(|_| ())
    }

    /// Changes one schedule in place (it keeps its id).
    pub(crate) fn update_schedule(
        &self,
        deployment_id: &str,
        schedule_id: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        self.patch(&schedule_path(deployment_id, schedule_id), body)
    }

    /// Deletes one schedule; one already gone is no error.
    pub(crate) fn delete_schedule(
        &self,
        deployment_id: &str,
        schedule_id: &str,
    ) -> Result<(), ApiError> {
        self.delete(&schedule_path(deployment_id, schedule_id))
            .map(|_| ())
    }

    /// Creates an automation (a body with its `owner_resource`).
    pub(crate) fn create_automation(&self, body: &Value) -> Result<(), ApiError> {
        self.post("/automations/", body).map(|_| ())
    }

    /// Deletes every automation the deployment owns (none is no error).
    pub(crate) fn delete_owned_automations(&self, deployment_id: &str) -> Result<(), ApiError> {
        self.delete(&format!(
            "/automations/owned-by/prefect.deployment.{}",
            encode_segment(deployment_id)
        ))
        .map(|_| ())
    }

    /// Every flow run matching `filter` (a `/flow_runs/filter` body without limit/offset).
    pub(crate) fn read_flow_runs(&self, filter: Value) -> Result<Vec<Value>, ApiError> {
        self.read_all_pages("/flow_runs/filter", filter)
    }

    /// Pauses or resumes a work pool: a paused pool hands no scheduled run to any worker.
    pub(crate) fn set_work_pool_paused(&self, name: &str, paused: bool) -> Result<(), ApiError> {
        self.patch(
            &format!("/work_pools/{}", encode_segment(name)),
            &json!({"is_paused": paused}),
        )
    }

    /// Every variable carrying `tag`.
    pub(crate) fn read_variables_tagged(&self, tag: &str) -> Result<Vec<Value>, ApiError> {
        self.read_all_pages(
            "/variables/filter",
            json!({"variables": {"tags": {"all_": [tag]}}}),
        )
    }

    /// Creates the variable and returns it as the server stored it; one of that name already
    /// there is a 409 error.
    pub(crate) fn create_variable(
        &self,
        name: &str,
        value: &Value,
        tags: &[&str],
    ) -> Result<Value, ApiError> {
        let body = json!({"name": name, "value": value, "tags": tags});
        self.post("/variables/", &body)
    }

    /// Creates the variable, or sets the value of the one of that name.
    pub(crate) fn put_variable(
        &self,
        name: &str,
        value: &Value,
        tags: &[&str],
    ) -> Result<(), ApiError> {
        match self.create_variable(name, value, tags) {
            Ok(_) => Ok(()),
            Err(err) if err.status() == Some(409) => self.patch(
                &format!("/variables/name/{}", encode_segment(name)),
                &json!({"value": value, "tags": tags}),
            ),
            Err(err) => Err(err),
        }
    }

    /// Deletes a variable; one already gone is no error.
    pub(crate) fn delete_variable(&self, name: &str) -> Result<(), ApiError> {
        self.delete(&format!("/variables/name/{}", encode_segment(name)))
            .map(|_| ())
    }

    /// Every record a `/…/filter` endpoint lists for `filter` (without limit/offset), all pages.
    pub fn read_listing(&self, path: &str, filter: Value) -> Result<Vec<Value>, ApiError> {
        self.read_all_pages(path, filter)
    }

    fn read_all_pages(&self, path: &str, filter: Value) -> Result<Vec<Value>, ApiError> {
        let mut all = Vec::new();
        let mut body = match filter {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(ApiError {
                    method: "POST",
                    path: path.to_string(),
                    kind: ApiErrorKind::InvalidResponse(format!(
                        "filter must be an object, got {other}"
                    )),
                })
            }
        };
        let invalid = |why: String| ApiError {
            method: "POST",
            path: path.to_string(),
            kind: ApiErrorKind::InvalidResponse(why),
        };
        let mut seen_ids = std::collections::HashSet::new();
        let mut offset = 0;
        loop {
            body.insert("limit".into(), json!(PAGE_SIZE));
            body.insert("offset".into(), json!(offset));
            let page = self.post(path, &Value::Object(body.clone()))?;
            let Value::Array(items) = page else {
                return Err(invalid("expected a JSON list".into()));
            };
            let n = items.len();
            if n > PAGE_SIZE {
                return Err(invalid(format!(
                    "the server sent {n} records for a page of {PAGE_SIZE}"
                )));
            }
            // Offset paging over a listing that others change can show a record twice (one
            // created before the offset shifts the rest): keep the first copy.
            let mut new = 0;
            for item in items {
                let id = item.get("id").and_then(Value::as_str).map(str::to_string);
                if id.map_or(true, |id| seen_ids.insert(id)) {
                    new += 1;
                    all.push(item);
                }
            }
            offset += n;
            if n < PAGE_SIZE {
                return Ok(all);
            }
            // A full page of records already read: a server that ignores `offset` would send
            // it forever.
            if new == 0 {
                return Err(invalid(format!(
                    "the page at offset {} held only records already read (does the server \
                     ignore `offset`?); stopped reading",
                    offset - n
                )));
            }
            if offset >= MAX_LISTING {
                return Err(invalid(format!(
                    "the listing has more than {MAX_LISTING} records; stopped reading"
                )));
            }
        }
    }

    // ---- the request loop --------------------------------------------------------------------

    fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        self.send_answered(method, path, body)
            .map(|answer| answer.body)
    }

    fn send_answered(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ApiError> {
        let method_name = method_name(&method);
        let mutating = method != Method::GET;
        let mut retries = Retries::new(self.inner.cfg.max_retries);
        let mut csrf_refreshed = false;
        let mut unanswered = 0u32;
        loop {
            let csrf = if mutating {
                self.csrf_headers().map_err(|kind| ApiError {
                    method: method_name,
                    path: path.to_string(),
                    kind,
                })?
            } else {
                None
            };
            let mut request = self.inner.http.request(method.clone(), self.url(path));
            if let Some((token, client)) = &csrf {
                request = request
                    .header("Prefect-Csrf-Token", token)
                    .header("Prefect-Csrf-Client", client);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let request = self.bounded(request).map_err(|kind| ApiError {
                method: method_name,
                path: path.to_string(),
                kind,
            })?;
            let started = Instant::now();
            let outcome = self.execute(request);
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let (retry_after, failure, error) = match outcome {
                Ok(response) => {
                    self.inner.connected_once.store(true, Ordering::Relaxed);
                    let status = response.status();
                    if status.is_success() {
                        // Traced after the body: some servers send it well after the headers.
                        let body = read_json(response);
                        self.trace(method_name, path, &status.as_u16().to_string(), started);
                        return body
                            .map(|body| Answer {
                                body,
                                status: status.as_u16(),
                                unanswered,
                            })
                            .map_err(|why| ApiError {
                                method: method_name,
                                path: path.to_string(),
                                kind: ApiErrorKind::InvalidResponse(why),
                            });
                    }
                    self.trace(method_name, path, &status.as_u16().to_string(), started);
                    let retry_after = parse_retry_after(response.headers());
                    let detail = error_detail(response);
                    let error = ApiError {
                        method: method_name,
                        path: path.to_string(),
                        kind: ApiErrorKind::Status {
                            code: status.as_u16(),
                            detail: detail.clone(),
                        },
                    };
                    if status == StatusCode::FORBIDDEN
                        && detail.contains("Invalid CSRF token")
                        && !csrf_refreshed
                    {
                        // The token expired or the server restarted: get a new one, once.
                        csrf_refreshed = true;
                        self.forget_csrf_token();
                        continue;
                    }
                    if !is_retryable_status(status.as_u16()) {
                        return Err(error);
                    }
                    let failure =
                        if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_none() {
                            Failure::Busy
                        } else {
                            Failure::Other
                        };
                    (retry_after, failure, error)
                }
                Err(kind) => {
                    unanswered += 1;
                    self.trace(method_name, path, "error", started);
                    let error = ApiError {
                        method: method_name,
                        path: path.to_string(),
                        kind,
                    };
                    let never_connected = !self.inner.connected_once.load(Ordering::Relaxed);
                    if never_connected
                        && matches!(error.kind, ApiErrorKind::Unreachable(_))
                        && retries.others >= 1
                    {
                        // A server that never answered is most likely a wrong URL or down: fail fast.
                        return Err(error);
                    }
                    (None, Failure::Other, error)
                }
            };
            let Some(delay) = retries.next_delay(failure, retry_after, jitter()) else {
                return Err(error);
            };
            if self.inner.verbose.load(Ordering::Relaxed) {
                eprintln!(
                    "  retrying {method_name} {path} in {:.2}s ({error})",
                    delay.as_secs_f64()
                );
            }
            if self.past_deadline(delay) || !self.pause(delay) {
                // The caller's time is up (a rollback's budget), or the run was interrupted.
                return Err(error);
            }
            self.inner.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests end their retries when a pause of `delay` would end past this time (None: no
    /// limit). A rollback sets it so that it ends inside the release command's time limit.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *self
            .inner
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = deadline;
    }

    /// A retry pause ends early, and the request fails with its last error, once `flag` is set
    /// (Ctrl-C/SIGTERM), so an interrupted apply stops without waiting out back-offs. Not while
    /// a deadline is set: a rollback runs after the interruption and is bounded by its deadline.
    pub fn set_interrupt(&self, flag: Arc<AtomicBool>) {
        *self
            .inner
            .interrupt
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(flag);
    }

    /// Sleeps `delay` in short slices; false when interrupted (see [`Self::set_interrupt`]).
    fn pause(&self, delay: Duration) -> bool {
        const SLICE: Duration = Duration::from_millis(50);
        let interrupted = || {
            let flag = self
                .inner
                .interrupt
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let deadline = self
                .inner
                .deadline
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            deadline.is_none() && flag.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
        };
        let end = Instant::now() + delay;
        loop {
            if interrupted() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep(SLICE.min(end - now));
        }
    }

    /// Under a deadline (a rollback's budget) one slow request must not overrun it: its timeout
    /// is the time left; none left is a timeout without sending anything.
    fn bounded(&self, request: RequestBuilder) -> Result<RequestBuilder, ApiErrorKind> {
        match self.time_left() {
            None => Ok(request),
            Some(left) if left.is_zero() => Err(ApiErrorKind::Timeout),
            Some(left) => Ok(request.timeout(left.min(self.inner.cfg.timeout))),
        }
    }

    /// Time until the deadline, if one is set.
    fn time_left(&self) -> Option<Duration> {
        let deadline = *self
            .inner
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        deadline.map(|end| end.saturating_duration_since(Instant::now()))
    }

    fn past_deadline(&self, delay: Duration) -> bool {
        let deadline = *self
            .inner
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        deadline.is_some_and(|end| Instant::now() + delay >= end)
    }

    fn execute(&self, request: RequestBuilder) -> Result<Response, ApiErrorKind> {
        request.send().map_err(|err| {
            if err.is_timeout() {
                ApiErrorKind::Timeout
            } else {
                ApiErrorKind::Unreachable(describe_transport_error(&err))
            }
        })
    }

    fn url(&self, path: &str) -> String {
        // Plain concatenation keeps a gateway's path prefix (…/prefect-internal/prefect/api).
        let mut url = self.inner.cfg.url.clone();
        if !path.starts_with('/') {
            url.push('/');
        }
        url.push_str(path);
        url
    }

    fn trace(&self, method: &str, path: &str, status: &str, started: Instant) {
        if self.inner.verbose.load(Ordering::Relaxed) {
            eprintln!(
                "  {method} {path} → {status} ({} ms)",
                started.elapsed().as_millis()
            );
        }
    }

    /// The CSRF headers for a mutating request, fetching a token on first use.
    fn csrf_headers(&self) -> Result<Option<(String, String)>, ApiErrorKind> {
        if self.inner.cfg.is_prefect_cloud() {
            return Ok(None);
        }
        let mut csrf = self
            .inner
            .csrf
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(state) = &csrf.token {
            match state {
                None => return Ok(None),
                Some((token, expires)) if Instant::now() < *expires => {
                    return Ok(Some((token.clone(), self.inner.csrf_client_id.clone())))
                }
                Some(_) => {}
            }
        }
        let path = format!("/csrf-token?client={}", self.inner.csrf_client_id);
        let response = self.execute(self.bounded(self.inner.http.get(self.url(&path)))?)?;
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.csrf_exchanges.fetch_add(1, Ordering::Relaxed);
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::UNPROCESSABLE_ENTITY {
            // 422 "CSRF protection is disabled." (or an old server without the route).
            csrf.token = Some(None);
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ApiErrorKind::Status {
                code: status.as_u16(),
                detail: error_detail(response),
            });
        }
        let body = read_json(response).map_err(ApiErrorKind::InvalidResponse)?;
        let token = body
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiErrorKind::InvalidResponse("CSRF token response without a token".into())
            })?
            .to_string();
        // Tokens live an hour; refresh well before.
        csrf.token = Some(Some((
            token.clone(),
            Instant::now() + Duration::from_secs(50 * 60),
        )));
        Ok(Some((token, self.inner.csrf_client_id.clone())))
    }

    fn forget_csrf_token(&self) {
        let mut csrf = self
            .inner
            .csrf
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        csrf.token = None;
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        _ => "REQUEST",
    }
}

/// Statuses Prefect's own client retries.
pub(crate) fn is_retryable_status(code: u16) -> bool {
    matches!(code, 408 | 429 | 502 | 503)
}

/// Why a request is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    /// 503 without Retry-After: a Prefect server's database refused a write because another one
    /// committed meanwhile (SQLite's SQLITE_BUSY_SNAPSHOT). Gone once the other writers are done.
    Busy,
    /// Anything else retryable: no connection, a timeout, 408/429/502, a 503 with Retry-After.
    Other,
}

/// Delays before retry 1, 2, 3… of an `Other` failure, with ±20 % jitter: Prefect's own patience
/// for real outages (~18 s in all over the default 5 retries; Prefect waits 2^n s).
const BACKOFF_SECONDS: [f64; 5] = [0.1, 0.5, 2.0, 5.0, 10.0];

/// Delays between retries of a `Busy` write. The other writes have committed by the time the
/// server answers, so the first retry comes at once; lock storms (the server's scheduler inserting
/// runs for new deployments, its event persister) last from a few writes to ~2 s, and waiting in
/// small steps ends each one within a fraction of a second of its end. Measured with 51 creates on
/// Prefect 3.9.1's SQLite server: 1.6–2.0 s instead of 2.3–4.4 s with the outage back-off.
const BUSY_STEPS_SECONDS: [f64; 8] = [0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0];

/// One request's retry budget. `max_retries` (PREFECT_CLIENT_MAX_RETRIES) bounds `Other`
/// failures by count; `Busy` ones may retry more often in smaller steps but within the same total
/// wait those retries would have had, so the setting keeps its meaning (0 = never retry).
#[derive(Debug)]
struct Retries {
    max_retries: u32,
    /// `Other` failures retried so far.
    others: u32,
    /// `Busy` failures retried so far, and the time spent waiting on them.
    busy: u32,
    busy_waited: f64,
}

impl Retries {
    fn new(max_retries: u32) -> Retries {
        Retries {
            max_retries,
            others: 0,
            busy: 0,
            busy_waited: 0.0,
        }
    }

    /// The wait before the next attempt, or None to give up. `jitter` is in [0, 1).
    fn next_delay(
        &mut self,
        failure: Failure,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let spread = 0.8 + 0.4 * jitter;
        match failure {
            Failure::Busy => {
                let step =
                    BUSY_STEPS_SECONDS[(self.busy as usize).min(BUSY_STEPS_SECONDS.len() - 1)];
                let delay = step * spread;
                // Zero retries allowed is zero patience: no busy retry either.
                if self.busy_waited + delay > self.patience() {
                    return None;
                }
                self.busy += 1;
                self.busy_waited += delay;
                Some(Duration::from_secs_f64(delay))
            }
            Failure::Other => {
                if self.others >= self.max_retries {
                    return None;
                }
                let index = (self.others as usize).min(BACKOFF_SECONDS.len() - 1);
                self.others += 1;
                Some(
                    retry_after.unwrap_or_else(|| {
                        Duration::from_secs_f64(BACKOFF_SECONDS[index] * spread)
                    }),
                )
            }
        }
    }

    /// The total wait `max_retries` outage retries would have: the budget for `Busy` retries.
    fn patience(&self) -> f64 {
        (0..self.max_retries as usize)
            .map(|i| BACKOFF_SECONDS[i.min(BACKOFF_SECONDS.len() - 1)])
            .sum()
    }
}

/// A number in [0, 1) that differs between calls and processes; good enough for jitter.
fn jitter() -> f64 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    f64::from(u16::from_le_bytes([bytes[0], bytes[1]])) / 65536.0
}

/// `Retry-After` in seconds (capped at one minute); HTTP dates are not used by Prefect servers.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs.min(60.0)))
}

fn read_json(response: Response) -> Result<Value, String> {
    let bytes = read_body(response, MAX_BODY_BYTES)?.ok_or_else(|| {
        format!(
            "the response body is larger than {} MiB; refusing to read it",
            MAX_BODY_BYTES >> 20
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
}

/// The body, at most `cap` bytes: `None` when it is longer (by its Content-Length, or once
/// more than `cap` bytes have arrived).
fn read_body(response: Response, cap: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    if response.content_length().is_some_and(|len| len > cap) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    response
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(
            |e| match e.get_ref().and_then(|e| e.downcast_ref::<reqwest::Error>()) {
                Some(err) => describe_transport_error(err),
                None => mask_url_credentials(&e.to_string()),
            },
        )?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

/// The server's explanation of an error status: `detail`, `exception_message` + details, or the
/// text; only the start of a long body is read.
fn error_detail(response: Response) -> String {
    use std::io::Read;
    let mut bytes = Vec::new();
    let _ = response.take(MAX_ERROR_BODY_BYTES).read_to_end(&mut bytes);
    detail_from_body(&String::from_utf8_lossy(&bytes))
}

fn detail_from_body(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let detail = match parsed {
        Some(Value::Object(map)) => {
            if let Some(detail) = map.get("detail") {
                value_to_text(detail)
            } else if let Some(message) = map.get("exception_message") {
                let mut out = value_to_text(message);
                if let Some(Value::Array(details)) = map.get("exception_detail") {
                    let msgs: Vec<String> = details
                        .iter()
                        .filter_map(|d| {
                            let msg = d.get("msg").and_then(Value::as_str)?;
                            let loc = d.get("loc").map(value_to_text).unwrap_or_default();
                            Some(if loc.is_empty() {
                                msg.to_string()
                            } else {
                                format!("{msg} (at {loc})")
                            })
                        })
                        .collect();
                    if !msgs.is_empty() {
                        out.push_str(": ");
                        out.push_str(&msgs.join("; "));
                    }
                }
                out
            } else {
                text.to_string()
            }
        }
        Some(other) => value_to_text(&other),
        None => text.to_string(),
    };
    // Bound the size: an HTML error page from a gateway is not a useful message.
    let detail = detail.trim();
    match detail.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &detail[..cut]),
        None => detail.to_string(),
    }
}

fn value_to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(value_to_text)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn describe_transport_error(err: &reqwest::Error) -> String {
    // The innermost cause says what happened ("Connection refused"); reqwest's own text
    // includes the URL, which may carry credentials, so it is masked.
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = if err.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause.to_string()
    };
    mask_url_credentials(&text)
}

fn deployment_path(id: &str) -> String {
    format!("/deployments/{}", encode_segment(id))
}

fn schedules_path(deployment_id: &str) -> String {
    format!("{}/schedules", deployment_path(deployment_id))
}

fn schedule_path(deployment_id: &str, schedule_id: &str) -> String {
    format!(
        "{}/{}",
        schedules_path(deployment_id),
        encode_segment(schedule_id)
    )
}

/// Percent-encodes one path segment (deployment and flow names may hold spaces, `é`, `#`, `?`).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// A stand-in server on a loopback port: every request (method, path, body) gets the
    /// response `respond` writes (status line, headers and body, raw).
    fn stand_in(respond: impl Fn(&str, &str, &mut TcpStream) + Send + Sync + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        let respond = Arc::new(respond);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let respond = respond.clone();
                std::thread::spawn(move || serve(stream, &*respond));
            }
        });
        url
    }

    fn serve(mut stream: TcpStream, respond: &dyn Fn(&str, &str, &mut TcpStream)) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        loop {
            let Some(request_line) = next_line(&mut reader) else {
                return;
            };
            let mut length = 0;
            loop {
                let Some(header) = next_line(&mut reader) else {
                    return;
                };
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let mut words = request_line.split_whitespace();
            let (_method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if path.starts_with("/api/csrf-token") {
                // Like a server with CSRF protection off.
                let _ = write!(
                    stream,
                    "HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 0\r\n\r\n"
                );
                continue;
            }
            respond(path, &String::from_utf8_lossy(&body), &mut stream);
        }
    }

    /// One line of the request, `None` when the client hung up.
    fn next_line(reader: &mut impl BufRead) -> Option<String> {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(String::from_utf8_lossy(&line).into_owned()),
        }
    }

    fn respond_json(stream: &mut TcpStream, body: &str) {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    }

    /// Writes a body that never ends (no length, chunks until the reader hangs up).
    fn respond_endless(stream: &mut TcpStream, status: &str) {
        let _ = write!(stream, "HTTP/1.1 {status}\r\nconnection: close\r\n\r\n");
        let chunk = vec![b'x'; 64 << 10];
        while stream.write_all(&chunk).is_ok() {}
    }

    fn quick_client(url: &str) -> PrefectClient {
        let mut cfg = ApiConfig::for_url(url);
        cfg.timeout = Duration::from_secs(60);
        cfg.max_retries = 0;
        PrefectClient::new(cfg).unwrap()
    }

    /// Runs `f` on a thread; panics when it has not returned after a minute (the defects under
    /// test are reads and loops that never end).
    fn ends<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("did not end within a minute")
    }

    #[test]
    fn response_bodies_are_read_up_to_a_cap() {
        let url = stand_in(|path, _, stream| match path {
            "/api/huge" => respond_endless(stream, "200 OK"),
            _ => respond_endless(stream, "400 Bad Request"),
        });
        let client = quick_client(&url);
        let err = ends(move || client.get("/huge").unwrap_err().to_string());
        assert!(err.contains("larger than 64 MiB"), "{err}");
        let client = quick_client(&url);
        let err = ends(move || client.get("/broken").unwrap_err());
        match &err.kind {
            ApiErrorKind::Status { code: 400, detail } => {
                assert!(
                    detail.starts_with("xxxx") && detail.chars().count() <= 501,
                    "{detail}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paging_stops_on_a_repeated_or_endless_listing_and_reads_each_record_once() {
        let page = |from: usize, n: usize| {
            let ids: Vec<Value> = (from..from + n)
                .map(|i| json!({"id": format!("id-{i}")}))
                .collect();
            Value::Array(ids).to_string()
        };
        // Ignores `offset`: the same full page forever.
        let url = stand_in(move |_, _, stream| respond_json(stream, &page(0, PAGE_SIZE)));
        let client = quick_client(&url);
        let err = ends(move || client.read_deployments(json!({})).unwrap_err().to_string());
        assert!(
            err.contains("page at offset 200 held only records already read"),
            "{err}"
        );
        // A listing that others change: a record shifted into the next page is read once.
        let url = stand_in(move |_, body, stream| {
            let offset = serde_json::from_str::<Value>(body).unwrap()["offset"]
                .as_u64()
                .unwrap() as usize;
            let text = match offset {
                0 => page(0, PAGE_SIZE),
                // One record was created before the offset: the last of page 1 comes again.
                _ => page(offset - 1, 3),
            };
            respond_json(stream, &text)
        });
        let client = quick_client(&url);
        let listed = ends(move || client.read_flows(json!({})).unwrap());
        let ids: Vec<&str> = listed.iter().filter_map(|f| f["id"].as_str()).collect();
        assert_eq!(ids.len(), PAGE_SIZE + 2, "each record once");
        assert_eq!(ids[PAGE_SIZE - 1..], ["id-199", "id-200", "id-201"]);
        // Honours `offset` but never ends.
        let url = stand_in(move |_, body, stream| {
            let offset = serde_json::from_str::<Value>(body).unwrap()["offset"]
                .as_u64()
                .unwrap() as usize;
            respond_json(stream, &page(offset, PAGE_SIZE))
        });
        let client = quick_client(&url);
        let err = ends(move || client.read_flows(json!({})).unwrap_err().to_string());
        assert!(err.contains("more than 100000 records"), "{err}");
        // A page longer than asked for.
        let url = stand_in(move |_, _, stream| respond_json(stream, &page(0, PAGE_SIZE + 1)));
        let client = quick_client(&url);
        let err = ends(move || client.read_flows(json!({})).unwrap_err().to_string());
        assert!(err.contains("201 records for a page of 200"), "{err}");
    }

    #[test]
    fn an_interruption_ends_retry_pauses_except_in_a_rollback() {
        let url = stand_in(|_, _, stream| {
            let _ = write!(
                stream,
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
            );
        });
        let mut cfg = ApiConfig::for_url(&url);
        cfg.max_retries = 2;
        let client = PrefectClient::new(cfg).unwrap();
        let flag = Arc::new(AtomicBool::new(true));
        client.set_interrupt(flag);
        let interrupted = client.clone();
        ends(move || interrupted.post("/x", &json!({})).unwrap_err());
        assert_eq!(client.retry_count(), 0, "no retry after an interruption");
        // A rollback (a deadline set) still retries, interruption or not.
        client.set_deadline(Some(Instant::now() + Duration::from_secs(60)));
        let rolling_back = client.clone();
        ends(move || rolling_back.post("/x", &json!({})).unwrap_err());
        assert!(client.retry_count() >= 2, "{}", client.retry_count());
    }

    /// A rollback's deadline bounds each request too: a server that never answers costs the time
    /// left, not the request timeout (a minute here) per attempt.
    #[test]
    fn a_deadline_cuts_a_request_that_would_overrun_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream); // accepted, never answered
            }
        });
        let mut cfg = ApiConfig::for_url(&url);
        cfg.timeout = Duration::from_secs(3600);
        cfg.max_retries = 5;
        let client = PrefectClient::new(cfg).unwrap();
        client.set_deadline(Some(Instant::now() + Duration::from_secs(2)));
        let err = ends(move || client.delete("/deployments/x").unwrap_err());
        assert!(matches!(err.kind, ApiErrorKind::Timeout), "{err}");
        // Past the deadline nothing is sent at all.
        let client = PrefectClient::new(ApiConfig::for_url(&url)).unwrap();
        client.set_deadline(Some(Instant::now()));
        let err = client.delete("/deployments/x").unwrap_err();
        assert!(matches!(err.kind, ApiErrorKind::Timeout), "{err}");
        assert_eq!(client.request_count(), 0);
    }

    #[test]
    fn numeric_settings_are_validated() {
        let config = |name: &str, value: &str| {
            let vars: EnvVars = [("PREFECT_API_URL", "http://127.0.0.1:9/api"), (name, value)]
                .into_iter()
                .collect();
            ApiConfig::from_vars(&vars).map_err(|e| e.to_string())
        };
        for bad in ["1e300", "inf", "NaN", "0", "-1", "86401", "soon"] {
            let err = config("PREFECT_API_REQUEST_TIMEOUT", bad).unwrap_err();
            assert!(
                err.starts_with("PREFECT_API_REQUEST_TIMEOUT must be"),
                "{bad}: {err}"
            );
        }
        let ok = config("PREFECT_API_REQUEST_TIMEOUT", "2.5").unwrap();
        assert_eq!(ok.timeout, Duration::from_millis(2500));
        for bad in ["101", "4294967296", "-1", "1.5"] {
            let err = config("PREFECT_CLIENT_MAX_RETRIES", bad).unwrap_err();
            assert!(
                err.starts_with("PREFECT_CLIENT_MAX_RETRIES must be"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            config("PREFECT_CLIENT_MAX_RETRIES", "7")
                .unwrap()
                .max_retries,
            7
        );
    }

    #[test]
    fn auth_string_wins_over_api_key() {
        let mut cfg = ApiConfig::for_url("http://h/api/");
        assert_eq!(cfg.url, "http://h/api");
        assert_eq!(cfg.authorization(), None);
        cfg.api_key = Some("my-key".into());
        assert_eq!(cfg.authorization().as_deref(), Some("Bearer my-key"));
        cfg.auth_string = Some("admin:pa55".into());
        assert_eq!(
            cfg.authorization().as_deref(),
            Some("Basic YWRtaW46cGE1NQ==")
        );
    }

    #[test]
    fn plain_http_is_flagged_only_off_loopback_and_fly_private_network() {
        for url in [
            "http://gw.example/api",
            "http://10.0.0.5:4200/api",
            "http://internal.example.com/api",
            "http://user:pw@gw.example/api",
        ] {
            let warning = plain_http_warning(url).unwrap_or_else(|| panic!("{url}"));
            assert!(!warning.contains("pw"), "{warning}");
        }
        for url in [
            "https://gw.example/api",
            "http://127.0.0.1:4200/api",
            "http://127.8.0.1/api",
            "http://[::1]:4200/api",
            "http://localhost:4200/api",
            "http://prefect.process.captionacc.internal:4200/api",
            "http://captionacc-prefect.flycast/api",
            "http://gateway.captionacc.internal./api",
            "not a url",
        ] {
            assert_eq!(plain_http_warning(url), None, "{url}");
        }
    }

    #[test]
    fn credentials_include_the_url_user() {
        assert!(!ApiConfig::for_url("http://h/api").has_credentials());
        assert!(ApiConfig::for_url("http://u:p@h/api").has_credentials());
        let mut cfg = ApiConfig::for_url("http://h/api");
        cfg.api_key = Some("k".into());
        assert!(cfg.has_credentials());
    }

    #[test]
    fn debug_and_display_hide_credentials() {
        let mut cfg =
            ApiConfig::for_url("https://user:hunter2@gw.example/prefect-internal/prefect/api");
        cfg.api_key = Some("sentinel-key".into());
        let shown = format!("{cfg:?} {}", cfg.display_url());
        assert!(
            !shown.contains("hunter2") && !shown.contains("sentinel-key"),
            "{shown}"
        );
        assert!(shown.contains("gw.example/prefect-internal/prefect/api"));
    }

    #[test]
    fn url_keeps_gateway_prefix() {
        let client = PrefectClient::new(ApiConfig::for_url(
            "https://gw/prefect-internal/prefect/api",
        ))
        .unwrap();
        assert_eq!(
            client.url("/deployments/filter"),
            "https://gw/prefect-internal/prefect/api/deployments/filter"
        );
        assert!(PrefectClient::new(ApiConfig::for_url("ftp://x")).is_err());
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_segment("my deploy é"), "my%20deploy%20%C3%A9");
        assert_eq!(encode_segment("a/b?c#d"), "a%2Fb%3Fc%23d");
        assert_eq!(encode_segment("plain-name_1.2"), "plain-name_1.2");
    }

    #[test]
    fn error_details_are_extracted_and_bounded() {
        assert_eq!(
            detail_from_body(r#"{"detail":"Work pool \"x\" not found."}"#),
            "Work pool \"x\" not found."
        );
        let body = r#"{"exception_message":"Invalid request received.","exception_detail":[{"loc":["body","x"],"msg":"bad"}]}"#;
        assert_eq!(
            detail_from_body(body),
            "Invalid request received.: bad (at body, x)"
        );
        assert_eq!(detail_from_body("plain text"), "plain text");
        let long = "é".repeat(2000);
        assert!(detail_from_body(&long).chars().count() <= 501);
    }

    #[test]
    fn prefect_cloud_is_its_host_or_a_workspace_path() {
        let ws = "api/accounts/0f0e0d0c-0b0a-4908-8706-050403020100/workspaces/5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
        let cloud = |url: &str| {
            ApiConfig::for_url(url).is_prefect_cloud()
                && is_prefect_cloud(&reqwest::Url::parse(url).unwrap())
        };
        assert!(cloud(&format!("https://api.prefect.cloud/{ws}")));
        assert!(cloud("https://api.prefect.cloud/api"));
        assert!(cloud(&format!("https://proxy.example/x/{ws}/")));
        assert!(!ApiConfig::for_url("http://127.0.0.1:4200/api").is_prefect_cloud());
        // Only the host counts, not the text elsewhere in the URL.
        assert!(!ApiConfig::for_url("https://gw.example/api.prefect.cloud/api").is_prefect_cloud());
        assert!(!ApiConfig::for_url("not a url").is_prefect_cloud());
    }

    #[test]
    fn retry_policy() {
        for code in [408, 429, 502, 503] {
            assert!(is_retryable_status(code));
        }
        for code in [400, 401, 403, 404, 409, 422, 500] {
            assert!(!is_retryable_status(code));
        }
        // Outages: max_retries retries, growing delays, Retry-After honoured.
        let mut r = Retries::new(5);
        let waits: Vec<f64> = std::iter::from_fn(|| r.next_delay(Failure::Other, None, 0.5))
            .map(|d| d.as_secs_f64())
            .collect();
        assert_eq!(waits.len(), 5);
        assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
        let total: f64 = waits.iter().sum();
        assert!((15.0..=20.0).contains(&total), "outages get ~18 s: {total}");
        let mut r = Retries::new(5);
        assert_eq!(
            r.next_delay(Failure::Other, Some(Duration::from_secs(3)), 0.5),
            Some(Duration::from_secs(3))
        );

        // A busy database: the first retry at once, small steps, the same total patience.
        let mut r = Retries::new(5);
        let waits: Vec<f64> = std::iter::from_fn(|| r.next_delay(Failure::Busy, None, 0.5))
            .map(|d| d.as_secs_f64())
            .collect();
        assert!(waits[0] <= 0.025, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= 1.0), "{waits:?}");
        assert!(waits.len() > 20, "many small retries: {}", waits.len());
        let total: f64 = waits.iter().sum();
        assert!(
            (total - 17.6).abs() < 1.0,
            "busy retries stop at the outage patience: {total}"
        );
        // Busy retries do not use up the outage retries, and 0 means no retry at all.
        assert!(r.next_delay(Failure::Other, None, 0.5).is_some());
        let mut none = Retries::new(0);
        assert_eq!(none.next_delay(Failure::Busy, None, 0.5), None);
        assert_eq!(none.next_delay(Failure::Other, None, 0.5), None);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("999"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(60)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers), None);
    }

    #[test]
    fn status_errors_mention_auth_on_401() {
        let err = ApiError {
            method: "GET",
            path: "/work_pools/x".into(),
            kind: ApiErrorKind::Status {
                code: 401,
                detail: "Unauthorized".into(),
            },
        };
        assert!(err.is_auth());
        assert_eq!(
            err.to_string(),
            "GET /work_pools/x failed: 401 Unauthorized: Unauthorized (check PREFECT_API_KEY / PREFECT_API_AUTH_STRING)"
        );
    }
}
