//! `cargo xtask deploy --local` and `cargo xtask down`: the whole pipeline on this machine —
//! venv, Prefect server, work pools, registration, process worker, one smoke flow run.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::{DeployArgs, DownArgs, GlobalArgs};
use crate::commands::register_reported;
use crate::local::process::{log_tail, Stopped};
use crate::local::server::{api_url, dashboard_url};
use crate::local::{self, venv, LocalState};
use crate::prefect::api::{ApiConfig, PrefectClient};
use crate::prefect::prefect_yaml::{self, DeploymentConfig};
use crate::project::{repo_root, venv_dir, Project};
use crate::sync::SyncOptions;
use crate::sys::env_vars::EnvVars;
use crate::sys::report::code;

/// How long the smoke run may take from creation to Completed.
const SMOKE_RUN_TIMEOUT: Duration = Duration::from_secs(180);

pub fn deploy_local(global: &GlobalArgs, args: &DeployArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let project = Project::discover(global, args.env)?;
    let bytes = std::fs::read(&project.prefect_file)
        .with_context(|| format!("cannot read {}", project.prefect_file.display()))?;
    let file = prefect_yaml::parse(&project.prefect_file_label(), &bytes)?;
    let deployments = &file.deployments;
    let pools = file.work_pools();
    // The smoke run needs a worker, and a worker needs a pool.
    let Some(first) = deployments.iter().find(|d| d.work_pool_name().is_some()) else {
        bail!(
            "no deployment in {} names a `work_pool`; deploy --local runs flows with a process worker \
             polling that pool",
            project.prefect_file_label()
        );
    };
    let state = LocalState::default_location();
    if args.dry_run {
        print_dry_run(&project, &state, deployments, &pools);
        return Ok(ExitCode::from(code::OK));
    }

    step("Python venv with the pinned Prefect");
    let venv = venv::ensure(&venv_dir(), &repo_root().join("app/requirements.txt"))?;
    let prefect = venv.prefect();

    step("local Prefect server");
    std::fs::create_dir_all(&state.dir)
        .with_context(|| format!("cannot create {}", state.dir.display()))?;
    let server = local::ensure_server(&state, &prefect, args.port)?;
    let api = api_url(server.port);
    eprintln!(
        "    {} server pid {} at {}",
        if server.reused { "reusing" } else { "started" },
        server.pid,
        dashboard_url(server.port)
    );
    let env = isolated_environment(EnvVars::capture(), &api, &state, &project.root);
    let client = PrefectClient::new(ApiConfig::for_url(&api))?;
    client.set_verbose(global.verbose);

    step("work pools");
    for pool in &pools {
        if client.read_work_pool(pool)?.is_some() {
            eprintln!("    {pool}: exists");
        } else {
            client.create_work_pool(pool, "process")?;
            eprintln!("    {pool}: created (type process)");
        }
    }

    step(&format!(
        "registering the deployments of {}",
        project.prefect_file_label()
    ));
    // The same code path as Fly's release command.
    let exit = register_reported(&project, &env, global.verbose, &SyncOptions::default())?;
    if exit != code::OK {
        bail!(
            "register-flows did not succeed ({:?})",
            ExitCode::from(exit)
        );
    }

    step("process workers");
    for pool in &pools {
        let worker = local::ensure_worker(&state, &prefect, pool, server.port, &project.root)?;
        eprintln!(
            "    {pool}: {} worker pid {} (log {})",
            if worker.reused { "reusing" } else { "started" },
            worker.pid,
            state.worker_log(pool).display()
        );
    }

    step(&format!("smoke run of {}", first.name));
    let deployment = find_deployment(&client, &first.name, first.work_pool_name())?;
    let run = smoke_run(&client, &deployment, &state, first.work_pool_name())?;

    let registered = registered_deployments(&client, deployments)?;
    println!("\nLocal Prefect is up ({:.0?}).", started.elapsed());
    println!("  dashboard:   {}", dashboard_url(server.port));
    println!(
        "  api:         {api}   (export PREFECT_API_URL={api} to use the prefect CLI against it)"
    );
    println!("  deployments: {}", registered.len());
    for name in &registered {
        println!("    - {name}");
    }
    println!("  smoke run:   {} {} → {}", run.name, run.id, run.state);
    println!(
        "               {}/runs/flow-run/{}",
        dashboard_url(server.port),
        run.id
    );
    println!("  logs:        {}", state.dir.display());
    println!("  stop with:   cargo xtask down");
    Ok(ExitCode::from(code::OK))
}

pub fn down(_global: &GlobalArgs, _args: DownArgs) -> Result<ExitCode> {
    let state = LocalState::default_location();
    let reports = local::stop_all(&state)?;
    let mut stopped = 0;
    for report in &reports {
        let how = match report.outcome {
            Stopped::Terminated => "stopped",
            Stopped::Killed => "killed (did not stop on SIGTERM)",
            Stopped::NotRunning => "was not running",
        };
        if report.outcome != Stopped::NotRunning {
            stopped += 1;
        }
        println!("{} (pid {}): {how}", report.what, report.pid);
    }
    if stopped == 0 {
        println!("nothing to stop: no server or worker started by `cargo xtask deploy --local` is running");
    }
    Ok(ExitCode::from(code::OK))
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

/// A local deploy must never reach a developer's real server: every PREFECT_* setting
/// (URL, key, profile) of `host` is dropped and replaced by the local ones; this is the
/// environment registration (and its build steps) sees.
fn isolated_environment(
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

fn find_deployment(client: &PrefectClient, name: &str, pool: Option<&str>) -> Result<Value> {
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

fn registered_deployments(
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

struct SmokeRun {
    id: String,
    name: String,
    state: String,
}

/// Creates one flow run of `deployment` (its parameters are the yaml's: the server fills them
/// from the deployment) and waits for a final state.
fn smoke_run(
    client: &PrefectClient,
    deployment: &Value,
    state: &LocalState,
    pool: Option<&str>,
) -> Result<SmokeRun> {
    let deployment_id = deployment["id"]
        .as_str()
        .context("the deployment has no id")?;
    let run = client.create_flow_run_from_deployment(deployment_id, json!({}))?;
    let id = run["id"]
        .as_str()
        .context("the new flow run has no id")?
        .to_string();
    let name = run["name"].as_str().unwrap_or("?").to_string();
    eprintln!("    flow run {name} ({id})");
    let worker_log = pool.map(|p| state.worker_log(p));
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
        if start.elapsed() > SMOKE_RUN_TIMEOUT {
            let hint = if matches!(state_type.as_str(), "SCHEDULED" | "PENDING") {
                "no worker picked it up; is the worker running? "
            } else {
                ""
            };
            bail!(
                "the smoke run {name} is still {state_name} after {}s ({hint}see the worker log)\n{}{}",
                SMOKE_RUN_TIMEOUT.as_secs(),
                run_logs(client, &id),
                worker_log.as_deref().map(|l| log_tail(l, 30)).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
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

fn print_dry_run(
    project: &Project,
    state: &LocalState,
    deployments: &[DeploymentConfig],
    pools: &[String],
) {
    println!("deploy --local would:");
    println!(
        "  1. ensure the venv {} has prefect from app/requirements.txt",
        venv_dir().display()
    );
    println!(
        "  2. reuse or start `prefect server start --host 127.0.0.1` (state in {})",
        state.dir.display()
    );
    println!(
        "  3. create the work pools if missing (type process): {}",
        pools.join(", ")
    );
    println!(
        "  4. register {} deployments from {}",
        deployments.len(),
        project.prefect_file_label()
    );
    println!("  5. reuse or start `prefect worker start --pool <pool> --type process` per pool");
    if let Some(first) = deployments.iter().find(|d| d.work_pool_name().is_some()) {
        println!("  6. run {} once and wait for Completed", first.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
