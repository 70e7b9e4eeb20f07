//! The Fly integration tests' world: the stand-in `fly` (`fake_fly.rs`, compiled once), a
//! sandboxed project with a bin directory holding it and the binary under test, and the secret
//! sentinels that must never be printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use super::bin::{run, xtask, Outcome, XTASK};
use super::{copy_tree, repo_root};

/// Compiles `fake_fly.rs` (next to this file) once and returns the binary.
pub fn fake_fly() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| super::compile_stand_in("fake_fly.rs", "fly"))
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
        copy_tree(&repo_root().join("app/flows"), &project.join("app/flows"));
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

    /// prefect.yaml with two deployments named `captionacc-<env>-<tag>-…` on `pool`, as project
    /// `captionacc-<tag>` (docs/ownership.md): a pruning release command of one test never
    /// deletes another test's deployments on the shared server.
    pub fn write_prefect_yaml(&self, env: &str, pool: &str) {
        let tag = &self.tag;
        let text = format!(
            r#"name: captionacc-{tag}
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

    /// Points the app and this machine at the Prefect server `url` as a deploy needs them: the
    /// app's secrets (URL and auth string), the host's URL with credentials, auth string and
    /// Fly token.
    pub fn connect_to(&mut self, url: &str) -> &mut Sandbox {
        self.write_secrets(&[
            ("PREFECT_API_URL", url),
            ("PREFECT_API_AUTH_STRING", AUTH_STRING),
        ]);
        self.env("PREFECT_API_URL", &url_with_credentials(url))
            .env("PREFECT_API_AUTH_STRING", AUTH_STRING)
            .env("FLY_API_TOKEN", FLY_TOKEN)
    }

    /// Sets a variable for every command this sandbox runs.
    pub fn env(&mut self, name: &str, value: &str) -> &mut Sandbox {
        self.extra_env.push((name.into(), value.into()));
        self
    }

    /// The xtask binary with a clean environment: PATH = the sandbox's bin first (no real fly),
    /// run from the project directory, plus the variables given with [`Sandbox::env`].
    pub fn xtask(&self, args: &[&str]) -> Command {
        let mut cmd = xtask();
        cmd.args(args)
            .current_dir(&self.project)
            // Nothing of the host's environment: the sandbox is the whole of it.
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin.display()))
            .env("HOME", &self.root)
            .env("FAKE_FLY_LOG", &self.log)
            .env("FAKE_FLY_STATE", self.root.join("fly-state"))
            .env("FAKE_FLY_SECRETS", &self.secrets);
        for (name, value) in &self.extra_env {
            cmd.env(name, value);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        let started = Instant::now();
        let output = run(&mut self.xtask(args));
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: started.elapsed(),
            timed_out: false,
        }
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

/// Secret sentinels: values that must never be printed.
pub const API_KEY: &str = "pnu_SENTINELapikey0001";
pub const AUTH_STRING: &str = "admin:SENTINELauthpw0002";
pub const FLY_TOKEN: &str = "FlyV1 fm2_SENTINELflytoken0003";
pub const URL_PASSWORD: &str = "SENTINELurlpw0004";
/// The user name [`url_with_credentials`] puts in front of [`URL_PASSWORD`].
pub const URL_USER: &str = "deployer";
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
    url.replacen("://", &format!("://{URL_USER}:{URL_PASSWORD}@"), 1)
}
