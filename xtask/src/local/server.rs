//! A Prefect server on 127.0.0.1 with SQLite under its own PREFECT_HOME, started from the
//! venv's `prefect`, and the wait for it to answer `/api/health`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::process::{self, log_tail, spawn_detached};
use crate::prefect::api::{ApiConfig, PrefectClient};

/// Words a server's command line contains (checked before reusing or killing a pid).
pub const SERVER_WORDS: &[&str] = &["server", "start"];

/// How long a fresh server may take to answer (database migrations on a slow machine).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

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
}

pub fn api_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/api")
}

pub fn dashboard_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Removes every inherited PREFECT_* variable, so a developer's PREFECT_API_URL (production)
/// or database URL can never leak into a local process.
pub fn clear_prefect_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PREFECT_") {
            cmd.env_remove(key);
        }
    }
}

/// `prefect server start --host 127.0.0.1 --port P` with an isolated environment.
pub fn server_command(spec: &ServerSpec) -> Command {
    let mut cmd = Command::new(&spec.prefect);
    cmd.args(["server", "start", "--host", "127.0.0.1", "--port"])
        .arg(spec.port.to_string());
    clear_prefect_env(&mut cmd);
    cmd.env("PREFECT_HOME", &spec.home)
        .env("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        .env(
            "PREFECT_SERVER_UI_ENABLED",
            if spec.ui { "true" } else { "false" },
        )
        // Settings files (.env, prefect.toml) are read from the cwd: use the server's own dir.
        .current_dir(&spec.home);
    for (key, value) in &spec.env {
        cmd.env(key, value);
    }
    cmd
}

/// A port nobody listens on right now (the OS picks it).
pub fn pick_free_port() -> Result<u16> {
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
pub fn ensure_port_free(port: u16) -> Result<()> {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(err) => bail!(
            "port {port} on 127.0.0.1 is busy ({err}): stop whatever uses it, pick another with `--port`, \
             or leave out `--port` to use a free one"
        ),
    }
}

/// Starts the server in its own process group. Does not wait for it.
pub fn spawn(spec: &ServerSpec) -> Result<Child> {
    ensure_port_free(spec.port)?;
    std::fs::create_dir_all(&spec.home)
        .with_context(|| format!("cannot create {}", spec.home.display()))?;
    spawn_detached(&mut server_command(spec), &spec.log)
}

/// Polls `/api/health` until it answers, the process exits, or `timeout` passes.
/// `child` is given when this process started the server (to notice its exit at once).
pub fn wait_healthy(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

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
        };
        let cmd = server_command(&spec);
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
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'boom: database locked'; exit 3"]);
        let mut child = spawn_detached(&mut cmd, &log).unwrap();
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
