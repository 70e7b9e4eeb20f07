//! A Prefect server on 127.0.0.1 with SQLite under its own PREFECT_HOME, started from the
//! venv's `prefect`, the wait for it to answer `/api/health`, and [`ServerGuard`], which stops a
//! server this process started (`test`, `bench`, and `deploy --local` until the server is up).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Cmd};

use super::process::{self, log_tail, read_pid_file, write_pid_file, Identity, PidRecord, Stopped};
use super::STOP_GRACE;
use crate::prefect::api::{ApiConfig, PrefectClient};
use crate::sys::process::{shell, spawn_detached};

/// Words a server's command line contains (checked before reusing or killing a pid).
pub(crate) const SERVER_WORDS: &[&str] = &["server", "start"];

/// How long a fresh server may take to answer (database migrations on a slow machine).
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How to start one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub prefect: PathBuf,
    /// PREFECT_HOME: the SQLite database and the server's settings live here.
    pub home: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    /// Serve the dashboard (off for throwaway test servers: faster start).
    pub ui: bool,
    /// Extra server settings, e.g. PREFECT_SERVER_API_AUTH_STRING for a secured test server.
    pub env: Vec<(String, String)>,
    /// API worker processes (`--workers`); more than one needs PostgreSQL and Redis
    /// ([`super::production_server`]).
    pub workers: u16,
}

pub fn api_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/api")
}

pub fn dashboard_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Removes every inherited PREFECT_* variable, so a developer's PREFECT_API_URL (production)
/// or database URL can never leak into a local process.
pub(crate) fn without_prefect_env(cmd: Cmd<'_>) -> Cmd<'_> {
    crate::sys::process::without_inherited(cmd, |name| name.starts_with("PREFECT_"))
}

/// `prefect server start --host 127.0.0.1 --port P [--workers N]` with an isolated environment.
pub(crate) fn server_command(spec: &ServerSpec) -> Result<Command> {
    let sh = shell()?;
    // Settings files (.env, prefect.toml) are read from the cwd: use the server's own dir.
    sh.change_dir(&spec.home);
    let (prefect, port) = (&spec.prefect, spec.port.to_string());
    let workers = (spec.workers > 1).then(|| ["--workers".to_string(), spec.workers.to_string()]);
    let workers = workers.iter().flatten();
    let cmd = cmd!(
        sh,
        "{prefect} server start --host 127.0.0.1 --port {port} {workers...}"
    );
    let ui = if spec.ui { "true" } else { "false" };
    let cmd = without_prefect_env(cmd)
        .env("PREFECT_HOME", &spec.home)
        .env("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        .env("PREFECT_SERVER_UI_ENABLED", ui)
        .envs(spec.env.iter().cloned());
    Ok(cmd.into())
}

/// Server settings of a server secured like a production gateway's: Basic auth and CSRF tokens.
pub fn secured_env(auth: &str) -> Vec<(String, String)> {
    vec![
        ("PREFECT_SERVER_API_AUTH_STRING".into(), auth.into()),
        ("PREFECT_API_AUTH_STRING".into(), auth.into()),
        (
            "PREFECT_SERVER_CSRF_PROTECTION_ENABLED".into(),
            "true".into(),
        ),
    ]
}

/// A port nobody listens on right now (the OS picks it).
pub(crate) fn pick_free_port() -> Result<u16> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free TCP port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("cannot read the picked port")?
        .port())
}

/// `n` distinct free ports (all held open until every one is picked, so none repeats).
pub fn pick_free_ports(n: usize) -> Result<Vec<u16>> {
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .context("cannot find a free TCP port on 127.0.0.1")?;
        ports.push(
            listener
                .local_addr()
                .context("cannot read the picked port")?
                .port(),
        );
        listeners.push(listener);
    }
    Ok(ports)
}

/// Fails with an actionable message when something already listens on `port`.
pub(crate) fn ensure_port_free(port: u16) -> Result<()> {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(err) => bail!(
            "port {port} on 127.0.0.1 is busy ({err}): stop whatever uses it, pick another with `--port`, \
             or leave out `--port` to use a free one"
        ),
    }
}

/// Starts the server in its own process group. Does not wait for it.
pub(crate) fn spawn(spec: &ServerSpec) -> Result<Child> {
    ensure_port_free(spec.port)?;
    std::fs::create_dir_all(&spec.home)
        .with_context(|| format!("cannot create {}", spec.home.display()))?;
    spawn_detached(server_command(spec)?, &spec.log)
}

/// Polls `/api/health` until it answers, the process exits, or `timeout` passes.
/// `child` is given when this process started the server (to notice its exit at once).
pub(crate) fn wait_healthy(
    port: u16,
    pid: u32,
    mut child: Option<&mut Child>,
    log: &Path,
    timeout: Duration,
) -> Result<Duration> {
    let mut cfg = ApiConfig::for_url(&api_url(port));
    cfg.timeout = Duration::from_secs(3);
    cfg.max_retries = 0;
    let client = PrefectClient::new(cfg)?;
    let start = Instant::now();
    loop {
        if client.health().is_ok() {
            return Ok(start.elapsed());
        }
        let exited = match child.as_deref_mut() {
            Some(child) => child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| status.to_string()),
            None => process::process_info(pid)
                .filter(|i| !i.zombie)
                .is_none()
                .then(|| "gone".to_string()),
        };
        if let Some(status) = exited {
            bail!(
                "the Prefect server on port {port} exited before answering ({status})\n{}",
                log_tail(log, 30)
            );
        }
        if start.elapsed() > timeout {
            bail!(
                "the Prefect server on port {port} did not answer {} within {}s\n{}",
                api_url(port) + "/health",
                timeout.as_secs(),
                log_tail(log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Pids and ports of the servers whose guards are alive, for an interrupt handler (they run in
/// their own process groups, so the terminal's Ctrl-C does not reach them).
static GUARDED: Mutex<Vec<(u32, u16)>> = Mutex::new(Vec::new());

/// A Prefect server this process started, stopped (and its pid file removed) when the guard is
/// dropped: on success, on error, and after an interrupt. [`ServerGuard::keep_running`] hands a
/// healthy server over to later commands instead (`deploy --local`).
#[derive(Debug)]
pub struct ServerGuard {
    child: Child,
    port: u16,
    log: PathBuf,
    pid_file: Option<PathBuf>,
    /// Names the server in a warning when it cannot be stopped, e.g. "test server".
    label: &'static str,
    /// Handed over by [`ServerGuard::keep_running`]: dropping the guard leaves it alone.
    kept: bool,
}

impl ServerGuard {
    /// Starts the server of `spec` (see [`spawn`]) and records it in `pid_file` when given, so
    /// a later run can stop it if this one is killed before it cleans up. Does not wait for it.
    pub fn spawn(
        spec: &ServerSpec,
        pid_file: Option<PathBuf>,
        label: &'static str,
    ) -> Result<ServerGuard> {
        let child = spawn(spec)?;
        if let Ok(mut pids) = GUARDED.lock() {
            pids.push((child.id(), spec.port));
        }
        let guard = ServerGuard {
            child,
            port: spec.port,
            log: spec.log.clone(),
            pid_file,
            label,
            kept: false,
        };
        if let Some(pid_file) = &guard.pid_file {
            write_pid_file(pid_file, &guard.record())?;
        }
        Ok(guard)
    }

    /// [`ServerGuard::spawn`], then the wait for it to answer.
    pub(crate) fn start(
        spec: &ServerSpec,
        pid_file: Option<PathBuf>,
        label: &'static str,
    ) -> Result<ServerGuard> {
        let mut guard = ServerGuard::spawn(spec, pid_file, label)?;
        guard.wait_healthy()?;
        Ok(guard)
    }

    /// Waits until the server answers (see [`wait_healthy`]); how long that took.
    pub fn wait_healthy(&mut self) -> Result<Duration> {
        let pid = self.pid();
        wait_healthy(
            self.port,
            pid,
            Some(&mut self.child),
            &self.log,
            STARTUP_TIMEOUT,
        )
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn api_url(&self) -> String {
        api_url(self.port)
    }

    /// What the pid file records about this server.
    fn record(&self) -> PidRecord {
        PidRecord {
            pid: self.pid(),
            role: "server".into(),
            port: self.port,
            pool: None,
            log: self.log.clone(),
        }
    }

    /// Leaves the server running (with its pid file) for later commands; returns its pid.
    pub(crate) fn keep_running(mut self) -> u32 {
        self.kept = true;
        self.pid()
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let pid = self.pid();
        unguard(pid);
        if self.kept {
            return;
        }
        if let Err(err) = process::stop(pid, &Identity::server(self.port), STOP_GRACE) {
            eprintln!("warning: cannot stop the {} pid {pid}: {err:#}", self.label);
        }
        let _ = self.child.wait();
        if let Some(pid_file) = &self.pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
    }
}

fn unguard(pid: u32) {
    if let Ok(mut pids) = GUARDED.lock() {
        pids.retain(|(p, _)| *p != pid);
    }
}

/// Stops every server whose guard is alive, at once: for a Ctrl-C / SIGTERM handler. The guards
/// still clean up (wait, pid file) when they are dropped.
pub fn stop_guarded_servers() {
    let pids = GUARDED.lock().map(|p| p.clone()).unwrap_or_default();
    for (pid, port) in pids {
        let _ = process::stop(pid, &Identity::server(port), STOP_GRACE);
    }
}

/// Stops the server recorded in `pid_file` by a run that was killed before it could clean up,
/// and removes the file. The pid of the server it stopped, if any.
pub fn stop_leftover(pid_file: &Path) -> Option<u32> {
    let stopped = read_pid_file(pid_file).and_then(|record| {
        matches!(
            process::stop(record.pid, &Identity::server(record.port), STOP_GRACE),
            Ok(Stopped::Terminated | Stopped::Killed)
        )
        .then_some(record.pid)
    });
    let _ = std::fs::remove_file(pid_file);
    stopped
}

/// Empties `home` so a throwaway server starts with a fresh database.
pub fn clear_home(home: &Path) -> Result<()> {
    if home.exists() {
        std::fs::remove_dir_all(home)
            .with_context(|| format!("cannot clear {}", home.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sys::process::args_of as args;

    #[test]
    fn server_command_is_isolated() {
        let spec = ServerSpec {
            prefect: PathBuf::from("/r/.venv/bin/prefect"),
            home: PathBuf::from("/r/target/xtask/local/home"),
            log: PathBuf::from("/r/target/xtask/local/server.log"),
            port: 4433,
            ui: false,
            env: vec![(
                "PREFECT_SERVER_CSRF_PROTECTION_ENABLED".into(),
                "true".into(),
            )],
            workers: 1,
        };
        let cmd = server_command(&spec).unwrap();
        assert_eq!(cmd.get_program(), "/r/.venv/bin/prefect");
        assert_eq!(
            args(&cmd),
            ["server", "start", "--host", "127.0.0.1", "--port", "4433"]
        );
        let envs: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let get = |name: &str| {
            envs.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(
            get("PREFECT_HOME").as_deref(),
            Some("/r/target/xtask/local/home")
        );
        assert_eq!(
            get("PREFECT_SERVER_ANALYTICS_ENABLED").as_deref(),
            Some("false")
        );
        assert_eq!(get("PREFECT_SERVER_UI_ENABLED").as_deref(), Some("false"));
        assert_eq!(
            get("PREFECT_SERVER_CSRF_PROTECTION_ENABLED").as_deref(),
            Some("true")
        );
        assert_eq!(
            cmd.get_current_dir(),
            Some(Path::new("/r/target/xtask/local/home"))
        );
    }

    #[test]
    fn picks_a_free_port_and_detects_a_busy_one() {
        let port = pick_free_port().unwrap();
        assert!(port > 0);
        let ports = pick_free_ports(3).unwrap();
        assert!(
            ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2],
            "{ports:?}"
        );
        ensure_port_free(port).unwrap();
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let busy = listener.local_addr().unwrap().port();
        let err = ensure_port_free(busy).unwrap_err().to_string();
        assert!(
            err.contains(&format!("port {busy}")) && err.contains("--port"),
            "{err}"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(api_url(4200), "http://127.0.0.1:4200/api");
        assert_eq!(dashboard_url(4200), "http://127.0.0.1:4200");
    }

    #[test]
    fn reports_a_server_that_exits_early_with_its_log() {
        let dir = std::env::temp_dir().join(format!("xtask-early-exit-{}", std::process::id()));
        let log = dir.join("server.log");
        let sh = shell().unwrap();
        let cmd = cmd!(sh, "sh -c \"echo 'boom: database locked'; exit 3\"");
        let mut child = spawn_detached(cmd, &log).unwrap();
        let pid = child.id();
        let port = pick_free_port().unwrap();
        let err = wait_healthy(port, pid, Some(&mut child), &log, Duration::from_secs(20))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited before answering"), "{err}");
        assert!(err.contains("boom: database locked"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
