//! Prefect's deploy-time templating (`prefect.utilities.templating`), pure.
//!
//! Placeholders are `{{ name }}` with `name` matching `[\w.\-\[\]$]+`:
//! `prefect.blocks.SLUG.NAME[.path]`, `prefect.variables.NAME`, `$ENV`,
//! `ctx.*` (runtime, kept verbatim) and anything else = a build/push step output.
//!
//! The deployment config is resolved in Prefect's order, each phase over the
//! whole tree: blocks → variables → env → step outputs. A placeholder that is
//! the whole string keeps the JSON type of its value (env is always a string);
//! inline placeholders become Python's `str(value)`.
//!
//! Deliberate improvement over Prefect: a missing block, variable, env var or
//! step output is an error naming the placeholder and the field, instead of
//! `""` or a silently removed key. Pull steps follow Prefect exactly: they run
//! on the worker, so blocks/variables stay verbatim and anything unknown is
//! left for the worker to resolve.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::prefect::python_text::value_str;

pub(crate) const BLOCK_PREFIX: &str = "prefect.blocks.";
pub(crate) const VARIABLE_PREFIX: &str = "prefect.variables.";
pub(crate) const ENV_PREFIX: &str = "$";
pub(crate) const CONTEXT_PREFIX: &str = "ctx.";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PlaceholderKind {
    /// `prefect.blocks.<slug>.<name>[.<key path>]`
    Block {
        slug: String,
        name: String,
        path: Option<String>,
    },
    /// `prefect.variables.<name>`
    Variable { name: String },
    /// `$NAME`
    Env { name: String },
    /// `ctx.*`, resolved by the worker at run time.
    Context,
    /// Anything else: the output of a build/push step (or, in pull steps, of an
    /// earlier pull step at run time).
    StepOutput,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placeholder {
    /// The exact text, e.g. `{{ $HOME }}`.
    pub full_match: String,
    /// The name inside the braces, e.g. `$HOME`.
    pub name: String,
    pub kind: PlaceholderKind,
}

impl Placeholder {
    fn new(full_match: &str, name: &str) -> Placeholder {
        Placeholder {
            full_match: full_match.to_string(),
            name: name.to_string(),
            kind: classify(name),
        }
    }
}

fn classify(name: &str) -> PlaceholderKind {
    if let Some(rest) = name.strip_prefix(BLOCK_PREFIX) {
        let mut parts = rest.splitn(3, '.');
        let slug = parts.next().unwrap_or("").to_string();
        let doc = parts.next().unwrap_or("").to_string();
        let path = parts.next().map(str::to_string);
        PlaceholderKind::Block {
            slug,
            name: doc,
            path,
        }
    } else if let Some(rest) = name.strip_prefix(VARIABLE_PREFIX) {
        PlaceholderKind::Variable {
            name: rest.to_string(),
        }
    } else if name.starts_with(ENV_PREFIX) {
        PlaceholderKind::Env {
            // Python's `lstrip("$")` removes every leading `$`.
            name: name.trim_start_matches('$').to_string(),
        }
    } else if name.starts_with(CONTEXT_PREFIX) {
        PlaceholderKind::Context
    } else {
        PlaceholderKind::StepOutput
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']' | '$')
}

/// All placeholder matches in `text`, in order (duplicates included), as
/// `(byte start, byte end, name)`. Equivalent to Prefect's
/// `{{\s*([\w\.\-\[\]$]+)\s*}}` with `re.finditer`.
fn scan(text: &str) -> Vec<(usize, usize, &str)> {
    let mut found = Vec::new();
    let mut search_from = 0;
    while let Some(rel) = text.get(search_from..).and_then(|t| t.find("{{")) {
        let start = search_from + rel;
        match match_at(text, start) {
            Some((end, name)) => {
                found.push((start, end, name));
                search_from = end;
            }
            None => search_from = start + 1,
        }
    }
    found
}

fn match_at(text: &str, start: usize) -> Option<(usize, &str)> {
    let rest = text.get(start + 2..)?;
    let after_ws = rest.trim_start();
    let name_len = after_ws
        .char_indices()
        .find(|(_, c)| !is_name_char(*c))
        .map_or(after_ws.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = &after_ws[..name_len];
    let tail = after_ws[name_len..].trim_start();
    if !tail.starts_with("}}") {
        return None;
    }
    let end = text.len() - tail.len() + 2;
    Some((end, name))
}

/// Distinct placeholders of one string, in order of first appearance.
pub(crate) fn find_placeholders(text: &str) -> Vec<Placeholder> {
    let mut out: Vec<Placeholder> = Vec::new();
    for (start, end, name) in scan(text) {
        let full = &text[start..end];
        if !out.iter().any(|p| p.full_match == full) {
            out.push(Placeholder::new(full, name));
        }
    }
    out
}

/// Distinct placeholders anywhere in a JSON tree (strings only, like Prefect),
/// so the caller can fetch every block and variable it needs in one go.
pub(crate) fn placeholders(value: &Value) -> Vec<Placeholder> {
    let mut out = Vec::new();
    collect(value, &mut out);
    out
}

fn collect(value: &Value, out: &mut Vec<Placeholder>) {
    match value {
        Value::String(s) => {
            for p in find_placeholders(s) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// What the placeholders resolve to, fetched by the caller beforehand.
#[derive(Debug, Clone, Default)]
pub struct TemplateValues {
    /// `(block type slug, block document name)` → the document's `data`
    /// (`GET /block_types/slug/{slug}/block_documents/name/{name}?include_secrets=true`);
    /// `None` = the server said 404.
    pub blocks: HashMap<(String, String), Option<Value>>,
    /// Variable name → value (`GET /variables/name/{name}`); `None` = 404.
    pub variables: HashMap<String, Option<Value>>,
    /// The environment (`{{ $NAME }}`).
    pub env: HashMap<String, String>,
    /// Outputs of build/push steps: merged outputs plus `step_outputs[id]`.
    pub step_outputs: Map<String, Value>,
    /// The steps were shown, not run (`deploy --dry-run`): their output placeholders stay as
    /// written instead of being an error.
    pub steps_not_run: bool,
}

/// What `placeholders` take from blocks and environment variables, as text (every string and
/// number inside a block's value, each env value): the values output must not show. Blocks are
/// read with their secrets (`include_secrets=true`), so every block type counts, not only
/// `secret`. Variables and step outputs are not secrets in Prefect.
pub(crate) fn secret_values(placeholders: &[Placeholder], values: &TemplateValues) -> Vec<String> {
    fn leaves(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
            Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
            Value::Bool(_) | Value::Null => {}
        }
    }
    let mut out = Vec::new();
    for p in placeholders {
        match &p.kind {
            PlaceholderKind::Block { .. } => {
                if let Ok(value) = block_value(p, values) {
                    leaves(&value, &mut out);
                }
            }
            PlaceholderKind::Env { name } => {
                if let Some(value) = values.env.get(name) {
                    out.push(value.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// A placeholder that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    /// Where in the deployment, e.g. `work_pool.job_variables.env.TOKEN` or `tags[1]`.
    pub path: String,
    /// The placeholder text, e.g. `{{ $TOKEN }}`.
    pub placeholder: String,
    pub message: String,
}

impl TemplateError {
    #[cfg(test)]
    /// The top-level deployment key the error is under (`work_pool`, `tags`, ...).
    pub(crate) fn field(&self) -> &str {
        let end = self.path.find(['.', '[']).unwrap_or(self.path.len());
        &self.path[..end]
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Keys of the deployment mapping that are not templated here: build/push run
/// their own templating, pull is resolved by [`resolve_pull_steps`].
const NOT_TEMPLATED: &[&str] = &["build", "push", "pull"];

/// Resolve every placeholder of a deployment mapping (`DeploymentConfig::raw`)
/// in Prefect's order. Trigger `parameters` keep step-output placeholders
/// (`{{ event.* }}` is resolved by the automation at fire time); `ctx.*` is kept.
pub(crate) fn resolve_deployment(
    config: &Value,
    values: &TemplateValues,
) -> Result<Value, Vec<TemplateError>> {
    let mut tree = match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !NOT_TEMPLATED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    };
    let mut errors = Vec::new();
    for phase in [
        Phase::Blocks,
        Phase::Variables,
        Phase::Env,
        Phase::StepOutputs,
    ] {
        tree = walk(tree, "", phase, values, &mut errors);
        if !errors.is_empty() {
            // Later phases would only report follow-on noise for the same strings.
            break;
        }
    }
    if errors.is_empty() {
        Ok(tree)
    } else {
        Err(errors)
    }
}

/// Resolve pull steps the way Prefect stores them: env and build/push step
/// outputs substituted; blocks, variables, `ctx.*`, outputs of earlier pull
/// steps and unset env vars left verbatim for the worker.
pub(crate) fn resolve_pull_steps(steps: &Value, values: &TemplateValues) -> Value {
    pull_walk(steps, values)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Blocks,
    Variables,
    Env,
    StepOutputs,
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn walk(
    value: Value,
    path: &str,
    phase: Phase,
    values: &TemplateValues,
    errors: &mut Vec<TemplateError>,
) -> Value {
    match value {
        Value::String(s) => resolve_string(s, path, phase, values, errors),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| walk(v, &format!("{path}[{i}]"), phase, values, errors))
                .collect(),
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let p = child_path(path, &k);
                // Trigger parameters are restored untemplated after the step-output phase.
                let skip = phase == Phase::StepOutputs && is_trigger_parameters(&p);
                let v = if skip {
                    v
                } else {
                    walk(v, &p, phase, values, errors)
                };
                out.insert(k, v);
            }
            Value::Object(out)
        }
        other => other,
    }
}

/// `triggers[3].parameters`
fn is_trigger_parameters(path: &str) -> bool {
    path.strip_prefix("triggers[")
        .and_then(|rest| rest.split_once("].parameters"))
        .is_some_and(|(index, tail)| tail.is_empty() && index.chars().all(|c| c.is_ascii_digit()))
}

fn resolve_string(
    s: String,
    path: &str,
    phase: Phase,
    values: &TemplateValues,
    errors: &mut Vec<TemplateError>,
) -> Value {
    let all = find_placeholders(&s);
    if all.is_empty() {
        return Value::String(s);
    }
    let error = |p: &Placeholder, message: String| TemplateError {
        path: path.to_string(),
        placeholder: p.full_match.clone(),
        message,
    };
    match phase {
        Phase::Blocks => {
            let blocks: Vec<&Placeholder> = all
                .iter()
                .filter(|p| matches!(p.kind, PlaceholderKind::Block { .. }))
                .collect();
            if blocks.is_empty() {
                return Value::String(s);
            }
            if all.len() == 1 && all[0].full_match == s {
                return match block_value(&all[0], values) {
                    Ok(v) => v,
                    Err(m) => {
                        errors.push(error(&all[0], m));
                        Value::String(s)
                    }
                };
            }
            let mut result = s.clone();
            for p in blocks {
                match block_value(p, values) {
                    Ok(Value::Array(_)) | Ok(Value::Object(_)) => errors.push(error(
                        p,
                        format!(
                            "block placeholder {} resolves to a mapping or list, which cannot be \
                             embedded in a string; reference a scalar field instead (e.g. `.value` or `.url`)",
                            p.full_match
                        ),
                    )),
                    Ok(v) => result = result.replace(&p.full_match, &value_str(&v)),
                    Err(m) => errors.push(error(p, m)),
                }
            }
            Value::String(result)
        }
        Phase::Variables => {
            let vars: Vec<&Placeholder> = all
                .iter()
                .filter(|p| matches!(p.kind, PlaceholderKind::Variable { .. }))
                .collect();
            if vars.is_empty() {
                return Value::String(s);
            }
            if all.len() == 1 && all[0].full_match == s {
                return match variable_value(&all[0], values) {
                    Ok(v) => v,
                    Err(m) => {
                        errors.push(error(&all[0], m));
                        Value::String(s)
                    }
                };
            }
            let mut result = s.clone();
            for p in vars {
                match variable_value(p, values) {
                    Ok(v) => result = result.replace(&p.full_match, &value_str(&v)),
                    Err(m) => errors.push(error(p, m)),
                }
            }
            Value::String(result)
        }
        Phase::Env => {
            let mut replacements: HashMap<&str, String> = HashMap::new();
            for p in &all {
                if let PlaceholderKind::Env { name } = &p.kind {
                    match values.env.get(name) {
                        Some(v) => {
                            replacements.insert(&p.full_match, v.clone());
                        }
                        None => errors.push(error(
                            p,
                            format!(
                                "environment variable `{name}` is not set (referenced as {})",
                                p.full_match
                            ),
                        )),
                    }
                }
            }
            Value::String(substitute(&s, &replacements))
        }
        Phase::StepOutputs => {
            let relevant: Vec<&Placeholder> = all
                .iter()
                .filter(|p| p.kind != PlaceholderKind::Context)
                .collect();
            if relevant.is_empty() {
                return Value::String(s);
            }
            if relevant.len() == 1
                && relevant[0].full_match == s
                && relevant[0].kind == PlaceholderKind::StepOutput
            {
                return match get_from_dict(&values.step_outputs, &relevant[0].name) {
                    Some(v) => v.clone(),
                    None if values.steps_not_run => Value::String(s),
                    None => {
                        errors.push(error(relevant[0], step_output_message(relevant[0], values)));
                        Value::String(s)
                    }
                };
            }
            let mut replacements: HashMap<&str, String> = HashMap::new();
            for p in relevant {
                match &p.kind {
                    PlaceholderKind::StepOutput => {
                        match get_from_dict(&values.step_outputs, &p.name) {
                            Some(v) => {
                                replacements.insert(&p.full_match, value_str(v));
                            }
                            None if values.steps_not_run => {}
                            None => errors.push(error(p, step_output_message(p, values))),
                        }
                    }
                    PlaceholderKind::Env { name } => match values.env.get(name) {
                        Some(v) => {
                            replacements.insert(&p.full_match, v.clone());
                        }
                        None => errors.push(error(
                            p,
                            format!("environment variable `{name}` is not set"),
                        )),
                    },
                    _ => {}
                }
            }
            Value::String(substitute(&s, &replacements))
        }
    }
}

fn step_output_message(p: &Placeholder, values: &TemplateValues) -> String {
    let known: Vec<&str> = values.step_outputs.keys().map(String::as_str).collect();
    format!(
        "placeholder {} is not a block, variable or environment variable, and no build/push \
         step produced `{}` (known step outputs: {}); Prefect would silently drop it",
        p.full_match,
        p.name,
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}

/// Single-pass substitution of the given placeholders (others kept), so that
/// inserted values are never themselves treated as placeholders.
fn substitute(s: &str, replacements: &HashMap<&str, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (start, end, _) in scan(s) {
        let full = &s[start..end];
        if let Some(r) = replacements.get(full) {
            out.push_str(&s[last..start]);
            out.push_str(r);
            last = end;
        }
    }
    out.push_str(&s[last..]);
    out
}

fn block_value(p: &Placeholder, values: &TemplateValues) -> Result<Value, String> {
    let PlaceholderKind::Block { slug, name, path } = &p.kind else {
        return Err("not a block placeholder".to_string());
    };
    if slug.is_empty() || name.is_empty() {
        return Err(format!(
            "Invalid block placeholder format: '{}'. Expected format: prefect.blocks.<block-type-slug>.<block-document-name>",
            p.name
        ));
    }
    let data = match values.blocks.get(&(slug.clone(), name.clone())) {
        Some(Some(data)) => data,
        Some(None) => {
            return Err(format!(
                "Block not found: '{name}' of type '{slug}' (referenced as {}); create the block or fix the reference",
                p.full_match
            ))
        }
        None => return Err(format!("block '{slug}/{name}' was not fetched before templating (internal error)")),
    };
    let mut data = data;
    // A block whose data is just {"value": X} resolves to X unless the path asks for `value` itself.
    if let Value::Object(map) = data {
        if map.len() == 1 {
            if let Some(inner) = map.get("value") {
                let asks_for_value = path.as_deref().is_some_and(|kp| {
                    kp == "value" || kp.starts_with("value.") || kp.starts_with("value[")
                });
                if !asks_for_value {
                    data = inner;
                }
            }
        }
    }
    match path {
        None => Ok(data.clone()),
        Some(kp) => get_from_value(data, kp).cloned().ok_or_else(|| {
            format!(
                "key path `{kp}` does not exist in block '{slug}/{name}' (referenced as {})",
                p.full_match
            )
        }),
    }
}

fn variable_value(p: &Placeholder, values: &TemplateValues) -> Result<Value, String> {
    let PlaceholderKind::Variable { name } = &p.kind else {
        return Err("not a variable placeholder".to_string());
    };
    match values.variables.get(name) {
        Some(Some(v)) => Ok(v.clone()),
        Some(None) => Err(format!(
            "Prefect variable `{name}` does not exist (referenced as {}); Prefect would silently use \"\"",
            p.full_match
        )),
        None => Err(format!("variable '{name}' was not fetched before templating (internal error)")),
    }
}

/// Prefect's `get_from_dict` on a mapping: `a.b[1].c`.
pub(crate) fn get_from_dict<'v>(map: &'v Map<String, Value>, keys: &str) -> Option<&'v Value> {
    let mut parts = key_parts(keys).into_iter();
    let first = parts.next()?;
    let mut value = map.get(&first)?;
    for key in parts {
        value = step_into(value, &key)?;
    }
    Some(value)
}

fn get_from_value<'v>(value: &'v Value, keys: &str) -> Option<&'v Value> {
    let mut value = value;
    for key in key_parts(keys) {
        value = step_into(value, &key)?;
    }
    Some(value)
}

fn key_parts(keys: &str) -> Vec<String> {
    keys.replace('[', ".")
        .replace(']', "")
        .split('.')
        .map(str::to_string)
        .collect()
}

fn step_into<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(key),
        Value::Array(items) => {
            let index: i64 = key.parse().ok()?;
            // Python lists accept negative indices.
            let index = if index < 0 {
                items.len() as i64 + index
            } else {
                index
            };
            items.get(usize::try_from(index).ok()?)
        }
        _ => None,
    }
}

fn pull_walk(value: &Value, values: &TemplateValues) -> Value {
    match value {
        Value::String(s) => pull_string(s, values),
        Value::Array(items) => Value::Array(items.iter().map(|v| pull_walk(v, values)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), pull_walk(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `apply_values(pull, step_outputs, remove_notset=False)`.
fn pull_string(s: &str, values: &TemplateValues) -> Value {
    let all = find_placeholders(s);
    if all.is_empty() {
        return Value::String(s.to_string());
    }
    if all.len() == 1 && all[0].full_match == s && all[0].kind == PlaceholderKind::StepOutput {
        return get_from_dict(&values.step_outputs, &all[0].name)
            .cloned()
            .unwrap_or_else(|| Value::String(s.to_string()));
    }
    let mut replacements: HashMap<&str, String> = HashMap::new();
    for p in &all {
        let value = match &p.kind {
            PlaceholderKind::StepOutput | PlaceholderKind::Context => {
                get_from_dict(&values.step_outputs, &p.name).map(value_str)
            }
            PlaceholderKind::Env { name } => values.env.get(name).cloned(),
            _ => None,
        };
        if let Some(v) = value {
            replacements.insert(&p.full_match, v);
        }
    }
    Value::String(substitute(s, &replacements))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_what_blocks_and_env_vars_gave() {
        let mut values = TemplateValues::default();
        values.blocks.insert(
            ("secret".into(), "tok".into()),
            Some(json!({"value": "block-sentinel"})),
        );
        values.blocks.insert(
            ("json".into(), "cfg".into()),
            Some(json!({"value": {"a": ["x1", 7], "b": true}})),
        );
        values.env.insert("TOKEN".into(), "env-sentinel".into());
        values.env.insert("UNUSED".into(), "not-referenced".into());
        values
            .variables
            .insert("v".into(), Some(json!("plain-variable")));
        let found = secret_values(
            &placeholders(&json!({
                "a": "{{ prefect.blocks.secret.tok }}",
                "b": "x {{ $TOKEN }} {{ prefect.variables.v }} {{ step.out }}",
                "c": "{{ prefect.blocks.json.cfg.value }}",
            })),
            &values,
        );
        assert_eq!(found, ["block-sentinel", "env-sentinel", "x1", "7"]);
    }
    use serde_json::json;

    /// The values of the protocol's §7 "Observed sample".
    fn sample_values() -> TemplateValues {
        let mut v = TemplateValues::default();
        v.variables.insert("sample_num".into(), Some(json!(42)));
        v.variables
            .insert("sample_obj".into(), Some(json!({"k": [1, 2]})));
        v.variables
            .insert("sample_var".into(), Some(json!("var-value")));
        v.variables.insert("nope".into(), None);
        v.blocks.insert(
            ("secret".into(), "sample-secret".into()),
            Some(json!({"value": "s3cr3t"})),
        );
        v.blocks.insert(
            ("secret".into(), "sample-jsonsecret".into()),
            Some(json!({"value": {"a": {"b": [0, {"c": "deep"}]}}})),
        );
        v.blocks
            .insert(("secret".into(), "does-not-exist".into()), None);
        v.env.insert("SAMPLE_SOURCE".into(), "s3://from-env".into());
        v.env.insert("SAMPLE_BRANCH".into(), "dev".into());
        v.step_outputs.insert(
            "get-commit".into(),
            json!({"stdout": "abc123", "stderr": ""}),
        );
        v.step_outputs.insert("stdout".into(), json!("abc123"));
        v
    }

    fn resolve(config: Value) -> Result<Value, Vec<TemplateError>> {
        resolve_deployment(&config, &sample_values())
    }

    #[test]
    fn observed_sample_rows_that_prefect_resolves() {
        let out = resolve(json!({
            "parameters": {
                "num": "{{ prefect.variables.sample_num }}",
                "ctx_kept": "{{ ctx.flow_run.id }}",
                "composite": "pre-{{ $SAMPLE_SOURCE }}-post",
                "step_out": "{{ get-commit.stdout }}",
                "obj": "{{ prefect.variables.sample_obj }}",
                "deep": "{{ prefect.blocks.secret.sample-jsonsecret.a.b[1].c }}",
                "inline_var": "x-{{ prefect.variables.sample_num }}"
            },
            "tags": ["{{ prefect.variables.sample_var }}", "v-{{ prefect.variables.sample_var }}"],
            "description": "desc {{ prefect.blocks.secret.sample-secret }}",
            "version": "{{ get-commit.stdout }}"
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({
                "parameters": {
                    "num": 42,
                    "ctx_kept": "{{ ctx.flow_run.id }}",
                    "composite": "pre-s3://from-env-post",
                    "step_out": "abc123",
                    "obj": {"k": [1, 2]},
                    "deep": "deep",
                    "inline_var": "x-42"
                },
                "tags": ["var-value", "v-var-value"],
                "description": "desc s3cr3t",
                "version": "abc123"
            })
        );
    }

    // Rows where Prefect silently produces "" or drops the key: we fail instead.
    #[test]
    fn observed_sample_rows_that_prefect_blanks_are_errors() {
        for (value, needle) in [
            (
                "{{ prefect.variables.nope }}",
                "variable `nope` does not exist",
            ),
            (
                "x-{{ prefect.variables.nope }}",
                "variable `nope` does not exist",
            ),
            ("{{ $SAMPLE_NOT_SET }}", "`SAMPLE_NOT_SET` is not set"),
            ("a-{{ $SAMPLE_NOT_SET }}", "`SAMPLE_NOT_SET` is not set"),
            (
                "{{ not_a_step.value }}",
                "no build/push step produced `not_a_step.value`",
            ),
            ("v-{{ not_a_step.value }}", "no build/push step produced"),
            (
                "{{ prefect.blocks.secret.does-not-exist }}",
                "Block not found: 'does-not-exist' of type 'secret'",
            ),
            (
                "{{ prefect.blocks.secret.sample-jsonsecret.nope }}",
                "key path `nope` does not exist",
            ),
        ] {
            let errs = resolve(json!({"parameters": {"p": value}})).expect_err(value);
            assert_eq!(errs.len(), 1, "{value}: {errs:?}");
            assert_eq!(errs[0].path, "parameters.p");
            assert_eq!(errs[0].field(), "parameters");
            assert!(errs[0].message.contains(needle), "{value}: {}", errs[0]);
            assert!(
                value.contains(&errs[0].placeholder),
                "{value}: {}",
                errs[0].placeholder
            );
        }
    }

    #[test]
    fn all_errors_are_reported_with_paths() {
        let errs = resolve(json!({"tags": ["{{ $A }}", "{{ $B }}"], "work_pool": {"job_variables": {"env": {"T": "{{ $C }}"}}}}))
            .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["tags[0]", "tags[1]", "work_pool.job_variables.env.T"]
        );
    }

    #[test]
    fn env_is_always_a_string_and_block_value_unwrapping() {
        let mut v = sample_values();
        v.env.insert("NUM".into(), "5".into());
        v.blocks.insert(
            ("json".into(), "cfg".into()),
            Some(json!({"value": {"a": 1}, "other": 2})),
        );
        v.blocks.insert(
            ("secret".into(), "values-block".into()),
            Some(json!({"value": {"values": [7]}})),
        );
        let out = resolve_deployment(
            &json!({
                "a": "{{ $NUM }}",
                "b": "{{ prefect.blocks.secret.sample-secret }}",
                "c": "{{ prefect.blocks.secret.sample-secret.value }}",
                "d": "{{ prefect.blocks.json.cfg }}",
                "e": "{{ prefect.blocks.secret.sample-jsonsecret }}",
                "f": "{{ prefect.blocks.secret.values-block.values[0] }}",
                "g": "{{prefect.variables.sample_num}}"
            }),
            &v,
        )
        .unwrap();
        assert_eq!(out["a"], json!("5"));
        assert_eq!(out["b"], json!("s3cr3t"));
        assert_eq!(out["c"], json!("s3cr3t"));
        assert_eq!(out["d"], json!({"value": {"a": 1}, "other": 2}));
        assert_eq!(out["e"], json!({"a": {"b": [0, {"c": "deep"}]}}));
        assert_eq!(out["f"], json!(7));
        assert_eq!(out["g"], json!(42));
    }

    #[test]
    fn inline_block_dict_is_an_error_and_inline_values_use_python_str() {
        let errs =
            resolve(json!({"d": "x {{ prefect.blocks.secret.sample-jsonsecret }}"})).unwrap_err();
        assert!(errs[0].message.contains("cannot be embedded"));
        let out = resolve(json!({"d": "obj={{ prefect.variables.sample_obj }}"})).unwrap();
        assert_eq!(out["d"], json!("obj={'k': [1, 2]}"));
        let mut v = sample_values();
        v.variables.insert("flag".into(), Some(json!(true)));
        v.variables.insert("ratio".into(), Some(json!(1.0)));
        v.variables.insert("none".into(), Some(Value::Null));
        let out = resolve_deployment(
            &json!({"s": "{{ prefect.variables.flag }}/{{ prefect.variables.ratio }}/{{ prefect.variables.none }}"}),
            &v,
        )
        .unwrap();
        assert_eq!(out["s"], json!("True/1.0/None"));
    }

    #[test]
    fn triggers_parameters_keep_event_templates_but_get_env() {
        let out = resolve(json!({
            "triggers": [{
                "enabled": "{{ prefect.variables.sample_var }}",
                "parameters": {"n": "{{ event.payload.n }}", "src": "{{ $SAMPLE_SOURCE }}"}
            }]
        }))
        .unwrap();
        assert_eq!(
            out["triggers"][0]["parameters"],
            json!({"n": "{{ event.payload.n }}", "src": "s3://from-env"})
        );
        assert_eq!(out["triggers"][0]["enabled"], json!("var-value"));
        // Outside `parameters`, an unknown step output is still an error.
        assert!(resolve(json!({"triggers": [{"name": "{{ event.name }}"}]})).is_err());
    }

    #[test]
    fn build_push_pull_are_not_templated_here() {
        let out = resolve(json!({"pull": ["{{ $NOPE }}"], "build": null, "push": [], "name": "n"}))
            .unwrap();
        assert_eq!(out, json!({"name": "n"}));
    }

    #[test]
    fn pull_steps_keep_blocks_variables_and_runtime_outputs() {
        let steps = json!([
            {"prefect.deployments.steps.git_clone": {
                "id": "clone-step",
                "repository": "https://x/{{ $SAMPLE_BRANCH }}",
                "branch": "{{ $SAMPLE_BRANCH }}",
                "access_token": "{{ prefect.blocks.secret.sample-secret }}",
                "var_in_pull": "{{ prefect.variables.sample_var }}",
                "commit": "{{ get-commit.stdout }}",
                "missing_env": "{{ $NOT_SET_ANYWHERE }}"
            }},
            {"prefect.deployments.steps.pip_install_requirements": {"directory": "{{ clone-step.directory }}"}}
        ]);
        let out = resolve_pull_steps(&steps, &sample_values());
        let clone = &out[0]["prefect.deployments.steps.git_clone"];
        assert_eq!(clone["repository"], "https://x/dev");
        assert_eq!(clone["branch"], "dev");
        assert_eq!(
            clone["access_token"],
            "{{ prefect.blocks.secret.sample-secret }}"
        );
        assert_eq!(clone["var_in_pull"], "{{ prefect.variables.sample_var }}");
        assert_eq!(clone["commit"], "abc123");
        assert_eq!(clone["missing_env"], "{{ $NOT_SET_ANYWHERE }}");
        assert_eq!(
            out[1]["prefect.deployments.steps.pip_install_requirements"]["directory"],
            "{{ clone-step.directory }}"
        );
    }

    #[test]
    fn scanner_matches_prefects_regex() {
        let names = |s: &str| {
            find_placeholders(s)
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("{{a}} {{ b.c[0] }} {{  $X  }}"),
            ["a", "b.c[0]", "$X"]
        );
        assert_eq!(names("{{{ a }}}"), ["a"]);
        assert_eq!(names("{{ a b }}"), Vec::<String>::new());
        assert_eq!(names("{{ }}"), Vec::<String>::new());
        assert_eq!(names("{{ ünï }}"), ["ünï"]);
        assert_eq!(names("{{ a }}{{ a }}"), ["a"]);
        assert_eq!(names("{{ a\n}}"), ["a"]);
        assert_eq!(names("${VAR} {{ a"), Vec::<String>::new());
        let ps = placeholders(
            &json!({"x": ["{{ prefect.blocks.s.n.k }}", {"y": "{{ prefect.variables.v }}"}], "z": "{{ $E }} {{ ctx.a }} {{ o.p }}"}),
        );
        let kinds: Vec<PlaceholderKind> = ps.into_iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                PlaceholderKind::Block {
                    slug: "s".into(),
                    name: "n".into(),
                    path: Some("k".into())
                },
                PlaceholderKind::Variable { name: "v".into() },
                PlaceholderKind::Env { name: "E".into() },
                PlaceholderKind::Context,
                PlaceholderKind::StepOutput,
            ]
        );
    }

    #[test]
    fn inline_step_output_whole_string_twice_is_inline() {
        // "{{ a }}{{ a }}" is one distinct placeholder but not the whole string: str() substitution.
        let mut v = sample_values();
        v.step_outputs.insert("n".into(), json!(3));
        let out = resolve_deployment(&json!({"x": "{{ n }}{{ n }}", "y": "{{ n }}"}), &v).unwrap();
        assert_eq!(out, json!({"x": "33", "y": 3}));
    }
}
