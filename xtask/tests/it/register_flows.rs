//! `cargo xtask register-flows` end to end: the real binary, a temp project with prefect.yaml and a
//! flow file, a real Prefect server (optionally behind the fault proxy). Server state is asserted
//! by reading it back, never from our own output.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::bin::{describe as text, xtask};
use crate::support::fault_proxy::{Fault, FaultProxy, Rules};
use crate::support::sync::{client_with_retries, deployment_id, snapshot};
use crate::support::{ensure_pool, scratch_dir, server_url, unique, wait_for};

/// A throwaway project: prefect.yaml + flows/sample.py, unique flow/pool/project names.
struct Project {
    dir: PathBuf,
    flow: String,
    pool: String,
    name: String,
}

impl Project {
    fn new(tag: &str) -> Project {
        let flow = unique(&format!("rf-{tag}"));
        let pool = unique(&format!("rf-pool-{tag}"));
        let name = unique(&format!("rf-proj-{tag}"));
        let dir = scratch_dir(&unique(&format!("rf-{tag}")));
        std::fs::create_dir_all(dir.join("flows")).unwrap();
        std::fs::write(
            dir.join("flows/sample.py"),
            format!(
                "from prefect import flow\n\n\n@flow(name=\"{flow}\")\ndef sample(n: int = 1, label: str = \"x\"):\n    \"\"\"A sample flow.\"\"\"\n    return n\n"
            ),
        )
        .unwrap();
        ensure_pool(&client_with_retries(&server_url(), 3), &pool);
        Project {
            dir,
            flow,
            pool,
            name,
        }
    }

    /// Writes prefect.yaml with `deployments` (a YAML list body, already indented by 2).
    fn write_yaml(&self, deployments: &str) {
        let yaml = format!(
            "name: {}\nprefect-version: 3.9.1\n\npull:\n  - prefect.deployments.steps.set_working_directory:\n      directory: /opt/test\n\ndeployments:\n{deployments}",
            self.name
        );
        std::fs::write(self.dir.join("prefect.yaml"), yaml).unwrap();
    }

    /// One deployment entry.
    fn entry(&self, name: &str, n: i64, cron: &str) -> String {
        format!(
            "  - name: {name}\n    entrypoint: flows/sample.py:sample\n    parameters:\n      n: {n}\n    tags: [test]\n    work_pool:\n      name: {}\n    schedules:\n      - cron: \"{cron}\"\n        timezone: UTC\n",
            self.pool
        )
    }

    fn command(&self, api_url: &str, args: &[&str]) -> Command {
        let mut cmd = xtask();
        cmd.arg("register-flows")
            .args(args)
            .current_dir(&self.dir)
            .env("PREFECT_API_URL", api_url);
        cmd
    }

    fn run(&self, api_url: &str, args: &[&str]) -> Output {
        self.command(api_url, args).output().expect("run xtask")
    }

    fn state(&self) -> std::collections::BTreeMap<String, Value> {
        snapshot(&client_with_retries(&server_url(), 3), &self.flow)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn exit_code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

#[test]
fn create_rerun_change_check_dry_run_prune() {
    let p = Project::new("life");
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    p.write_yaml(&(p.entry("a", 1, "0 1 * * *") + &p.entry("b", 1, "0 2 * * *")));

    // Create.
    let out = p.run(&proxy.api_url, &["--json"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let state = p.state();
    assert_eq!(state.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(state["a"]["parameters"], json!({"n": 1}));
    assert_eq!(
        state["a"]["labels"],
        json!({"xtask.project": p.name, "xtask.prefect-file": "prefect.yaml"})
    );
    assert_eq!(state["a"]["description"], json!("A sample flow."));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("--json prints one JSON document");
    assert_eq!(doc["status"], json!("applied"));
    assert_eq!(doc["summary"]["create"], json!(2));

    // Unchanged re-run: zero writes.
    proxy.reset_counts();
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert_eq!(proxy.writes(), 0, "{:#?}", proxy.write_lines());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("unchanged {}/a", p.flow)),
        "{}",
        text(&out)
    );

    // --check in sync → 0.
    assert_eq!(exit_code(&p.run(&proxy.api_url, &["--check"])), 0);

    // One field changes: exactly one PATCH, and only that field changes on the server.
    p.write_yaml(&(p.entry("a", 2, "0 1 * * *") + &p.entry("b", 1, "0 2 * * *")));
    let out = p.run(&proxy.api_url, &["--check", "--json"]);
    assert_eq!(exit_code(&out), 2, "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], json!("drift"));
    assert_eq!(
        doc["deployments"][0]["changes"][0],
        json!({"path": "parameters.n", "old": 1, "new": 2})
    );
    let out = p.run(&proxy.api_url, &["--dry-run"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert_eq!(
        proxy.writes(),
        0,
        "--check and --dry-run must not write: {:#?}",
        proxy.write_lines()
    );
    assert_eq!(p.state()["a"]["parameters"], json!({"n": 1}));

    let before = p.state();
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let writes: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|l| l.is_write && l.outcome.starts_with('2'))
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(
        writes[0].starts_with("PATCH /api/deployments/"),
        "{writes:#?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("updated {}/a: parameters", p.flow)),
        "{}",
        text(&out)
    );
    let after = p.state();
    assert_eq!(after["b"], before["b"]);
    let mut expected = before["a"].clone();
    expected["parameters"] = json!({"n": 2});
    assert_eq!(after["a"], expected);

    // Remove b: without --prune it stays; with --prune it goes, a hand-made one survives.
    let client = client_with_retries(&server_url(), 3);
    let flow_id = client.post("/flows/", &json!({"name": p.flow})).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    client
        .post(
            "/deployments/",
            &json!({"name": "by-hand", "flow_id": flow_id, "work_pool_name": p.pool}),
        )
        .unwrap();
    p.write_yaml(&p.entry("a", 2, "0 1 * * *"));
    assert_eq!(exit_code(&p.run(&proxy.api_url, &[])), 0);
    assert!(p.state().contains_key("b"));
    let out = p.run(&proxy.api_url, &["--prune", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("- delete    {}/b", p.flow)),
        "{}",
        text(&out)
    );
    assert!(p.state().contains_key("b"));
    assert_eq!(
        exit_code(&p.run(&proxy.api_url, &["--check", "--prune"])),
        2
    );
    let out = p.run(&proxy.api_url, &["--prune"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert_eq!(p.state().keys().collect::<Vec<_>>(), vec!["a", "by-hand"]);
    assert_eq!(
        exit_code(&p.run(&proxy.api_url, &["--check", "--prune"])),
        0
    );
}

#[test]
fn invalid_project_writes_nothing_and_names_every_problem() {
    let p = Project::new("invalid");
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let missing_pool = unique("no-such-pool");
    let yaml = p.entry("good", 1, "0 1 * * *")
        + &format!("  - name: bad-pool\n    entrypoint: flows/sample.py:sample\n    work_pool:\n      name: {missing_pool}\n")
        + &format!("  - name: bad-function\n    entrypoint: flows/sample.py:nope\n    work_pool:\n      name: {}\n", p.pool)
        + &format!("  - name: bad-file\n    entrypoint: flows/missing.py:sample\n    work_pool:\n      name: {}\n", p.pool);
    p.write_yaml(&yaml);
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(exit_code(&out), 1, "{}", text(&out));
    assert_eq!(proxy.writes(), 0, "{:#?}", proxy.write_lines());
    assert!(p.state().is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "bad-pool",
        &missing_pool,
        "bad-function",
        "nope",
        "bad-file",
        "missing.py",
        "prefect.yaml:",
    ] {
        assert!(
            stderr.contains(needle),
            "stderr should mention {needle}: {stderr}"
        );
    }
    let out = p.run(&proxy.api_url, &["--json"]);
    assert_eq!(exit_code(&out), 1, "{}", text(&out));
    let doc: Value =
        serde_json::from_slice(&out.stdout).expect("--json prints a document also when invalid");
    assert_eq!(doc["status"], json!("invalid"));
    assert_eq!(doc["errors"].as_array().map(Vec::len), Some(3), "{doc:#}");
    assert_eq!(proxy.writes(), 0);
}

#[test]
fn sigterm_mid_apply_rolls_back() {
    let p = Project::new("sigterm");
    p.write_yaml(&(p.entry("a", 1, "0 1 * * *") + &p.entry("b", 1, "0 2 * * *")));
    assert_eq!(exit_code(&p.run(&server_url(), &[])), 0);
    let before = p.state();
    // Every deployment changes; every write takes 700 ms, so the run is mid-apply after ~1 s.
    let mut yaml = p.entry("a", 5, "0 1 * * *") + &p.entry("b", 5, "0 3 * * *");
    for i in 0..6 {
        yaml += &p.entry(&format!("new-{i}"), 1, "0 4 * * *");
    }
    p.write_yaml(&yaml);
    let proxy = FaultProxy::start(
        &server_url(),
        Rules {
            every_write: Some(Fault::Delay(Duration::from_millis(700))),
            ..Rules::default()
        },
    );
    let child = p
        .command(&proxy.api_url, &["--concurrency", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(
        wait_for(30, || proxy.writes() >= 2),
        "the run never started writing"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(exit_code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("rollback: ✓"), "{stderr}");
    assert!(!stderr.contains("NOT ROLLED BACK"), "{stderr}");
    assert_eq!(p.state(), before, "{stderr}");
}

#[test]
fn two_concurrent_runs_end_in_the_yaml_state() {
    let p = Project::new("race");
    let mut yaml = String::new();
    for i in 0..6 {
        yaml += &p.entry(&format!("d{i}"), 1, "0 1 * * *");
    }
    p.write_yaml(&yaml);
    assert_eq!(exit_code(&p.run(&server_url(), &[])), 0);
    // Both runs change the same things at once: parameters, schedules added, new deployments.
    let mut yaml = String::new();
    for i in 0..6 {
        yaml += &p.entry(&format!("d{i}"), 2, "0 5 * * *");
        yaml += "      - cron: \"0 6 * * *\"\n        timezone: UTC\n";
    }
    for i in 0..4 {
        yaml += &p.entry(&format!("n{i}"), 1, "0 7 * * *");
    }
    p.write_yaml(&yaml);
    let children: Vec<_> = (0..2)
        .map(|_| {
            p.command(&server_url(), &[])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert_eq!(exit_code(out), 0, "{}", text(out));
    }
    let state = p.state();
    assert_eq!(state.len(), 10, "{:?}", state.keys());
    for (name, deployment) in &state {
        let schedules = deployment["schedules"].as_array().unwrap();
        let want = if name.starts_with('d') { 2 } else { 1 };
        assert_eq!(schedules.len(), want, "{name}: {schedules:#?}");
    }
    // And a third run agrees nothing is left to do.
    assert_eq!(exit_code(&p.run(&server_url(), &["--check"])), 0);
}

/// Request counts and wall times for a 50-deployment project (printed; `--nocapture` to see them).
/// Requests are counted as the client reports them (`--json`: `requests` minus `retries`), so a
/// busy server's answers, which are retried, do not count as requests the run needed.
#[test]
fn fifty_deployments_request_counts() {
    let p = Project::new("fifty");
    let entries: Vec<String> = (0..50)
        .map(|i| p.entry(&format!("d{i:02}"), 1, "0 1 * * *"))
        .collect();
    p.write_yaml(&entries.concat());
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let measure = |label: &str| {
        proxy.reset_counts();
        let started = Instant::now();
        let out = p.run(&proxy.api_url, &["--json"]);
        let elapsed = started.elapsed();
        assert_eq!(exit_code(&out), 0, "{}", text(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("--json prints one document");
        let count = |key: &str| {
            doc[key]
                .as_u64()
                .unwrap_or_else(|| panic!("no `{key}`: {doc}"))
        };
        let (requests, retries) = (count("requests"), count("retries"));
        let writes = proxy.successful_writes();
        eprintln!(
            "50 deployments, {label}: {:.2} s, {requests} requests + {retries} retries ({writes} successful writes, {} answered 503)",
            elapsed.as_secs_f64(),
            proxy.log().iter().filter(|l| l.outcome == "503").count()
        );
        (requests - retries, writes)
    };
    let (_, created) = measure("create");
    assert_eq!(created, 51, "one flow + 50 deployments");
    let (requests, writes) = measure("unchanged");
    assert_eq!(writes, 0);
    assert!(
        requests <= 6,
        "an unchanged run should need a handful of bulk reads, not {requests}"
    );
    let mut changed = entries.clone();
    changed[17] = p.entry("d17", 9, "0 1 * * *");
    p.write_yaml(&changed.concat());
    let (_, writes) = measure("one change");
    assert_eq!(writes, 1);
}

/// The deployment's automations as (name, enabled), sorted.
fn automations_of(deployment_id: &str) -> Vec<(String, bool)> {
    let client = client_with_retries(&server_url(), 3);
    let related = client
        .get(&format!(
            "/automations/related-to/prefect.deployment.{deployment_id}"
        ))
        .unwrap()
        .unwrap_or(json!([]));
    let mut out: Vec<(String, bool)> = related
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default().to_string(),
                a["enabled"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn triggers_are_replaced_only_when_they_change() {
    let p = Project::new("triggers");
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let with_trigger = |enabled: bool| {
        p.entry("t", 1, "0 1 * * *")
            + &format!(
                "    triggers:\n      - enabled: {enabled}\n        match:\n          prefect.resource.id: \"my.resource.*\"\n        expect: [\"external.event\"]\n        parameters:\n          n: \"{{{{ event.payload.n }}}}\"\n"
            )
    };
    p.write_yaml(&with_trigger(true));
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let id = deployment_id(&client_with_retries(&server_url(), 3), &p.flow, "t").unwrap();
    assert_eq!(
        automations_of(&id),
        vec![("t__automation_1".to_string(), true)]
    );

    // Someone's own automation that runs this deployment is not ours.
    let client = client_with_retries(&server_url(), 3);
    client
        .post(
            "/automations/",
            &json!({"name": "hand-made", "trigger": {"type": "event", "expect": ["x"], "posture": "Reactive", "threshold": 1, "within": 0},
                    "actions": [{"type": "run-deployment", "source": "selected", "deployment_id": id}]}),
        )
        .unwrap();

    proxy.reset_counts();
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert_eq!(proxy.writes(), 0, "{:#?}", proxy.write_lines());

    p.write_yaml(&with_trigger(false));
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("triggers"),
        "{}",
        text(&out)
    );
    assert_eq!(
        automations_of(&id),
        vec![
            ("hand-made".to_string(), true),
            ("t__automation_1".to_string(), false)
        ]
    );

    p.write_yaml(&(p.entry("t", 1, "0 1 * * *") + "    triggers: []\n"));
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert_eq!(automations_of(&id), vec![("hand-made".to_string(), true)]);
    assert_eq!(exit_code(&p.run(&proxy.api_url, &["--check"])), 0);
}

#[test]
fn prefect_cli_engine_refuses_native_only_modes() {
    let dir = scratch_dir(&unique("rf-engine"));
    std::fs::write(dir.join("prefect.yaml"), "deployments: []\n").unwrap();
    for flag in ["--dry-run", "--name=x"] {
        let out = xtask()
            .args(["register-flows", "--engine", "prefect-cli", flag])
            .current_dir(&dir)
            .env("PREFECT_API_URL", "http://127.0.0.1:9/api")
            .output()
            .unwrap();
        assert_eq!(exit_code(&out), 1, "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("need the native engine"),
            "{}",
            text(&out)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--format markdown` against a real server: the plan, the drift check (exit 2, then 0 once
/// applied) and an invalid project, each as a Markdown report on stdout; nothing written by the
/// plan or the check.
#[test]
fn markdown_reports_plan_drift_and_invalid() {
    let p = Project::new("markdown");
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    p.write_yaml(&(p.entry("a", 1, "0 1 * * *") + &p.entry("b", 2, "0 2 * * *")));
    let out = p.run(&proxy.api_url, &["--dry-run", "--format", "markdown"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.starts_with("### Planned: 2 to create, 0 to update, 0 unchanged, 0 to delete\n"),
        "{md}"
    );
    assert_eq!(
        md.matches("<details><summary><code>+ create</code>")
            .count(),
        2,
        "{md}"
    );
    assert!(
        md.contains(&format!("<b>{}/a</b> (prefect.yaml:", p.flow)),
        "{md}"
    );
    assert_eq!(proxy.writes(), 0, "{:#?}", proxy.write_lines());

    let out = p.run(&proxy.api_url, &["--check", "--format", "markdown"]);
    assert_eq!(exit_code(&out), 2, "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.starts_with("### Drift found: 2 to create"), "{md}");
    assert!(
        md.contains("drift: the server differs from prefect.yaml"),
        "{md}"
    );
    assert_eq!(proxy.writes(), 0);

    assert_eq!(exit_code(&p.run(&proxy.api_url, &[])), 0);
    let out = p.run(&proxy.api_url, &["--check", "--format", "markdown"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.starts_with("### In sync: 0 to create, 0 to update, 2 unchanged, 0 to delete\n"),
        "{md}"
    );

    p.write_yaml("  - name: broken\n    entrypoint: flows/sample.py:nope\n");
    let out = p.run(&proxy.api_url, &["--dry-run", "--format", "markdown"]);
    assert_eq!(exit_code(&out), 1, "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.starts_with("### Invalid: <code>prefect.yaml</code> did not validate"),
        "{md}"
    );
    assert!(md.contains("nope"), "{md}");
}

#[test]
fn name_patterns_plan_check_write_and_prune_only_what_they_name() {
    let p = Project::new("names");
    let other_flow = format!("{}-other", p.flow);
    std::fs::write(
        p.dir.join("flows/other.py"),
        format!("from prefect import flow\n\n\n@flow(name=\"{other_flow}\")\ndef other_flow(n: int = 1):\n    return n\n"),
    )
    .unwrap();
    let other_entry = |name: &str| {
        format!(
            "  - name: {name}\n    entrypoint: flows/other.py:other_flow\n    work_pool:\n      name: {}\n",
            p.pool
        )
    };
    // Not selected, so never loaded: it would fail validation.
    let broken = format!(
        "  - name: broken\n    entrypoint: flows/sample.py:nope\n    work_pool:\n      name: {}\n",
        p.pool
    );
    p.write_yaml(
        &(p.entry("a", 1, "0 1 * * *")
            + &p.entry("b", 1, "0 2 * * *")
            + &p.entry("c", 1, "0 3 * * *")
            + &other_entry("a")
            + &broken),
    );
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let other_state = || snapshot(&client_with_retries(&server_url(), 3), &other_flow);

    // A plain name selects that deployment of every flow; nothing else is loaded or planned.
    let out = p.run(&proxy.api_url, &["-n", "a", "--dry-run", "--json"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let planned: Vec<&str> = doc["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["full_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        planned,
        vec![format!("{}/a", p.flow), format!("{other_flow}/a")]
    );
    assert_eq!(doc["selection"], json!(["a"]));
    assert_eq!(proxy.writes(), 0);

    // flow/deployment: the flow is the entrypoint's function, `-` and `_` alike, `*` wildcards.
    let out = p.run(&proxy.api_url, &["-n", "sample/a"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert_eq!(p.state().keys().collect::<Vec<_>>(), vec!["a"]);
    assert!(other_state().is_empty());
    let out = p.run(&proxy.api_url, &["--name", "other-flow/*"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert_eq!(other_state().keys().collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(p.state().keys().collect::<Vec<_>>(), vec!["a"]);

    // --check looks only at the selection: a and other_flow/a are in sync, b is missing.
    let check = |args: &[&str]| exit_code(&p.run(&proxy.api_url, &[&["--check"], args].concat()));
    assert_eq!(check(&["-n", "sample/a", "-n", "other_flow/a"]), 0);
    assert_eq!(check(&["-n", "b"]), 2);
    assert_eq!(check(&["-n", "sam*/?"]), 1, "? is literal: matches nothing");

    // A pattern that matches nothing: an error listing what exists, nothing written.
    proxy.reset_counts();
    let out = p.run(&proxy.api_url, &["-n", "a", "-n", "nope"]);
    assert_eq!(exit_code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--name \"nope\" matches no deployment in prefect.yaml; it declares: sample/a, sample/b, sample/c, other_flow/a, nope/broken"),
        "{stderr}"
    );
    assert_eq!(proxy.log().len(), 0, "refused before any request");

    // Create b and c, then drop them from the yaml and change a: --prune -n b deletes b only.
    assert_eq!(
        exit_code(&p.run(&proxy.api_url, &["-n", "b", "-n", "c"])),
        0
    );
    assert_eq!(p.state().keys().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    p.write_yaml(&(p.entry("a", 2, "0 1 * * *") + &other_entry("a") + &broken));
    let out = p.run(
        &proxy.api_url,
        &["--prune", "-n", "c", "--dry-run", "--json"],
    );
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["delete"], json!(1), "{doc:#}");
    assert_eq!(doc["deployments"].as_array().unwrap().len(), 1, "{doc:#}");
    assert_eq!(check(&["--prune", "-n", "c"]), 2);
    let before = p.state();
    let out = p.run(&proxy.api_url, &["--prune", "-n", "b"]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let after = p.state();
    assert_eq!(after.keys().collect::<Vec<_>>(), vec!["a", "c"]);
    assert_eq!(after["a"], before["a"], "a is outside the selection");
    assert_eq!(other_state().keys().collect::<Vec<_>>(), vec!["a"]);

    // With --prune a pattern may name a deployment gone from the yaml, but not nothing at all.
    proxy.reset_counts();
    let out = p.run(&proxy.api_url, &["--prune", "-n", "zzz*"]);
    assert_eq!(exit_code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--name \"zzz*\" matches no deployment in prefect.yaml and none this project registered on the server (it has: "),
        "{stderr}"
    );
    for name in [
        format!("{}/a", p.flow),
        format!("{}/c", p.flow),
        format!("{other_flow}/a"),
    ] {
        assert!(stderr.contains(&name), "{name}: {stderr}");
    }
    assert!(!stderr.contains(&format!("{}/b", p.flow)), "{stderr}");
    assert_eq!(proxy.writes(), 0);
    assert_eq!(p.state(), after);
}
