//! Hostile and broken projects: `register-flows` must reject each one with a clear error
//! (exit 1, no panic, no hang, the words in the case's `expect.txt`) and leave the Prefect
//! server byte-for-byte as it was (deployments, flows, work pools, variables, global limits). Fixtures: `tests/fixtures/bad/` (see its README.md).
//!
//! The server is the harness's server 1, shared with other suites running at the same time,
//! so the before/after snapshot is scoped to records mentioning `xbad` — the marker every
//! fixture name carries. A control run of a *valid* project first proves the scope sees what
//! register-flows writes (otherwise "unchanged" would prove nothing).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use xtask::prefect::api::PrefectClient;

use crate::support::bin::{excerpt, Invocation};
use crate::support::{client, copy_tree, fixtures, scratch_dir, server_url};

/// Every fixture name contains this; the snapshot keeps records that mention it.
const MARKER: &str = "xbad";
/// The work pool the fixtures' valid deployments use; created by the suite.
const POOL: &str = "xbad-pool";
/// A pool the unknown-pool fixture names; it must never come to exist.
const MISSING_POOL: &str = "xbad-no-such-pool";

fn fixtures_dir() -> PathBuf {
    fixtures("bad")
}

/// The `xbad` part of the server: deployments, flows, work pools and variables as the
/// filter endpoints return them, each list sorted by id and serialized.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    collections: Vec<(&'static str, Vec<(String, String)>)>,
}

fn read_all(client: &PrefectClient, path: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let page = client
            .post(path, &json!({"limit": 200, "offset": all.len()}))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let items = page.as_array().cloned().unwrap_or_default();
        let done = items.len() < 200;
        all.extend(items);
        if done {
            return all;
        }
    }
}

fn snapshot(client: &PrefectClient) -> Snapshot {
    let mut collections = Vec::new();
    for (label, path) in [
        ("deployments", "/deployments/filter"),
        ("flows", "/flows/filter"),
        ("work_pools", "/work_pools/filter"),
        ("variables", "/variables/filter"),
        ("concurrency_limits", "/v2/concurrency_limits/filter"),
    ] {
        let mut records: Vec<(String, String)> = read_all(client, path)
            .into_iter()
            .map(|record| (record["id"].to_string(), record.to_string()))
            .filter(|(_, text)| text.to_lowercase().contains(MARKER))
            .collect();
        records.sort();
        collections.push((label, records));
    }
    Snapshot { collections }
}

/// What changed between two snapshots, one line per record.
fn describe_changes(before: &Snapshot, after: &Snapshot) -> String {
    let mut lines = Vec::new();
    for ((label, old), (_, new)) in before.collections.iter().zip(&after.collections) {
        for (id, text) in new {
            match old.iter().find(|(old_id, _)| old_id == id) {
                None => lines.push(format!("  {label}: created {}", excerpt(text))),
                Some((_, old_text)) if old_text != text => {
                    lines.push(format!("  {label}: modified {}", excerpt(text)))
                }
                Some(_) => {}
            }
        }
        for (id, text) in old {
            if !new.iter().any(|(new_id, _)| new_id == id) {
                lines.push(format!("  {label}: deleted {}", excerpt(text)));
            }
        }
    }
    lines.join("\n")
}

/// Deletes every `xbad` deployment and flow (leftovers of the control run or of an earlier,
/// buggy run) and the pool that must not exist.
fn remove_leftovers(client: &PrefectClient) {
    for deployment in read_all(client, "/deployments/filter") {
        if deployment["name"].as_str().unwrap_or("").contains(MARKER) {
            let id = deployment["id"].as_str().unwrap();
            client.delete(&format!("/deployments/{id}")).unwrap();
        }
    }
    for flow in read_all(client, "/flows/filter") {
        if flow["name"].as_str().unwrap_or("").contains(MARKER) {
            let id = flow["id"].as_str().unwrap();
            client.delete(&format!("/flows/{id}")).unwrap();
        }
    }
    client
        .delete(&format!("/work_pools/{MISSING_POOL}"))
        .unwrap();
}

/// A case ready to run: its project in a scratch directory and the fragments stderr must hold.
struct Case {
    name: String,
    project: PathBuf,
    expect: Vec<String>,
    /// `known-failure.txt`: why the engine does not reject this case cleanly yet. Its problems
    /// are printed instead of failing the suite; once it passes, the file must go.
    known_failure: Option<String>,
}

fn read_expect(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The shared flows plus the case's own files, in a scratch directory, so nothing the
/// command might write lands in the fixtures.
fn materialize(root: &Path, name: &str, case_dir: Option<&Path>) -> PathBuf {
    let project = root.join(name);
    copy_tree(&fixtures_dir().join("_shared"), &project);
    if let Some(dir) = case_dir {
        copy_tree(dir, &project);
        let _ = std::fs::remove_file(project.join("expect.txt"));
        let _ = std::fs::remove_file(project.join("known-failure.txt"));
    }
    project
}

fn fixture_cases(root: &Path) -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('_'))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dir = fixtures_dir().join(&name);
            let expect = read_expect(&dir.join("expect.txt"));
            assert!(
                !expect.is_empty(),
                "{name}/expect.txt lists no expected words"
            );
            let known_failure = std::fs::read_to_string(dir.join("known-failure.txt")).ok();
            Case {
                project: materialize(root, &name, Some(&dir)),
                name,
                expect,
                known_failure,
            }
        })
        .collect()
}

/// A ~4 MB prefect.yaml of valid deployments whose last line is a syntax error: the error must
/// name that line, and reading the file must not take long.
fn multi_megabyte_case(root: &Path) -> Case {
    let name = "generated-multi-megabyte-syntax-error-at-end".to_string();
    let project = materialize(root, &name, None);
    let mut yaml = String::from("name: xbad\ndeployments:\n");
    let mut i = 0;
    while yaml.len() < 4 * 1024 * 1024 {
        yaml.push_str(&format!(
            "  - name: xbad-bulk-{i:06}\n    description: {}\n    entrypoint: flows/xbad_flow.py:xbad_flow\n    work_pool:\n      name: {POOL}\n",
            "filler ".repeat(8)
        ));
        i += 1;
    }
    yaml.push_str("  - name: xbad-last\n    tags: [unclosed\n");
    let last_line = yaml.lines().count();
    std::fs::write(project.join("prefect.yaml"), &yaml).unwrap();
    // The unclosed `[` is found at the end of the input: the line after the last one.
    Case {
        name,
        project,
        expect: vec![format!("prefect.yaml:{}:", last_line + 1)],
        known_failure: None,
    }
}

fn register_flows(project: &Path) -> Invocation {
    let prefect_file = project.join("prefect.yaml");
    Invocation::new(
        project,
        &[
            "register-flows",
            "--prefect-file",
            prefect_file.to_str().unwrap(),
        ],
    )
    .env("PREFECT_API_URL", &server_url())
    .env("XTASK_PROJECT_ROOT", project.to_str().unwrap())
}

/// A valid project registers (exit 0) and the snapshot sees it: the scope is not vacuous.
fn control_run(client: &PrefectClient, root: &Path) -> Result<(), String> {
    let project = materialize(root, "_control", None);
    std::fs::write(
        project.join("prefect.yaml"),
        format!(
            "name: xbad\ndeployments:\n  - name: xbad-control\n    entrypoint: flows/xbad_flow.py:xbad_flow\n    work_pool:\n      name: {POOL}\n"
        ),
    )
    .unwrap();
    let before = snapshot(client);
    let outcome = register_flows(&project).run();
    let after = snapshot(client);
    let result = if outcome.code != Some(0) {
        Err(format!(
            "control: a valid project must register (exit {:?}):\n{}",
            outcome.code,
            outcome.stderr_excerpt()
        ))
    } else if before == after {
        Err(
            "control: registering a valid project left the `xbad` snapshot unchanged, so the \
             snapshot cannot detect writes"
                .to_string(),
        )
    } else {
        Ok(())
    };
    remove_leftovers(client);
    result
}

#[test]
fn bad_projects_fail_cleanly_and_leave_the_server_unchanged() {
    let client = client();
    client.create_work_pool(POOL, "process").unwrap();
    remove_leftovers(&client);
    let root = scratch_dir("bad-inputs");

    let mut failures = Vec::new();
    let mut known = Vec::new();
    if let Err(problem) = control_run(&client, &root) {
        failures.push(problem);
    }

    let mut cases = fixture_cases(&root);
    assert!(
        cases.len() >= 30,
        "the suite needs at least 30 bad projects, has {}",
        cases.len()
    );
    cases.push(multi_megabyte_case(&root));

    for case in &cases {
        let before = snapshot(&client);
        let outcome = register_flows(&case.project).run();
        let after = snapshot(&client);

        let mut problems = outcome.clean_failure_problems();
        let stderr = outcome.stderr.to_lowercase();
        for word in &case.expect {
            if !stderr.contains(&word.to_lowercase()) {
                problems.push(format!("stderr lacks {word:?}"));
            }
        }
        if before != after {
            problems.push(format!(
                "the server changed:\n{}",
                describe_changes(&before, &after)
            ));
            remove_leftovers(&client);
        }
        let report = |problems: &[String]| {
            format!(
                "{} ({:.1} s): {}\n--- stderr ---\n{}",
                case.name,
                outcome.elapsed.as_secs_f64(),
                problems.join("; "),
                outcome.stderr_excerpt()
            )
        };
        match (&case.known_failure, problems.is_empty()) {
            (None, true) => {}
            (None, false) => failures.push(report(&problems)),
            // A known wording or rollback gap; a panic, hang or wrong exit code never is.
            (Some(why), false) if outcome.clean_failure_problems().is_empty() => {
                known.push(format!("{}\n  known: {}", report(&problems), why.trim()))
            }
            (Some(_), false) => failures.push(report(&problems)),
            (Some(_), true) => failures.push(format!(
                "{}: rejected cleanly now; delete its known-failure.txt",
                case.name
            )),
        }
    }
    if !known.is_empty() {
        eprintln!(
            "{} known failures (tests/fixtures/bad/*/known-failure.txt):\n\n{}",
            known.len(),
            known.join("\n\n")
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases were not rejected cleanly:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
