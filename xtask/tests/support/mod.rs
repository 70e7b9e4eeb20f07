//! Shared helpers for the integration tests (`mod support;` in each test file).
//!
//! Tests run through `cargo xtask test`, which starts two throwaway Prefect servers and sets
//! XTASK_TEST_PREFECT_API_URL, XTASK_TEST_PREFECT_API_URL_2 and XTASK_TEST_VENV. A test that
//! needs them panics with a pointer to that command instead of passing silently.
//! The servers are shared by all tests: name everything with [`unique`].

// Each test crate uses a subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use xtask::prefect_api::{ApiConfig, PrefectClient};

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!("{name} is not set: run the integration tests through `cargo xtask test` (it starts the Prefect servers and sets it)"),
    }
}

/// API URL of test server 1, e.g. `http://127.0.0.1:4431/api`.
pub fn prefect_url() -> String {
    required_env("XTASK_TEST_PREFECT_API_URL")
}

/// API URL of test server 2 (independent of server 1; for parity tests).
pub fn prefect_url_2() -> String {
    required_env("XTASK_TEST_PREFECT_API_URL_2")
}

/// The venv with the pinned Prefect.
pub fn venv_dir() -> PathBuf {
    PathBuf::from(required_env("XTASK_TEST_VENV"))
}

/// An executable of the venv: `venv_bin("prefect")`, `venv_bin("python")`.
pub fn venv_bin(name: &str) -> PathBuf {
    venv_dir().join("bin").join(name)
}

/// The repository checkout (holds prefect.yaml, app/, the venv).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The xtask binary with a clean environment: no PREFECT_*, FLY_* or XTASK_* settings of the
/// developer, stdin closed, state (pid files, logs) under the test temp dir instead of
/// `target/xtask/`, and the test venv as its venv. Add what the test needs.
pub fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PREFECT_") || k.starts_with("FLY_") || k.starts_with("XTASK_") || k == "CARGO_MANIFEST_DIR" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("XTASK_STATE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-state"))
        .current_dir(repo_root())
        .stdin(Stdio::null());
    if let Ok(venv) = std::env::var("XTASK_TEST_VENV") {
        cmd.env("XTASK_VENV", venv);
    }
    cmd
}

/// Runs `cmd`, returning its output; panics (with what it printed) when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()))
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A name no other test (or earlier run against the same server) uses: `prefix-<pid>-<n>-<time>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() % 1_000_000_000).unwrap_or(0);
    format!("{prefix}-{}-{n}-{micros}", std::process::id())
}

/// A client for test server 1.
pub fn client() -> PrefectClient {
    PrefectClient::new(ApiConfig::for_url(&prefect_url())).expect("client for test server 1")
}

/// A client for test server 2.
pub fn client_2() -> PrefectClient {
    PrefectClient::new(ApiConfig::for_url(&prefect_url_2())).expect("client for test server 2")
}

/// Creates a process work pool on test server 1 unless it exists.
pub fn ensure_pool(name: &str) {
    client().create_work_pool(name, "process").unwrap_or_else(|e| panic!("cannot create work pool {name}: {e}"));
}

/// A throwaway project directory under the test temp dir: a prefect.yaml plus whatever
/// files the test writes. Removed on drop.
pub struct TempProject {
    pub root: PathBuf,
}

impl TempProject {
    pub fn new(prefect_yaml: &str) -> TempProject {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("project"));
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        let project = TempProject { root };
        project.write("prefect.yaml", prefect_yaml);
        project
    }

    /// Writes `content` to `relative` (parent directories created).
    pub fn write(&self, relative: &str, content: &str) -> &TempProject {
        let path = self.root.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self
    }

    pub fn prefect_file(&self) -> PathBuf {
        self.root.join("prefect.yaml")
    }

    /// [`xtask`] run from this project's root.
    pub fn xtask(&self) -> Command {
        let mut cmd = xtask();
        cmd.current_dir(&self.root).env("XTASK_PROJECT_ROOT", &self.root);
        cmd
    }
}

impl Drop for TempProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
