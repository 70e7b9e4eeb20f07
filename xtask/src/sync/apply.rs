//! Executes a [`Plan`] against the server, all or nothing.
//!
//! Every write is preceded by an entry in an undo journal that says how to put back what the write
//! may have changed; each undo is idempotent and works from the snapshot the plan was computed
//! from, so it is also right when a write's outcome is unknown (a timeout, a dropped connection).
//! When any write fails after the client's retries, or the run is interrupted (Ctrl-C/SIGTERM),
//! no new write starts, in-flight writes finish, and the journal is played backwards.
//!
//! Schedules are written through `/deployments/{id}/schedules` one by one, never through the
//! deployment PATCH: the server replaces *all* schedules (new ids, reset interval anchors) when a
//! PATCH carries `schedules`. Creating a schedule deletes no runs; updating or deleting one makes
//! the server delete the deployment's future auto-scheduled runs, as any deployment PATCH does
//! (the server's scheduler re-creates them within seconds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::prefect::api::{ApiError, Origin, PrefectClient};
use crate::sync::desired::{DesiredDeployment, DesiredSchedule, Ownership};
use crate::sync::plan::{
    self, Action, DeploymentUpdate, Plan, PlanItem, ScheduleOp, ServerDeployment,
};
use crate::sync::resources_apply::{self, ResourceUndo};

pub(crate) struct ApplyOptions<'a> {
    /// Writes in flight at most.
    pub concurrency: usize,
    /// Set by the Ctrl-C/SIGTERM handler: start no new write, then roll back.
    pub cancel: &'a AtomicBool,
    pub owner: &'a Ownership,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemStatus {
    NotStarted,
    Done,
    Failed(String),
}

/// One line of the rollback report.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackStep {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// Parallel to `plan.items`.
    pub status: Vec<ItemStatus>,
    /// Why the apply stopped (the first failure, or the interruption); None when it succeeded.
    pub error: Option<String>,
    pub interrupted: bool,
    /// What the rollback did, in the order it did it (empty when nothing had to be rolled back).
    pub rollback: Vec<RollbackStep>,
    /// Parallel to `plan.resources.items` (empty when the plan has none).
    pub resource_status: Vec<ItemStatus>,
}

impl ApplyReport {
    pub(crate) fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    pub fn rollback_complete(&self) -> bool {
        self.rollback.iter().all(|s| s.ok)
    }
}

/// How to undo one write (or a group of writes on one object).
#[derive(Debug, Clone)]
enum Undo {
    /// A create: delete the deployment if this run made it (see [`Made`]).
    DeleteCreated {
        flow_name: String,
        name: String,
        made: Made,
        /// It runs under a shared limit: detach it first (deleting a deployment deletes the
        /// limit attached to it, shared or not).
        detach_limit: bool,
    },
    /// A PATCH: put the snapshot's values back.
    RestoreFields {
        full_name: String,
        id: String,
        body: Map<String, Value>,
    },
    /// Schedule writes: make the schedules equal the snapshot again (ids of untouched ones kept).
    RestoreSchedules {
        full_name: String,
        id: String,
        snapshot: Vec<Value>,
    },
    /// Trigger writes: owned automations back to the snapshot.
    RestoreAutomations {
        full_name: String,
        id: String,
        snapshot: Vec<Value>,
    },
    /// A prune: re-create the deployment from its snapshot if it is gone.
    Recreate {
        full_name: String,
        id: String,
        raw: Value,
    },
    /// A work pool, queue, global limit, variable or the ownership ledger.
    Resource(ResourceUndo),
}

/// What the answer to a create said about who made the deployment (`POST /deployments/` is an
/// upsert: a deployment someone else created after our read is updated, not created).
#[derive(Debug, Clone, PartialEq)]
enum Made {
    /// No answer yet, or none ever came (a timeout, a dropped connection): it may be ours.
    Unanswered,
    /// 201: this run inserted it; its id.
    ByThisRun(String),
    /// 200, no attempt unanswered: someone else created it between our read and our write; its id.
    BySomeoneElse(String),
    /// 200 after an attempt that got no answer: that attempt may have made it.
    Unknown(String),
}

/// How to undo one apply's writes, in the order they were made.
pub(crate) struct Journal(Vec<Undo>);

/// Executes `plan`, without undoing anything: on failure the caller plays the returned journal
/// (with the earlier rounds') backwards with [`rollback`]. Never panics on server answers; every
/// failure ends up in the report.
pub(crate) fn apply(
    client: &PrefectClient,
    plan: &Plan,
    opts: &ApplyOptions,
) -> (ApplyReport, Journal) {
    let run = Run {
        journal: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        first_error: Mutex::new(None),
    };
    let stopping = || run.stop.load(Ordering::SeqCst) || opts.cancel.load(Ordering::SeqCst);
    let journal_resource = &mut |undo: ResourceUndo| {
        run.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Undo::Resource(undo));
    };
    // Pools, queues, limits and variables before the deployments that use them.
    let mut progress = resources_apply::Progress::default();
    if let Err(message) = resources_apply::execute(
        client,
        &plan.resources,
        false,
        &mut progress,
        journal_resource,
        &stopping,
    ) {
        run.fail(message);
    }
    let mut status: Vec<ItemStatus> = plan
        .items
        .iter()
        .map(|i| {
            if i.action() == Action::Unchanged {
                ItemStatus::Done
            } else {
                ItemStatus::NotStarted
            }
        })
        .collect();

    // Flows first (an upsert by name; never rolled back, as Prefect never deletes flows).
    let flow_ids = if stopping() {
        HashMap::new()
    } else {
        match create_flows(client, plan, opts) {
            Ok(ids) => ids,
            Err(message) => {
                run.fail(message);
                HashMap::new()
            }
        }
    };
    for (index, outcome) in execute_items(client, plan, opts, &run, &flow_ids, &progress.limit_ids)
    {
        status[index] = outcome;
    }
    // Deletes of pools, queues, limits and variables after the deployments; then the ledger.
    if !stopping() {
        let outcome = resources_apply::execute(
            client,
            &plan.resources,
            true,
            &mut progress,
            journal_resource,
            &stopping,
        )
        .and_then(|()| {
            resources_apply::write_ledger(
                client,
                &plan.resources,
                opts.owner,
                &progress,
                journal_resource,
            )
        });
        if let Err(message) = outcome {
            run.fail(message);
        }
    }
    let resource_status = plan
        .resources
        .items
        .iter()
        .zip(progress.status.iter().chain(std::iter::repeat(&None)))
        .map(|(item, done)| match (item.action, done) {
            (Action::Unchanged, _) => ItemStatus::Done,
            (_, None) => ItemStatus::NotStarted,
            (_, Some(Ok(()))) => ItemStatus::Done,
            (_, Some(Err(why))) => ItemStatus::Failed(why.clone()),
        })
        .collect();

    let interrupted = opts.cancel.load(Ordering::SeqCst);
    let mut error = run
        .first_error
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if error.is_none() && interrupted {
        error = Some("interrupted (Ctrl-C / SIGTERM)".into());
    }
    let journal = run.journal.into_inner().unwrap_or_else(|p| p.into_inner());
    let report = ApplyReport {
        status,
        error,
        interrupted,
        rollback: Vec::new(),
        resource_status,
    };
    (report, Journal(journal))
}

/// How long a rollback may take in all (requests, their retries and the pauses between attempts):
/// with a normal run it fits inside fly.toml's `release_command_timeout` (5 minutes), so the
/// release log shows the whole report instead of a killed command.
pub const ROLLBACK_BUDGET: std::time::Duration = std::time::Duration::from_secs(90);

/// Plays `journals` (the rounds' journals, oldest first) backwards, until `deadline`; calls
/// `on_step` with each step as soon as it is done (so a killed run has printed what it undid).
/// An undo not started by the deadline is reported as not rolled back.
pub(crate) fn rollback(
    client: &PrefectClient,
    journals: &[Journal],
    deadline: std::time::Instant,
    on_step: &dyn Fn(&RollbackStep),
) -> Vec<RollbackStep> {
    client.set_deadline(Some(deadline));
    let mut steps = Vec::new();
    for undo in journals.iter().rev().flat_map(|j| j.0.iter().rev()) {
        let done = if std::time::Instant::now() >= deadline {
            vec![step(
                false,
                format!(
                    "{}: not attempted, the rollback's time limit ({} s) ran out",
                    undo.subject(),
                    ROLLBACK_BUDGET.as_secs()
                ),
            )]
        } else {
            run_undo_patiently(client, undo, deadline)
        };
        for s in &done {
            on_step(s);
        }
        steps.extend(done);
    }
    client.set_deadline(None);
    steps
}

/// What the workers of one apply share.
struct Run {
    journal: Mutex<Vec<Undo>>,
    /// Set by the first failure: start no new write.
    stop: AtomicBool,
    first_error: Mutex<Option<String>>,
}

impl Run {
    fn fail(&self, message: String) {
        self.stop.store(true, Ordering::SeqCst);
        let mut slot = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(message);
        }
    }
}

/// Executes the items that change something on up to `opts.concurrency` threads, until all are
/// done or the run stops; returns the outcome of each item started, by index.
fn execute_items(
    client: &PrefectClient,
    plan: &Plan,
    opts: &ApplyOptions,
    run: &Run,
    flow_ids: &HashMap<String, String>,
    limit_ids: &HashMap<String, String>,
) -> Vec<(usize, ItemStatus)> {
    let work: Vec<usize> = (0..plan.items.len())
        .filter(|&i| plan.items[i].action() != Action::Unchanged)
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, ItemStatus)>> = Mutex::new(Vec::new());
    let workers = opts.concurrency.clamp(1, 64).min(work.len().max(1));
    let limiter = Limiter::new(workers);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if run.stop.load(Ordering::SeqCst) || opts.cancel.load(Ordering::SeqCst) {
                    return;
                }
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(&index) = work.get(n) else { return };
                let item = &plan.items[index];
                let ctx = ItemContext {
                    client,
                    run,
                    cancel: opts.cancel,
                    owner: opts.owner,
                    limiter: &limiter,
                    limit_ids,
                };
                let outcome = match execute_item(&ctx, item, flow_ids) {
                    Ok(()) => ItemStatus::Done,
                    Err(Halt::Failed(message)) => {
                        run.fail(format!("{}: {message}", item.full_name()));
                        ItemStatus::Failed(message)
                    }
                    Err(Halt::Stopped) => ItemStatus::Failed("stopped before finishing".into()),
                };
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((index, outcome));
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn create_flows(
    client: &PrefectClient,
    plan: &Plan,
    opts: &ApplyOptions,
) -> Result<HashMap<String, String>, String> {
    let names = plan.flows_of_creates();
    let mut ids = HashMap::new();
    for name in names {
        if opts.cancel.load(Ordering::SeqCst) {
            return Err("interrupted (Ctrl-C / SIGTERM)".into());
        }
        let flow = client.create_flow(name).map_err(|e| e.to_string())?;
        let id = flow
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("POST /flows/ for '{name}' returned no id"))?;
        ids.insert(name.to_string(), id.to_string());
    }
    Ok(ids)
}

struct ItemContext<'a> {
    client: &'a PrefectClient,
    /// Global limit ids by name, for deployments that run under one.
    limit_ids: &'a HashMap<String, String>,
    limiter: &'a Limiter,
    run: &'a Run,
    cancel: &'a AtomicBool,
    owner: &'a Ownership,
}

enum Halt {
    Failed(String),
    /// Another item failed or the run was interrupted: this one stopped between writes.
    Stopped,
}

impl From<ApiError> for Halt {
    fn from(err: ApiError) -> Halt {
        Halt::Failed(err.to_string())
    }
}

impl ItemContext<'_> {
    /// Another item failed or the run was interrupted.
    fn stopping(&self) -> bool {
        self.run.stop.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

    /// Runs one write under the concurrency limiter.
    fn write<T>(&self, f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, Halt> {
        let permit = self.limiter.acquire();
        if self.stopping() {
            // Stopped while waiting for a slot: do not start the write.
            self.limiter
                .release(permit, std::time::Duration::ZERO, true);
            return Err(Halt::Stopped);
        }
        let started = std::time::Instant::now();
        let result = f();
        self.limiter
            .release(permit, started.elapsed(), result.is_ok());
        result.map_err(Halt::from)
    }

    /// Records how to undo the next write, unless the run is stopping (then the write is not made);
    /// returns the entry's place in the journal.
    fn before_write(&self, undo: Option<Undo>) -> Result<Option<usize>, Halt> {
        if self.stopping() {
            return Err(Halt::Stopped);
        }
        Ok(undo.map(|undo| {
            let mut journal = self.run.journal.lock().unwrap_or_else(|p| p.into_inner());
            journal.push(undo);
            journal.len() - 1
        }))
    }

    /// Records who made the deployment the create journaled at `entry` wrote.
    fn settle_create(&self, entry: Option<usize>, made: Made) {
        let mut journal = self.run.journal.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Undo::DeleteCreated { made: slot, .. }) = entry.and_then(|i| journal.get_mut(i))
        {
            *slot = made;
        }
    }
}

fn execute_item(
    ctx: &ItemContext,
    item: &PlanItem,
    flow_ids: &HashMap<String, String>,
) -> Result<(), Halt> {
    match item {
        PlanItem::Unchanged { .. } => Ok(()),
        PlanItem::Create(desired) => execute_create(ctx, desired, flow_ids),
        PlanItem::Update(update) => execute_update(ctx, update),
        PlanItem::Delete(server) => execute_delete(ctx, server),
    }
}

/// The deployment (lean, then repaired if the server defaulted a left-out field otherwise), then
/// its automations.
fn execute_create(
    ctx: &ItemContext,
    desired: &DesiredDeployment,
    flow_ids: &HashMap<String, String>,
) -> Result<(), Halt> {
    let client = ctx.client;
    let flow_id = flow_ids.get(&desired.flow_name).ok_or(Halt::Stopped)?;
    let shared_limit = desired
        .fields
        .get("global_concurrency_limit")
        .and_then(Value::as_str);
    let limit_id = match shared_limit {
        Some(name) => Some(limit_id(ctx.limit_ids, name).map_err(Halt::Failed)?),
        None => None,
    };
    let entry = ctx.before_write(Some(Undo::DeleteCreated {
        flow_name: desired.flow_name.clone(),
        name: desired.name.clone(),
        made: Made::Unanswered,
        detach_limit: limit_id.is_some(),
    }))?;
    let (mut body, mut defaulted) = desired.lean_create_body(flow_id, ctx.owner);
    if let (Some(id), Value::Object(map)) = (&limit_id, &mut body) {
        // Never `concurrency_limit` next to a shared limit: the server would create or delete
        // a limit of the deployment's own, and a repair PATCH of a null limit deletes the shared one.
        map.remove("concurrency_limit");
        if map.get("concurrency_options").is_some_and(Value::is_null) {
            map.remove("concurrency_options");
        }
        map.insert("global_concurrency_limit_id".into(), json!(id));
        defaulted.remove("concurrency_limit");
        defaulted.remove("concurrency_options");
    }
    let answered = ctx.write(|| client.create_deployment_answered(&body))?;
    let created = answered.body;
    let id = created
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Halt::Failed("POST /deployments/ returned no id".into()))?;
    let made = match answered.origin {
        Origin::CreatedByThisRequest => Made::ByThisRun(id.to_string()),
        Origin::ExistedBefore => Made::BySomeoneElse(id.to_string()),
        Origin::Unknown => Made::Unknown(id.to_string()),
    };
    ctx.settle_create(entry, made);
    let repair = plan::repair_patch(&defaulted, &created);
    if !repair.is_empty() {
        ctx.before_write(None)?;
        ctx.write(|| client.update_deployment(id, &repair))?;
    }
    for body in desired.automation_bodies(id) {
        ctx.before_write(None)?;
        ctx.write(|| client.create_automation(&body))?;
    }
    Ok(())
}

/// The changed fields, then the schedule writes, then the automations.
fn execute_update(ctx: &ItemContext, update: &DeploymentUpdate) -> Result<(), Halt> {
    let client = ctx.client;
    let full_name = update.server.full_name();
    let id = update.server.id.as_str();
    if !update.patch.is_empty() {
        let patches = limit_safe_patches(&update.patch, ctx.limit_ids).map_err(Halt::Failed)?;
        ctx.before_write(Some(Undo::RestoreFields {
            full_name: full_name.clone(),
            id: id.to_string(),
            body: update.restore_patch.clone(),
        }))?;
        for patch in &patches {
            ctx.write(|| client.update_deployment(id, patch))?;
        }
    }
    if !update.schedule_ops.is_empty() {
        let snapshot = update
            .server
            .raw
            .get("schedules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        ctx.before_write(Some(Undo::RestoreSchedules {
            full_name: full_name.clone(),
            id: id.to_string(),
            snapshot,
        }))?;
        for op in &update.schedule_ops {
            ctx.before_write(None)?;
            ctx.write(|| write_schedule_op(client, id, op))?;
        }
    }
    if let Some(snapshot) = &update.replaced_automations {
        ctx.before_write(Some(Undo::RestoreAutomations {
            full_name,
            id: id.to_string(),
            snapshot: snapshot.clone(),
        }))?;
        let bodies = update.desired.automation_bodies(id);
        ctx.write(|| replace_automations(client, id, &bodies))?;
    }
    Ok(())
}

fn execute_delete(ctx: &ItemContext, server: &ServerDeployment) -> Result<(), Halt> {
    ctx.before_write(Some(Undo::Recreate {
        full_name: server.full_name(),
        id: server.id.clone(),
        raw: server.raw.clone(),
    }))?;
    if resources_apply::shared_limit_name(&server.raw).is_some() {
        // Deleting a deployment deletes the limit attached to it: detach the shared one first.
        ctx.write(|| ctx.client.update_deployment(&server.id, &detach_limit()))?;
    }
    ctx.write(|| ctx.client.delete_deployment(&server.id))
}

/// The PATCH that takes a deployment off its shared limit (the limit stays).
fn detach_limit() -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("global_concurrency_limit_id".into(), Value::Null);
    body
}

/// The id of the global limit `name` (the server's, or created by this run).
fn limit_id(ids: &HashMap<String, String>, name: &str) -> Result<String, String> {
    ids.get(name).cloned().ok_or_else(|| {
        format!("global concurrency limit '{name}' is not on the server (deleted after the plan?)")
    })
}

/// A deployment PATCH as the server must receive it when it changes the limit the deployment
/// runs under, in order: the shared limit named by `global_concurrency_limit` resolved to its id;
/// attaching one after the rest (which drops the deployment's own limit: a null
/// `concurrency_limit` deletes whatever limit is attached), detaching one before the rest (which
/// may re-create its own limit). Any other body is sent as it is.
fn limit_safe_patches(
    body: &Map<String, Value>,
    ids: &HashMap<String, String>,
) -> Result<Vec<Map<String, Value>>, String> {
    let mut rest = body.clone();
    if let Some(name) = rest.remove("global_concurrency_limit") {
        let id = match name.as_str() {
            Some(name) => json!(limit_id(ids, name)?),
            None => Value::Null,
        };
        rest.insert("global_concurrency_limit_id".into(), id);
    }
    let Some(id) = rest.remove("global_concurrency_limit_id") else {
        return Ok(vec![rest]);
    };
    let mut limit = Map::new();
    limit.insert("global_concurrency_limit_id".into(), id.clone());
    let mut out = Vec::new();
    if id.is_null() {
        out.push(limit);
        if !rest.is_empty() {
            out.push(rest);
        }
    } else {
        if !rest.is_empty() {
            out.push(rest);
        }
        out.push(limit);
    }
    Ok(out)
}

fn write_schedule_op(
    client: &PrefectClient,
    deployment_id: &str,
    op: &ScheduleOp,
) -> Result<(), ApiError> {
    match op {
        ScheduleOp::Create { desired } => {
            client.create_schedule(deployment_id, desired.create_body())
        }
        ScheduleOp::Update { id, desired, .. } => {
            client.update_schedule(deployment_id, id, &desired.patch_body())
        }
        ScheduleOp::Delete { id, .. } => client.delete_schedule(deployment_id, id),
    }
}

fn replace_automations(
    client: &PrefectClient,
    deployment_id: &str,
    bodies: &[Value],
) -> Result<(), ApiError> {
    client.delete_owned_automations(deployment_id)?;
    for body in bodies {
        client.create_automation(body)?;
    }
    Ok(())
}

// ---- adaptive concurrency ---------------------------------------------------------------------

/// How many writes may be in flight, adapted to the server. A SQLite-backed Prefect server answers
/// 503 when writes collide (ours, or its own scheduler's and event persister's), which the client
/// retries (`prefect_api::Retries`); a Postgres-backed server gains from parallel writes (measured
/// with Postgres + Redis and two API workers: 51 creates in 3.9 s one at a time, 2.0–2.5 s here).
/// Start with one write at a time, double the window after a full window (at least 8) of fast
/// writes, up to `--concurrency`; a write that took noticeably longer than the fastest one was
/// retried: halve the window and never grow past that again in this run (measured on a SQLite
/// server: 50 creates take ~2.5 s one at a time, ~4 s with 8 in flight because of the retries).
struct Limiter {
    state: Mutex<LimiterState>,
    changed: std::sync::Condvar,
}

struct LimiterState {
    limit: usize,
    ceiling: usize,
    in_flight: usize,
    fast_streak: usize,
    fastest: Option<std::time::Duration>,
}

/// Proof of an acquired slot.
struct Permit;

/// Fast writes in a row before the window doubles (bounds the cost of probing a SQLite server).
const PROBE_AFTER: usize = 8;

/// Extra time that marks a write as retried: an outage back-off (≥ 80 ms), or several busy-database
/// retries in a row (a single one, ~20 ms plus the refused attempt, goes unnoticed: harmless, as
/// windows of 1, 2 and 4 measured the same on SQLite).
const RETRY_SIGNAL: std::time::Duration = std::time::Duration::from_millis(75);

impl Limiter {
    fn new(max: usize) -> Limiter {
        let state = LimiterState {
            limit: 1,
            ceiling: max.max(1),
            in_flight: 0,
            fast_streak: 0,
            fastest: None,
        };
        Limiter {
            state: Mutex::new(state),
            changed: std::sync::Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.in_flight >= state.limit {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.in_flight += 1;
        Permit
    }

    fn release(&self, _permit: Permit, took: std::time::Duration, ok: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight = state.in_flight.saturating_sub(1);
        let fastest = *state.fastest.get_or_insert(took);
        if took < fastest {
            state.fastest = Some(took);
        }
        if !ok || took > fastest + RETRY_SIGNAL {
            state.limit = (state.limit / 2).max(1);
            state.ceiling = state.ceiling.min(state.limit);
            state.fast_streak = 0;
        } else {
            state.fast_streak += 1;
            if state.fast_streak >= state.limit.max(PROBE_AFTER) && state.limit < state.ceiling {
                state.limit = (state.limit * 2).min(state.ceiling);
                state.fast_streak = 0;
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).limit
    }
}

// ---- rollback ----------------------------------------------------------------------------------

/// Pauses between whole attempts at one undo. A rollback runs right after the server failed
/// (often a SQLite lock storm), so it is more patient than the client's own retries; undo steps
/// are idempotent, so running one again is safe.
const UNDO_RETRY_PAUSES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(5),
];

fn run_undo_patiently(
    client: &PrefectClient,
    undo: &Undo,
    deadline: std::time::Instant,
) -> Vec<RollbackStep> {
    let mut steps = run_undo(client, undo);
    for pause in UNDO_RETRY_PAUSES {
        if steps.iter().all(|step| step.ok) || !undo.retryable() {
            break;
        }
        if std::time::Instant::now() + pause >= deadline {
            break;
        }
        std::thread::sleep(pause);
        steps = run_undo(client, undo);
    }
    steps
}

fn run_undo(client: &PrefectClient, undo: &Undo) -> Vec<RollbackStep> {
    let step = match undo {
        Undo::DeleteCreated {
            flow_name,
            name,
            made,
            detach_limit,
        } => undo_create(client, flow_name, name, made, *detach_limit),
        Undo::Resource(undo) => {
            let (ok, text) = resources_apply::undo(client, undo);
            step(ok, text)
        }
        Undo::RestoreFields {
            full_name,
            id,
            body,
        } => restore_fields(client, full_name, id, body),
        Undo::RestoreSchedules {
            full_name,
            id,
            snapshot,
        } => match restore_schedules(client, id, snapshot) {
            Ok(0) => step(true, format!("restored the schedules of {full_name}")),
            Ok(recreated) => step(
                true,
                format!(
                    "restored the schedules of {full_name} ({recreated} re-created with a new id)"
                ),
            ),
            Err(e) => step(
                false,
                format!("could not restore the schedules of {full_name}: {e}"),
            ),
        },
        Undo::RestoreAutomations {
            full_name,
            id,
            snapshot,
        } => restore_automations(client, full_name, id, snapshot),
        Undo::Recreate { full_name, id, raw } => undo_delete(client, full_name, id, raw),
    };
    vec![step]
}

fn step(ok: bool, text: String) -> RollbackStep {
    RollbackStep { ok, text }
}

impl Undo {
    /// The deployment an undo is about, for a step that was never attempted.
    fn subject(&self) -> String {
        match self {
            Undo::DeleteCreated {
                flow_name, name, ..
            } => format!("{flow_name}/{name}"),
            Undo::RestoreFields { full_name, .. }
            | Undo::RestoreSchedules { full_name, .. }
            | Undo::RestoreAutomations { full_name, .. }
            | Undo::Recreate { full_name, .. } => full_name.clone(),
            Undo::Resource(undo) => undo.subject(),
        }
    }

    /// False for an undo whose answer cannot change by asking again.
    fn retryable(&self) -> bool {
        !matches!(
            self,
            Undo::DeleteCreated {
                made: Made::BySomeoneElse(_),
                ..
            }
        )
    }
}

/// Deletes the deployment this run created, and only that: by its id when the create's answer
/// said this run made it; by name when no answer came (it may be ours; its id never reached us);
/// never one someone else created between our read and our write (the upsert updated theirs).
fn undo_create(
    client: &PrefectClient,
    flow_name: &str,
    name: &str,
    made: &Made,
    detach_limit: bool,
) -> RollbackStep {
    let full = format!("{flow_name}/{name}");
    // Deleting a deployment deletes the limit attached to it: a shared one is detached first.
    let delete = |id: &str| -> Result<(), ApiError> {
        if detach_limit {
            client.update_deployment(id, &self::detach_limit())?;
        }
        client.delete_deployment(id)
    };
    match made {
        Made::ByThisRun(id) => {
            return match delete(id) {
                Ok(()) => step(true, format!("deleted {full} (created by this run)")),
                Err(e) => step(
                    false,
                    format!("could not delete {full} (id {id}), created by this run: {e}"),
                ),
            }
        }
        Made::BySomeoneElse(id) => {
            return step(
                false,
                format!("left {full} (id {id}) in place: someone else created it between this run's read and its write, so this run's create updated theirs; their earlier values were never read and cannot be put back"),
            )
        }
        Made::Unknown(id) => {
            return match delete(id) {
                Ok(()) => step(true, format!("deleted {full} (id {id}; created by this run unless someone else created it while this run's create went unanswered)")),
                Err(e) => step(
                    false,
                    format!("could not delete {full} (id {id}), created by this run: {e}"),
                ),
            }
        }
        Made::Unanswered => {}
    }
    let found = match client.read_deployment_by_name(flow_name, name) {
        Ok(found) => found,
        Err(e) => {
            return step(
                false,
                format!("could not delete {full}, created by this run: {e}"),
            )
        }
    };
    let Some(id) = found
        .as_ref()
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
    else {
        return step(true, format!("{full} was not created (nothing to delete)"));
    };
    match delete(id) {
        Ok(()) => step(true, format!("deleted {full} (created by this run)")),
        Err(e) => step(
            false,
            format!("could not delete {full} (id {id}), created by this run: {e}"),
        ),
    }
}

fn restore_fields(
    client: &PrefectClient,
    full_name: &str,
    id: &str,
    body: &Map<String, Value>,
) -> RollbackStep {
    let fields: Vec<&str> = body.keys().map(String::as_str).collect();
    // A restore names limits by id, never by name: the split cannot fail.
    let patches = limit_safe_patches(body, &HashMap::new()).unwrap_or_else(|_| vec![body.clone()]);
    let restored = patches
        .iter()
        .try_for_each(|patch| client.update_deployment(id, patch));
    match restored {
        Ok(()) => step(true, format!("restored {full_name}: {}", fields.join(", "))),
        Err(e) => step(
            false,
            format!("could not restore {full_name} ({}): {e}", fields.join(", ")),
        ),
    }
}

fn restore_automations(
    client: &PrefectClient,
    full_name: &str,
    id: &str,
    snapshot: &[Value],
) -> RollbackStep {
    let bodies: Vec<Value> = snapshot
        .iter()
        .map(|a| automation_recreate_body(a, id))
        .collect();
    match replace_automations(client, id, &bodies) {
        Ok(()) => step(
            true,
            format!("restored the {} automation(s) of {full_name}", bodies.len()),
        ),
        Err(e) => step(
            false,
            format!("could not restore the automations of {full_name}: {e}"),
        ),
    }
}

/// Re-creates the deployment this run pruned, from its snapshot, unless it still exists.
fn undo_delete(client: &PrefectClient, full_name: &str, id: &str, raw: &Value) -> RollbackStep {
    match client.read_deployment(id) {
        Ok(Some(_)) => {
            return step(
                true,
                format!("{full_name} was not deleted (nothing to restore)"),
            )
        }
        Ok(None) => {}
        Err(e) => {
            return step(
                false,
                format!("could not check whether {full_name} still exists: {e}"),
            )
        }
    }
    match client.create_deployment(&plan::recreate_body(raw)) {
        Ok(created) => {
            let new_id = created.get("id").and_then(Value::as_str).unwrap_or("?");
            step(
                true,
                format!("re-created {full_name} (pruned by this run) with a new id {new_id}; its past runs stay detached"),
            )
        }
        Err(e) => step(
            false,
            format!("could not re-create {full_name}, pruned by this run: {e}"),
        ),
    }
}

/// Makes the deployment's schedules equal `snapshot` again; returns how many had to be re-created.
fn restore_schedules(
    client: &PrefectClient,
    id: &str,
    snapshot: &[Value],
) -> Result<usize, ApiError> {
    let current = client.read_deployment_schedules(id)?;
    let wanted: Vec<DesiredSchedule> = snapshot.iter().map(DesiredSchedule::from_server).collect();
    let ops = plan::reconcile_schedules(&wanted, &current);
    let recreated = ops
        .iter()
        .filter(|op| matches!(op, ScheduleOp::Create { .. }))
        .count();
    for op in &ops {
        write_schedule_op(client, id, op)?;
    }
    Ok(recreated)
}

/// An automation as read back, as a `POST /automations/` body owned by the deployment again
/// (reads do not return `owner_resource`; the trigger's server-side id is dropped too).
fn automation_recreate_body(automation: &Value, deployment_id: &str) -> Value {
    let mut body = automation.clone();
    if let Value::Object(map) = &mut body {
        for key in ["id", "created", "updated"] {
            map.remove(key);
        }
        map.insert(
            "owner_resource".into(),
            json!(format!("prefect.deployment.{deployment_id}")),
        );
        if let Some(Value::Object(trigger)) = map.get_mut("trigger") {
            trigger.remove("id");
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_changes_are_split_so_no_shared_limit_is_deleted_or_changed() {
        let ids = HashMap::from([("gpu".to_string(), "l-gpu".to_string())]);
        let body = |v: Value| v.as_object().cloned().unwrap();
        // Attach after dropping the deployment's own limit.
        assert_eq!(
            limit_safe_patches(
                &body(json!({"global_concurrency_limit": "gpu", "concurrency_limit": null, "tags": []})),
                &ids
            )
            .unwrap(),
            vec![
                body(json!({"concurrency_limit": null, "tags": []})),
                body(json!({"global_concurrency_limit_id": "l-gpu"}))
            ]
        );
        // Detach before re-creating an own limit.
        assert_eq!(
            limit_safe_patches(
                &body(json!({"global_concurrency_limit_id": null, "concurrency_limit": 3})),
                &ids
            )
            .unwrap(),
            vec![
                body(json!({"global_concurrency_limit_id": null})),
                body(json!({"concurrency_limit": 3}))
            ]
        );
        assert_eq!(
            limit_safe_patches(&body(json!({"tags": []})), &ids).unwrap(),
            vec![body(json!({"tags": []}))]
        );
        let err = limit_safe_patches(&body(json!({"global_concurrency_limit": "gone"})), &ids)
            .unwrap_err();
        assert!(err.contains("'gone' is not on the server"), "{err}");
    }

    #[test]
    fn limiter_grows_on_fast_writes_and_settles_after_retries() {
        use std::time::Duration;
        let fast = Duration::from_millis(20);
        let slow = Duration::from_millis(900);
        let limiter = Limiter::new(8);
        let done = |took: Duration| {
            let permit = limiter.acquire();
            limiter.release(permit, took, true);
        };
        assert_eq!(limiter.limit(), 1);
        for _ in 0..7 {
            done(fast);
        }
        assert_eq!(
            limiter.limit(),
            1,
            "probes a wider window only after 8 fast writes"
        );
        for _ in 0..40 {
            done(fast);
        }
        assert_eq!(limiter.limit(), 8);
        done(slow);
        assert_eq!(limiter.limit(), 4);
        done(slow);
        done(slow);
        done(slow);
        assert_eq!(limiter.limit(), 1);
        for _ in 0..40 {
            done(fast);
        }
        assert_eq!(limiter.limit(), 1, "no new probe after retries");
    }

    #[test]
    fn automation_bodies_lose_server_fields() {
        let read = json!({"id": "a", "created": "t", "updated": "t", "name": "n", "trigger": {"id": "t1", "type": "event"}});
        let body = automation_recreate_body(&read, "x");
        assert_eq!(
            body,
            json!({"name": "n", "trigger": {"type": "event"}, "owner_resource": "prefect.deployment.x"})
        );
    }

    #[test]
    fn a_rollback_past_its_deadline_attempts_nothing_and_says_so() {
        // The client points at a closed port: any request would be counted.
        let client = PrefectClient::new(crate::prefect::api::ApiConfig::for_url(
            "http://127.0.0.1:9/api",
        ))
        .unwrap();
        let journal = Journal(vec![
            Undo::DeleteCreated {
                flow_name: "f".into(),
                name: "new".into(),
                made: Made::ByThisRun("id-1".into()),
                detach_limit: false,
            },
            Undo::RestoreFields {
                full_name: "f/upd".into(),
                id: "id-2".into(),
                body: Map::new(),
            },
        ]);
        let printed = Mutex::new(Vec::new());
        let steps = rollback(
            &client,
            &[journal],
            std::time::Instant::now(),
            &|step: &RollbackStep| printed.lock().unwrap().push(step.text.clone()),
        );
        assert_eq!(client.request_count(), 0);
        let texts: Vec<&str> = steps.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "f/upd: not attempted, the rollback's time limit (90 s) ran out",
                "f/new: not attempted, the rollback's time limit (90 s) ran out",
            ]
        );
        assert!(steps.iter().all(|s| !s.ok));
        // Each step was handed out as it happened, in the same order.
        assert_eq!(*printed.lock().unwrap(), texts);
    }

    #[test]
    fn an_undo_for_someone_elses_deployment_deletes_nothing() {
        let client = PrefectClient::new(crate::prefect::api::ApiConfig::for_url(
            "http://127.0.0.1:9/api",
        ))
        .unwrap();
        let undo = Undo::DeleteCreated {
            flow_name: "f".into(),
            name: "raced".into(),
            made: Made::BySomeoneElse("id-9".into()),
            detach_limit: false,
        };
        let steps = run_undo_patiently(
            &client,
            &undo,
            std::time::Instant::now() + std::time::Duration::from_secs(60),
        );
        assert_eq!(client.request_count(), 0, "no request, and no pause either");
        assert_eq!(steps.len(), 1);
        assert!(!steps[0].ok);
        assert!(steps[0].text.contains("left f/raced (id id-9) in place"));
    }

    #[test]
    fn a_plan_without_changes_writes_nothing() {
        // The client points at a closed port: any request would fail the apply.
        let client = PrefectClient::new(crate::prefect::api::ApiConfig::for_url(
            "http://127.0.0.1:9/api",
        ))
        .unwrap();
        let cancel = AtomicBool::new(false);
        let owner = Ownership {
            project: "p".into(),
            prefect_file: "prefect.yaml".into(),
        };
        let (report, journal) = apply(
            &client,
            &Plan::default(),
            &ApplyOptions {
                concurrency: 4,
                cancel: &cancel,
                owner: &owner,
            },
        );
        assert!(journal.0.is_empty());
        assert!(report.succeeded());
        assert_eq!(client.request_count(), 0);
    }
}
