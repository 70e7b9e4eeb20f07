//! The `work_pools`, `concurrency_limits` and `variables` sections of prefect.yaml, validated
//! (pure). Prefect's own loader ignores unknown top-level keys, so `prefect deploy` reads the
//! same file and simply does not manage these.
//!
//! Each section is a list of mappings keyed by `name`. A field a mapping states is owned: the
//! server is made to hold exactly that value (`null` included); a field it leaves out is left as
//! it is on the server (a create takes the server's default), as with deployments. The values are
//! not templated: a `{{ }}` in a base job template belongs to the worker's templating.
//! Checked here, as Prefect 3.9.1's server models check them (`schemas/actions.py`,
//! `types/names.py`): names, types, ranges, a variable's 5000-character value limit, unknown keys.

use serde_json::{Map, Value};

use crate::prefect::prefect_yaml::{Diagnostic, FORBIDDEN_NAME_CHARS};
use crate::prefect::yaml::{Node, NodeValue};

const POOL_KEYS: &[&str] = &[
    "name",
    "type",
    "description",
    "concurrency_limit",
    "paused",
    "job_variables",
    "base_job_template",
    "queues",
];
const QUEUE_KEYS: &[&str] = &[
    "name",
    "description",
    "priority",
    "concurrency_limit",
    "paused",
];
const LIMIT_KEYS: &[&str] = &["name", "limit", "slot_decay_per_second", "active"];
const VARIABLE_KEYS: &[&str] = &["name", "value", "tags"];

/// Prefect's `MAX_VARIABLE_NAME_LENGTH`.
const MAX_VARIABLE_NAME_LENGTH: usize = 255;
/// Prefect's `MAX_VARIABLE_VALUE_LENGTH`: the value's compact JSON, in characters.
pub(crate) const MAX_VARIABLE_VALUE_LENGTH: usize = 5000;
/// Variable names starting with this are register-flows' own (ownership ledgers, drain markers).
pub(crate) const RESERVED_VARIABLE_PREFIX: &str = "xtask-";

/// The three sections, as declared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub work_pools: Vec<PoolDecl>,
    pub concurrency_limits: Vec<LimitDecl>,
    pub variables: Vec<VariableDecl>,
}

/// One work pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolDecl {
    pub name: String,
    pub line: usize,
    pub pool_type: String,
    /// Stated API fields of `WorkPoolUpdate`: `description`, `is_paused`, `concurrency_limit`.
    pub fields: Map<String, Value>,
    pub template: TemplateDecl,
    /// None: the pool's queues are not managed; Some: exactly these (plus the pool's `default`).
    pub queues: Option<Vec<QueueDecl>>,
}

/// How the yaml states a pool's base job template.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateDecl {
    /// Nothing stated: a create takes the type's default template, an update leaves it.
    Unstated,
    /// `job_variables`: defaults set on the type's default template's variables.
    Overrides(Map<String, Value>),
    /// `base_job_template`: the whole template.
    Full(Value),
}

/// One queue of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDecl {
    pub name: String,
    pub line: usize,
    /// Stated API fields of `WorkQueueUpdate`: `description`, `is_paused`, `concurrency_limit`,
    /// `priority`.
    pub fields: Map<String, Value>,
}

/// One global concurrency limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitDecl {
    pub name: String,
    pub line: usize,
    /// Stated API fields of `ConcurrencyLimitV2Update`: `limit` (always), `slot_decay_per_second`,
    /// `active`.
    pub fields: Map<String, Value>,
}

/// One Prefect variable.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableDecl {
    pub name: String,
    pub line: usize,
    pub value: Value,
    /// None: tags not stated (left as they are).
    pub tags: Option<Vec<String>>,
}

impl Resources {
    pub fn pool(&self, name: &str) -> Option<&PoolDecl> {
        self.work_pools.iter().find(|p| p.name == name)
    }

    pub fn limit(&self, name: &str) -> Option<&LimitDecl> {
        self.concurrency_limits.iter().find(|l| l.name == name)
    }

    pub fn variable(&self, name: &str) -> Option<&VariableDecl> {
        self.variables.iter().find(|v| v.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.work_pools.is_empty()
            && self.concurrency_limits.is_empty()
            && self.variables.is_empty()
    }
}

/// Problems found in the sections, positioned.
pub(crate) struct Found {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

struct Checker<'a> {
    file: &'a str,
    found: Found,
}

impl Checker<'_> {
    fn error(&mut self, at: &Node, subject: &str, message: impl std::fmt::Display) {
        self.found.errors.push(self.diag(at, subject, message));
    }

    fn warn(&mut self, at: &Node, subject: &str, message: impl std::fmt::Display) {
        self.found.warnings.push(self.diag(at, subject, message));
    }

    fn diag(&self, at: &Node, subject: &str, message: impl std::fmt::Display) -> Diagnostic {
        let message = if subject.is_empty() {
            message.to_string()
        } else {
            format!("{subject}: {message}")
        };
        Diagnostic {
            file: self.file.to_string(),
            line: at.line,
            col: at.col,
            deployment: None,
            message,
        }
    }
}

/// Reads the three sections of the file's root mapping.
pub(crate) fn parse(file: &str, root: &Node) -> (Resources, Found) {
    let mut c = Checker {
        file,
        found: Found {
            errors: Vec::new(),
            warnings: Vec::new(),
        },
    };
    let mut resources = Resources::default();
    for item in section(root, "work_pools", &mut c) {
        if let Some(pool) = pool(item, &mut c) {
            resources.work_pools.push(pool);
        }
    }
    for item in section(root, "concurrency_limits", &mut c) {
        if let Some(limit) = limit(item, &mut c) {
            resources.concurrency_limits.push(limit);
        }
    }
    for item in section(root, "variables", &mut c) {
        if let Some(variable) = variable(item, &mut c) {
            resources.variables.push(variable);
        }
    }
    duplicates(
        &mut c,
        "work pool",
        resources.work_pools.iter().map(|p| (&p.name, p.line)),
    );
    duplicates(
        &mut c,
        "concurrency limit",
        resources
            .concurrency_limits
            .iter()
            .map(|l| (&l.name, l.line)),
    );
    duplicates(
        &mut c,
        "variable",
        resources.variables.iter().map(|v| (&v.name, v.line)),
    );
    for pool in &resources.work_pools {
        duplicates(
            &mut c,
            &format!("work pool '{}': queue", pool.name),
            pool.queues.iter().flatten().map(|q| (&q.name, q.line)),
        );
    }
    (resources, c.found)
}

/// The items of a top-level list section (none when absent or null).
fn section<'a>(root: &'a Node, key: &str, c: &mut Checker) -> &'a [Node] {
    let Some((k, node)) = root.entry(key) else {
        return &[];
    };
    match &node.value {
        NodeValue::Null => &[],
        NodeValue::Seq(items) => items,
        // Prefect ignores unknown top-level keys, so files use such keys to hold YAML anchors
        // (a `variables:` mapping in the corpus): not a declaration, left alone.
        _ => {
            c.warn(
                k,
                "",
                format!(
                    "`{key}` is {}, not a list of declarations: register-flows ignores it, as Prefect does (to declare {key}, write a list of mappings with a `name`)",
                    node.kind_name()
                ),
            );
            &[]
        }
    }
}

fn duplicates<'a>(c: &mut Checker, what: &str, names: impl Iterator<Item = (&'a String, usize)>) {
    let mut seen: Vec<(&String, usize)> = Vec::new();
    for (name, line) in names {
        match seen.iter().find(|(n, _)| *n == name) {
            Some((_, first)) => c.found.errors.push(Diagnostic {
                file: c.file.to_string(),
                line,
                col: 1,
                deployment: None,
                message: format!("{what} '{name}' is declared twice (first at line {first})"),
            }),
            None => seen.push((name, line)),
        }
    }
}

/// The item's mapping pairs and its name, with unknown keys warned about; None (with an error)
/// when it is not a mapping or has no usable name.
fn named_item<'a>(
    item: &'a Node,
    what: &str,
    keys: &[&str],
    c: &mut Checker,
) -> Option<(&'a [(Node, Node)], String)> {
    let NodeValue::Map(pairs) = &item.value else {
        c.error(
            item,
            "",
            format!(
                "each {what} must be a mapping with a `name`, got {}",
                item.kind_name()
            ),
        );
        return None;
    };
    let name = match item.get("name") {
        None => {
            c.error(item, "", format!("a {what} needs a `name`"));
            None
        }
        Some(n) => match &n.value {
            NodeValue::Str(s) if !s.trim_matches(['\'', '"', ' ']).is_empty() => Some(s.clone()),
            NodeValue::Str(_) => {
                c.error(n, "", format!("a {what}'s `name` must not be empty"));
                None
            }
            _ => {
                c.error(
                    n,
                    "",
                    format!("a {what}'s `name` must be a string, got {}", n.kind_name()),
                );
                None
            }
        },
    };
    let subject = format!("{what} '{}'", name.as_deref().unwrap_or("?"));
    for (k, _) in pairs {
        let key = k.key_string();
        if !keys.contains(&key.as_str()) {
            c.error(
                k,
                &subject,
                format!("unknown key `{key}`; allowed: {}", keys.join(", ")),
            );
        }
    }
    Some((pairs, name?))
}

fn subject(what: &str, name: &str) -> String {
    format!("{what} '{name}'")
}

/// Why a pool, queue or limit name is refused (Prefect's `Name`: none of `/ % & > <`).
fn name_problem(name: &str) -> Option<String> {
    let bad = name.chars().find(|c| FORBIDDEN_NAME_CHARS.contains(c))?;
    Some(format!(
        "the name contains '{bad}'; Prefect forbids {} in names",
        FORBIDDEN_NAME_CHARS
            .iter()
            .map(char::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

/// A non-negative integer or null (`NonNegativeInteger`), as JSON.
fn non_negative_int(node: &Node, key: &str, nullable: bool) -> Result<Value, String> {
    match &node.value {
        NodeValue::Null if nullable => Ok(Value::Null),
        NodeValue::Int(i) if *i >= 0 => Ok(Value::from(*i)),
        NodeValue::Int(i) => Err(format!("`{key}` must be 0 or more, got {i}")),
        _ => Err(format!(
            "`{key}` must be a whole number{}, got {}",
            if nullable { " or null" } else { "" },
            node.kind_name()
        )),
    }
}

/// true/false (pydantic's lax bool is not offered: these fields are new, so be strict).
fn boolean(node: &Node, key: &str) -> Result<Value, String> {
    match &node.value {
        NodeValue::Bool(b) => Ok(Value::Bool(*b)),
        _ => Err(format!(
            "`{key}` must be true or false, got {}",
            node.kind_name()
        )),
    }
}

fn optional_string(node: &Node, key: &str) -> Result<Value, String> {
    match &node.value {
        NodeValue::Null => Ok(Value::Null),
        NodeValue::Str(s) => Ok(Value::String(s.clone())),
        _ => Err(format!(
            "`{key}` must be a string, got {}",
            node.kind_name()
        )),
    }
}

/// Puts `result` into `fields` under `api_key`, or reports why not.
fn field(
    fields: &mut Map<String, Value>,
    api_key: &str,
    at: &Node,
    subject: &str,
    result: Result<Value, String>,
    c: &mut Checker,
) {
    match result {
        Ok(value) => {
            fields.insert(api_key.to_string(), value);
        }
        Err(problem) => c.error(at, subject, problem),
    }
}

fn pool(item: &Node, c: &mut Checker) -> Option<PoolDecl> {
    let (pairs, name) = named_item(item, "work pool", POOL_KEYS, c)?;
    let who = subject("work pool", &name);
    if let Some(problem) = name_problem(&name) {
        c.error(item.get("name").unwrap_or(item), &who, problem);
    }
    let mut fields = Map::new();
    let mut pool_type = None;
    let mut overrides = None;
    let mut full = None;
    let mut queues = None;
    for (k, v) in pairs {
        match k.key_string().as_str() {
            "type" => match v.as_str().map(str::trim) {
                Some(t) if !t.is_empty() => pool_type = Some(t.to_string()),
                _ => c.error(k, &who, format!("`type` must be a work pool type such as `process`, got {}", v.kind_name())),
            },
            "description" => field(&mut fields, "description", k, &who, optional_string(v, "description"), c),
            "concurrency_limit" => field(&mut fields, "concurrency_limit", k, &who, non_negative_int(v, "concurrency_limit", true), c),
            "paused" => field(&mut fields, "is_paused", k, &who, boolean(v, "paused"), c),
            "job_variables" => match &v.value {
                NodeValue::Map(_) => match v.to_json() {
                    Value::Object(map) => overrides = Some((k, map)),
                    _ => unreachable_map(k, &who, c),
                },
                _ => c.error(k, &who, format!("`job_variables` must be a mapping of the type's job variables to their default values, got {}", v.kind_name())),
            },
            "base_job_template" => match base_job_template_problem(v) {
                None => full = Some(v.to_json()),
                Some(problem) => c.error(k, &who, problem),
            },
            "queues" => queues = Some(pool_queues(k, v, &name, c)),
            _ => {}
        }
    }
    let template = match (overrides, full) {
        (Some((k, _)), Some(_)) => {
            c.error(k, &who, "state `job_variables` (overrides of the type's default template) or `base_job_template` (the whole template), not both");
            TemplateDecl::Unstated
        }
        (Some((_, map)), None) => TemplateDecl::Overrides(map),
        (None, Some(template)) => TemplateDecl::Full(template),
        (None, None) => TemplateDecl::Unstated,
    };
    let Some(pool_type) = pool_type else {
        if item.get("type").is_none() {
            c.error(
                item,
                &who,
                "a work pool needs a `type` (e.g. `type: process`)",
            );
        }
        return None;
    };
    if pool_type == "prefect-agent" {
        c.error(
            item.get("type").unwrap_or(item),
            &who,
            "type 'prefect-agent' is Prefect 2's agent pool, which deployments cannot use",
        );
    }
    Some(PoolDecl {
        name,
        line: item.line,
        pool_type,
        fields,
        template,
        queues: queues.flatten(),
    })
}

/// A mapping node whose JSON is not an object cannot happen; reported rather than panicking.
fn unreachable_map(k: &Node, who: &str, c: &mut Checker) {
    c.error(k, who, "could not read this mapping");
}

/// Prefect's check of a base job template (`validate_base_job_template`): a mapping with the
/// mappings `job_configuration` and `variables`, and every `{{ name }}` of the job configuration
/// a property of `variables`.
pub(crate) fn base_job_template_problem(node: &Node) -> Option<String> {
    template_problem(&node.to_json())
}

/// [`base_job_template_problem`] on JSON (a template the server or the embedded defaults hold).
pub(crate) fn template_problem(template: &Value) -> Option<String> {
    let Value::Object(map) = template else {
        return Some(
            "`base_job_template` must be a mapping with `job_configuration` and `variables`".into(),
        );
    };
    let (Some(Value::Object(_)), Some(Value::Object(variables))) =
        (map.get("job_configuration"), map.get("variables"))
    else {
        return Some(
            "`base_job_template` must have the mappings `job_configuration` and `variables`".into(),
        );
    };
    let properties = variables.get("properties").and_then(Value::as_object);
    let mut missing: Vec<String> = Vec::new();
    collect_template_names(&map["job_configuration"], &mut missing);
    missing.retain(|name| !properties.is_some_and(|p| p.contains_key(name)));
    missing.dedup();
    (!missing.is_empty()).then(|| {
        format!(
            "`base_job_template.job_configuration` uses {} that `variables.properties` does not define",
            missing
                .iter()
                .map(|n| format!("{{{{ {n} }}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The `{{ name }}` placeholders of a job configuration (Prefect's worker templating; dotted
/// names and `prefect.`/`$` ones are not variables).
fn collect_template_names(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(open) = rest.find("{{") {
                let after = &rest[open + 2..];
                let Some(close) = after.find("}}") else { break };
                let name = after[..close].trim();
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                    && !out.iter().any(|n| n == name)
                {
                    out.push(name.to_string());
                }
                rest = &after[close + 2..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_template_names(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_template_names(v, out)),
        _ => {}
    }
}

fn pool_queues(key: &Node, node: &Node, pool: &str, c: &mut Checker) -> Option<Vec<QueueDecl>> {
    let NodeValue::Seq(items) = &node.value else {
        c.error(
            key,
            &subject("work pool", pool),
            format!(
                "`queues` must be a list of queue mappings, got {}",
                node.kind_name()
            ),
        );
        return None;
    };
    let mut queues = Vec::new();
    for item in items {
        let Some((pairs, name)) = named_item(item, "queue", QUEUE_KEYS, c) else {
            continue;
        };
        let who = format!("work pool '{pool}': queue '{name}'");
        if let Some(problem) = name_problem(&name) {
            c.error(item, &who, problem);
        }
        let mut fields = Map::new();
        for (k, v) in pairs {
            match k.key_string().as_str() {
                "description" => field(
                    &mut fields,
                    "description",
                    k,
                    &who,
                    optional_string(v, "description"),
                    c,
                ),
                "concurrency_limit" => field(
                    &mut fields,
                    "concurrency_limit",
                    k,
                    &who,
                    non_negative_int(v, "concurrency_limit", true),
                    c,
                ),
                "paused" => field(&mut fields, "is_paused", k, &who, boolean(v, "paused"), c),
                "priority" => {
                    let result = match &v.value {
                        NodeValue::Int(i) if *i >= 1 => Ok(Value::from(*i)),
                        NodeValue::Int(i) => Err(format!(
                            "`priority` must be 1 or more (1 is served first), got {i}"
                        )),
                        _ => Err(format!(
                            "`priority` must be a whole number from 1 (1 is served first), got {}",
                            v.kind_name()
                        )),
                    };
                    field(&mut fields, "priority", k, &who, result, c)
                }
                _ => {}
            }
        }
        queues.push(QueueDecl {
            name,
            line: item.line,
            fields,
        });
    }
    Some(queues)
}

fn limit(item: &Node, c: &mut Checker) -> Option<LimitDecl> {
    let (pairs, name) = named_item(item, "concurrency limit", LIMIT_KEYS, c)?;
    let who = subject("concurrency limit", &name);
    if let Some(problem) = name_problem(&name) {
        c.error(item.get("name").unwrap_or(item), &who, problem);
    }
    if name.starts_with("deployment:") || name.starts_with("tag:") {
        c.error(item.get("name").unwrap_or(item), &who, "names starting with `deployment:` or `tag:` belong to Prefect's own per-deployment and tag limits");
    }
    let mut fields = Map::new();
    for (k, v) in pairs {
        match k.key_string().as_str() {
            "limit" => field(
                &mut fields,
                "limit",
                k,
                &who,
                non_negative_int(v, "limit", false),
                c,
            ),
            "active" => field(&mut fields, "active", k, &who, boolean(v, "active"), c),
            "slot_decay_per_second" => {
                let result = match &v.value {
                    NodeValue::Int(i) if *i >= 0 => Ok(Value::from(*i as f64)),
                    NodeValue::Float(f) if *f >= 0.0 && f.is_finite() => Ok(Value::from(*f)),
                    NodeValue::Int(_) | NodeValue::Float(_) => Err(format!(
                        "`slot_decay_per_second` must be 0 or more, got {}",
                        v.to_json()
                    )),
                    _ => Err(format!(
                        "`slot_decay_per_second` must be a number, 0 or more, got {}",
                        v.kind_name()
                    )),
                };
                field(&mut fields, "slot_decay_per_second", k, &who, result, c)
            }
            _ => {}
        }
    }
    if !fields.contains_key("limit") {
        if item.get("limit").is_none() {
            c.error(
                item,
                &who,
                "a concurrency limit needs a `limit` (the number of slots)",
            );
        }
        return None;
    }
    Some(LimitDecl {
        name,
        line: item.line,
        fields,
    })
}

/// Why Prefect refuses `name` as a variable name, if it does.
pub(crate) fn variable_name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_VARIABLE_NAME_LENGTH {
        return Some(format!(
            "a variable name has at most {MAX_VARIABLE_NAME_LENGTH} characters"
        ));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    (!ok).then(|| {
        "a variable name must only contain lowercase letters, numbers, and dashes or underscores"
            .to_string()
    })
}

/// A value's length as Prefect measures it: its compact JSON (`orjson.dumps`), in bytes.
pub(crate) fn variable_value_length(value: &Value) -> usize {
    serde_json::to_string(value).map_or(usize::MAX, |s| s.len())
}

fn variable(item: &Node, c: &mut Checker) -> Option<VariableDecl> {
    let (pairs, name) = named_item(item, "variable", VARIABLE_KEYS, c)?;
    let who = subject("variable", &name);
    let name_node = item.get("name").unwrap_or(item);
    if let Some(problem) = variable_name_problem(&name) {
        c.error(name_node, &who, problem);
    }
    if name.starts_with(RESERVED_VARIABLE_PREFIX) {
        c.error(
            name_node,
            &who,
            format!("names starting with `{RESERVED_VARIABLE_PREFIX}` are register-flows' own (ownership ledgers, drain markers)"),
        );
    }
    let mut value = None;
    let mut tags = None;
    for (k, v) in pairs {
        match k.key_string().as_str() {
            "value" => {
                if matches!(v.value, NodeValue::Timestamp(_)) {
                    c.error(k, &who, "`value` is a date/time, which a variable cannot hold; quote it to keep it as text");
                    continue;
                }
                let json = v.to_json();
                let length = variable_value_length(&json);
                if length > MAX_VARIABLE_VALUE_LENGTH {
                    c.error(k, &who, format!("`value` is {length} characters as JSON; Prefect allows at most {MAX_VARIABLE_VALUE_LENGTH}"));
                }
                if !crate::prefect::template::placeholders(&json).is_empty() {
                    c.warn(k, &who, "`value` holds `{{ }}`, which is stored as written (declared values are not templated)");
                }
                value = Some(json);
            }
            "tags" => match &v.value {
                NodeValue::Null => tags = Some(Vec::new()),
                NodeValue::Seq(items) => {
                    let mut list = Vec::new();
                    for t in items {
                        match &t.value {
                            NodeValue::Str(s) => list.push(s.clone()),
                            _ => c.error(
                                t,
                                &who,
                                format!("each tag must be a string, got {}", t.kind_name()),
                            ),
                        }
                    }
                    tags = Some(list);
                }
                _ => c.error(
                    k,
                    &who,
                    format!("`tags` must be a list of strings, got {}", v.kind_name()),
                ),
            },
            _ => {}
        }
    }
    let Some(value) = value else {
        if item.get("value").is_none() {
            c.error(
                item,
                &who,
                "a variable needs a `value` (null is a value: write `value: null`)",
            );
        }
        return None;
    };
    Some(VariableDecl {
        name,
        line: item.line,
        value,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str) -> (Resources, Vec<String>, Vec<String>) {
        let doc = crate::prefect::yaml::parse("prefect.yaml", src.as_bytes()).unwrap();
        let (resources, found) = parse("prefect.yaml", &doc.root);
        let show = |d: &Vec<Diagnostic>| d.iter().map(ToString::to_string).collect();
        (resources, show(&found.errors), show(&found.warnings))
    }

    #[test]
    fn a_full_declaration_reads_into_owned_fields() {
        let (r, errors, warnings) = run(r#"
work_pools:
  - name: pool-a
    type: process
    description: the pool
    concurrency_limit: 4
    paused: false
    job_variables: {env: {A: "1"}}
    queues:
      - {name: default, priority: 1}
      - {name: urgent, priority: 2, concurrency_limit: 2}
  - name: pool-b
    type: process
concurrency_limits:
  - {name: gpu, limit: 2, slot_decay_per_second: 0}
variables:
  - {name: caption_model, value: whisper, tags: [captionacc]}
  - {name: settings, value: {a: [1, 2]}}
"#);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(warnings, Vec::<String>::new());
        let a = r.pool("pool-a").unwrap();
        assert_eq!(a.pool_type, "process");
        assert_eq!(
            Value::Object(a.fields.clone()),
            json!({"description": "the pool", "concurrency_limit": 4, "is_paused": false})
        );
        assert_eq!(
            a.template,
            TemplateDecl::Overrides(json!({"env": {"A": "1"}}).as_object().unwrap().clone())
        );
        let queues = a.queues.as_ref().unwrap();
        assert_eq!(queues.len(), 2);
        assert_eq!(
            Value::Object(queues[1].fields.clone()),
            json!({"priority": 2, "concurrency_limit": 2})
        );
        let b = r.pool("pool-b").unwrap();
        assert_eq!(b.template, TemplateDecl::Unstated);
        assert!(b.queues.is_none() && b.fields.is_empty());
        assert_eq!(
            Value::Object(r.limit("gpu").unwrap().fields.clone()),
            json!({"limit": 2, "slot_decay_per_second": 0.0})
        );
        let v = r.variable("caption_model").unwrap();
        assert_eq!(
            (v.value.clone(), v.tags.clone()),
            (json!("whisper"), Some(vec!["captionacc".to_string()]))
        );
        assert_eq!(r.variable("settings").unwrap().tags, None);
        assert_eq!(r.variable("settings").unwrap().value, json!({"a": [1, 2]}));
    }

    #[test]
    fn every_problem_names_the_line_and_the_resource() {
        let (_, errors, _) = run(&r#"
work_pools:
  - name: pool/a
    type: process
    concurency_limit: 3
  - name: pool-b
    type: process
    concurrency_limit: -1
    paused: "no"
    job_variables: [1]
    queues:
      - {name: q, priority: 0}
      - name: q
  - name: pool-c
  - name: pool-d
    type: process
    job_variables: {}
    base_job_template: {job_configuration: {command: "{{ cmd }}"}, variables: {properties: {}}}
  - name: pool-b
    type: process
concurrency_limits:
  - {name: gpu}
  - {name: "deployment:x", limit: 1}
  - {name: slow, limit: 1, slot_decay_per_second: -1}
  - [gpu]
variables:
  - {name: Caption, value: 1}
  - {name: xtask-mine, value: 1}
  - {name: nothing}
  - {name: when, value: 2024-01-01}
  - {name: big, value: "BIG"}
  - {name: tagged, value: 1, tags: [[1]]}
"#
        .replace("BIG", &"x".repeat(5000)));
        let expect = [
            "prefect.yaml:3:11: work pool 'pool/a': the name contains '/'",
            "prefect.yaml:5:5: work pool 'pool/a': unknown key `concurency_limit`; allowed: name, type",
            "prefect.yaml:8:5: work pool 'pool-b': `concurrency_limit` must be 0 or more, got -1",
            "prefect.yaml:9:5: work pool 'pool-b': `paused` must be true or false, got a string",
            "prefect.yaml:10:5: work pool 'pool-b': `job_variables` must be a mapping",
            "prefect.yaml:12:19: work pool 'pool-b': queue 'q': `priority` must be 1 or more (1 is served first), got 0",
            "prefect.yaml:13:1: work pool 'pool-b': queue 'q' is declared twice (first at line 12)",
            "prefect.yaml:14:5: work pool 'pool-c': a work pool needs a `type`",
            "prefect.yaml:18:5: work pool 'pool-d': `base_job_template.job_configuration` uses {{ cmd }} that `variables.properties` does not define",
            "prefect.yaml:19:1: work pool 'pool-b' is declared twice (first at line 6)",
            "prefect.yaml:22:5: concurrency limit 'gpu': a concurrency limit needs a `limit`",
            "prefect.yaml:23:12: concurrency limit 'deployment:x': names starting with `deployment:`",
            "prefect.yaml:24:28: concurrency limit 'slow': `slot_decay_per_second` must be 0 or more, got -1",
            "prefect.yaml:25:5: each concurrency limit must be a mapping with a `name`, got a list",
            "prefect.yaml:27:12: variable 'Caption': a variable name must only contain lowercase letters",
            "prefect.yaml:28:12: variable 'xtask-mine': names starting with `xtask-`",
            "prefect.yaml:29:5: variable 'nothing': a variable needs a `value`",
            "prefect.yaml:30:18: variable 'when': `value` is a date/time",
            "prefect.yaml:31:17: variable 'big': `value` is 5002 characters as JSON; Prefect allows at most 5000",
            "prefect.yaml:32:37: variable 'tagged': each tag must be a string, got a list",
        ];
        for want in expect {
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in\n{}",
                errors.join("\n")
            );
        }
        assert_eq!(errors.len(), expect.len(), "{}", errors.join("\n"));
    }

    #[test]
    fn sections_must_be_lists_and_may_be_absent_or_null() {
        let (r, errors, warnings) =
            run("work_pools: {name: a}\nvariables:\nconcurrency_limits: null\n");
        assert!(r.is_empty());
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            warnings,
            vec!["prefect.yaml:1:1: `work_pools` is a mapping, not a list of declarations: register-flows ignores it, as Prefect does (to declare work_pools, write a list of mappings with a `name`)"]
        );
    }

    #[test]
    fn template_placeholders_must_be_defined_variables() {
        let ok = json!({"job_configuration": {"command": "{{ command }}", "env": "{{ env }}", "x": "{{ prefect.variables.y }}"},
                        "variables": {"properties": {"command": {}, "env": {}}}});
        assert_eq!(template_problem(&ok), None);
        assert!(template_problem(&json!({"job_configuration": {}})).is_some());
        assert!(template_problem(&json!([])).is_some());
    }
}
