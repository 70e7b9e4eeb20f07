//! `cargo xtask status`: what is running and whether it is healthy, from bulk reads only: the
//! yaml against the server (register-flows' check), the deployments' next and last runs, the
//! work pools' workers, and the app's Fly Machines and releases. [`report`] is the pure half.

pub mod report;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use crate::deploy::verify::{online_workers, read_workers, worker_groups};
use crate::fly::machines::{list_machines, list_releases};
use crate::fly::release_env::release_env;
use crate::fly::FlyTarget;
use crate::prefect::api::{ApiConfig, PrefectClient};
use crate::project::{Env, Project};
use crate::sync::engine::RegisterError;
use crate::sync::plan::PlanItem;
use crate::sync::release::recorded_release;
use crate::sync::selection::Selection;
use crate::sync::{self, SyncOptions};
use crate::sys::env_vars::EnvVars;
use report::{
    DeploymentStatus, GroupStatus, MachineStatus, PoolStatus, RunSummary, StatusReport, SyncState,
};

/// Flow-run pages read at most per question (next run, last run): 200 runs a page.
const MAX_RUN_PAGES: usize = 10;
const RUN_PAGE: usize = 200;

/// What to look at.
pub struct StatusInput<'a> {
    pub project: &'a Project,
    pub env: Env,
    pub target: &'a FlyTarget,
    /// flyctl; Err: why it cannot be run (reported as unread, exit 1).
    pub fly: Result<&'a Path, String>,
    pub host_env: &'a EnvVars,
    pub selection: Selection,
    pub verbose: bool,
}

/// Reads everything; what could not be read is listed in `errors`, never guessed.
pub fn collect(input: &StatusInput) -> StatusReport {
    let mut report = StatusReport {
        env: input.env.name().to_string(),
        app: input.target.app.clone(),
        prefect_file: input.project.prefect_file_label(),
        ..StatusReport::default()
    };
    // The yaml resolves as the release Machine resolves it (fly.toml [env]), as deploy's check.
    let env = release_env(input.host_env, &input.target.toml.env);
    let mut pool_names = input.target.toml.worker_pools();
    match ApiConfig::from_vars(&env).and_then(PrefectClient::new) {
        Err(err) => report.errors.push(format!("Prefect server: {err:#}")),
        Ok(client) => {
            client.set_verbose(input.verbose);
            report.server = client.display_url();
            read_prefect(&client, input, &env, &mut report, &mut pool_names);
        }
    }
    match input.fly {
        Err(ref why) => report.errors.push(format!("Fly: {why}")),
        Ok(fly) => read_fly(fly, input.target, &mut report),
    }
    report
}

fn read_prefect(
    client: &PrefectClient,
    input: &StatusInput,
    env: &EnvVars,
    report: &mut StatusReport,
    pool_names: &mut Vec<String>,
) {
    // An unreachable server is named as such, not as a yaml problem of its first read.
    if let Err(err) = client.health() {
        report.errors.push(format!("Prefect server: {err}"));
        return;
    }
    let options = SyncOptions {
        check: true,
        selection: input.selection.clone(),
        ..SyncOptions::default()
    };
    let cancel = AtomicBool::new(false);
    let registration = match sync::register(
        input.project,
        client,
        env,
        &options,
        &cancel,
        Instant::now(),
    ) {
        Ok(registration) => registration,
        Err(RegisterError::Invalid(err)) => {
            report
                .errors
                .push(format!("{}: {err:#}", input.project.prefect_file_label()));
            return;
        }
        Err(RegisterError::Failed(err)) => {
            report
                .errors
                .push(format!("Prefect server deployments: {err:#}"));
            return;
        }
    };
    let mut ids = Vec::new();
    for item in &registration.outcome.plan.items {
        let server = item.server();
        let sync = match item {
            PlanItem::Create(_) => SyncState::Missing,
            PlanItem::Update(_) => SyncState::Drifted(item.changed_fields()),
            PlanItem::Unchanged { .. } => SyncState::InSync,
            PlanItem::Delete(_) => continue,
        };
        if let Some(desired) = item.desired() {
            if let Some(pool) = desired.fields.get("work_pool_name").and_then(Value::as_str) {
                pool_names.push(pool.to_string());
            }
        }
        ids.push(server.map(|s| s.id.clone()));
        report.deployments.push(DeploymentStatus {
            flow_name: item.flow_name().to_string(),
            name: item.name().to_string(),
            sync,
            paused: server
                .and_then(|s| s.raw.get("paused"))
                .and_then(Value::as_bool),
            release: server
                .and_then(|s| s.raw.get("tags"))
                .and_then(recorded_release)
                .map(str::to_string),
            next_run: None,
            last_run: None,
        });
    }
    let known: Vec<&str> = ids.iter().flatten().map(String::as_str).collect();
    if !known.is_empty() {
        let now = jiff::Timestamp::now().to_string();
        let next = first_run_per_deployment(
            client,
            &known,
            json!({"state": {"type": {"any_": ["SCHEDULED"]}}}),
            "EXPECTED_START_TIME_ASC",
        );
        let last = first_run_per_deployment(
            client,
            &known,
            json!({"state": {"type": {"not_any_": ["SCHEDULED"]}}, "expected_start_time": {"before_": now}}),
            "EXPECTED_START_TIME_DESC",
        );
        match (next, last) {
            (Ok(next), Ok(last)) => {
                for (status, id) in report.deployments.iter_mut().zip(&ids) {
                    let Some(id) = id else { continue };
                    status.next_run = next
                        .get(id)
                        .map(|run| run_time(run).unwrap_or_default().to_string());
                    status.last_run = last.get(id).map(run_summary);
                }
            }
            (Err(err), _) | (_, Err(err)) => report
                .errors
                .push(format!("Prefect server flow runs: {err:#}")),
        }
    }
    pool_names.sort();
    pool_names.dedup();
    match read_pools(client, pool_names) {
        Ok(pools) => report.pools = pools,
        Err(err) => report
            .errors
            .push(format!("Prefect server work pools: {err:#}")),
    }
}

/// For each deployment id, the first flow run of the listing `flow_runs` (a FlowRunFilter) in
/// `sort` order: pages of 200 until every deployment has one, a page is short, or 10 pages.
fn first_run_per_deployment(
    client: &PrefectClient,
    ids: &[&str],
    flow_runs: Value,
    sort: &str,
) -> Result<HashMap<String, Value>> {
    let mut found: HashMap<String, Value> = HashMap::new();
    for page in 0..MAX_RUN_PAGES {
        let body = json!({
            "deployments": {"id": {"any_": ids}},
            "flow_runs": flow_runs,
            "sort": sort,
            "limit": RUN_PAGE,
            "offset": page * RUN_PAGE,
        });
        let runs = match client.post("/flow_runs/filter", &body)? {
            Value::Array(runs) => runs,
            other => anyhow::bail!("/flow_runs/filter answered {other}, not a list"),
        };
        let short = runs.len() < RUN_PAGE;
        for run in runs {
            if let Some(id) = run.get("deployment_id").and_then(Value::as_str) {
                found.entry(id.to_string()).or_insert(run);
            }
        }
        if short || found.len() >= ids.len() {
            break;
        }
    }
    Ok(found)
}

fn run_time(run: &Value) -> Option<&str> {
    run.get("start_time")
        .and_then(Value::as_str)
        .or_else(|| run.get("expected_start_time").and_then(Value::as_str))
}

fn run_summary(run: &Value) -> RunSummary {
    let text = |pointer: &str| run.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let state_type = match text("/state/type") {
        "" => text("/state_type"),
        t => t,
    };
    let state_name = match text("/state/name") {
        "" => text("/state_name"),
        n => n,
    };
    RunSummary {
        id: text("/id").to_string(),
        state_type: state_type.to_string(),
        state_name: if state_name.is_empty() {
            state_type.to_string()
        } else {
            state_name.to_string()
        },
        at: run_time(run).unwrap_or_default().to_string(),
    }
}

/// The pools in one filter read, then each pool's workers (no bulk read spans pools).
fn read_pools(client: &PrefectClient, names: &[String]) -> Result<Vec<PoolStatus>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let listed = match client.post(
        "/work_pools/filter",
        &json!({"work_pools": {"name": {"any_": names}}, "limit": 200}),
    )? {
        Value::Array(pools) => pools,
        other => anyhow::bail!("/work_pools/filter answered {other}, not a list"),
    };
    let mut out = Vec::new();
    for name in names {
        let pool = listed
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name));
        let paused = pool.map(|p| p.get("is_paused").and_then(Value::as_bool).unwrap_or(false));
        let workers_online = match pool {
            Some(_) => online_workers(&read_workers(client, name)?, jiff::Timestamp::now()),
            None => Vec::new(),
        };
        out.push(PoolStatus {
            name: name.clone(),
            paused,
            workers_online,
        });
    }
    Ok(out)
}

fn read_fly(fly: &Path, target: &FlyTarget, report: &mut StatusReport) {
    let machines = match list_machines(fly, &target.app) {
        Ok(machines) => machines,
        Err(err) => {
            report
                .errors
                .push(format!("Fly Machines of {}: {err:#}", target.app));
            return;
        }
    };
    let releases = match list_releases(fly, &target.app) {
        Ok(releases) => releases,
        Err(err) => {
            report
                .errors
                .push(format!("Fly releases of {}: {err:#}", target.app));
            Vec::new()
        }
    };
    let workers = worker_groups(&target.toml);
    let mut groups: Vec<String> = target.toml.processes.keys().cloned().collect();
    for m in &machines {
        if !groups.contains(&m.group) {
            groups.push(m.group.clone());
        }
    }
    if groups.is_empty() {
        groups.push("app".into());
    }
    for group in groups {
        report.groups.push(GroupStatus {
            worker: workers.contains(&group),
            machines: machines
                .iter()
                .filter(|m| m.group == group)
                .map(|m| MachineStatus {
                    id: m.id.clone(),
                    state: m.state.clone(),
                    image: m.image.clone(),
                    release_status: m.release_version.as_ref().and_then(|v| {
                        releases
                            .iter()
                            .find(|r| r.version.to_string() == *v)
                            .map(|r| r.status.clone())
                    }),
                    release_version: m.release_version.clone(),
                })
                .collect(),
            group,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_summaries_read_the_state_and_the_time() {
        let run = json!({"id": "r", "state": {"type": "FAILED", "name": "Failed"}, "start_time": "2026-01-01T00:00:00Z", "expected_start_time": "2025-12-31T23:59:00Z"});
        assert_eq!(
            run_summary(&run),
            RunSummary {
                id: "r".into(),
                state_type: "FAILED".into(),
                state_name: "Failed".into(),
                at: "2026-01-01T00:00:00Z".into(),
            }
        );
        let pending = json!({"id": "p", "state_type": "PENDING", "expected_start_time": "2026-01-02T00:00:00Z"});
        let summary = run_summary(&pending);
        assert_eq!(summary.state_name, "PENDING");
        assert_eq!(summary.at, "2026-01-02T00:00:00Z");
    }
}
