//! The fuzz targets' bodies, shared with `xtask/tests/it/fuzz_regressions.rs`, which replays the
//! committed corpus and crash inputs through exactly these functions in a normal `cargo test`.
//! A target fails only by panicking, overflowing the stack or hanging: errors are fine, that
//! is what bad input is for.

use serde_json::{json, Map, Value};
use xtask::prefect::template::{PlaceholderKind, TemplateValues};

/// bytes → prefect.yaml model (pass 1) → templating with fake values and validation (pass 2)
/// → the payload pieces built from it (schedules, entrypoint).
pub fn prefect_yaml(data: &[u8]) {
    prefect_yaml_resolved(data);
}

/// [`prefect_yaml`], returning how many deployments resolved (the replay test checks the
/// harness gets that deep on its seeds).
pub fn prefect_yaml_resolved(data: &[u8]) -> usize {
    let Ok(file) = xtask::prefect::prefect_yaml::parse("prefect.yaml", data) else {
        return 0;
    };
    let mut resolved_count = 0;
    for deployment in &file.deployments {
        let values = fake_values(&deployment.placeholders());
        let Ok(resolved) = xtask::prefect::prefect_yaml::resolve(&file, deployment, &values) else {
            continue;
        };
        resolved_count += 1;
        let now = jiff_now();
        for schedule in resolved.schedules.iter().flatten() {
            let desired = schedule.desired(now);
            let _ = desired.create_body();
            let _ = desired.patch_body();
        }
        if let Ok(entrypoint) = xtask::prefect::flow::parse_entrypoint(&resolved.entrypoint) {
            let _ = entrypoint.file_candidates();
            let _ = entrypoint.file_label();
        }
    }
    resolved_count
}

/// bytes → Python source → `read_flow` for every function the file defines (and a few names
/// it does not), then the schema serialized the way it is sent.
pub fn flow_source(data: &[u8]) {
    flow_source_read(data);
}

/// [`flow_source`], returning how many flows were read successfully.
pub fn flow_source_read(data: &[u8]) -> usize {
    let source = String::from_utf8_lossy(data);
    let mut read = 0;
    let mut names = defined_functions(&source);
    names.extend([
        "flow".to_string(),
        "missing".to_string(),
        "A.b".to_string(),
        String::new(),
    ]);
    for name in names {
        if let Ok(info) = xtask::prefect::flow::read_flow(&source, "flows/fuzz.py", &name) {
            let _ = xtask::prefect::python_text::to_python_json(&info.parameter_openapi_schema);
            read += 1;
        }
    }
    read
}

/// A fixed instant, so a run is reproducible.
fn jiff_now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_767_225_600).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// `def name` and `Class.name` found by a line scan (a harness heuristic, not a Python parser:
/// it only picks which names to ask the real reader for).
fn defined_functions(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut class: Option<(usize, String)> = None;
    for line in source.lines() {
        let indent = line.len() - line.trim_start().len();
        let code = line.trim_start();
        if let Some((class_indent, _)) = &class {
            if !code.is_empty() && indent <= *class_indent {
                class = None;
            }
        }
        if let Some(rest) = code.strip_prefix("class ") {
            class = Some((indent, identifier(rest)));
            continue;
        }
        let rest = code.strip_prefix("async ").unwrap_or(code);
        if let Some(rest) = rest.strip_prefix("def ") {
            let name = identifier(rest);
            match &class {
                Some((_, class_name)) => names.push(format!("{class_name}.{name}")),
                None => names.push(name),
            }
        }
    }
    names.truncate(64);
    names
}

fn identifier(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Deterministic stand-ins for what the server and environment would supply: some
/// placeholders resolve (to strings, numbers, objects, lists), some are missing.
fn fake_values(placeholders: &[xtask::prefect::template::Placeholder]) -> TemplateValues {
    let mut values = TemplateValues::default();
    for placeholder in placeholders {
        let h = fnv(&placeholder.name);
        let value = match h % 5 {
            0 => json!("fake"),
            1 => json!(42),
            2 => json!({"value": "inner", "k": [1, {"deep": true}]}),
            3 => json!(["a", 2.5, null]),
            _ => json!("{{ $NESTED }}"),
        };
        let present = h % 7 != 0;
        match &placeholder.kind {
            PlaceholderKind::Block { slug, name, .. } => {
                values
                    .blocks
                    .insert((slug.clone(), name.clone()), present.then(|| value.clone()));
            }
            PlaceholderKind::Variable { name } => {
                values
                    .variables
                    .insert(name.clone(), present.then(|| value.clone()));
            }
            PlaceholderKind::Env { name } => {
                if present {
                    values.env.insert(name.clone(), value.to_string());
                }
            }
            PlaceholderKind::StepOutput => {
                if present {
                    insert_step_output(&mut values.step_outputs, &placeholder.name, value);
                }
            }
            PlaceholderKind::Context => {}
        }
    }
    values
}

/// `a.b.c` → `{"a": {"b": {"c": value}}}` merged into `outputs`.
fn insert_step_output(outputs: &mut Map<String, Value>, dotted: &str, value: Value) {
    let mut parts = dotted.split('.').peekable();
    let mut map = outputs;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return;
        }
        let entry = map.entry(part.to_string()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        match entry {
            Value::Object(inner) => map = inner,
            _ => return,
        }
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
