//! `cargo xtask test`: the test command CI runs. Bootstraps the venv, starts two throwaway
//! Prefect servers, runs `cargo test --workspace` against them, and stops the servers at the
//! end — also when the tests fail or the run is interrupted.
//!
//! Contract with the tests (environment of `cargo test`):
//! - XTASK_TEST_PREFECT_API_URL: server 1, no auth.
//! - XTASK_TEST_PREFECT_API_URL_2 + XTASK_TEST_PREFECT_AUTH_STRING_2: server 2, which requires
//!   that Basic auth string and has CSRF protection on.
//! - XTASK_TEST_VENV: the venv with the pinned Prefect.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::{GlobalArgs, TestArgs};
use xtask::local::process::{self, read_pid_file, write_pid_file, PidRecord};
use xtask::local::server::{self, api_url, ServerSpec, SERVER_WORDS, STARTUP_TIMEOUT};
use xtask::local::{venv, STOP_GRACE};
use xtask::project::{repo_root, state_dir, venv_dir};
use xtask::sys::report::code;

/// Set by Ctrl-C / SIGTERM.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The running `cargo test`, so a SIGTERM to this process reaches it too.
static CARGO_TEST_PID: AtomicU32 = AtomicU32::new(0);
/// The servers, stopped by the interrupt handler at once (they run in their own process
/// groups, so the terminal's Ctrl-C does not reach them).
static SERVER_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// How many servers the suite gets (the second is for parity tests).
const SERVERS: usize = 2;

pub fn run(global: &GlobalArgs, args: TestArgs) -> Result<ExitCode> {
    install_interrupt_handler();
    let started = Instant::now();

    eprintln!("==> Python venv with the pinned Prefect");
    let venv = venv::ensure(&venv_dir(), &repo_root().join("app/requirements.txt"))?;

    let dir = state_dir().join("test");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    stop_leftovers(&dir);

    eprintln!("==> starting {SERVERS} throwaway Prefect servers (server 2 with an auth string and CSRF protection)");
    let mut servers = TestServers::default();
    let ports = server::pick_free_ports(SERVERS)?;
    let auth_2 = format!("xtask-test:{}", uuid::Uuid::new_v4().simple());
    for (i, port) in ports.iter().enumerate() {
        let n = i + 1;
        let home = dir.join(format!("server-{n}"));
        // Throwaway: a fresh database every run.
        if home.exists() {
            std::fs::remove_dir_all(&home)
                .with_context(|| format!("cannot clear {}", home.display()))?;
        }
        let spec = ServerSpec {
            prefect: venv.prefect(),
            home,
            log: dir.join(format!("server-{n}.log")),
            port: *port,
            ui: false,
            env: if n == 2 {
                secured_server_env(&auth_2)
            } else {
                Vec::new()
            },
        };
        let child = server::spawn(&spec)?;
        if let Ok(mut pids) = SERVER_PIDS.lock() {
            pids.push(child.id());
        }
        let pid_file = dir.join(format!("server-{n}.pid.json"));
        let record = PidRecord {
            pid: child.id(),
            role: "server".into(),
            port: *port,
            pool: None,
            log: spec.log.clone(),
        };
        write_pid_file(&pid_file, &record)?;
        servers.0.push(TestServer {
            child,
            record,
            pid_file,
        });
    }
    for (i, server) in servers.0.iter_mut().enumerate() {
        let waited = server::wait_healthy(
            server.record.port,
            server.record.pid,
            Some(&mut server.child),
            &server.record.log,
            STARTUP_TIMEOUT,
        )
        .with_context(|| format!("test server {} did not start", i + 1));
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted; the test servers are stopped");
        }
        eprintln!(
            "    server {} ready at {} ({:.1}s)",
            i + 1,
            api_url(server.record.port),
            waited?.as_secs_f64()
        );
    }

    let mut cmd = cargo_test_command(&args.cargo_args, &servers.urls(), &venv.dir);
    cmd.env("XTASK_TEST_PREFECT_AUTH_STRING_2", &auth_2);
    if global.verbose {
        cmd.arg("--verbose");
    }
    eprintln!(
        "==> cargo test --workspace --no-fail-fast {}",
        args.cargo_args.join(" ")
    );
    let mut child = cmd.spawn().context("cannot run cargo test")?;
    CARGO_TEST_PID.store(child.id(), Ordering::SeqCst);
    let status = child.wait().context("cannot wait for cargo test")?;
    CARGO_TEST_PID.store(0, Ordering::SeqCst);

    drop(servers);
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; the test servers are stopped");
    }
    if !status.success() {
        bail!(
            "the test suite failed ({status}) after {:.0?}",
            started.elapsed()
        );
    }
    eprintln!("==> all tests passed ({:.0?})", started.elapsed());
    Ok(ExitCode::from(code::OK))
}

/// `$CARGO test --workspace --no-fail-fast <args>` with the servers' URLs and the venv, and without the
/// developer's PREFECT_* / FLY_* settings (no test may reach a real server or Fly).
pub fn cargo_test_command(
    cargo_args: &[String],
    urls: &[String],
    venv: &std::path::Path,
) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .args(cargo_args)
        .current_dir(repo_root());
    for (key, _) in std::env::vars_os() {
        if !keep_for_cargo_test(&key.to_string_lossy()) {
            cmd.env_remove(&key);
        }
    }
    if let Some(url) = urls.first() {
        cmd.env("XTASK_TEST_PREFECT_API_URL", url);
    }
    if let Some(url) = urls.get(1) {
        cmd.env("XTASK_TEST_PREFECT_API_URL_2", url);
    }
    cmd.env("XTASK_TEST_VENV", venv);
    cmd
}

/// Server 2 is secured like a production gateway's server: Basic auth and CSRF tokens
/// (the client tests and the parity test need both).
fn secured_server_env(auth: &str) -> Vec<(String, String)> {
    vec![
        ("PREFECT_SERVER_API_AUTH_STRING".into(), auth.into()),
        ("PREFECT_API_AUTH_STRING".into(), auth.into()),
        (
            "PREFECT_SERVER_CSRF_PROTECTION_ENABLED".into(),
            "true".into(),
        ),
    ]
}

/// Whether an inherited variable reaches `cargo test`. Dropped: the developer's Prefect and Fly
/// settings, and what `cargo run` set for this binary (CARGO_MANIFEST_DIR, CARGO_PKG_*…):
/// some build scripts (ring) rerun when CARGO_MANIFEST_DIR changes, which would rebuild the
/// TLS stack on every switch between `cargo test` and `cargo xtask test`.
pub fn keep_for_cargo_test(name: &str) -> bool {
    const SET_BY_CARGO_RUN: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
    ];
    !(name.starts_with("PREFECT_")
        || name.starts_with("FLY_")
        || name == "XTASK_STATE_DIR"
        || name.starts_with("CARGO_PKG_")
        || SET_BY_CARGO_RUN.contains(&name))
}

struct TestServer {
    child: Child,
    record: PidRecord,
    pid_file: PathBuf,
}

/// Stops the servers when dropped: on success, on error, and after an interrupt.
#[derive(Default)]
struct TestServers(Vec<TestServer>);

impl TestServers {
    fn urls(&self) -> Vec<String> {
        self.0.iter().map(|s| api_url(s.record.port)).collect()
    }
}

impl Drop for TestServers {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        eprintln!("==> stopping the test servers");
        for server in &mut self.0 {
            if let Err(err) = process::stop(server.record.pid, SERVER_WORDS, STOP_GRACE) {
                eprintln!(
                    "warning: cannot stop the test server pid {}: {err:#}",
                    server.record.pid
                );
            }
            let _ = server.child.wait();
            let _ = std::fs::remove_file(&server.pid_file);
        }
    }
}

/// Servers of an earlier run that was killed before it could clean up.
fn stop_leftovers(dir: &std::path::Path) {
    for n in 1..=SERVERS {
        let pid_file = dir.join(format!("server-{n}.pid.json"));
        if let Some(record) = read_pid_file(&pid_file) {
            if let Ok(process::Stopped::Terminated | process::Stopped::Killed) =
                process::stop(record.pid, SERVER_WORDS, STOP_GRACE)
            {
                eprintln!(
                    "    stopped a test server left over from an earlier run (pid {})",
                    record.pid
                );
            }
        }
        let _ = std::fs::remove_file(&pid_file);
    }
}

/// Ctrl-C reaches `cargo test` through the terminal; this process survives it to clean up.
/// The handler stops the servers at once (ending a wait for their health) and forwards a
/// SIGTERM sent to this process alone to `cargo test`; the main thread then reports.
fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        let pid = CARGO_TEST_PID.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &pid.to_string()])
                .status();
        }
        let pids = SERVER_PIDS.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in pids {
            let _ = process::stop(pid, SERVER_WORDS, STOP_GRACE);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_test_command_carries_the_contract() {
        let urls = vec![api_url(4431), api_url(4432)];
        let cmd = cargo_test_command(
            &["local_e2e".into(), "--".into(), "--nocapture".into()],
            &urls,
            std::path::Path::new("/r/.venv"),
        );
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "test",
                "--workspace",
                "--no-fail-fast",
                "local_e2e",
                "--",
                "--nocapture"
            ]
        );
        let env = |name: &str| {
            cmd.get_envs()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v)
                .map(|v| v.to_string_lossy().into_owned())
        };
        assert_eq!(
            env("XTASK_TEST_PREFECT_API_URL").as_deref(),
            Some("http://127.0.0.1:4431/api")
        );
        assert_eq!(
            env("XTASK_TEST_PREFECT_API_URL_2").as_deref(),
            Some("http://127.0.0.1:4432/api")
        );
        assert_eq!(env("XTASK_TEST_VENV").as_deref(), Some("/r/.venv"));
    }

    #[test]
    fn filters_the_inherited_environment() {
        for dropped in [
            "PREFECT_API_URL",
            "PREFECT_API_KEY",
            "FLY_API_TOKEN",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "XTASK_STATE_DIR",
        ] {
            assert!(!keep_for_cargo_test(dropped), "{dropped}");
        }
        for kept in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "RUSTFLAGS",
            "XTASK_VENV",
            "CI",
        ] {
            assert!(keep_for_cargo_test(kept), "{kept}");
        }
    }
}
