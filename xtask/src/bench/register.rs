//! `cargo xtask bench`: register-flows against `prefect deploy --all`, in the same run, on one
//! local server. Prints both times and the ratios for: first registration, unchanged re-run,
//! one deployment changed; plus the xtask's start-up time and peak memory of both.
//! Numbers, not assertions: speed is checked here, never by timed tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xshell::cmd;

use crate::local::production_server::{self, ProductionServer, ProductionSpec};
use crate::local::server::{self, ServerGuard, ServerSpec};
use crate::local::venv;
use crate::prefect::api::PrefectClient;
use crate::sys::process;

/// The pool every generated deployment uses.
const POOL: &str = "bench-pool";

/// What to measure (the `bench` command's arguments).
pub struct BenchOptions {
    /// How many deployments the generated project has.
    pub deployments: usize,
    /// xtask runs per scenario (the median is reported); the Prefect CLI runs once.
    pub runs: usize,
    /// Seconds to wait before each measured command, before waiting for the server to go idle.
    pub settle: f64,
    /// Measure against this server instead of a throwaway local one.
    pub api_url: Option<String>,
    /// Measure against a throwaway production-shaped server (PostgreSQL + Redis, several API
    /// workers; [`crate::local::production_server`]) instead of the SQLite one.
    pub production_server: bool,
}

/// Runs every scenario with both engines and prints the report on stderr.
pub fn run(args: &BenchOptions) -> Result<()> {
    if args.deployments == 0 {
        bail!("--deployments must be at least 1");
    }
    if !(0.0..=600.0).contains(&args.settle) {
        bail!("--settle must be between 0 and 600 seconds");
    }
    let state = crate::project::state_dir().join("bench");
    let project_dir = state.join("project");
    write_project(&project_dir, args.deployments)?;

    eprintln!("==> building the release xtask (what runs in the image)");
    let xtask = build_release_xtask()?;
    let venv = venv::ensure(&crate::project::venv_dir(), &crate::project::repo_root())?;
    let prefect = venv.prefect();

    let server = match &args.api_url {
        Some(url) => {
            eprintln!(
                "==> using the Prefect server at {}",
                crate::sys::redact::mask_url_credentials(url)
            );
            BenchServer::External(url.trim_end_matches('/').to_string())
        }
        None if args.production_server => {
            let programs = production_server::find_programs().map_err(|reason| {
                anyhow::anyhow!("cannot start a production-shaped server: {reason}")
            })?;
            eprintln!("==> starting a throwaway production-shaped Prefect server");
            let server = production_server::start(&ProductionSpec {
                programs,
                venv: venv.clone(),
                root: crate::project::repo_root(),
                dir: state.join("production"),
                workers: production_server::DEFAULT_WORKERS,
            })?;
            eprintln!("    {}", server.describe());
            BenchServer::Production(Box::new(server))
        }
        None => {
            eprintln!("==> starting a throwaway Prefect server");
            BenchServer::start(&prefect, &state)?
        }
    };
    let client = PrefectClient::new(crate::prefect::api::ApiConfig::for_url(&server.api_url()))?;
    client
        .create_work_pool(POOL, "process")
        .context("creating the bench work pool")?;

    let env = [
        ("PREFECT_API_URL", server.api_url()),
        ("APP_DIR", project_dir.display().to_string()),
    ];
    let sh = process::shell()?;
    let prefect_cmd = || Command::from(cmd!(sh, "{prefect} --no-prompt deploy --all"));
    let xtask_cmd = || Command::from(cmd!(sh, "{xtask} register-flows"));

    let mut rows = Vec::new();
    // The Prefect CLI takes half a minute a run: once per scenario. xtask: the median of
    // several runs, so one scheduling hiccup on a loaded machine does not decide the ratio.
    for (engine, make, runs) in [
        (
            "prefect deploy --all",
            &prefect_cmd as &dyn Fn() -> Command,
            1,
        ),
        ("xtask register-flows", &xtask_cmd, args.runs.max(1)),
    ] {
        eprintln!("==> {engine} ({runs} run(s) per scenario)");
        let mut scenarios: [Vec<Measurement>; 3] = Default::default();
        for _ in 0..runs {
            delete_bench_deployments(&client)?;
            write_project(&project_dir, args.deployments)?;
            server.settle(args.settle);
            scenarios[0].push(
                measure(make(), &project_dir, &env)
                    .with_context(|| format!("{engine}: first registration"))?,
            );
            server.settle(args.settle);
            scenarios[1].push(
                measure(make(), &project_dir, &env)
                    .with_context(|| format!("{engine}: unchanged re-run"))?,
            );
            change_one_deployment(&project_dir)?;
            server.settle(args.settle);
            scenarios[2].push(
                measure(make(), &project_dir, &env)
                    .with_context(|| format!("{engine}: one change"))?,
            );
        }
        for (name, runs) in SCENARIOS.iter().zip(&scenarios) {
            eprintln!("    {name:<20} {}", spread(runs));
        }
        rows.push((engine, scenarios.map(median)));
    }
    delete_bench_deployments(&client)?;

    let startup = median_startup(&xtask)?;
    print_report(args.deployments, &server.describe(), &rows, startup);
    Ok(())
}

/// The server the bench measures against: its own (a fresh database every run, stopped when
/// dropped), or one given with `--api-url` (e.g. a Postgres-backed one), left running.
enum BenchServer {
    Own(ServerGuard),
    Production(Box<ProductionServer>),
    External(String),
}

impl BenchServer {
    fn start(prefect: &Path, state: &Path) -> Result<BenchServer> {
        let home = state.join("server");
        server::clear_home(&home)?;
        let spec = ServerSpec {
            prefect: prefect.to_path_buf(),
            home,
            log: state.join("server.log"),
            port: server::pick_free_port()?,
            ui: false,
            env: Vec::new(),
            workers: 1,
        };
        Ok(BenchServer::Own(ServerGuard::start(
            &spec,
            None,
            "bench server",
        )?))
    }

    /// For the report: which server the numbers are about.
    fn describe(&self) -> String {
        match self {
            BenchServer::Own(_) => "a throwaway local Prefect server: SQLite, one process".into(),
            BenchServer::Production(server) => format!(
                "a throwaway production-shaped Prefect server: {}",
                server.describe()
            ),
            BenchServer::External(url) => format!(
                "the Prefect server at {}",
                crate::sys::redact::mask_url_credentials(url)
            ),
        }
    }

    fn api_url(&self) -> String {
        match self {
            BenchServer::Own(server) => server.api_url(),
            BenchServer::Production(server) => server.api_url(),
            BenchServer::External(url) => url.clone(),
        }
    }
}

const SCENARIOS: [&str; 3] = ["first registration", "unchanged re-run", "one change"];

/// A server using less CPU than this (share of one core, over one second) is idle.
const IDLE_CPU_SHARE: f64 = 0.05;
/// Longest wait for the server to go idle; a server busy for longer is measured anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(90);

impl BenchServer {
    /// Waits at least `min_seconds`, then until the server is idle: it finishes the work the
    /// previous step started (deleting runs, its scheduler inserting ~100 runs per new
    /// deployment, persisting events) before the next command is timed, so that work is billed
    /// to neither engine.
    fn settle(&self, min_seconds: f64) {
        std::thread::sleep(Duration::from_secs_f64(min_seconds));
        let BenchServer::Own(server) = self else {
            return; // another machine's CPU cannot be watched: the minimum wait has to do
        };
        let started = Instant::now();
        let mut last = process_cpu_seconds(server.pid());
        while started.elapsed() < SETTLE_LIMIT {
            std::thread::sleep(Duration::from_secs(1));
            let now = process_cpu_seconds(server.pid());
            match (last, now) {
                (Some(before), Some(after)) if after - before < IDLE_CPU_SHARE => return,
                (None, _) | (_, None) => return, // no /proc: the minimum wait has to do
                _ => last = now,
            }
        }
        eprintln!("    (the server was still busy after {SETTLE_LIMIT:?}; measuring anyway)");
    }
}

/// CPU time (user + system) a process has used so far, from /proc.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_seconds_from_stat(&stat, clock_ticks_per_second())
}

/// Fields 14 and 15 (utime, stime) of /proc/<pid>/stat, in seconds. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from its closing parenthesis.
fn cpu_seconds_from_stat(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// `median s (min–max, n runs)`: the spread shows how much a number can be trusted.
fn spread(runs: &[Measurement]) -> String {
    let mut walls: Vec<f64> = runs.iter().map(|m| m.wall.as_secs_f64()).collect();
    walls.sort_by(f64::total_cmp);
    match walls.as_slice() {
        [] => "no runs".into(),
        [one] => format!("{one:>8.3} s"),
        all => format!(
            "{:>8.3} s  ({:.3}–{:.3}, {} runs)",
            all[all.len() / 2],
            all[0],
            all[all.len() - 1],
            all.len()
        ),
    }
}

fn median(mut runs: Vec<Measurement>) -> Measurement {
    runs.sort_by_key(|m| m.wall);
    runs[runs.len() / 2]
}

/// One timed run of a registration command.
#[derive(Debug, Clone, Copy, Default)]
struct Measurement {
    wall: Duration,
    /// Peak resident memory of the process, in KiB.
    max_rss_kib: i64,
}

fn measure(mut cmd: Command, cwd: &Path, env: &[(&str, String)]) -> Result<Measurement> {
    // Output goes to a file: a pipe read only after exit would fill up and stall the child.
    let log_path = std::env::temp_dir().join(format!("xtask-bench-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).context("cannot create the bench log")?;
    cmd.current_dir(cwd);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let run = process::run_measured(cmd, log)?;
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    if !run.success {
        let lines: Vec<&str> = output.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        bail!("the command failed:\n{tail}");
    }
    Ok(Measurement {
        wall: run.wall,
        max_rss_kib: run.max_rss_kib,
    })
}

fn median_startup(xtask: &Path) -> Result<Duration> {
    let sh = process::shell()?;
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let status = process::status(cmd!(sh, "{xtask} --version").ignore_stdout())?;
        times.push(started.elapsed());
        if !status.success() {
            bail!("xtask --version failed");
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn print_report(n: usize, server: &str, rows: &[(&str, [Measurement; 3])], startup: Duration) {
    let [(_, prefect), (_, xtask)] = rows else {
        return;
    };
    let targets = [10.0, 200.0, 100.0];
    println!("\nregister {n} deployments ({server}, both engines in the same run)\n");
    println!(
        "{:<20} {:>14} {:>14} {:>10} {:>8}",
        "scenario", "prefect (s)", "xtask (s)", "ratio", "target"
    );
    for (i, name) in SCENARIOS.iter().enumerate() {
        let ratio = prefect[i].wall.as_secs_f64() / xtask[i].wall.as_secs_f64().max(1e-6);
        let verdict = if ratio >= targets[i] { "ok" } else { "MISSED" };
        println!(
            "{:<20} {:>14.3} {:>14.3} {:>9.1}x {:>6.0}x {verdict}",
            name,
            prefect[i].wall.as_secs_f64(),
            xtask[i].wall.as_secs_f64(),
            ratio,
            targets[i]
        );
    }
    let peak = |m: &[Measurement; 3]| m.iter().map(|m| m.max_rss_kib).max().unwrap_or(0) / 1024;
    println!(
        "\npeak memory: prefect {} MiB, xtask {} MiB",
        peak(prefect),
        peak(xtask)
    );
    let ms = startup.as_secs_f64() * 1000.0;
    println!(
        "xtask --version: {ms:.1} ms (median of 21; target < 10 ms) {}",
        if ms < 10.0 { "ok" } else { "MISSED" }
    );
}

fn build_release_xtask() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let sh = process::shell()?;
    sh.change_dir(crate::project::repo_root());
    let build = cmd!(
        sh,
        "{cargo} build --release --quiet --package xtask --bin xtask"
    );
    let status = process::status(build).context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project::repo_root().join("target"));
    Ok(target.join("release/xtask"))
}

/// Deletes the bench's deployments (those of its flows), never anything else on the server.
fn delete_bench_deployments(client: &PrefectClient) -> Result<()> {
    let flows: Vec<String> = (0..FLOWS).map(flow_name).collect();
    for deployment in client.read_deployments(json!({"flows": {"name": {"any_": flows}}}))? {
        if let Some(id) = deployment["id"].as_str() {
            client.delete_deployment(id)?;
        }
    }
    Ok(())
}

/// Edits the description of the first deployment: the "one change" scenario.
fn change_one_deployment(dir: &Path) -> Result<()> {
    let path = dir.join("prefect.yaml");
    let text = std::fs::read_to_string(&path)?;
    let changed = text.replacen(
        "description: Bench deployment 0.",
        "description: Bench deployment 0, changed.",
        1,
    );
    if changed == text {
        bail!("the generated prefect.yaml has no deployment 0");
    }
    std::fs::write(path, changed)?;
    Ok(())
}

/// Flow files in the generated project.
const FLOWS: usize = 5;

fn flow_name(f: usize) -> String {
    format!("bench-flow-{f}")
}

/// Writes the generated project: 5 flow files and a prefect.yaml with `n` deployments.
fn write_project(dir: &Path, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join("flows"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, text) in generate_project(n) {
        std::fs::write(dir.join(&path), text).with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}

/// The bench project as (relative path, contents): pure, so it is unit-tested.
pub(crate) fn generate_project(n: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for f in 0..FLOWS {
        files.push((
            format!("flows/bench_{f}.py"),
            format!(
                r#"from typing import Optional

from prefect import flow


@flow(name="{name}")
def bench_{f}(source: str = "s3://bucket", limit: int = 10, ratio: float = 0.5, tags: list[str] = ["a"], note: Optional[str] = None):
    """Bench flow {f}.

    Args:
        source: Where to read from.
        limit: How many items.
    """
    return limit
"#,
                name = flow_name(f)
            ),
        ));
    }
    let mut yaml = String::from("# Generated by `cargo xtask bench`.\npull:\n  - prefect.deployments.steps.set_working_directory:\n      directory: \"{{ $APP_DIR }}\"\n\ndeployments:\n");
    for i in 0..n {
        let f = i % FLOWS;
        let schedule = if i % 2 == 0 {
            format!(
                "      - cron: \"{} {} * * *\"\n        timezone: UTC\n",
                i % 60,
                i % 24
            )
        } else {
            format!("      - interval: {}\n", 600 + i * 60)
        };
        yaml.push_str(&format!(
            "  - name: bench-{i}\n    description: Bench deployment {i}.\n    entrypoint: flows/bench_{f}.py:bench_{f}\n    tags: [bench, group-{g}]\n    parameters:\n      limit: {i}\n    work_pool:\n      name: {POOL}\n      job_variables:\n        env:\n          BENCH_INDEX: \"{i}\"\n    schedules:\n{schedule}\n",
            g = i % 3
        ));
    }
    files.push(("prefect.yaml".into(), yaml));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_n_deployments_over_five_flows() {
        let files = generate_project(51);
        assert_eq!(files.len(), 6);
        let yaml = &files.last().unwrap().1;
        assert_eq!(yaml.matches("  - name: bench-").count(), 51);
        assert!(yaml.contains("description: Bench deployment 0."));
        assert!(yaml.contains("entrypoint: flows/bench_4.py:bench_4"));
        assert!(files[0].1.contains("def bench_0("));
        assert!(files[0].1.contains("@flow(name=\"bench-flow-0\")"));
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (prefect (x) y) S 1 4242 4242 0 -1 4194560 9 0 0 0 250 125 0 0 20 0 12 0";
        assert_eq!(cpu_seconds_from_stat(stat, 100.0), Some(3.75));
        assert_eq!(cpu_seconds_from_stat("garbage", 100.0), None);
        assert_eq!(cpu_seconds_from_stat("1 (x) S 1 2", 100.0), None);
        assert!(process_cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn spread_shows_median_and_range() {
        let m = |ms: u64| Measurement {
            wall: Duration::from_millis(ms),
            max_rss_kib: 0,
        };
        assert_eq!(spread(&[]), "no runs");
        assert_eq!(spread(&[m(1500)]), "   1.500 s");
        assert_eq!(
            spread(&[m(3000), m(1000), m(2000)]),
            "   2.000 s  (1.000–3.000, 3 runs)"
        );
    }
}
