//! Shared by the robustness suites (bad inputs, secrets, release-command hygiene):
//! running the real binary with a scrubbed environment, a hang bound and captured output.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous bound that only catches hangs; no command here should take more than a few seconds.
pub const HANG_BOUND: Duration = Duration::from_secs(20);

/// Variables that would leak the developer's own configuration into a test run.
const SCRUBBED_ENV: &[&str] = &[
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_PROFILES_PATH",
    "FLY_API_TOKEN",
    "FLY_ACCESS_TOKEN",
    "FLY_APP",
    "XTASK_PREFECT_FILE",
    "XTASK_PROJECT_ROOT",
];

/// Server 1 of the test harness (`cargo xtask test` sets it).
pub fn test_server_url() -> String {
    std::env::var("XTASK_TEST_PREFECT_API_URL").expect(
        "XTASK_TEST_PREFECT_API_URL is not set: run the integration tests through `cargo xtask test`",
    )
}

/// Server 2 of the test harness (requires an auth string) and its auth string.
pub fn secured_server() -> (String, String) {
    let url = std::env::var("XTASK_TEST_PREFECT_API_URL_2").expect(
        "XTASK_TEST_PREFECT_API_URL_2 is not set: run the integration tests through `cargo xtask test`",
    );
    let auth = std::env::var("XTASK_TEST_PREFECT_AUTH_STRING_2").expect(
        "XTASK_TEST_PREFECT_AUTH_STRING_2 is not set: run the integration tests through `cargo xtask test`",
    );
    (url, auth)
}

/// An empty directory of its own for one test (removed and recreated if it exists).
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the files of `src` into `dst` recursively (existing files are overwritten).
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What stdin the child gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// /dev/null: a read sees EOF at once.
    Null,
    /// A pipe kept open and never written: a read blocks until the child is killed.
    OpenPipe,
}

/// One invocation of the xtask binary.
#[derive(Debug)]
pub struct Invocation {
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub stdin: Stdin,
    /// Prepended to PATH (stand-in `fly`, `docker`, …).
    pub path_prefix: Option<PathBuf>,
}

impl Invocation {
    pub fn new(cwd: &Path, args: &[&str]) -> Invocation {
        Invocation {
            args: args.iter().map(|a| a.to_string()).collect(),
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            stdin: Stdin::Null,
            path_prefix: None,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Invocation {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn stdin(mut self, stdin: Stdin) -> Invocation {
        self.stdin = stdin;
        self
    }

    pub fn path_prefix(mut self, dir: &Path) -> Invocation {
        self.path_prefix = Some(dir.to_path_buf());
        self
    }

    /// Runs the binary; kills it (and reports `timed_out`) after [`HANG_BOUND`].
    pub fn run(&self) -> Outcome {
        let out_dir = scratch_dir(&format!("run-{}", unique_suffix()));
        let stdout_path = out_dir.join("stdout");
        let stderr_path = out_dir.join("stderr");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(&self.args).current_dir(&self.cwd);
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        // Never let a test pick up the developer's Prefect profile.
        cmd.env("PREFECT_HOME", out_dir.join("prefect-home"));
        if let Some(prefix) = &self.path_prefix {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![prefix.clone()];
            dirs.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(dirs).unwrap());
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd.stdout(std::fs::File::create(&stdout_path).unwrap());
        cmd.stderr(std::fs::File::create(&stderr_path).unwrap());
        cmd.stdin(match self.stdin {
            Stdin::Null => Stdio::null(),
            Stdin::OpenPipe => Stdio::piped(),
        });
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn the xtask binary");
        // Held (never written, never closed) until the child is gone.
        let held_stdin = child.stdin.take();
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > HANG_BOUND {
                timed_out = true;
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = started.elapsed();
        drop(held_stdin);
        let read = |path: &Path| {
            let mut bytes = Vec::new();
            std::fs::File::open(path)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let outcome = Outcome {
            code: status.code(),
            stdout: read(&stdout_path),
            stderr: read(&stderr_path),
            elapsed,
            timed_out,
        };
        let _ = std::fs::remove_dir_all(&out_dir);
        outcome
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Outcome {
    /// Problems with a run that must fail: hang, signal, panic, wrong exit code, no `error:` line.
    /// Empty when the failure was clean.
    pub fn clean_failure_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.timed_out {
            problems.push(format!(
                "still running after {HANG_BOUND:?} (killed): a hang"
            ));
        }
        if self.stderr.contains("panicked") || self.code == Some(101) {
            problems.push("panicked".to_string());
        }
        match self.code {
            Some(1) => {}
            Some(code) => problems.push(format!("exit code {code}, expected 1")),
            None => problems.push("killed by a signal (stack overflow or abort?)".to_string()),
        }
        if !self.stderr.lines().any(|line| line.starts_with("error: ")) {
            problems.push("stderr has no line starting with `error: `".to_string());
        }
        problems
    }

    /// stderr without its tail end, for failure messages.
    pub fn stderr_excerpt(&self) -> String {
        excerpt(&self.stderr)
    }
}

/// At most ~1500 characters of `text` (start and end), on char boundaries.
pub fn excerpt(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 1500 {
        return text.to_string();
    }
    let head: String = chars[..1000].iter().collect();
    let tail: String = chars[chars.len() - 400..].iter().collect();
    format!("{head}\n[… {} chars …]\n{tail}", chars.len() - 1400)
}

/// A process-unique suffix for names on the shared server and scratch dirs.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
