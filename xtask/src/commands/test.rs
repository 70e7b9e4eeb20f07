//! `cargo xtask test`: the test command CI runs. Runs the tidy gate (rustfmt, clippy), bootstraps
//! the venv, starts two throwaway Prefect servers, runs `cargo test --workspace` against them, and
//! stops the servers at the end — also when the tests fail or the run is interrupted.
//!
//! Contract with the tests (environment of `cargo test`):
//! - XTASK_TEST_PREFECT_API_URL: server 1, no auth.
//! - XTASK_TEST_PREFECT_API_URL_2 + XTASK_TEST_PREFECT_AUTH_STRING_2: server 2, which requires
//!   that Basic auth string and has CSRF protection on.
//! - XTASK_TEST_VENV: the venv with the pinned Prefect.
//! - XTASK_TEST_TOOLS_VENV: the venv with the workflow linters (xtask/workflow-linters.txt:
//!   actionlint and zizmor, pinned by hash).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::cli::{GlobalArgs, TestArgs, TestPasses};
use xtask::local::production_server::{self, ProductionSpec};
use xtask::local::server::{self, ServerGuard, ServerSpec};
use xtask::local::venv;
use xtask::project::{repo_root, state_dir, tools_venv_dir, venv_dir};
use xtask::sys::process;
use xtask::sys::report::code;

/// Set by Ctrl-C / SIGTERM.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The running `cargo test`, so a SIGTERM to this process reaches it too.
static CARGO_TEST_PID: AtomicU32 = AtomicU32::new(0);

/// How many servers the suite gets (the second is for parity tests).
const SERVERS: usize = 2;

pub fn run(global: &GlobalArgs, args: TestArgs) -> Result<ExitCode> {
    install_interrupt_handler();
    let started = Instant::now();

    if !args.no_tidy {
        tidy()?;
    }

    eprintln!("==> Python venv with the pinned Prefect");
    let venv = venv::ensure(&venv_dir(), &repo_root())?;
    eprintln!("==> workflow linters (actionlint, zizmor)");
    let tools = venv::ensure_tools(
        &tools_venv_dir(),
        &repo_root().join("xtask/workflow-linters.txt"),
        &["actionlint", "zizmor"],
    )?;

    let dir = state_dir().join("test");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    stop_leftovers(&dir);

    eprintln!("==> starting {SERVERS} throwaway Prefect servers (server 2 with an auth string and CSRF protection)");
    let auth_2 = format!("xtask-test:{}", uuid::Uuid::new_v4().simple());
    let servers = start_servers(&venv.prefect(), &dir, &auth_2)?;
    let urls = servers.urls();

    let mut failed = Vec::new();
    if args.servers != TestPasses::Production {
        let mut cmd = cargo_test_command(&args.cargo_args, &urls, &venv.dir, &tools.dir)?;
        cmd.env("XTASK_TEST_PREFECT_AUTH_STRING_2", &auth_2);
        if global.verbose {
            cmd.arg("--verbose");
        }
        eprintln!(
            "==> cargo test --workspace --no-fail-fast {}",
            args.cargo_args.join(" ")
        );
        let status = process::status_with_pid(cmd, &CARGO_TEST_PID, "cargo test")?;
        if !status.success() {
            failed.push(format!("the suite against the SQLite servers ({status})"));
        }
    }
    if let Some(cargo_args) = production_pass_args(args.servers, &args.cargo_args) {
        if !INTERRUPTED.load(Ordering::SeqCst) {
            match production_server::find_programs() {
                Err(reason) => {
                    eprintln!(
                        "==> SKIPPED the production-shaped pass (PostgreSQL + Redis): {reason}"
                    )
                }
                Ok(programs) => {
                    let spec = ProductionSpec {
                        programs,
                        venv: venv.clone(),
                        root: repo_root(),
                        dir: dir.join("production"),
                        workers: production_server::DEFAULT_WORKERS,
                    };
                    eprintln!("==> starting the production-shaped server");
                    let server = production_server::start(&spec)?;
                    eprintln!("    ready at {}: {}", server.api_url(), server.describe());
                    // Server 2 stays the secured SQLite one: no suite of this pass writes to it.
                    let urls = [server.api_url(), urls[1].clone()];
                    let mut cmd = cargo_test_command(&cargo_args, &urls, &venv.dir, &tools.dir)?;
                    cmd.env("XTASK_TEST_PREFECT_AUTH_STRING_2", &auth_2);
                    cmd.env("XTASK_TEST_SERVER_SHAPE", "production");
                    eprintln!(
                        "==> cargo test against the production-shaped server: {}",
                        cargo_args.join(" ")
                    );
                    let status = process::status_with_pid(cmd, &CARGO_TEST_PID, "cargo test")?;
                    if !status.success() {
                        failed.push(format!(
                            "the sync, fault and concurrency suites against the production-shaped server ({status})"
                        ));
                    }
                    eprintln!("==> stopping the production-shaped server");
                }
            }
        }
    }

    drop(servers);
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; the test servers are stopped");
    }
    if !failed.is_empty() {
        bail!(
            "failed after {:.0?}: {}",
            started.elapsed(),
            failed.join("; ")
        );
    }
    eprintln!("==> all tests passed ({:.0?})", started.elapsed());
    Ok(ExitCode::from(code::OK))
}

/// The suites that exercise concurrency against the server: the sync end to end (racing creates,
/// two runs at once, the adaptive write window), the fault suite (rollback under faults) and
/// paging over a listing other writers change.
const PRODUCTION_SUITES: &[&str] = &[
    "--test",
    "it",
    "--",
    "register_flows::",
    "sync_faults::",
    "prefect_api::filters_read_every_page",
];

/// The cargo test arguments of the production-shaped pass, or `None` when it does not run:
/// with `all`, only for the whole suite (a filter given while iterating is not rerun there).
fn production_pass_args(servers: TestPasses, cargo_args: &[String]) -> Option<Vec<String>> {
    let default = || PRODUCTION_SUITES.iter().map(|s| s.to_string()).collect();
    match servers {
        TestPasses::Sqlite => None,
        TestPasses::All if !cargo_args.is_empty() => {
            eprintln!("==> the production-shaped pass is skipped: cargo test arguments were given (`--servers production` runs them there)");
            None
        }
        TestPasses::All => Some(default()),
        TestPasses::Production if cargo_args.is_empty() => Some(default()),
        TestPasses::Production => Some(cargo_args.to_vec()),
    }
}

/// The tidy gate: the tree is rustfmt-clean and clippy finds nothing, warnings included.
fn tidy() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let sh = process::shell()?;
    sh.change_dir(repo_root());
    eprintln!("==> tidy: cargo fmt --all --check");
    without_host_settings(cmd!(sh, "{cargo} fmt --all --check"))
        .quiet()
        .run()
        .context("the tree is not rustfmt-clean: run `cargo fmt --all`")?;
    eprintln!("==> tidy: cargo clippy --workspace --all-targets -- -D warnings");
    without_host_settings(cmd!(
        sh,
        "{cargo} clippy --workspace --all-targets --quiet -- -D warnings"
    ))
    .quiet()
    .run()
    .context("clippy found problems (see above)")?;
    Ok(())
}

/// `$CARGO test --workspace --no-fail-fast <args>` with the servers' URLs and the venv, and without the
/// developer's PREFECT_* / FLY_* settings (no test may reach a real server or Fly).
pub fn cargo_test_command(
    cargo_args: &[String],
    urls: &[String],
    venv: &Path,
    tools: &Path,
) -> Result<Command> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let sh = process::shell()?;
    sh.change_dir(repo_root());
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    let mut cmd = without_host_settings(cmd!(
        sh,
        "{cargo} test --workspace --no-fail-fast {cargo_args...}"
    ));
    if let Some(url) = urls.first() {
        cmd = cmd.env("XTASK_TEST_PREFECT_API_URL", url);
    }
    if let Some(url) = urls.get(1) {
        cmd = cmd.env("XTASK_TEST_PREFECT_API_URL_2", url);
    }
    Ok(cmd
        .env("XTASK_TEST_VENV", venv)
        .env("XTASK_TEST_TOOLS_VENV", tools)
        .into())
}

/// `cmd` without the inherited variables [`keep_for_cargo_test`] drops.
fn without_host_settings(cmd: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    process::without_inherited(cmd, |name| !keep_for_cargo_test(name))
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

/// Starts the suite's servers on free ports, each with a fresh database, and waits until they
/// answer. Server 2 is secured like a production gateway's server: Basic auth and CSRF tokens
/// (the client tests and the parity test need both).
fn start_servers(prefect: &Path, dir: &Path, auth_2: &str) -> Result<TestServers> {
    let mut servers = TestServers(Vec::new());
    let ports = server::pick_free_ports(SERVERS)?;
    for (i, port) in ports.iter().enumerate() {
        let n = i + 1;
        let home = dir.join(format!("server-{n}"));
        // Throwaway: a fresh database every run.
        server::clear_home(&home)?;
        let spec = ServerSpec {
            prefect: prefect.to_path_buf(),
            home,
            log: dir.join(format!("server-{n}.log")),
            port: *port,
            ui: false,
            env: if n == 2 {
                server::secured_env(auth_2)
            } else {
                Vec::new()
            },
            workers: 1,
        };
        let pid_file = dir.join(format!("server-{n}.pid.json"));
        servers
            .0
            .push(ServerGuard::spawn(&spec, Some(pid_file), "test server")?);
    }
    for (i, server) in servers.0.iter_mut().enumerate() {
        let waited = server
            .wait_healthy()
            .with_context(|| format!("test server {} did not start", i + 1));
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted; the test servers are stopped");
        }
        eprintln!(
            "    server {} ready at {} ({:.1}s)",
            i + 1,
            server.api_url(),
            waited?.as_secs_f64()
        );
    }
    Ok(servers)
}

/// The suite's servers: each guard stops its server when dropped; this says so first.
struct TestServers(Vec<ServerGuard>);

impl TestServers {
    fn urls(&self) -> Vec<String> {
        self.0.iter().map(ServerGuard::api_url).collect()
    }
}

impl Drop for TestServers {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            eprintln!("==> stopping the test servers");
        }
    }
}

/// Servers of an earlier run that was killed before it could clean up.
fn stop_leftovers(dir: &Path) {
    for n in 1..=SERVERS {
        if let Some(pid) = server::stop_leftover(&dir.join(format!("server-{n}.pid.json"))) {
            eprintln!("    stopped a test server left over from an earlier run (pid {pid})");
        }
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
            let _ = process::send_signal(&pid.to_string(), "TERM");
        }
        server::stop_guarded_servers();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use xtask::local::server::api_url;

    #[test]
    fn cargo_test_command_carries_the_contract() {
        let urls = vec![api_url(4431), api_url(4432)];
        let cmd = cargo_test_command(
            &["local_e2e".into(), "--".into(), "--nocapture".into()],
            &urls,
            Path::new("/r/.venv"),
            Path::new("/r/.venv-tools"),
        )
        .unwrap();
        let args = xtask::sys::process::args_of(&cmd);
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
        let env = |name: &str| xtask::sys::process::env_set_by(&cmd, name);
        assert_eq!(
            env("XTASK_TEST_PREFECT_API_URL").as_deref(),
            Some("http://127.0.0.1:4431/api")
        );
        assert_eq!(
            env("XTASK_TEST_PREFECT_API_URL_2").as_deref(),
            Some("http://127.0.0.1:4432/api")
        );
        assert_eq!(env("XTASK_TEST_VENV").as_deref(), Some("/r/.venv"));
        assert_eq!(
            env("XTASK_TEST_TOOLS_VENV").as_deref(),
            Some("/r/.venv-tools")
        );
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
