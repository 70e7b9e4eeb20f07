//! `cargo xtask rollback [--to RELEASE] [--dry-run]`: back to an earlier Fly release, stage by
//! stage, like deploy:
//!
//! 1. find the release: `fly releases --image --json`; the target is `--to` or the last
//!    completed release before the current one (with another image).
//! 2. plan: what the target release's release command will do on the Prefect server, computed
//!    from its commit in this git checkout (`git archive`), with `--prune` (docs/releases.md).
//! 3. drain the workers (as deploy).
//! 4. fly deploy `--image <that image>`: Fly runs the release command (`xtask register-flows
//!    --prune`) of that image, which registers its own deployments and deletes the ones the
//!    newer release added.
//! 5. verify: the check against the target's yaml and release, then deploy's "work will run".
//!
//! Fly secrets and fly.toml are not rolled back: the output says so, and names fly.toml when it
//! differs from the target commit's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::deploy::{drain, verify, yaml_pools};
use crate::fly::machines::{list_releases, FlyRelease};
use crate::fly::release_env::release_env;
use crate::fly::{self, split_command, FlyTarget};
use crate::project::{Env, Project};
use crate::sync::release::Release;
use crate::sync::{register_reported, SyncOptions};
use crate::sys::env_vars::EnvVars;
use crate::sys::report::code;
use crate::sys::stages::{CiOutput, Pipeline};

/// What to roll back to and how.
pub struct RollbackOptions {
    pub env: Env,
    /// `vN`, `N`, a release id (the image tag) or an image reference; None: the previous one.
    pub to: Option<String>,
    pub dry_run: bool,
    pub timeout: Duration,
    pub release_command_timeout: String,
    pub verbose: bool,
    pub drain: drain::DrainOptions,
    pub verify: verify::VerifyOptions,
}

/// The current release and the one to go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub current: FlyRelease,
    pub target: FlyRelease,
}

/// Picks the target among `releases` (newest first): `to` names a completed release by
/// `vN`/`N`, by its image's tag (the release id) or by its image; without `to`, the newest
/// completed release older than the current one with another image. Errors list what exists.
pub fn choose(releases: &[FlyRelease], to: Option<&str>) -> Result<Choice, String> {
    let listing = || {
        let lines: Vec<String> = releases
            .iter()
            .map(|r| format!("v{} {} {} {}", r.version, r.status, r.image, r.created_at))
            .collect();
        if lines.is_empty() {
            "none".to_string()
        } else {
            lines.join("; ")
        }
    };
    let current = releases
        .iter()
        .find(|r| r.completed())
        .cloned()
        .ok_or_else(|| format!("the app has no completed release (releases: {})", listing()))?;
    let target = match to {
        Some(wanted) => {
            let wanted = wanted.trim();
            let version = wanted
                .strip_prefix('v')
                .unwrap_or(wanted)
                .parse::<u64>()
                .ok();
            let found = releases.iter().find(|r| {
                Some(r.version) == version
                    || r.image == wanted
                    || Release::from_image_ref(&r.image).is_some_and(|rel| rel.id == wanted)
            });
            let Some(found) = found else {
                return Err(format!(
                    "--to {wanted}: no such release; the app's releases: {}",
                    listing()
                ));
            };
            if !found.completed() {
                return Err(format!(
                    "--to {wanted}: release v{} is {}, not a completed release",
                    found.version, found.status
                ));
            }
            if found.version == current.version {
                return Err(format!(
                    "--to {wanted}: v{} is the current release",
                    found.version
                ));
            }
            found.clone()
        }
        None => releases
            .iter()
            .filter(|r| r.version < current.version && r.completed() && r.image != current.image)
            .max_by_key(|r| r.version)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no completed release before the current v{} to roll back to (releases: {})",
                    current.version,
                    listing()
                )
            })?,
    };
    Ok(Choice { current, target })
}

/// True when the release command prunes (`register-flows --prune`): only then does rolling back
/// remove the deployments the newer release added.
pub fn release_command_prunes(release_command: Option<&str>) -> bool {
    release_command
        .and_then(|line| split_command(line).ok())
        .is_some_and(|argv| {
            argv.iter().any(|a| a == "register-flows") && argv.iter().any(|a| a == "--prune")
        })
}

/// Rolls `target`'s app back, printing each stage and a summary on stderr.
pub fn rollback(project: &Project, target: &FlyTarget, args: &RollbackOptions) -> Result<()> {
    let fly_program = fly::find_fly()?;
    if !release_command_prunes(target.toml.release_command.as_deref()) {
        bail!(
            "{}'s release_command is {:?}: a rollback needs `xtask register-flows --prune` there, \
             so that the old release's command deletes the deployments the newer one added \
             (docs/releases.md \"Rolling back\")",
            crate::project::display_relative(&target.config, &project.root),
            target.toml.release_command.as_deref().unwrap_or("(none)")
        );
    }
    let host_env = EnvVars::capture();
    let release = release_env(&host_env, &target.toml.env);
    let mut pipeline = Pipeline::new("rollback", 5).with_ci(CiOutput::detect(&host_env));
    let result = run_stages(
        &mut pipeline,
        project,
        target,
        &fly_program,
        &release,
        &host_env,
        args,
    );
    eprint!("{}", pipeline.summary());
    result
}

fn run_stages(
    pipeline: &mut Pipeline,
    project: &Project,
    target: &FlyTarget,
    fly_program: &Path,
    release: &EnvVars,
    host_env: &EnvVars,
    args: &RollbackOptions,
) -> Result<()> {
    let dry_run = args.dry_run;
    let choice = pipeline.run("find the release", || {
        let releases = list_releases(fly_program, &target.app)?;
        let choice = choose(&releases, args.to.as_deref()).map_err(anyhow::Error::msg)?;
        eprintln!(
            "    current: v{} {}\n    back to: v{} {} ({})",
            choice.current.version,
            choice.current.image,
            choice.target.version,
            choice.target.image,
            choice.target.created_at
        );
        Ok(choice)
    })?;
    let old_release = Release::from_image_ref(&choice.target.image);
    let old_checkout = scratch_dir(&target.app);
    let old_project = pipeline.run("plan", || {
        eprintln!("    not rolled back: the app's Fly secrets and this checkout's fly.toml (Fly uses them with the old image)");
        let Some(old_project) =
            checkout_of(project, old_release.as_ref(), &old_checkout, host_env)
        else {
            eprintln!(
                "    cannot show the plan: the release's commit is not in this git checkout; \
                 its release command will make the server match its own prefect file"
            );
            return Ok(None);
        };
        if let (Ok(now), Ok(then)) = (
            std::fs::read(&target.config),
            std::fs::read(old_project.root.join(fly_toml_name(target, project))),
        ) {
            if now != then {
                eprintln!(
                    "    note: fly.toml differs from the one of v{}: its changes (processes, [env], release_command) stay",
                    choice.target.version
                );
            }
        }
        let plan = SyncOptions {
            dry_run: true,
            prune: true,
            release: old_release.clone(),
            ..SyncOptions::default()
        };
        let reported = register_reported(&old_project, release, args.verbose, &plan)?;
        if reported.code != code::OK {
            bail!("the plan of the rollback did not succeed");
        }
        Ok(Some(old_project))
    })?;

    let paused = drain::run_stage(
        pipeline,
        &drain::StageInput {
            pools: &target.toml.worker_pools(),
            options: &args.drain,
            bound: drain::drain_timeout(
                args.drain.timeout.as_deref(),
                target
                    .toml
                    .env
                    .get(fly::DRAIN_TIMEOUT_VAR)
                    .map(String::as_str),
            )?,
            app: &target.app,
            dry_run,
            env: release,
            verbose: args.verbose,
        },
    )?;
    let deployed = pipeline.run("fly deploy", || {
        super::fly_deploy(
            fly_program,
            target,
            &choice.target.image,
            &args.release_command_timeout,
            args.timeout,
            dry_run,
        )
        .map_err(|err| match err.downcast_ref::<fly::FlyError>() {
            Some(fly_err) if fly_err.failure == fly::FlyFailure::Image => anyhow::anyhow!(
                "release v{}'s image {} is no longer in Fly's registry (or cannot be pulled); \
                     nothing was changed. Pick another release with --to",
                choice.target.version,
                choice.target.image
            ),
            _ => err,
        })?;
        Ok(())
    });
    let resumed = paused.map_or(Ok(()), drain::PausedPools::resume);
    deployed?;
    resumed?;

    let pools = match &old_project {
        Some(old) => yaml_pools(old)?,
        None => yaml_pools(project)?,
    };
    let verify_target = verify::Target {
        fly: fly_program,
        app: &target.app,
        toml: &target.toml,
        image: &choice.target.image,
        pools: &pools,
        env: release,
        verbose: args.verbose,
    };
    pipeline.run("verify", || {
        if dry_run {
            eprintln!(
                "    $ cargo xtask register-flows --check   (against v{}'s prefect file)",
                choice.target.version
            );
            for line in verify::describe(&verify_target, &args.verify) {
                eprintln!("    {line}");
            }
            return Ok(());
        }
        if let Some(old_project) = &old_project {
            let check = SyncOptions {
                check: true,
                prune: true,
                release: old_release.clone(),
                ..SyncOptions::default()
            };
            let code = register_reported(old_project, release, args.verbose, &check)?.code;
            if code != code::OK {
                bail!(
                    "the Prefect server does not match v{}'s {} after the rollback",
                    choice.target.version,
                    old_project.prefect_file_label()
                );
            }
        }
        verify::work_will_run(&verify_target, &args.verify)
    })?;
    let _ = std::fs::remove_dir_all(&old_checkout);
    Ok(())
}

/// fly.toml's path relative to the project root (the same file in the old commit).
fn fly_toml_name(target: &FlyTarget, project: &Project) -> PathBuf {
    target
        .config
        .strip_prefix(&project.root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| PathBuf::from("fly.toml"))
}

fn scratch_dir(app: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "xtask-rollback-{}-{}",
        app.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        std::process::id()
    ))
}

/// The target release's project from this git checkout (`git archive` of its commit into
/// `dir`), or None when the checkout does not have that commit. An image built from a dirty
/// tree (`-dirty`) is its commit plus changes nobody kept: the plan is then approximate.
fn checkout_of(
    project: &Project,
    release: Option<&Release>,
    dir: &Path,
    env: &EnvVars,
) -> Option<Project> {
    let release = release?;
    let commit = release
        .commit
        .clone()
        .unwrap_or_else(|| release.id.trim_end_matches("-dirty").to_string());
    if !commit.chars().all(|c| c.is_ascii_hexdigit()) || commit.len() < 7 {
        return None;
    }
    let full = crate::sys::process::git(
        &project.root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{commit}^{{commit}}"),
        ],
        env,
    )
    .ok()?;
    let full = full.trim().to_string();
    if release.id.ends_with("-dirty") {
        eprintln!("    note: that image was built from uncommitted changes on {full}; the plan shows the commit");
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).ok()?;
    let archive = dir.join("release.tar");
    crate::sys::process::git(
        &project.root,
        &[
            "archive",
            "--format=tar",
            "-o",
            &archive.display().to_string(),
            &full,
        ],
        env,
    )
    .ok()?;
    crate::sys::process::untar(&archive, dir).ok()?;
    let label = project.prefect_file_label();
    Some(Project {
        root: dir.to_path_buf(),
        prefect_file: dir.join(label),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: u64, status: &str, image: &str) -> FlyRelease {
        FlyRelease {
            version,
            status: status.into(),
            image: image.into(),
            created_at: format!("2026-01-0{version}T00:00:00Z"),
        }
    }

    fn history() -> Vec<FlyRelease> {
        vec![
            release(5, "failed", "r/app:eee"),
            release(4, "complete", "r/app:ddd"),
            release(3, "complete", "r/app:ddd"),
            release(2, "failed", "r/app:bbb"),
            release(1, "complete", "r/app:aaa"),
        ]
    }

    #[test]
    fn the_default_target_is_the_last_completed_release_with_another_image() {
        let choice = choose(&history(), None).unwrap();
        assert_eq!(choice.current.version, 4);
        assert_eq!(choice.target.version, 1, "v3 is the same image, v2 failed");
    }

    #[test]
    fn to_names_a_release_by_version_id_or_image() {
        for to in ["v1", "1", "aaa", "r/app:aaa"] {
            assert_eq!(
                choose(&history(), Some(to)).unwrap().target.version,
                1,
                "{to}"
            );
        }
        let err = choose(&history(), Some("v9")).unwrap_err();
        assert!(
            err.starts_with("--to v9: no such release; the app's releases: v5 failed r/app:eee"),
            "{err}"
        );
        assert!(choose(&history(), Some("v2"))
            .unwrap_err()
            .contains("is failed"));
        assert!(choose(&history(), Some("v4"))
            .unwrap_err()
            .contains("current release"));
    }

    #[test]
    fn no_earlier_completed_release_is_an_error() {
        let only = vec![
            release(2, "failed", "r/app:b"),
            release(1, "complete", "r/app:a"),
        ];
        let err = choose(&only, None).unwrap_err();
        assert!(
            err.starts_with("no completed release before the current v1"),
            "{err}"
        );
        assert!(choose(&[], None)
            .unwrap_err()
            .contains("no completed release"));
    }

    #[test]
    fn only_a_pruning_release_command_removes_what_a_newer_release_added() {
        assert!(release_command_prunes(Some("xtask register-flows --prune")));
        assert!(!release_command_prunes(Some("xtask register-flows")));
        assert!(!release_command_prunes(None));
    }
}
