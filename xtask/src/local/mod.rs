//! The local target's machinery: the project venv, a Prefect server and process workers
//! started on this machine and remembered by pid files under `target/xtask/local/`, and the
//! throwaway servers of `test` and `bench` ([`server::ServerGuard`]).
//! Commands (`deploy --local`, `down`, `test`, `bench`) compose these in the binary's `commands`.

pub mod deploy;
pub mod process;
pub mod production_server;
pub mod python_lock;
pub mod server;
pub mod venv;
pub mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use process::{read_pid_file, running, write_pid_file, Identity, PidRecord, Stopped};
use server::{ServerGuard, ServerSpec, STARTUP_TIMEOUT};
use worker::WorkerSpec;

use crate::sys::process::spawn_detached;

/// How long a process gets to exit after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where `deploy --local` keeps its server's database, logs and pid files.
#[derive(Debug, Clone)]
pub struct LocalState {
    pub dir: PathBuf,
}

impl LocalState {
    /// `target/xtask/local/` (or under XTASK_STATE_DIR).
    pub fn default_location() -> LocalState {
        LocalState {
            dir: crate::project::state_dir().join("local"),
        }
    }
    /// PREFECT_HOME of the local server, worker and CLI: the SQLite database lives here.
    pub(crate) fn home(&self) -> PathBuf {
        self.dir.join("prefect-home")
    }
    pub fn server_pid(&self) -> PathBuf {
        self.dir.join("server.pid.json")
    }
    pub(crate) fn server_log(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    pub fn worker_pid(&self, pool: &str) -> PathBuf {
        self.dir
            .join(format!("worker-{}.pid.json", file_safe(pool)))
    }
    pub fn worker_log(&self, pool: &str) -> PathBuf {
        self.dir.join(format!("worker-{}.log", file_safe(pool)))
    }
    /// Every worker pid file, whatever its pool.
    pub fn worker_pid_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("worker-") && n.ends_with(".pid.json"))
            })
            .collect();
        files.sort();
        files
    }
}

/// A pool name as a file-name part, one to one (`a/b` and `a_b` must not share a pid file):
/// `[A-Za-z0-9.-]` stay, every other byte becomes `_XX` (its hex value; `_` itself is escaped).
pub(crate) fn file_safe(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02X}"));
        }
    }
    out
}

/// A server or worker this tool is using.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub pid: u32,
    pub port: u16,
    /// Started by an earlier command and still healthy.
    pub reused: bool,
}

/// Reuses the server an earlier `deploy --local` started (pid file + health), else starts one
/// on `port` (or a free port) and waits until it answers.
pub fn ensure_server(state: &LocalState, prefect: &Path, port: Option<u16>) -> Result<Running> {
    let pid_file = state.server_pid();
    if let Some(record) = read_pid_file(&pid_file) {
        if running(record.pid, &Identity::server(record.port)).is_some() {
            if let Some(wanted) = port.filter(|p| *p != record.port) {
                bail!(
                    "the local Prefect server started earlier is running on port {}; \
                     run `cargo xtask down` first to start it on port {wanted}",
                    record.port
                );
            }
            server::wait_healthy(record.port, record.pid, None, &record.log, STARTUP_TIMEOUT)?;
            return Ok(Running {
                pid: record.pid,
                port: record.port,
                reused: true,
            });
        }
        // Stale: the process is gone (reboot, crash) or the pid now belongs to something else.
        let _ = std::fs::remove_file(&pid_file);
    }

    let port = match port {
        Some(port) => port,
        None => server::pick_free_port()?,
    };
    let spec = ServerSpec {
        prefect: prefect.to_path_buf(),
        home: state.home(),
        log: state.server_log(),
        port,
        ui: true,
        env: Vec::new(),
        workers: 1,
    };
    // Stopped (and its pid file removed) if it does not come up; kept running once it does.
    let server = ServerGuard::start(&spec, Some(pid_file), "local server")?;
    Ok(Running {
        pid: server.keep_running(),
        port,
        reused: false,
    })
}

/// Reuses a worker for `pool` that talks to the server on `port`, else starts one.
/// A worker left over from a server on another port is stopped first.
pub fn ensure_worker(
    state: &LocalState,
    prefect: &Path,
    pool: &str,
    port: u16,
    app_dir: &Path,
) -> Result<Running> {
    let pid_file = state.worker_pid(pool);
    if let Some(record) = read_pid_file(&pid_file) {
        // Ours only if it serves this very pool (the name, not its file-name form).
        let identity = Identity::worker(pool);
        match running(record.pid, &identity) {
            Some(_) if record.port == port => {
                return Ok(Running {
                    pid: record.pid,
                    port,
                    reused: true,
                });
            }
            Some(_) => {
                process::stop(record.pid, &identity, STOP_GRACE)?;
            }
            None => {}
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    let spec = WorkerSpec {
        prefect: prefect.to_path_buf(),
        pool: pool.to_string(),
        port,
        home: state.home(),
        app_dir: app_dir.to_path_buf(),
        log: state.worker_log(pool),
    };
    let mut child = spawn_detached(worker::worker_command(&spec)?, &spec.log)?;
    let record = PidRecord {
        pid: child.id(),
        role: "worker".into(),
        port,
        pool: Some(pool.to_string()),
        log: spec.log.clone(),
    };
    write_pid_file(&pid_file, &record)?;
    // A worker that cannot start (bad pool type, import error) exits within a second or two.
    std::thread::sleep(Duration::from_millis(1500));
    if let Ok(Some(status)) = child.try_wait() {
        let _ = std::fs::remove_file(&pid_file);
        bail!(
            "the worker for pool {pool} exited at once ({status})\n{}",
            process::log_tail(&spec.log, 30)
        );
    }
    Ok(Running {
        pid: record.pid,
        port,
        reused: false,
    })
}

/// One process `stop_all` dealt with.
#[derive(Debug)]
pub struct StopReport {
    pub what: String,
    pub pid: u32,
    pub outcome: Stopped,
}

/// Stops the workers, then the server, recorded under `state`; removes their pid files.
pub fn stop_all(state: &LocalState) -> Result<Vec<StopReport>> {
    let mut reports = Vec::new();
    let mut targets = state.worker_pid_files();
    targets.push(state.server_pid());
    for pid_file in targets {
        let Some((record, identity)) =
            read_pid_file(&pid_file).and_then(|r| r.identity().map(|id| (r, id)))
        else {
            let _ = std::fs::remove_file(&pid_file);
            continue;
        };
        let outcome = process::stop(record.pid, &identity, STOP_GRACE)?;
        let what = match &record.pool {
            Some(pool) => format!("worker for pool {pool}"),
            None => format!("server on port {}", record.port),
        };
        let _ = std::fs::remove_file(&pid_file);
        reports.push(StopReport {
            what,
            pid: record.pid,
            outcome,
        });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_layout() {
        let state = LocalState {
            dir: PathBuf::from("/t/local"),
        };
        assert_eq!(
            state.worker_pid("captionacc-workers-prod"),
            Path::new("/t/local/worker-captionacc-workers-prod.pid.json")
        );
        assert_eq!(
            state.worker_log("a/b c"),
            Path::new("/t/local/worker-a_2Fb_20c.log")
        );
        assert_eq!(file_safe("pool.1-y"), "pool.1-y");
        assert_eq!(file_safe("../é"), ".._2F_C3_A9");
    }

    #[test]
    fn pool_names_get_their_own_pid_files() {
        // Names that used to share a file, so one pool's worker stopped the other's.
        let names = [
            "a/b", "a_b", "a b", "a_2Fb", "a:b", "a\\b", "é", "_C3_A9", "a.b", "a-b",
        ];
        let state = LocalState {
            dir: PathBuf::from("/t/local"),
        };
        let files: std::collections::BTreeSet<PathBuf> =
            names.iter().map(|n| state.worker_pid(n)).collect();
        assert_eq!(files.len(), names.len(), "{files:?}");
        for file in &files {
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{name}"
            );
        }
    }

    #[test]
    fn lists_worker_pid_files_only() {
        let dir = std::env::temp_dir().join(format!("xtask-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "worker-b.pid.json",
            "worker-a.pid.json",
            "worker-a.log",
            "server.pid.json",
        ] {
            std::fs::write(dir.join(name), "{}").unwrap();
        }
        let state = LocalState { dir: dir.clone() };
        let names: Vec<String> = state
            .worker_pid_files()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["worker-a.pid.json", "worker-b.pid.json"]);
        // Corrupt pid files are cleaned up without touching any process.
        assert!(stop_all(&state).unwrap().is_empty());
        assert!(state.worker_pid_files().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
