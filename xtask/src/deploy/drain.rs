//! Draining the Prefect workers before `fly deploy` replaces their Machines, so that no flow run
//! in progress is killed (docs/deploy.md says why this mechanism):
//!
//! 1. pause the work pools the app's workers poll (fly.toml `[processes]`): a paused pool hands
//!    no scheduled run to any worker, and runs scheduled meanwhile wait on the server;
//! 2. wait, with a countdown and the list of runs, until no run of those pools is in progress,
//!    or the bound is reached (then proceed or abort, as told: nothing is asked);
//! 3. after `fly deploy`, whatever its outcome, resume the pools: the new workers pick up what
//!    was scheduled meanwhile.
//!
//! The pause is journaled on the server before it is made: a Prefect variable (the pause
//! marker, tagged [`MARKER_TAG`]) records which deploy paused which pool. A deploy that dies
//! (SIGKILL, a second Ctrl-C) leaves the marker behind, so the next deploy knows the pause is
//! xtask's own and resumes it, and `check-secrets` reports it; a pool someone paused by hand
//! has no marker and is left paused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::prefect::api::{ApiConfig, ApiError, PrefectClient};
use crate::sync::engine::interrupt_flag;
use crate::sys::env_vars::EnvVars;
use crate::sys::stages::{format_duration, Pipeline};

/// The tag of every pause marker (how `check-secrets` finds them).
pub const MARKER_TAG: &str = "xtask-drain";

/// Flow-run state types whose process lives on a worker's Machine and dies with it.
const IN_PROGRESS: &[&str] = &["PENDING", "RUNNING", "CANCELLING", "PAUSED"];

/// After the pause, a worker poll already answered may still start the runs it was handed;
/// they show up as PENDING within moments. "Nothing in progress" counts only after this.
const SETTLE: Duration = Duration::from_secs(5);

/// How often the runs in progress are read.
const POLL: Duration = Duration::from_secs(2);

/// How often the countdown is printed while nothing changes (CI logs have no carriage return).
const COUNTDOWN_EVERY: Duration = Duration::from_secs(15);

/// What to do when runs are still in progress at the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrainTimeout {
    /// Roll anyway: the runs still in progress are killed with their Machines.
    Proceed,
    /// Deploy nothing; resume the pools.
    Abort,
}

/// How `deploy` drains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainOptions {
    /// False with `--no-drain`: today's behaviour (only a pause left by a killed deploy is resumed).
    pub enabled: bool,
    /// `--drain-timeout` (a Go duration); default fly.toml `[env] XTASK_DRAIN_TIMEOUT`, else 10m.
    pub timeout: Option<String>,
    pub on_timeout: OnDrainTimeout,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            enabled: true,
            timeout: None,
            on_timeout: OnDrainTimeout::Abort,
        }
    }
}

/// The bound when neither `--drain-timeout` nor fly.toml sets one.
pub const DEFAULT_DRAIN_TIMEOUT: &str = "10m";

/// The drain bound: the flag, else fly.toml's, else [`DEFAULT_DRAIN_TIMEOUT`]. Never unbounded.
pub(crate) fn drain_timeout(flag: Option<&str>, fly_toml: Option<&str>) -> Result<Duration> {
    let text = flag.or(fly_toml).unwrap_or(DEFAULT_DRAIN_TIMEOUT);
    match crate::fly::parse_go_duration(text) {
        Ok(Some(limit)) => Ok(limit),
        Ok(None) => bail!("drain timeout `none`: the drain must be bounded (e.g. 30m)"),
        Err(err) => bail!("drain timeout: {err}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The pause marker (pure)

/// What a pause marker records: enough to say who paused the pool and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseMarker {
    pub pool: String,
    pub app: String,
    pub host: String,
    pub pid: u32,
    pub paused_at: String,
}

impl PauseMarker {
    /// `paused by deploy of <app> (pid N on HOST) at T`.
    pub fn describe(&self) -> String {
        format!(
            "paused by a deploy of {} (pid {} on {}) at {}",
            self.app, self.pid, self.host, self.paused_at
        )
    }
}

/// The marker variable of `pool`: `xtask-drain-<pool>` in the characters Prefect allows in a
/// variable name (lowercase letters, digits, `-`, `_`); the exact pool name is in the value.
pub(crate) fn marker_name(pool: &str) -> String {
    let mut name = format!("{MARKER_TAG}-{}", crate::prefect::variable_slug(pool));
    name.truncate(255);
    name
}

/// The markers among variables read by tag; variables that are no marker are ignored.
pub(crate) fn parse_markers(variables: &[Value]) -> Vec<PauseMarker> {
    variables
        .iter()
        .filter_map(|v| serde_json::from_value(v.get("value")?.clone()).ok())
        .collect()
}

/// Every pause marker on the server (for `check-secrets` and the next deploy).
pub fn read_markers(client: &PrefectClient) -> Result<Vec<PauseMarker>, ApiError> {
    Ok(parse_markers(&client.read_variables_tagged(MARKER_TAG)?))
}

// ---------------------------------------------------------------------------------------------
// Runs in progress (pure)

/// A flow run whose process lives on a worker of a drained pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInProgress {
    pub id: String,
    pub name: String,
    pub state: String,
    pub pool: String,
}

/// The `/flow_runs/filter` body of the runs in progress on `pools`.
pub(crate) fn in_progress_filter(pools: &[String]) -> Value {
    json!({
        "flow_runs": {"state": {"type": {"any_": IN_PROGRESS}}},
        "work_pools": {"name": {"any_": pools}},
        "sort": "ID_DESC",
    })
}

/// The runs in progress among `runs` (flow runs as the server returns them). A run paused
/// with `reschedule` (suspended) has left its worker, so it is not waited for.
pub(crate) fn runs_in_progress(runs: &[Value]) -> Vec<RunInProgress> {
    let text = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    runs.iter()
        .filter(|r| {
            r.pointer("/state/state_details/pause_reschedule")
                .and_then(Value::as_bool)
                != Some(true)
        })
        .map(|r| RunInProgress {
            id: text(r, "/id"),
            name: text(r, "/name"),
            state: text(r, "/state/name"),
            pool: text(r, "/work_pool_name"),
        })
        .collect()
}

/// One line per run, indented, for the log.
pub(crate) fn render_runs(runs: &[RunInProgress]) -> String {
    runs.iter()
        .map(|r| format!("      - {} ({}) {} on {}\n", r.name, r.id, r.state, r.pool))
        .collect()
}

/// Where a drain stands after one look at the runs in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainStep {
    Wait,
    Drained,
    TimedOut,
}

/// The drain's decision (pure): drained once nothing is in progress and the settle time has
/// passed since the pause; timed out at the bound.
pub(crate) fn drain_step(in_progress: usize, elapsed: Duration, bound: Duration) -> DrainStep {
    if in_progress == 0 && elapsed >= SETTLE.min(bound) {
        DrainStep::Drained
    } else if elapsed >= bound {
        DrainStep::TimedOut
    } else {
        DrainStep::Wait
    }
}

// ---------------------------------------------------------------------------------------------
// Against the server

/// Who is pausing: written into the marker.
#[derive(Debug, Clone)]
pub struct Pauser {
    pub app: String,
    pub host: String,
    pub pid: u32,
}

impl Pauser {
    /// This process, deploying `app`.
    pub fn this_process(app: &str) -> Pauser {
        Pauser {
            app: app.to_string(),
            host: crate::sys::process::hostname(),
            pid: std::process::id(),
        }
    }

    fn marker(&self, pool: &str) -> PauseMarker {
        PauseMarker {
            pool: pool.to_string(),
            app: self.app.clone(),
            host: self.host.clone(),
            pid: self.pid,
            paused_at: jiff::Timestamp::now().to_string(),
        }
    }
}

/// How a pool stands before the drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PoolStanding {
    /// Not paused: the drain pauses it and resumes it.
    Open,
    /// Paused by a deploy that did not finish (its marker is there): resumed by this one.
    LeftPaused(PauseMarker),
    /// Paused by someone else (no marker): left paused; its runs are still waited for.
    PausedByHand,
    /// No such pool on the server: nothing runs there.
    Missing,
}

fn standing(
    client: &PrefectClient,
    pool: &str,
    markers: &[PauseMarker],
) -> Result<PoolStanding, ApiError> {
    let Some(found) = client.read_work_pool(pool)? else {
        return Ok(PoolStanding::Missing);
    };
    let paused = found.get("is_paused").and_then(Value::as_bool) == Some(true);
    let marker = markers.iter().find(|m| m.pool == pool);
    Ok(match (paused, marker) {
        (false, _) => PoolStanding::Open,
        (true, Some(marker)) => PoolStanding::LeftPaused(marker.clone()),
        (true, None) => PoolStanding::PausedByHand,
    })
}

/// Markers whose pool is open again (resumed, but the marker delete was lost): removed.
fn forget_stale_markers(
    client: &PrefectClient,
    pools: &[String],
    markers: &[PauseMarker],
) -> Result<(), ApiError> {
    for pool in pools {
        if markers.iter().any(|m| &m.pool == pool) {
            if let Some(found) = client.read_work_pool(pool)? {
                if found.get("is_paused").and_then(Value::as_bool) != Some(true) {
                    client.delete_variable(&marker_name(pool))?;
                }
            }
        }
    }
    Ok(())
}

/// `--no-drain` and `--dry-run`: reports pools a killed deploy left paused and (unless
/// `dry_run`) resumes them. Returns what it printed, one line each.
pub(crate) fn resume_left_paused(
    client: &PrefectClient,
    pools: &[String],
    dry_run: bool,
) -> Result<Vec<String>> {
    let markers = read_markers(client)?;
    let mut lines = Vec::new();
    for pool in pools {
        if let PoolStanding::LeftPaused(marker) = standing(client, pool, &markers)? {
            if dry_run {
                lines.push(format!(
                    "work pool {pool} was left paused ({}); the deploy would resume it",
                    marker.describe()
                ));
            } else {
                resume_pool(client, pool)?;
                lines.push(format!(
                    "work pool {pool} was left paused ({}); resumed",
                    marker.describe()
                ));
            }
        }
    }
    if !dry_run {
        forget_stale_markers(client, pools, &markers)?;
    }
    Ok(lines)
}

/// Resumes `pool`, then removes its marker (in that order: a marker without a pause is
/// harmless and cleaned up later; a pause without a marker would look deliberate).
fn resume_pool(client: &PrefectClient, pool: &str) -> Result<(), ApiError> {
    client.set_work_pool_paused(pool, false)?;
    client.delete_variable(&marker_name(pool))
}

/// How long resuming the pools may take in all, retries included.
const RESUME_BUDGET: Duration = Duration::from_secs(60);

/// The pools a drain paused (or took over from a killed deploy). They are resumed by
/// [`PausedPools::resume`], or, should that never be called (an early return, a panic), when
/// this is dropped. A SIGKILL skips both; the markers then tell the next deploy.
pub(crate) struct PausedPools {
    client: PrefectClient,
    pools: Vec<String>,
}

impl PausedPools {
    /// Resumes every pool, trying all of them; prints one line each.
    pub(crate) fn resume(mut self) -> Result<()> {
        self.resume_all()
    }

    fn resume_all(&mut self) -> Result<()> {
        // Resuming must still retry after Ctrl-C (the client ends retry pauses on an interruption
        // unless a deadline is set), within a bound of its own.
        self.client
            .set_deadline(Some(Instant::now() + RESUME_BUDGET));
        let mut failed = Vec::new();
        for pool in std::mem::take(&mut self.pools) {
            match resume_pool(&self.client, &pool) {
                Ok(()) => eprintln!("    work pool {pool} resumed"),
                Err(err) => {
                    eprintln!("    work pool {pool} could NOT be resumed: {err}");
                    failed.push(pool);
                }
            }
        }
        self.client.set_deadline(None);
        if !failed.is_empty() {
            bail!(
                "work pool(s) {} are still paused: no flow run starts until they are resumed \
                 (`prefect work-pool resume NAME`, or the next deploy does it)",
                failed.join(", ")
            );
        }
        Ok(())
    }
}

impl Drop for PausedPools {
    fn drop(&mut self) {
        if !self.pools.is_empty() {
            if let Err(err) = self.resume_all() {
                eprintln!("error: {err:#}");
            }
        }
    }
}

/// What to drain and how long to wait.
pub(crate) struct DrainRequest<'a> {
    pub pools: &'a [String],
    pub pauser: &'a Pauser,
    pub bound: Duration,
    pub on_timeout: OnDrainTimeout,
    /// Set by Ctrl-C / SIGTERM: stop waiting, resume, fail.
    pub cancel: &'a AtomicBool,
}

/// `deploy --dry-run`: how each pool stands and the runs the drain would wait for. Reads only.
pub(crate) fn preview(client: &PrefectClient, req: &DrainRequest) -> Result<()> {
    for line in resume_left_paused(client, req.pools, true)? {
        eprintln!("    {line}");
    }
    let runs = runs_in_progress(&client.read_flow_runs(in_progress_filter(req.pools))?);
    eprintln!(
        "    would pause {} and wait up to {} ({} at the bound) for {} run(s) in progress{}",
        req.pools.join(", "),
        format_duration(req.bound),
        on_timeout_word(req.on_timeout),
        runs.len(),
        if runs.is_empty() { "" } else { ":" }
    );
    eprint!("{}", render_runs(&runs));
    Ok(())
}

fn on_timeout_word(on_timeout: OnDrainTimeout) -> &'static str {
    match on_timeout {
        OnDrainTimeout::Proceed => "proceed",
        OnDrainTimeout::Abort => "abort",
    }
}

/// Pauses the pools (marker first), then waits until no run is in progress on them. On success
/// (drained, or timed out with `Proceed`) the pools stay paused in the returned guard; on abort,
/// interruption or error they are resumed before this returns.
pub(crate) fn drain(client: &PrefectClient, req: &DrainRequest) -> Result<PausedPools> {
    let markers = read_markers(client)?;
    let mut paused = PausedPools {
        client: client.clone(),
        pools: Vec::new(),
    };
    for pool in req.pools {
        match standing(client, pool, &markers)? {
            PoolStanding::Missing => {
                eprintln!("    work pool {pool} does not exist: nothing to drain there");
                continue;
            }
            PoolStanding::PausedByHand => {
                eprintln!("    work pool {pool} is already paused (not by a deploy): left paused");
                continue;
            }
            PoolStanding::LeftPaused(marker) => eprintln!(
                "    work pool {pool} was left paused ({}); this deploy takes it over and resumes it",
                marker.describe()
            ),
            PoolStanding::Open => {}
        }
        // The journal entry first: if this process dies after the pause, the marker says so.
        let marker = serde_json::to_value(req.pauser.marker(pool))?;
        client.put_variable(&marker_name(pool), &marker, &[MARKER_TAG])?;
        paused.pools.push(pool.clone());
        client.set_work_pool_paused(pool, true)?;
        eprintln!("    work pool {pool} paused: no worker picks up new runs");
    }
    let runs = wait_for_runs(client, req)?;
    if runs.is_empty() {
        eprintln!("    drained: no run in progress");
        return Ok(paused);
    }
    match req.on_timeout {
        OnDrainTimeout::Proceed => {
            eprintln!(
                "    warning: {} run(s) still in progress after {}; proceeding \
                 (--on-drain-timeout proceed): they will be killed with their Machines",
                runs.len(),
                format_duration(req.bound)
            );
            Ok(paused)
        }
        OnDrainTimeout::Abort => {
            paused.resume()?;
            bail!(
                "{} run(s) still in progress after {} (--drain-timeout); nothing was deployed \
                 and the pools are resumed. Retry later, raise --drain-timeout, or pass \
                 --on-drain-timeout proceed:\n{}",
                runs.len(),
                format_duration(req.bound),
                render_runs(&runs).trim_end()
            )
        }
    }
}

/// Polls the runs in progress until the drain is done or the bound is reached; returns the
/// runs still in progress (empty when drained). Fails when interrupted.
fn wait_for_runs(client: &PrefectClient, req: &DrainRequest) -> Result<Vec<RunInProgress>> {
    let started = Instant::now();
    let mut shown: Option<(Vec<String>, Instant)> = None;
    loop {
        if req.cancel.load(Ordering::SeqCst) {
            bail!("interrupted while draining; the pools are resumed, nothing was deployed");
        }
        let runs = runs_in_progress(&client.read_flow_runs(in_progress_filter(req.pools))?);
        let elapsed = started.elapsed();
        match drain_step(runs.len(), elapsed, req.bound) {
            DrainStep::Drained => return Ok(Vec::new()),
            DrainStep::TimedOut => return Ok(runs),
            DrainStep::Wait => {}
        }
        let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
        let changed = shown.as_ref().map_or(true, |(before, _)| *before != ids);
        let due = shown
            .as_ref()
            .map_or(true, |(_, at)| at.elapsed() >= COUNTDOWN_EVERY);
        if changed || due {
            let left = req.bound.saturating_sub(elapsed);
            eprintln!(
                "    waiting for {} run(s) in progress; {} left",
                runs.len(),
                format_duration(left)
            );
            if changed {
                eprint!("{}", render_runs(&runs));
            }
            shown = Some((ids, Instant::now()));
        }
        // Sleep in short steps so Ctrl-C is noticed quickly.
        let until = Instant::now() + POLL.min(req.bound.saturating_sub(elapsed));
        while Instant::now() < until && !req.cancel.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The name of the stage in `deploy`'s pipeline.
const STAGE: &str = "drain workers";

/// What the `drain workers` stage needs.
pub(crate) struct StageInput<'a> {
    /// The pools the app's workers poll ([`crate::fly::FlyToml::worker_pools`]).
    pub pools: &'a [String],
    pub options: &'a DrainOptions,
    pub bound: Duration,
    pub app: &'a str,
    pub dry_run: bool,
    /// The environment naming the server (PREFECT_API_URL and credentials).
    pub env: &'a EnvVars,
    pub verbose: bool,
}

/// `deploy`'s `drain workers` stage. Returns the paused pools, which the caller resumes after
/// `fly deploy` (or which resume themselves when dropped).
pub(crate) fn run_stage(
    pipeline: &mut Pipeline,
    input: &StageInput,
) -> Result<Option<PausedPools>> {
    if input.pools.is_empty() {
        pipeline.skip(
            STAGE,
            "fly.toml runs no Prefect worker (no `worker start --pool P` in [processes])",
        );
        return Ok(None);
    }
    let client = &PrefectClient::new(ApiConfig::from_vars(input.env)?)?;
    client.set_verbose(input.verbose);
    if !input.options.enabled {
        pipeline.skip(STAGE, "--no-drain");
        // A pause a killed deploy left behind is undone all the same.
        let lines = resume_left_paused(client, input.pools, input.dry_run)
            .context("cannot resume the work pools a killed deploy left paused")?;
        for line in lines {
            eprintln!("    {line}");
        }
        return Ok(None);
    }
    let pauser = Pauser::this_process(input.app);
    let cancel = interrupt_flag();
    // Ctrl-C/SIGTERM ends a retry pause at once: the drain stops and resumes the pools.
    client.set_interrupt(cancel.clone());
    let request = DrainRequest {
        pools: input.pools,
        pauser: &pauser,
        bound: input.bound,
        on_timeout: input.options.on_timeout,
        cancel: &cancel,
    };
    pipeline.run(STAGE, || {
        if input.dry_run {
            preview(client, &request)?;
            return Ok(None);
        }
        drain(client, &request).map(Some)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_are_valid_variable_names() {
        assert_eq!(
            marker_name("captionacc-workers-prod"),
            "xtask-drain-captionacc-workers-prod"
        );
        assert_eq!(marker_name("My Pool/1"), "xtask-drain-my-pool-1");
        assert_eq!(marker_name(&"x".repeat(400)).len(), 255);
    }

    #[test]
    fn markers_round_trip_and_others_are_ignored() {
        let marker = PauseMarker {
            pool: "p".into(),
            app: "a".into(),
            host: "h".into(),
            pid: 7,
            paused_at: "2026-01-01T00:00:00Z".into(),
        };
        let variables = [
            json!({"name": "xtask-drain-p", "value": serde_json::to_value(&marker).unwrap()}),
            json!({"name": "xtask-drain-q", "value": "not a marker"}),
        ];
        assert_eq!(parse_markers(&variables), std::slice::from_ref(&marker));
        assert_eq!(
            marker.describe(),
            "paused by a deploy of a (pid 7 on h) at 2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn suspended_runs_are_not_waited_for() {
        let runs = [
            json!({"id": "1", "name": "brave-fox", "work_pool_name": "p",
                   "state": {"type": "RUNNING", "name": "Running"}}),
            json!({"id": "2", "name": "calm-owl", "work_pool_name": "p",
                   "state": {"type": "PAUSED", "name": "Suspended",
                             "state_details": {"pause_reschedule": true}}}),
            json!({"id": "3", "name": "shy-elk", "work_pool_name": "p",
                   "state": {"type": "PAUSED", "name": "Paused",
                             "state_details": {"pause_reschedule": false}}}),
        ];
        let names: Vec<String> = runs_in_progress(&runs)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["brave-fox", "shy-elk"]);
        assert_eq!(
            render_runs(&runs_in_progress(&runs[..1])),
            "      - brave-fox (1) Running on p\n"
        );
    }

    #[test]
    fn the_filter_asks_for_every_state_a_worker_is_busy_with() {
        let filter = in_progress_filter(&["p".into()]);
        assert_eq!(
            filter["flow_runs"]["state"]["type"]["any_"],
            json!(["PENDING", "RUNNING", "CANCELLING", "PAUSED"])
        );
        assert_eq!(filter["work_pools"]["name"]["any_"], json!(["p"]));
    }

    #[test]
    fn drained_only_after_settling_and_timed_out_at_the_bound() {
        let bound = Duration::from_secs(60);
        let s = Duration::from_secs;
        assert_eq!(drain_step(0, s(1), bound), DrainStep::Wait);
        assert_eq!(drain_step(0, SETTLE, bound), DrainStep::Drained);
        assert_eq!(drain_step(2, s(30), bound), DrainStep::Wait);
        assert_eq!(drain_step(2, s(60), bound), DrainStep::TimedOut);
        assert_eq!(drain_step(0, s(61), bound), DrainStep::Drained);
        // A bound shorter than the settle time is still honoured.
        assert_eq!(drain_step(0, s(1), s(1)), DrainStep::Drained);
        assert_eq!(drain_step(1, s(1), s(1)), DrainStep::TimedOut);
    }

    #[test]
    fn the_drain_timeout_comes_from_the_flag_then_fly_toml_and_is_bounded() {
        let m = |n: u64| Duration::from_secs(n * 60);
        assert_eq!(drain_timeout(None, None).unwrap(), m(10));
        assert_eq!(drain_timeout(None, Some("30m")).unwrap(), m(30));
        assert_eq!(drain_timeout(Some("2m"), Some("30m")).unwrap(), m(2));
        let err = drain_timeout(Some("none"), None).unwrap_err().to_string();
        assert!(err.contains("bounded"), "{err}");
        assert!(drain_timeout(Some("soon"), None).is_err());
    }
}
