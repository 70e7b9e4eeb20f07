//! Long-running helper processes (Prefect server, worker): started detached in their own
//! process group with output to a log file, remembered in a pid file (written whole or not at
//! all), and stopped only after checking that the pid still belongs to the process we started:
//! its command line, port or pool included.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use xshell::cmd;

use crate::sys::process::{self as run, send_signal};

/// What a pid file records about a process this tool started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidRecord {
    pub pid: u32,
    /// "server" or "worker".
    pub role: String,
    /// The server's port (for a worker: the port of the server it talks to).
    pub port: u16,
    /// The worker's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    pub log: PathBuf,
}

pub(crate) fn parse_pid_record(text: &str) -> Result<PidRecord> {
    let record: PidRecord = serde_json::from_str(text).context("not a pid record")?;
    anyhow::ensure!(
        record.pid > 1,
        "pid {} is not a process this tool started",
        record.pid
    );
    Ok(record)
}

/// Reads a pid file; `None` when there is none. A corrupt file counts as absent (and is reported).
pub fn read_pid_file(path: &Path) -> Option<PidRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    match parse_pid_record(&text) {
        Ok(record) => Some(record),
        Err(err) => {
            eprintln!("warning: ignoring {}: {err:#}", path.display());
            None
        }
    }
}

/// Writes the record to a temporary file beside `path` and renames it into place, so a reader
/// (another run, `down`) sees the old record or the new one, never a torn one.
pub(crate) fn write_pid_file(path: &Path, record: &PidRecord) -> Result<()> {
    let text = serde_json::to_string_pretty(record).context("cannot encode the pid record")?;
    write_atomically(path, &(text + "\n"))
}

/// Writes `text` to a temporary file beside `path` and renames it into place.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let written = std::fs::File::create(&temp)
        .and_then(|mut file| {
            use std::io::Write;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

impl PidRecord {
    /// How the recorded process is recognised; `None` for a record that names no role we start.
    pub(crate) fn identity(&self) -> Option<Identity> {
        match (self.role.as_str(), &self.pool) {
            ("server", _) => Some(Identity::server(self.port)),
            ("worker", Some(pool)) => Some(Identity::worker(pool)),
            _ => None,
        }
    }
}

/// What makes a process ours: the words on its command line (`server start`) and the value
/// after one flag — the server's `--port`, the worker's `--pool`. Any `prefect server start`
/// is not enough: another project's server, or ours on another port, must never be stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub words: &'static [&'static str],
    pub flag: &'static str,
    pub value: String,
}

impl Identity {
    /// A `prefect server start … --port PORT` this tool started.
    pub(crate) fn server(port: u16) -> Identity {
        Identity {
            words: super::server::SERVER_WORDS,
            flag: "--port",
            value: port.to_string(),
        }
    }

    /// A `prefect worker start --pool POOL …` this tool started.
    pub(crate) fn worker(pool: &str) -> Identity {
        Identity {
            words: super::worker::WORKER_WORDS,
            flag: "--pool",
            value: pool.to_string(),
        }
    }
}

/// What the OS says about a pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub cmdline: Vec<String>,
    pub pgid: u32,
    pub zombie: bool,
}

/// `/proc/<pid>/stat` → (state, process group). The command name may contain spaces and
/// parentheses, so fields are counted after the last ')'.
pub(crate) fn parse_proc_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// `/proc/<pid>/cmdline`: NUL-separated arguments.
pub(crate) fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// `ps -o stat=,pgid=,command= -p PID` output (systems without /proc).
pub(crate) fn parse_ps_line(line: &str) -> Option<ProcInfo> {
    let mut fields = line.split_whitespace();
    let stat = fields.next()?;
    let pgid = fields.next()?.parse().ok()?;
    let cmdline: Vec<String> = fields.map(str::to_string).collect();
    Some(ProcInfo {
        zombie: stat.starts_with('Z'),
        pgid,
        cmdline,
    })
}

/// Information about a live process, `None` when there is no such process.
pub fn process_info(pid: u32) -> Option<ProcInfo> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if Path::new("/proc/self/stat").exists() {
        let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
        let (state, pgid) = parse_proc_stat(&stat)?;
        let cmdline = parse_cmdline(&std::fs::read(proc_dir.join("cmdline")).unwrap_or_default());
        return Some(ProcInfo {
            cmdline,
            pgid,
            zombie: state == 'Z' || state == 'X',
        });
    }
    let sh = run::shell().ok()?;
    let pid = pid.to_string();
    let out = run::capture(cmd!(sh, "ps -o stat=,pgid=,command= -p {pid}").ignore_stderr()).ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(parse_ps_line)
}

/// True when `info` is a live Prefect process with `who`'s words and flag value on its command
/// line: a recycled pid belongs to something else and must not be killed.
pub(crate) fn is_ours(info: &ProcInfo, who: &Identity) -> bool {
    let args = &info.cmdline;
    !info.zombie
        && args.iter().any(|a| a.contains("prefect"))
        && who.words.iter().all(|word| args.iter().any(|a| a == word))
        && args
            .windows(2)
            .any(|pair| pair[0] == who.flag && pair[1] == who.value)
}

/// The pid's process if it is alive and is `who` (see [`is_ours`]).
pub(crate) fn running(pid: u32, who: &Identity) -> Option<ProcInfo> {
    process_info(pid).filter(|info| is_ours(info, who))
}

/// How [`stop`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Exited after SIGTERM.
    Terminated,
    /// Needed SIGKILL after the grace period.
    Killed,
    /// Was not running (or was not ours).
    NotRunning,
}

/// Stops a process we started (checked against `who`): SIGTERM to its process group,
/// SIGKILL after `grace`. The group takes the children (e.g. a flow run's subprocess) along.
pub(crate) fn stop(pid: u32, who: &Identity, grace: Duration) -> Result<Stopped> {
    let Some(info) = running(pid, who) else {
        return Ok(Stopped::NotRunning);
    };
    // We start every process as the leader of its own group; signal the group only then.
    let target = signal_target(pid, info.pgid);
    send_signal(&target, "TERM")?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return Ok(Stopped::Terminated);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    send_signal(&target, "KILL")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Stopped::Killed)
}

/// `-PGID` (the whole group) when the pid leads its group, else the pid alone.
pub(crate) fn signal_target(pid: u32, pgid: u32) -> String {
    if pgid == pid {
        format!("-{pid}")
    } else {
        pid.to_string()
    }
}

fn alive(pid: u32) -> bool {
    process_info(pid).is_some_and(|info| !info.zombie)
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a log file, indented, for error messages.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let tail = tail_lines(&text, n);
            let body: String = tail.lines().map(|l| format!("    {l}\n")).collect();
            format!(
                "last lines of {}:\n{}",
                path.display(),
                crate::sys::redact::redact(&body)
            )
        }
        Err(_) => format!("({} does not exist)", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_records_round_trip_and_reject_garbage() {
        let record = PidRecord {
            pid: 4242,
            role: "worker".into(),
            port: 4430,
            pool: Some("captionacc-workers-prod".into()),
            log: PathBuf::from("/t/worker.log"),
        };
        let dir = std::env::temp_dir().join(format!("xtask-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("worker.json");
        write_pid_file(&path, &record).unwrap();
        assert_eq!(read_pid_file(&path), Some(record.clone()));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert_eq!(
            record.identity(),
            Some(Identity::worker("captionacc-workers-prod"))
        );
        std::fs::write(&path, "4242\n").unwrap();
        assert_eq!(read_pid_file(&path), None);
        assert_eq!(read_pid_file(&dir.join("missing.json")), None);
        std::fs::remove_dir_all(&dir).unwrap();

        let server =
            parse_pid_record(r#"{"pid": 17, "role": "server", "port": 4200, "log": "s.log"}"#)
                .unwrap();
        assert_eq!(
            (server.pid, server.port, server.pool.clone()),
            (17, 4200, None)
        );
        assert_eq!(server.identity(), Some(Identity::server(4200)));
        assert!(
            parse_pid_record(r#"{"pid": 1, "role": "server", "port": 4200, "log": "s.log"}"#)
                .is_err()
        );
        assert!(
            parse_pid_record(r#"{"pid": -3, "role": "server", "port": 4200, "log": "s.log"}"#)
                .is_err()
        );
        assert!(parse_pid_record(
            r#"{"pid": 17, "role": "server", "port": 70000, "log": "s.log"}"#
        )
        .is_err());
        assert!(parse_pid_record("").is_err());
    }

    #[test]
    fn pid_files_are_never_seen_torn() {
        // A reader racing the writer (another run, `down`) must see a whole record every time:
        // a torn read would orphan the server and let a second one start on the same database.
        let dir = std::env::temp_dir().join(format!("xtask-pid-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.pid.json");
        let record = |pid: u32| PidRecord {
            pid,
            role: "server".into(),
            port: 4200,
            pool: None,
            log: dir.join("a-long-enough-log-file-name-to-need-more-than-one-write.log"),
        };
        write_pid_file(&path, &record(2)).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let mut torn = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    if parse_pid_record(&text).is_err() {
                        torn.push(text);
                    }
                }
                torn
            })
        };
        for pid in 2..3000 {
            write_pid_file(&path, &record(pid)).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let torn = reader.join().unwrap();
        assert!(
            torn.is_empty(),
            "{} torn reads, e.g. {:?}",
            torn.len(),
            torn.first()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_proc_stat_with_odd_command_names() {
        assert_eq!(
            parse_proc_stat("123 (python) S 1 123 123 0 -1"),
            Some(('S', 123))
        );
        assert_eq!(
            parse_proc_stat("77 (a) b (c)) Z 5 70 70 0"),
            Some(('Z', 70))
        );
        assert_eq!(parse_proc_stat("garbage"), None);
        assert_eq!(parse_proc_stat("1 (x) S"), None);
    }

    #[test]
    fn parses_cmdline_and_ps() {
        assert_eq!(
            parse_cmdline(b"/v/bin/python\0/v/bin/prefect\0server\0start\0"),
            ["/v/bin/python", "/v/bin/prefect", "server", "start"]
        );
        assert!(parse_cmdline(b"").is_empty());
        let info = parse_ps_line("Ss   4321 /v/bin/python /v/bin/prefect worker start").unwrap();
        assert_eq!(info.pgid, 4321);
        assert!(!info.zombie);
        assert_eq!(
            info.cmdline,
            ["/v/bin/python", "/v/bin/prefect", "worker", "start"]
        );
        assert!(parse_ps_line("Z+ 1 x").unwrap().zombie);
        assert_eq!(parse_ps_line("S notanumber x"), None);
    }

    #[test]
    fn recognises_only_our_processes() {
        let info = |args: &str| ProcInfo {
            cmdline: args.split(' ').map(str::to_string).collect(),
            pgid: 10,
            zombie: false,
        };
        let server = info("/v/bin/python /v/bin/prefect server start --host 127.0.0.1 --port 4200");
        assert!(is_ours(&server, &Identity::server(4200)));
        // Another server (another project's, or ours on another port) is not the recorded one.
        assert!(!is_ours(&server, &Identity::server(4201)));
        assert!(!is_ours(
            &info("/v/bin/prefect server start"),
            &Identity::server(4200)
        ));
        assert!(!is_ours(&server, &Identity::worker("4200")));
        assert!(!is_ours(
            &ProcInfo {
                zombie: true,
                ..server.clone()
            },
            &Identity::server(4200)
        ));
        assert!(!is_ours(
            &info("vim server start --port 4200"),
            &Identity::server(4200)
        ));
        let worker = info("/v/bin/python /v/bin/prefect worker start --pool a/b --type process");
        assert!(is_ours(&worker, &Identity::worker("a/b")));
        assert!(!is_ours(&worker, &Identity::worker("a_b")));
        assert!(!is_ours(&worker, &Identity::server(4200)));
    }

    #[test]
    fn signals_the_group_only_when_leading_it() {
        assert_eq!(signal_target(42, 42), "-42");
        assert_eq!(signal_target(42, 7), "42");
    }

    #[test]
    fn tails_text() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 3), "");
    }

    #[test]
    fn stops_a_detached_process_group_and_refuses_strangers() {
        // A fake `prefect server start`: a shell script with a child in its process group.
        let dir = std::env::temp_dir().join(format!("xtask-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("prefect");
        std::fs::write(&script, "sleep 60 &\necho $! > \"$0.child\"\nwait\n").unwrap();
        let sh = run::shell().unwrap();
        let cmd = cmd!(sh, "sh {script} server start --port 4999");
        let mut child = run::spawn_detached(cmd, &dir.join("p.log")).unwrap();
        let pid = child.id();
        let child_file = dir.join("prefect.child");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !child_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let grandchild: u32 = std::fs::read_to_string(&child_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(process_info(pid).unwrap().pgid, pid, "own process group");

        // Wrong role or wrong port: not ours, left alone.
        assert_eq!(
            stop(pid, &Identity::worker("4999"), Duration::from_secs(1)).unwrap(),
            Stopped::NotRunning
        );
        assert_eq!(
            stop(pid, &Identity::server(4998), Duration::from_secs(1)).unwrap(),
            Stopped::NotRunning
        );
        assert!(running(pid, &Identity::server(4999)).is_some());

        let outcome = stop(pid, &Identity::server(4999), Duration::from_secs(5)).unwrap();
        assert!(
            matches!(outcome, Stopped::Terminated | Stopped::Killed),
            "{outcome:?}"
        );
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(grandchild),
            "the group's other members are stopped too"
        );
        assert_eq!(
            stop(pid, &Identity::server(4999), Duration::from_secs(1)).unwrap(),
            Stopped::NotRunning
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
