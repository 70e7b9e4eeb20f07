//! `cargo xtask deploy --local` and `cargo xtask down`: the whole pipeline on this machine —
//! venv, Prefect server, work pools, registration, process worker, one smoke flow run.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::{DeployArgs, DownArgs, GlobalArgs};
use xtask::local::deploy::{
    find_deployment, isolated_environment, registered_deployments, smoke_run, SMOKE_RUN_TIMEOUT,
};
use xtask::local::process::Stopped;
use xtask::local::server::{api_url, dashboard_url};
use xtask::local::{self, venv, LocalState};
use xtask::prefect::api::{ApiConfig, PrefectClient};
use xtask::prefect::prefect_yaml::{self, DeploymentConfig};
use xtask::project::{repo_root, venv_dir, Env, Project};
use xtask::sync::{register_reported, SyncOptions};
use xtask::sys::env_vars::EnvVars;
use xtask::sys::report::code;

pub fn deploy_local(global: &GlobalArgs, args: &DeployArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let project = Project::discover(global.prefect_file.as_deref(), Env::from(args.env))?;
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
    let venv = venv::ensure(&venv_dir(), &repo_root())?;
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
        if let Some(declared) = file.resources.pool(pool) {
            // Configured as in production: register-flows creates or updates it from `work_pools`.
            eprintln!(
                "    {pool}: declared in work_pools (type {}), made so by register-flows",
                declared.pool_type
            );
        } else if client.read_work_pool(pool)?.is_some() {
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
    let exit = register_reported(&project, &env, global.verbose, &SyncOptions::default())?.code;
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
    let run = smoke_run(
        &client,
        &deployment,
        serde_json::json!({}),
        first.work_pool_name().map(|pool| state.worker_log(pool)),
        SMOKE_RUN_TIMEOUT,
    )?;

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
        "  3. work pools: those declared in `work_pools` as declared (by register-flows), the others created if missing (type process): {}",
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
