//! Work pools, queues, global concurrency limits and variables on the server: reading them in
//! bulk for the plan, writing a [`ResourcePlan`] (creates and updates before the deployments,
//! deletes after them), the ownership ledger, and undoing each write.
//!
//! A create is journaled once its answer came (or none came: then it may be ours, and its undo
//! deletes the object of that name if it exists); a create answered 409 met an object someone
//! created after our read (a concurrent run): it is updated instead, and its undo restores it. Updates restore the snapshot's values; a delete re-creates the snapshot (a
//! pool with its queues; a re-created limit gets a new id, so deployments that ran under it lose
//! the link, which is why prune never deletes a limit a deployment uses).

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use crate::prefect::api::{encode_segment, ApiError, PrefectClient};
use crate::sync::desired::Ownership;
use crate::sync::plan::{Action, ServerDeployment};
use crate::sync::resources::{
    DesiredResources, Kind, Ledger, ResourceItem, ResourceOp, ResourcePlan, ServerResources,
    LEDGER_TAG,
};

/// Flow-run states that count as work in progress in a pool.
const IN_PROGRESS: [&str; 3] = ["PENDING", "RUNNING", "CANCELLING"];

/// Reads what the resource plan needs: the declared objects, the ledger and (with `prune`) the
/// ledger's objects and what still uses them. `deployments`: the server deployments already read
/// (all of them with `prune`), for the limits they run under; `limits_used`: a deployment names a
/// global limit (its id is needed). Nothing is read for a yaml without the sections, unless pruning.
pub(crate) fn read(
    client: &PrefectClient,
    desired: &DesiredResources,
    owner: &Ownership,
    prune: bool,
    deployments: &[ServerDeployment],
    limits_used: bool,
) -> Result<ServerResources> {
    let mut out = ServerResources::default();
    if desired.is_empty() && !prune && !limits_used {
        return Ok(out);
    }
    let ledger_name = Ledger::variable_name(owner);
    out.ledger = client
        .read_variable(&ledger_name)
        .with_context(|| format!("cannot read the ownership ledger '{ledger_name}'"))?;
    let ledger = out.ledger();
    if desired.is_empty() && !limits_used && (!prune || ledger == Ledger::default()) {
        return Ok(out);
    }
    let mut pool_names: BTreeSet<String> =
        desired.pools.iter().map(|p| p.decl.name.clone()).collect();
    let mut variable_names: BTreeSet<String> =
        desired.variables.iter().map(|v| v.name.clone()).collect();
    if prune {
        pool_names.extend(ledger.pools.iter().cloned());
        variable_names.extend(ledger.variables.iter().cloned());
    }
    if !pool_names.is_empty() {
        let names: Vec<&String> = pool_names.iter().collect();
        for pool in client
            .read_listing(
                "/work_pools/filter",
                json!({"work_pools": {"name": {"any_": names}}}),
            )
            .context("cannot read the server's work pools")?
        {
            if let Some(name) = pool.get("name").and_then(Value::as_str) {
                out.pools.insert(name.to_string(), pool.clone());
            }
        }
    }
    // Queues and users of the pools whose queues are managed, and of prune candidates.
    let watched: Vec<String> = out
        .pools
        .keys()
        .filter(|name| {
            desired
                .pools
                .iter()
                .any(|p| &&p.decl.name == name && p.decl.queues.is_some())
                || (prune && ledger.pools.contains(*name))
        })
        .cloned()
        .collect();
    for pool in &watched {
        let queues = client
            .read_listing(
                &format!("/work_pools/{}/queues/filter", encode_segment(pool)),
                json!({}),
            )
            .with_context(|| format!("cannot read the queues of work pool '{pool}'"))?;
        out.queues.insert(pool.clone(), queues);
    }
    if !watched.is_empty() {
        let in_pools = client
            .read_deployments(json!({"work_pools": {"name": {"any_": watched}}}))
            .context("cannot read the deployments of the work pools")?;
        let mut flow_ids: Vec<&str> = in_pools
            .iter()
            .filter_map(|d| d.get("flow_id").and_then(Value::as_str))
            .collect();
        flow_ids.sort_unstable();
        flow_ids.dedup();
        let flows: HashMap<String, String> = if flow_ids.is_empty() {
            HashMap::new()
        } else {
            client
                .read_flows(json!({"flows": {"id": {"any_": flow_ids}}}))
                .context("cannot read the flows of the work pools' deployments")?
                .iter()
                .filter_map(|f| {
                    Some((
                        f.get("id")?.as_str()?.to_string(),
                        f.get("name")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        };
        for d in &in_pools {
            let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("");
            let flow = flows
                .get(text("flow_id"))
                .cloned()
                .unwrap_or_else(|| text("flow_id").to_string());
            out.pool_deployments
                .entry(text("work_pool_name").to_string())
                .or_default()
                .push((
                    format!("{flow}/{}", text("name")),
                    text("work_queue_name").to_string(),
                ));
        }
    }
    if prune {
        for pool in ledger.pools.iter().filter(|p| out.pools.contains_key(*p)) {
            let runs = client
                .read_flow_runs(json!({
                    "work_pools": {"name": {"any_": [pool]}},
                    "flow_runs": {"state": {"type": {"any_": IN_PROGRESS}}},
                }))
                .with_context(|| format!("cannot read the flow runs of work pool '{pool}'"))?;
            out.pool_runs_in_progress.insert(pool.clone(), runs.len());
        }
        for d in deployments {
            if let Some(limit) = shared_limit_name(&d.raw) {
                out.limit_users
                    .entry(limit.to_string())
                    .or_default()
                    .push(d.full_name());
            }
        }
    }
    if !desired.limits.is_empty() || (prune && !ledger.limits.is_empty()) || limits_used {
        for limit in client
            .read_listing("/v2/concurrency_limits/filter", json!({}))
            .context("cannot read the server's global concurrency limits")?
        {
            if let Some(name) = limit.get("name").and_then(Value::as_str) {
                out.limits.insert(name.to_string(), limit.clone());
            }
        }
    }
    if !variable_names.is_empty() {
        let names: Vec<&String> = variable_names.iter().collect();
        for variable in client
            .read_listing(
                "/variables/filter",
                json!({"variables": {"name": {"any_": names}}}),
            )
            .context("cannot read the server's variables")?
        {
            if let Some(name) = variable.get("name").and_then(Value::as_str) {
                out.variables.insert(name.to_string(), variable.clone());
            }
        }
    }
    Ok(out)
}

/// The global limit a deployment runs under when it is a shared one (not Prefect's own
/// `deployment:<id>` limit that a deployment's integer `concurrency_limit` creates).
pub(crate) fn shared_limit_name(raw: &Value) -> Option<&str> {
    raw.get("global_concurrency_limit")
        .and_then(|l| l.get("name"))
        .and_then(Value::as_str)
        .filter(|name| !name.starts_with("deployment:"))
}

// ---- writing ---------------------------------------------------------------------------------

/// How to undo one resource write.
#[derive(Debug, Clone)]
pub(crate) enum ResourceUndo {
    /// Delete what this run created (`answered`: the create's answer came; otherwise delete
    /// it only if it exists).
    DeleteCreated {
        kind: Kind,
        name: String,
        pool: Option<String>,
    },
    /// PATCH the snapshot's values back.
    Restore {
        kind: Kind,
        name: String,
        pool: Option<String>,
        body: Map<String, Value>,
    },
    /// Re-create what a prune deleted (a pool with its queues).
    Recreate {
        kind: Kind,
        name: String,
        pool: Option<String>,
        snapshot: Value,
        queues: Vec<Value>,
    },
    /// Put the ledger variable back as it was (None: delete it).
    Ledger {
        name: String,
        previous: Option<Value>,
    },
}

impl ResourceUndo {
    pub(crate) fn subject(&self) -> String {
        match self {
            ResourceUndo::DeleteCreated { kind, name, pool }
            | ResourceUndo::Restore {
                kind, name, pool, ..
            }
            | ResourceUndo::Recreate {
                kind, name, pool, ..
            } => title(*kind, name, pool.as_deref()),
            ResourceUndo::Ledger { name, .. } => format!("the ownership ledger '{name}'"),
        }
    }
}

fn title(kind: Kind, name: &str, pool: Option<&str>) -> String {
    match pool {
        Some(pool) => format!("{} '{pool}/{name}'", kind.label()),
        None => format!("{} '{name}'", kind.label()),
    }
}

fn path(kind: Kind, name: &str, pool: Option<&str>) -> String {
    match kind {
        Kind::Pool => format!("/work_pools/{}", encode_segment(name)),
        Kind::Queue => format!(
            "/work_pools/{}/queues/{}",
            encode_segment(pool.unwrap_or("")),
            encode_segment(name)
        ),
        Kind::Limit => format!("/v2/concurrency_limits/{}", encode_segment(name)),
        Kind::Variable => format!("/variables/name/{}", encode_segment(name)),
    }
}

fn collection(kind: Kind, pool: Option<&str>) -> String {
    match kind {
        Kind::Pool => "/work_pools/".to_string(),
        Kind::Queue => format!("/work_pools/{}/queues", encode_segment(pool.unwrap_or(""))),
        Kind::Limit => "/v2/concurrency_limits/".to_string(),
        Kind::Variable => "/variables/".to_string(),
    }
}

/// What the resource writes of one apply did, for the report and the ledger.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Parallel to the plan's resource items: None not started, Some(Ok) done, Some(Err) failed.
    pub status: Vec<Option<Result<(), String>>>,
    /// Global limit ids by name (the server's and those this run created).
    pub limit_ids: HashMap<String, String>,
    /// What this run created and deleted, for the ledger.
    pub created: Vec<(Kind, String)>,
    pub deleted: Vec<(Kind, String)>,
}

/// Runs the plan's creates and updates (`deletes == false`) or its deletes, in plan order, one
/// at a time; `journal` records each undo; `stop` is asked before each write. Returns the first
/// failure as `title: reason`.
pub(crate) fn execute(
    client: &PrefectClient,
    plan: &ResourcePlan,
    deletes: bool,
    progress: &mut Progress,
    journal: &mut dyn FnMut(ResourceUndo),
    stop: &dyn Fn() -> bool,
) -> Result<(), String> {
    if progress.status.len() != plan.items.len() {
        progress.status = vec![None; plan.items.len()];
        progress.limit_ids = plan.limit_ids.clone();
    }
    for (index, item) in plan.items.iter().enumerate() {
        if (item.action == Action::Delete) != deletes || item.op == ResourceOp::None {
            continue;
        }
        if stop() {
            return Err("stopped before finishing".into());
        }
        if item.kind == Kind::Queue && sets_priority(&item.op) {
            journal_sibling_priorities(plan, item, journal);
        }
        let result = execute_item(client, item, progress, journal);
        progress.status[index] = Some(result.clone());
        result.map_err(|why| format!("{}: {why}", item.title()))?;
    }
    Ok(())
}

fn sets_priority(op: &ResourceOp) -> bool {
    match op {
        ResourceOp::Create(body) => body.get("priority").is_some(),
        ResourceOp::Update { patch, .. } => patch.contains_key("priority"),
        _ => false,
    }
}

/// Before a queue write that sets a priority: how to put the pool's other queues back at the
/// priorities they had (the server moves them down when the priority is taken). Journaled so
/// that the rollback restores them lowest priority first, after undoing the write itself: no
/// restore then collides with a queue that is not back yet.
fn journal_sibling_priorities(
    plan: &ResourcePlan,
    item: &ResourceItem,
    journal: &mut dyn FnMut(ResourceUndo),
) {
    let Some(pool) = &item.pool else { return };
    let mut siblings: Vec<&(String, Value)> = plan
        .queue_priorities
        .get(pool)
        .into_iter()
        .flatten()
        .filter(|(name, _)| name != &item.name)
        .collect();
    // Played backwards: journal the highest first.
    siblings.sort_by_key(|(_, priority)| std::cmp::Reverse(priority.as_i64().unwrap_or(0)));
    for (name, priority) in siblings {
        let mut body = Map::new();
        body.insert("priority".into(), priority.clone());
        journal(ResourceUndo::Restore {
            kind: Kind::Queue,
            name: name.clone(),
            pool: Some(pool.clone()),
            body,
        });
    }
}

fn execute_item(
    client: &PrefectClient,
    item: &ResourceItem,
    progress: &mut Progress,
    journal: &mut dyn FnMut(ResourceUndo),
) -> Result<(), String> {
    let (kind, name, pool) = (item.kind, item.name.clone(), item.pool.clone());
    match &item.op {
        ResourceOp::None => Ok(()),
        ResourceOp::Create(body) => {
            let answer = client.post(&collection(kind, pool.as_deref()), body);
            match &answer {
                // Someone else created it after our read (another run of the same project, most
                // likely): make theirs what the yaml says, as a deployment create's upsert does,
                // and undo that by putting back what they wrote. Not ours: not in the ledger.
                Err(e) if e.status() == Some(409) => {
                    return update_existing(client, item, body, journal);
                }
                Err(e) if e.status().is_some() => return Err(e.to_string()),
                _ => journal(ResourceUndo::DeleteCreated {
                    kind,
                    name: name.clone(),
                    pool: pool.clone(),
                }),
            }
            let created = answer.map_err(|e| e.to_string())?;
            if kind == Kind::Limit {
                if let Some(id) = created.get("id").and_then(Value::as_str) {
                    progress.limit_ids.insert(name.clone(), id.to_string());
                }
            }
            progress.created.push((kind, name));
            Ok(())
        }
        ResourceOp::Update { patch, restore } => {
            if !restore.is_empty() {
                journal(ResourceUndo::Restore {
                    kind,
                    name: name.clone(),
                    pool: pool.clone(),
                    body: restore.clone(),
                });
            }
            client
                .patch(
                    &path(kind, &name, pool.as_deref()),
                    &Value::Object(patch.clone()),
                )
                .map_err(|e| e.to_string())
        }
        ResourceOp::Delete { snapshot, queues } => {
            journal(ResourceUndo::Recreate {
                kind,
                name: name.clone(),
                pool: pool.clone(),
                snapshot: snapshot.clone(),
                queues: queues.clone(),
            });
            client
                .delete(&path(kind, &name, pool.as_deref()))
                .map_err(|e| e.to_string())?;
            progress.deleted.push((kind, name));
            Ok(())
        }
    }
}

/// A create answered 409: PATCH the existing object to the create's fields, journaling how to put
/// back what it holds now.
fn update_existing(
    client: &PrefectClient,
    item: &ResourceItem,
    body: &Value,
    journal: &mut dyn FnMut(ResourceUndo),
) -> Result<(), String> {
    let at = path(item.kind, &item.name, item.pool.as_deref());
    let current = client
        .get(&at)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "it was created and deleted by someone else meanwhile".to_string())?;
    let mut patch = Map::new();
    let mut restore = Map::new();
    for (key, value) in body.as_object().into_iter().flatten() {
        if matches!(key.as_str(), "name" | "type") {
            continue;
        }
        patch.insert(key.clone(), value.clone());
        restore.insert(
            key.clone(),
            current.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    if patch.is_empty() {
        return Ok(());
    }
    journal(ResourceUndo::Restore {
        kind: item.kind,
        name: item.name.clone(),
        pool: item.pool.clone(),
        body: restore,
    });
    client
        .patch(&at, &Value::Object(patch))
        .map_err(|e| e.to_string())
}

/// Writes the ledger when what this run created or deleted changes it; journals its undo.
pub(crate) fn write_ledger(
    client: &PrefectClient,
    plan: &ResourcePlan,
    owner: &Ownership,
    progress: &Progress,
    journal: &mut dyn FnMut(ResourceUndo),
) -> Result<(), String> {
    let mut ledger = plan.ledger.clone();
    for (kind, name) in &progress.created {
        if let Some(names) = ledger.names_mut(*kind) {
            names.insert(name.clone());
        }
    }
    for (kind, name) in &progress.deleted {
        if let Some(names) = ledger.names_mut(*kind) {
            names.remove(name);
        }
    }
    if ledger == plan.ledger {
        return Ok(());
    }
    let value = ledger.to_value(owner);
    let length = crate::prefect::resources_yaml::variable_value_length(&value);
    if length > crate::prefect::resources_yaml::MAX_VARIABLE_VALUE_LENGTH {
        return Err(format!(
            "the ownership ledger '{}' would be {length} characters, over Prefect's limit for a variable's value",
            plan.ledger_name
        ));
    }
    journal(ResourceUndo::Ledger {
        name: plan.ledger_name.clone(),
        previous: plan.ledger_exists.then(|| plan.ledger.to_value(owner)),
    });
    client
        .put_variable(&plan.ledger_name, &value, &[LEDGER_TAG])
        .map_err(|e| format!("the ownership ledger '{}': {e}", plan.ledger_name))
}

/// Plays one undo; the step's text says what it did.
pub(crate) fn undo(client: &PrefectClient, undo: &ResourceUndo) -> (bool, String) {
    let outcome = |result: Result<(), ApiError>, done: String, what: &str| match result {
        Ok(()) => (true, done),
        Err(e) => (false, format!("could not {what}: {e}")),
    };
    match undo {
        ResourceUndo::DeleteCreated { kind, name, pool } => {
            let subject = title(*kind, name, pool.as_deref());
            outcome(
                client
                    .delete(&path(*kind, name, pool.as_deref()))
                    .map(|_| ()),
                format!("deleted {subject} (created by this run)"),
                &format!("delete {subject}, created by this run"),
            )
        }
        ResourceUndo::Restore {
            kind,
            name,
            pool,
            body,
        } => {
            let subject = title(*kind, name, pool.as_deref());
            let fields: Vec<&str> = body.keys().map(String::as_str).collect();
            outcome(
                client.patch(
                    &path(*kind, name, pool.as_deref()),
                    &Value::Object(body.clone()),
                ),
                format!("restored {subject}: {}", fields.join(", ")),
                &format!("restore {subject} ({})", fields.join(", ")),
            )
        }
        ResourceUndo::Recreate {
            kind,
            name,
            pool,
            snapshot,
            queues,
        } => {
            let subject = title(*kind, name, pool.as_deref());
            let result = recreate(client, *kind, pool.as_deref(), snapshot, queues);
            outcome(
                result,
                format!("re-created {subject} from its snapshot"),
                &format!("re-create {subject}"),
            )
        }
        ResourceUndo::Ledger { name, previous } => {
            let result = match previous {
                Some(value) => client.put_variable(name, value, &[LEDGER_TAG]),
                None => client.delete_variable(name),
            };
            outcome(
                result,
                format!("restored the ownership ledger '{name}'"),
                &format!("restore the ownership ledger '{name}'"),
            )
        }
    }
}

/// The create body that re-makes an object from its read snapshot; a pool's queues too.
fn recreate(
    client: &PrefectClient,
    kind: Kind,
    pool: Option<&str>,
    snapshot: &Value,
    queues: &[Value],
) -> Result<(), ApiError> {
    let keep = |keys: &[&str]| -> Value {
        Value::Object(
            keys.iter()
                .filter_map(|k| Some(((*k).to_string(), snapshot.get(*k)?.clone())))
                .collect(),
        )
    };
    let body = match kind {
        Kind::Pool => keep(&[
            "name",
            "type",
            "description",
            "base_job_template",
            "is_paused",
            "concurrency_limit",
        ]),
        Kind::Queue => keep(&[
            "name",
            "description",
            "is_paused",
            "concurrency_limit",
            "priority",
        ]),
        Kind::Limit => keep(&["name", "limit", "active", "slot_decay_per_second"]),
        Kind::Variable => keep(&["name", "value", "tags"]),
    };
    match client.post(&collection(kind, pool), &body) {
        Ok(_) => {}
        // Already back (an earlier attempt of this undo).
        Err(e) if e.status() == Some(409) => {}
        Err(e) => return Err(e),
    }
    if kind == Kind::Pool {
        let name = snapshot.get("name").and_then(Value::as_str).unwrap_or("");
        for queue in queues {
            let queue_name = queue.get("name").and_then(Value::as_str).unwrap_or("");
            let fields = |keys: &[&str]| -> Value {
                Value::Object(
                    keys.iter()
                        .filter_map(|k| Some(((*k).to_string(), queue.get(*k)?.clone())))
                        .collect(),
                )
            };
            let result = if queue_name == "default" {
                client.patch(
                    &path(Kind::Queue, queue_name, Some(name)),
                    &fields(&["description", "is_paused", "concurrency_limit", "priority"]),
                )
            } else {
                recreate(client, Kind::Queue, Some(name), queue, &[])
            };
            result?;
        }
    }
    Ok(())
}
