//! Running other programs: one place for how the xtask starts processes.
//!
//! Commands are shaped with xshell's `cmd!` (no shell, arguments never re-split) and run quietly:
//! nothing is echoed unless the caller prints a line itself. The runners below that use
//! `std::process` directly do so only where xshell cannot do the job, and say why.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Cmd, Shell};

use crate::sys::env_vars::EnvVars;

/// The shell every command is built from (its working directory is the process's).
pub fn shell() -> Result<Shell> {
    Shell::new().context("cannot read the current directory")
}

/// `cmd` without the inherited variables `drop` names (the child still inherits the rest).
pub fn without_inherited<'a>(mut cmd: Cmd<'a>, drop: impl Fn(&str) -> bool) -> Cmd<'a> {
    for (name, _) in std::env::vars_os() {
        if drop(&name.to_string_lossy()) {
            cmd = cmd.env_remove(&name);
        }
    }
    cmd
}

/// A command's arguments as text (what a test or a dry run compares).
pub fn args_of(cmd: &Command) -> Vec<String> {
    cmd.get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The value `cmd` sets for the variable `name`; `None` when it leaves it alone or removes it.
pub fn env_set_by(cmd: &Command, name: &str) -> Option<String> {
    cmd.get_envs()
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value)
        .map(|value| value.to_string_lossy().into_owned())
}

/// Runs `cmd` quietly with stdin closed and returns its stdout and stderr, whatever its exit
/// status: the caller words the failure.
pub(crate) fn capture(cmd: Cmd<'_>) -> xshell::Result<Output> {
    cmd.quiet().ignore_status().output()
}

/// Runs `cmd` with stdin closed and the terminal's stdout and stderr, and returns its status.
// std::process: xshell's `run` folds the exit status into its own error; callers word theirs.
pub(crate) fn status(cmd: impl Into<Command>) -> std::io::Result<ExitStatus> {
    cmd.into().stdin(Stdio::null()).status()
}

/// Like [`status`], with the child's stdout sent to our stderr: our stdout stays for results
/// (an image reference, JSON), the child's progress still shows.
// std::process: xshell cannot redirect a child's stdout to our stderr.
pub(crate) fn status_to_stderr(cmd: impl Into<Command>) -> std::io::Result<ExitStatus> {
    cmd.into()
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .status()
}

/// A child's stdout redirected to our stderr.
fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::inherit(),
    }
}

/// `producer | consumer` (the consumer's stdout on our stderr): both statuses, or the error of
/// the step that could not start (`what` names the programs in it).
// std::process: xshell has no pipes between processes.
pub(crate) fn pipe(
    producer: impl Into<Command>,
    consumer: impl Into<Command>,
    what: [&str; 2],
) -> Result<(ExitStatus, ExitStatus)> {
    let mut producer = producer
        .into()
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", what[0]))?;
    let out = producer
        .stdout
        .take()
        .with_context(|| format!("{} has no stdout", what[0]))?;
    let consumer = consumer
        .into()
        .stdin(out)
        .stdout(stderr_stdio())
        .status()
        .with_context(|| format!("cannot run {}", what[1]))?;
    let producer = producer
        .wait()
        .with_context(|| format!("{} did not finish", what[0]))?;
    Ok((producer, consumer))
}

/// Runs `cmd` in the foreground (terminal stdin, stdout and stderr) with its pid in `pid` while
/// it runs, so an interrupt handler can forward a signal to it.
// std::process: the pid must be known while the child runs.
pub fn status_with_pid(cmd: impl Into<Command>, pid: &AtomicU32, what: &str) -> Result<ExitStatus> {
    let mut child = cmd
        .into()
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    pid.store(child.id(), Ordering::SeqCst);
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for {what}"));
    pid.store(0, Ordering::SeqCst);
    status
}

/// Starts `cmd` in its own process group (so Ctrl-C in the terminal and the exit of this
/// tool do not stop it) with stdin closed and stdout+stderr appended to `log`.
// std::process: xshell waits for its children; this one outlives the call, in its own group.
pub(crate) fn spawn_detached(cmd: impl Into<Command>, log: &Path) -> Result<Child> {
    let mut cmd = cmd.into();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("cannot open {}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))
}

/// Sends signal `name` (`TERM`, `KILL`) to `target` (a pid, or `-PGID` for a whole group) with
/// kill(1): no unsafe FFI for two signals. A target that is already gone is not an error.
pub fn send_signal(target: &str, name: &str) -> Result<()> {
    let sh = shell()?;
    cmd!(sh, "kill -s {name} -- {target}")
        .quiet()
        .ignore_status()
        .ignore_stderr()
        .output()
        .context("cannot run kill")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// With a time limit

/// What a finished (or killed) command left behind.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// Exit code; `None` when killed or ended by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    /// The last lines of stdout and stderr interleaved, for failure classification.
    pub tail: Vec<String>,
    pub timed_out: bool,
}

impl RunOutput {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    fn keep(&mut self, is_stdout: bool, line: String) {
        if is_stdout {
            self.stdout.push_str(&line);
            self.stdout.push('\n');
        }
        self.tail.push(line);
        if self.tail.len() > TAIL_LINES {
            self.tail.remove(0);
        }
    }
}

/// Lines of combined output kept for classification and error messages.
const TAIL_LINES: usize = 200;
/// How long to keep reading after the process ended (grandchildren may still hold the pipes).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs `cmd` with stdin closed, killing it after `timeout`. Every output line (stdout and
/// stderr) goes to `on_line` as it arrives; stdout is also returned whole.
// std::process: xshell has no time limit and no line-by-line reading.
pub(crate) fn run_with_timeout(
    cmd: impl Into<Command>,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<RunOutput> {
    let mut command = cmd.into();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = Path::new(command.get_program()).display().to_string();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let rx = read_lines(&mut child);

    let deadline = Instant::now() + timeout;
    let mut out = RunOutput::default();
    let mut exited_at: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((is_stdout, line)) => {
                on_line(&line);
                out.keep(is_stdout, line);
                continue;
            }
            // Both pipes closed and the process is gone: done.
            Err(mpsc::RecvTimeoutError::Disconnected) if exited_at.is_some() => break,
            // Pipes closed while the process runs on: wait without spinning.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        match exited_at {
            None => {
                if let Some(status) = child
                    .try_wait()
                    .with_context(|| format!("cannot wait for {program}"))?
                {
                    out.code = status.code();
                    exited_at = Some(Instant::now());
                } else if Instant::now() >= deadline {
                    // flyctl is known to hang (e.g. on release_command); give up on it.
                    let _ = child.kill();
                    let _ = child.wait();
                    out.timed_out = true;
                    exited_at = Some(Instant::now());
                }
            }
            // A grandchild still holds the pipes: stop reading after a grace period.
            Some(at) if at.elapsed() > DRAIN_GRACE => break,
            Some(_) => {}
        }
    }
    Ok(out)
}

/// One reader thread per pipe, sending `(is_stdout, line)`; the channel closes when both end.
fn read_lines(child: &mut Child) -> mpsc::Receiver<(bool, String)> {
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let streams = [
        child
            .stdout
            .take()
            .map(|s| (true, Box::new(s) as Box<dyn Read + Send>)),
        child
            .stderr
            .take()
            .map(|s| (false, Box::new(s) as Box<dyn Read + Send>)),
    ];
    for (is_stdout, stream) in streams.into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send((is_stdout, line)).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

// ---------------------------------------------------------------------------------------------
// Measured

/// How a measured run ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    /// Exited normally with code 0.
    pub success: bool,
    pub wall: Duration,
    /// Peak resident memory of the process, in KiB.
    pub max_rss_kib: i64,
    /// CPU time (user + system) of the process and of the children it waited for (a cargo
    /// build's compilers): less sensitive than wall time to what else the machine runs.
    pub cpu: Duration,
}

/// Runs `cmd` to completion with stdin closed and stdout+stderr written to `log`, and measures
/// its wall time and its own peak memory.
// std::process: wait4 reads this child's own peak memory, which xshell does not expose.
pub(crate) fn run_measured(cmd: impl Into<Command>, log: File) -> Result<Measured> {
    let mut cmd = cmd.into();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let child = cmd.spawn().context("cannot start the command")?;
    // wait4 gives this child's own peak RSS (getrusage of all children would mix runs).
    let mut status = 0;
    // SAFETY: rusage is plain old data; zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child, not yet reaped; status and usage are valid out-pointers.
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    Ok(Measured {
        success: waited >= 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        wall: started.elapsed(),
        max_rss_kib: usage.ru_maxrss,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
    })
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

// ---------------------------------------------------------------------------------------------
// git

/// `git -C root ARGS…` with exactly the environment `env`: its stdout when it succeeds, else an
/// error carrying git's stderr.
pub(crate) fn git(root: &Path, args: &[&str], env: &EnvVars) -> Result<String> {
    let git = which::which("git").context("`git` is not on PATH")?;
    let sh = shell()?;
    let cmd = cmd!(sh, "{git} -C {root} {args...}")
        .env_clear()
        .envs(env.iter());
    let output = capture(cmd).with_context(|| format!("cannot run git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Printing command lines

/// A command line as a user could paste it into a POSIX shell.
pub(crate) fn shell_line(program: &Path, argv: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(argv.iter().cloned())
        .map(|word| shell_quote(&word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes a word for a POSIX shell only when needed.
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_line_quotes_only_when_needed() {
        let argv = vec![
            "build".to_string(),
            "a b".to_string(),
            "it's".to_string(),
            String::new(),
            "k=v".to_string(),
        ];
        assert_eq!(
            shell_line(Path::new("/usr/bin/docker"), &argv),
            r"/usr/bin/docker build 'a b' 'it'\''s' '' k=v"
        );
        assert_eq!(shell_quote("a@b%c+d,e:f/g.h-i_j"), "a@b%c+d,e:f/g.h-i_j");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn runs_with_timeout_and_captures_output() {
        let sh = shell().unwrap();
        let mut lines = Vec::new();
        let out = run_with_timeout(
            cmd!(sh, "/bin/sh -c 'echo out; echo err >&2; exit 3'"),
            Duration::from_secs(10),
            |line| lines.push(line.to_string()),
        )
        .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert!(out.tail.contains(&"err".to_string()));
        assert_eq!(lines.len(), 2);
        let started = Instant::now();
        let out = run_with_timeout(
            cmd!(sh, "/bin/sh -c 'echo started; exec sleep 30'"),
            Duration::from_millis(300),
            |_| {},
        )
        .unwrap();
        assert!(
            out.timed_out && started.elapsed() < Duration::from_secs(10),
            "{out:?}"
        );
        assert_eq!(out.tail, ["started"]);
    }

    #[test]
    fn git_reports_its_failure() {
        let root = crate::project::repo_root();
        let env = EnvVars::capture();
        let head = git(&root, &["rev-parse", "--verify", "HEAD"], &env).unwrap();
        assert_eq!(head.trim().len(), 40, "{head}");
        let err = git(&root, &["no-such-subcommand"], &env)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("git no-such-subcommand failed: "), "{err}");
    }

    #[test]
    fn pipes_and_statuses() {
        let sh = shell().unwrap();
        let (a, b) = pipe(
            cmd!(sh, "echo hello"),
            cmd!(sh, "grep -q hello"),
            ["echo", "grep"],
        )
        .unwrap();
        assert!(a.success() && b.success());
        assert!(!status(cmd!(sh, "false")).unwrap().success());
        assert!(status_to_stderr(cmd!(sh, "true")).unwrap().success());
        let pid = AtomicU32::new(0);
        assert!(status_with_pid(cmd!(sh, "true"), &pid, "true")
            .unwrap()
            .success());
        assert_eq!(pid.load(Ordering::SeqCst), 0);
    }
}
