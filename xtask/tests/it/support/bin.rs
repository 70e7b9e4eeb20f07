//! Running the xtask binary: [`xtask`] (a command with the developer's settings scrubbed, the
//! base of every run), [`run`] and [`describe`] for plain runs, and [`Invocation`] for runs
//! bounded against hangs with a chosen stdin (the robustness suites).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{scratch_dir, unique};

/// The binary under test.
pub const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// Generous bound that only catches hangs; no command here should take more than a few seconds.
pub const HANG_BOUND: Duration = Duration::from_secs(20);

/// The xtask binary without the developer's PREFECT_*, FLY_* or XTASK_* settings nor the CI's
/// GITHUB_* ones (a test's deploy must not write to the real job summary), stdin closed,
/// state (pid files, logs) under the test temp dir instead of `target/xtask/`, the test venv as
/// its venv, run from the repository root. Add what the test needs.
pub fn xtask() -> Command {
    let mut cmd = Command::new(XTASK);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PREFECT_")
            || k.starts_with("FLY_")
            || k.starts_with("XTASK_")
            || k.starts_with("GITHUB_")
            || k == "CARGO_MANIFEST_DIR"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env(
        "XTASK_STATE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-state"),
    )
    .current_dir(super::repo_root())
    .stdin(Stdio::null());
    if let Ok(venv) = std::env::var("XTASK_TEST_VENV") {
        cmd.env("XTASK_VENV", venv);
    }
    cmd
}

/// Runs `cmd`, returning its output; panics when it cannot start.
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
        let out_dir = scratch_dir(&unique("run"));
        let stdout_path = out_dir.join("stdout");
        let stderr_path = out_dir.join("stderr");
        let mut cmd = xtask();
        cmd.args(&self.args).current_dir(&self.cwd);
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
    /// stdout and stderr, for assertion messages.
    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// stderr says `needle`; on failure the message shows everything the run printed.
    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks `{needle}`:\n{}",
            self.all()
        );
    }

    /// stdout says `needle`.
    #[track_caller]
    pub fn assert_stdout_has(&self, needle: &str) {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks `{needle}`:\n{}",
            self.all()
        );
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
