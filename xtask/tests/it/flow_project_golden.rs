//! Golden tests on whole projects: `read_project_flow` against what Prefect 3.9.1 reports for
//! flows whose decorator, aliases and models live in other project modules, and for flows
//! harvested from public repositories (tests/fixtures/flow_projects/, goldens made by
//! scripts/gen_flow_project_goldens.py in both of Prefect's modes: the module imported, and its
//! source read without importing it).
//!
//! xtask must equal the `imported` answer (what `prefect deploy` stores where the flow's
//! packages are installed), or refuse with a message naming file, line and construct, or be a
//! listed difference with its reason (docs/parity.md repeats them).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use xtask::prefect::flow::{
    file_version_hash, locate_entrypoint_file, parse_entrypoint, read_project_flow, FlowErrorKind,
};
use xtask::prefect::python_text::to_python_json_pretty;

/// Cases xtask refuses: (entrypoint, text the message must contain).
const REFUSED: &[(&str, &str)] = &[(
    "rw01_test_param_display.py:mainPydantic",
    "rw01_test_param_display.py:22: model PydanticFieldsDefault.uuid_field_default: annotation uses `pydantic.UUID4`",
)];

/// Cases whose result differs from the imported golden: (entrypoint, field, why).
const DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "rw03_optional_field.py:optional",
        "version",
        "the default instance misses a required field, so importing the file fails; Prefect \
         falls back to reading the source and stores no version, xtask the file's md5",
    ),
    (
        "rw12_covid_backfill.py:main",
        "version",
        "the file imports a module the fixture lacks; Prefect falls back to reading the source \
         and stores no version, xtask the file's md5",
    ),
    (
        "rw25_keiba_backfill.py:backfillRaceId",
        "version",
        "same: a relative import of a missing sibling module",
    ),
];

/// Cases expected to produce warnings (the others must be silent).
const EXPECTED_WARNINGS: &[&str] = &[
    // The default instance cannot be built (Prefect sends null too).
    "rw03_optional_field.py:optional",
    // The decorator comes from an `if` whose other branch is not Prefect's.
    "flows/main.py:switched",
];

fn projects() -> PathBuf {
    crate::support::fixtures("flow_projects")
}

/// (project dir, golden file) for every golden.
fn goldens() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for project in fs::read_dir(projects()).expect("flow_projects") {
        let project = project.expect("dir entry").path();
        let Ok(entries) = fs::read_dir(project.join("goldens")) else {
            continue;
        };
        for golden in entries {
            out.push((project.clone(), golden.expect("dir entry").path()));
        }
    }
    out.sort();
    out
}

fn read_in(project: &Path) -> impl Fn(&Path) -> Option<String> + Sync + '_ {
    move |relative: &Path| fs::read_to_string(project.join(relative)).ok()
}

#[test]
fn project_flows_match_prefect_goldens() {
    let mut failures = Vec::new();
    let mut compared = 0usize;
    let mut refused = 0usize;
    let mut differing = 0usize;
    for (project, golden_path) in goldens() {
        let golden: Value =
            serde_json::from_str(&fs::read_to_string(&golden_path).expect("golden")).expect("JSON");
        let entrypoint = golden["entrypoint"].as_str().expect("entrypoint");
        let imported = &golden["imported"];
        assert!(
            imported.get("schema").is_some() && golden["source_only"].is_object(),
            "{entrypoint}: the golden lacks a mode; rerun the generator"
        );
        let parsed = parse_entrypoint(entrypoint).expect("entrypoint");
        let file = locate_entrypoint_file(&project, &parsed).expect("flow file");
        let relative = file.strip_prefix(&project).expect("inside the project");
        let bytes = fs::read(&file).expect("flow source");
        let source = String::from_utf8(bytes.clone()).expect("utf-8");
        let result = read_project_flow(&parsed, relative, &source, &read_in(&project));

        if let Some((_, needle)) = REFUSED.iter().find(|(case, _)| *case == entrypoint) {
            refused += 1;
            match result {
                Err(err)
                    if err.kind == FlowErrorKind::Unsupported
                        && err.to_string().contains(needle)
                        && err.line.is_some() => {}
                other => failures.push(format!(
                    "{entrypoint}: expected a refusal containing {needle:?}, got {other:?}"
                )),
            }
            continue;
        }
        let info = match result {
            Ok(info) => info,
            Err(err) => {
                failures.push(format!("{entrypoint}: unexpected error {err}"));
                continue;
            }
        };
        let ours = json!({
            "flow_name": info.flow_name,
            "description": info.description,
            "version": info.version.clone().unwrap_or_else(|| file_version_hash(&bytes)),
            "schema": info.parameter_openapi_schema,
        });
        let mut expected = imported.clone();
        let listed: Vec<_> = DIFFERENCES
            .iter()
            .filter(|(case, _, _)| *case == entrypoint)
            .collect();
        for (_, field, _) in &listed {
            // The listed field is compared apart: it must really differ.
            if expected[*field] == ours[*field] {
                failures.push(format!("{entrypoint}: `{field}` is listed as a difference but matches; remove it from DIFFERENCES"));
            }
            expected[*field] = ours[*field].clone();
        }
        if !listed.is_empty() {
            differing += 1;
        }
        let expected_text = to_python_json_pretty(&expected, 2);
        let ours_text = to_python_json_pretty(&ours, 2);
        if expected_text != ours_text {
            failures.push(format!(
                "{entrypoint}: differs from Prefect's\n--- expected\n{expected_text}\n--- ours\n{ours_text}"
            ));
        }
        compared += 1;
        let expects_warnings = EXPECTED_WARNINGS.contains(&entrypoint);
        if expects_warnings == info.warnings.is_empty() {
            failures.push(format!(
                "{entrypoint}: warnings expected: {expects_warnings}, got {:?}",
                info.warnings
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(refused, REFUSED.len(), "every listed refusal has a golden");
    assert_eq!(
        differing,
        DIFFERENCES
            .iter()
            .map(|d| d.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        "every listed difference has a golden"
    );
    assert!(compared >= 35, "compared only {compared} flows");
}

/// The harvested corpus stays at 30 flows or more, each file crediting its source.
#[test]
fn harvested_flows_credit_their_source() {
    let dir = projects().join("realworld");
    let mut flows = 0usize;
    for entry in fs::read_dir(&dir).expect("realworld") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("py") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("fixture");
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("# Harvested from ") && first.contains(", "),
            "{}: the first line must credit the repository and path",
            path.display()
        );
        flows += text.matches("\n@flow").count();
    }
    assert!(flows >= 30, "only {flows} harvested flows");
}
