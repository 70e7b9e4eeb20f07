//! Golden tests: `read_flow` against what Prefect 3.9.1 itself reports for the same files.
//!
//! The fixtures under tests/fixtures/flows/ are plain flow files; next to each one,
//! `<file>.<function>.expected.json` holds Prefect's answer (flow name, description, version,
//! `parameter_schema(flow).model_dump(exclude_unset=True)`), produced by
//! scripts/gen_schema_fixtures.py. The comparison is on the serialised text, so key order and
//! number formatting count, not just JSON equality.

use std::fs;
use std::path::PathBuf;

use serde_json::{json, Value};
use xtask::prefect::flow::{file_version_hash, read_flow, FlowErrorKind};
use xtask::prefect::python_text::to_python_json_pretty;

/// Cases where Prefect's answer depends on the Python environment, not on the source.
const KNOWN_DIVERGENCES: &[(&str, &str)] = &[(
    "unresolved_names.py:unresolved_types",
    "the imported module is not installed, so Prefect falls back to its AST loader (annotations \
     dropped whole, version null); xtask assumes the flow's dependencies are installed, as they \
     are where the flow runs",
)];

/// Cases expected to produce warnings (the others must be silent).
const EXPECTED_WARNINGS: &[&str] = &[
    "thirdparty.py:thirdparty_types",
    "unresolved_names.py:unresolved_types",
    "unresolved_future.py:future_unresolved",
];

fn fixtures() -> PathBuf {
    crate::support::fixtures("flows")
}

fn golden_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(fixtures())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    files.sort();
    files
}

/// The message inside Prefect's `ScriptError` text: `...: InvalidNameError("msg")`.
fn inner_exception_message(error: &str) -> String {
    let start = error.find(['(']).map_or(0, |i| i + 2);
    error
        .get(start..error.len().saturating_sub(2))
        .unwrap_or("")
        .replace("\\'", "'")
}

#[test]
fn read_flow_matches_prefect_goldens() {
    let files = golden_files();
    let mut failures = Vec::new();
    let mut parameters = 0usize;
    let mut flows = 0usize;
    let mut errors = 0usize;
    let mut divergences_seen = 0usize;
    for golden_path in &files {
        let golden_text = fs::read_to_string(golden_path).expect("golden file");
        let golden: Value = serde_json::from_str(&golden_text).expect("golden JSON");
        let entrypoint = golden["entrypoint"].as_str().expect("entrypoint");
        let (file, function) = entrypoint.rsplit_once(':').expect("file:function");
        let bytes = fs::read(fixtures().join(file)).expect("fixture source");
        let source = String::from_utf8(bytes.clone()).expect("utf-8 source");
        let result = read_flow(&source, file, function);

        if let Some(expected_error) = golden.get("error").and_then(Value::as_str) {
            errors += 1;
            let error_type = golden["error_type"].as_str().unwrap_or("");
            let Err(err) = result else {
                failures.push(format!(
                    "{entrypoint}: expected error {expected_error:?}, got a flow"
                ));
                continue;
            };
            let ok = match error_type {
                "MissingFlowError" => err.message == expected_error.trim_end(),
                "SyntaxError" => {
                    let line = expected_error
                        .rsplit("line ")
                        .next()
                        .and_then(|l| l.trim_end_matches(')').parse().ok());
                    err.kind == FlowErrorKind::Syntax && err.line == line
                }
                "ScriptError" => {
                    let inner = inner_exception_message(expected_error);
                    // Prefect's import stops at the module's first invalid flow, which may
                    // be another function than the one asked for.
                    err.message == inner
                        || (err.kind == FlowErrorKind::InvalidName && inner.starts_with("Name '"))
                }
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{entrypoint}: expected {error_type} {expected_error:?}, got {err}"
                ));
            }
            continue;
        }

        let divergence = KNOWN_DIVERGENCES
            .iter()
            .find(|(case, _)| *case == entrypoint);
        let info = match result {
            Ok(info) => info,
            Err(err) => {
                failures.push(format!("{entrypoint}: unexpected error {err}"));
                continue;
            }
        };
        flows += 1;
        parameters += golden["schema"]["properties"]
            .as_object()
            .map_or(0, |p| p.len());
        let ours = json!({
            "entrypoint": entrypoint,
            "flow_name": info.flow_name,
            "description": info.description,
            "version": info.version.clone().unwrap_or_else(|| file_version_hash(&bytes)),
            "schema": info.parameter_openapi_schema,
        });
        let ours_text = to_python_json_pretty(&ours, 2) + "\n";
        match divergence {
            Some(_) => {
                divergences_seen += 1;
                if ours_text == golden_text {
                    failures.push(format!("{entrypoint}: listed as a known divergence but now matches; remove it from KNOWN_DIVERGENCES"));
                }
            }
            None if ours_text != golden_text => failures.push(format!(
                "{entrypoint}: output differs from Prefect's\n--- expected\n{golden_text}--- ours\n{ours_text}"
            )),
            None => {}
        }
        let expects_warnings = EXPECTED_WARNINGS.contains(&entrypoint);
        for warning in &info.warnings {
            println!("{entrypoint}: warning: {warning}");
        }
        if expects_warnings == info.warnings.is_empty() {
            failures.push(format!(
                "{entrypoint}: warnings expected: {expects_warnings}, got {:?}",
                info.warnings
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
    assert_eq!(
        divergences_seen,
        KNOWN_DIVERGENCES.len(),
        "every known divergence has a golden file"
    );
    // Guard against the fixture set silently shrinking.
    assert!(
        flows >= 50 && errors >= 10 && parameters >= 200,
        "flows {flows}, errors {errors}, parameters {parameters}"
    );
}
