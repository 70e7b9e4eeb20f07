//! The pieces of `deploy --local` besides the server and workers: the isolated environment the
//! registration sees, the deployments found on the server afterwards, and the smoke run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::local::process::log_tail;
use crate::local::LocalState;
use crate::prefect::api::PrefectClient;
use crate::prefect::prefect_yaml::DeploymentConfig;
use crate::sys::env_vars::EnvVars;

/// How long `deploy --local`'s smoke run may take from creation to Completed.
pub const SMOKE_RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// A local deploy must never reach a developer's real server: every PREFECT_* setting
/// (URL, key, profile) of `host` is dropped and replaced by the local ones; this is the
/// environment registration (and its build steps) sees.
pub fn isolated_environment(
    mut host: EnvVars,
    api: &str,
    state: &LocalState,
    app_dir: &Path,
) -> EnvVars {
    host.retain(|name| !name.starts_with("PREFECT_"));
    host.set("PREFECT_API_URL", api);
    host.set("PREFECT_HOME", state.home().display().to_string());
    // prefect.yaml's pull step: `set_working_directory: {{ $APP_DIR }}`.
    host.set("APP_DIR", app_dir.display().to_string());
    host
}

pub fn find_deployment(client: &PrefectClient, name: &str, pool: Option<&str>) -> Result<Value> {
    let mut filter = json!({"deployments": {"name": {"any_": [name]}}});
    if let Some(pool) = pool {
        filter["work_pools"] = json!({"name": {"any_": [pool]}});
    }
    let found = client.read_deployments(filter)?;
    found
        .into_iter()
        .next()
        .with_context(|| format!("deployment {name} is not on the server after registration"))
}

pub fn registered_deployments(
    client: &PrefectClient,
    deployments: &[DeploymentConfig],
) -> Result<Vec<String>> {
    let names: Vec<&str> = deployments.iter().map(|d| d.name.as_str()).collect();
    let found = client.read_deployments(json!({"deployments": {"name": {"any_": names}}}))?;
    let flow_ids: Vec<&str> = found.iter().filter_map(|d| d["flow_id"].as_str()).collect();
    let flows = client.read_flows(json!({"flows": {"id": {"any_": flow_ids}}}))?;
    let flow_name = |id: &str| {
        flows
            .iter()
            .find(|f| f["id"] == id)
            .and_then(|f| f["name"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut out: Vec<String> = found
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                flow_name(d["flow_id"].as_str().unwrap_or("")),
                d["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A smoke run that completed.
pub struct SmokeRun {
    pub id: String,
    pub name: String,
    pub state: String,
}

/// Creates one flow run of `deployment` with `parameters` (`{}`: the deployment's own, which the
/// server fills in) and waits at most `timeout` for a final state. Prints the run's link; a run
/// that does not complete is an error with the tail of its logs (Prefect's logs endpoint) and of
/// `worker_log` when given. Used by `deploy --local` and by deploy's `--smoke`.
pub fn smoke_run(
    client: &PrefectClient,
    deployment: &Value,
    parameters: Value,
    worker_log: Option<PathBuf>,
    timeout: Duration,
) -> Result<SmokeRun> {
    let deployment_id = deployment["id"]
        .as_str()
        .context("the deployment has no id")?;
    let run = client.create_flow_run_from_deployment(deployment_id, parameters)?;
    let id = run["id"]
        .as_str()
        .context("the new flow run has no id")?
        .to_string();
    let name = run["name"].as_str().unwrap_or("?").to_string();
    eprintln!(
        "    flow run {name} ({id}): {}",
        run_link(&client.display_url(), &id)
    );
    let start = Instant::now();
    let mut last_state = String::new();
    loop {
        let run = client
            .read_flow_run(&id)?
            .with_context(|| format!("flow run {id} disappeared"))?;
        let (state_type, state_name, message) = run_state(&run);
        if state_name != last_state {
            eprintln!("    {:>5.1}s {state_name}", start.elapsed().as_secs_f64());
            last_state = state_name.clone();
        }
        match state_type.as_str() {
            "COMPLETED" => {
                return Ok(SmokeRun {
                    id,
                    name,
                    state: state_name,
                })
            }
            "FAILED" | "CRASHED" | "CANCELLED" | "CANCELLING" => {
                bail!(
                    "the smoke run {name} ended {state_name}: {message}\n{}{}",
                    run_logs(client, &id),
                    worker_log
                        .as_deref()
                        .map(|l| log_tail(l, 20))
                        .unwrap_or_default()
                );
            }
            _ => {}
        }
        if start.elapsed() > timeout {
            let hint = if matches!(state_type.as_str(), "SCHEDULED" | "PENDING") {
                "no worker picked it up; is the worker running? "
            } else {
                ""
            };
            bail!(
                "the smoke run {name} is still {state_name} after {}s ({hint}see the worker log)\n{}{}",
                timeout.as_secs(),
                run_logs(client, &id),
                worker_log.as_deref().map(|l| log_tail(l, 30)).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The run's page in the Prefect UI, which a self-hosted server serves next to its API
/// (`…/api` → `…/runs/flow-run/<id>`; Prefect's own default for `PREFECT_UI_URL`).
pub fn run_link(api_url: &str, run_id: &str) -> String {
    let base = api_url.trim_end_matches('/');
    let base = base.strip_suffix("/api").unwrap_or(base);
    format!("{base}/runs/flow-run/{run_id}")
}

/// (type, name, message) of a flow run's state.
fn run_state(run: &Value) -> (String, String, String) {
    let state = &run["state"];
    let state_type = state["type"]
        .as_str()
        .or(run["state_type"].as_str())
        .unwrap_or("UNKNOWN")
        .to_string();
    let name = state["name"]
        .as_str()
        .or(run["state_name"].as_str())
        .unwrap_or(&state_type)
        .to_string();
    let message = state["message"].as_str().unwrap_or("").to_string();
    (state_type, name, message)
}

/// The run's own log lines (flow and task logs), for a failure message.
fn run_logs(client: &PrefectClient, run_id: &str) -> String {
    let body =
        json!({"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200});
    match client.post("/logs/filter", &body) {
        Ok(Value::Array(logs)) if !logs.is_empty() => {
            let lines: Vec<String> = logs
                .iter()
                .filter_map(|l| l["message"].as_str())
                .flat_map(str::lines)
                .map(|line| format!("    {line}"))
                .collect();
            let tail = crate::local::process::tail_lines(&lines.join("\n"), 30);
            format!("flow run logs:\n{tail}\n")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_links_point_at_the_ui_next_to_the_api() {
        assert_eq!(
            run_link("https://p.example/prefect/api", "r1"),
            "https://p.example/prefect/runs/flow-run/r1"
        );
        assert_eq!(
            run_link("http://127.0.0.1:4200/api/", "r1"),
            "http://127.0.0.1:4200/runs/flow-run/r1"
        );
    }

    #[test]
    fn reads_run_states() {
        let run = json!({"state": {"type": "FAILED", "name": "Failed", "message": "boom"}});
        assert_eq!(
            run_state(&run),
            ("FAILED".into(), "Failed".into(), "boom".into())
        );
        let run = json!({"state_type": "SCHEDULED", "state_name": "Late", "state": null});
        assert_eq!(
            run_state(&run),
            ("SCHEDULED".into(), "Late".into(), "".into())
        );
        assert_eq!(run_state(&json!({})).0, "UNKNOWN");
    }
}
