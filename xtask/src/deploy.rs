//! The release pipeline behind `cargo xtask deploy`, in order:
//!
//! 1. check secrets: check-secrets' checklist (local env, server, the Fly app's secrets).
//! 2. validate and plan: the pool naming lint, then `register-flows --dry-run` (offline
//!    validation, then the plan against the server; writes nothing).
//! 3. build image: `docker::build_image` (skipped with `--image REF`).
//! 4. drain workers: pause the work pools the app's workers poll and wait until no flow run is in
//!    progress on them ([`drain`]); they are resumed after stage 5, whatever its outcome.
//! 5. fly deploy: `fly deploy --image REF …`; Fly runs the release command
//!    (`xtask register-flows`) in a temporary Machine before rolling out.
//! 6. verify: `register-flows --check` from this host with this release (drift fails),
//!    `fly status --json` shows running Machines, and [`verify`]: the worker Machines run the
//!    shipped image, every pool the yaml uses has a worker online, `--smoke` runs complete.
//!
//! Stages 2 and 6 compute the yaml's desired state with the release Machine's plain environment
//! (fly.toml `[env]`, e.g. `APP_DIR=/app` used by the pull step), so the plan and the drift check
//! describe what the release command registers, not what this checkout would.
//!
//! `--env dev` uses prefect-dev.yaml and the dev app: fly-dev.toml when it exists, else fly.toml
//! with the app `<app>-dev` (see [`fly::target`]). `--dry-run` runs no external command: it shows
//! the checks it can make without one, the plan, and the exact commands of the other stages.

pub mod drain;
pub mod rollback;
pub mod verify;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::docker::{self, BuildOptions};
use crate::fly::checklist::{checklist, FlyCheck};
use crate::fly::release_env::release_env;
use crate::fly::{self, DeployRequest, FlyTarget};
use crate::prefect::prefect_yaml;
use crate::project::{Env, Project};
use crate::sync::pool_lint::{deployment_pools, lint_pool_names};
use crate::sync::release::Release;
use crate::sync::{register_reported, SyncOptions};
use crate::sys::env_vars::EnvVars;
use crate::sys::redact::redact;
use crate::sys::report::code;
use crate::sys::stages::{CiOutput, Pipeline};

/// flyctl's own default for `--release-command-timeout`.
const DEFAULT_RELEASE_COMMAND_TIMEOUT: &str = "5m";

/// The platform of Fly Machines.
const FLY_PLATFORM: &str = "linux/amd64";

/// What to deploy and how (the `deploy` command's arguments).
pub struct DeployOptions {
    pub env: Env,
    /// Print the commands and the plan; run no external command.
    pub dry_run: bool,
    /// Deploy this already-built image instead of building one.
    pub image: Option<String>,
    /// `--release-command-timeout` for flyctl (default: fly.toml's, else flyctl's 5m).
    pub release_command_timeout: Option<String>,
    /// Seconds after which `fly deploy` is given up on.
    pub timeout: u64,
    /// Log every request and command.
    pub verbose: bool,
    /// Whether and how long to drain the workers before their Machines are replaced.
    pub drain: drain::DrainOptions,
    /// What the verify stage waits for besides the drift check.
    pub verify: verify::VerifyOptions,
}

/// Deploys `project` to the Fly app `target`, stage by stage, printing progress and a summary on
/// stderr; the error names the stage that failed.
pub fn deploy(project: &Project, target: &FlyTarget, args: &DeployOptions) -> Result<()> {
    let env = args.env;
    // flyctl's flag overrides fly.toml, so pass fly.toml's value unless told otherwise.
    let release_timeout = args
        .release_command_timeout
        .clone()
        .or_else(|| target.toml.release_command_timeout.clone())
        .unwrap_or_else(|| DEFAULT_RELEASE_COMMAND_TIMEOUT.to_string());
    let release_limit = fly::parse_go_duration(&release_timeout)
        .map_err(|e| anyhow::anyhow!("release command timeout: {e}"))?;
    let outer_timeout = Duration::from_secs(args.timeout);
    if release_limit.map_or(true, |limit| limit >= outer_timeout) {
        eprintln!(
            "warning: --timeout {}s does not leave room for the release command timeout ({release_timeout}); \
             flyctl may be stopped while the release command still runs",
            args.timeout
        );
    }
    let drain_bound = drain::drain_timeout(
        args.drain.timeout.as_deref(),
        target
            .toml
            .env
            .get(fly::DRAIN_TIMEOUT_VAR)
            .map(String::as_str),
    )?;
    // A missing flyctl is reported by stage 1 (check secrets), so the error names the stage.
    let fly_program = fly::find_fly().unwrap_or_else(|_| "fly".into());

    eprintln!(
        "Deploying {} to Fly app {} ({} environment, config {}){}",
        project.prefect_file_label(),
        target.app,
        env.name(),
        crate::project::display_relative(&target.config, &project.root),
        if args.dry_run {
            " -- dry run: no command is run"
        } else {
            ""
        },
    );
    let host_env = EnvVars::capture();
    let mut pipeline = Pipeline::new("deploy", 6).with_ci(CiOutput::detect(&host_env));
    let result = run_stages(
        &mut pipeline,
        &host_env,
        args,
        project,
        target,
        &fly_program,
        &Limits {
            release_timeout,
            outer_timeout,
            drain_bound,
        },
    );
    eprint!("{}", pipeline.summary());
    pipeline.write_step_summary(&format!(
        "Deploy of {} to Fly app {} ({})",
        project.prefect_file_label(),
        target.app,
        env.name()
    ));
    result
}

/// Time limits of `fly deploy`.
struct Limits {
    /// Go duration passed as `--release-command-timeout`.
    release_timeout: String,
    /// When flyctl is killed.
    outer_timeout: Duration,
    /// How long the drain waits for runs in progress.
    drain_bound: Duration,
}

fn run_stages(
    pipeline: &mut Pipeline,
    host_env: &EnvVars,
    args: &DeployOptions,
    project: &Project,
    target: &FlyTarget,
    fly_program: &Path,
    limits: &Limits,
) -> Result<()> {
    // Stages 2 and 6 run register-flows as the release command does: with the release Machine's
    // plain environment (this host's, overlaid with fly.toml `[env]` except connection settings).
    let release = release_env(host_env, &target.toml.env);
    let dry_run = args.dry_run;

    pipeline.run("check secrets", || {
        let mode = if dry_run {
            FlyCheck::DryRun
        } else {
            FlyCheck::Run
        };
        let list = checklist(host_env, mode, || Ok(target.clone()))?;
        eprint!("{}", indent(&redact(&list.render_text())));
        let failed: Vec<String> = list.failures().map(|i| i.check.clone()).collect();
        if !failed.is_empty() {
            bail!(
                "{} problem(s): {}; see the checklist above (`cargo xtask check-secrets --app {}`)",
                failed.len(),
                failed.join(", "),
                target.app
            );
        }
        Ok(())
    })?;

    let plan_report = pipeline.run("validate and plan", || {
        let bytes = std::fs::read(&project.prefect_file)
            .with_context(|| format!("cannot read {}", project.prefect_file.display()))?;
        // Offline validation first (all problems at once); register-flows repeats it, cheaply.
        let file = prefect_yaml::parse(&project.prefect_file_label(), &bytes)?;
        let deployments = deployment_pools(&file);
        let problems = lint_pool_names(&deployments, args.env);
        if !problems.is_empty() {
            bail!("{}: {}", project.prefect_file_label(), problems.join("; "));
        }
        let plan = SyncOptions {
            dry_run: true,
            // "Run nothing": build steps are shown, not run.
            run_steps: !dry_run,
            // The release the image will record: `--image`'s tag, else the tag the build gives it.
            release: match &args.image {
                Some(image) => Release::from_image_ref(image),
                None => docker::planned_release(&project.root, host_env),
            },
            ..SyncOptions::default()
        };
        let reported = register_reported(project, &release, args.verbose, &plan)?;
        if reported.code != code::OK {
            bail!("register-flows --dry-run did not succeed");
        }
        Ok(reported.markdown)
    })?;
    pipeline.attach(plan_report);

    let image = match &args.image {
        Some(image) => {
            pipeline.skip("build image", &format!("--image {image}"));
            image.clone()
        }
        None => pipeline.run("build image", || {
            let options = BuildOptions {
                dry_run,
                platform: FLY_PLATFORM.to_string(),
                build_args: Vec::new(),
                repository: None,
                fly_app: Some(target.app.clone()),
                fly_config: Some(target.config.clone()),
                // Fly's builder pushes to registry.fly.io/<app>, which `fly deploy --image` can pull.
                via_fly: true,
            };
            let image = docker::build_image(project, &options)?;
            eprintln!("    image: {image}");
            Ok(image)
        })?,
    };

    let paused = drain::run_stage(
        pipeline,
        &drain::StageInput {
            pools: &target.toml.worker_pools(),
            options: &args.drain,
            bound: limits.drain_bound,
            app: &target.app,
            dry_run,
            env: &release,
            verbose: args.verbose,
        },
    )?;

    let deployed = pipeline.run("fly deploy", || {
        fly_deploy(
            fly_program,
            target,
            &image,
            &limits.release_timeout,
            limits.outer_timeout,
            dry_run,
        )
    });
    // Whatever fly deploy did, the new (or old) workers may take runs again.
    let resumed = paused.map_or(Ok(()), drain::PausedPools::resume);
    deployed?;
    resumed?;

    let pools = yaml_pools(project)?;
    let verify_target = verify::Target {
        fly: fly_program,
        app: &target.app,
        toml: &target.toml,
        image: &image,
        pools: &pools,
        env: &release,
        verbose: args.verbose,
    };
    pipeline.run("verify", || {
        let status_cmd = fly::status_cmd(fly_program, &target.app);
        if dry_run {
            eprintln!("    $ cargo xtask register-flows --check");
            eprintln!("    $ {status_cmd}");
            for line in verify::describe(&verify_target, &args.verify) {
                eprintln!("    {line}");
            }
            return Ok(());
        }
        // The release command recorded this image as the release (docs/releases.md).
        let check = SyncOptions {
            check: true,
            release: Release::from_image_ref(&image),
            ..SyncOptions::default()
        };
        let code = register_reported(project, &release, args.verbose, &check)?.code;
        if code == code::DRIFT {
            bail!(
                "the Prefect server does not match {} after the release; \
                 `cargo xtask register-flows --dry-run` shows the difference",
                project.prefect_file_label()
            );
        }
        if code != code::OK {
            bail!("register-flows --check did not succeed");
        }
        let machines = fly::status(fly_program, &target.app)?;
        eprintln!("    {}: {machines}", target.app);
        if machines.started == 0 {
            bail!(
                "app {} has no running machine ({machines}); see `fly status --app {}`",
                target.app,
                target.app
            );
        }
        verify::work_will_run(&verify_target, &args.verify)
    })?;
    Ok(())
}

/// The work pools the prefect file's deployments name (templated names are resolved by the
/// release command; they are left out here, with a note).
pub fn yaml_pools(project: &Project) -> Result<Vec<String>> {
    let bytes = std::fs::read(&project.prefect_file)
        .with_context(|| format!("cannot read {}", project.prefect_file.display()))?;
    let file = prefect_yaml::parse(&project.prefect_file_label(), &bytes)?;
    let mut pools = Vec::new();
    for deployment in deployment_pools(&file) {
        match deployment.pool {
            Some(pool) if pool.contains("{{") => eprintln!(
                "    note: deployment `{}` names its work pool by a template ({pool}); verify does not check it",
                deployment.name
            ),
            Some(pool) if !pools.contains(&pool) => pools.push(pool),
            _ => {}
        }
    }
    pools.sort();
    Ok(pools)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The `fly deploy` stage of `deploy` and `rollback`: `image` to the target app, the command
/// printed; run unless `dry_run`, given up after `timeout`.
pub(crate) fn fly_deploy(
    fly_program: &Path,
    target: &FlyTarget,
    image: &str,
    release_command_timeout: &str,
    timeout: Duration,
    dry_run: bool,
) -> Result<()> {
    let cmd = fly::deploy_cmd(
        fly_program,
        &DeployRequest {
            config: target.config.clone(),
            app: target.app.clone(),
            image: image.to_string(),
            release_command_timeout: release_command_timeout.to_string(),
        },
    );
    eprintln!("    $ {}", redact(&cmd.to_string()));
    if dry_run {
        return Ok(());
    }
    eprintln!(
        "    (gives up after {}s; the release command runs register-flows first)",
        timeout.as_secs()
    );
    fly::run_checked(&cmd, timeout, true).map(|_| ())
}
