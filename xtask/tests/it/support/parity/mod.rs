//! The machinery of the parity test: stage a project twice, register one copy with
//! `prefect --no-prompt deploy --all` and the other with `xtask register-flows`, read back what
//! each server stores, normalise it and compare field by field.
//!
//! Server 1 (`XTASK_TEST_PREFECT_API_URL`, no auth) gets xtask; server 2
//! (`XTASK_TEST_PREFECT_API_URL_2`, auth string + CSRF) gets the Prefect CLI.

pub mod corpus;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};
use xtask::prefect::api::PrefectClient;

use crate::support::bin::xtask;
use crate::support::{client_at, scratch_dir, secured_server, server_url, venv_dir};

/// The two servers and a client for each.
pub struct Servers {
    pub xtask_url: String,
    pub cli_url: String,
    pub cli_auth: String,
    pub xtask: PrefectClient,
    pub cli: PrefectClient,
}

impl Servers {
    pub fn from_env() -> Servers {
        let xtask_url = server_url();
        let (cli_url, cli_auth) = secured_server();
        Servers {
            xtask: client_at(&xtask_url, None),
            cli: client_at(&cli_url, Some(&cli_auth)),
            xtask_url,
            cli_url,
            cli_auth,
        }
    }

    pub fn both(&self) -> [&PrefectClient; 2] {
        [&self.xtask, &self.cli]
    }
}

fn venv_prefect() -> PathBuf {
    venv_dir().join("bin/prefect")
}

// ---- server objects a project references ---------------------------------------------------

/// What a project needs on both servers before either engine runs.
#[derive(Default, Clone)]
pub struct Setup {
    pub pools: Vec<String>,
    /// Prefect variables (name, JSON value).
    pub variables: Vec<(String, Value)>,
    /// Block documents (type slug, name, `data`).
    pub blocks: Vec<(String, String, Value)>,
}

pub fn apply_setup(servers: &Servers, setup: &Setup) {
    for client in servers.both() {
        for pool in &setup.pools {
            client
                .create_work_pool(pool, "process")
                .unwrap_or_else(|e| panic!("create pool {pool}: {e}"));
        }
        for (name, value) in &setup.variables {
            create_variable(client, name, value);
        }
        for (slug, name, data) in &setup.blocks {
            create_block(client, slug, name, data);
        }
    }
}

fn create_variable(client: &PrefectClient, name: &str, value: &Value) {
    match client.post("/variables/", &json!({"name": name, "value": value})) {
        Ok(_) => {}
        Err(e) if e.status() == Some(409) => {
            let path = format!("/variables/name/{name}");
            client
                .patch(&path, &json!({"value": value}))
                .unwrap_or_else(|e| panic!("update variable {name}: {e}"));
        }
        Err(e) => panic!("create variable {name}: {e}"),
    }
}

/// A block document through the API, the way `Secret(value=...).save(name)` stores it.
fn create_block(client: &PrefectClient, slug: &str, name: &str, data: &Value) {
    let block_type = client
        .get(&format!("/block_types/slug/{slug}"))
        .unwrap()
        .unwrap_or_else(|| panic!("block type {slug} is not registered on the server"));
    let schemas = client
        .post(
            "/block_schemas/filter",
            &json!({"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}}),
        )
        .unwrap();
    let schema = schemas
        .as_array()
        .and_then(|s| s.first())
        .unwrap_or_else(|| panic!("no schema for block type {slug}"));
    if client.read_block_document(slug, name).unwrap().is_some() {
        return;
    }
    let body = json!({
        "name": name, "data": data, "block_type_id": block_type["id"], "block_schema_id": schema["id"],
    });
    match client.post("/block_documents/", &body) {
        Ok(_) => {}
        Err(e) if e.status() == Some(409) => {}
        Err(e) => panic!("create block {slug}/{name}: {e}"),
    }
}

// ---- staging ------------------------------------------------------------------------------

/// Rewrites `prefect.yaml` with CRLF line endings and a UTF-8 byte order mark.
pub fn to_crlf_with_bom(project: &Path) {
    let path = project.join("prefect.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    std::fs::write(&path, [&b"\xEF\xBB\xBF"[..], crlf.as_bytes()].concat()).unwrap();
}

/// Makes `project` a git repository with an `origin` remote and one commit whose sha is the
/// same in every copy (fixed author, committer and dates), so both engines see the same sha.
pub fn make_git_repo(project: &Path) {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(project)
            .env("GIT_AUTHOR_NAME", "Parity")
            .env("GIT_AUTHOR_EMAIL", "parity@example.invalid")
            .env("GIT_COMMITTER_NAME", "Parity")
            .env("GIT_COMMITTER_EMAIL", "parity@example.invalid")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00+00:00")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00+00:00")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://example.invalid/acme/parity.git",
    ]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "parity fixture"]);
}

// ---- running the engines --------------------------------------------------------------------

/// Environment variables CI systems set that make Prefect infer a version from the CI run
/// (docs/parity.md): removed so the comparison is about the project, not the runner.
const CI_VERSION_VARS: &[&str] = &[
    "GITHUB_SHA",
    "GITHUB_REF_NAME",
    "GITHUB_REPOSITORY",
    "GITHUB_SERVER_URL",
    "CI_COMMIT_SHA",
    "CI_COMMIT_REF_NAME",
    "CI_PROJECT_NAME",
    "CI_PROJECT_URL",
    "BITBUCKET_COMMIT",
    "BITBUCKET_BRANCH",
    "BITBUCKET_REPO_SLUG",
    "BITBUCKET_GIT_HTTP_ORIGIN",
    "BUILD_SOURCEVERSION",
    "BUILD_SOURCEBRANCHNAME",
    "BUILD_REPOSITORY_NAME",
    "BUILD_REPOSITORY_URI",
];

/// Variables of the test process that would change what either engine does.
const INHERITED_NOISE: &[&str] = &[
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_PROFILE",
    "PREFECT_DEPLOYMENTS_CLEAR_SCHEDULES_ON_EMPTY",
    "PREFECT_DEFAULT_WORK_POOL_NAME",
    "XTASK_PROJECT_ROOT",
    "XTASK_PREFECT_FILE",
    "CARGO_MANIFEST_DIR",
];

/// `cmd` (an engine) run in `dir` with `env`, without what would make it infer something else.
fn engine_command(mut cmd: Command, dir: &Path, env: &[(String, String)]) -> Command {
    cmd.current_dir(dir).stdin(Stdio::null());
    for var in CI_VERSION_VARS.iter().chain(INHERITED_NOISE) {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// At most this many Prefect CLIs at once across all parity tests (each is ~1 CPU-bound Python).
const CLI_SLOTS: usize = 2;
static SLOTS: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

fn with_cli_slot<T>(f: impl FnOnce() -> T) -> T {
    {
        let mut busy = SLOTS.lock().unwrap();
        while *busy >= CLI_SLOTS {
            busy = SLOT_FREED.wait(busy).unwrap();
        }
        *busy += 1;
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    *SLOTS.lock().unwrap() -= 1;
    SLOT_FREED.notify_one();
    result.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

pub struct RunOutput {
    pub success: bool,
    pub text: String,
}

fn output(mut cmd: Command, what: &str) -> RunOutput {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    RunOutput {
        success: out.status.success(),
        text: format!(
            "{what} ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

pub fn run_prefect_cli(servers: &Servers, dir: &Path, env: &[(String, String)]) -> RunOutput {
    let mut cmd = engine_command(Command::new(venv_prefect()), dir, env);
    let home = dir.with_extension("prefect-home");
    cmd.args(["--no-prompt", "deploy", "--all"])
        .env("PREFECT_HOME", &home)
        .env("PREFECT_API_URL", &servers.cli_url)
        .env("PREFECT_API_AUTH_STRING", &servers.cli_auth)
        .env("PREFECT_CLI_COLORS", "false")
        .env("PREFECT_CLI_WRAP_LINES", "false")
        .env("COLUMNS", "200");
    with_cli_slot(|| output(cmd, "prefect --no-prompt deploy --all"))
}

pub fn run_xtask(servers: &Servers, dir: &Path, env: &[(String, String)]) -> RunOutput {
    if std::env::var_os("XTASK_PARITY_SELF_CHECK").is_some() {
        // Harness check: the Prefect CLI against server 1 must compare equal to itself.
        let mut cmd = engine_command(Command::new(venv_prefect()), dir, env);
        cmd.args(["--no-prompt", "deploy", "--all"])
            .env("PREFECT_HOME", dir.with_extension("prefect-home"))
            .env("PREFECT_API_URL", &servers.xtask_url);
        return with_cli_slot(|| output(cmd, "self-check: prefect deploy --all on server 1"));
    }
    let mut cmd = engine_command(xtask(), dir, env);
    cmd.arg("register-flows")
        .env("PREFECT_API_URL", &servers.xtask_url);
    output(cmd, "xtask register-flows")
}

// ---- reading and normalising server state ------------------------------------------------

/// Which deployments belong to a case: deployment names from its yaml, flows by name prefix.
#[derive(Clone)]
pub struct Selection {
    pub deployment_names: Vec<String>,
    pub flow_prefix: String,
}

impl Selection {
    fn filter(&self) -> Value {
        // Also the names as written, in case an engine keeps a `.py` suffix Prefect drops.
        let mut names = self.deployment_names.clone();
        names.extend(self.deployment_names.iter().map(|n| format!("{n}.py")));
        json!({
            "deployments": {"name": {"any_": names}},
            "flows": {"name": {"like_": self.flow_prefix}},
        })
    }
}

/// One deployment as stored, keyed by `flow/name`.
pub type State = BTreeMap<String, Value>;

/// Deletes what an earlier run left, so both engines take the create path.
pub fn delete_selected(client: &PrefectClient, selection: &Selection) {
    for d in client.read_deployments(selection.filter()).unwrap() {
        let id = d["id"].as_str().unwrap();
        client.delete(&format!("/deployments/{id}")).unwrap();
    }
}

fn apply_patches(client: &PrefectClient, selection: &Selection, patches: &[(String, Value)]) {
    let deployments = client.read_deployments(selection.filter()).unwrap();
    for (name, body) in patches {
        let d = deployments
            .iter()
            .find(|d| d["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not registered"));
        client
            .patch(&format!("/deployments/{}", d["id"].as_str().unwrap()), body)
            .unwrap();
    }
}

/// The time window of a run: interval anchors inside it are "now" (Prefect's default).
#[derive(Clone, Copy)]
pub struct Window {
    pub start: jiff::Timestamp,
    pub end: jiff::Timestamp,
}

impl Window {
    pub fn open() -> Window {
        let now = jiff::Timestamp::now();
        Window {
            start: now,
            end: now,
        }
    }
    pub fn close(mut self) -> Window {
        self.end = jiff::Timestamp::now();
        self
    }
    fn contains(&self, text: &str) -> bool {
        let Ok(t) = text.parse::<jiff::Timestamp>() else {
            return false;
        };
        let slack = jiff::SignedDuration::from_secs(5);
        t >= self.start - slack && t <= self.end + slack
    }
}

pub fn read_state(
    client: &PrefectClient,
    selection: &Selection,
    project_dir: &Path,
    window: Window,
) -> State {
    let deployments = client.read_deployments(selection.filter()).unwrap();
    let flows = client
        .read_flows(json!({"flows": {"name": {"like_": selection.flow_prefix}}}))
        .unwrap();
    let automations = client.post("/automations/filter", &json!({})).unwrap();
    let automations = automations.as_array().cloned().unwrap_or_default();
    let mut state = State::new();
    for d in deployments {
        let Some(flow) = flows.iter().find(|f| f["id"] == d["flow_id"]) else {
            continue;
        };
        let flow_name = flow["name"].as_str().unwrap();
        if !flow_name.starts_with(&selection.flow_prefix) {
            continue;
        }
        let mut normal = normalise(&d, window);
        let id = d["id"].as_str().unwrap();
        let owner = format!("prefect.deployment.{id}");
        let mut owned: Vec<Value> = automations
            .iter()
            .filter(|a| a["owner_resource"] == owner.as_str())
            .map(|a| normalise_automation(a, id))
            .collect();
        owned.sort_by_key(|a| a["name"].to_string());
        normal["automations"] = Value::Array(owned);
        let dir = project_dir.to_string_lossy();
        let normal = replace_strings(normal, &dir, "<project-dir>");
        state.insert(
            format!("{flow_name}/{}", d["name"].as_str().unwrap()),
            normal,
        );
    }
    state
}

/// The fields `prefect deploy` controls, as the server returns them, minus ids and timestamps.
pub fn normalise(deployment: &Value, window: Window) -> Value {
    let mut out = Map::new();
    for key in [
        "name",
        "version",
        "description",
        "paused",
        "concurrency_limit",
        "concurrency_options",
        "job_variables",
        "parameters",
        "tags",
        "work_queue_name",
        "work_pool_name",
        "parameter_openapi_schema",
        "path",
        "pull_steps",
        "entrypoint",
        "storage_document_id",
        "infrastructure_document_id",
        "enforce_parameter_schema",
    ] {
        out.insert(key.into(), deployment[key].clone());
    }
    out.insert(
        "global_concurrency_limit".into(),
        deployment["global_concurrency_limit"]
            .get("limit")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let mut schedules: Vec<Value> = deployment["schedules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let mut schedule = s["schedule"].clone();
            // An interval without `anchor_date` in the yaml is anchored at "now" by both engines.
            if let Some(anchor) = schedule.get("anchor_date").and_then(Value::as_str) {
                if window.contains(anchor) {
                    schedule["anchor_date"] = json!("<deploy-time>");
                }
            }
            json!({
                "schedule": schedule, "active": s["active"], "max_scheduled_runs": s["max_scheduled_runs"],
                "parameters": s["parameters"], "slug": s["slug"],
            })
        })
        .collect();
    schedules.sort_by_key(|s| s.to_string());
    out.insert("schedules".into(), Value::Array(schedules));
    // Labels: the server adds prefect.flow.id (differs per server); xtask adds its ownership
    // marker (docs/ownership.md). The rest must match.
    let labels: Map<String, Value> = deployment["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "prefect.flow.id" && !k.starts_with("xtask."))
        .collect();
    out.insert("labels".into(), Value::Object(labels));
    Value::Object(out)
}

/// An automation minus ids and timestamps; run-deployment actions pointing at their own
/// deployment say so instead of carrying the (per-server) id.
fn normalise_automation(automation: &Value, deployment_id: &str) -> Value {
    let mut a = automation.clone();
    if let Some(map) = a.as_object_mut() {
        for key in ["id", "created", "updated", "owner_resource"] {
            map.remove(key);
        }
    }
    for list in ["actions", "actions_on_trigger", "actions_on_resolve"] {
        if let Some(actions) = a.get_mut(list).and_then(Value::as_array_mut) {
            for action in actions {
                if action["deployment_id"] == deployment_id {
                    action["deployment_id"] = json!("<own deployment>");
                }
            }
        }
    }
    strip_trigger_ids(&mut a["trigger"]);
    a
}

fn strip_trigger_ids(trigger: &mut Value) {
    if let Some(map) = trigger.as_object_mut() {
        map.remove("id");
        if let Some(children) = map.get_mut("triggers").and_then(Value::as_array_mut) {
            children.iter_mut().for_each(strip_trigger_ids);
        }
    }
}

/// Replaces `from` inside every string of `value` (the per-run project directory).
fn replace_strings(value: Value, from: &str, to: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| replace_strings(v, from, to))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, replace_strings(v, from, to)))
                .collect(),
        ),
        other => other,
    }
}

// ---- comparing --------------------------------------------------------------------------------

/// A deliberate difference (docs/parity.md): on `field`, Prefect stores `theirs` where xtask
/// stores `ours`, for any deployment.
pub struct Allowed {
    /// `Some(name)`: only for this deployment (a difference a test provokes on purpose).
    pub deployment: Option<&'static str>,
    pub field: &'static str,
    pub applies: fn(theirs: &Value, ours: &Value) -> bool,
    pub reason: &'static str,
}

pub fn allowed_differences() -> Vec<Allowed> {
    vec![
        Allowed {
            deployment: None,
            field: "description",
            applies: |theirs, ours| theirs == "None" && ours.is_null(),
            reason: "no description anywhere: Prefect's client sends str(None) on create; xtask sends null, \
                     which is what Prefect itself stores on its next update",
        },
        Allowed {
            deployment: Some(PAUSED_IN_UI),
            field: "paused",
            applies: |theirs, ours| theirs == false && ours == true,
            reason: "the yaml omits `paused`: Prefect re-sends false (unpausing a deployment paused in the UI); \
                     xtask leaves the server's value",
        },
    ]
}

/// The deployment the `full` fixture pauses through the API between its two rounds.
pub const PAUSED_IN_UI: &str = "parity-extract-nightly";

/// Every difference between the two states that is not allowed, one line each.
pub fn compare(theirs: &State, ours: &State) -> Vec<String> {
    let allowed = allowed_differences();
    let mut problems = Vec::new();
    for key in theirs.keys().filter(|k| !ours.contains_key(*k)) {
        problems.push(format!(
            "{key}: registered by prefect, missing from xtask's server"
        ));
    }
    for key in ours.keys().filter(|k| !theirs.contains_key(*k)) {
        problems.push(format!("{key}: registered by xtask, not by prefect"));
    }
    for (key, their) in theirs {
        let Some(mine) = ours.get(key) else { continue };
        for (field, their_value) in their.as_object().unwrap() {
            let my_value = &mine[field];
            let name = their["name"].as_str().unwrap_or_default();
            let is_allowed = allowed.iter().any(|a| {
                a.field == field
                    && a.deployment.map_or(true, |d| d == name)
                    && (a.applies)(their_value, my_value)
            });
            if their_value == my_value || is_allowed {
                continue;
            }
            problems.push(format!(
                "{key}.{field}:\n    prefect: {their_value}\n    xtask:   {my_value}"
            ));
        }
    }
    problems
}

// ---- one case, end to end ---------------------------------------------------------------

/// A project registered by both engines.
pub struct Case {
    pub label: String,
    /// Writes the project into an empty directory (called once per engine).
    pub stage: Box<dyn Fn(&Path) + Send + Sync>,
    pub env: Vec<(String, String)>,
    pub setup: Setup,
    pub selection: Selection,
    /// Run both engines a second time and compare again (the update path).
    pub rerun: bool,
    /// Changes made through the API on both servers between the rounds, as a user in the UI
    /// would: (deployment name, PATCH body).
    pub between_rounds: Vec<(String, Value)>,
}

/// Runs one case; returns its differences (empty = parity) prefixed with the case label.
pub fn run_case(servers: &Servers, case: &Case) -> Vec<String> {
    let started = Instant::now();
    apply_setup(servers, &case.setup);
    for client in servers.both() {
        delete_selected(client, &case.selection);
    }
    let cli_dir = scratch_dir(&format!("{}-prefect", case.label));
    let xtask_dir = scratch_dir(&format!("{}-xtask", case.label));
    (case.stage)(&cli_dir);
    (case.stage)(&xtask_dir);

    let mut problems = Vec::new();
    let rounds = if case.rerun { 2 } else { 1 };
    // Anchors set by either engine at any point of the case are "deploy time": Prefect moves an
    // unanchored interval to "now" on every update, xtask keeps the first one (docs/parity.md).
    let case_window = Window::open();
    for round in 1..=rounds {
        if round > 1 {
            for client in servers.both() {
                apply_patches(client, &case.selection, &case.between_rounds);
            }
        }
        let cli = run_prefect_cli(servers, &cli_dir, &case.env);
        assert!(cli.success, "[{}] round {round}: {}", case.label, cli.text);
        let xtask = run_xtask(servers, &xtask_dir, &case.env);
        let window = case_window.close();
        let (cli_window, xtask_window) = (window, window);
        if !xtask.success {
            problems.push(format!("[{}] round {round}: {}", case.label, xtask.text));
            break;
        }
        let theirs = read_state(&servers.cli, &case.selection, &cli_dir, cli_window);
        let ours = read_state(&servers.xtask, &case.selection, &xtask_dir, xtask_window);
        let mut registered: Vec<&str> =
            theirs.values().filter_map(|d| d["name"].as_str()).collect();
        registered.sort();
        registered.dedup();
        let mut declared: Vec<&str> = case
            .selection
            .deployment_names
            .iter()
            .map(String::as_str)
            .collect();
        declared.sort();
        declared.dedup();
        assert_eq!(
            registered, declared,
            "[{}] prefect registered every deployment of the yaml\n{}",
            case.label, cli.text
        );
        problems.extend(
            compare(&theirs, &ours)
                .into_iter()
                .map(|p| format!("[{}] round {round}: {p}", case.label)),
        );
    }
    eprintln!("[{}] compared in {:.1?}", case.label, started.elapsed());
    for dir in [&cli_dir, &xtask_dir] {
        let _ = std::fs::remove_dir_all(dir.with_extension("prefect-home"));
        let _ = std::fs::remove_dir_all(dir);
    }
    problems
}

/// Runs cases on `threads` worker threads; returns all differences.
pub fn run_cases(servers: &Servers, mut cases: Vec<Case>, threads: usize) -> Vec<String> {
    // `XTASK_PARITY_ONLY=c08,fixture-full` runs a subset (while working on one difference).
    if let Ok(only) = std::env::var("XTASK_PARITY_ONLY") {
        cases.retain(|c| only.split(',').any(|l| l.trim() == c.label));
    }
    let queue = Mutex::new(cases.into_iter().collect::<std::collections::VecDeque<_>>());
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let found = run_case(servers, &case);
                problems.lock().unwrap().extend(found);
            });
        }
    });
    problems.into_inner().unwrap()
}

/// Deployment names declared by a staged prefect.yaml (xtask's own parser; the comparison
/// itself never relies on it).
pub fn deployment_names(yaml: &[u8]) -> Vec<String> {
    let file =
        xtask::prefect::prefect_yaml::parse("prefect.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    file.deployments
        .iter()
        .map(|d| prefect_deployment_name(&d.name))
        .collect()
}

/// The name Prefect registers: `RunnerDeployment` turns a name ending in `.py` into the file
/// stem (`train_models.py` → `train_models`).
pub fn prefect_deployment_name(name: &str) -> String {
    match name.strip_suffix(".py") {
        Some(stem) => stem.rsplit('/').next().unwrap_or(stem).to_string(),
        None => name.to_string(),
    }
}
