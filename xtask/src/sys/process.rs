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

/// How long any command this tool runs may take before it is killed: every subprocess has a
/// bound (a hung `docker`, `git` or build step must not hold a release forever). Generous,
/// because image builds and venv installs are slow on a cold cache.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How much of each output stream [`capture`] keeps; the rest is read and dropped.
pub(crate) const MAX_CAPTURED_BYTES: usize = 16 << 20;

/// Runs `cmd` with stdin closed and returns its stdout and stderr (each cut at
/// [`MAX_CAPTURED_BYTES`]), whatever its exit status: the caller words the failure. Killed, and
/// an error, after [`COMMAND_TIMEOUT`].
pub(crate) fn capture(cmd: impl Into<Command>) -> Result<Output> {
    capture_within(cmd, COMMAND_TIMEOUT, MAX_CAPTURED_BYTES)
}

/// Starts `cmd` with stdin closed and stdout/stderr piped; returns the child and the program's
/// name (for messages).
fn spawn_piped(cmd: impl Into<Command>) -> Result<(Child, String)> {
    let mut command = cmd.into();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = program_name(&command);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    Ok((child, program))
}

/// [`capture`] with an explicit time limit and output cap.
// std::process: xshell has no time limit and reads output whole.
pub(crate) fn capture_within(
    cmd: impl Into<Command>,
    timeout: Duration,
    cap: usize,
) -> Result<Output> {
    let (mut child, program) = spawn_piped(cmd)?;
    let stdout = child.stdout.take().map(|s| read_capped(s, cap));
    let stderr = child.stderr.take().map(|s| read_capped(s, cap));
    let status = wait_within(&mut child, timeout, &program)?;
    // A grandchild may still hold the pipes: take what was read by then.
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
        rx.and_then(|rx| rx.recv_timeout(DRAIN_GRACE).ok())
            .unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// Reads `stream` to its end on a thread, keeping the first `cap` bytes (the rest is drained so
/// the writer never blocks); the bytes arrive on the channel at end of stream.
fn read_capped(mut stream: impl Read + Send + 'static, cap: usize) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

/// Waits for `child`, killing it (and failing) once `timeout` has passed.
fn wait_within(child: &mut Child, timeout: Duration, program: &str) -> Result<ExitStatus> {
    let started = Instant::now();
    let mut poll = PollDelay::default();
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("cannot wait for {program}"))?
        {
            return Ok(status);
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{program} did not finish within {timeout:?} and was stopped");
        }
        std::thread::sleep(poll.next_delay());
    }
}

/// Pauses between polls of a running child: 1 ms, doubling up to 20 ms. A short program (git,
/// `xtask --version`) is reaped within a millisecond or two of its exit instead of at the next
/// fixed 20 ms tick (which made every git call of a run cost 20 ms); a long one costs few wake-ups.
#[derive(Debug)]
pub(crate) struct PollDelay(Duration);

impl Default for PollDelay {
    fn default() -> Self {
        PollDelay(Duration::from_millis(1))
    }
}

impl PollDelay {
    const MAX: Duration = Duration::from_millis(20);

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        delay
    }
}

/// The program of `command`, for messages.
fn program_name(command: &Command) -> String {
    Path::new(command.get_program()).display().to_string()
}

/// Runs `cmd` with stdin closed and the terminal's stdout and stderr, and returns its status;
/// killed, and an error, after [`COMMAND_TIMEOUT`].
// std::process: xshell's `run` folds the exit status into its own error; callers word theirs.
pub(crate) fn status(cmd: impl Into<Command>) -> Result<ExitStatus> {
    status_within(cmd.into().stdin(Stdio::null()), COMMAND_TIMEOUT)
}

/// Like [`status`], with the child's stdout sent to our stderr: our stdout stays for results
/// (an image reference, JSON), the child's progress still shows.
// std::process: xshell cannot redirect a child's stdout to our stderr.
pub(crate) fn status_to_stderr(cmd: impl Into<Command>) -> Result<ExitStatus> {
    status_within(
        cmd.into().stdin(Stdio::null()).stdout(stderr_stdio()),
        COMMAND_TIMEOUT,
    )
}

/// Starts `command` as set up and waits for it at most `timeout`.
fn status_within(command: &mut Command, timeout: Duration) -> Result<ExitStatus> {
    let program = program_name(command);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    wait_within(&mut child, timeout, &program)
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
    let consumer = status_within(
        consumer.into().stdin(out).stdout(stderr_stdio()),
        COMMAND_TIMEOUT,
    )
    .with_context(|| format!("cannot run {}", what[1]));
    let consumer = match consumer {
        Ok(status) => status,
        Err(err) => {
            let _ = producer.kill();
            let _ = producer.wait();
            return Err(err);
        }
    };
    // The consumer is done, so the producer's writes now fail: it ends soon.
    let producer = wait_within(&mut producer, COMMAND_TIMEOUT, what[0])
        .with_context(|| format!("{} did not finish", what[0]))?;
    Ok((producer, consumer))
}

/// Runs `cmd` in the foreground (terminal stdin, stdout and stderr) with its pid in `pid` while
/// it runs, so an interrupt handler can forward a signal to it. The one runner without a time
/// limit: it runs the test suite for the person at the terminal, whose tests bound their own
/// waits and whose Ctrl-C reaches it.
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
    /// stdout, up to [`MAX_CAPTURED_BYTES`] (see `truncated`).
    pub stdout: String,
    /// The last lines of stdout and stderr interleaved, for failure classification.
    pub tail: Vec<String>,
    pub timed_out: bool,
    /// Output was cut: stdout beyond [`MAX_CAPTURED_BYTES`] or a line beyond [`MAX_LINE_BYTES`].
    pub truncated: bool,
}

impl RunOutput {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    fn keep(&mut self, is_stdout: bool, line: Line) {
        self.truncated |= line.cut;
        if is_stdout {
            if self.stdout.len() + line.text.len() < MAX_CAPTURED_BYTES {
                self.stdout.push_str(&line.text);
                self.stdout.push('\n');
            } else {
                self.truncated = true;
            }
        }
        self.tail.push(line.text);
        if self.tail.len() > TAIL_LINES {
            self.tail.remove(0);
        }
    }
}

/// Lines of combined output kept for classification and error messages.
const TAIL_LINES: usize = 200;
/// Longest line kept whole; the rest of a longer line is dropped (a line without a newline
/// could otherwise grow without end).
pub(crate) const MAX_LINE_BYTES: usize = 64 << 10;
/// How long to keep reading after the process ended (grandchildren may still hold the pipes).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// One output line, cut at [`MAX_LINE_BYTES`].
struct Line {
    text: String,
    cut: bool,
}

/// Runs `cmd` with stdin closed, killing it after `timeout` — also while it keeps printing.
/// Every output line (stdout and stderr) goes to `on_line` as it arrives; stdout is also
/// returned, up to [`MAX_CAPTURED_BYTES`].
// std::process: xshell has no time limit and no line-by-line reading.
pub(crate) fn run_with_timeout(
    cmd: impl Into<Command>,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<RunOutput> {
    let (mut child, program) = spawn_piped(cmd)?;
    let rx = read_lines(&mut child);

    let started = Instant::now();
    let mut out = RunOutput::default();
    let mut exited_at: Option<Instant> = None;
    loop {
        // Every pass ends at the exit and deadline checks below, however fast lines arrive.
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((is_stdout, line)) => {
                on_line(&line.text);
                out.keep(is_stdout, line);
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
                } else if started.elapsed() >= timeout {
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
/// The channel is bounded, so a child that prints faster than we read waits for us instead of
/// filling memory.
fn read_lines(child: &mut Child) -> mpsc::Receiver<(bool, Line)> {
    let (tx, rx) = mpsc::sync_channel::<(bool, Line)>(1024);
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
            let mut reader = BufReader::new(stream);
            while let Some(line) = read_line_capped(&mut reader, MAX_LINE_BYTES) {
                if tx.send((is_stdout, line)).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// The next line of `reader` without its line ending, keeping at most `cap` bytes of it (the
/// rest is skipped); `None` at end of stream or on a read error.
fn read_line_capped(reader: &mut impl BufRead, cap: usize) -> Option<Line> {
    let mut bytes = Vec::new();
    let mut cut = false;
    let mut any = false;
    loop {
        let (done, used) = {
            let buf = match reader.fill_buf() {
                Ok(buf) => buf,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            if buf.is_empty() {
                break;
            }
            any = true;
            let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let room = cap.saturating_sub(bytes.len());
            cut |= chunk.len() > room;
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            (done.is_some(), done.unwrap_or(buf.len()))
        };
        reader.consume(used);
        if done {
            break;
        }
    }
    if !any {
        return None;
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    Some(Line {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        cut,
    })
}

// ---------------------------------------------------------------------------------------------
// Measured

/// How a measured run ended.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Exited normally with code 0.
    pub success: bool,
    pub wall: Duration,
    /// Peak resident memory of the process, in KiB.
    pub max_rss_kib: i64,
    /// CPU time (user + system) of the process and of the children it waited for (a cargo
    /// build's compilers): less sensitive than wall time to what else the machine runs.
    pub cpu: Duration,
}

/// Runs `cmd` to completion (killed after [`COMMAND_TIMEOUT`]) with stdin closed and
/// stdout+stderr written to `log`, and measures its wall time and its own peak memory.
// std::process: wait4 reads this child's own peak memory, which xshell does not expose.
pub fn run_measured(cmd: impl Into<Command>, log: File) -> Result<Measured> {
    let mut cmd = cmd.into();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start the command")?;
    // wait4 gives this child's own peak RSS (getrusage of all children would mix runs).
    let mut status = 0;
    // SAFETY: rusage is plain old data; zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let mut poll = PollDelay::default();
    let waited = loop {
        // SAFETY: the pid is our child, not yet reaped; status and usage are valid out-pointers.
        let waited = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if waited != 0 {
            break waited;
        }
        if started.elapsed() >= COMMAND_TIMEOUT {
            let _ = child.kill();
            // SAFETY: as above; the child was killed and is reaped here.
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            break -1;
        }
        std::thread::sleep(poll.next_delay());
    };
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

/// How long one git command may take (they read a local repository; a hang is a stuck lock or
/// a credential prompt).
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// `git -C root ARGS…` with exactly the environment `env`: its stdout when it succeeds, else an
/// error carrying git's stderr.
pub(crate) fn git(root: &Path, args: &[&str], env: &EnvVars) -> Result<String> {
    let git = which::which("git").context("`git` is not on PATH")?;
    let sh = shell()?;
    let cmd = cmd!(sh, "{git} -C {root} {args...}")
        .env_clear()
        .envs(env.iter());
    let output = capture_within(cmd, GIT_TIMEOUT, MAX_CAPTURED_BYTES)
        .with_context(|| format!("cannot run git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `tar -x -f ARCHIVE -C DIR` (a `git archive` of an old release), within the git time limit.
pub(crate) fn untar(archive: &Path, dir: &Path) -> Result<()> {
    let tar = which::which("tar").context("`tar` is not on PATH")?;
    let sh = shell()?;
    let cmd = cmd!(sh, "{tar} -x -f {archive} -C {dir}");
    let output = capture_within(cmd, GIT_TIMEOUT, MAX_CAPTURED_BYTES)
        .with_context(|| format!("cannot run tar -x -f {}", archive.display()))?;
    if !output.status.success() {
        bail!(
            "tar -x -f {} failed: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
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

/// This machine's name, for records of who holds or paused something ("unknown host" if unreadable).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn polls_start_at_a_millisecond_and_back_off_to_twenty() {
        let mut poll = PollDelay::default();
        let delays: Vec<u128> = (0..7).map(|_| poll.next_delay().as_millis()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 20, 20]);
    }

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

    /// Runs `f` on a thread; panics if it has not returned after `bound` (the defect under
    /// test is a wait that never ends, so the test must end anyway).
    fn finishes_within<T: Send + 'static>(
        bound: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(bound).expect("the time limit never fired")
    }

    #[test]
    fn the_time_limit_fires_while_output_flows() {
        let out = finishes_within(Duration::from_secs(60), || {
            let sh = shell().unwrap();
            run_with_timeout(
                cmd!(sh, "/bin/sh -c 'while :; do echo tick; sleep 0.01; done'"),
                Duration::from_millis(500),
                |_| {},
            )
            .unwrap()
        });
        assert!(out.timed_out, "{:?}", out.code);
        assert!(out.tail.len() <= TAIL_LINES && out.tail.iter().all(|l| l == "tick"));
    }

    #[test]
    fn captured_output_is_bounded() {
        let sh = shell().unwrap();
        // One 3 MiB line without a newline, then 20 MiB of 1000-byte lines (short lines would
        // cost the debug build half a minute of line handling and prove nothing more).
        let out = run_with_timeout(
            cmd!(
                sh,
                "/bin/sh -c 'head -c 3145728 /dev/zero; echo; yes \"$(printf %0999d 0)\" | head -c 20971520'"
            ),
            Duration::from_secs(120),
            |line| assert!(line.len() <= MAX_LINE_BYTES),
        )
        .unwrap();
        assert!(out.success() && out.truncated, "{:?}", out.code);
        assert!(
            out.stdout.len() <= MAX_CAPTURED_BYTES,
            "{}",
            out.stdout.len()
        );
        assert_eq!(out.stdout.lines().next().unwrap().len(), MAX_LINE_BYTES);
        assert!(out.stdout.len() > MAX_CAPTURED_BYTES - MAX_LINE_BYTES);

        let out = capture_within(
            cmd!(sh, "/bin/sh -c 'head -c 1000000 /dev/zero; echo oops >&2'"),
            Duration::from_secs(60),
            1000,
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(
            (out.stdout.len(), out.stderr.as_slice()),
            (1000, &b"oops\n"[..])
        );
    }

    #[test]
    fn every_runner_has_a_time_limit() {
        let sh = shell().unwrap();
        let err = finishes_within(Duration::from_secs(60), || {
            let sh = shell().unwrap();
            capture_within(cmd!(sh, "sleep 30"), Duration::from_millis(300), 100)
                .unwrap_err()
                .to_string()
        });
        assert_eq!(err, "sleep did not finish within 300ms and was stopped");
        let mut sleeper: Command = cmd!(sh, "sleep 30").into();
        let err = finishes_within(Duration::from_secs(60), move || {
            status_within(&mut sleeper, Duration::from_millis(300))
                .unwrap_err()
                .to_string()
        });
        assert!(err.contains("did not finish"), "{err}");
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
