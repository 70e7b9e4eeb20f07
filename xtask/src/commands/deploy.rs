//! `cargo xtask deploy`: the ordered release pipeline.
//!
//! 1. check secrets: check-secrets' checklist (local env, server, the Fly app's secrets).
//! 2. validate and plan: the pool naming lint, then `register-flows --dry-run` (offline
//!    validation, then the plan against the server; writes nothing).
//! 3. build image: `docker::build_image` (skipped with `--image REF`).
//! 4. fly deploy: `fly deploy --image REF …`; Fly runs the release command
//!    (`xtask register-flows`) in a temporary Machine before rolling out.
//! 5. verify: `register-flows --check` from this host (drift fails) and `fly status --json`
//!    shows running Machines.
//!
//! Stages 2 and 5 compute the yaml's desired state with the release Machine's plain environment
//! (fly.toml `[env]`, e.g. `APP_DIR=/app` used by the pull step), so the plan and the drift check
//! describe what the release command registers, not what this checkout would.
//!
//! `--env dev` uses prefect-dev.yaml and the dev app: fly-dev.toml when it exists, else fly.toml
//! with the app `<app>-dev` (see [`fly::target`]). `--dry-run` runs no external command: it shows
//! the checks it can make without one, the plan, and the exact commands of the other stages.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::{DeployArgs, Env, GlobalArgs};
use crate::commands::check_secrets::{self, FlyCheck};
use crate::commands::{local, register_reported};
use crate::docker::{self, BuildOptions};
use crate::fly::release_env::release_env;
use crate::fly::{self, DeployRequest, FlyTarget};
use crate::prefect::prefect_yaml::{self, PrefectFile};
use crate::project::Project;
use crate::sync::SyncOptions;
use crate::sys::env_vars::EnvVars;
use crate::sys::redact::redact;
use crate::sys::report::code;
use crate::sys::stages::Pipeline;

/// flyctl's own default for `--release-command-timeout`.
const DEFAULT_RELEASE_COMMAND_TIMEOUT: &str = "5m";

/// The platform of Fly Machines.
const FLY_PLATFORM: &str = "linux/amd64";

pub fn run(global: &GlobalArgs, args: DeployArgs) -> Result<ExitCode> {
    if args.local {
        return local::deploy_local(global, &args);
    }
    let project = Project::discover(global, args.env)?;
    let target = fly::target(&project, args.env, args.app.as_deref())?;
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
    // A missing flyctl is reported by stage 1 (check secrets), so the error names the stage.
    let fly_program = fly::find_fly().unwrap_or_else(|_| "fly".into());

    eprintln!(
        "Deploying {} to Fly app {} ({} environment, config {}){}",
        project.prefect_file_label(),
        target.app,
        env_name(args.env),
        crate::project::display_relative(&target.config, &project.root),
        if args.dry_run {
            " -- dry run: no command is run"
        } else {
            ""
        },
    );
    let mut pipeline = Pipeline::new("deploy", 5);
    let result = run_stages(
        &mut pipeline,
        global,
        &args,
        &project,
        &target,
        &fly_program,
        &Limits {
            release_timeout,
            outer_timeout,
        },
    );
    eprint!("{}", pipeline.summary());
    result.map(|()| ExitCode::from(code::OK))
}

/// Time limits of `fly deploy`.
struct Limits {
    /// Go duration passed as `--release-command-timeout`.
    release_timeout: String,
    /// When flyctl is killed.
    outer_timeout: Duration,
}

fn run_stages(
    pipeline: &mut Pipeline,
    global: &GlobalArgs,
    args: &DeployArgs,
    project: &Project,
    target: &FlyTarget,
    fly_program: &Path,
    limits: &Limits,
) -> Result<()> {
    let dry_run = args.dry_run;

    pipeline.run("check secrets", || {
        let mode = if dry_run {
            FlyCheck::DryRun
        } else {
            FlyCheck::Run
        };
        let list = check_secrets::evaluate(global, args.env, Some(&target.app), mode)?;
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

    pipeline.run("validate and plan", || {
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
            ..SyncOptions::default()
        };
        if register_as_release(global, project, target, &plan)? != code::OK {
            bail!("register-flows --dry-run did not succeed");
        }
        Ok(())
    })?;

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
                // Fly's builder pushes to registry.fly.io/<app>, which `fly deploy --image` can pull.
                via_fly: true,
            };
            let image = docker::build_image(project, &options)?;
            eprintln!("    image: {image}");
            Ok(image)
        })?,
    };

    pipeline.run("fly deploy", || {
        let cmd = fly::deploy_cmd(
            fly_program,
            &DeployRequest {
                config: target.config.clone(),
                app: target.app.clone(),
                image: image.clone(),
                release_command_timeout: limits.release_timeout.clone(),
            },
        );
        eprintln!("    $ {}", redact(&cmd.to_string()));
        if dry_run {
            return Ok(());
        }
        eprintln!(
            "    (gives up after {}s; the release command runs register-flows first)",
            limits.outer_timeout.as_secs()
        );
        fly::run_checked(&cmd, limits.outer_timeout, true)?;
        Ok(())
    })?;

    pipeline.run("verify", || {
        let status_cmd = fly::status_cmd(fly_program, &target.app);
        if dry_run {
            eprintln!("    $ cargo xtask register-flows --check");
            eprintln!("    $ {status_cmd}");
            return Ok(());
        }
        let check = SyncOptions {
            check: true,
            ..SyncOptions::default()
        };
        let code = register_as_release(global, project, target, &check)?;
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
        Ok(())
    })?;
    Ok(())
}

fn env_name(env: Env) -> &'static str {
    match env {
        Env::Prod => "prod",
        Env::Dev => "dev",
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// register-flows as the release command runs it: with the release Machine's plain environment
/// (this host's, overlaid with fly.toml `[env]` except connection settings).
fn register_as_release(
    global: &GlobalArgs,
    project: &Project,
    target: &FlyTarget,
    options: &SyncOptions,
) -> Result<u8> {
    let env = release_env(&EnvVars::capture(), &target.toml.env);
    register_reported(project, &env, global.verbose, options)
}

// ---------------------------------------------------------------------------------------------
// The pool naming lint

/// A deployment's name and work pool, as written in prefect.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentPool {
    pub name: String,
    /// Line of the deployment in the file (for messages).
    pub line: usize,
    pub pool: Option<String>,
}

/// The environment a name belongs to, from its `-`/`_`/`.`-separated words: `prod`/`production`
/// or `dev`/`development`. `None` when it names neither (or both).
pub fn env_of(name: &str) -> Option<Env> {
    let mut found = None;
    for word in name.split(['-', '_', '.']) {
        let env = match word.to_ascii_lowercase().as_str() {
            "prod" | "production" => Env::Prod,
            "dev" | "development" => Env::Dev,
            _ => continue,
        };
        if found.is_some_and(|f| f != env) {
            return None;
        }
        found = Some(env);
    }
    found
}

/// Refuses a dev deployment on a prod pool and vice versa, and deployments or pools of the
/// other environment than the one being deployed. The rule comes from the names themselves
/// (`captionacc-prod-*` → `captionacc-workers-prod`), so new deployments need no list update.
pub fn lint_pool_names(deployments: &[DeploymentPool], target: Env) -> Vec<String> {
    let mut problems = Vec::new();
    for d in deployments {
        let name_env = env_of(&d.name);
        let pool_env = d.pool.as_deref().and_then(env_of);
        let pool = d.pool.as_deref().unwrap_or("(none)");
        match (name_env, pool_env) {
            (Some(n), Some(p)) if n != p => problems.push(format!(
                "line {}: deployment `{}` is a {} deployment but uses the {} pool `{pool}`",
                d.line,
                d.name,
                env_name(n),
                env_name(p)
            )),
            (n, p) => {
                if let Some(env) = n.or(p).filter(|e| *e != target) {
                    problems.push(format!(
                        "line {}: deployment `{}` (pool `{pool}`) belongs to {} but this is a {} deploy",
                        d.line,
                        d.name,
                        env_name(env),
                        env_name(target)
                    ));
                }
            }
        }
    }
    problems
}

/// Names and pools of a parsed prefect.yaml's deployments (as written, before templating).
pub fn deployment_pools(file: &PrefectFile) -> Vec<DeploymentPool> {
    file.deployments
        .iter()
        .map(|d| DeploymentPool {
            name: d.name.clone(),
            line: d.line,
            pool: d.work_pool_name().map(str::to_string),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(name: &str, pool: Option<&str>) -> DeploymentPool {
        DeploymentPool {
            name: name.into(),
            line: 1,
            pool: pool.map(String::from),
        }
    }

    #[test]
    fn env_from_name_words() {
        assert_eq!(env_of("captionacc-prod-video"), Some(Env::Prod));
        assert_eq!(env_of("captionacc-workers-dev"), Some(Env::Dev));
        assert_eq!(env_of("my_production.pool"), Some(Env::Prod));
        assert_eq!(env_of("captionacc-video"), None);
        // Words, not substrings: "product", "devices" name no environment.
        assert_eq!(env_of("product-devices"), None);
        assert_eq!(env_of("prod-to-dev-copy"), None);
    }

    #[test]
    fn accepts_matching_pools() {
        let prod = [
            dp(
                "captionacc-prod-video-initial-processing",
                Some("captionacc-workers-prod"),
            ),
            dp(
                "captionacc-prod-caption-cleanup",
                Some("captionacc-workers-prod"),
            ),
            dp("neutral", Some("shared-pool")),
            dp("neutral-no-pool", None),
        ];
        assert_eq!(lint_pool_names(&prod, Env::Prod), Vec::<String>::new());
        let dev = [dp("captionacc-dev-video", Some("captionacc-workers-dev"))];
        assert_eq!(lint_pool_names(&dev, Env::Dev), Vec::<String>::new());
    }

    #[test]
    fn refuses_crossed_pools() {
        let problems = lint_pool_names(
            &[
                dp("captionacc-dev-video", Some("captionacc-workers-prod")),
                dp("captionacc-prod-video", Some("captionacc-workers-dev")),
            ],
            Env::Prod,
        );
        assert_eq!(
            problems,
            [
                "line 1: deployment `captionacc-dev-video` is a dev deployment but uses the prod pool `captionacc-workers-prod`",
                "line 1: deployment `captionacc-prod-video` is a prod deployment but uses the dev pool `captionacc-workers-dev`",
            ]
        );
    }

    #[test]
    fn refuses_the_other_environment() {
        let problems = lint_pool_names(
            &[dp("captionacc-dev-video", Some("captionacc-workers-dev"))],
            Env::Prod,
        );
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("belongs to dev but this is a prod deploy"),
            "{}",
            problems[0]
        );
        let problems = lint_pool_names(&[dp("video", Some("captionacc-workers-prod"))], Env::Dev);
        assert!(
            problems[0].contains("belongs to prod but this is a dev deploy"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn reads_names_and_pools() {
        let text = "
definitions:
  pools:
    prod: &prod
      work_pool:
        name: captionacc-workers-prod
deployments:
  - name: a
    work_pool: {name: p1}
  - <<: *prod
    name: b
";
        let file = prefect_yaml::parse("prefect.yaml", text.as_bytes()).unwrap();
        let got = deployment_pools(&file);
        let want = [
            DeploymentPool {
                name: "a".into(),
                line: 8,
                pool: Some("p1".into()),
            },
            DeploymentPool {
                name: "b".into(),
                line: 10,
                pool: Some("captionacc-workers-prod".into()),
            },
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn the_project_yaml_files_pass_the_lint() {
        let root = crate::project::repo_root();
        for (file, env) in [("prefect.yaml", Env::Prod), ("prefect-dev.yaml", Env::Dev)] {
            let bytes = std::fs::read(root.join(file)).unwrap();
            let deployments = deployment_pools(&prefect_yaml::parse(file, &bytes).unwrap());
            assert!(!deployments.is_empty(), "{file}");
            assert_eq!(
                lint_pool_names(&deployments, env),
                Vec::<String>::new(),
                "{file}"
            );
            let other = if env == Env::Prod {
                Env::Dev
            } else {
                Env::Prod
            };
            assert_eq!(
                lint_pool_names(&deployments, other).len(),
                deployments.len(),
                "{file}"
            );
        }
    }
}
