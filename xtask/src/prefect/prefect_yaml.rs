//! prefect.yaml → validated deployment configs, pure.
//!
//! Pass 1, [`parse`]: YAML (as PyYAML reads it) plus the type checks of
//! Prefect 3.9.1's pydantic `PrefectYamlModel`, but reporting every problem at
//! once with file, line and deployment, and warning about keys Prefect drops
//! silently. Values without placeholders are also checked semantically here.
//!
//! Pass 2, [`resolve`]: after the caller fetched the blocks/variables the
//! deployment references ([`DeploymentConfig::placeholders`]), template it
//! ([`crate::prefect::template`]) and validate the result into a [`ResolvedDeployment`]
//! the desired-state builder turns into API payloads.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::prefect::json::{pydantic_bool, pydantic_bool_str};
use crate::prefect::resources_yaml::{self, Resources};
use crate::prefect::schedule::{self, ScheduleConfig};
use crate::prefect::template::{self, Placeholder, TemplateValues};
use crate::prefect::yaml::{self, Node, NodeValue};

/// Characters Prefect forbids in flow and deployment names (`BANNED_CHARACTERS`).
pub(crate) const FORBIDDEN_NAME_CHARS: &[char] = &['/', '%', '&', '>', '<'];

/// Why Prefect refuses `name` as a deployment name, if it does.
fn forbidden_name_problem(name: &str) -> Option<String> {
    let c = name.chars().find(|c| FORBIDDEN_NAME_CHARS.contains(c))?;
    let listed: Vec<String> = FORBIDDEN_NAME_CHARS.iter().map(char::to_string).collect();
    Some(format!(
        "deployment name {name:?} contains '{c}'; Prefect forbids {} in names",
        listed.join(" ")
    ))
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "prefect-version",
    "name",
    "build",
    "push",
    "pull",
    "deployments",
    "definitions",
    "work_pools",
    "concurrency_limits",
    "variables",
];
const DEPLOYMENT_KEYS: &[&str] = &[
    "name",
    "version",
    "version_type",
    "tags",
    "description",
    "schedule",
    "schedules",
    "paused",
    "concurrency_limit",
    "flow_name",
    "entrypoint",
    "parameters",
    "enforce_parameter_schema",
    "build",
    "push",
    "pull",
    "work_pool",
    "triggers",
    "sla",
];
/// Deployment fields Prefect's model types as optional strings.
const STRING_FIELDS: [&str; 5] = [
    "version",
    "version_type",
    "description",
    "flow_name",
    "entrypoint",
];
const WORK_POOL_KEYS: &[&str] = &["name", "work_queue_name", "job_variables"];
const CONCURRENCY_KEYS: &[&str] = &[
    "limit",
    "collision_strategy",
    "grace_period_seconds",
    "global",
];
/// `RunnerDeployment.version_type` values.
pub(crate) const VERSION_TYPES: &[&str] = &[
    "prefect:simple",
    "vcs:github",
    "vcs:gitlab",
    "vcs:bitbucket",
    "vcs:azuredevops",
    "vcs:git",
];
/// The server's `ConcurrencyLimitStrategy`.
pub(crate) const COLLISION_STRATEGIES: &[&str] = &["ENQUEUE", "CANCEL_NEW"];

/// One problem (error or warning), printed as `file:line:col: [deployment 'x'] message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub deployment: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if let Some(d) = &self.deployment {
            write!(f, "deployment '{d}': ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A list of problems, displayed one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A validated prefect.yaml.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefectFile {
    pub label: String,
    /// The top-level `name:` (Prefect's project name), as written.
    pub project_name: Option<String>,
    /// Named deployments in file order (unnamed ones are skipped with a warning).
    pub deployments: Vec<DeploymentConfig>,
    /// Top-level steps: `None` = absent, null or `{}`; `Some(vec![])` = explicit `[]`.
    pub build: Option<Vec<Value>>,
    pub push: Option<Vec<Value>>,
    pub pull: Option<Vec<Value>>,
    /// The `work_pools`, `concurrency_limits` and `variables` sections.
    pub resources: Resources,
    pub warnings: Vec<Diagnostic>,
}

/// One deployment as written (after YAML anchors/merge keys), not yet templated.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentConfig {
    pub name: String,
    /// Position in the file's `deployments:` list (0-based).
    pub index: usize,
    /// Line of the deployment's mapping.
    pub line: usize,
    /// The deployment mapping as JSON (keys as Prefect dumps them).
    pub raw: Map<String, Value>,
    /// `(line, col)` of every value inside the deployment, keyed by the path
    /// the templating errors use: `tags`, `tags[1]`, `work_pool.job_variables.env.X`.
    pub field_lines: BTreeMap<String, (usize, usize)>,
}

/// The work pool section after templating.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkPool {
    pub name: Option<String>,
    pub work_queue_name: Option<String>,
    pub job_variables: Map<String, Value>,
}

/// Which pull steps the deployment stores.
#[derive(Debug, Clone, PartialEq)]
pub enum PullSteps {
    /// Steps from the YAML (possibly an explicit empty list), templated like
    /// Prefect does for pull steps.
    Explicit(Vec<Value>),
    /// No pull steps anywhere: Prefect generates one (`set_working_directory`
    /// to the CWD, or `/opt/prefect[/<dir>]` for image builds); the caller decides.
    Default,
}

/// A deployment after templating and validation, with Prefect's defaults
/// applied where Prefect applies them client-side.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedDeployment {
    pub name: String,
    pub version: Option<String>,
    pub version_type: Option<String>,
    /// Every element as Python's `str()` (Prefect sends them that way).
    pub tags: Vec<String>,
    /// `None` when absent/empty: Prefect then uses the flow's docstring.
    pub description: Option<String>,
    pub entrypoint: String,
    /// As written; Prefect ignores it and uses the flow's name.
    pub flow_name: Option<String>,
    pub parameters: Map<String, Value>,
    pub work_pool: WorkPool,
    /// `None` = key absent or null (server keeps its schedules on update);
    /// `Some(vec![])` = explicit `[]`.
    pub schedules: Option<Vec<ScheduleConfig>>,
    pub paused: Option<bool>,
    pub enforce_parameter_schema: Option<bool>,
    /// As Prefect sends them: int → (Some(n), None); mapping → (limit, {collision_strategy[, grace_period_seconds]}).
    pub concurrency_limit: Option<i64>,
    pub concurrency_options: Option<Value>,
    /// `concurrency_limit: {global: NAME}`: the global concurrency limit the deployment runs under.
    pub global_concurrency_limit: Option<String>,
    pub build_steps: Vec<Value>,
    pub push_steps: Vec<Value>,
    pub pull_steps: PullSteps,
    /// Trigger specs after templating (their `parameters` untouched by step
    /// outputs), each with a `name` (default `<deployment>__automation_<i>`).
    pub triggers: Vec<Value>,
}

/// Collects problems with positions.
struct Report<'a> {
    file: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    fn error(&mut self, at: &Node, deployment: Option<&str>, message: impl Into<String>) {
        self.errors
            .push(self.diag(at.line, at.col, deployment, message.into()));
    }
    fn warn(&mut self, at: &Node, deployment: Option<&str>, message: impl Into<String>) {
        self.warnings
            .push(self.diag(at.line, at.col, deployment, message.into()));
    }
    fn diag(
        &self,
        line: usize,
        col: usize,
        deployment: Option<&str>,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            deployment: deployment.map(str::to_string),
            message,
        }
    }
}

/// Parse and validate a prefect.yaml (pass 1). Pure: `bytes` are the file's
/// contents, `file_label` names it in messages.
pub fn parse(file_label: &str, bytes: &[u8]) -> Result<PrefectFile, Diagnostics> {
    let doc = yaml::parse(file_label, bytes).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: e.file,
            line: e.line,
            col: e.col,
            deployment: None,
            message: e.message,
        }])
    })?;
    let mut report = Report {
        file: file_label,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    for w in &doc.warnings {
        report
            .warnings
            .push(report.diag(w.line, w.col, None, w.message.clone()));
    }
    let root = &doc.root;
    let NodeValue::Map(pairs) = &root.value else {
        let message = if root.is_null() {
            "the file is empty: expected a mapping with a `deployments:` list".to_string()
        } else {
            format!(
                "expected a mapping with a `deployments:` list at the top level, found {}",
                root.kind_name()
            )
        };
        return Err(Diagnostics(vec![
            report.diag(root.line, root.col, None, message)
        ]));
    };
    check_top_level_keys(pairs, &mut report);
    let build = steps_field(root.get("build"), "build", None, &mut report);
    let push = steps_field(root.get("push"), "push", None, &mut report);
    let pull = steps_field(root.get("pull"), "pull", None, &mut report);
    let deployments = deployments(root, &mut report);
    check_duplicates(&deployments, &mut report);
    let (resources, found) = resources_yaml::parse(file_label, root);
    report.errors.extend(found.errors);
    report.warnings.extend(found.warnings);
    check_references(&deployments, &resources, &mut report);
    if report.errors.is_empty() {
        Ok(PrefectFile {
            label: file_label.to_string(),
            project_name: root.get("name").and_then(Node::as_str).map(str::to_string),
            deployments,
            build,
            push,
            pull,
            resources,
            warnings: report.warnings,
        })
    } else {
        let mut all = report.errors;
        all.sort_by_key(|d| (d.line, d.col));
        Err(Diagnostics(all))
    }
}

fn check_top_level_keys(pairs: &[(Node, Node)], report: &mut Report) {
    for (key, value) in pairs {
        let k = key.key_string();
        if !TOP_LEVEL_KEYS.contains(&k.as_str()) {
            report.warn(
                key,
                None,
                format!("unknown top-level key `{k}` is ignored (Prefect drops it silently)"),
            );
        }
        if (k == "prefect-version" || k == "name")
            && !matches!(value.value, NodeValue::Null | NodeValue::Str(_))
        {
            report.error(
                value,
                None,
                format!(
                    "`{k}` must be a string, got {} (quote it: {k}: \"...\")",
                    value.kind_name()
                ),
            );
        }
    }
}

/// The named deployments of the `deployments:` list, each checked.
fn deployments(root: &Node, report: &mut Report) -> Vec<DeploymentConfig> {
    let mut deployments = Vec::new();
    match root.get("deployments") {
        None => report.errors.push(report.diag(
            root.line,
            root.col,
            None,
            "no `deployments:` list in the file".into(),
        )),
        Some(node) => match &node.value {
            NodeValue::Seq(items) if items.is_empty() => {
                report.error(node, None, "`deployments:` is empty; nothing to register")
            }
            NodeValue::Seq(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let Some(d) = deployment(item, index, report) {
                        deployments.push(d);
                    }
                }
                if deployments.is_empty() && report.errors.is_empty() {
                    report.error(
                        node,
                        None,
                        "no deployment in `deployments:` has a name; nothing to register",
                    );
                }
            }
            _ => report.error(
                node,
                None,
                format!("`deployments` must be a list, got {}", node.kind_name()),
            ),
        },
    }
    deployments
}

/// Duplicate names: Prefect would deploy the same deployment twice, the last one winning.
fn check_duplicates(deployments: &[DeploymentConfig], report: &mut Report) {
    for (i, d) in deployments.iter().enumerate() {
        // Same name with another entrypoint is usually another flow, which Prefect keeps apart.
        if let Some(first) = deployments[..i]
            .iter()
            .find(|o| o.name == d.name && o.raw.get("entrypoint") == d.raw.get("entrypoint"))
        {
            let (line, col) = d.position_of("name");
            report.errors.push(report.diag(
                line,
                col,
                Some(&d.name),
                format!(
                    "duplicate deployment (same name and entrypoint as the one at line {}); names must be unique per flow",
                    first.line
                ),
            ));
        }
    }
}

/// A deployment's queue in a declared pool whose queues the yaml lists must be one of them (or the
/// pool's `default`): register-flows deletes the queues a declared list leaves out.
fn check_references(deployments: &[DeploymentConfig], resources: &Resources, report: &mut Report) {
    for d in deployments {
        let Some(pool) = d.work_pool_name().and_then(|name| resources.pool(name)) else {
            continue;
        };
        let Some(queues) = &pool.queues else {
            continue;
        };
        let Some(queue) = d
            .raw
            .get("work_pool")
            .and_then(|wp| wp.get("work_queue_name"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        if queue != "default"
            && template::find_placeholders(queue).is_empty()
            && !queues.iter().any(|q| q.name == queue)
        {
            let (line, col) = d.position_of("work_pool.work_queue_name");
            report.errors.push(report.diag(
                line,
                col,
                Some(&d.name),
                format!(
                    "queue '{queue}' is not among the queues `work_pools` declares for pool '{}' (line {}); declare it there",
                    pool.name, pool.line
                ),
            ));
        }
    }
}

/// `build`/`push`/`pull`: a list of step mappings, a single step mapping, null or `{}`.
fn steps_field(
    node: Option<&Node>,
    key: &str,
    deployment: Option<&str>,
    report: &mut Report,
) -> Option<Vec<Value>> {
    let node = node?;
    match &node.value {
        NodeValue::Null => None,
        NodeValue::Map(pairs) if pairs.is_empty() => None,
        NodeValue::Map(_) => {
            check_step(node, key, deployment, report);
            Some(vec![node.to_json()])
        }
        NodeValue::Seq(items) => {
            for item in items {
                if matches!(item.value, NodeValue::Map(_)) {
                    check_step(item, key, deployment, report);
                } else {
                    report.error(
                        item,
                        deployment,
                        format!(
                            "each `{key}` step must be a mapping, got {}",
                            item.kind_name()
                        ),
                    );
                }
            }
            Some(items.iter().map(Node::to_json).collect())
        }
        _ => {
            report.error(
                node,
                deployment,
                format!("`{key}` must be a list of steps, got {}", node.kind_name()),
            );
            None
        }
    }
}

fn check_step(step: &Node, key: &str, deployment: Option<&str>, report: &mut Report) {
    if let NodeValue::Map(pairs) = &step.value {
        if pairs.len() != 1 {
            let names: Vec<String> = pairs.iter().map(|(k, _)| k.key_string()).collect();
            report.warn(
                step,
                deployment,
                format!(
                    "`{key}` step has {} keys ({}); a step is one `function: {{arguments}}` entry \
                     (mis-indented arguments?); Prefect fails at run time",
                    pairs.len(),
                    names.join(", ")
                ),
            );
        }
    }
}

fn deployment(item: &Node, index: usize, report: &mut Report) -> Option<DeploymentConfig> {
    let NodeValue::Map(pairs) = &item.value else {
        report.error(
            item,
            None,
            format!(
                "deployment #{} must be a mapping, got {}",
                index + 1,
                item.kind_name()
            ),
        );
        return None;
    };
    let name = deployment_name(item, index, report);
    // Validate even unnamed deployments' fields? Prefect validates them (a bad field
    // skips the file), so do the same, labelled by position.
    let label = name.clone().unwrap_or_else(|| format!("#{}", index + 1));
    let dep = Some(label.as_str());
    warn_unknown_keys(pairs, dep, report);
    check_fields(item, dep, report);
    let name = name?;
    if let (Some(problem), Some(n)) = (forbidden_name_problem(&name), item.get("name")) {
        // A templated name is checked once templated (pass 2).
        if template::find_placeholders(&name).is_empty() {
            report.error(n, dep, problem);
        }
    }
    let mut field_lines = BTreeMap::new();
    record_lines(item, "", &mut field_lines);
    let raw = match item.to_json() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Some(DeploymentConfig {
        name,
        index,
        line: item.line,
        raw,
        field_lines,
    })
}

/// The deployment's name; `None` (with a warning) when it has none, as Prefect skips it.
fn deployment_name(item: &Node, index: usize, report: &mut Report) -> Option<String> {
    match item.get("name") {
        None
        | Some(Node {
            value: NodeValue::Null,
            ..
        }) => {
            report.warn(
                item,
                None,
                format!(
                    "deployment #{} has no name and is skipped, as Prefect does",
                    index + 1
                ),
            );
            None
        }
        Some(n) => match &n.value {
            NodeValue::Str(s) if s.trim().is_empty() => {
                report.error(
                    n,
                    None,
                    format!("deployment #{} has an empty name", index + 1),
                );
                None
            }
            NodeValue::Str(s) => Some(s.clone()),
            _ => {
                report.error(
                    n,
                    None,
                    format!(
                        "deployment #{}: `name` must be a string, got {}",
                        index + 1,
                        n.kind_name()
                    ),
                );
                None
            }
        },
    }
}

fn warn_unknown_keys(pairs: &[(Node, Node)], dep: Option<&str>, report: &mut Report) {
    for (key, _) in pairs {
        let k = key.key_string();
        if !DEPLOYMENT_KEYS.contains(&k.as_str()) {
            let hint = match k.as_str() {
                "job_variables" | "work_queue_name" => format!(" (did you mean `work_pool.{k}`?)"),
                "schedule_active" | "is_schedule_active" | "is_paused" => {
                    " (use `paused:` / schedule `active:`)".to_string()
                }
                _ => String::new(),
            };
            report.warn(
                key,
                dep,
                format!(
                    "unknown deployment key `{k}` is ignored{hint} (Prefect drops it silently)"
                ),
            );
        }
    }
}

fn record_lines(node: &Node, path: &str, out: &mut BTreeMap<String, (usize, usize)>) {
    match &node.value {
        NodeValue::Map(pairs) => {
            for (k, v) in pairs {
                let key = k.key_string();
                let p = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                // Point at the key for the field itself, then recurse into the value.
                out.insert(p.clone(), (k.line, k.col));
                record_lines(v, &p, out);
            }
        }
        NodeValue::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.insert(p.clone(), (v.line, v.col));
                record_lines(v, &p, out);
            }
        }
        _ => {}
    }
}

// ------------------------------------------------------------------------------- field rules
//
// Each field's rule lives in one function below. Pass 1 applies it to the YAML node (Prefect's
// pydantic model checks the file before templating); pass 2 applies it again only where
// templating can change a value's type: a placeholder that is the whole string takes its
// value's JSON type (a variable may hold a number, a step output a list).

/// A value's type as the field rules see it: a YAML node (pass 1) or templated JSON (pass 2).
#[derive(Debug, Clone, Copy)]
enum Found<'a> {
    Null,
    Bool,
    Int(i64),
    BigInt,
    Float,
    Str(&'a str),
    Timestamp,
    List,
    Map,
}

impl<'a> Found<'a> {
    fn of_node(node: &'a Node) -> Found<'a> {
        match &node.value {
            NodeValue::Null => Found::Null,
            NodeValue::Bool(_) => Found::Bool,
            NodeValue::Int(i) => Found::Int(*i),
            NodeValue::BigInt(_) => Found::BigInt,
            NodeValue::Float(_) => Found::Float,
            NodeValue::Str(s) => Found::Str(s),
            NodeValue::Timestamp(_) => Found::Timestamp,
            NodeValue::Seq(_) => Found::List,
            NodeValue::Map(_) => Found::Map,
        }
    }

    fn of_json(value: &'a Value) -> Found<'a> {
        match value {
            Value::Null => Found::Null,
            Value::Bool(_) => Found::Bool,
            Value::Number(n) => match n.as_i64() {
                Some(i) => Found::Int(i),
                None if n.is_f64() => Found::Float,
                None => Found::BigInt,
            },
            Value::String(s) => Found::Str(s),
            Value::Array(_) => Found::List,
            Value::Object(_) => Found::Map,
        }
    }

    /// Worded like [`Node::kind_name`].
    fn kind_name(self) -> &'static str {
        match self {
            Found::Null => "null",
            Found::Bool => "a boolean",
            Found::Int(_) | Found::BigInt => "an integer",
            Found::Float => "a number",
            Found::Str(_) => "a string",
            Found::Timestamp => "a date/time",
            Found::List => "a list",
            Found::Map => "a mapping",
        }
    }
}

/// A string or nothing. `quote_hint`: the value is a YAML literal, where a number is most
/// likely an unquoted version such as `1.10`.
fn string_problem(key: &str, found: Found, quote_hint: bool) -> Option<String> {
    match found {
        Found::Null | Found::Str(_) => None,
        Found::Int(_) | Found::Float if quote_hint => Some(format!(
            "`{key}` must be a string, got {} (YAML reads `{key}: 1.10` as the number 1.1; quote it: {key}: \"...\")",
            found.kind_name()
        )),
        _ => Some(format!("`{key}` must be a string, got {}", found.kind_name())),
    }
}

/// pydantic's lax bool, or nothing.
fn bool_problem(key: &str, found: Found) -> Option<String> {
    let ok = match found {
        Found::Null | Found::Bool => true,
        Found::Int(i) => i == 0 || i == 1,
        Found::Str(s) => pydantic_bool_str(s).is_some(),
        _ => false,
    };
    (!ok).then(|| format!("`{key}` must be true or false, got {}", found.kind_name()))
}

/// `tags`: a list or nothing; a string only while a placeholder may still make it a list.
fn tags_problem(found: Found, pending: bool) -> Option<String> {
    match found {
        Found::Null | Found::List => None,
        Found::Str(_) if pending => None,
        _ => Some(format!(
            "`tags` must be a list of strings, got {}",
            found.kind_name()
        )),
    }
}

/// One element of `tags`: any scalar (Prefect sends its `str()`), not a collection or null.
fn tag_problem(found: Found) -> Option<String> {
    match found {
        Found::List | Found::Map => Some(format!(
            "each tag must be a string, got {} (an alias to a list inside `tags`?)",
            found.kind_name()
        )),
        Found::Null => Some("each tag must be a string, got null".to_string()),
        _ => None,
    }
}

/// One of the server's strategies, or nothing; a string with a placeholder is checked once templated.
fn collision_strategy_problem(found: Found, pending: bool) -> Option<String> {
    match found {
        Found::Null => None,
        Found::Str(s) if pending || COLLISION_STRATEGIES.contains(&s) => None,
        _ => Some(format!(
            "`concurrency_limit.collision_strategy` must be one of {}",
            COLLISION_STRATEGIES.join(", ")
        )),
    }
}

fn version_type_problem(version_type: &str) -> Option<String> {
    (!VERSION_TYPES.contains(&version_type)).then(|| {
        format!(
            "unknown version_type {version_type:?}; expected one of {}",
            VERSION_TYPES.join(", ")
        )
    })
}

fn has_placeholders(node: &Node) -> bool {
    !template::placeholders(&node.to_json()).is_empty()
}

// ------------------------------------------------------------------------------- pass 1

/// pydantic-equivalent type checks of one deployment (pass 1), plus the
/// semantic checks of pass 2 for values that contain no placeholders.
/// Errors about a whole field point at its key: an empty value has no position of its own.
fn check_fields(item: &Node, dep: Option<&str>, report: &mut Report) {
    check_scalars(item, dep, report);
    check_tags(item, dep, report);
    check_parameters(item, dep, report);
    check_work_pool(item, dep, report);
    check_concurrency_limit(item, dep, report);
    for key in ["build", "push", "pull"] {
        steps_field(item.get(key), key, dep, report);
    }
    check_triggers(item, dep, report);
    if let Some((k, n)) = item.entry("sla") {
        if !n.is_null() {
            report.error(
                k,
                dep,
                "SLA configuration is currently only supported on Prefect Cloud (remove `sla:`)",
            );
        }
    }
    check_schedules(item, dep, report);
    if let Some(n) = item.get("version_type") {
        if let (Some(vt), false) = (n.as_str(), has_placeholders(n)) {
            if let Some(problem) = version_type_problem(vt) {
                report.error(n, dep, problem);
            }
        }
    }
}

fn check_scalars(item: &Node, dep: Option<&str>, report: &mut Report) {
    for key in STRING_FIELDS {
        if let Some((k, v)) = item.entry(key) {
            if let Some(problem) = string_problem(key, Found::of_node(v), true) {
                report.error(k, dep, problem);
            }
        }
    }
    for key in ["paused", "enforce_parameter_schema"] {
        if let Some((k, v)) = item.entry(key) {
            if let Some(problem) = bool_problem(key, Found::of_node(v)) {
                report.error(k, dep, problem);
            }
        }
    }
}

fn check_tags(item: &Node, dep: Option<&str>, report: &mut Report) {
    let Some((k, n)) = item.entry("tags") else {
        return;
    };
    if let Some(problem) = tags_problem(Found::of_node(n), has_placeholders(n)) {
        report.error(k, dep, problem);
    }
    if let NodeValue::Seq(items) = &n.value {
        for t in items {
            if let Some(problem) = tag_problem(Found::of_node(t)) {
                report.error(t, dep, problem);
            }
        }
    }
}

fn check_parameters(item: &Node, dep: Option<&str>, report: &mut Report) {
    let Some((k, n)) = item.entry("parameters") else {
        return;
    };
    let NodeValue::Map(pairs) = &n.value else {
        report.error(k, dep, format!("`parameters` must be a mapping, got {} (remove the key or write `parameters: {{}}`)", n.kind_name()));
        return;
    };
    for (name, _) in pairs {
        if !matches!(name.value, NodeValue::Str(_)) {
            report.error(
                name,
                dep,
                format!("parameter names must be strings, got {}", name.kind_name()),
            );
        }
    }
}

fn check_work_pool(item: &Node, dep: Option<&str>, report: &mut Report) {
    let Some((key_node, n)) = item.entry("work_pool") else {
        return;
    };
    let pairs = match &n.value {
        NodeValue::Null => return,
        NodeValue::Map(pairs) => pairs,
        _ => {
            report.error(
                key_node,
                dep,
                format!("`work_pool` must be a mapping, got {}", n.kind_name()),
            );
            return;
        }
    };
    for (k, v) in pairs {
        let key = k.key_string();
        if !WORK_POOL_KEYS.contains(&key.as_str()) {
            report.warn(
                k,
                dep,
                format!("unknown work_pool key `{key}` is ignored (Prefect drops it silently)"),
            );
        } else if key == "job_variables" {
            if !matches!(v.value, NodeValue::Map(_)) {
                report.error(
                    v,
                    dep,
                    format!(
                        "`work_pool.job_variables` must be a mapping, got {}",
                        v.kind_name()
                    ),
                );
            }
        } else if let Some(problem) =
            string_problem(&format!("work_pool.{key}"), Found::of_node(v), false)
        {
            report.error(v, dep, problem);
        }
    }
}

fn check_concurrency_limit(item: &Node, dep: Option<&str>, report: &mut Report) {
    let Some((key_node, n)) = item.entry("concurrency_limit") else {
        return;
    };
    let pairs = match &n.value {
        NodeValue::Null | NodeValue::Int(_) => return,
        NodeValue::Map(pairs) => pairs,
        _ => {
            report.error(
                key_node,
                dep,
                format!(
                    "`concurrency_limit` must be an integer or a mapping with `limit`, got {}",
                    n.kind_name()
                ),
            );
            return;
        }
    };
    for (k, v) in pairs {
        let key = k.key_string();
        match key.as_str() {
            "limit" | "grace_period_seconds"
                if !matches!(v.value, NodeValue::Null | NodeValue::Int(_)) =>
            {
                report.error(
                    v,
                    dep,
                    format!(
                        "`concurrency_limit.{key}` must be an integer, got {}",
                        v.kind_name()
                    ),
                );
            }
            "collision_strategy" => {
                if let Some(problem) =
                    collision_strategy_problem(Found::of_node(v), has_placeholders(v))
                {
                    report.error(v, dep, problem);
                }
            }
            "global" => {
                if !matches!(&v.value, NodeValue::Str(s) if !s.trim().is_empty()) {
                    report.error(
                        v,
                        dep,
                        format!(
                            "`concurrency_limit.global` must name a global concurrency limit, got {}",
                            v.kind_name()
                        ),
                    );
                }
                if let Some((other, _)) = pairs.iter().find(|(k, _)| k.key_string() == "limit") {
                    report.error(
                        other,
                        dep,
                        "`concurrency_limit.global` names a shared limit; it cannot be combined with the deployment's own `limit`",
                    );
                }
                // Prefect's loader reads the mapping as a null limit with these options, and
                // refuses a null `collision_strategy`: without one, `prefect deploy` fails.
                if !pairs
                    .iter()
                    .any(|(k, v)| k.key_string() == "collision_strategy" && !v.is_null())
                {
                    report.warn(
                        k,
                        dep,
                        "`concurrency_limit: {global: …}` without `collision_strategy` makes `prefect deploy` (and --engine prefect-cli) fail; add `collision_strategy: ENQUEUE` (what the server does when the limit is full) to keep the file deployable by Prefect",
                    );
                }
            }
            k2 if !CONCURRENCY_KEYS.contains(&k2) => report.warn(
                k,
                dep,
                format!("unknown concurrency_limit key `{key}` is ignored"),
            ),
            _ => {}
        }
    }
}

fn check_triggers(item: &Node, dep: Option<&str>, report: &mut Report) {
    let Some((key_node, n)) = item.entry("triggers") else {
        return;
    };
    match &n.value {
        NodeValue::Null => {}
        NodeValue::Seq(items) => {
            for t in items {
                if !matches!(t.value, NodeValue::Map(_)) {
                    report.error(
                        t,
                        dep,
                        format!("each trigger must be a mapping, got {}", t.kind_name()),
                    );
                }
            }
        }
        _ => report.error(
            key_node,
            dep,
            format!("`triggers` must be a list, got {}", n.kind_name()),
        ),
    }
}

/// `schedule:` (legacy, one mapping) and `schedules:` (a list), each item as Prefect validates it.
fn check_schedules(item: &Node, dep: Option<&str>, report: &mut Report) {
    let list = item.entry("schedules");
    if let Some(l) = item.get("schedule") {
        match &l.value {
            NodeValue::Null => {}
            NodeValue::Map(pairs) if pairs.is_empty() => {}
            NodeValue::Map(_) => {
                if let Some((k, _)) = list {
                    report.error(
                        k,
                        dep,
                        "Both 'schedule' and 'schedules' keys are present in the deployment configuration. Please use only `schedules`.",
                    );
                }
                check_schedule_item(l, dep, report);
            }
            _ => report.error(l, dep, format!("`schedule` must be a single schedule mapping, got {} (use `schedules:` for a list)", l.kind_name())),
        }
    }
    if let Some((_, l)) = list {
        match &l.value {
            NodeValue::Null => {}
            NodeValue::Seq(items) => items
                .iter()
                .for_each(|s| check_schedule_item(s, dep, report)),
            _ => report.error(
                l,
                dep,
                format!("`schedules` must be a list, got {}", l.kind_name()),
            ),
        }
    }
}

fn check_schedule_item(node: &Node, dep: Option<&str>, report: &mut Report) {
    if !matches!(node.value, NodeValue::Map(_)) {
        report.error(
            node,
            dep,
            format!(
                "a schedule must be a mapping with one of cron, interval or rrule, got {}",
                node.kind_name()
            ),
        );
        return;
    }
    if has_placeholders(node) {
        // Only the keys can be checked before templating.
        if let NodeValue::Map(pairs) = &node.value {
            for (k, _) in pairs {
                let key = k.key_string();
                if !schedule::SCHEDULE_KEYS.contains(&key.as_str()) {
                    report.error(
                        k,
                        dep,
                        format!(
                            "unknown schedule key `{key}`; allowed: {}",
                            schedule::SCHEDULE_KEYS.join(", ")
                        ),
                    );
                }
            }
        }
        return;
    }
    if let Err(messages) = schedule::parse_schedule(&node.to_json()) {
        for m in messages {
            report.error(node, dep, format!("schedule: {m}"));
        }
    }
}

impl PrefectFile {
    /// The distinct work pools the deployments name (as written), in first-seen order.
    pub fn work_pools(&self) -> Vec<String> {
        let mut pools: Vec<String> = Vec::new();
        for pool in self
            .deployments
            .iter()
            .filter_map(DeploymentConfig::work_pool_name)
        {
            if !pools.iter().any(|p| p == pool) {
                pools.push(pool.to_string());
            }
        }
        pools
    }
}

impl DeploymentConfig {
    /// The shared limit of `concurrency_limit: {global: NAME}` as written, if any.
    pub fn global_limit_name(&self) -> Option<&str> {
        self.raw
            .get("concurrency_limit")
            .and_then(|c| c.get("global"))
            .and_then(Value::as_str)
    }

    /// `work_pool.name` as written (before templating), if it is a string.
    pub fn work_pool_name(&self) -> Option<&str> {
        self.raw
            .get("work_pool")
            .and_then(|wp| wp.get("name"))
            .and_then(Value::as_str)
    }

    /// Every distinct placeholder [`resolve`] will template (build/push/pull
    /// excluded: pull steps keep blocks and variables for the worker), so the
    /// caller can fetch the blocks and variables it needs first.
    pub fn placeholders(&self) -> Vec<Placeholder> {
        let templated: Map<String, Value> = self
            .raw
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "build" | "push" | "pull"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        template::placeholders(&Value::Object(templated))
    }

    /// `(line, col)` for a templating/validation path, falling back to its parents.
    pub(crate) fn position_of(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.field_lines.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (self.line, 1),
            }
        }
    }
}

/// Pass-2 problems of one deployment, located through its recorded positions.
struct Located<'a> {
    file: &'a str,
    deployment: &'a DeploymentConfig,
    errors: Vec<Diagnostic>,
}

impl Located<'_> {
    fn error(&mut self, path: &str, message: String) {
        let (line, col) = self.deployment.position_of(path);
        self.errors.push(Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            deployment: Some(self.deployment.name.clone()),
            message,
        });
    }

    fn into_result(mut self) -> Result<(), Diagnostics> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| (e.line, e.col));
        Err(Diagnostics(self.errors))
    }
}

/// Template and validate one deployment (pass 2). Types pass 1 fixed are taken as they are;
/// only values a placeholder could change are checked again.
pub fn resolve(
    file: &PrefectFile,
    deployment: &DeploymentConfig,
    values: &TemplateValues,
) -> Result<ResolvedDeployment, Diagnostics> {
    let d = deployment;
    let mut errors = Located {
        file: &file.label,
        deployment: d,
        errors: Vec::new(),
    };
    // Steps are chosen from the raw config, before templating (Prefect captures them first).
    let (build_steps, push_steps) = build_and_push_steps(file, d);
    let pull_steps = match pull_choice(&d.raw, file.pull.as_ref()) {
        Some(steps) => PullSteps::Explicit(
            match template::resolve_pull_steps(&Value::Array(steps), values) {
                Value::Array(items) => items,
                _ => Vec::new(),
            },
        ),
        None => PullSteps::Default,
    };
    let templated = match template::resolve_deployment(&Value::Object(d.raw.clone()), values) {
        Ok(Value::Object(m)) => m,
        Ok(_) => Map::new(),
        Err(template_errors) => {
            for e in template_errors {
                errors.error(&e.path, e.message);
            }
            // In the templating's order (the order of the placeholders in the file).
            return Err(Diagnostics(errors.errors));
        }
    };
    let fields = Templated(&templated);

    let name = match templated.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => d.name.clone(),
    };
    if let Some(problem) = forbidden_name_problem(&name) {
        errors.error("name", problem);
    }
    let version = fields.string("version", &mut errors);
    let version_type = fields.string("version_type", &mut errors);
    if let Some(problem) = version_type.as_deref().and_then(version_type_problem) {
        errors.error("version_type", problem);
    }
    let description = fields
        .string("description", &mut errors)
        .filter(|s| !s.is_empty());
    let flow_name = fields.string("flow_name", &mut errors);
    let entrypoint = resolved_entrypoint(fields.string("entrypoint", &mut errors), &mut errors);
    let tags = fields.tags(&mut errors);
    let work_pool = fields.work_pool(&mut errors);
    let (concurrency_limit, concurrency_options) = fields.concurrency(&mut errors);
    let global_concurrency_limit = fields.global_concurrency_limit(&mut errors);
    let schedules = fields.schedules(&mut errors);
    let parameters = match templated.get("parameters") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let triggers = fields.triggers(&name);
    errors.into_result()?;
    Ok(ResolvedDeployment {
        name,
        version,
        version_type,
        tags,
        description,
        entrypoint,
        flow_name,
        parameters,
        work_pool,
        schedules,
        paused: fields.get("paused").and_then(pydantic_bool),
        enforce_parameter_schema: fields
            .get("enforce_parameter_schema")
            .and_then(pydantic_bool),
        concurrency_limit,
        concurrency_options,
        global_concurrency_limit,
        build_steps,
        push_steps,
        pull_steps,
        triggers,
    })
}

/// An entrypoint Prefect can split into file and function.
fn resolved_entrypoint(entrypoint: Option<String>, errors: &mut Located) -> String {
    match entrypoint {
        Some(e) if !e.trim().is_empty() => {
            if e.contains(".py") && !e.contains(':') {
                errors.error("entrypoint", format!("entrypoint {e:?} must name the flow function: path/to/file.py:flow_function"));
            }
            e
        }
        _ => {
            errors.error(
                "entrypoint",
                "An entrypoint must be provided: `entrypoint: path/to/file.py:flow_function`"
                    .to_string(),
            );
            String::new()
        }
    }
}

/// The templated deployment mapping.
struct Templated<'a>(&'a Map<String, Value>);

impl Templated<'_> {
    /// The value of `key`, null counting as absent.
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str, errors: &mut Located) -> Option<String> {
        let value = self.get(key)?;
        if let Some(problem) = string_problem(key, Found::of_json(value), false) {
            errors.error(key, problem);
        }
        value.as_str().map(str::to_string)
    }

    /// Every element as Python's `str()` (Prefect sends them that way).
    fn tags(&self, errors: &mut Located) -> Vec<String> {
        let Some(value) = self.get("tags") else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            if let Some(problem) = tags_problem(Found::of_json(value), false) {
                errors.error("tags", problem);
            }
            return Vec::new();
        };
        let mut tags = Vec::new();
        for (i, t) in items.iter().enumerate() {
            match tag_problem(Found::of_json(t)) {
                Some(problem) => errors.error(&format!("tags[{i}]"), problem),
                None => tags.push(crate::prefect::python_text::value_str(t)),
            }
        }
        tags
    }

    fn work_pool(&self, errors: &mut Located) -> WorkPool {
        let mut work_pool = WorkPool::default();
        let Some(Value::Object(wp)) = self.get("work_pool") else {
            return work_pool;
        };
        let mut string = |k: &str| {
            let value = wp.get(k).filter(|v| !v.is_null())?;
            let path = format!("work_pool.{k}");
            if let Some(problem) = string_problem(&path, Found::of_json(value), false) {
                errors.error(&path, problem);
            }
            value.as_str().map(str::to_string)
        };
        work_pool.name = string("name").filter(|s| !s.is_empty());
        work_pool.work_queue_name = string("work_queue_name");
        if let Some(Value::Object(jv)) = wp.get("job_variables") {
            work_pool.job_variables = jv.clone();
        }
        work_pool
    }

    /// The name in `concurrency_limit: {global: NAME}`.
    fn global_concurrency_limit(&self, errors: &mut Located) -> Option<String> {
        let Some(Value::Object(spec)) = self.get("concurrency_limit") else {
            return None;
        };
        match spec.get("global")? {
            Value::String(name) if !name.trim().is_empty() => Some(name.clone()),
            other => {
                errors.error(
                    "concurrency_limit.global",
                    format!(
                        "`concurrency_limit.global` must name a global concurrency limit, got {}",
                        Found::of_json(other).kind_name()
                    ),
                );
                None
            }
        }
    }

    /// As Prefect sends them: int → (Some(n), None); mapping → (limit, {collision_strategy[, grace_period_seconds]}).
    /// A `global` mapping has no limit of its own (the deployment runs under the named shared
    /// limit), only its options.
    fn concurrency(&self, errors: &mut Located) -> (Option<i64>, Option<Value>) {
        let spec = match self.get("concurrency_limit") {
            // A shared limit: the options (what to do when it is full) are still the deployment's.
            Some(Value::Object(spec))
                if spec.contains_key("global")
                    && spec.get("collision_strategy").map_or(true, Value::is_null) =>
            {
                return (None, None)
            }
            Some(Value::Object(spec)) => spec,
            Some(Value::Number(n)) => return (n.as_i64(), None),
            _ => return (None, None),
        };
        let limit = spec.get("limit").and_then(Value::as_i64);
        let strategy = spec
            .get("collision_strategy")
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(problem) = collision_strategy_problem(Found::of_json(&strategy), false) {
            errors.error("concurrency_limit.collision_strategy", problem);
        }
        let mut options = Map::new();
        options.insert("collision_strategy".into(), strategy);
        if let Some(g) = spec.get("grace_period_seconds").filter(|g| !g.is_null()) {
            options.insert("grace_period_seconds".into(), g.clone());
        }
        (limit, Some(Value::Object(options)))
    }

    /// `None` = no schedules stated (key absent or null); a legacy `schedule:` (a non-empty
    /// mapping) becomes a one-item list.
    fn schedules(&self, errors: &mut Located) -> Option<Vec<ScheduleConfig>> {
        let (key, items) = match (self.0.get("schedule"), self.0.get("schedules")) {
            (Some(Value::Object(m)), _) if !m.is_empty() => {
                ("schedule", vec![Value::Object(m.clone())])
            }
            (_, Some(Value::Array(items))) => ("schedules", items.clone()),
            _ => return None,
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match schedule::parse_schedule(item) {
                Ok(s) => out.push(s),
                Err(messages) => {
                    let path = if key == "schedule" {
                        key.to_string()
                    } else {
                        format!("{key}[{i}]")
                    };
                    for m in messages {
                        errors.error(&path, format!("schedule: {m}"));
                    }
                }
            }
        }
        Some(out)
    }

    /// Trigger specs, each with a `name` (default `<deployment>__automation_<i>`).
    fn triggers(&self, deployment_name: &str) -> Vec<Value> {
        let Some(Value::Array(items)) = self.get("triggers") else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut t = t.clone();
                if let Value::Object(m) = &mut t {
                    if !m.contains_key("name") {
                        m.insert(
                            "name".into(),
                            Value::String(format!("{deployment_name}__automation_{}", i + 1)),
                        );
                    }
                }
                t
            })
            .collect()
    }
}

/// The build and push steps `prefect deploy` runs for a deployment, as written (not templated).
///
/// Build: the deployment's `build` when the key is present (even null or `[]`: none), else the
/// top level's. Push: the same, except that an empty deployment-level `push` (null, `{}`, `[]`)
/// falls back to the top level's (`push_steps or actions.get("push")` in Prefect 3.9.1).
pub(crate) fn build_and_push_steps(
    file: &PrefectFile,
    d: &DeploymentConfig,
) -> (Vec<Value>, Vec<Value>) {
    let build = steps_choice(&d.raw, "build", file.build.as_ref()).unwrap_or_default();
    let push = steps_choice(&d.raw, "push", file.push.as_ref())
        .filter(|steps| !steps.is_empty())
        .or_else(|| file.push.clone())
        .unwrap_or_default();
    (build, push)
}

/// Deployment-level steps win when the key is present (even null); else top level.
fn steps_choice(
    raw: &Map<String, Value>,
    key: &str,
    top: Option<&Vec<Value>>,
) -> Option<Vec<Value>> {
    match raw.get(key) {
        Some(v) => steps_of(v),
        None => top.cloned(),
    }
}

fn steps_of(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(items) => Some(items.clone()),
        Value::Object(m) if !m.is_empty() => Some(vec![v.clone()]),
        _ => None,
    }
}

/// Prefect's pull selection: an explicit `[]` (deployment first, else top
/// level) means none; otherwise the first non-empty of deployment, top level;
/// `None` = generate the default.
fn pull_choice(raw: &Map<String, Value>, top: Option<&Vec<Value>>) -> Option<Vec<Value>> {
    let deployment = raw.get("pull").map(steps_of);
    let explicit_empty = match &deployment {
        Some(d) => matches!(d, Some(v) if v.is_empty()),
        None => matches!(top, Some(v) if v.is_empty()),
    };
    if explicit_empty {
        return Some(Vec::new());
    }
    deployment
        .flatten()
        .filter(|v| !v.is_empty())
        .or_else(|| top.filter(|v| !v.is_empty()).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(src: &str) -> PrefectFile {
        parse("prefect.yaml", src.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errs(src: &str) -> String {
        parse("prefect.yaml", src.as_bytes())
            .expect_err("should fail")
            .to_string()
    }

    fn resolved(src: &str) -> ResolvedDeployment {
        let f = ok(src);
        resolve(&f, &f.deployments[0], &TemplateValues::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str =
        "deployments:\n- name: d\n  entrypoint: flows/a.py:f\n  work_pool: {name: pool}\n";

    #[test]
    fn minimal_deployment_resolves_with_prefect_defaults() {
        let r = resolved(BASE);
        assert_eq!(r.name, "d");
        assert_eq!(r.entrypoint, "flows/a.py:f");
        assert_eq!(r.work_pool.name.as_deref(), Some("pool"));
        assert_eq!(r.tags, Vec::<String>::new());
        assert_eq!(r.parameters, Map::new());
        assert_eq!(r.schedules, None);
        assert_eq!(r.paused, None);
        assert_eq!(r.pull_steps, PullSteps::Default);
        assert_eq!(
            (r.concurrency_limit, r.concurrency_options.clone()),
            (None, None)
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_lines() {
        let src = "\
deployments:
- name: a
  version: 1.10
  tags: {x: 1}
  parameters:
  schedules:
  - cron: '0 9 * * *'
    max_active_runs: 1
  entrypoint: flows/a.py:f
- name: a/b
  entrypoint: flows/a.py:f
  sla: [{duration: 10}]
- name: a
  entrypoint: flows/a.py:f
";
        let e = errs(src);
        let lines: Vec<&str> = e.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l
                    .starts_with("prefect.yaml:3:3: deployment 'a': `version` must be a string")),
            "{e}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("prefect.yaml:4:3: deployment 'a': `tags`")),
            "{e}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":5:3:") && l.contains("`parameters` must be a mapping")),
            "{e}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":7:5:") && l.contains("max_active_runs")),
            "{e}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("deployment 'a/b'") && l.contains("forbids")),
            "{e}"
        );
        assert!(lines.iter().any(|l| l.contains("SLA")), "{e}");
        assert!(lines.iter().any(|l| l.starts_with("prefect.yaml:13:3: deployment 'a': duplicate deployment (same name and entrypoint as the one at line 2)")), "{e}");
    }

    #[test]
    fn file_level_errors() {
        assert!(errs("").contains("the file is empty"));
        assert!(errs("# nothing\n").contains("the file is empty"));
        assert!(errs("- a\n").contains("top level"));
        assert!(errs("name: x\n").contains("no `deployments:`"));
        assert!(errs("deployments: []\n").contains("empty"));
        assert!(errs("deployments:\n- name: null\n").contains("no deployment"));
        assert!(errs("deployments: {a: 1}\n").contains("must be a list"));
        assert!(errs("prefect-version: 3.0\ndeployments:\n- name: a\n")
            .contains("`prefect-version` must be a string"));
        let e = errs("deployments:\n- name: a\n  tags: [*nope]\n");
        assert!(e.starts_with("prefect.yaml:3:"), "{e}");
    }

    #[test]
    fn warnings_for_silently_dropped_keys_and_unnamed() {
        let f = ok("\
definitions:
  x: &x 1
env: {A: 1}
deployments:
- entrypoint: flows/a.py:f
- name: d
  entrypoint: flows/a.py:f
  job_variables: {a: 1}
  work_pool: {name: p, type: process}
  is_schedule_active: true
  pull:
  - prefect.deployments.steps.git_clone:
    repository: x
");
        assert_eq!(f.deployments.len(), 1);
        let w: Vec<String> = f.warnings.iter().map(ToString::to_string).collect();
        let all = w.join("\n");
        assert!(
            all.contains("prefect.yaml:3:1: unknown top-level key `env`"),
            "{all}"
        );
        assert!(!all.contains("`definitions`"), "{all}");
        assert!(
            all.contains("deployment #1 has no name and is skipped"),
            "{all}"
        );
        assert!(all.contains("deployment 'd': unknown deployment key `job_variables` is ignored (did you mean `work_pool.job_variables`?)"), "{all}");
        assert!(all.contains("unknown work_pool key `type`"), "{all}");
        assert!(all.contains("is_schedule_active"), "{all}");
        assert!(all.contains("step has 2 keys"), "{all}");
    }

    #[test]
    fn project_name_and_work_pools_as_written() {
        // `deploy --local` reads its pools here. It used to read them with a YAML 1.2 loader,
        // which has no merge keys: `b` below had no pool there, and no worker polled `prod`.
        let f = ok("\
name: proj
definitions:
  prod: &prod
    work_pool: {name: prod}
deployments:
- name: a
  entrypoint: a.py:f
  work_pool: {name: p1}
- <<: *prod
  name: b
  entrypoint: a.py:f
- name: c
  entrypoint: a.py:f
  work_pool: {name: p1}
- name: d
  entrypoint: a.py:f
");
        assert_eq!(f.project_name.as_deref(), Some("proj"));
        let pools: Vec<Option<&str>> = f
            .deployments
            .iter()
            .map(DeploymentConfig::work_pool_name)
            .collect();
        assert_eq!(pools, [Some("p1"), Some("prod"), Some("p1"), None]);
        assert_eq!(f.work_pools(), ["p1", "prod"]);
        assert_eq!(ok(BASE).project_name, None);
    }

    #[test]
    fn the_repository_files_name_their_pools() {
        for file in ["prefect.yaml", "prefect-dev.yaml"] {
            let bytes = std::fs::read(crate::project::repo_root().join(file)).expect("read");
            let f = parse(file, &bytes).unwrap_or_else(|e| panic!("{e}"));
            assert!(f.deployments.len() >= 2, "{file}");
            assert_eq!(f.work_pools().len(), 1, "{file}");
        }
    }

    #[test]
    fn duplicate_yaml_keys_warn_and_last_wins() {
        let f = ok("deployments:\n- name: d\n  entrypoint: a.py:f\n  tags: [a]\n  tags: [b]\n");
        assert_eq!(f.deployments[0].raw["tags"], json!(["b"]));
        assert!(f
            .warnings
            .iter()
            .any(|w| w.line == 5 && w.message.contains("duplicate key 'tags'")));
    }

    #[test]
    fn schedules_legacy_and_list_forms() {
        let r = resolved(&format!(
            "{BASE}  schedule: {{cron: '0 9 * * *', timezone: America/New_York}}\n"
        ));
        assert_eq!(r.schedules.as_ref().map(Vec::len), Some(1));
        let r = resolved(&format!("{BASE}  schedules: []\n"));
        assert_eq!(r.schedules, Some(vec![]));
        let r = resolved(&format!("{BASE}  schedules: null\n  schedule: {{}}\n"));
        assert_eq!(r.schedules, None);
        let r = resolved(&format!(
            "{BASE}  schedule: null\n  schedules:\n  - interval: 600\n  - rrule: FREQ=DAILY\n"
        ));
        assert_eq!(r.schedules.as_ref().map(Vec::len), Some(2));
        let e = errs(&format!(
            "{BASE}  schedule: {{cron: '0 9 * * *'}}\n  schedules: []\n"
        ));
        assert!(e.contains("Both 'schedule' and 'schedules'"), "{e}");
        let e = errs(&format!("{BASE}  schedule: []\n"));
        assert!(
            e.contains("`schedule` must be a single schedule mapping"),
            "{e}"
        );
        let e = errs(&format!(
            "{BASE}  schedules:\n  - cron: not a cron\n  - interval: 60\n    timezone: Mars/Base\n"
        ));
        assert!(
            e.contains(":6:5: deployment 'd': schedule: Invalid cron string"),
            "{e}"
        );
        assert!(
            e.contains(":7:5: deployment 'd': schedule: Invalid timezone: \"Mars/Base\""),
            "{e}"
        );
    }

    #[test]
    fn templated_values_are_validated_after_templating() {
        let src = "deployments:\n- name: d\n  entrypoint: '{{ $EP }}'\n  version: '{{ $V }}'\n  schedules:\n  - cron: '{{ $CRON }}'\n  work_pool:\n    name: '{{ $POOL }}'\n    job_variables: {image: '{{ build-image.image }}'}\n";
        let f = ok(src);
        let d = &f.deployments[0];
        let names: Vec<String> = d.placeholders().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["$EP", "$V", "$CRON", "$POOL", "build-image.image"]);
        let mut v = TemplateValues::default();
        v.env.insert("EP".into(), "flows/a.py:f".into());
        v.env.insert("V".into(), "1.2".into());
        v.env.insert("CRON".into(), "0 9 * * *".into());
        v.env.insert("POOL".into(), "pool".into());
        v.step_outputs
            .insert("build-image".into(), json!({"image": "reg/img:tag"}));
        let r = resolve(&f, d, &v).unwrap();
        assert_eq!(r.entrypoint, "flows/a.py:f");
        assert_eq!(r.version.as_deref(), Some("1.2"));
        assert_eq!(r.work_pool.name.as_deref(), Some("pool"));
        assert_eq!(r.work_pool.job_variables["image"], "reg/img:tag");
        // A bad value behind a placeholder is caught in pass 2, at the right line.
        v.env.insert("CRON".into(), "every day".into());
        let e = resolve(&f, d, &v).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "prefect.yaml:6:5: deployment 'd': schedule: Invalid cron string: \"every day\""
            ),
            "{e}"
        );
        // A missing env var names the placeholder and the line.
        v.env.remove("POOL");
        let e = resolve(&f, d, &v).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "prefect.yaml:8:5: deployment 'd': environment variable `POOL` is not set"
            ),
            "{e}"
        );
    }

    #[test]
    fn one_rule_per_field_before_and_after_templating() {
        // A whole-string placeholder takes its value's type: the same rule, the same words.
        let src = "deployments:\n- name: d\n  entrypoint: flows/a.py:f\n  version: '{{ prefect.variables.v }}'\n  tags: '{{ prefect.variables.t }}'\n  concurrency_limit: {limit: 1, collision_strategy: '{{ prefect.variables.c }}'}\n";
        let f = ok(src);
        let mut v = TemplateValues::default();
        v.variables.insert("v".into(), Some(json!(2)));
        v.variables.insert("t".into(), Some(json!("etl")));
        v.variables.insert("c".into(), Some(json!("QUEUE")));
        let e = resolve(&f, &f.deployments[0], &v).unwrap_err().to_string();
        assert_eq!(
            e,
            "prefect.yaml:4:3: deployment 'd': `version` must be a string, got an integer\n\
             prefect.yaml:5:3: deployment 'd': `tags` must be a list of strings, got a string\n\
             prefect.yaml:6:33: deployment 'd': `concurrency_limit.collision_strategy` must be one of ENQUEUE, CANCEL_NEW"
        );
        // Written literally, the same problems are found before templating.
        let e = errs("deployments:\n- name: d\n  entrypoint: flows/a.py:f\n  version: 2\n  tags: etl\n  concurrency_limit: {limit: 1, collision_strategy: QUEUE}\n");
        assert!(
            e.contains(
                ":4:3: deployment 'd': `version` must be a string, got an integer (YAML reads"
            ),
            "{e}"
        );
        assert!(
            e.contains(":5:3: deployment 'd': `tags` must be a list of strings, got a string"),
            "{e}"
        );
        assert!(
            e.contains(
                ":6:53: deployment 'd': `concurrency_limit.collision_strategy` must be one of"
            ),
            "{e}"
        );
        assert!(errs(&format!("{BASE}  tags: [a, null]\n"))
            .contains("each tag must be a string, got null"));
        let e = errs("deployments:\n- name: a/b\n  entrypoint: flows/a.py:f\n");
        assert!(e.ends_with("deployment 'a/b': deployment name \"a/b\" contains '/'; Prefect forbids / % & > < in names"), "{e}");
    }

    #[test]
    fn concurrency_tags_and_bools_as_prefect_sends_them() {
        let r = resolved(&format!("{BASE}  concurrency_limit: 3\n  tags: [etl, 1, yes]\n  paused: yes\n  enforce_parameter_schema: false\n"));
        assert_eq!(
            (r.concurrency_limit, r.concurrency_options),
            (Some(3), None)
        );
        assert_eq!(r.tags, ["etl", "1", "True"]);
        assert_eq!(
            (r.paused, r.enforce_parameter_schema),
            (Some(true), Some(false))
        );
        let r = resolved(&format!("{BASE}  concurrency_limit: {{limit: 2, collision_strategy: CANCEL_NEW, grace_period_seconds: 60}}\n"));
        assert_eq!(r.concurrency_limit, Some(2));
        assert_eq!(
            r.concurrency_options,
            Some(json!({"collision_strategy": "CANCEL_NEW", "grace_period_seconds": 60}))
        );
        let r = resolved(&format!("{BASE}  concurrency_limit: {{limit: 2}}\n"));
        assert_eq!(
            r.concurrency_options,
            Some(json!({"collision_strategy": null}))
        );
        assert!(errs(&format!(
            "{BASE}  concurrency_limit: {{limit: 2, collision_strategy: QUEUE}}\n"
        ))
        .contains("collision_strategy"));
        assert!(errs(&format!("{BASE}  tags: [a, [b]]\n")).contains("each tag must be a string"));
        assert!(
            errs(&format!("{BASE}  paused: maybe\n")).contains("`paused` must be true or false")
        );
    }

    #[test]
    fn a_global_limit_is_referenced_by_name_and_queues_must_be_declared() {
        let r = resolved(
            "deployments:\n- name: d\n  entrypoint: f.py:f\n  concurrency_limit: {global: gpu}\n",
        );
        assert_eq!(r.global_concurrency_limit.as_deref(), Some("gpu"));
        assert_eq!((r.concurrency_limit, r.concurrency_options), (None, None));
        // Without a collision strategy Prefect's own loader fails on the file: a warning says so.
        let f = ok(
            "deployments:\n- name: d\n  entrypoint: f.py:f\n  concurrency_limit: {global: gpu}\n",
        );
        assert!(f.warnings[0].to_string().starts_with("prefect.yaml:4:23: deployment 'd': `concurrency_limit: {global: …}` without `collision_strategy` makes `prefect deploy`"), "{:?}", f.warnings);
        // With one, the options are the deployment's, the limit the shared one's.
        let r = resolved(
            "deployments:\n- name: d\n  entrypoint: f.py:f\n  concurrency_limit: {global: gpu, collision_strategy: CANCEL_NEW}\n",
        );
        assert_eq!(r.global_concurrency_limit.as_deref(), Some("gpu"));
        assert_eq!(r.concurrency_limit, None);
        assert_eq!(
            r.concurrency_options,
            Some(serde_json::json!({"collision_strategy": "CANCEL_NEW"}))
        );
        let e = errs("deployments:\n- name: d\n  entrypoint: f.py:f\n  concurrency_limit: {global: 3, limit: 2}\n");
        assert!(
            e.contains("prefect.yaml:4:31: deployment 'd': `concurrency_limit.global` must name a global concurrency limit, got an integer"),
            "{e}"
        );
        assert!(e.contains("prefect.yaml:4:34: deployment 'd': `concurrency_limit.global` names a shared limit; it cannot be combined"), "{e}");
        let e = errs(
            "work_pools:\n- name: p\n  type: process\n  queues: [{name: urgent}]\n\
             deployments:\n- name: d\n  entrypoint: f.py:f\n  work_pool: {name: p, work_queue_name: slow}\n",
        );
        assert_eq!(
            e,
            "prefect.yaml:8:24: deployment 'd': queue 'slow' is not among the queues `work_pools` declares for pool 'p' (line 2); declare it there"
        );
        // The pool's `default` queue and pools whose queues are not listed need no declaration.
        let f = ok("work_pools:\n- name: p\n  type: process\n  queues: [{name: urgent}]\n- {name: q, type: process}\n\
             deployments:\n- name: d\n  entrypoint: f.py:f\n  work_pool: {name: p, work_queue_name: default}\n\
             - name: e\n  entrypoint: f.py:f\n  work_pool: {name: q, work_queue_name: any}\n");
        assert_eq!(f.resources.work_pools.len(), 2);
    }

    #[test]
    fn missing_entrypoint_and_description_defaults() {
        let f = ok("deployments:\n- name: d\n  description: ''\n");
        let e = resolve(&f, &f.deployments[0], &TemplateValues::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("An entrypoint must be provided"), "{e}");
        let r = resolved(&format!("{BASE}  description: ''\n"));
        assert_eq!(r.description, None);
    }

    #[test]
    fn step_selection_follows_prefect() {
        let top = "pull:\n- prefect.deployments.steps.set_working_directory: {directory: /top}\nbuild:\n- b.top: {}\n";
        let f = ok(&format!("{top}{BASE}"));
        let r = resolve(&f, &f.deployments[0], &TemplateValues::default()).unwrap();
        assert_eq!(
            r.pull_steps,
            PullSteps::Explicit(vec![
                json!({"prefect.deployments.steps.set_working_directory": {"directory": "/top"}})
            ])
        );
        assert_eq!(r.build_steps, vec![json!({"b.top": {}})]);
        // Deployment `pull: []` → none; `pull: null` → falls back to top level; `build: null` → none.
        let f = ok(&format!("{top}{BASE}  pull: []\n  build: null\n"));
        let r = resolve(&f, &f.deployments[0], &TemplateValues::default()).unwrap();
        assert_eq!(r.pull_steps, PullSteps::Explicit(vec![]));
        assert_eq!(r.build_steps, Vec::<Value>::new());
        let f = ok(&format!("{top}{BASE}  pull: null\n"));
        let r = resolve(&f, &f.deployments[0], &TemplateValues::default()).unwrap();
        assert!(matches!(r.pull_steps, PullSteps::Explicit(ref s) if s.len() == 1));
        // Single mapping form; top-level `pull: []`.
        let f = ok(&format!("pull: []\n{BASE}"));
        assert_eq!(
            resolve(&f, &f.deployments[0], &TemplateValues::default())
                .unwrap()
                .pull_steps,
            PullSteps::Explicit(vec![])
        );
        let f = ok(&format!("{BASE}  pull: {{prefect.deployments.steps.git_clone: {{repository: '{{{{ $R }}}}', token: '{{{{ prefect.blocks.secret.t }}}}'}}}}\n"));
        let mut v = TemplateValues::default();
        v.env.insert("R".into(), "https://r".into());
        // The block in the pull step is not fetched or resolved: it stays for the worker.
        let r = resolve(&f, &f.deployments[0], &v).unwrap();
        assert_eq!(
            r.pull_steps,
            PullSteps::Explicit(vec![
                json!({"prefect.deployments.steps.git_clone": {"repository": "https://r", "token": "{{ prefect.blocks.secret.t }}"}})
            ])
        );
    }

    #[test]
    fn build_and_push_selection_follows_prefect() {
        let top = "build:\n- b.top: {}\npush:\n- p.top: {}\n";
        let steps = |extra: &str| {
            let f = ok(&format!("{top}{BASE}{extra}"));
            build_and_push_steps(&f, &f.deployments[0])
        };
        let (build, push) = steps("");
        assert_eq!(build, vec![json!({"b.top": {}})]);
        assert_eq!(push, vec![json!({"p.top": {}})]);
        // The deployment's own lists win; a single mapping is one step.
        let (build, push) = steps("  build: {b.dep: {x: 1}}\n  push:\n  - p.dep: {}\n");
        assert_eq!(build, vec![json!({"b.dep": {"x": 1}})]);
        assert_eq!(push, vec![json!({"p.dep": {}})]);
        // An empty deployment-level build means none; an empty push falls back to the top level.
        for empty in ["null", "[]", "{}"] {
            let (build, push) = steps(&format!("  build: {empty}\n  push: {empty}\n"));
            assert_eq!(build, Vec::<Value>::new(), "build: {empty}");
            assert_eq!(push, vec![json!({"p.top": {}})], "push: {empty}");
        }
        // No top-level steps at all.
        let f = ok(BASE);
        assert_eq!(
            build_and_push_steps(&f, &f.deployments[0]),
            (vec![], vec![])
        );
    }

    #[test]
    fn triggers_get_default_names() {
        let r = resolved(&format!("{BASE}  triggers:\n  - enabled: true\n    expect: [x]\n    parameters: {{n: '{{{{ event.payload.n }}}}'}}\n  - name: named\n"));
        assert_eq!(r.triggers[0]["name"], "d__automation_1");
        assert_eq!(r.triggers[0]["parameters"]["n"], "{{ event.payload.n }}");
        assert_eq!(r.triggers[1]["name"], "named");
    }

    /// Corpus files Prefect 3.9.1 rejects (INDEX.md) and why we must too.
    const REJECTED: &[(&str, &str)] = &[
        (
            "3commacapital__prefect-flows__prefect.yaml",
            "max_active_runs",
        ),
        (
            "CBIIT__prefect-toolkit__prefect.yaml",
            "`parameters` must be a mapping",
        ),
        (
            "Cobrachainsaw__ETL_V1__prefect__prefect.yaml",
            "`version` must be a string",
        ),
        (
            "Honglin-Jiang__ba882-sec-team__prefect.yaml",
            "max_active_runs",
        ),
        (
            "PrefectHQ__prefect-demos__prefect.yaml",
            "undefined alias *common_tags",
        ),
        (
            "datopian__preflow__flows__prefect.yaml",
            "`schedule` must be a single schedule mapping",
        ),
        (
            "dijarvrella__prefect-flows__prefect.yaml",
            "`version` must be a string",
        ),
        // Stricter than Prefect's model: a list inside `tags` cannot be sent to the API
        // (RunnerDeployment.tags is list[str]), so it fails here, early.
        (
            "AloisCRR__repossessed-assets__prefect.yaml",
            "each tag must be a string",
        ),
    ];

    /// Files Prefect accepts but whose deployments are placeholders (no name).
    const ALL_UNNAMED: &[&str] = &[
        "PrefectHQ__prefect__src__prefect__deployments__recipes__docker-git__prefect.yaml",
        "PrefectHQ__prefect__src__prefect__deployments__templates__prefect.yaml",
    ];

    #[test]
    fn corpus_parses_like_prefect() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yaml/corpus");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus dir") {
            let path = entry.expect("entry").path();
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if !file.ends_with(".yaml") {
                continue;
            }
            seen += 1;
            let bytes = std::fs::read(&path).expect("read");
            let result = parse(&file, &bytes);
            if let Some((_, needle)) = REJECTED.iter().find(|(f, _)| *f == file) {
                let e = result.expect_err(&file).to_string();
                assert!(e.contains(needle), "{file}: {e}");
                assert!(e.starts_with(&format!("{file}:")), "{e}");
            } else if ALL_UNNAMED.contains(&file.as_str()) {
                let e = result.expect_err(&file).to_string();
                assert!(
                    e.contains("no deployment in `deployments:` has a name"),
                    "{file}: {e}"
                );
            } else {
                let f = result.unwrap_or_else(|e| panic!("{file}: {e}"));
                assert!(!f.deployments.is_empty(), "{file}");
                // Pass 2 must not panic either (missing values are reported, not fatal).
                for d in &f.deployments {
                    let _ = resolve(&f, d, &TemplateValues::default());
                    let _ = d.placeholders();
                }
            }
        }
        assert_eq!(seen, 40, "corpus files");
    }

    #[test]
    fn corpus_specifics() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yaml/corpus");
        let load =
            |name: &str| parse(name, &std::fs::read(dir.join(name)).expect("read")).expect(name);
        // Merge keys, chained (OlegPodlipalin).
        let f = load("OlegPodlipalin__prefect-flows__prefect.yaml");
        assert!(
            f.deployments
                .iter()
                .all(|d| d.raw.contains_key("work_pool")),
            "{:?}",
            f.deployments[0].raw
        );
        // Duplicate `schedules` key (tig0826): warned, last wins.
        let f = load("tig0826__prefect-workflow__dqx__prefect.yaml");
        assert!(
            f.warnings
                .iter()
                .any(|w| w.line == 150 && w.message.contains("duplicate key 'schedules'")),
            "{:?}",
            f.warnings
        );
        // CRLF + `---` + a mis-indented step.
        let f = load("2024mt03579__airlines-prefect-workflow__prefect.yaml");
        assert!(
            f.warnings.iter().any(|w| w.message.contains("step has")),
            "{:?}",
            f.warnings
        );
    }
}
