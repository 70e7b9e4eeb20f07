//! One register-flows run: load the desired state, read the server, plan, and (unless only
//! planning or checking) apply until the server matches, within a few rounds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::prefect::api::{ApiConfig, PrefectClient};
use crate::project::Project;
use crate::sync::apply::{self, ApplyOptions, ApplyReport};
use crate::sync::desired::DesiredState;
use crate::sync::load;
use crate::sync::lock;
use crate::sync::plan::{self, Plan, PlanItem, ServerState};
use crate::sync::release::{self, Release};
use crate::sync::render;
use crate::sync::selection::Selection;
use crate::sync::server_state::read_server_state;
use crate::sys::env_vars::EnvVars;
use crate::sys::redact::redact;
use crate::sys::report::code;

/// Rounds of "apply, read back, re-plan" before giving up on a server that keeps changing under us
/// (another register-flows run writing at the same time).
const MAX_ROUNDS: usize = 3;

/// How many writes may run at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: u16 = 8;

/// What a sync may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// Plan against the live server; write nothing.
    pub dry_run: bool,
    /// Drift check: plan, write nothing, and exit 2 when the server differs.
    pub check: bool,
    /// Delete deployments this project created earlier that are no longer in the yaml.
    pub prune: bool,
    /// Writes in flight at most.
    pub concurrency: u16,
    /// Run the build/push steps (false: show them and keep their output placeholders as
    /// written; `deploy --dry-run`, which runs nothing).
    pub run_steps: bool,
    /// `-n/--name`: only these deployments are planned, checked, written and pruned.
    pub selection: Selection,
    /// The release this run registers, recorded on every deployment (the release command reads
    /// it from the image; deploy's checks know the image they shipped). None: the server's
    /// record is left as it is.
    pub release: Option<Release>,
    /// How long an apply waits for another run of the project to release its lock.
    pub lock_wait: Duration,
}

impl Default for SyncOptions {
    /// A plain `register-flows`: apply, no prune.
    fn default() -> Self {
        SyncOptions {
            dry_run: false,
            check: false,
            prune: false,
            concurrency: DEFAULT_CONCURRENCY,
            run_steps: true,
            selection: Selection::default(),
            release: None,
            lock_wait: lock::LOCK_WAIT,
        }
    }
}

impl SyncOptions {
    /// `check`, `dry-run` or `apply`, as the output and the JSON document name it.
    pub(crate) fn mode(&self) -> &'static str {
        if self.check {
            "check"
        } else if self.dry_run {
            "dry-run"
        } else {
            "apply"
        }
    }
}

/// What one sync did.
pub struct SyncOutcome {
    /// The plan of the first round (what the server differed in).
    pub plan: Plan,
    /// The apply report of the round that failed, or of the last round.
    pub report: Option<ApplyReport>,
    /// Rounds applied (0 for dry-run/check or an unchanged server).
    pub rounds: usize,
    /// True when, after the last round, the server still differed (a concurrent writer).
    pub unconverged: Option<Plan>,
    pub read: Duration,
    pub write: Duration,
    pub requests: usize,
    /// Of `requests`, those sent again after a retryable answer.
    pub retries: usize,
    pub writes_planned: usize,
}

impl SyncOutcome {
    pub fn failed(&self) -> bool {
        self.report.as_ref().is_some_and(|r| !r.succeeded()) || self.unconverged.is_some()
    }

    pub fn exit_code(&self, options: &SyncOptions) -> u8 {
        if self.failed() {
            code::ERROR
        } else if options.check && self.plan.has_changes() {
            code::DRIFT
        } else {
            code::OK
        }
    }
}

/// Reads the server, plans, and (unless `dry_run`/`check`) applies until the server matches.
pub fn sync(
    client: &PrefectClient,
    desired: &DesiredState,
    options: &SyncOptions,
    cancel: &AtomicBool,
) -> Result<SyncOutcome> {
    let read_started = Instant::now();
    let server = read_server_state(client, desired, options.prune)?;
    let first = selected_plan(desired, &server, options);
    check_every_pattern_matched(desired, &server, &first, options)?;
    let mut read = read_started.elapsed();
    let mut outcome = SyncOutcome {
        writes_planned: first.write_count(),
        plan: first,
        report: None,
        rounds: 0,
        unconverged: None,
        read,
        write: Duration::ZERO,
        requests: 0,
        retries: 0,
    };
    if options.dry_run || options.check || !outcome.plan.has_changes() {
        outcome.requests = client.request_count();
        outcome.retries = client.retry_count();
        return Ok(outcome);
    }
    // One writing run per project at a time; a run that had to wait plans again against what
    // the other run left.
    let lock = lock::acquire(
        client,
        &desired.owner,
        &crate::sys::process::hostname(),
        options.lock_wait,
        cancel,
    )?;
    if lock.waited {
        let again = Instant::now();
        let server = read_server_state(client, desired, options.prune)?;
        outcome.plan = selected_plan(desired, &server, options);
        outcome.writes_planned = outcome.plan.write_count();
        read += again.elapsed();
        outcome.read = read;
        if !outcome.plan.has_changes() {
            drop(lock);
            outcome.requests = client.request_count();
            outcome.retries = client.retry_count();
            return Ok(outcome);
        }
    }
    let apply_options = ApplyOptions {
        concurrency: usize::from(options.concurrency),
        cancel,
        owner: &desired.owner,
    };
    let mut current = outcome.plan.clone();
    // Every round's journal: a run is all or nothing, so a failing or unconverged round undoes
    // the earlier rounds' writes too.
    let mut journals = Vec::new();
    let mut first_status = None;
    loop {
        let write_started = Instant::now();
        let (mut report, journal) = apply::apply(client, &current, &apply_options);
        journals.push(journal);
        outcome.write += write_started.elapsed();
        outcome.rounds += 1;
        let failed = !report.succeeded();
        // The report speaks of the first round's plan: a later round's items are different.
        match &first_status {
            None => first_status = Some(report.status.clone()),
            Some(status) => report.status = status.clone(),
        }
        outcome.report = Some(report);
        if failed {
            break;
        }
        // Read back what we touched: proves the server matches and catches a concurrent run's writes.
        let again = Instant::now();
        let server = read_server_state(client, desired, options.prune)?;
        let residual = selected_plan(desired, &server, options);
        read += again.elapsed();
        if !residual.has_changes() {
            break;
        }
        if outcome.rounds >= MAX_ROUNDS || cancel.load(Ordering::SeqCst) {
            outcome.unconverged = Some(residual);
            break;
        }
        current = residual;
    }
    if outcome.failed() {
        let write_started = Instant::now();
        let steps = apply::rollback(
            client,
            &journals,
            Instant::now() + apply::ROLLBACK_BUDGET,
            &|step| eprintln!("{}", redact(&render::rollback_line(step))),
        );
        outcome.write += write_started.elapsed();
        if let Some(report) = outcome.report.as_mut() {
            report.rollback = steps;
        }
    }
    // Released before the counts are taken: its requests are part of this run's.
    drop(lock);
    outcome.read = read;
    outcome.requests = client.request_count();
    outcome.retries = client.retry_count();
    Ok(outcome)
}

/// The plan, with `--prune`'s deletions kept inside the `-n` selection (the desired state holds
/// only the selected deployments, so every other owned deployment looks "no longer declared").
/// Each deployment's release tag is the run's release, or the one the server records.
fn selected_plan(desired: &DesiredState, server: &ServerState, options: &SyncOptions) -> Plan {
    let desired = release::with_release(desired, server, options.release.as_ref());
    let mut plan = plan::plan(&desired, server, options.prune);
    if options.prune && !options.selection.is_all() {
        // `-n` selects deployments: pools, limits and variables are planned, never pruned.
        let pruning = std::mem::take(&mut plan.resources);
        plan.warnings.retain(|w| !pruning.warnings.contains(w));
        plan.resources = crate::sync::resources::plan(
            &desired.resources,
            &server.resources,
            &desired.owner,
            false,
            &Default::default(),
        );
        plan.warnings
            .extend(plan.resources.warnings.iter().cloned());
    }
    plan.items.retain(|item| match item {
        PlanItem::Delete(have) => options.selection.selects(
            have.raw
                .get("entrypoint")
                .and_then(serde_json::Value::as_str),
            &have.name,
        ),
        _ => true,
    });
    plan
}

/// With `--prune`, a `-n` pattern may name only deployments that are gone from the yaml (load let
/// it through); one that names nothing at all, in the yaml or among this project's deployments on
/// the server, is an error before any write, listing what this project has on the server.
fn check_every_pattern_matched(
    desired: &DesiredState,
    server: &ServerState,
    plan: &Plan,
    options: &SyncOptions,
) -> Result<()> {
    let unmatched: Vec<String> = options
        .selection
        .patterns()
        .iter()
        .filter(|pattern| {
            let single = Selection::new(vec![(*pattern).clone()]);
            !plan.items.iter().any(|item| {
                let entrypoint = match item {
                    PlanItem::Delete(have) => have.raw.get("entrypoint"),
                    PlanItem::Create(want) => want.fields.get("entrypoint"),
                    PlanItem::Update(update) => update.desired.fields.get("entrypoint"),
                    PlanItem::Unchanged { desired, .. } => desired.fields.get("entrypoint"),
                };
                single.selects(entrypoint.and_then(serde_json::Value::as_str), item.name())
            })
        })
        .map(|pattern| format!("{:?}", pattern.to_string()))
        .collect();
    if unmatched.is_empty() {
        return Ok(());
    }
    let mut owned: Vec<String> = server
        .deployments
        .iter()
        .filter(|have| have.owner.as_ref() == Some(&desired.owner))
        .map(|have| have.full_name())
        .collect();
    owned.sort();
    anyhow::bail!(
        "--name {} matches no deployment in {} and none this project registered on the server ({}); nothing was written",
        unmatched.join(", "),
        desired.owner.prefect_file,
        if owned.is_empty() {
            "it has none".to_string()
        } else {
            format!("it has: {}", owned.join(", "))
        }
    )
}

/// How long each phase of a run took.
pub struct Timings {
    pub validate: Duration,
    pub read: Duration,
    pub write: Duration,
    pub total: Duration,
}

/// A whole run: what the yaml asked for, what the sync did, and how long it took.
pub struct Registration {
    pub desired: DesiredState,
    pub outcome: SyncOutcome,
    pub timings: Timings,
}

/// Why a run stopped short.
pub enum RegisterError {
    /// The project did not load or validate: nothing was planned or written.
    Invalid(anyhow::Error),
    /// Reading or writing the server failed.
    Failed(anyhow::Error),
}

impl From<RegisterError> for anyhow::Error {
    fn from(err: RegisterError) -> anyhow::Error {
        match err {
            RegisterError::Invalid(err) | RegisterError::Failed(err) => err,
        }
    }
}

/// Loads the project's desired state (with `env` as the environment) and syncs the server to it.
/// Timings count from `started`.
pub fn register(
    project: &Project,
    client: &PrefectClient,
    env: &EnvVars,
    options: &SyncOptions,
    cancel: &AtomicBool,
    started: Instant,
) -> Result<Registration, RegisterError> {
    let desired = load::desired_state(
        project,
        client,
        env,
        options.run_steps,
        &options.selection,
        options.prune,
    )
    .map_err(RegisterError::Invalid)?;
    let validate = started.elapsed();
    let outcome = sync(client, &desired, options, cancel).map_err(RegisterError::Failed)?;
    let timings = Timings {
        validate,
        read: outcome.read,
        write: outcome.write,
        total: started.elapsed(),
    };
    Ok(Registration {
        desired,
        outcome,
        timings,
    })
}

/// A register-flows run inside another command (deploy's plan and check, `deploy --local`),
/// against the server `env` names and with `env` as the environment, reported on stderr as
/// register-flows reports it (redacted).
pub fn register_reported(
    project: &Project,
    env: &EnvVars,
    verbose: bool,
    options: &SyncOptions,
) -> Result<Reported> {
    let started = Instant::now();
    let client = PrefectClient::new(ApiConfig::from_vars(env)?)?;
    client.set_verbose(verbose);
    let cancel = interrupt_flag();
    client.set_interrupt(cancel.clone());
    let registration = register(project, &client, env, options, &cancel, started)?;
    eprint!(
        "{}",
        redact(&render::report_text(
            &client,
            project,
            options,
            &registration
        ))
    );
    Ok(Reported {
        code: registration.outcome.exit_code(options),
        markdown: redact(&render::report_markdown(
            &client,
            project,
            options,
            &registration,
        )),
    })
}

/// What [`register_reported`] tells its caller.
pub struct Reported {
    /// register-flows' exit code.
    pub code: u8,
    /// The run's Markdown report (redacted), for a job summary.
    pub markdown: String,
}

/// The flag Ctrl-C / SIGTERM sets, for [`sync`]'s `cancel`. Installed once per process.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let for_handler = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if for_handler.swap(true, Ordering::SeqCst) {
                // A second signal: the user insists.
                std::process::exit(130);
            }
            eprintln!("interrupted: finishing the writes in flight, then rolling back (press Ctrl-C again to abort now)");
        });
        if let Err(err) = installed {
            eprintln!("warning: cannot install the Ctrl-C/SIGTERM handler ({err}); an interruption will not roll back");
        }
        flag
    })
    .clone()
}
