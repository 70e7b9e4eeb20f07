//! The `--engine prefect-cli` fallback: registering with Prefect's own
//! `prefect --no-prompt deploy --all`, exactly as the old bash setup did.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::project::{venv_dir, Project, PREFECT_VERSION};
use crate::sys::process;

/// The `prefect` executable: the project venv's, else the one on PATH.
pub fn find_prefect() -> Result<PathBuf> {
    let in_venv = venv_dir().join("bin/prefect");
    if in_venv.is_file() {
        return Ok(in_venv);
    }
    which::which("prefect").map_err(|_| {
        anyhow::anyhow!(
            "`prefect` not found: neither {} nor PATH has it. Run `cargo xtask deploy --local` once \
             (it creates the venv) or install prefect=={PREFECT_VERSION}",
            in_venv.display()
        )
    })
}

/// `prefect --no-prompt deploy --all --prefect-file <file>`, run from the project root
/// (entrypoints resolve against the working directory) with stdin closed.
fn deploy_all_command(
    project: &Project,
    prefect_bin: &Path,
    extra_env: &[(&str, &str)],
) -> Result<Command> {
    let sh = process::shell()?;
    sh.change_dir(&project.root);
    let prefect_file = &project.prefect_file;
    let cmd = cmd!(
        sh,
        "{prefect_bin} --no-prompt deploy --all --prefect-file {prefect_file}"
    )
    .envs(extra_env.iter().copied());
    Ok(cmd.into())
}

/// Registers every deployment of the project's prefect file with Prefect's CLI. Its output
/// streams to stderr (progress, like ours); the server comes from PREFECT_API_URL
/// (environment or `extra_env`).
pub fn deploy_all(project: &Project, prefect_bin: &Path, extra_env: &[(&str, &str)]) -> Result<()> {
    for warning in shared_limit_warnings(project) {
        eprintln!("warning: {warning}");
    }
    let status = process::status_to_stderr(deploy_all_command(project, prefect_bin, extra_env)?)
        .with_context(|| format!("cannot run {}", prefect_bin.display()))?;
    if !status.success() {
        bail!(
            "`prefect --no-prompt deploy --all --prefect-file {}` failed ({status}); see its output above",
            project.prefect_file_label()
        );
    }
    Ok(())
}

/// Deployments under a shared global limit: Prefect's upsert sends them a null limit, which makes
/// the server delete the limit attached to them, the shared one (docs/resources.md).
fn shared_limit_warnings(project: &Project) -> Vec<String> {
    let Some(file) = std::fs::read(&project.prefect_file)
        .ok()
        .and_then(|bytes| super::prefect_yaml::parse(&project.prefect_file_label(), &bytes).ok())
    else {
        return Vec::new();
    };
    file.deployments
        .iter()
        .filter_map(|d| {
            let limit = d.global_limit_name()?;
            Some(format!(
                "deployment '{}' runs under the global limit '{limit}' (concurrency_limit: {{global: …}}); `prefect deploy` registers it without the limit and makes Prefect 3.9.1 delete the limit it is attached to (the next native register-flows re-creates it)",
                d.name
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_all_command_line() {
        let project = Project {
            root: PathBuf::from("/r"),
            prefect_file: PathBuf::from("/r/prefect-dev.yaml"),
        };
        let cmd = deploy_all_command(
            &project,
            Path::new("/r/.venv/bin/prefect"),
            &[("APP_DIR", "/r")],
        )
        .unwrap();
        assert_eq!(cmd.get_program(), "/r/.venv/bin/prefect");
        let args = crate::sys::process::args_of(&cmd);
        assert_eq!(
            args,
            [
                "--no-prompt",
                "deploy",
                "--all",
                "--prefect-file",
                "/r/prefect-dev.yaml"
            ]
        );
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/r")));
        let envs: Vec<_> = cmd.get_envs().collect();
        assert_eq!(
            envs,
            [(
                std::ffi::OsStr::new("APP_DIR"),
                Some(std::ffi::OsStr::new("/r"))
            )]
        );
    }

    #[test]
    fn warns_about_deployments_under_a_shared_limit() {
        let dir = std::env::temp_dir().join(format!("xtask-shared-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("prefect.yaml"),
            "deployments:\n- {name: a, entrypoint: f.py:f, concurrency_limit: {global: gpu, collision_strategy: ENQUEUE}}\n- {name: b, entrypoint: f.py:f, concurrency_limit: 2}\n",
        )
        .unwrap();
        let project = Project {
            root: dir.clone(),
            prefect_file: dir.join("prefect.yaml"),
        };
        let warnings = shared_limit_warnings(&project);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("deployment 'a' runs under the global limit 'gpu'"),
            "{warnings:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reports_a_failing_deploy() {
        let dir = std::env::temp_dir().join(format!("xtask-fake-prefect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("prefect");
        std::fs::write(
            &fake,
            "#!/bin/sh\n[ \"$APP_DIR\" = /app ] && exit 0\nexit 4\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let project = Project {
            root: dir.clone(),
            prefect_file: dir.join("prefect.yaml"),
        };
        deploy_all(&project, &fake, &[("APP_DIR", "/app")]).unwrap();
        let err = deploy_all(&project, &fake, &[("APP_DIR", "/elsewhere")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--prefect-file prefect.yaml") && err.contains("exit status: 4"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
