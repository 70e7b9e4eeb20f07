//! Shared helpers for the integration tests (`mod support;` in each test file).
//!
//! Tests run through `cargo xtask test`, which starts two throwaway Prefect servers and sets
//! XTASK_TEST_PREFECT_API_URL, XTASK_TEST_PREFECT_API_URL_2 and XTASK_TEST_VENV. A test that
//! needs them panics with a pointer to that command instead of passing silently.
//! The servers are shared by all tests: name everything with [`unique`].
//!
//! Part 1: the Prefect servers, the venv, the xtask binary, throwaway projects.
//! Part 2 (below): the Fly integration tests' stand-in `fly` and sandbox.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use xtask::prefect::api::{ApiConfig, PrefectClient};

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
        if k.starts_with("PREFECT_")
            || k.starts_with("FLY_")
            || k.starts_with("XTASK_")
            || k == "CARGO_MANIFEST_DIR"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env(
        "XTASK_STATE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-state"),
    )
    .current_dir(repo_root())
    .stdin(Stdio::null());
    if let Ok(venv) = std::env::var("XTASK_TEST_VENV") {
        cmd.env("XTASK_VENV", venv);
    }
    cmd
}

/// Runs `cmd`, returning its output; panics (with what it printed) when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()))
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
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() % 1_000_000_000)
        .unwrap_or(0);
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
    client()
        .create_work_pool(name, "process")
        .unwrap_or_else(|e| panic!("cannot create work pool {name}: {e}"));
}

/// A throwaway project directory under the test temp dir: a prefect.yaml plus whatever
/// files the test writes. Removed on drop.
pub struct TempProject {
    pub root: PathBuf,
}

impl TempProject {
    pub fn new(prefect_yaml: &str) -> TempProject {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("project"));
        std::fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        let project = TempProject { root };
        project.write("prefect.yaml", prefect_yaml);
        project
    }

    /// Writes `content` to `relative` (parent directories created).
    pub fn write(&self, relative: &str, content: &str) -> &TempProject {
        let path = self.root.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(&path, content)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self
    }

    pub fn prefect_file(&self) -> PathBuf {
        self.root.join("prefect.yaml")
    }

    /// [`xtask`] run from this project's root.
    pub fn xtask(&self) -> Command {
        let mut cmd = xtask();
        cmd.current_dir(&self.root)
            .env("XTASK_PROJECT_ROOT", &self.root);
        cmd
    }
}

impl Drop for TempProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

// ---- Part 2: the Fly integration tests (stand-in `fly`, sandboxed project) ----

/// The test Prefect server (provided by `cargo xtask test`).
pub fn server_url() -> String {
    match std::env::var("XTASK_TEST_PREFECT_API_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "XTASK_TEST_PREFECT_API_URL is not set: run these tests with `cargo xtask test`, or start a \
             Prefect server and export XTASK_TEST_PREFECT_API_URL=http://127.0.0.1:<port>/api"
        ),
    }
}

/// Compiles tests/support/fake_fly.rs once (std only, plain rustc) and returns the binary.
pub fn fake_fly() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_fly.rs");
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake-fly");
            std::fs::create_dir_all(&dir).unwrap();
            let binary = dir.join("fly");
            let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            if modified(&binary).is_some() && modified(&binary) >= modified(&source) {
                return binary;
            }
            // Several test binaries may compile at once: build aside, then rename (atomic).
            let staging = dir.join(format!("fly-{}", std::process::id()));
            let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
            let out = Command::new(rustc)
                .args(["--edition", "2021", "--crate-name", "fake_fly", "-o"])
                .arg(&staging)
                .arg(&source)
                .output()
                .expect("run rustc to build the fake fly");
            assert!(
                out.status.success(),
                "compiling fake_fly.rs failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::rename(&staging, &binary).unwrap();
            binary
        })
        .clone()
}

/// A throwaway project, a bin directory (`fly` = the fake, `xtask` = the binary under test) and
/// the fake's inputs and call log.
pub struct Sandbox {
    pub root: PathBuf,
    pub bin: PathBuf,
    pub project: PathBuf,
    pub log: PathBuf,
    pub secrets: PathBuf,
    pub app: String,
    /// Unique per test, used in deployment names (the tests share one server).
    pub tag: String,
    extra_env: Vec<(String, String)>,
}

pub const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

impl Sandbox {
    pub fn new(test: &str) -> Sandbox {
        let tag = format!("{test}-{}", std::process::id()).replace('_', "-");
        // One directory per test (reused across runs); names on the shared server carry the pid.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("fly-tests")
            .join(test);
        let _ = std::fs::remove_dir_all(&root);
        let bin = root.join("bin");
        let project = root.join("project");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(project.join("app/flows")).unwrap();
        std::os::unix::fs::symlink(fake_fly(), bin.join("fly")).unwrap();
        std::os::unix::fs::symlink(XTASK, bin.join("xtask")).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for entry in std::fs::read_dir(repo.join("app/flows")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                project.join("app/flows").join(entry.file_name()),
            )
            .unwrap();
        }
        let app = format!("captionacc-{tag}");
        let sandbox = Sandbox {
            log: root.join("fly-calls.jsonl"),
            secrets: root.join("app-secrets.env"),
            root,
            bin,
            project,
            app,
            tag,
            extra_env: Vec::new(),
        };
        sandbox.write_fly_toml("xtask register-flows");
        sandbox.write_prefect_yaml("prod", "captionacc-workers-prod");
        sandbox.write_secrets(&[]);
        sandbox
    }

    pub fn write_fly_toml(&self, release_command: &str) {
        let release_command = release_command.replace('\\', "\\\\").replace('"', "\\\"");
        let text = format!(
            r#"app = "{app}"
primary_region = "iad"

[deploy]
  release_command = "{release_command}"
  release_command_timeout = "7m"

[env]
  # The release Machine's address of the server; the app's PREFECT_API_URL secret overrides it.
  PREFECT_API_URL = "https://gateway.invalid/prefect-internal/prefect/api"
  APP_DIR = "/app"

[processes]
  app = "python -m app.api"
"#,
            app = self.app
        );
        std::fs::write(self.project.join("fly.toml"), text).unwrap();
    }

    /// prefect.yaml with two deployments named `captionacc-<env>-<tag>-…` on `pool`.
    pub fn write_prefect_yaml(&self, env: &str, pool: &str) {
        let tag = &self.tag;
        let text = format!(
            r#"name: captionacc
prefect-version: 3.9.1
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $APP_DIR }}}}"
deployments:
  - name: captionacc-{env}-{tag}-video
    entrypoint: app/flows/video_initial_processing.py:video_initial_processing
    parameters:
      video_id: smoke-test
    work_pool:
      name: {pool}
    schedules: []
  - name: captionacc-{env}-{tag}-cleanup
    entrypoint: app/flows/caption_cleanup.py:cleanup_stale_captions
    parameters:
      dry_run: true
    work_pool:
      name: {pool}
"#
        );
        std::fs::write(self.project.join("prefect.yaml"), text).unwrap();
    }

    /// The Fly app's secrets (what `fly secrets list` shows and the release command receives).
    pub fn write_secrets(&self, secrets: &[(&str, &str)]) {
        let text: String = secrets.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&self.secrets, text).unwrap();
    }

    /// Sets a variable for every command this sandbox runs.
    pub fn env(&mut self, name: &str, value: &str) -> &mut Sandbox {
        self.extra_env.push((name.into(), value.into()));
        self
    }

    /// The xtask binary with a clean environment: PATH = the sandbox's bin first (no real fly),
    /// run from the project directory, plus the variables given with [`Sandbox::env`].
    pub fn xtask(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(XTASK);
        cmd.args(args)
            .current_dir(&self.project)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin.display()))
            .env("HOME", &self.root)
            .env("FAKE_FLY_LOG", &self.log)
            .env("FAKE_FLY_SECRETS", &self.secrets);
        for (name, value) in &self.extra_env {
            cmd.env(name, value);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.xtask(args).output().expect("run xtask");
        Run::from(output)
    }

    /// Every fly call so far: argv (without the program) and env var names.
    pub fn calls(&self) -> Vec<FlyCall> {
        let Ok(text) = std::fs::read_to_string(&self.log) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let list = |key: &str| -> Vec<String> {
                    v[key]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect()
                };
                FlyCall {
                    argv: list("argv"),
                    env: list("env"),
                }
            })
            .collect()
    }

    /// The fly subcommands called, in order (`secrets list`, `deploy`, `status`).
    pub fn call_names(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| {
                let words: Vec<&str> = c
                    .argv
                    .iter()
                    .map(String::as_str)
                    .take_while(|a| !a.starts_with('-'))
                    .collect();
                words.join(" ")
            })
            .collect()
    }
}

#[derive(Debug)]
pub struct FlyCall {
    pub argv: Vec<String>,
    pub env: Vec<String>,
}

/// A finished xtask run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// No secret value (sentinels) in stdout or stderr.
    pub fn assert_no_secrets(&self, sentinels: &[&str]) {
        for sentinel in sentinels {
            assert!(
                !self.stdout.contains(sentinel),
                "stdout leaks `{sentinel}`:\n{}",
                self.all()
            );
            assert!(
                !self.stderr.contains(sentinel),
                "stderr leaks `{sentinel}`:\n{}",
                self.all()
            );
        }
    }
}

/// Secret sentinels: values that must never be printed.
pub const API_KEY: &str = "pnu_SENTINELapikey0001";
pub const AUTH_STRING: &str = "admin:SENTINELauthpw0002";
pub const FLY_TOKEN: &str = "FlyV1 fm2_SENTINELflytoken0003";
pub const URL_PASSWORD: &str = "SENTINELurlpw0004";
pub const SENTINELS: &[&str] = &[
    API_KEY,
    AUTH_STRING,
    "SENTINELauthpw0002",
    FLY_TOKEN,
    "fm2_SENTINELflytoken0003",
    URL_PASSWORD,
];

/// The test server's URL with `user:password@` added.
pub fn url_with_credentials(url: &str) -> String {
    url.replacen("://", &format!("://deployer:{URL_PASSWORD}@"), 1)
}
