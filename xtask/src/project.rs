//! Where things are: the project root and every path the commands use, in one place.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Files that mark a project root.
const ROOT_MARKERS: &[&str] = &["prefect.yaml", "fly.toml"];

/// The Prefect version the app, the image and the tests use. The single source of truth is
/// `app/requirements.txt`; this constant is checked against it by a test.
pub(crate) const PREFECT_VERSION: &str = "3.9.1";

/// Which environment's files and app to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Env {
    /// prefect.yaml, app `captionacc-api`, pool `captionacc-workers-prod`.
    #[default]
    Prod,
    /// prefect-dev.yaml, pool `captionacc-workers-dev`.
    Dev,
}

impl Env {
    /// `prod` or `dev`, as messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Env::Prod => "prod",
            Env::Dev => "dev",
        }
    }
}

/// The project a command works on.
#[derive(Debug, Clone)]
pub struct Project {
    /// Entrypoints and pull-step directories resolve against this directory, as in Prefect.
    pub root: PathBuf,
    /// The prefect.yaml in use.
    pub prefect_file: PathBuf,
}

impl Project {
    /// Finds the project from the current directory: the nearest ancestor holding a
    /// prefect.yaml or fly.toml (so `cargo xtask` works from a subdirectory), else the cwd.
    /// `prefect_file` (relative to the cwd) overrides `env`'s default prefect file.
    pub fn discover(prefect_file: Option<&Path>, env: Env) -> Result<Project> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let root = match std::env::var_os("XTASK_PROJECT_ROOT") {
            Some(dir) => PathBuf::from(dir),
            None => find_root(&cwd).unwrap_or_else(|| cwd.clone()),
        };
        let prefect_file = match prefect_file {
            Some(path) if path.is_absolute() => path.to_path_buf(),
            Some(path) => cwd.join(path),
            None => root.join(default_prefect_file(env)),
        };
        Ok(Project { root, prefect_file })
    }

    pub(crate) fn fly_toml(&self) -> PathBuf {
        self.root.join("fly.toml")
    }

    pub(crate) fn dockerfile(&self) -> PathBuf {
        self.root.join("Dockerfile")
    }

    /// The prefect file as shown to the user: relative to the root when inside it.
    pub fn prefect_file_label(&self) -> String {
        display_relative(&self.prefect_file, &self.root)
    }
}

pub(crate) fn default_prefect_file(env: Env) -> &'static str {
    match env {
        Env::Prod => "prefect.yaml",
        Env::Dev => "prefect-dev.yaml",
    }
}

fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| ROOT_MARKERS.iter().any(|marker| dir.join(marker).is_file()))
        .map(Path::to_path_buf)
}

/// `path` relative to `base` when it is inside it, else as given.
pub fn display_relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The repository this xtask was built from (for developer commands: test, bench, deploy --local).
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// Local state of developer commands (server logs, pid files): `target/xtask/`,
/// or XTASK_STATE_DIR (tests use their own, leaving a developer's local server alone).
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XTASK_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("xtask")
}

/// The project-local Python venv with the pinned Prefect.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("XTASK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
}

/// The venv of the workflow linters `cargo xtask test` runs (xtask/workflow-linters.txt):
/// `.venv-tools/` beside `.venv/`, or XTASK_TOOLS_VENV.
pub fn tools_venv_dir() -> PathBuf {
    std::env::var_os("XTASK_TOOLS_VENV")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-tools"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefect_version_matches_requirements() {
        let requirements =
            std::fs::read_to_string(repo_root().join("app/requirements.txt")).unwrap();
        assert!(
            requirements
                .lines()
                .any(|l| l.trim() == format!("prefect=={PREFECT_VERSION}")),
            "app/requirements.txt must pin prefect=={PREFECT_VERSION}"
        );
    }

    #[test]
    fn finds_root_from_subdirectory() {
        let dir = std::env::temp_dir().join(format!("xtask-root-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("prefect.yaml"), "deployments: []\n").unwrap();
        assert_eq!(find_root(&dir.join("a/b")).unwrap(), dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
