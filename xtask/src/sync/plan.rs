//! The plan: what `register-flows` has to do to make the server match prefect.yaml, computed
//! from the desired state and the server's current deployments (pure: no I/O).
//!
//! Values are compared the way the server normalises them (a `concurrency_limit` comes back as
//! `global_concurrency_limit.limit`, a null queue as `"default"`, an rrule with a `DTSTART`), so
//! an unchanged re-run plans zero writes. The same plan is printed by `--dry-run`/`--check` and
//! executed by [`crate::sync::apply`].

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use crate::prefect::json::python_eq;
use crate::prefect::schedule;
use crate::sync::desired::{DesiredDeployment, DesiredSchedule, DesiredState, Ownership};
use crate::sync::resources::{self, Leaving, ResourceItem, ResourcePlan, ServerResources};
use crate::sync::resources_apply;
use crate::sys::redact::{SECRET_NEW, SECRET_OLD};

/// Bumped when the JSON document (docs/register-flows-json.md) changes incompatibly.
pub(crate) const JSON_SCHEMA_VERSION: u32 = 1;

/// A deployment as the server has it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDeployment {
    pub id: String,
    pub name: String,
    pub flow_name: String,
    pub owner: Option<Ownership>,
    /// The DeploymentResponse JSON: the snapshot rollback restores from.
    pub raw: Value,
}

impl ServerDeployment {
    pub(crate) fn full_name(&self) -> String {
        format!("{}/{}", self.flow_name, self.name)
    }
}

/// What the plan needs to know about the server, read in bulk.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerState {
    pub deployments: Vec<ServerDeployment>,
    /// Automations by owning deployment id; None when they were not read (no yaml states triggers).
    pub automations: Option<HashMap<String, Vec<Value>>>,
    /// The work pools, queues, global limits and variables the plan compares.
    pub resources: ServerResources,
}

impl ServerState {
    /// Joins `/deployments/filter` results with `/flows/filter` results (flow_id → flow name).
    /// `automations`: `/automations/related-to/prefect.deployment.<id>` results by deployment id,
    /// read only for deployments whose yaml states `triggers`.
    pub(crate) fn from_json(
        deployments: Vec<Value>,
        flows: &[Value],
        automations: Option<HashMap<String, Vec<Value>>>,
    ) -> Result<ServerState> {
        let flow_names: HashMap<&str, &str> = flows
            .iter()
            .filter_map(|f| Some((f.get("id")?.as_str()?, f.get("name")?.as_str()?)))
            .collect();
        let mut out = Vec::with_capacity(deployments.len());
        for raw in deployments {
            let (Some(id), Some(name), Some(flow_id)) = (
                str_of(&raw, "id"),
                str_of(&raw, "name"),
                str_of(&raw, "flow_id"),
            ) else {
                bail!("the server returned a deployment without id, name or flow_id");
            };
            let Some(flow_name) = flow_names.get(flow_id) else {
                // Its flow was not read (filtered out): not one of ours.
                continue;
            };
            out.push(ServerDeployment {
                id: id.to_string(),
                name: name.to_string(),
                flow_name: flow_name.to_string(),
                owner: raw.get("labels").and_then(Ownership::from_labels),
                raw,
            });
        }
        Ok(ServerState {
            deployments: out,
            automations,
            resources: ServerResources::default(),
        })
    }
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Delete,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Delete => "delete",
        }
    }

    pub(crate) fn sigil(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Unchanged => '=',
            Action::Delete => '-',
        }
    }
}

/// One leaf that differs: `path` is the field, dotted into objects (`parameters.limit`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub path: String,
    /// None: absent on that side.
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// One write on `/deployments/{id}/schedules`.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleOp {
    Create {
        desired: DesiredSchedule,
    },
    /// PATCH in place: keeps the schedule's id.
    Update {
        id: String,
        old: Value,
        desired: DesiredSchedule,
    },
    Delete {
        id: String,
        old: Value,
    },
}

/// What happens to one deployment. Each variant carries what executing, rendering and rolling
/// back its action needs, and nothing the action cannot have.
#[derive(Debug, Clone)]
pub enum PlanItem {
    /// In the yaml, not on the server.
    Create(DesiredDeployment),
    /// In the yaml and on the server, different.
    Update(Box<DeploymentUpdate>),
    /// In the yaml and on the server, the same: nothing to write.
    Unchanged {
        desired: DesiredDeployment,
        server: ServerDeployment,
    },
    /// On the server, marked as ours, no longer in the yaml (`--prune`).
    Delete(ServerDeployment),
}

/// The writes that make one server deployment match the yaml, and what undoes them.
#[derive(Debug, Clone)]
pub struct DeploymentUpdate {
    pub desired: DesiredDeployment,
    pub server: ServerDeployment,
    /// For display: every differing leaf.
    pub changes: Vec<FieldChange>,
    /// `PATCH /deployments/{id}` body (changed top-level fields); empty means no PATCH.
    pub patch: Map<String, Value>,
    /// The PATCH that puts the changed fields back (rollback), from the server snapshot.
    pub restore_patch: Map<String, Value>,
    pub schedule_ops: Vec<ScheduleOp>,
    /// Some when the owned automations differ from the yaml's triggers (they are deleted and the
    /// yaml's created): the automations the deployment owns now, which rollback re-creates.
    pub replaced_automations: Option<Vec<Value>>,
}

impl DeploymentUpdate {
    /// Top-level fields that change (what the result line lists).
    pub(crate) fn changed_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = Vec::new();
        for change in &self.changes {
            let top = change
                .path
                .split('.')
                .next()
                .unwrap_or(&change.path)
                .to_string();
            if !fields.contains(&top) {
                fields.push(top);
            }
        }
        if !self.schedule_ops.is_empty() {
            fields.push("schedules".into());
        }
        if self.replaced_automations.is_some() {
            fields.push("triggers".into());
        }
        fields
    }
}

impl PlanItem {
    pub(crate) fn action(&self) -> Action {
        match self {
            PlanItem::Create(_) => Action::Create,
            PlanItem::Update(_) => Action::Update,
            PlanItem::Unchanged { .. } => Action::Unchanged,
            PlanItem::Delete(_) => Action::Delete,
        }
    }

    /// The yaml's deployment; None for a deletion.
    pub(crate) fn desired(&self) -> Option<&DesiredDeployment> {
        match self {
            PlanItem::Create(desired) | PlanItem::Unchanged { desired, .. } => Some(desired),
            PlanItem::Update(update) => Some(&update.desired),
            PlanItem::Delete(_) => None,
        }
    }

    /// The server's deployment; None for a creation.
    pub(crate) fn server(&self) -> Option<&ServerDeployment> {
        match self {
            PlanItem::Create(_) => None,
            PlanItem::Update(update) => Some(&update.server),
            PlanItem::Unchanged { server, .. } | PlanItem::Delete(server) => Some(server),
        }
    }

    pub(crate) fn flow_name(&self) -> &str {
        match self {
            PlanItem::Create(desired) | PlanItem::Unchanged { desired, .. } => &desired.flow_name,
            PlanItem::Update(update) => &update.desired.flow_name,
            PlanItem::Delete(server) => &server.flow_name,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            PlanItem::Create(desired) | PlanItem::Unchanged { desired, .. } => &desired.name,
            PlanItem::Update(update) => &update.desired.name,
            PlanItem::Delete(server) => &server.name,
        }
    }

    pub(crate) fn full_name(&self) -> String {
        format!("{}/{}", self.flow_name(), self.name())
    }

    /// The update's field changes; empty for the other actions.
    pub(crate) fn changes(&self) -> &[FieldChange] {
        match self {
            PlanItem::Update(update) => &update.changes,
            _ => &[],
        }
    }

    /// The update's schedule writes; empty for the other actions.
    pub(crate) fn schedule_ops(&self) -> &[ScheduleOp] {
        match self {
            PlanItem::Update(update) => &update.schedule_ops,
            _ => &[],
        }
    }

    /// True when the update replaces the owned automations.
    pub(crate) fn triggers_changed(&self) -> bool {
        matches!(self, PlanItem::Update(update) if update.replaced_automations.is_some())
    }

    /// Top-level fields that change (what the result line lists); empty unless an update.
    pub(crate) fn changed_fields(&self) -> Vec<String> {
        match self {
            PlanItem::Update(update) => update.changed_fields(),
            _ => Vec::new(),
        }
    }

    /// How many write requests executing this item takes (flows + deployments + schedules + automations).
    pub(crate) fn write_count(&self) -> usize {
        let automations = |d: &DesiredDeployment| d.triggers.as_ref().map_or(0, Vec::len);
        match self {
            // The flow is created once per distinct flow: counted by `Plan::write_count`.
            PlanItem::Create(desired) => 1 + automations(desired),
            PlanItem::Update(update) => {
                usize::from(!update.patch.is_empty())
                    + update.schedule_ops.len()
                    + if update.replaced_automations.is_some() {
                        1 + automations(&update.desired)
                    } else {
                        0
                    }
            }
            PlanItem::Unchanged { .. } => 0,
            PlanItem::Delete(_) => 1,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub warnings: Vec<String>,
    /// Work pools, queues, global limits and variables: created and updated before the
    /// deployments, deleted after them.
    pub resources: ResourcePlan,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|i| i.action() == action).count()
    }

    /// True when executing the plan would write anything (the `--check` drift signal).
    pub(crate) fn has_changes(&self) -> bool {
        self.items.iter().any(|i| i.action() != Action::Unchanged) || self.resources.has_changes()
    }

    /// Write requests executing the plan takes (without retries).
    pub(crate) fn write_count(&self) -> usize {
        self.flows_of_creates().len()
            + self.items.iter().map(PlanItem::write_count).sum::<usize>()
            + self.resources.write_count()
    }

    /// The flows of the deployments to create, each once: apply ensures each exists first.
    pub(crate) fn flows_of_creates(&self) -> BTreeSet<&str> {
        self.items
            .iter()
            .filter_map(|i| match i {
                PlanItem::Create(desired) => Some(desired.flow_name.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Computes the plan. `prune`: also plan deletion of deployments carrying `desired.owner`'s
/// marker that the yaml no longer declares.
pub(crate) fn plan(desired: &DesiredState, server: &ServerState, prune: bool) -> Plan {
    let by_name: HashMap<(&str, &str), &ServerDeployment> = server
        .deployments
        .iter()
        .map(|d| ((d.flow_name.as_str(), d.name.as_str()), d))
        .collect();
    let mut out = Plan::default();
    for want in &desired.deployments {
        let item = match by_name.get(&(want.flow_name.as_str(), want.name.as_str())) {
            None => PlanItem::Create(want.clone()),
            Some(have) => {
                out.warnings.extend(ownership_warning(have, &desired.owner));
                let automations = server
                    .automations
                    .as_ref()
                    .map(|by_owner| by_owner.get(&have.id).map_or(&[][..], Vec::as_slice));
                diff_deployment(want, have, automations)
            }
        };
        out.items.push(item);
    }
    if prune {
        out.items
            .extend(prunable(desired, server).map(PlanItem::Delete));
    }
    let leaving = leaving(&out.items);
    out.resources = resources::plan(
        &desired.resources,
        &server.resources,
        &desired.owner,
        prune,
        &leaving,
    );
    out.warnings.extend(out.resources.warnings.iter().cloned());
    out
}

/// The deployments that stop using their work pool, queue or shared limit in this plan (deleted,
/// or changed to another): what they use now may be deleted after them.
fn leaving(items: &[PlanItem]) -> Leaving {
    let mut out = Leaving::default();
    for item in items {
        let full = item.full_name();
        match item {
            PlanItem::Delete(_) => {
                out.pool.insert(full.clone());
                out.queue.insert(full.clone());
                out.limit.insert(full);
            }
            PlanItem::Update(update) => {
                for (field, set) in [
                    ("work_pool_name", &mut out.pool),
                    ("work_queue_name", &mut out.queue),
                    ("global_concurrency_limit", &mut out.limit),
                ] {
                    if update.patch.contains_key(field) {
                        set.insert(full.clone());
                    }
                }
                if update.patch.contains_key("work_pool_name") {
                    out.queue.insert(full.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// Why updating `have` from this project may surprise: it is someone else's, or nobody's.
fn ownership_warning(have: &ServerDeployment, owner: &Ownership) -> Option<String> {
    match &have.owner {
        Some(theirs) if theirs != owner => Some(format!(
            "{} is marked as registered by {theirs}; updating it from here leaves that marker, so a `--prune` in that project could delete it",
            have.full_name()
        )),
        None => Some(format!(
            "{} was not created by register-flows (no ownership label; the API cannot add one to an existing deployment): `--prune` will never delete it",
            have.full_name()
        )),
        Some(_) => None,
    }
}

/// The server deployments marked as this project's that the yaml no longer declares.
fn prunable<'a>(
    desired: &'a DesiredState,
    server: &'a ServerState,
) -> impl Iterator<Item = ServerDeployment> + 'a {
    let wanted: HashSet<(&str, &str)> = desired
        .deployments
        .iter()
        .map(|d| (d.flow_name.as_str(), d.name.as_str()))
        .collect();
    server
        .deployments
        .iter()
        .filter(move |have| {
            have.owner.as_ref() == Some(&desired.owner)
                && !wanted.contains(&(have.flow_name.as_str(), have.name.as_str()))
        })
        .cloned()
}

fn diff_deployment(
    want: &DesiredDeployment,
    have: &ServerDeployment,
    automations: Option<&[Value]>,
) -> PlanItem {
    let mut changes = Vec::new();
    let mut patch = Map::new();
    let mut fields = want.fields.clone();
    if !fields.contains_key("global_concurrency_limit") {
        // The yaml states the deployment's own limit (or none): a shared limit it runs under
        // is detached (a null or integer `concurrency_limit` would delete or change the shared
        // limit itself).
        fields.insert("global_concurrency_limit".into(), Value::Null);
    }
    for (field, value) in &fields {
        let old = server_field(field, &have.raw);
        let new = comparable_desired(field, value);
        if !python_eq(&old, &new) {
            diff_into(field, Some(&old), Some(&new), &mut changes);
            patch.insert(field.clone(), value.clone());
        }
    }
    // Detected on the real values, shown masked: a secret's change, never the secret.
    for change in &mut changes {
        let (old, new) = want
            .secrets
            .mask_change(change.old.take(), change.new.take());
        (change.old, change.new) = (old, new);
    }
    couple_fields(&mut patch, want);
    let mut restore_patch = restore_body(&patch, &have.raw);
    if patch.contains_key("global_concurrency_limit") {
        global_limit_writes(&mut patch, &mut restore_patch, &have.raw);
    }
    let schedule_ops = match &want.schedules {
        Some(schedules) => reconcile_schedules(
            schedules,
            have.raw
                .get("schedules")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice),
        ),
        None => Vec::new(),
    };
    let replaced_automations = match (&want.triggers, automations) {
        (Some(triggers), Some(related)) => {
            let own = own_automations(related, &want.name, triggers);
            (!automations_match(triggers, &own, &have.id)).then_some(own)
        }
        _ => None,
    };
    if patch.is_empty() && schedule_ops.is_empty() && replaced_automations.is_none() {
        return PlanItem::Unchanged {
            desired: want.clone(),
            server: have.clone(),
        };
    }
    PlanItem::Update(Box::new(DeploymentUpdate {
        desired: want.clone(),
        server: have.clone(),
        changes,
        patch,
        restore_patch,
        schedule_ops,
        replaced_automations,
    }))
}

/// A change of the shared limit a deployment runs under: the PATCH drops the deployment's own
/// limit if it has one (`concurrency_limit: null`; the apply sends it before attaching, as the
/// server deletes whatever limit is attached when it sees a null limit), and the restore detaches
/// the shared limit, then re-attaches the snapshot's (its id) or re-creates its own limit.
fn global_limit_writes(
    patch: &mut Map<String, Value>,
    restore: &mut Map<String, Value>,
    raw: &Value,
) {
    let attached = raw.get("global_concurrency_limit").filter(|l| !l.is_null());
    let own = attached.is_some() && resources_apply::shared_limit_name(raw).is_none();
    restore.remove("global_concurrency_limit");
    if own {
        patch.insert("concurrency_limit".into(), Value::Null);
        restore.insert("global_concurrency_limit_id".into(), Value::Null);
        restore.insert(
            "concurrency_limit".into(),
            server_field("concurrency_limit", raw),
        );
        restore.insert(
            "concurrency_options".into(),
            server_field("concurrency_options", raw),
        );
    } else {
        restore.insert(
            "global_concurrency_limit_id".into(),
            attached
                .and_then(|l| l.get("id"))
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
}

/// Fields the server only interprets together: a queue name alone would name a pool-less legacy
/// queue, a pool alone would move to its default queue, options need their limit.
const COUPLED_FIELDS: [(&str, &str); 4] = [
    ("work_queue_name", "work_pool_name"),
    ("work_pool_name", "work_queue_name"),
    ("concurrency_options", "concurrency_limit"),
    ("concurrency_limit", "concurrency_options"),
];

/// Adds to `patch` the partner of each coupled field it holds, with its value in `values`.
fn add_partners(patch: &mut Map<String, Value>, values: &Map<String, Value>) {
    for (changed, partner) in COUPLED_FIELDS {
        if patch.contains_key(changed) && !patch.contains_key(partner) {
            if let Some(value) = values.get(partner) {
                patch.insert(partner.to_string(), value.clone());
            }
        }
    }
}

/// Completes a patch with the desired partners of coupled fields, and `version_info` with `version`.
fn couple_fields(patch: &mut Map<String, Value>, want: &DesiredDeployment) {
    add_partners(patch, &want.fields);
    if patch.contains_key("version") {
        if let Some(info) = &want.version_info {
            patch.insert("version_info".into(), info.clone());
        }
    }
}

/// After a lean create (`DesiredDeployment::lean_create_body`): the left-out fields whose value in
/// the server's response is not the one they must have, as a PATCH body. Empty on a server whose
/// create defaults are Prefect 3.9.1's; not empty on one with other defaults, or when the POST
/// upserted a deployment someone created after the plan was made.
pub(crate) fn repair_patch(defaulted: &Map<String, Value>, created: &Value) -> Map<String, Value> {
    let mut patch = Map::new();
    for (field, want) in defaulted {
        if !python_eq(
            &server_field(field, created),
            &comparable_desired(field, want),
        ) {
            patch.insert(field.clone(), want.clone());
        }
    }
    add_partners(&mut patch, defaulted);
    patch
}

/// A field of a DeploymentResponse as it compares with the desired value.
pub fn server_field(field: &str, raw: &Value) -> Value {
    match field {
        // The shared limit's name; Prefect's own `deployment:<id>` limit is the deployment's
        // integer `concurrency_limit`, not a shared one.
        "global_concurrency_limit" => {
            resources_apply::shared_limit_name(raw).map_or(Value::Null, |name| json!(name))
        }
        // Under a shared limit the deployment has no limit of its own.
        "concurrency_limit" if resources_apply::shared_limit_name(raw).is_some() => Value::Null,
        // Stored as a global concurrency limit; the response shows `concurrency_limit: null`.
        "concurrency_limit" => raw
            .get("global_concurrency_limit")
            .and_then(|gcl| gcl.get("limit"))
            .filter(|v| !v.is_null())
            .or_else(|| raw.get("concurrency_limit"))
            .cloned()
            .unwrap_or(Value::Null),
        "concurrency_options" => {
            without_nulls(raw.get("concurrency_options").unwrap_or(&Value::Null))
        }
        _ => raw.get(field).cloned().unwrap_or(Value::Null),
    }
}

fn comparable_desired(field: &str, value: &Value) -> Value {
    match field {
        // No queue means the pool's default queue, which the server reports by name.
        "work_queue_name" if value.is_null() => json!("default"),
        "concurrency_options" => without_nulls(value),
        _ => value.clone(),
    }
}

/// An object without its null members; an empty or null object becomes null.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if kept.is_empty() {
                Value::Null
            } else {
                Value::Object(kept)
            }
        }
        other => other.clone(),
    }
}

/// The PATCH body that restores the snapshot's values of the fields `patch` changes.
fn restore_body(patch: &Map<String, Value>, raw: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for field in patch.keys() {
        match field.as_str() {
            // Not stored by the OSS server: nothing to restore.
            "version_info" => {}
            "concurrency_limit" | "concurrency_options" => {
                out.insert(field.clone(), server_field(field, raw));
            }
            _ => {
                out.insert(
                    field.clone(),
                    raw.get(field).cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    out
}

/// The `POST /deployments/` body that re-creates a deleted deployment from its snapshot.
pub(crate) fn recreate_body(raw: &Value) -> Value {
    let get = |key: &str| raw.get(key).cloned().unwrap_or(Value::Null);
    let schedules: Vec<Value> = raw
        .get("schedules")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(schedule::recreate_body).collect())
        .unwrap_or_default();
    let labels: Map<String, Value> = raw
        .get("labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter(|(k, _)| !k.starts_with("prefect."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let shared_limit = resources_apply::shared_limit_name(raw).and_then(|_| {
        raw.get("global_concurrency_limit")
            .and_then(|l| l.get("id"))
            .cloned()
    });
    let mut body = json!({
        "name": get("name"),
        "flow_id": get("flow_id"),
        "paused": get("paused"),
        "schedules": schedules,
        "concurrency_limit": server_field("concurrency_limit", raw),
        "concurrency_options": server_field("concurrency_options", raw),
        "enforce_parameter_schema": get("enforce_parameter_schema"),
        "parameter_openapi_schema": get("parameter_openapi_schema"),
        "parameters": raw.get("parameters").cloned().unwrap_or(json!({})),
        "tags": raw.get("tags").cloned().unwrap_or(json!([])),
        "labels": labels,
        "pull_steps": get("pull_steps"),
        "work_queue_name": get("work_queue_name"),
        "work_pool_name": get("work_pool_name"),
        "description": get("description"),
        "path": get("path"),
        "entrypoint": get("entrypoint"),
        "job_variables": raw.get("job_variables").cloned().unwrap_or(json!({})),
        "version": get("version"),
    });
    // Under a shared limit: re-attached by id (its own limit would copy the shared one's value).
    if let (Some(id), Value::Object(map)) = (shared_limit, &mut body) {
        map.remove("concurrency_limit");
        map.insert("global_concurrency_limit_id".into(), id);
    }
    body
}

/// The writes that leave the server with exactly `desired`'s schedules, keeping every schedule
/// that already matches (its id and its scheduled runs). Deterministic, so two concurrent runs
/// that see the same server state pick the same schedules to keep.
pub(crate) fn reconcile_schedules(
    desired: &[DesiredSchedule],
    server: &[Value],
) -> Vec<ScheduleOp> {
    let mut server: Vec<&Value> = server.iter().collect();
    // Oldest first, id as tie-break: the survivor of a duplicate is the same for everyone.
    server.sort_by(|a, b| {
        let key = |s: &Value| {
            (
                str_of(s, "created").unwrap_or("").to_string(),
                str_of(s, "id").unwrap_or("").to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut used = vec![false; server.len()];
    let mut pending: Vec<&DesiredSchedule> = Vec::new();
    for want in desired {
        match (0..server.len()).find(|&i| !used[i] && schedule_equivalent(want, server[i])) {
            Some(i) => used[i] = true,
            None => pending.push(want),
        }
    }
    let mut updates = Vec::new();
    let mut creates = Vec::new();
    for want in pending {
        // Same slug: update in place. Without slug: reuse a leftover slug-less schedule
        // (a PATCH cannot clear a slug, so slugged ones are never reused for slug-less ones).
        let slot = (0..server.len()).find(|&i| {
            !used[i]
                && match &want.slug {
                    Some(slug) => str_of(server[i], "slug") == Some(slug.as_str()),
                    None => server[i].get("slug").map_or(true, Value::is_null),
                }
        });
        match slot.and_then(|i| Some((i, str_of(server[i], "id")?))) {
            Some((i, id)) => {
                used[i] = true;
                updates.push(ScheduleOp::Update {
                    id: id.to_string(),
                    old: server[i].clone(),
                    desired: want.clone(),
                });
            }
            None => creates.push(ScheduleOp::Create {
                desired: want.clone(),
            }),
        }
    }
    let mut ops: Vec<ScheduleOp> = server
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .filter_map(|(s, _)| {
            Some(ScheduleOp::Delete {
                id: str_of(s, "id")?.to_string(),
                old: (*s).clone(),
            })
        })
        .collect();
    ops.extend(updates);
    ops.extend(creates);
    ops
}

/// Does the server schedule (a DeploymentSchedule) already say what `want` says?
fn schedule_equivalent(want: &DesiredSchedule, have: &Value) -> bool {
    let have_slug = have.get("slug").and_then(Value::as_str);
    if want.slug.as_deref() != have_slug {
        return false;
    }
    if have.get("active").and_then(Value::as_bool).unwrap_or(true) != want.active {
        return false;
    }
    let have_params = have.get("parameters").cloned().unwrap_or(json!({}));
    if !python_eq(&have_params, &Value::Object(want.parameters.clone())) {
        return false;
    }
    if have.get("max_scheduled_runs").is_some_and(|v| !v.is_null()) {
        return false;
    }
    have.get("schedule")
        .is_some_and(|s| schedule_object_equivalent(want, s))
}

fn schedule_object_equivalent(want: &DesiredSchedule, have: &Value) -> bool {
    let w = &want.schedule;
    let tz = |v: &Value| v.get("timezone").cloned().unwrap_or(Value::Null);
    if let Some(cron) = w.get("cron").and_then(Value::as_str) {
        let day_or = |v: &Value| v.get("day_or").and_then(Value::as_bool).unwrap_or(true);
        return have.get("cron").and_then(Value::as_str).map(str::trim) == Some(cron.trim())
            && tz(w) == tz(have)
            && day_or(w) == day_or(have);
    }
    if let Some(interval) = w.get("interval").and_then(Value::as_f64) {
        let same_interval = have
            .get("interval")
            .and_then(Value::as_f64)
            .is_some_and(|h| (h - interval).abs() < 1e-6);
        let same_anchor = !want.anchor_explicit
            || match (
                w.get("anchor_date").and_then(Value::as_str),
                have.get("anchor_date").and_then(Value::as_str),
            ) {
                (Some(a), Some(b)) => same_instant(a, b),
                (None, None) => true,
                _ => false,
            };
        return same_interval && same_anchor && tz(w) == tz(have);
    }
    if let Some(rrule) = w.get("rrule").and_then(Value::as_str) {
        let Some(have_rrule) = have.get("rrule").and_then(Value::as_str) else {
            return false;
        };
        // Without a DTSTART in the yaml, the client or the server injects one (a fixed 2020 date,
        // or a recent one for SECONDLY/MINUTELY rules): any start matches.
        let strip = |r: &str| -> String {
            r.lines()
                .filter(|l| !l.trim_start().to_ascii_uppercase().starts_with("DTSTART"))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let same_rule = if want.anchor_explicit {
            rrule.trim() == have_rrule.trim()
        } else {
            strip(rrule) == strip(have_rrule)
        };
        return same_rule && tz(w) == tz(have);
    }
    python_eq(w, have)
}

/// Two RFC 3339 timestamps naming the same instant (`Z` vs `+00:00`, fractional zeros).
fn same_instant(a: &str, b: &str) -> bool {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The automations among those related to a deployment that its yaml triggers made: named like
/// Prefect's default (`<deployment>__automation_<n>`) or like one of the yaml's triggers. (Reads do
/// not say which automations a deployment owns; one that merely runs it is left alone.)
fn own_automations(related: &[Value], deployment_name: &str, triggers: &[Value]) -> Vec<Value> {
    let prefix = format!("{deployment_name}__automation_");
    let wanted: HashSet<&str> = triggers
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    related
        .iter()
        .filter(|a| {
            let name = a.get("name").and_then(Value::as_str).unwrap_or("");
            wanted.contains(name)
                || name
                    .strip_prefix(&prefix)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .cloned()
        .collect()
}

/// Do the deployment's automations equal the yaml's triggers? Each desired body must be contained
/// in one automation (the server adds ids and defaults), and the counts must agree.
fn automations_match(triggers: &[Value], existing: &[Value], deployment_id: &str) -> bool {
    if triggers.len() != existing.len() {
        return false;
    }
    let mut used = vec![false; existing.len()];
    triggers.iter().all(|trigger| {
        let mut want = crate::sync::desired::automation_body(trigger, deployment_id);
        if let Value::Object(map) = &mut want {
            // Not part of the read model.
            map.remove("owner_resource");
        }
        match (0..existing.len()).find(|&i| !used[i] && json_contains(&existing[i], &want)) {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        }
    })
}

/// `have` has every member of `want` with an equal value (objects recursively; arrays element-wise).
fn json_contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, wv)| match h.get(k) {
            Some(hv) => json_contains(hv, wv),
            None => wv.is_null(),
        }),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(h, w)| json_contains(h, w))
        }
        _ => python_eq(have, want),
    }
}

/// Collects the differing leaves under `path` (objects by key, same-length arrays by index).
pub(crate) fn diff_into(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    match (old, new) {
        (Some(a), Some(b)) if python_eq(a, b) => {}
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (key, value) in a {
                diff_into(&format!("{path}.{key}"), Some(value), b.get(key), out);
            }
            for (key, value) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                diff_into(&format!("{path}.{key}"), None, Some(value), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if a.len() == b.len() && a.iter().any(|v| v.is_object()) =>
        {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(&format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (None, None) => {}
        _ => out.push(FieldChange {
            path: path.to_string(),
            old: old.cloned(),
            new: new.cloned(),
        }),
    }
}

// ---- rendering ---------------------------------------------------------------------------------

/// A value in one line, shortened to about `max` characters (a string keeps its closing quote).
pub(crate) fn short(value: Option<&Value>, max: usize) -> String {
    let cut = |text: &str, max: usize| match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    };
    match value {
        None => "(absent)".to_string(),
        Some(Value::String(s)) => {
            let quoted = Value::String(s.clone()).to_string();
            format!(
                "\"{}\"",
                cut(&quoted[1..quoted.len() - 1], max.saturating_sub(2))
            )
        }
        Some(v) => cut(&v.to_string(), max),
    }
}

/// A schedule in words: `cron "0 9 * * *" (UTC)`, `interval 600s`, `rrule "…"`, plus slug/inactive.
fn describe_schedule(schedule: &Value, slug: Option<&str>, active: bool) -> String {
    let tz = schedule
        .get("timezone")
        .and_then(Value::as_str)
        .map(|tz| format!(" ({tz})"))
        .unwrap_or_default();
    let mut text = if let Some(cron) = schedule.get("cron").and_then(Value::as_str) {
        format!("cron {cron:?}{tz}")
    } else if let Some(interval) = schedule.get("interval").and_then(Value::as_f64) {
        let anchor = schedule
            .get("anchor_date")
            .and_then(Value::as_str)
            .map(|a| format!(" from {a}"))
            .unwrap_or_default();
        format!("interval {interval}s{anchor}{tz}")
    } else if let Some(rrule) = schedule.get("rrule").and_then(Value::as_str) {
        format!("rrule {rrule:?}{tz}")
    } else {
        short(Some(schedule), 80)
    };
    if let Some(slug) = slug {
        text.push_str(&format!(" [{slug}]"));
    }
    if !active {
        text.push_str(" (inactive)");
    }
    text
}

fn describe_desired_schedule(s: &DesiredSchedule) -> String {
    let mut schedule = s.schedule.clone();
    if !s.anchor_explicit {
        if let Value::Object(map) = &mut schedule {
            map.remove("anchor_date");
        }
    }
    describe_schedule(&schedule, s.slug.as_deref(), s.active)
}

fn describe_server_schedule(s: &Value) -> String {
    describe_schedule(
        s.get("schedule").unwrap_or(&Value::Null),
        s.get("slug").and_then(Value::as_str),
        s.get("active").and_then(Value::as_bool).unwrap_or(true),
    )
}

/// The readable lines of one schedule write.
pub(crate) fn describe_schedule_op(op: &ScheduleOp) -> String {
    match op {
        ScheduleOp::Create { desired } => format!("+ {}", describe_desired_schedule(desired)),
        ScheduleOp::Update { old, desired, .. } => {
            format!(
                "~ {} → {}",
                describe_server_schedule(old),
                describe_desired_schedule(desired)
            )
        }
        ScheduleOp::Delete { old, .. } => format!("- {}", describe_server_schedule(old)),
    }
}

impl Plan {
    /// The human plan, one block per pool, queue, limit or variable, then per deployment, for stderr.
    pub(crate) fn render_text(&self) -> String {
        let mut out = self.resources.render_text();
        for item in &self.items {
            render_item(item, &mut out);
        }
        out.push_str(&format!(
            "Plan: {} to create, {} to update, {} unchanged, {} to delete.\n",
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Unchanged),
            self.count(Action::Delete)
        ));
        if !self.resources.items.is_empty() {
            out.push_str(&format!(
                "Pools, queues, limits, variables: {} to create, {} to update, {} unchanged, {} to delete.\n",
                self.resources.count(Action::Create),
                self.resources.count(Action::Update),
                self.resources.count(Action::Unchanged),
                self.resources.count(Action::Delete)
            ));
        }
        out
    }

    /// The deployments part of the JSON document (docs/register-flows-json.md).
    pub(crate) fn to_json(&self) -> Value {
        let items: Vec<Value> = self.items.iter().map(item_json).collect();
        json!({
            "deployments": items,
            "summary": {
                "create": self.count(Action::Create),
                "update": self.count(Action::Update),
                "unchanged": self.count(Action::Unchanged),
                "delete": self.count(Action::Delete),
            },
            "warnings": self.warnings,
            "resources": self.resources.items.iter().map(ResourceItem::to_json).collect::<Vec<_>>(),
        })
    }
}

/// One deployment's block of the human plan.
fn render_item(item: &PlanItem, out: &mut String) {
    let location = item
        .desired()
        .map(|d| format!("  ({})", d.source))
        .unwrap_or_default();
    let action = item.action();
    out.push_str(&format!(
        "{} {:<9} {}{location}\n",
        action.sigil(),
        action.as_str(),
        item.full_name()
    ));
    for line in detail_lines(item) {
        out.push_str(&format!("    {line}\n"));
    }
}

/// What a plan item changes, one line each (field diffs, schedule writes, triggers, what a
/// delete loses): the text plan indents them, the Markdown report puts them in a code block.
pub(crate) fn detail_lines(item: &PlanItem) -> Vec<String> {
    let mut lines = change_lines(item);
    match item {
        PlanItem::Update(update) if update.replaced_automations.is_some() => {
            let n = update.desired.triggers.as_ref().map_or(0, Vec::len);
            lines.push(format!(
                "triggers: owned automations replaced by the yaml's {n}"
            ));
        }
        PlanItem::Delete(server) => {
            let schedules = server
                .raw
                .get("schedules")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            lines.push(format!(
                "no longer in the yaml; deleting it also deletes its scheduled runs ({schedules} schedule{})",
                if schedules == 1 { "" } else { "s" }
            ));
        }
        _ => {}
    }
    lines
}

/// The field diffs and schedule writes of an item (`path: old → new`, `schedules: + cron …`).
pub(crate) fn change_lines(item: &PlanItem) -> Vec<String> {
    let mut lines: Vec<String> = item
        .changes()
        .iter()
        .map(|change| {
            format!(
                "{}: {} → {}",
                change.path,
                short(change.old.as_ref(), 60),
                short(change.new.as_ref(), 60)
            )
        })
        .collect();
    for op in item.schedule_ops() {
        let text = if schedule_op_holds_secret(item, op) {
            SECRET_NEW.to_string()
        } else {
            describe_schedule_op(op)
        };
        lines.push(format!("schedules: {text}"));
    }
    lines
}

/// Whether a schedule write of `item` shows a value its templates took from a block or an
/// environment variable (a cron, or a schedule's parameters): then it is shown masked.
fn schedule_op_holds_secret(item: &PlanItem, op: &ScheduleOp) -> bool {
    let Some(secrets) = item.desired().map(|d| &d.secrets) else {
        return false;
    };
    let (old, new) = match op {
        ScheduleOp::Create { desired } => (None, Some(desired.create_body())),
        ScheduleOp::Update { old, desired, .. } => (Some(old.clone()), Some(desired.create_body())),
        ScheduleOp::Delete { old, .. } => (Some(old.clone()), None),
    };
    old.is_some_and(|v| secrets.touch(&v)) || new.is_some_and(|v| secrets.touch(&v))
}

/// What a created deployment will be: entrypoint, work pool and schedules, one line each.
pub(crate) fn create_lines(desired: &DesiredDeployment) -> Vec<String> {
    let mut lines = Vec::new();
    for (label, key) in [
        ("entrypoint", "entrypoint"),
        ("work pool", "work_pool_name"),
    ] {
        if let Some(value) = desired.fields.get(key).filter(|v| !v.is_null()) {
            let (_, shown) = desired.secrets.mask_change(None, Some(value.clone()));
            lines.push(format!("{label}: {}", short(shown.as_ref(), 60)));
        }
    }
    for schedule in desired.schedules.iter().flatten() {
        lines.push(format!(
            "schedules: + {}",
            describe_desired_schedule(schedule)
        ));
    }
    lines
}

/// One deployment in the JSON document.
fn item_json(item: &PlanItem) -> Value {
    let schedules: Vec<Value> = item
        .schedule_ops()
        .iter()
        .map(|op| {
            if schedule_op_holds_secret(item, op) {
                let mut masked = schedule_op_json(op);
                for (key, mask) in [
                    ("old", SECRET_OLD),
                    ("new", SECRET_NEW),
                    ("text", SECRET_NEW),
                ] {
                    if !masked[key].is_null() {
                        masked[key] = json!(mask);
                    }
                }
                masked
            } else {
                schedule_op_json(op)
            }
        })
        .collect();
    json!({
        "full_name": item.full_name(),
        "flow_name": item.flow_name(),
        "name": item.name(),
        "action": item.action().as_str(),
        "id": item.server().map(|s| s.id.clone()),
        "source": item.desired().map(|d| json!({"file": d.source.file, "line": d.source.line})),
        "changed_fields": item.changed_fields(),
        "changes": item.changes().iter().map(|c| json!({"path": c.path, "old": c.old, "new": c.new})).collect::<Vec<_>>(),
        "schedules": schedules,
        "triggers_changed": item.triggers_changed(),
    })
}

fn schedule_op_json(op: &ScheduleOp) -> Value {
    match op {
        ScheduleOp::Create { desired } => {
            json!({"op": "create", "id": null, "old": null, "new": desired.create_body(), "text": describe_schedule_op(op)})
        }
        ScheduleOp::Update { id, old, desired } => {
            json!({"op": "update", "id": id, "old": old, "new": desired.create_body(), "text": describe_schedule_op(op)})
        }
        ScheduleOp::Delete { id, old } => {
            json!({"op": "delete", "id": id, "old": old, "new": null, "text": describe_schedule_op(op)})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::desired::tests::{owner, sample};
    use crate::sys::redact::Secrets;

    /// What the server returns after creating `sample(name)`.
    fn server_copy(d: &DesiredDeployment, id: &str) -> ServerDeployment {
        let mut raw = d.create_body("flow-id", &owner());
        let map = raw.as_object_mut().unwrap();
        map.insert("id".into(), json!(id));
        map.insert("work_queue_name".into(), json!("default"));
        map.insert("concurrency_limit".into(), Value::Null);
        map.insert("global_concurrency_limit".into(), Value::Null);
        let schedules: Vec<Value> = d
            .schedules
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| {
                let mut body = s.create_body();
                body["id"] = json!(format!("sched-{i}"));
                body["created"] = json!(format!("2026-01-01T00:00:0{i}Z"));
                body
            })
            .collect();
        map.insert("schedules".into(), json!(schedules));
        let mut labels = owner().labels();
        labels.insert("prefect.flow.id".into(), json!("flow-id"));
        map.insert("labels".into(), Value::Object(labels));
        ServerDeployment {
            id: id.into(),
            name: d.name.clone(),
            flow_name: d.flow_name.clone(),
            owner: Some(owner()),
            raw,
        }
    }

    fn update(item: &PlanItem) -> &DeploymentUpdate {
        match item {
            PlanItem::Update(update) => update,
            other => panic!("not an update: {other:?}"),
        }
    }

    /// The server holding exactly `deployments` (no automations read).
    fn server(deployments: Vec<ServerDeployment>) -> ServerState {
        ServerState {
            deployments,
            automations: None,
            resources: Default::default(),
        }
    }

    fn state(deployments: Vec<DesiredDeployment>) -> DesiredState {
        DesiredState {
            owner: owner(),
            deployments,
            warnings: vec![],
            resources: Default::default(),
        }
    }

    /// Issue 12 item 1: a field holding a secret changes; the plan says so, in text and JSON,
    /// without either value. Other fields keep their values.
    #[test]
    fn a_changed_secret_is_shown_masked() {
        let mut old = sample("a");
        old.fields.insert(
            "job_variables".into(),
            json!({"env": {"TOKEN": "old-sentinel-0001", "MODE": "x"}}),
        );
        let have = server_copy(&old, "id-a");
        let mut want = sample("a");
        want.fields.insert(
            "job_variables".into(),
            json!({"env": {"TOKEN": "new-sentinel-0002", "MODE": "y"}}),
        );
        want.secrets = Secrets::new(["new-sentinel-0002".to_string()]);
        let plan = plan(&state(vec![want]), &server(vec![have]), false);
        let item = &plan.items[0];
        assert_eq!(item.action(), Action::Update);
        let changes: Vec<(String, Option<Value>, Option<Value>)> = item
            .changes()
            .iter()
            .map(|c| (c.path.clone(), c.old.clone(), c.new.clone()))
            .collect();
        assert_eq!(
            changes,
            [
                (
                    "job_variables.env.TOKEN".into(),
                    Some(json!("<secret>")),
                    Some(json!("<secret changed>"))
                ),
                (
                    "job_variables.env.MODE".into(),
                    Some(json!("x")),
                    Some(json!("y"))
                ),
            ]
        );
        // The write still carries the real value.
        assert_eq!(
            update(item).patch["job_variables"]["env"]["TOKEN"],
            json!("new-sentinel-0002")
        );
        let shown = format!("{}{}", plan.render_text(), plan.to_json());
        assert!(!shown.contains("sentinel"), "{shown}");
        assert!(
            shown.contains("job_variables.env.TOKEN: \"<secret>\" → \"<secret changed>\""),
            "{shown}"
        );
    }

    #[test]
    fn new_deployment_is_created_and_existing_one_unchanged() {
        let a = sample("a");
        let server = server(vec![server_copy(&a, "id-a")]);
        let plan = plan(&state(vec![a, sample("b")]), &server, false);
        assert_eq!(
            plan.items[0].action(),
            Action::Unchanged,
            "{:?}",
            plan.items[0].changes()
        );
        assert_eq!(plan.items[1].action(), Action::Create);
        assert_eq!(plan.write_count(), 2);
        assert!(plan.has_changes());
    }

    #[test]
    fn server_normalisations_are_not_differences() {
        let mut a = sample("a");
        a.fields.insert("concurrency_limit".into(), json!(3));
        a.fields.insert(
            "concurrency_options".into(),
            json!({"collision_strategy": "ENQUEUE"}),
        );
        a.fields
            .insert("parameters".into(), json!({"ratio": 1.0, "b": 2}));
        a.schedules = Some(vec![
            DesiredSchedule {
                schedule: json!({"interval": 600.0, "anchor_date": "2026-03-01T10:00:00.123456Z", "timezone": "UTC"}),
                anchor_explicit: false,
                active: true,
                parameters: Map::new(),
                slug: None,
            },
            DesiredSchedule {
                schedule: json!({"rrule": "FREQ=DAILY;COUNT=3", "timezone": "UTC"}),
                anchor_explicit: false,
                active: true,
                parameters: Map::new(),
                slug: Some("r".into()),
            },
        ]);
        let mut have = server_copy(&a, "id-a");
        have.raw["concurrency_limit"] = Value::Null;
        have.raw["global_concurrency_limit"] = json!({"limit": 3, "name": "deployment:id-a"});
        have.raw["concurrency_options"] =
            json!({"collision_strategy": "ENQUEUE", "grace_period_seconds": null});
        have.raw["parameters"] = json!({"b": 2, "ratio": 1});
        have.raw["schedules"][0]["schedule"] =
            json!({"interval": 600, "anchor_date": "2020-01-01T00:00:00Z", "timezone": "UTC"});
        have.raw["schedules"][1]["schedule"] =
            json!({"rrule": "DTSTART:20200101T000000\nFREQ=DAILY;COUNT=3", "timezone": "UTC"});
        let plan = plan(&state(vec![a]), &server(vec![have]), false);
        let item = &plan.items[0];
        assert_eq!(
            item.action(),
            Action::Unchanged,
            "{:?} {:?}",
            item.changes(),
            item.schedule_ops()
        );
        assert_eq!(plan.write_count(), 0);
    }

    #[test]
    fn one_changed_field_patches_only_that_field() {
        let a = sample("a");
        let have = server_copy(&a, "id-a");
        let mut changed = a.clone();
        changed.fields.insert("parameters".into(), json!({"n": 2}));
        let plan = plan(&state(vec![changed]), &server(vec![have]), false);
        let item = &plan.items[0];
        assert_eq!(item.action(), Action::Update);
        assert_eq!(
            Value::Object(update(item).patch.clone()),
            json!({"parameters": {"n": 2}})
        );
        assert_eq!(
            Value::Object(update(item).restore_patch.clone()),
            json!({"parameters": {"n": 1}})
        );
        assert_eq!(
            item.changes(),
            vec![FieldChange {
                path: "parameters.n".into(),
                old: Some(json!(1)),
                new: Some(json!(2))
            }]
        );
        assert_eq!(item.changed_fields(), vec!["parameters".to_string()]);
        assert!(item.schedule_ops().is_empty());
        assert!(
            plan.render_text().contains("    parameters.n: 1 → 2\n"),
            "{}",
            plan.render_text()
        );
    }

    #[test]
    fn coupled_fields_travel_together() {
        let a = sample("a");
        let have = server_copy(&a, "id-a");
        let mut changed = a.clone();
        changed
            .fields
            .insert("work_queue_name".into(), json!("fast"));
        changed.fields.insert("concurrency_limit".into(), json!(2));
        changed.fields.insert("version".into(), json!("2.0"));
        let plan = plan(&state(vec![changed]), &server(vec![have]), false);
        let patch = &update(&plan.items[0]).patch;
        for key in [
            "work_queue_name",
            "work_pool_name",
            "concurrency_limit",
            "concurrency_options",
            "version",
            "version_info",
        ] {
            assert!(patch.contains_key(key), "{key} missing from {patch:?}");
        }
        assert!(!update(&plan.items[0])
            .restore_patch
            .contains_key("version_info"));
        assert_eq!(
            update(&plan.items[0]).restore_patch["work_queue_name"],
            json!("default")
        );
        assert_eq!(
            update(&plan.items[0]).restore_patch["concurrency_limit"],
            Value::Null
        );
    }

    #[test]
    fn fields_the_yaml_does_not_own_are_left_alone() {
        let a = sample("a"); // no `paused`, no `enforce_parameter_schema`
        let mut have = server_copy(&a, "id-a");
        have.raw["paused"] = json!(true);
        have.raw["enforce_parameter_schema"] = json!(false);
        let p = plan(&state(vec![a.clone()]), &server(vec![have.clone()]), false);
        assert_eq!(p.items[0].action(), Action::Unchanged);
        let mut stated = a;
        stated.fields.insert("paused".into(), json!(false));
        let p = plan(&state(vec![stated]), &server(vec![have]), false);
        assert_eq!(
            Value::Object(update(&p.items[0]).patch.clone()),
            json!({"paused": false})
        );
    }

    fn cron(expr: &str, slug: Option<&str>) -> DesiredSchedule {
        DesiredSchedule {
            schedule: json!({"cron": expr, "timezone": "UTC", "day_or": true}),
            anchor_explicit: true,
            active: true,
            parameters: Map::new(),
            slug: slug.map(String::from),
        }
    }

    fn server_schedule(id: &str, created: &str, s: &DesiredSchedule) -> Value {
        let mut body = s.create_body();
        body["id"] = json!(id);
        body["created"] = json!(created);
        body
    }

    #[test]
    fn schedules_keep_what_matches_and_touch_only_the_rest() {
        let keep = cron("0 1 * * *", None);
        let old = cron("0 2 * * *", None);
        let server = vec![
            server_schedule("s1", "1", &keep),
            server_schedule("s2", "2", &old),
        ];
        // One kept, one changed: the changed one is updated in place, the kept one untouched.
        let ops = reconcile_schedules(&[keep.clone(), cron("0 3 * * *", None)], &server);
        assert_eq!(ops.len(), 1);
        assert!(matches!(&ops[0], ScheduleOp::Update { id, .. } if id == "s2"));
        // Removing one deletes exactly that one.
        let ops = reconcile_schedules(std::slice::from_ref(&keep), &server);
        assert!(matches!(&ops[..], [ScheduleOp::Delete { id, .. }] if id == "s2"));
        // Adding one creates it without touching the others.
        let ops = reconcile_schedules(
            &[keep.clone(), old.clone(), cron("0 4 * * *", None)],
            &server,
        );
        assert!(matches!(&ops[..], [ScheduleOp::Create { .. }]));
        // Clearing deletes all.
        assert_eq!(reconcile_schedules(&[], &server).len(), 2);
        // Same set: nothing.
        assert!(reconcile_schedules(&[old, keep], &server).is_empty());
    }

    #[test]
    fn schedules_pair_by_slug_and_drop_duplicates_deterministically() {
        let a = cron("0 1 * * *", Some("a"));
        let server = vec![
            server_schedule("s1", "1", &cron("0 9 * * *", Some("a"))),
            server_schedule("s2", "2", &cron("0 5 * * *", Some("b"))),
        ];
        let ops = reconcile_schedules(std::slice::from_ref(&a), &server);
        assert_eq!(ops.len(), 2);
        assert!(ops
            .iter()
            .any(|op| matches!(op, ScheduleOp::Update { id, .. } if id == "s1")));
        assert!(ops
            .iter()
            .any(|op| matches!(op, ScheduleOp::Delete { id, .. } if id == "s2")));
        // A slug-less desired schedule never reuses a slugged one (PATCH cannot clear a slug).
        let ops = reconcile_schedules(&[cron("0 1 * * *", None)], &server[..1]);
        assert!(
            matches!(
                &ops[..],
                [ScheduleOp::Delete { .. }, ScheduleOp::Create { .. }]
            ),
            "{ops:?}"
        );
        // Two identical schedules (a concurrent run's duplicate): the newer one goes, whatever the order read.
        let dup = cron("0 1 * * *", None);
        let server = vec![
            server_schedule("new", "2026-01-02", &dup),
            server_schedule("old", "2026-01-01", &dup),
        ];
        let ops = reconcile_schedules(std::slice::from_ref(&dup), &server);
        assert!(
            matches!(&ops[..], [ScheduleOp::Delete { id, .. }] if id == "new"),
            "{ops:?}"
        );
    }

    #[test]
    fn schedule_equivalence_details() {
        let mut interval = DesiredSchedule {
            schedule: json!({"interval": 600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"}),
            anchor_explicit: true,
            active: true,
            parameters: Map::new(),
            slug: None,
        };
        let have = json!({"schedule": {"interval": 600.0, "anchor_date": "2026-01-01T00:00:00+00:00", "timezone": "UTC"}, "active": true, "parameters": {}, "slug": null});
        assert!(schedule_equivalent(&interval, &have));
        interval.schedule["anchor_date"] = json!("2026-01-02T00:00:00Z");
        assert!(!schedule_equivalent(&interval, &have));
        interval.anchor_explicit = false;
        assert!(schedule_equivalent(&interval, &have));
        interval.active = false;
        assert!(!schedule_equivalent(&interval, &have));
        let minutely = DesiredSchedule {
            schedule: json!({"rrule": "DTSTART:20261127T045500\nFREQ=MINUTELY;INTERVAL=5", "timezone": "UTC"}),
            anchor_explicit: false,
            active: true,
            parameters: Map::new(),
            slug: None,
        };
        let stored = json!({"schedule": {"rrule": "DTSTART:20261120T100000\nFREQ=MINUTELY;INTERVAL=5", "timezone": "UTC"}, "active": true, "parameters": {}, "slug": null});
        assert!(
            schedule_equivalent(&minutely, &stored),
            "a DTSTART the yaml did not write is not compared"
        );
        let explicit = DesiredSchedule {
            anchor_explicit: true,
            ..minutely
        };
        assert!(!schedule_equivalent(&explicit, &stored));
        let c = cron("0 1 * * *", None);
        let mut have = server_schedule("x", "1", &c);
        assert!(schedule_equivalent(&c, &have));
        have["schedule"]["day_or"] = json!(false);
        assert!(!schedule_equivalent(&c, &have));
        have["schedule"]["day_or"] = json!(true);
        have["schedule"]["timezone"] = Value::Null;
        assert!(!schedule_equivalent(&c, &have));
        have["schedule"]["timezone"] = json!("UTC");
        have["parameters"] = json!({"n": 1});
        assert!(!schedule_equivalent(&c, &have));
    }

    #[test]
    fn prune_deletes_only_this_projects_deployments() {
        let a = sample("a");
        let gone = server_copy(&sample("gone"), "id-gone");
        let mut foreign = server_copy(&sample("foreign"), "id-foreign");
        foreign.owner = Some(Ownership {
            project: "other".into(),
            prefect_file: "prefect.yaml".into(),
        });
        let mut other_file = server_copy(&sample("other-file"), "id-of");
        other_file.owner = Some(Ownership {
            project: "proj".into(),
            prefect_file: "prefect-dev.yaml".into(),
        });
        let mut by_hand = server_copy(&sample("by-hand"), "id-h");
        by_hand.owner = None;
        let server = server(vec![
            server_copy(&a, "id-a"),
            gone,
            foreign,
            other_file,
            by_hand,
        ]);
        let p = plan(&state(vec![a.clone()]), &server, true);
        let deletes: Vec<&str> = p
            .items
            .iter()
            .filter(|i| i.action() == Action::Delete)
            .map(|i| i.name())
            .collect();
        assert_eq!(deletes, vec!["gone"]);
        assert!(
            p.render_text().contains("- delete    flow-a/gone"),
            "{}",
            p.render_text()
        );
        assert!(p.render_text().contains("scheduled runs"));
        // Without --prune nothing is deleted.
        let p = plan(&state(vec![a]), &server, false);
        assert_eq!(p.count(Action::Delete), 0);
    }

    #[test]
    fn unowned_deployments_are_warned_about() {
        let a = sample("a");
        let mut have = server_copy(&a, "id-a");
        have.owner = None;
        let p = plan(&state(vec![a]), &server(vec![have]), false);
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].contains("will never delete it"),
            "{}",
            p.warnings[0]
        );
    }

    fn stored_copy_named(name: &str) -> Value {
        json!({"name": name, "enabled": true, "actions": []})
    }

    #[test]
    fn triggers_compare_against_owned_automations() {
        let mut a = sample("a");
        a.triggers = Some(vec![
            json!({"name": "a__automation_1", "enabled": true, "actions": [{"type": "run-deployment", "source": "selected"}]}),
        ]);
        let have = server_copy(&a, "id-a");
        let mut stored =
            crate::sync::desired::automation_body(&a.triggers.as_ref().unwrap()[0], "id-a");
        stored["id"] = json!("auto-1");
        stored["actions"][0]["job_variables"] = Value::Null;
        stored.as_object_mut().unwrap().remove("owner_resource");
        // Someone else's automation that runs this deployment: not ours, ignored.
        let foreign = json!({"id": "auto-2", "name": "page the team", "actions": [{"type": "run-deployment", "deployment_id": "id-a"}]});
        let automations = HashMap::from([("id-a".to_string(), vec![stored.clone(), foreign])]);
        let server = ServerState {
            deployments: vec![have.clone()],
            automations: Some(automations),
            resources: Default::default(),
        };
        assert_eq!(
            plan(&state(vec![a.clone()]), &server, false).items[0].action(),
            Action::Unchanged
        );
        let mut changed = a.clone();
        changed.triggers.as_mut().unwrap()[0]["enabled"] = json!(false);
        let p = plan(&state(vec![changed]), &server, false);
        assert!(p.items[0].triggers_changed());
        assert_eq!(
            update(&p.items[0]).replaced_automations,
            Some(vec![stored]),
            "only our automation is snapshotted"
        );
        // A left-over automation of a removed trigger counts as a change.
        let mut leftover = stored_copy_named("a__automation_2");
        leftover["id"] = json!("auto-3");
        let mut with_leftover = server.clone();
        with_leftover
            .automations
            .as_mut()
            .unwrap()
            .get_mut("id-a")
            .unwrap()
            .push(leftover);
        assert!(plan(&state(vec![a.clone()]), &with_leftover, false).items[0].triggers_changed());
        let none = ServerState {
            deployments: vec![have],
            automations: Some(HashMap::new()),
            resources: Default::default(),
        };
        assert!(plan(&state(vec![a]), &none, false).items[0].triggers_changed());
    }

    #[test]
    fn a_shared_limit_is_attached_by_name_and_restored_as_it_was() {
        let mut want = sample("a");
        want.fields.remove("concurrency_limit");
        want.fields.remove("concurrency_options");
        want.fields
            .insert("global_concurrency_limit".into(), json!("gpu"));
        let gpu = json!({"id": "l-gpu", "name": "gpu", "limit": 1});
        // Already under it: unchanged (the shared limit's own `limit` is not the deployment's).
        let mut have = server_copy(&want, "id-a");
        have.raw["global_concurrency_limit"] = gpu.clone();
        assert_eq!(
            plan(
                &state(vec![want.clone()]),
                &server(vec![have.clone()]),
                false
            )
            .items[0]
                .action(),
            Action::Unchanged
        );
        // No limit before: attach; the restore detaches.
        have.raw["global_concurrency_limit"] = Value::Null;
        let p = plan(
            &state(vec![want.clone()]),
            &server(vec![have.clone()]),
            false,
        );
        let u = update(&p.items[0]);
        assert_eq!(
            Value::Object(u.patch.clone()),
            json!({"global_concurrency_limit": "gpu"})
        );
        assert_eq!(
            Value::Object(u.restore_patch.clone()),
            json!({"global_concurrency_limit_id": null})
        );
        assert_eq!(
            change_lines(&p.items[0]),
            vec!["global_concurrency_limit: null → \"gpu\""]
        );
        // Its own limit before: dropped (null limit), restored as its own limit of 3.
        have.raw["global_concurrency_limit"] =
            json!({"id": "l-own", "name": "deployment:id-a", "limit": 3});
        let p = plan(
            &state(vec![want.clone()]),
            &server(vec![have.clone()]),
            false,
        );
        let u = update(&p.items[0]);
        assert_eq!(
            Value::Object(u.patch.clone()),
            json!({"global_concurrency_limit": "gpu", "concurrency_limit": null})
        );
        assert_eq!(
            Value::Object(u.restore_patch.clone()),
            json!({"global_concurrency_limit_id": null, "concurrency_limit": 3, "concurrency_options": null})
        );
        // Someone else's shared limit before: re-attached by id.
        have.raw["global_concurrency_limit"] = json!({"id": "l-x", "name": "x", "limit": 9});
        let p = plan(&state(vec![want]), &server(vec![have.clone()]), false);
        assert_eq!(
            Value::Object(update(&p.items[0]).restore_patch.clone()),
            json!({"global_concurrency_limit_id": "l-x"})
        );
        // A pruned deployment under a shared limit comes back under it, by id.
        let body = recreate_body(&have.raw);
        assert_eq!(body["global_concurrency_limit_id"], json!("l-x"));
        assert!(body.get("concurrency_limit").is_none());
    }

    #[test]
    fn recreate_body_restores_a_deleted_deployment() {
        let mut a = sample("a");
        a.fields.insert("concurrency_limit".into(), json!(4));
        let mut have = server_copy(&a, "id-a");
        have.raw["global_concurrency_limit"] = json!({"limit": 4});
        have.raw["concurrency_limit"] = Value::Null;
        let body = recreate_body(&have.raw);
        assert_eq!(body["concurrency_limit"], json!(4));
        assert_eq!(body["labels"], Value::Object(owner().labels()));
        assert_eq!(body["schedules"][0]["schedule"]["cron"], json!("0 9 * * *"));
        assert!(body["schedules"][0].get("id").is_none());
    }

    #[test]
    fn from_json_joins_flow_names_and_owners() {
        let deployments = vec![
            json!({"id": "d1", "name": "x", "flow_id": "f1", "labels": owner().labels()}),
            json!({"id": "d2", "name": "y", "flow_id": "f-unknown"}),
        ];
        let flows = vec![json!({"id": "f1", "name": "flow-one"})];
        let s = ServerState::from_json(deployments, &flows, None).unwrap();
        assert_eq!(s.deployments.len(), 1);
        assert_eq!(s.deployments[0].full_name(), "flow-one/x");
        assert_eq!(s.deployments[0].owner, Some(owner()));
        assert!(ServerState::from_json(vec![json!({"name": "no id"})], &flows, None).is_err());
    }

    #[test]
    fn json_document_is_stable() {
        let a = sample("a");
        let mut changed = a.clone();
        changed.fields.insert("tags".into(), json!(["t", "u"]));
        let p = plan(
            &state(vec![changed, sample("b")]),
            &server(vec![server_copy(&a, "id-a")]),
            false,
        );
        let doc = p.to_json();
        assert_eq!(
            doc["summary"],
            json!({"create": 1, "update": 1, "unchanged": 0, "delete": 0})
        );
        assert_eq!(doc["deployments"][0]["action"], json!("update"));
        assert_eq!(
            doc["deployments"][0]["changes"][0],
            json!({"path": "tags", "old": ["t"], "new": ["t", "u"]})
        );
        assert_eq!(
            doc["deployments"][0]["source"],
            json!({"file": "prefect.yaml", "line": 3})
        );
        assert_eq!(doc["deployments"][1]["id"], Value::Null);
    }

    #[test]
    fn short_is_utf8_safe() {
        let v = json!("é".repeat(100));
        assert!(short(Some(&v), 10).ends_with("…\""));
        assert_eq!(short(None, 10), "(absent)");
        assert_eq!(short(Some(&json!("abcdefghij")), 6), "\"abcd…\"");
        assert_eq!(short(Some(&json!("abc")), 10), "\"abc\"");
        assert_eq!(short(Some(&json!([1, 2, 3, 4])), 4), "[1,2…");
    }

    #[test]
    fn repair_patch_fixes_only_what_the_server_defaulted_differently() {
        let defaulted = json!({"enforce_parameter_schema": true, "concurrency_limit": null, "concurrency_options": null});
        let defaulted = defaulted.as_object().unwrap();
        // Prefect 3.9.1's defaults: nothing to repair.
        let stock = json!({"enforce_parameter_schema": true, "concurrency_limit": null, "global_concurrency_limit": null, "concurrency_options": null});
        assert!(repair_patch(defaulted, &stock).is_empty());
        // Another server's defaults, or an upsert of someone else's deployment.
        let other = json!({"enforce_parameter_schema": false, "concurrency_limit": null,
            "global_concurrency_limit": {"limit": 3}, "concurrency_options": {"collision_strategy": "CANCEL_NEW"}});
        assert_eq!(
            Value::Object(repair_patch(defaulted, &other)),
            json!({"enforce_parameter_schema": true, "concurrency_limit": null, "concurrency_options": null})
        );
        let only_enforce = json!({"enforce_parameter_schema": false, "concurrency_limit": null, "concurrency_options": null});
        assert_eq!(
            Value::Object(repair_patch(defaulted, &only_enforce)),
            json!({"enforce_parameter_schema": true})
        );
        // Nothing left out, nothing to repair.
        assert!(repair_patch(&Map::new(), &other).is_empty());
    }
}
