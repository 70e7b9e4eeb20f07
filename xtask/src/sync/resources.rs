//! Work pools (and their queues), global concurrency limits and variables: what the yaml
//! declares against what the server has, as plan items (pure). Reading the server and writing
//! it is [`crate::sync::resources_apply`]'s job.
//!
//! Ownership: these objects carry no labels, so what this project created is recorded in one
//! Prefect variable per project and prefect file, the *ledger* (`xtask-owned-…`, docs/ownership.md).
//! `--prune` deletes only what the ledger lists and the yaml no longer declares, and never a
//! pool that still has another deployment or work in progress, nor a limit a deployment uses.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{json, Map, Value};

use crate::prefect::json::python_eq;
use crate::prefect::resources_yaml::{LimitDecl, PoolDecl, QueueDecl, VariableDecl};
use crate::sync::desired::{Ownership, SourceLocation};
use crate::sync::plan::{diff_into, short, Action, FieldChange};

/// The kinds of object, in the order they are created (deleted in reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Pool,
    Queue,
    Limit,
    Variable,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Pool => "work pool",
            Kind::Queue => "queue",
            Kind::Limit => "concurrency limit",
            Kind::Variable => "variable",
        }
    }

    pub(crate) fn json_name(self) -> &'static str {
        match self {
            Kind::Pool => "work_pool",
            Kind::Queue => "queue",
            Kind::Limit => "concurrency_limit",
            Kind::Variable => "variable",
        }
    }
}

/// A work pool as the yaml asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPool {
    pub decl: PoolDecl,
    /// The base job template the yaml owns (its `job_variables` on the type's default, or its
    /// `base_job_template`); None when it states neither (an update leaves the template alone).
    pub template: Option<Value>,
    /// What a create sends: `template`, else the type's default.
    pub create_template: Value,
}

/// Everything the three sections ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredResources {
    /// The prefect file's label, for locations.
    pub file: String,
    pub pools: Vec<DesiredPool>,
    pub limits: Vec<LimitDecl>,
    pub variables: Vec<VariableDecl>,
}

impl DesiredResources {
    pub(crate) fn is_empty(&self) -> bool {
        self.pools.is_empty() && self.limits.is_empty() && self.variables.is_empty()
    }

    fn at(&self, line: usize) -> SourceLocation {
        SourceLocation {
            file: self.file.clone(),
            line,
        }
    }
}

/// What this project created, as its ledger variable records it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub pools: BTreeSet<String>,
    pub limits: BTreeSet<String>,
    pub variables: BTreeSet<String>,
}

/// Tag of every ledger variable (lists them all).
pub(crate) const LEDGER_TAG: &str = "xtask-ownership";

impl Ledger {
    /// The ledger variable's name for `owner` ([`Ownership::variable_name`]).
    pub(crate) fn variable_name(owner: &Ownership) -> String {
        owner.variable_name("xtask-owned")
    }

    /// The ledger a variable's value holds; an unreadable value reads as empty (nothing owned:
    /// the safe side for prune).
    pub(crate) fn from_value(value: &Value) -> Ledger {
        let names = |key: &str| -> BTreeSet<String> {
            value
                .get(key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ledger {
            pools: names("work_pools"),
            limits: names("concurrency_limits"),
            variables: names("variables"),
        }
    }

    pub(crate) fn to_value(&self, owner: &Ownership) -> Value {
        json!({
            "project": owner.project,
            "prefect_file": owner.prefect_file,
            "work_pools": self.pools,
            "concurrency_limits": self.limits,
            "variables": self.variables,
        })
    }

    pub(crate) fn names_mut(&mut self, kind: Kind) -> Option<&mut BTreeSet<String>> {
        match kind {
            Kind::Pool => Some(&mut self.pools),
            Kind::Limit => Some(&mut self.limits),
            Kind::Variable => Some(&mut self.variables),
            Kind::Queue => None,
        }
    }

    fn owns(&self, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::Pool => self.pools.contains(name),
            Kind::Limit => self.limits.contains(name),
            Kind::Variable => self.variables.contains(name),
            Kind::Queue => false,
        }
    }
}

/// The server's side, read in bulk by `resources_apply::read`.
#[derive(Debug, Clone, Default)]
pub struct ServerResources {
    /// Work pools by name: the declared ones and, with prune, the ledger's.
    pub pools: HashMap<String, Value>,
    /// Queues by pool name, for the pools read.
    pub queues: HashMap<String, Vec<Value>>,
    /// Global concurrency limits by name.
    pub limits: HashMap<String, Value>,
    /// Variables by name: the declared ones and, with prune, the ledger's.
    pub variables: HashMap<String, Value>,
    /// The ledger variable as read (None: this project has created nothing yet).
    pub ledger: Option<Value>,
    /// Deployments (`flow/name`, with their queue name) by work pool name, for the pools read.
    pub pool_deployments: HashMap<String, Vec<(String, String)>>,
    /// Flow runs in progress (pending, running, cancelling) by work pool name, for prune candidates.
    pub pool_runs_in_progress: HashMap<String, usize>,
    /// Deployments (`flow/name`) by the global limit they run under, for prune candidates.
    pub limit_users: HashMap<String, Vec<String>>,
}

impl ServerResources {
    pub(crate) fn ledger(&self) -> Ledger {
        self.ledger
            .as_ref()
            .and_then(|v| v.get("value"))
            .map(Ledger::from_value)
            .unwrap_or_default()
    }
}

/// The write one item makes, and what undoes it.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceOp {
    None,
    /// A POST with this body.
    Create(Value),
    /// A PATCH of these fields; `restore` puts the snapshot's values back (empty: nothing to
    /// restore, e.g. the `default` queue of a pool this run creates).
    Update {
        patch: Map<String, Value>,
        restore: Map<String, Value>,
    },
    /// A DELETE; the snapshot re-creates it (a pool with its queues).
    Delete {
        snapshot: Value,
        queues: Vec<Value>,
    },
}

/// What happens to one pool, queue, limit or variable.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceItem {
    pub kind: Kind,
    pub name: String,
    /// A queue's pool.
    pub pool: Option<String>,
    pub source: Option<SourceLocation>,
    pub action: Action,
    /// Field diffs (a base job template's leaf by leaf).
    pub changes: Vec<FieldChange>,
    pub op: ResourceOp,
}

impl ResourceItem {
    /// `work pool 'a'`, `queue 'a/urgent'`.
    pub(crate) fn title(&self) -> String {
        match &self.pool {
            Some(pool) => format!("{} '{pool}/{}'", self.kind.label(), self.name),
            None => format!("{} '{}'", self.kind.label(), self.name),
        }
    }

    pub(crate) fn write_count(&self) -> usize {
        usize::from(self.op != ResourceOp::None)
    }

    /// One line per change, as the text plan indents them.
    pub(crate) fn detail_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .changes
            .iter()
            .map(|c| {
                format!(
                    "{}: {} → {}",
                    c.path,
                    short(c.old.as_ref(), 60),
                    short(c.new.as_ref(), 60)
                )
            })
            .collect();
        if let ResourceOp::Create(body) = &self.op {
            for key in ["type", "limit", "value", "priority", "concurrency_limit"] {
                if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
                    lines.push(format!("{key}: {}", short(Some(v), 60)));
                }
            }
        }
        if let ResourceOp::Delete { .. } = self.op {
            lines.push(match self.kind {
                Kind::Queue => "no longer in the yaml's queues of its pool".to_string(),
                _ => "created by this project, no longer in the yaml (--prune)".to_string(),
            });
        }
        lines
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.json_name(),
            "name": self.name,
            "pool": self.pool,
            "action": self.action.as_str(),
            "source": self.source.as_ref().map(|s| json!({"file": s.file, "line": s.line})),
            "changes": self.changes.iter().map(|c| json!({"path": c.path, "old": c.old, "new": c.new})).collect::<Vec<_>>(),
        })
    }
}

/// The resources part of a plan: creates and updates in dependency order (pools, queues,
/// limits, variables), then deletes in reverse.
#[derive(Debug, Clone, Default)]
pub struct ResourcePlan {
    pub items: Vec<ResourceItem>,
    /// Why something is left in place or may surprise (unowned, a prune refused).
    pub warnings: Vec<String>,
    /// The ledger as read, and its variable's name.
    pub ledger: Ledger,
    pub ledger_name: String,
    pub ledger_exists: bool,
    /// The ids of the server's global limits by name (deployments reference them by id).
    pub limit_ids: HashMap<String, String>,
    /// The queues' priorities as read, by pool: giving a queue a priority another holds makes
    /// the server move the others down, so undoing a queue write puts these back too.
    pub queue_priorities: HashMap<String, Vec<(String, Value)>>,
}

impl ResourcePlan {
    pub(crate) fn has_changes(&self) -> bool {
        self.items.iter().any(|i| i.action != Action::Unchanged)
    }

    pub(crate) fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }

    pub(crate) fn write_count(&self) -> usize {
        self.items.iter().map(ResourceItem::write_count).sum()
    }

    /// The text plan's lines for the resources (empty when the yaml declares none).
    pub(crate) fn render_text(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            let location = item
                .source
                .as_ref()
                .map(|s| format!("  ({s})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{} {:<9} {}{location}\n",
                item.action.sigil(),
                item.action.as_str(),
                item.title()
            ));
            for line in item.detail_lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out
    }
}

/// The deployments (`flow/name`) the deployments' plan deletes or moves away from their current
/// work pool, queue or shared limit: what only they use may be deleted after them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leaving {
    pub pool: HashSet<String>,
    pub queue: HashSet<String>,
    pub limit: HashSet<String>,
}

/// The plan for the three sections. `prune`: also delete what the ledger lists and the yaml no
/// longer declares, unless something that stays still uses it.
pub(crate) fn plan(
    desired: &DesiredResources,
    server: &ServerResources,
    owner: &Ownership,
    prune: bool,
    leaving: &Leaving,
) -> ResourcePlan {
    let ledger = server.ledger();
    let mut out = ResourcePlan {
        ledger_name: Ledger::variable_name(owner),
        ledger_exists: server.ledger.is_some(),
        limit_ids: server
            .limits
            .iter()
            .filter_map(|(name, raw)| Some((name.clone(), raw.get("id")?.as_str()?.to_string())))
            .collect(),
        queue_priorities: server
            .queues
            .iter()
            .map(|(pool, queues)| {
                let priorities = queues
                    .iter()
                    .filter_map(|q| {
                        Some((
                            q.get("name")?.as_str()?.to_string(),
                            q.get("priority").filter(|p| !p.is_null())?.clone(),
                        ))
                    })
                    .collect();
                (pool.clone(), priorities)
            })
            .collect(),
        ..ResourcePlan::default()
    };
    let mut deletes: Vec<ResourceItem> = Vec::new();
    for want in &desired.pools {
        let have = server.pools.get(&want.decl.name);
        out.items.push(plan_pool(desired, want, have));
        if have.is_some() {
            unowned_warning(&mut out.warnings, &ledger, Kind::Pool, &want.decl.name);
        }
    }
    for want in &desired.pools {
        let Some(queues) = &want.decl.queues else {
            continue;
        };
        let have: &[Value] = server
            .queues
            .get(&want.decl.name)
            .map_or(&[], Vec::as_slice);
        let pool_is_new = !server.pools.contains_key(&want.decl.name);
        for queue in queues {
            out.items.push(plan_queue(
                desired,
                &want.decl.name,
                queue,
                have,
                pool_is_new,
            ));
        }
        for extra in have {
            let Some(name) = extra.get("name").and_then(Value::as_str) else {
                continue;
            };
            if name == "default" || queues.iter().any(|q| q.name == name) {
                continue;
            }
            let users: Vec<&str> = server
                .pool_deployments
                .get(&want.decl.name)
                .into_iter()
                .flatten()
                .filter(|(full, queue)| queue == name && !leaving.queue.contains(full))
                .map(|(full, _)| full.as_str())
                .collect();
            if !users.is_empty() {
                out.warnings.push(format!(
                    "queue '{}/{name}' is not in the yaml but is left in place: deployments still use it ({})",
                    want.decl.name,
                    users.join(", ")
                ));
                continue;
            }
            deletes.push(ResourceItem {
                kind: Kind::Queue,
                name: name.to_string(),
                pool: Some(want.decl.name.clone()),
                source: None,
                action: Action::Delete,
                changes: Vec::new(),
                op: ResourceOp::Delete {
                    snapshot: extra.clone(),
                    queues: Vec::new(),
                },
            });
        }
    }
    for want in &desired.limits {
        let have = server.limits.get(&want.name);
        out.items.push(plan_limit(desired, want, have));
        if have.is_some() {
            unowned_warning(&mut out.warnings, &ledger, Kind::Limit, &want.name);
        }
    }
    for want in &desired.variables {
        let have = server.variables.get(&want.name);
        out.items.push(plan_variable(desired, want, have));
        if have.is_some() {
            unowned_warning(&mut out.warnings, &ledger, Kind::Variable, &want.name);
        }
    }
    if prune {
        prune_items(
            desired,
            server,
            &ledger,
            leaving,
            &mut deletes,
            &mut out.warnings,
        );
    }
    // Deletes after everything else, the dependents first: variables, limits, queues, pools.
    deletes.sort_by_key(|item| std::cmp::Reverse(item.kind));
    out.items.extend(deletes);
    out.ledger = ledger;
    out
}

fn unowned_warning(warnings: &mut Vec<String>, ledger: &Ledger, kind: Kind, name: &str) {
    if !ledger.owns(kind, name) {
        warnings.push(format!(
            "{} '{name}' was not created by register-flows for this project (not in its ownership ledger): it is updated, but `--prune` will never delete it",
            kind.label()
        ));
    }
}

/// Compares the stated fields with the server's; the PATCH of those that differ and its restore.
fn diff_fields(
    fields: &Map<String, Value>,
    have: &Value,
    changes: &mut Vec<FieldChange>,
    patch: &mut Map<String, Value>,
    restore: &mut Map<String, Value>,
) {
    for (key, want) in fields {
        let old = have.get(key).cloned().unwrap_or(Value::Null);
        if !python_eq(&old, want) {
            diff_into(key, Some(&old), Some(want), changes);
            patch.insert(key.clone(), want.clone());
            restore.insert(key.clone(), old);
        }
    }
}

fn item_from(
    kind: Kind,
    name: &str,
    pool: Option<&str>,
    source: SourceLocation,
    changes: Vec<FieldChange>,
    patch: Map<String, Value>,
    restore: Map<String, Value>,
) -> ResourceItem {
    let (action, op) = if patch.is_empty() {
        (Action::Unchanged, ResourceOp::None)
    } else {
        (Action::Update, ResourceOp::Update { patch, restore })
    };
    ResourceItem {
        kind,
        name: name.to_string(),
        pool: pool.map(str::to_string),
        source: Some(source),
        action,
        changes,
        op,
    }
}

fn create_item(
    kind: Kind,
    name: &str,
    pool: Option<&str>,
    source: SourceLocation,
    body: Value,
) -> ResourceItem {
    ResourceItem {
        kind,
        name: name.to_string(),
        pool: pool.map(str::to_string),
        source: Some(source),
        action: Action::Create,
        changes: Vec::new(),
        op: ResourceOp::Create(body),
    }
}

fn plan_pool(desired: &DesiredResources, want: &DesiredPool, have: Option<&Value>) -> ResourceItem {
    let decl = &want.decl;
    let source = desired.at(decl.line);
    let Some(have) = have else {
        let mut body = Map::new();
        body.insert("name".into(), json!(decl.name));
        body.insert("type".into(), json!(decl.pool_type));
        body.insert("base_job_template".into(), want.create_template.clone());
        for (k, v) in &decl.fields {
            body.insert(k.clone(), v.clone());
        }
        return create_item(Kind::Pool, &decl.name, None, source, Value::Object(body));
    };
    let mut changes = Vec::new();
    let mut patch = Map::new();
    let mut restore = Map::new();
    diff_fields(&decl.fields, have, &mut changes, &mut patch, &mut restore);
    if let Some(template) = &want.template {
        let old = have.get("base_job_template").cloned().unwrap_or(json!({}));
        if !python_eq(&old, template) {
            // Structural: one line per differing leaf (`base_job_template.variables.properties.env.default`).
            diff_into(
                "base_job_template",
                Some(&old),
                Some(template),
                &mut changes,
            );
            patch.insert("base_job_template".into(), template.clone());
            restore.insert("base_job_template".into(), old);
        }
    }
    item_from(
        Kind::Pool,
        &decl.name,
        None,
        source,
        changes,
        patch,
        restore,
    )
}

fn plan_queue(
    desired: &DesiredResources,
    pool: &str,
    want: &QueueDecl,
    have: &[Value],
    pool_is_new: bool,
) -> ResourceItem {
    let source = desired.at(want.line);
    let found = have
        .iter()
        .find(|q| q.get("name").and_then(Value::as_str) == Some(want.name.as_str()));
    match found {
        Some(have) => {
            let mut changes = Vec::new();
            let mut patch = Map::new();
            let mut restore = Map::new();
            diff_fields(&want.fields, have, &mut changes, &mut patch, &mut restore);
            item_from(
                Kind::Queue,
                &want.name,
                Some(pool),
                source,
                changes,
                patch,
                restore,
            )
        }
        // A new pool comes with its `default` queue: set its fields, nothing to restore (the
        // pool's create is undone by deleting the pool).
        None if pool_is_new && want.name == "default" => {
            let changes = want
                .fields
                .iter()
                .map(|(k, v)| FieldChange {
                    path: k.clone(),
                    old: None,
                    new: Some(v.clone()),
                })
                .collect();
            let item = item_from(
                Kind::Queue,
                &want.name,
                Some(pool),
                source,
                changes,
                want.fields.clone(),
                Map::new(),
            );
            ResourceItem {
                action: if item.op == ResourceOp::None {
                    Action::Unchanged
                } else {
                    Action::Create
                },
                ..item
            }
        }
        None => {
            let mut body = want.fields.clone();
            body.insert("name".into(), json!(want.name));
            create_item(
                Kind::Queue,
                &want.name,
                Some(pool),
                source,
                Value::Object(body),
            )
        }
    }
}

fn plan_limit(desired: &DesiredResources, want: &LimitDecl, have: Option<&Value>) -> ResourceItem {
    let source = desired.at(want.line);
    let Some(have) = have else {
        let mut body = want.fields.clone();
        body.insert("name".into(), json!(want.name));
        return create_item(Kind::Limit, &want.name, None, source, Value::Object(body));
    };
    let mut changes = Vec::new();
    let mut patch = Map::new();
    let mut restore = Map::new();
    diff_fields(&want.fields, have, &mut changes, &mut patch, &mut restore);
    item_from(
        Kind::Limit,
        &want.name,
        None,
        source,
        changes,
        patch,
        restore,
    )
}

fn variable_fields(want: &VariableDecl) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("value".into(), want.value.clone());
    if let Some(tags) = &want.tags {
        fields.insert("tags".into(), json!(tags));
    }
    fields
}

fn plan_variable(
    desired: &DesiredResources,
    want: &VariableDecl,
    have: Option<&Value>,
) -> ResourceItem {
    let source = desired.at(want.line);
    let fields = variable_fields(want);
    let Some(have) = have else {
        let mut body = fields;
        body.insert("name".into(), json!(want.name));
        body.entry("tags").or_insert(json!([]));
        return create_item(
            Kind::Variable,
            &want.name,
            None,
            source,
            Value::Object(body),
        );
    };
    let mut changes = Vec::new();
    let mut patch = Map::new();
    let mut restore = Map::new();
    diff_fields(&fields, have, &mut changes, &mut patch, &mut restore);
    item_from(
        Kind::Variable,
        &want.name,
        None,
        source,
        changes,
        patch,
        restore,
    )
}

/// Deletes for what the ledger lists, the server has and the yaml no longer declares, except
/// what is still in use (said in a warning instead).
fn prune_items(
    desired: &DesiredResources,
    server: &ServerResources,
    ledger: &Ledger,
    leaving: &Leaving,
    out: &mut Vec<ResourceItem>,
    warnings: &mut Vec<String>,
) {
    let delete = |kind: Kind, name: &str, snapshot: &Value, queues: Vec<Value>| ResourceItem {
        kind,
        name: name.to_string(),
        pool: None,
        source: None,
        action: Action::Delete,
        changes: Vec::new(),
        op: ResourceOp::Delete {
            snapshot: snapshot.clone(),
            queues,
        },
    };
    for name in &ledger.pools {
        let (Some(snapshot), false) = (
            server.pools.get(name),
            desired.pools.iter().any(|p| &p.decl.name == name),
        ) else {
            continue;
        };
        let users: Vec<&str> = server
            .pool_deployments
            .get(name)
            .into_iter()
            .flatten()
            .map(|(full, _)| full.as_str())
            .filter(|full| !leaving.pool.contains(*full))
            .collect();
        let runs = server.pool_runs_in_progress.get(name).copied().unwrap_or(0);
        if !users.is_empty() {
            warnings.push(format!(
                "work pool '{name}' is no longer in the yaml but is not deleted: deployments still use it ({}), possibly another project's; deleting the pool would leave them without one",
                users.join(", ")
            ));
        } else if runs > 0 {
            warnings.push(format!(
                "work pool '{name}' is no longer in the yaml but is not deleted: {runs} flow run(s) in it are pending or running; prune again once they finished"
            ));
        } else {
            let queues = server.queues.get(name).cloned().unwrap_or_default();
            out.push(delete(Kind::Pool, name, snapshot, queues));
        }
    }
    for name in &ledger.limits {
        let (Some(snapshot), false) = (
            server.limits.get(name),
            desired.limits.iter().any(|l| &l.name == name),
        ) else {
            continue;
        };
        let users: Vec<&str> = server
            .limit_users
            .get(name)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|full| !leaving.limit.contains(*full))
            .collect();
        if users.is_empty() {
            out.push(delete(Kind::Limit, name, snapshot, Vec::new()));
        } else {
            warnings.push(format!(
                "concurrency limit '{name}' is no longer in the yaml but is not deleted: deployments still run under it ({})",
                users.join(", ")
            ));
        }
    }
    for name in &ledger.variables {
        if let (Some(snapshot), false) = (
            server.variables.get(name),
            desired.variables.iter().any(|v| &v.name == name),
        ) {
            out.push(delete(Kind::Variable, name, snapshot, Vec::new()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefect::resources_yaml::TemplateDecl;

    fn owner() -> Ownership {
        Ownership {
            project: "captionacc".into(),
            prefect_file: "prefect.yaml".into(),
        }
    }

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn desired() -> DesiredResources {
        let template = json!({"job_configuration": {"env": "{{ env }}"}, "variables": {"properties": {"env": {"default": {"A": "1"}}}}});
        DesiredResources {
            file: "prefect.yaml".into(),
            pools: vec![DesiredPool {
                decl: PoolDecl {
                    name: "pool".into(),
                    line: 2,
                    pool_type: "process".into(),
                    fields: fields(json!({"concurrency_limit": 4})),
                    template: TemplateDecl::Overrides(fields(json!({"env": {"A": "1"}}))),
                    queues: Some(vec![
                        QueueDecl {
                            name: "default".into(),
                            line: 8,
                            fields: fields(json!({"priority": 1})),
                        },
                        QueueDecl {
                            name: "urgent".into(),
                            line: 9,
                            fields: fields(json!({"priority": 2, "concurrency_limit": 2})),
                        },
                    ]),
                },
                template: Some(template.clone()),
                create_template: template,
            }],
            limits: vec![LimitDecl {
                name: "gpu".into(),
                line: 11,
                fields: fields(json!({"limit": 2})),
            }],
            variables: vec![VariableDecl {
                name: "model".into(),
                line: 13,
                value: json!("whisper"),
                tags: None,
            }],
        }
    }

    /// The server after `desired()` was applied, as Prefect reports it.
    fn server_like(d: &DesiredResources, ledger: &Ledger) -> ServerResources {
        let pool = &d.pools[0];
        let mut s = ServerResources::default();
        s.pools.insert(
            "pool".into(),
            json!({"name": "pool", "type": "process", "concurrency_limit": 4, "is_paused": false, "description": null, "base_job_template": pool.create_template}),
        );
        s.queues.insert(
            "pool".into(),
            vec![
                json!({"name": "default", "priority": 1, "concurrency_limit": null, "is_paused": false}),
                json!({"name": "urgent", "priority": 2, "concurrency_limit": 2, "is_paused": false}),
            ],
        );
        s.limits.insert(
            "gpu".into(),
            json!({"id": "l-1", "name": "gpu", "limit": 2, "active": true, "slot_decay_per_second": 0.0}),
        );
        s.variables.insert(
            "model".into(),
            json!({"name": "model", "value": "whisper", "tags": ["x"]}),
        );
        s.ledger = Some(json!({"value": ledger.to_value(&owner())}));
        s
    }

    fn owned_all() -> Ledger {
        Ledger {
            pools: ["pool".to_string()].into(),
            limits: ["gpu".to_string()].into(),
            variables: ["model".to_string()].into(),
        }
    }

    #[test]
    fn a_fresh_server_gets_everything_created_in_dependency_order() {
        let d = desired();
        let plan = plan(
            &d,
            &ServerResources::default(),
            &owner(),
            false,
            &Leaving::default(),
        );
        let summary: Vec<(Action, String)> =
            plan.items.iter().map(|i| (i.action, i.title())).collect();
        assert_eq!(
            summary,
            vec![
                (Action::Create, "work pool 'pool'".to_string()),
                (Action::Create, "queue 'pool/default'".to_string()),
                (Action::Create, "queue 'pool/urgent'".to_string()),
                (Action::Create, "concurrency limit 'gpu'".to_string()),
                (Action::Create, "variable 'model'".to_string()),
            ]
        );
        // The new pool's own `default` queue is patched, not created (it comes with the pool).
        assert_eq!(
            plan.items[1].op,
            ResourceOp::Update {
                patch: fields(json!({"priority": 1})),
                restore: Map::new()
            }
        );
        let ResourceOp::Create(pool) = &plan.items[0].op else {
            panic!()
        };
        assert_eq!(pool["type"], json!("process"));
        assert_eq!(pool["concurrency_limit"], json!(4));
        assert_eq!(
            pool["base_job_template"]["variables"]["properties"]["env"]["default"],
            json!({"A": "1"})
        );
        assert_eq!(plan.write_count(), 5);
        assert!(plan.warnings.is_empty());
    }

    #[test]
    fn an_applied_yaml_plans_nothing() {
        let d = desired();
        let plan = plan(
            &d,
            &server_like(&d, &owned_all()),
            &owner(),
            true,
            &Leaving::default(),
        );
        assert!(!plan.has_changes(), "{}", plan.render_text());
        assert_eq!(plan.write_count(), 0);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert_eq!(plan.limit_ids.get("gpu").map(String::as_str), Some("l-1"));
    }

    #[test]
    fn updates_diff_fields_and_templates_leaf_by_leaf_and_restore_the_snapshot() {
        let d = desired();
        let mut s = server_like(&d, &owned_all());
        let pool = s.pools.get_mut("pool").unwrap();
        pool["concurrency_limit"] = json!(8);
        pool["base_job_template"]["variables"]["properties"]["env"]["default"] =
            json!({"A": "0", "B": "2"});
        s.limits.get_mut("gpu").unwrap()["limit"] = json!(5);
        s.variables.get_mut("model").unwrap()["value"] = json!("tiny");
        let plan = plan(&d, &s, &owner(), false, &Leaving::default());
        let text = plan.render_text();
        assert!(text.contains("~ update    work pool 'pool'  (prefect.yaml:2)\n    concurrency_limit: 8 → 4\n    base_job_template.variables.properties.env.default.A: \"0\" → \"1\"\n    base_job_template.variables.properties.env.default.B: \"2\" → (absent)\n"), "{text}");
        assert!(
            text.contains(
                "~ update    concurrency limit 'gpu'  (prefect.yaml:11)\n    limit: 5 → 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("~ update    variable 'model'  (prefect.yaml:13)\n    value: \"tiny\" → \"whisper\"\n"), "{text}");
        let ResourceOp::Update { patch, restore } = &plan.items[0].op else {
            panic!()
        };
        assert_eq!(patch["concurrency_limit"], json!(4));
        assert_eq!(restore["concurrency_limit"], json!(8));
        assert_eq!(
            restore["base_job_template"]["variables"]["properties"]["env"]["default"],
            json!({"A": "0", "B": "2"})
        );
        // Tags the yaml does not state are not compared.
        assert_eq!(plan.count(Action::Update), 3);
    }

    #[test]
    fn queues_left_out_are_deleted_unless_a_deployment_uses_them() {
        let d = desired();
        let mut s = server_like(&d, &owned_all());
        let queues = s.queues.get_mut("pool").unwrap();
        queues.retain(|q| q["name"] != "urgent");
        queues.push(json!({"name": "old", "priority": 3}));
        queues.push(json!({"name": "busy", "priority": 4}));
        s.pool_deployments.insert(
            "pool".into(),
            vec![
                ("f/d".into(), "busy".into()),
                ("f/gone".into(), "old".into()),
            ],
        );
        let leaving = Leaving {
            queue: ["f/gone".to_string()].into(),
            ..Leaving::default()
        };
        let plan = plan(&d, &s, &owner(), false, &leaving);
        let summary: Vec<(Action, String)> = plan
            .items
            .iter()
            .filter(|i| i.action != Action::Unchanged)
            .map(|i| (i.action, i.title()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Action::Create, "queue 'pool/urgent'".to_string()),
                (Action::Delete, "queue 'pool/old'".to_string()),
            ]
        );
        assert_eq!(
            plan.warnings,
            vec!["queue 'pool/busy' is not in the yaml but is left in place: deployments still use it (f/d)"]
        );
    }

    #[test]
    fn prune_deletes_only_the_ledgers_unused_objects_and_says_why_not() {
        let mut d = desired();
        let s = {
            let mut s = server_like(&d, &owned_all());
            for (name, limit) in [("old-gpu", "l-2"), ("used-gpu", "l-3"), ("theirs", "l-4")] {
                s.limits
                    .insert(name.into(), json!({"id": limit, "name": name, "limit": 1}));
            }
            s.pools
                .insert("old-pool".into(), json!({"name": "old-pool"}));
            s.pools
                .insert("busy-pool".into(), json!({"name": "busy-pool"}));
            s.pools
                .insert("used-pool".into(), json!({"name": "used-pool"}));
            s.pool_runs_in_progress.insert("busy-pool".into(), 2);
            s.pool_deployments.insert(
                "used-pool".into(),
                vec![("other/dep".into(), "default".into())],
            );
            s.limit_users
                .insert("used-gpu".into(), vec!["other/dep".into()]);
            s.variables
                .insert("old_var".into(), json!({"name": "old_var", "value": 1}));
            let ledger = Ledger {
                pools: ["pool", "old-pool", "busy-pool", "used-pool", "gone-pool"]
                    .map(String::from)
                    .into(),
                limits: ["gpu", "old-gpu", "used-gpu"].map(String::from).into(),
                variables: ["model", "old_var"].map(String::from).into(),
            };
            s.ledger = Some(json!({"value": ledger.to_value(&owner())}));
            s
        };
        d.variables.clear();
        let plan = plan(&d, &s, &owner(), true, &Leaving::default());
        let deletes: Vec<String> = plan
            .items
            .iter()
            .filter(|i| i.action == Action::Delete)
            .map(ResourceItem::title)
            .collect();
        // Dependents first; `theirs` is not in the ledger, `model` is (and no longer declared).
        assert_eq!(
            deletes,
            vec![
                "variable 'model'",
                "variable 'old_var'",
                "concurrency limit 'old-gpu'",
                "work pool 'old-pool'"
            ]
        );
        assert_eq!(plan.warnings.len(), 3, "{:?}", plan.warnings);
        assert!(plan.warnings[0].starts_with(
            "work pool 'busy-pool' is no longer in the yaml but is not deleted: 2 flow run(s)"
        ));
        assert!(plan.warnings[1].starts_with("work pool 'used-pool' is no longer in the yaml but is not deleted: deployments still use it (other/dep)"));
        assert!(plan.warnings[2].starts_with("concurrency limit 'used-gpu' is no longer in the yaml but is not deleted: deployments still run under it (other/dep)"));
        // Without --prune nothing is deleted.
        let plan = super::plan(&d, &s, &owner(), false, &Leaving::default());
        assert_eq!(plan.count(Action::Delete), 0);
    }

    #[test]
    fn objects_not_in_the_ledger_are_managed_with_a_warning() {
        let d = desired();
        let plan = plan(
            &d,
            &server_like(&d, &Ledger::default()),
            &owner(),
            true,
            &Leaving::default(),
        );
        assert_eq!(plan.warnings.len(), 3);
        assert!(plan.warnings[0]
            .starts_with("work pool 'pool' was not created by register-flows for this project"));
        assert_eq!(plan.count(Action::Delete), 0);
    }

    #[test]
    fn ledger_names_are_valid_variable_names_one_per_project_and_file() {
        let a = Ledger::variable_name(&owner());
        assert!(a.starts_with("xtask-owned-captionacc-prefect-yaml-"), "{a}");
        assert_eq!(
            crate::prefect::resources_yaml::variable_name_problem(&a),
            None
        );
        let b = Ledger::variable_name(&Ownership {
            project: "CaptionAcc".into(),
            prefect_file: "prefect.yaml".into(),
        });
        assert_ne!(a, b);
        assert_eq!(
            crate::prefect::resources_yaml::variable_name_problem(&b),
            None
        );
        let ledger = owned_all();
        assert_eq!(Ledger::from_value(&ledger.to_value(&owner())), ledger);
        assert_eq!(Ledger::from_value(&json!("garbage")), Ledger::default());
    }
}
