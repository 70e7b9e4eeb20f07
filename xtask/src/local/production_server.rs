//! A production-shaped Prefect server on this machine: PostgreSQL and Redis (Debian's packages
//! `postgresql` and `redis-server`), several API worker processes (`prefect server start
//! --workers N`, where writes really overlap) and the background services (scheduler, …) in a
//! process of their own — how Prefect runs in production. `cargo xtask test` runs the sync,
//! fault and concurrency suites against it too; `bench --production-server` measures on it.
//!
//! Everything is throwaway: a fresh database cluster every start, stopped when the
//! [`ProductionServer`] is dropped. A run that was killed leaves pid files behind; the next start
//! stops what they name (each checked against its command line first).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use xshell::cmd;

use super::process::{log_tail, process_info, write_atomically};
use super::server::{self, without_prefect_env, ServerGuard, ServerSpec};
use super::venv::{self, Venv};
use super::STOP_GRACE;
use crate::sys::process::{self as proc, send_signal, shell, spawn_detached};

/// prefect-redis, pinned by hash (installed beside the venv, see [`venv::ensure_overlay`]).
pub const PREFECT_REDIS_FILE: &str = "xtask/prefect-redis.txt";
/// API worker processes: two is the smallest number where requests really run in parallel.
pub const DEFAULT_WORKERS: u16 = 2;
/// initdb, a start, a stop, the schema migration: each gets this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// PostgreSQL refuses to run as root; as root the cluster runs as this user.
const UNPRIVILEGED_USER: &str = "nobody";

/// The programs the server needs from the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    pub initdb: PathBuf,
    pub pg_ctl: PathBuf,
    pub redis_server: PathBuf,
}

/// Finds PostgreSQL's `initdb`/`pg_ctl` (on PATH, else Debian's `/usr/lib/postgresql/<major>/bin`,
/// the newest) and `redis-server`. The error is the reason to print when skipping.
pub fn find_programs() -> std::result::Result<Programs, String> {
    let debian_dirs = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let pg_bin = newest_major(&debian_dirs)
        .map(|major| PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
    let find = |name: &str| {
        which::which(name).ok().or_else(|| {
            pg_bin
                .as_ref()
                .map(|dir| dir.join(name))
                .filter(|p| p.is_file())
        })
    };
    let missing_hint = "install Debian's packages `postgresql` and `redis-server` (.ci/run does)";
    let initdb = find("initdb").ok_or_else(|| format!("no PostgreSQL initdb: {missing_hint}"))?;
    let pg_ctl = find("pg_ctl").ok_or_else(|| format!("no PostgreSQL pg_ctl: {missing_hint}"))?;
    let redis_server = which::which("redis-server")
        .map_err(|_| format!("no redis-server on PATH: {missing_hint}"))?;
    Ok(Programs {
        initdb,
        pg_ctl,
        redis_server,
    })
}

/// The highest numeric directory name (`["13", "15", "common"]` → 15).
pub(crate) fn newest_major(names: &[String]) -> Option<u32> {
    names.iter().filter_map(|n| n.parse().ok()).max()
}

/// How to start one.
#[derive(Debug, Clone)]
pub struct ProductionSpec {
    pub programs: Programs,
    pub venv: Venv,
    /// The repository (for [`PREFECT_REDIS_FILE`]).
    pub root: PathBuf,
    /// Logs, pid files, PREFECT_HOME and the prefect-redis directory.
    pub dir: PathBuf,
    pub workers: u16,
}

/// A running production-shaped server; dropping it stops every part, newest first.
#[derive(Debug)]
pub struct ProductionServer {
    services: Recorded,
    api: ServerGuard,
    postgres: Postgres,
    redis: Recorded,
    pub workers: u16,
}

impl ProductionServer {
    pub fn api_url(&self) -> String {
        self.api.api_url()
    }

    /// One line for logs: what this server is.
    pub fn describe(&self) -> String {
        format!(
            "PostgreSQL on port {} + Redis on port {}, {} API workers, services in their own process (pid {})",
            self.postgres.port,
            self.redis.port,
            self.workers,
            self.services.child.id()
        )
    }
}

/// Starts PostgreSQL, Redis, the schema migration, the API workers and the services, in that
/// order, and waits until the API answers. Leftovers of a killed earlier run are stopped first.
pub fn start(spec: &ProductionSpec) -> Result<ProductionServer> {
    std::fs::create_dir_all(&spec.dir)
        .with_context(|| format!("cannot create {}", spec.dir.display()))?;
    stop_leftovers(spec);

    let overlay = spec.dir.join("prefect-redis");
    venv::ensure_overlay(&spec.venv, &overlay, &spec.root.join(PREFECT_REDIS_FILE))?;

    let [pg_port, redis_port, api_port] = <[u16; 3]>::try_from(server::pick_free_ports(3)?)
        .map_err(|_| anyhow::anyhow!("cannot pick three free ports"))?;
    let redis = start_redis(spec, redis_port)?;
    let postgres = Postgres::start(spec, pg_port)?;

    let home = spec.dir.join("prefect-home");
    server::clear_home(&home)?;
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let settings = prefect_settings(pg_port, redis_port, &overlay);

    // Once, before the workers start: several workers migrating at once would race.
    let sh = shell()?;
    sh.change_dir(&home);
    let prefect = spec.venv.prefect();
    let upgrade = without_prefect_env(cmd!(sh, "{prefect} server database upgrade -y"))
        .env("PREFECT_HOME", &home)
        .envs(settings.iter().cloned());
    let out = proc::capture_within(upgrade, STEP_TIMEOUT, proc::MAX_CAPTURED_BYTES)
        .context("cannot run `prefect server database upgrade`")?;
    if !out.status.success() {
        bail!(
            "`prefect server database upgrade` against PostgreSQL failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    let mut api_env = settings.clone();
    api_env.push((
        "PREFECT_API_DATABASE_MIGRATE_ON_START".into(),
        "false".into(),
    ));
    let mut api_spec = ServerSpec {
        prefect: prefect.clone(),
        home: home.clone(),
        log: spec.dir.join("api-warm-up.log"),
        port: api_port,
        ui: false,
        env: api_env,
        workers: 1,
    };
    // Each worker registers Prefect's block types at start-up unless the registration is
    // memoized in PREFECT_HOME; two doing it at once collide on a unique key and the server
    // exits. One worker first registers them (and writes the memo), then the real server starts.
    ServerGuard::start(&api_spec, None, "production-shaped server (warm-up)")
        .context("the production-shaped server's warm-up start failed")?;
    api_spec.workers = spec.workers;
    api_spec.log = spec.dir.join("api.log");
    let pid_file = spec.dir.join("api.pid.json");
    let mut api = ServerGuard::spawn(&api_spec, Some(pid_file), "production-shaped server")?;

    let services = without_prefect_env(cmd!(sh, "{prefect} server services start"))
        .env("PREFECT_HOME", &home)
        .env("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        .envs(settings.iter().cloned());
    let services = Recorded::spawn(
        services,
        &spec.dir.join("services.log"),
        &spec.dir.join("services.pid"),
        &["services", "start"],
        0,
    )?;
    api.wait_healthy()
        .context("the production-shaped server's API did not start")?;
    Ok(ProductionServer {
        services,
        api,
        postgres,
        redis,
        workers: spec.workers,
    })
}

/// The settings that make Prefect use PostgreSQL and Redis (what several workers require).
pub(crate) fn prefect_settings(
    pg_port: u16,
    redis_port: u16,
    overlay: &Path,
) -> Vec<(String, String)> {
    let url = format!("postgresql+asyncpg://prefect@127.0.0.1:{pg_port}/postgres");
    [
        ("PREFECT_API_DATABASE_CONNECTION_URL", url),
        ("PREFECT_MESSAGING_BROKER", "prefect_redis.messaging".into()),
        ("PREFECT_MESSAGING_CACHE", "prefect_redis.messaging".into()),
        (
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING",
            "prefect_redis.ordering".into(),
        ),
        (
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
            "prefect_redis.lease_storage".into(),
        ),
        ("PREFECT_REDIS_MESSAGING_HOST", "127.0.0.1".into()),
        ("PREFECT_REDIS_MESSAGING_PORT", redis_port.to_string()),
        ("PYTHONPATH", overlay.to_string_lossy().into_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn start_redis(spec: &ProductionSpec, port: u16) -> Result<Recorded> {
    let sh = shell()?;
    let dir = spec.dir.join("redis");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let redis = &spec.programs.redis_server;
    let port_text = port.to_string();
    let no_snapshots = "";
    let run = cmd!(
        sh,
        "{redis} --port {port_text} --bind 127.0.0.1 --save {no_snapshots} --appendonly no --dir {dir}"
    );
    let recorded = Recorded::spawn(
        run,
        &spec.dir.join("redis.log"),
        &spec.dir.join("redis.pid"),
        &["redis-server"],
        port,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !redis_answers(port) {
        if Instant::now() > deadline {
            bail!(
                "redis-server did not answer PING on port {port} within 30 s; its log:\n{}",
                log_tail(&spec.dir.join("redis.log"), 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(recorded)
}

fn redis_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
}

/// A PostgreSQL cluster started with `pg_ctl`, stopped (`-m fast`) when dropped.
#[derive(Debug)]
struct Postgres {
    pg_ctl: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Postgres {
    fn start(spec: &ProductionSpec, port: u16) -> Result<Postgres> {
        let data = pg_data_dir(&spec.dir);
        let sh = shell()?;
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("cannot clear {}", data.display()))?;
        }
        let initdb = &spec.programs.initdb;
        let out = proc::capture_within(
            as_cluster_user(&sh, initdb).arg("-D").arg(&data).args([
                "-U",
                "prefect",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]),
            STEP_TIMEOUT,
            proc::MAX_CAPTURED_BYTES,
        )
        .context("cannot run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb {} failed ({}):\n{}",
                data.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let postgres = Postgres {
            pg_ctl: spec.programs.pg_ctl.clone(),
            data,
            port,
        };
        let (pg_ctl, data) = (&postgres.pg_ctl, &postgres.data);
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            data.display()
        );
        let log = data.join("server.log");
        let out = proc::capture_within(
            as_cluster_user(&sh, pg_ctl)
                .arg("-D")
                .arg(data)
                .args(["-o", &options, "-l"])
                .arg(&log)
                .args(["-w", "-t", "120", "start"]),
            STEP_TIMEOUT,
            proc::MAX_CAPTURED_BYTES,
        )
        .context("cannot run pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not start on port {port} ({}); its log:\n{}",
                out.status,
                log_tail(&log, 20)
            );
        }
        Ok(postgres)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop_cluster(&self.pg_ctl, &self.data, "fast");
    }
}

fn stop_cluster(pg_ctl: &Path, data: &Path, mode: &str) {
    let Ok(sh) = shell() else { return };
    let stop = as_cluster_user(&sh, pg_ctl)
        .arg("-D")
        .arg(data)
        .args(["-m", mode, "-w", "-t", "60", "stop"]);
    match proc::capture_within(stop, STEP_TIMEOUT, proc::MAX_CAPTURED_BYTES) {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "warning: cannot stop PostgreSQL in {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => eprintln!(
            "warning: cannot stop PostgreSQL in {}: {err:#}",
            data.display()
        ),
    }
}

/// The cluster's directory. As root it is in the temporary directory, created by the
/// unprivileged user (the repository may sit where that user cannot go); named after the
/// state directory so that two checkouts never share one.
fn pg_data_dir(dir: &Path) -> PathBuf {
    if running_as_root() {
        let digest = Md5::digest(dir.to_string_lossy().as_bytes());
        let name: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("xtask-postgres-{name}"))
    } else {
        dir.join("postgres")
    }
}

/// `program`, through `runuser -u nobody --` as root (PostgreSQL refuses to run as root).
fn as_cluster_user<'a>(sh: &'a xshell::Shell, program: &Path) -> xshell::Cmd<'a> {
    if running_as_root() {
        cmd!(sh, "runuser -u {UNPRIVILEGED_USER} -- {program}")
    } else {
        cmd!(sh, "{program}")
    }
}

/// The effective uid is the owner of `/proc/self` (no FFI needed).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Stops what a killed earlier run left: the API workers (their pid file), the services and
/// Redis (theirs, checked against the command line), and the cluster (`pg_ctl stop`).
fn stop_leftovers(spec: &ProductionSpec) {
    if let Some(pid) = server::stop_leftover(&spec.dir.join("api.pid.json")) {
        eprintln!(
            "    stopped a production-shaped server left over from an earlier run (pid {pid})"
        );
    }
    Recorded::stop_leftover(&spec.dir.join("services.pid"));
    Recorded::stop_leftover(&spec.dir.join("redis.pid"));
    let data = pg_data_dir(&spec.dir);
    if data.join("postmaster.pid").exists() {
        stop_cluster(&spec.programs.pg_ctl, &data, "immediate");
    }
}

/// A child process leading its own group, recorded in a pid file (`pid`, then the words its
/// command line must hold) so that a later run can stop it if this one is killed.
#[derive(Debug)]
struct Recorded {
    child: Child,
    pid_file: PathBuf,
    port: u16,
}

impl Recorded {
    fn spawn(
        cmd: xshell::Cmd<'_>,
        log: &Path,
        pid_file: &Path,
        words: &[&str],
        port: u16,
    ) -> Result<Recorded> {
        let child = spawn_detached(cmd, log)?;
        let record = format!("{}\n{}\n", child.id(), words.join("\n"));
        write_atomically(pid_file, &record)?;
        Ok(Recorded {
            child,
            pid_file: pid_file.to_path_buf(),
            port,
        })
    }

    /// Stops the process a pid file names, if it is still the one recorded.
    fn stop_leftover(pid_file: &Path) {
        let Ok(text) = std::fs::read_to_string(pid_file) else {
            return;
        };
        let mut lines = text.lines();
        let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
        let words: Vec<&str> = lines.collect();
        if let (Some(pid), Some(info)) = (pid, pid.and_then(process_info)) {
            let cmdline = info.cmdline.join(" ");
            if !info.zombie && !words.is_empty() && words.iter().all(|w| cmdline.contains(w)) {
                terminate(pid);
                eprintln!(
                    "    stopped a process left over from an earlier run (pid {pid}: {cmdline})"
                );
            }
        }
        let _ = std::fs::remove_file(pid_file);
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        terminate(self.child.id());
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// SIGTERM to the process group, SIGKILL after the grace period.
fn terminate(pid: u32) {
    let group = format!("-{pid}");
    let _ = send_signal(&group, "TERM");
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !process_info(pid).is_some_and(|info| !info.zombie) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = send_signal(&group, "KILL");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_postgresql_major() {
        let names = ["13", "15", "common", "9"].map(String::from);
        assert_eq!(newest_major(&names), Some(15));
        assert_eq!(newest_major(&["common".to_string()]), None);
    }

    #[test]
    fn prefect_settings_select_postgres_and_redis_for_every_part() {
        let settings = prefect_settings(5499, 6399, Path::new("/s/prefect-redis"));
        let get = |k: &str| {
            settings
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("PREFECT_API_DATABASE_CONNECTION_URL"),
            Some("postgresql+asyncpg://prefect@127.0.0.1:5499/postgres")
        );
        // Prefect refuses --workers > 1 while any of these is its in-memory default.
        for key in [
            "PREFECT_MESSAGING_BROKER",
            "PREFECT_MESSAGING_CACHE",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
        ] {
            assert!(
                get(key).is_some_and(|v| v.starts_with("prefect_redis.")),
                "{key}"
            );
        }
        assert_eq!(get("PREFECT_REDIS_MESSAGING_PORT"), Some("6399"));
        assert_eq!(get("PYTHONPATH"), Some("/s/prefect-redis"));
    }

    /// prefect-redis is installed without its dependencies: the lock must hold them.
    #[test]
    fn the_lock_holds_prefect_redis_dependencies() {
        let root = crate::project::repo_root();
        let lock =
            std::fs::read_to_string(root.join(super::super::python_lock::LOCK_FILE)).unwrap();
        let locked = super::super::python_lock::parse_requirements(&lock);
        let version = |name: &str| {
            locked
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.version.clone())
                .unwrap_or_else(|| panic!("{name} is not in the lock"))
        };
        let major = |v: String| v.split('.').next().unwrap().parse::<u32>().unwrap();
        assert!(major(version("redis")) >= 8, "prefect-redis needs redis>=8");
        assert!(major(version("prefect")) >= 3);
        let pin = std::fs::read_to_string(root.join(PREFECT_REDIS_FILE)).unwrap();
        let pinned = super::super::python_lock::parse_requirements(&pin);
        assert_eq!(pinned.len(), 1);
        assert_eq!(pinned[0].name, "prefect-redis");
        assert!(pinned[0].hashes > 0);
    }
}
