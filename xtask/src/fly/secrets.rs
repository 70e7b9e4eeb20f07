//! What a release needs from its environment, and the checklist that proves it. Pure: the
//! callers ([`crate::fly::checklist`]) read the environment, run `fly` and probe the server.
//!
//! The release command (`xtask register-flows`, fly.toml `[deploy] release_command`) builds its
//! Prefect client with `ApiConfig::from_vars`, which reads exactly the variables named here:
//! - `PREFECT_API_URL`: required. A secret, or a plain value in fly.toml `[env]` (it is not
//!   secret; Fly lets a secret of the same name override it).
//! - credentials, depending on the server the URL points at:
//!   Prefect Cloud (`api.prefect.cloud`, or a `…/accounts/<uuid>/workspaces/<uuid>` path) needs
//!   `PREFECT_API_KEY` (a Bearer token); a self-hosted server needs one of
//!   `PREFECT_API_AUTH_STRING` (Basic auth, Prefect's server-side `PREFECT_SERVER_API_AUTH_STRING`)
//!   or `PREFECT_API_KEY` (a gateway checking Bearer tokens). Without them the release works
//!   only if the server answers without credentials; check-secrets probes that with a read and
//!   then warns loudly (anyone who can reach the URL can change deployments) instead of failing.
//!   `XTASK_REQUIRE_CREDENTIALS=true` (fly.toml `[env]` or this host) makes them mandatory.
//!
//! Values never enter this module's output: items carry names, statuses and masked URLs only.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::prefect::api::{is_cloud_workspace_path, is_prefect_cloud, plain_http_warning};

pub(crate) const PREFECT_API_URL: &str = "PREFECT_API_URL";
pub(crate) const PREFECT_API_KEY: &str = "PREFECT_API_KEY";
pub(crate) const PREFECT_API_AUTH_STRING: &str = "PREFECT_API_AUTH_STRING";
/// The switch that makes credentials mandatory for a self-hosted server (fly.toml `[env]` or
/// this host's environment): a team policy, for servers that happen to answer without them.
pub(crate) const XTASK_REQUIRE_CREDENTIALS: &str = "XTASK_REQUIRE_CREDENTIALS";

/// The release command's own guard: with [`XTASK_REQUIRE_CREDENTIALS`] on in `vars` (fly.toml
/// `[env]` reaches the release Machine), running without credentials is refused before any
/// request. `None` when the policy is off or met.
pub fn missing_required_credentials(vars: &crate::sys::env_vars::EnvVars) -> Option<String> {
    if !switch_is_on(vars.get(XTASK_REQUIRE_CREDENTIALS)) {
        return None;
    }
    let env = LocalEnv::from_lookup(|name| vars.get(name).map(str::to_string));
    let in_url = env.api_url.as_deref().is_some_and(url_has_credentials);
    (!env.has_api_key && !env.has_auth_string && !in_url).then(|| {
        format!(
            "{XTASK_REQUIRE_CREDENTIALS} is on, but neither {PREFECT_API_KEY} nor \
             {PREFECT_API_AUTH_STRING} is set; set one (a Fly secret for the release command)"
        )
    })
}

/// Whether `value` of [`XTASK_REQUIRE_CREDENTIALS`] turns the policy on (`1`, `true`, `yes`, `on`).
pub(crate) fn switch_is_on(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The kind of Prefect server a URL points at; it decides which credential is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ServerKind {
    Cloud,
    SelfHosted,
}

/// One thing the release needs: any one of `any_of` must be present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requirement {
    pub any_of: &'static [&'static str],
    /// Whether a plain value in fly.toml `[env]` satisfies it (only for non-secret values).
    pub fly_env_ok: bool,
    /// Why the release command needs it (shown next to a missing item).
    pub why: &'static str,
    /// Credentials a server may do without: missing ones fail only if the server demands them
    /// (or [`XTASK_REQUIRE_CREDENTIALS`] does).
    pub server_may_waive: bool,
}

/// What a read without credentials showed, which decides whether missing credentials fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unauthenticated {
    /// [`XTASK_REQUIRE_CREDENTIALS`] is on: the answer does not matter.
    Forbidden,
    /// The server at `url` (masked) answered the read.
    Answered { url: String },
    /// The server at `url` refused it with `code` (401/403).
    Refused { url: String, code: u16 },
    /// No answer to go by (no local URL, server unreachable, another error).
    Unknown(String),
}

impl Requirement {
    /// `A` or `A or B`, as shown in the checklist.
    pub(crate) fn label(&self) -> String {
        self.any_of.join(" or ")
    }
}

/// The single list of what the release command reads, for a server of `kind`.
pub(crate) fn required(kind: ServerKind) -> Vec<Requirement> {
    let url = Requirement {
        any_of: &[PREFECT_API_URL],
        fly_env_ok: true,
        why: "the Prefect API the release command registers the deployments with",
        server_may_waive: false,
    };
    let auth = match kind {
        ServerKind::Cloud => Requirement {
            any_of: &[PREFECT_API_KEY],
            fly_env_ok: false,
            why: "Prefect Cloud authenticates with an API key",
            server_may_waive: false,
        },
        ServerKind::SelfHosted => Requirement {
            any_of: &[PREFECT_API_AUTH_STRING, PREFECT_API_KEY],
            fly_env_ok: false,
            why:
                "credentials for the self-hosted Prefect server (Basic auth string or gateway key)",
            server_may_waive: true,
        },
    };
    vec![url, auth]
}

// ---------------------------------------------------------------------------------------------
// PREFECT_API_URL

/// A PREFECT_API_URL that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiUrl {
    /// Safe to print: scheme, `***@` if it carried credentials, host, port, path.
    pub display: String,
    pub kind: ServerKind,
}

/// Checks that `url` is an http(s) URL of a Prefect API: the path ends in `/api` (behind any
/// prefix, e.g. a gateway's `/prefect-internal/prefect/api`) or is Prefect Cloud's
/// `/api/accounts/<uuid>/workspaces/<uuid>`. The error text never contains the URL's credentials.
pub(crate) fn validate_api_url(url: &str) -> Result<ApiUrl, String> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| format!("is not a valid URL ({e}); expected e.g. https://host/api"))?;
    let display = display_url(&parsed);
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{display}: scheme must be http or https, not `{}`",
            parsed.scheme()
        ));
    }
    let host = parsed.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{display}: has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{display}: must not have a query or fragment (Prefect appends paths to it)"
        ));
    }
    let segments: Vec<&str> = parsed.path().split('/').filter(|s| !s.is_empty()).collect();
    let kind = if is_cloud_workspace_path(&parsed) {
        ServerKind::Cloud
    } else if segments.last() == Some(&"api") {
        // Not a workspace path: Cloud only by its host, and then the workspace is missing.
        if is_prefect_cloud(&parsed) {
            return Err(format!(
                "{display}: a Prefect Cloud URL must name the workspace: \
                 https://api.prefect.cloud/api/accounts/<account-id>/workspaces/<workspace-id>"
            ));
        }
        ServerKind::SelfHosted
    } else {
        return Err(format!(
            "{display}: the path must end in /api (e.g. http://127.0.0.1:4200/api), or be \
             Prefect Cloud's /api/accounts/<uuid>/workspaces/<uuid>"
        ));
    };
    Ok(ApiUrl { display, kind })
}

/// scheme://[***@]host[:port]/path — never the user, password, query or fragment.
fn display_url(url: &reqwest::Url) -> String {
    let credentials = if !url.username().is_empty() || url.password().is_some() {
        "***@"
    } else {
        ""
    };
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{credentials}{host}{port}{}",
        url.scheme(),
        url.path().trim_end_matches('/')
    )
}

/// Whether `url` carries `user[:password]@` (a secret that must not live in fly.toml).
pub(crate) fn url_has_credentials(url: &str) -> bool {
    reqwest::Url::parse(url.trim())
        .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

// ---------------------------------------------------------------------------------------------
// `fly secrets list --json`

/// Deployment state of a Fly secret (flyctl ≥ v0.4.6 reports it; older versions do not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretStatus {
    Deployed,
    /// Set with `--stage`: only Machines started or updated afterwards have it.
    Staged,
    /// Deployed to some Machines only.
    Partial,
    Unknown,
    /// flyctl did not report a status (older versions, or apps with >100 Machines).
    NotReported,
    /// A status this xtask does not know yet.
    Other(String),
}

impl fmt::Display for SecretStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretStatus::Deployed => f.write_str("Deployed"),
            SecretStatus::Staged => f.write_str("Staged"),
            SecretStatus::Partial => f.write_str("Partial"),
            SecretStatus::Unknown => f.write_str("Unknown"),
            SecretStatus::NotReported => f.write_str("not reported"),
            SecretStatus::Other(s) => f.write_str(s),
        }
    }
}

/// A secret as listed by flyctl: its name and status. The digest and any value are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlySecret {
    pub name: String,
    pub status: SecretStatus,
}

/// The JSON shapes flyctl has printed for `fly secrets list --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FlySecretsFormat {
    /// flyctl < v0.3.178 (GraphQL): `{"Name","Digest","CreatedAt"}`.
    GraphQl,
    /// flyctl v0.3.178 – v0.4.5 (Machines API): `{"name","digest","created_at","updated_at"}`.
    MachinesApi,
    /// flyctl ≥ v0.4.6: `{"name","digest","status"}`.
    WithStatus,
}

impl fmt::Display for FlySecretsFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlySecretsFormat::GraphQl => "Name/Digest/CreatedAt (flyctl < v0.3.178)",
            FlySecretsFormat::MachinesApi => "name/digest/created_at (flyctl v0.3.178 to v0.4.5)",
            FlySecretsFormat::WithStatus => "name/digest/status (flyctl >= v0.4.6)",
        })
    }
}

/// The parsed list; `format` is `None` for an empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlySecrets {
    pub format: Option<FlySecretsFormat>,
    pub secrets: Vec<FlySecret>,
}

/// Parses any of the three formats (also the Machines API's `{"secrets": [...]}` wrapper and
/// Go's `null` for an empty list). The error names the offending entry by index, never a value.
pub(crate) fn parse_fly_secrets(json: &str) -> Result<FlySecrets, String> {
    let value: Value = serde_json::from_str(json.trim()).map_err(|e| {
        format!("`fly secrets list --json` printed something that is not JSON ({e})")
    })?;
    let entries = match &value {
        Value::Null => {
            return Ok(FlySecrets {
                format: None,
                secrets: Vec::new(),
            })
        }
        Value::Array(entries) => entries,
        Value::Object(map) => match map.get("secrets") {
            Some(Value::Array(entries)) => entries,
            Some(Value::Null) => {
                return Ok(FlySecrets {
                    format: None,
                    secrets: Vec::new(),
                })
            }
            _ => return Err("`fly secrets list --json`: expected a JSON array of secrets".into()),
        },
        _ => return Err("`fly secrets list --json`: expected a JSON array of secrets".into()),
    };
    let mut format = None;
    let mut secrets = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let Value::Object(fields) = entry else {
            return Err(format!(
                "`fly secrets list --json`: entry {index} is not an object"
            ));
        };
        let (entry_format, name) = if let Some(name) = fields.get("Name") {
            (FlySecretsFormat::GraphQl, name)
        } else if let Some(name) = fields.get("name") {
            let has_status = fields.contains_key("status");
            let has_dates = fields.contains_key("created_at") || fields.contains_key("updated_at");
            let f = if has_status || !has_dates {
                FlySecretsFormat::WithStatus
            } else {
                FlySecretsFormat::MachinesApi
            };
            (f, name)
        } else {
            return Err(format!(
                "`fly secrets list --json`: entry {index} has no name"
            ));
        };
        let Some(name) = name.as_str().filter(|n| !n.is_empty()) else {
            return Err(format!(
                "`fly secrets list --json`: entry {index} has an empty or non-string name"
            ));
        };
        let status = match fields.get("status") {
            None | Some(Value::Null) => SecretStatus::NotReported,
            Some(Value::String(s)) => parse_status(s),
            Some(_) => SecretStatus::Other("(non-string status)".into()),
        };
        format.get_or_insert(entry_format);
        secrets.push(FlySecret {
            name: name.to_string(),
            status,
        });
    }
    Ok(FlySecrets { format, secrets })
}

fn parse_status(s: &str) -> SecretStatus {
    match s.to_ascii_lowercase().as_str() {
        "deployed" => SecretStatus::Deployed,
        "staged" => SecretStatus::Staged,
        "partial" => SecretStatus::Partial,
        "unknown" => SecretStatus::Unknown,
        "" => SecretStatus::NotReported,
        _ => SecretStatus::Other(s.chars().take(40).collect()),
    }
}

// ---------------------------------------------------------------------------------------------
// The checklist

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// This machine's environment and the Prefect server it points at.
    Local,
    /// The Fly app's secrets and fly.toml.
    Fly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Skipped,
    /// Works, but deserves attention (e.g. a staged secret).
    Warn,
    /// Missing or broken: the release would fail.
    Fail,
}

/// One line of the checklist. `detail` holds names, statuses and masked URLs, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckItem {
    pub scope: Scope,
    pub check: String,
    pub status: CheckStatus,
    pub detail: String,
}

impl CheckItem {
    pub(crate) fn new(
        scope: Scope,
        check: impl Into<String>,
        status: CheckStatus,
        detail: impl Into<String>,
    ) -> Self {
        CheckItem {
            scope,
            check: check.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// Every check's outcome, collected so all problems are reported at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checklist {
    pub items: Vec<CheckItem>,
}

impl Checklist {
    pub(crate) fn push(&mut self, item: CheckItem) {
        self.items.push(item);
    }

    pub(crate) fn extend(&mut self, items: impl IntoIterator<Item = CheckItem>) {
        self.items.extend(items);
    }

    pub fn failures(&self) -> impl Iterator<Item = &CheckItem> {
        self.items.iter().filter(|i| i.status == CheckStatus::Fail)
    }

    pub fn has_failures(&self) -> bool {
        self.failures().next().is_some()
    }

    /// The human checklist: one line per item, then a one-line verdict.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mut scope = None;
        for item in &self.items {
            if scope != Some(item.scope) {
                scope = Some(item.scope);
                out.push_str(match item.scope {
                    Scope::Local => "This machine\n",
                    Scope::Fly => "Fly app\n",
                });
            }
            let mark = match item.status {
                CheckStatus::Ok => "[ok]  ",
                CheckStatus::Skipped => "[skip]",
                CheckStatus::Warn => "[warn]",
                CheckStatus::Fail => "[FAIL]",
            };
            out.push_str(&format!("  {mark} {}: {}\n", item.check, item.detail));
        }
        let failures = self.failures().count();
        let warnings = self
            .items
            .iter()
            .filter(|i| i.status == CheckStatus::Warn)
            .count();
        if failures == 0 {
            out.push_str(&format!(
                "All required secrets are in place ({warnings} warning(s)).\n"
            ));
        } else {
            out.push_str(&format!(
                "{failures} problem(s) must be fixed before a release.\n"
            ));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "ok": !self.has_failures(),
            "items": self.items,
        })
    }
}

/// Which PREFECT_* variables this machine has set (names only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LocalEnv {
    pub api_url: Option<String>,
    pub has_api_key: bool,
    pub has_auth_string: bool,
}

impl LocalEnv {
    /// Reads the variables through `get` (the process environment in production).
    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> LocalEnv {
        let set = |name: &str| get(name).is_some_and(|v| !v.is_empty());
        LocalEnv {
            api_url: get(PREFECT_API_URL).filter(|v| !v.is_empty()),
            has_api_key: set(PREFECT_API_KEY),
            has_auth_string: set(PREFECT_API_AUTH_STRING),
        }
    }
}

/// The local half of the checklist that needs no network: the URL and which credentials are set.
/// Returns the validated URL when the server can be probed.
pub(crate) fn check_local_env(env: &LocalEnv) -> (Vec<CheckItem>, Option<ApiUrl>) {
    let mut items = Vec::new();
    let url = match &env.api_url {
        None => {
            items.push(CheckItem::new(
                Scope::Local,
                PREFECT_API_URL,
                CheckStatus::Fail,
                "not set; export the Prefect API URL, e.g. https://host/api",
            ));
            None
        }
        Some(raw) => match validate_api_url(raw) {
            Ok(url) => {
                let kind = match url.kind {
                    ServerKind::Cloud => "Prefect Cloud",
                    ServerKind::SelfHosted => "self-hosted server",
                };
                items.push(CheckItem::new(
                    Scope::Local,
                    PREFECT_API_URL,
                    CheckStatus::Ok,
                    format!("{} ({kind})", url.display),
                ));
                Some(url)
            }
            Err(problem) => {
                items.push(CheckItem::new(
                    Scope::Local,
                    PREFECT_API_URL,
                    CheckStatus::Fail,
                    problem,
                ));
                None
            }
        },
    };
    let set: Vec<&str> = [
        (PREFECT_API_KEY, env.has_api_key),
        (PREFECT_API_AUTH_STRING, env.has_auth_string),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let cloud = url.as_ref().map(|u| u.kind) == Some(ServerKind::Cloud);
    let item = if cloud && !env.has_api_key {
        CheckItem::new(
            Scope::Local,
            PREFECT_API_KEY,
            CheckStatus::Fail,
            "not set; Prefect Cloud needs an API key (Profile > API keys)",
        )
    } else if set.is_empty() {
        // Locally a server without auth is common (a dev server); the authenticated read decides.
        CheckItem::new(
            Scope::Local,
            "credentials",
            CheckStatus::Warn,
            "neither PREFECT_API_KEY nor PREFECT_API_AUTH_STRING is set; fine only if the server needs no auth",
        )
    } else {
        CheckItem::new(
            Scope::Local,
            "credentials",
            CheckStatus::Ok,
            format!("{} set", set.join(" and ")),
        )
    };
    items.push(item);
    let sends_credentials =
        !set.is_empty() || env.api_url.as_deref().is_some_and(url_has_credentials);
    if let (true, Some(raw)) = (sends_credentials, &env.api_url) {
        if let Some(warning) = plain_http_warning(raw) {
            items.push(CheckItem::new(
                Scope::Local,
                "transport",
                CheckStatus::Warn,
                warning,
            ));
        }
    }
    (items, url)
}

/// How a request to the server ended, reduced to what the checklist reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    Ok,
    /// 401 or 403.
    Auth(u16),
    Timeout,
    Unreachable(String),
    /// Any other failure (another status, an invalid response); the text is already safe.
    Failed(String),
}

/// A checklist item for one server probe (`what` is e.g. "server health").
pub(crate) fn probe_item(what: &str, url_display: &str, outcome: &ProbeOutcome) -> CheckItem {
    let (status, detail) = match outcome {
        ProbeOutcome::Ok => (CheckStatus::Ok, format!("{url_display} answered")),
        ProbeOutcome::Auth(code) => (
            CheckStatus::Fail,
            format!(
                "auth problem: {url_display} answered {code}; check PREFECT_API_KEY / PREFECT_API_AUTH_STRING"
            ),
        ),
        ProbeOutcome::Timeout => (CheckStatus::Fail, format!("unreachable: {url_display} timed out")),
        ProbeOutcome::Unreachable(why) => (CheckStatus::Fail, format!("unreachable: {url_display}: {why}")),
        ProbeOutcome::Failed(why) => (CheckStatus::Fail, format!("{url_display}: {why}")),
    };
    CheckItem::new(Scope::Local, what, status, detail)
}

/// The Fly half: each requirement against the app's secrets and fly.toml `[env]` (names only).
/// `unauthenticated` decides whether missing credentials a server may waive fail or warn.
/// `app` is used in the fix-it hints.
pub(crate) fn check_fly_secrets(
    required: &[Requirement],
    listed: &[FlySecret],
    fly_env: &BTreeMap<String, String>,
    unauthenticated: &Unauthenticated,
    app: &str,
) -> Vec<CheckItem> {
    let mut items = Vec::new();
    for req in required {
        let label = req.label();
        let found: Vec<&FlySecret> = req
            .any_of
            .iter()
            .filter_map(|name| listed.iter().find(|s| s.name == *name))
            .collect();
        let in_env: Vec<&str> = req
            .any_of
            .iter()
            .copied()
            .filter(|n| fly_env.contains_key(*n))
            .collect();
        let item = match found.first() {
            Some(secret) => {
                let (status, detail) = match &secret.status {
                    SecretStatus::Deployed | SecretStatus::NotReported => {
                        let mut d = format!("{} is a secret", secret.name);
                        if secret.status == SecretStatus::Deployed {
                            d.push_str(" (Deployed)");
                        }
                        if in_env.contains(&secret.name.as_str()) {
                            d.push_str("; it overrides the value in fly.toml [env]");
                        }
                        (CheckStatus::Ok, d)
                    }
                    SecretStatus::Staged => (
                        CheckStatus::Warn,
                        format!(
                            "{} is only Staged: running Machines do not have it yet; the next deploy's \
                             release machine will (or run `fly secrets deploy --app {app}`)",
                            secret.name
                        ),
                    ),
                    SecretStatus::Partial => (
                        CheckStatus::Warn,
                        format!(
                            "{} is Partial: deployed to some Machines only; run `fly secrets deploy --app {app}`",
                            secret.name
                        ),
                    ),
                    other => (CheckStatus::Warn, format!("{} has status {other}", secret.name)),
                };
                CheckItem::new(Scope::Fly, label, status, detail)
            }
            None if req.fly_env_ok && !in_env.is_empty() => CheckItem::new(
                Scope::Fly,
                label,
                CheckStatus::Ok,
                format!("{} from fly.toml [env]", in_env.join(", ")),
            ),
            None => {
                let name = req.any_of.first().copied().unwrap_or_default();
                let how = format!(
                    "set it without putting the value on the command line: \
                     `echo {name}=... | fly secrets import --app {app}`"
                );
                let (status, why) = match unauthenticated {
                    Unauthenticated::Answered { url } if req.server_may_waive => (
                        CheckStatus::Warn,
                        format!(
                            "MISSING, and {url} answered a read without credentials: the release \
                             will work, but ANYONE WHO CAN REACH THAT URL CAN CHANGE DEPLOYMENTS; \
                             protect the server (PREFECT_SERVER_API_AUTH_STRING or a gateway) and \
                             {how}; {XTASK_REQUIRE_CREDENTIALS}=true in fly.toml [env] makes this a failure"
                        ),
                    ),
                    Unauthenticated::Refused { url, code } if req.server_may_waive => (
                        CheckStatus::Fail,
                        format!(
                            "missing, and {url} demands credentials (answered {code} to a read \
                             without them); {how}"
                        ),
                    ),
                    Unauthenticated::Forbidden if req.server_may_waive => (
                        CheckStatus::Fail,
                        format!(
                            "missing, and {XTASK_REQUIRE_CREDENTIALS} makes credentials mandatory; {how}"
                        ),
                    ),
                    Unauthenticated::Unknown(reason) if req.server_may_waive => (
                        CheckStatus::Fail,
                        format!(
                            "missing ({}), and whether the server does without them is unknown \
                             ({reason}); {how}",
                            req.why
                        ),
                    ),
                    _ => (CheckStatus::Fail, format!("missing ({}); {how}", req.why)),
                };
                let mut detail = why;
                if !in_env.is_empty() {
                    detail.push_str(&format!(
                        "; {} is in fly.toml [env] in plain text: move it to a secret",
                        in_env.join(", ")
                    ));
                }
                CheckItem::new(Scope::Fly, label, status, detail)
            }
        };
        items.push(item);
    }
    // Secret values written into fly.toml are readable by anyone with the repository.
    for name in [PREFECT_API_KEY, PREFECT_API_AUTH_STRING] {
        if fly_env.contains_key(name) && listed.iter().any(|s| s.name == name) {
            items.push(CheckItem::new(
                Scope::Fly,
                name,
                CheckStatus::Warn,
                "also in fly.toml [env] in plain text; remove it there",
            ));
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0e8f7c2a-1b2c-4d5e-8f90-0123456789ab";
    const W: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";

    #[test]
    fn accepts_api_urls() {
        for (url, kind) in [
            ("http://127.0.0.1:4200/api", ServerKind::SelfHosted),
            (
                "https://gw.example/prefect-internal/prefect/api",
                ServerKind::SelfHosted,
            ),
            (
                "https://gw.example/prefect-internal/prefect/api/",
                ServerKind::SelfHosted,
            ),
            (
                &format!("https://api.prefect.cloud/api/accounts/{A}/workspaces/{W}"),
                ServerKind::Cloud,
            ),
            (
                &format!("https://proxy.example/x/api/accounts/{A}/workspaces/{W}/"),
                ServerKind::Cloud,
            ),
        ] {
            let got = validate_api_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(got.kind, kind, "{url}");
        }
    }

    #[test]
    fn rejects_bad_api_urls() {
        for (url, needle) in [
            ("not a url", "not a valid URL"),
            ("ftp://host/api", "scheme"),
            ("https://host/", "must end in /api"),
            ("https://host/api/v2", "must end in /api"),
            ("https://host/api?x=1", "query"),
            ("https://api.prefect.cloud/api", "must name the workspace"),
            (
                "https://api.prefect.cloud/api/accounts/x/workspaces/y",
                "must end in /api",
            ),
        ] {
            let err = validate_api_url(url).expect_err(url);
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn url_credentials_never_shown() {
        let url = "https://admin:hunter2-sentinel@gw.example:8443/prefect/api";
        let ok = validate_api_url(url).unwrap();
        assert_eq!(ok.display, "https://***@gw.example:8443/prefect/api");
        let err = validate_api_url("https://admin:hunter2-sentinel@gw.example/nope").unwrap_err();
        assert!(!err.contains("hunter2") && !err.contains("admin"), "{err}");
        assert!(err.contains("***@gw.example"), "{err}");
    }

    #[test]
    fn detects_url_credentials() {
        assert!(url_has_credentials("https://u:p@h/api"));
        assert!(url_has_credentials("https://token@h/api"));
        assert!(!url_has_credentials("https://h/api"));
        assert!(!url_has_credentials("not a url"));
    }

    #[test]
    fn required_depends_on_server_kind() {
        let cloud = required(ServerKind::Cloud);
        assert_eq!(cloud[0].any_of, &[PREFECT_API_URL]);
        assert_eq!(cloud[1].any_of, &[PREFECT_API_KEY]);
        let own = required(ServerKind::SelfHosted);
        assert_eq!(own[1].label(), "PREFECT_API_AUTH_STRING or PREFECT_API_KEY");
        assert!(own[0].fly_env_ok && !own[1].fly_env_ok);
    }

    /// The release command's client must read exactly these names; a rename on either side fails here.
    #[test]
    fn names_match_what_the_client_reads() {
        let client = include_str!("../prefect/api.rs");
        for name in [PREFECT_API_URL, PREFECT_API_KEY, PREFECT_API_AUTH_STRING] {
            assert!(
                client.contains(&format!("\"{name}\"")),
                "prefect/api.rs does not read {name}"
            );
        }
    }

    #[test]
    fn parses_graphql_format() {
        let json = r#"[{"Name":"PREFECT_API_KEY","Digest":"abc","CreatedAt":"2024-01-01T00:00:00Z"},
                       {"Name":"OTHER","Digest":"def","CreatedAt":"2024-01-01T00:00:00Z"}]"#;
        let parsed = parse_fly_secrets(json).unwrap();
        assert_eq!(parsed.format, Some(FlySecretsFormat::GraphQl));
        assert_eq!(
            parsed.secrets[0],
            FlySecret {
                name: "PREFECT_API_KEY".into(),
                status: SecretStatus::NotReported
            }
        );
        assert_eq!(parsed.secrets.len(), 2);
    }

    #[test]
    fn parses_machines_api_format() {
        let json = r#"[{"name":"PREFECT_API_URL","digest":"a1","created_at":"2025-10-01T00:00:00Z","updated_at":"2025-10-02T00:00:00Z"}]"#;
        let parsed = parse_fly_secrets(json).unwrap();
        assert_eq!(parsed.format, Some(FlySecretsFormat::MachinesApi));
        assert_eq!(parsed.secrets[0].name, "PREFECT_API_URL");
        assert_eq!(parsed.secrets[0].status, SecretStatus::NotReported);
        // The Machines API's own wrapper.
        let wrapped = format!(r#"{{"secrets":{json}}}"#);
        assert_eq!(parse_fly_secrets(&wrapped).unwrap(), parsed);
    }

    #[test]
    fn parses_status_format() {
        let json = r#"[{"name":"A","digest":"1","status":"Deployed"},{"name":"B","digest":"2","status":"Staged"},
                       {"name":"C","digest":"3","status":"Partial"},{"name":"D","digest":"4","status":"Unknown"},
                       {"name":"E","digest":"5","status":"Rolling"},{"name":"F","digest":"6"}]"#;
        let parsed = parse_fly_secrets(json).unwrap();
        assert_eq!(parsed.format, Some(FlySecretsFormat::WithStatus));
        let statuses: Vec<SecretStatus> = parsed.secrets.into_iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            vec![
                SecretStatus::Deployed,
                SecretStatus::Staged,
                SecretStatus::Partial,
                SecretStatus::Unknown,
                SecretStatus::Other("Rolling".into()),
                SecretStatus::NotReported,
            ]
        );
    }

    #[test]
    fn parses_empty_and_rejects_garbage() {
        assert_eq!(parse_fly_secrets("null").unwrap().secrets, vec![]);
        assert_eq!(parse_fly_secrets(" [] \n").unwrap().format, None);
        for bad in [
            "",
            "Error: not logged in",
            "{}",
            "[1]",
            r#"[{"digest":"x"}]"#,
            r#"[{"name":""}]"#,
        ] {
            assert!(parse_fly_secrets(bad).is_err(), "{bad:?}");
        }
        // A value field (never sent by flyctl, but possible from other tools) is not kept or echoed.
        let err = parse_fly_secrets(r#"[{"value":"hunter2"}]"#).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    fn secret(name: &str, status: SecretStatus) -> FlySecret {
        FlySecret {
            name: name.into(),
            status,
        }
    }

    #[test]
    fn fly_checklist_reports_every_problem() {
        let env: BTreeMap<String, String> = BTreeMap::new();
        let items = check_fly_secrets(
            &required(ServerKind::SelfHosted),
            &[],
            &env,
            &Unauthenticated::Unknown("no local URL".into()),
            "app-x",
        );
        let fails: Vec<&str> = items
            .iter()
            .filter(|i| i.status == CheckStatus::Fail)
            .map(|i| i.check.as_str())
            .collect();
        assert_eq!(
            fails,
            vec![
                "PREFECT_API_URL",
                "PREFECT_API_AUTH_STRING or PREFECT_API_KEY"
            ]
        );
        assert!(
            items[0].detail.contains("fly secrets import --app app-x"),
            "{}",
            items[0].detail
        );
    }

    #[test]
    fn fly_checklist_accepts_env_url_and_either_credential() {
        let env = BTreeMap::from([(PREFECT_API_URL.to_string(), "https://gw/api".to_string())]);
        let listed = [secret(PREFECT_API_KEY, SecretStatus::Deployed)];
        let items = check_fly_secrets(
            &required(ServerKind::SelfHosted),
            &listed,
            &env,
            &Unauthenticated::Forbidden,
            "a",
        );
        assert!(
            items.iter().all(|i| i.status == CheckStatus::Ok),
            "{items:#?}"
        );
        assert!(items[0].detail.contains("fly.toml [env]"));
    }

    /// The seed's setup: one secret, PREFECT_API_URL, and a server that needs no credentials.
    #[test]
    fn missing_credentials_depend_on_what_the_server_says() {
        let listed = [secret(PREFECT_API_URL, SecretStatus::Deployed)];
        let env = BTreeMap::new();
        let credentials = |unauthenticated: Unauthenticated| {
            let items = check_fly_secrets(
                &required(ServerKind::SelfHosted),
                &listed,
                &env,
                &unauthenticated,
                "a",
            );
            assert_eq!(items[0].status, CheckStatus::Ok, "{items:#?}");
            items[1].clone()
        };
        let open = credentials(Unauthenticated::Answered {
            url: "https://gw/api".into(),
        });
        assert_eq!(open.status, CheckStatus::Warn);
        assert!(
            open.detail
                .contains("ANYONE WHO CAN REACH THAT URL CAN CHANGE DEPLOYMENTS")
                && open.detail.contains("XTASK_REQUIRE_CREDENTIALS=true"),
            "{}",
            open.detail
        );
        let refused = credentials(Unauthenticated::Refused {
            url: "https://gw/api".into(),
            code: 401,
        });
        assert_eq!(refused.status, CheckStatus::Fail);
        assert!(
            refused.detail.contains("answered 401"),
            "{}",
            refused.detail
        );
        let policy = credentials(Unauthenticated::Forbidden);
        assert_eq!(policy.status, CheckStatus::Fail);
        assert!(policy.detail.contains("mandatory"), "{}", policy.detail);
        assert_eq!(
            credentials(Unauthenticated::Unknown("timed out".into())).status,
            CheckStatus::Fail
        );
        // Prefect Cloud never does without its key.
        let cloud = check_fly_secrets(
            &required(ServerKind::Cloud),
            &listed,
            &env,
            &Unauthenticated::Answered { url: "u".into() },
            "a",
        );
        assert_eq!(cloud[1].status, CheckStatus::Fail);
    }

    #[test]
    fn the_release_command_refuses_to_run_without_required_credentials() {
        let vars = |pairs: &[(&str, &str)]| -> crate::sys::env_vars::EnvVars {
            pairs.iter().copied().collect()
        };
        let url = (PREFECT_API_URL, "https://gw/api");
        let on = (XTASK_REQUIRE_CREDENTIALS, "true");
        assert_eq!(missing_required_credentials(&vars(&[url])), None);
        let problem = missing_required_credentials(&vars(&[url, on])).unwrap();
        assert!(
            problem.contains("XTASK_REQUIRE_CREDENTIALS is on"),
            "{problem}"
        );
        assert_eq!(
            missing_required_credentials(&vars(&[url, on, (PREFECT_API_KEY, "k")])),
            None
        );
        assert_eq!(
            missing_required_credentials(&vars(&[(PREFECT_API_URL, "https://u:p@gw/api"), on])),
            None
        );
    }

    #[test]
    fn require_credentials_switch_values() {
        for on in ["1", "true", "TRUE", " yes ", "on"] {
            assert!(switch_is_on(Some(on)), "{on}");
        }
        for off in ["", "0", "false", "no", "off", "maybe"] {
            assert!(!switch_is_on(Some(off)), "{off}");
        }
        assert!(!switch_is_on(None));
    }

    #[test]
    fn local_checklist_warns_on_credentials_over_plain_http() {
        let remote = LocalEnv {
            api_url: Some("http://gw.example/api".into()),
            has_auth_string: true,
            ..LocalEnv::default()
        };
        let (items, _) = check_local_env(&remote);
        let transport = items.iter().find(|i| i.check == "transport").unwrap();
        assert_eq!(transport.status, CheckStatus::Warn);
        assert!(
            transport.detail.contains("plain http"),
            "{}",
            transport.detail
        );
        // No credentials, https, loopback or Fly's private network: nothing to say.
        for env in [
            LocalEnv {
                api_url: Some("http://gw.example/api".into()),
                ..LocalEnv::default()
            },
            LocalEnv {
                api_url: Some("https://gw.example/api".into()),
                has_api_key: true,
                ..LocalEnv::default()
            },
            LocalEnv {
                api_url: Some("http://127.0.0.1:4200/api".into()),
                has_api_key: true,
                ..LocalEnv::default()
            },
            LocalEnv {
                api_url: Some("http://prefect.flycast/api".into()),
                has_api_key: true,
                ..LocalEnv::default()
            },
        ] {
            let (items, _) = check_local_env(&env);
            assert!(items.iter().all(|i| i.check != "transport"), "{env:?}");
        }
        // Credentials in the URL count too.
        let in_url = LocalEnv {
            api_url: Some("http://u:p@gw.example/api".into()),
            ..LocalEnv::default()
        };
        let (items, _) = check_local_env(&in_url);
        assert!(items.iter().any(|i| i.check == "transport"));
    }

    #[test]
    fn fly_checklist_warns_on_staged_and_partial() {
        let listed = [
            secret(PREFECT_API_URL, SecretStatus::Staged),
            secret(PREFECT_API_AUTH_STRING, SecretStatus::Partial),
        ];
        let items = check_fly_secrets(
            &required(ServerKind::SelfHosted),
            &listed,
            &BTreeMap::new(),
            &Unauthenticated::Forbidden,
            "a",
        );
        assert_eq!(items[0].status, CheckStatus::Warn);
        assert!(items[0].detail.contains("Staged"));
        assert_eq!(items[1].status, CheckStatus::Warn);
        assert!(items[1].detail.contains("Partial"));
        let list = Checklist { items };
        assert!(!list.has_failures());
    }

    #[test]
    fn fly_checklist_cloud_needs_api_key_not_auth_string() {
        let listed = [
            secret(PREFECT_API_URL, SecretStatus::Deployed),
            secret(PREFECT_API_AUTH_STRING, SecretStatus::Deployed),
        ];
        let items = check_fly_secrets(
            &required(ServerKind::Cloud),
            &listed,
            &BTreeMap::new(),
            &Unauthenticated::Answered { url: "u".into() },
            "a",
        );
        assert_eq!(items[1].check, PREFECT_API_KEY);
        assert_eq!(items[1].status, CheckStatus::Fail);
    }

    #[test]
    fn fly_checklist_flags_secret_in_plain_env() {
        let env = BTreeMap::from([(PREFECT_API_KEY.to_string(), "x".to_string())]);
        let items = check_fly_secrets(
            &required(ServerKind::Cloud),
            &[secret(PREFECT_API_URL, SecretStatus::Deployed)],
            &env,
            &Unauthenticated::Answered { url: "u".into() },
            "a",
        );
        // A key in [env] does not count as the secret, and the fix says so.
        assert_eq!(items[1].status, CheckStatus::Fail);
        assert!(
            items[1].detail.contains("plain text"),
            "{}",
            items[1].detail
        );
    }

    #[test]
    fn local_env_checks() {
        let (items, url) = check_local_env(&LocalEnv::default());
        assert!(url.is_none());
        assert_eq!(items[0].status, CheckStatus::Fail);
        assert_eq!(items[1].status, CheckStatus::Warn);

        let cloud = LocalEnv {
            api_url: Some(format!(
                "https://api.prefect.cloud/api/accounts/{A}/workspaces/{W}"
            )),
            has_auth_string: true,
            ..LocalEnv::default()
        };
        let (items, url) = check_local_env(&cloud);
        assert_eq!(url.unwrap().kind, ServerKind::Cloud);
        assert_eq!(
            (items[1].check.as_str(), items[1].status),
            (PREFECT_API_KEY, CheckStatus::Fail)
        );

        let own = LocalEnv {
            api_url: Some("http://127.0.0.1:1/api".into()),
            has_auth_string: true,
            ..LocalEnv::default()
        };
        let (items, _) = check_local_env(&own);
        assert_eq!(items[1].status, CheckStatus::Ok);
        assert_eq!(items[1].detail, "PREFECT_API_AUTH_STRING set");

        let lookup = LocalEnv::from_lookup(|n| (n == PREFECT_API_KEY).then(|| "k".to_string()));
        assert!(lookup.has_api_key && !lookup.has_auth_string && lookup.api_url.is_none());
    }

    #[test]
    fn probe_items_name_the_problem() {
        let auth = probe_item(
            "authenticated read",
            "https://h/api",
            &ProbeOutcome::Auth(401),
        );
        assert!(auth.detail.starts_with("auth problem"), "{}", auth.detail);
        let slow = probe_item("server health", "https://h/api", &ProbeOutcome::Timeout);
        assert!(slow.detail.starts_with("unreachable"), "{}", slow.detail);
        assert_eq!(
            probe_item("x", "u", &ProbeOutcome::Ok).status,
            CheckStatus::Ok
        );
    }

    #[test]
    fn checklist_text_and_json() {
        let mut list = Checklist::default();
        list.push(CheckItem::new(
            Scope::Local,
            "PREFECT_API_URL",
            CheckStatus::Ok,
            "https://h/api",
        ));
        list.push(CheckItem::new(
            Scope::Fly,
            "PREFECT_API_KEY",
            CheckStatus::Fail,
            "missing",
        ));
        let text = list.render_text();
        assert!(
            text.contains("This machine\n  [ok]   PREFECT_API_URL: https://h/api"),
            "{text}"
        );
        assert!(
            text.contains("Fly app\n  [FAIL] PREFECT_API_KEY: missing"),
            "{text}"
        );
        assert!(text.contains("1 problem(s)"), "{text}");
        let json = list.to_json();
        assert_eq!(json["ok"], false);
        assert_eq!(json["items"][1]["status"], "fail");
        assert_eq!(json["items"][1]["scope"], "fly");
    }
}
