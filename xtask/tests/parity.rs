//! Parity with `prefect deploy --all`: the same fixture project is registered with the real Prefect
//! CLI on one server and with `xtask register-flows` on another; every deployment is then compared
//! field by field. The only differences allowed are the deliberate ones in docs/parity.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use xtask::prefect_api::{ApiConfig, PrefectClient};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the integration tests through `cargo xtask test`"))
}

/// Server 1 (no auth) gets xtask; server 2 (auth string + CSRF) gets the Prefect CLI.
struct Servers {
    xtask_url: String,
    cli_url: String,
    cli_auth: String,
}

fn servers() -> Servers {
    Servers {
        xtask_url: env("XTASK_TEST_PREFECT_API_URL"),
        cli_url: env("XTASK_TEST_PREFECT_API_URL_2"),
        cli_auth: env("XTASK_TEST_PREFECT_AUTH_STRING_2"),
    }
}

fn client(url: &str, auth: Option<&str>) -> PrefectClient {
    let mut cfg = ApiConfig::for_url(url);
    cfg.auth_string = auth.map(String::from);
    PrefectClient::new(cfg).unwrap()
}

/// Copies a fixture project to a fresh directory outside any git checkout (so both engines use
/// the file hash as the default version, not a commit sha).
fn stage_fixture(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name);
    let dst = std::env::temp_dir().join(format!("xtask-parity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    copy_dir(&src, &dst);
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fields `prefect deploy` controls, as the server returns them, minus ids and timestamps.
fn normalise(deployment: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in [
        "name",
        "version",
        "description",
        "paused",
        "concurrency_limit",
        "concurrency_options",
        "job_variables",
        "parameters",
        "tags",
        "work_queue_name",
        "work_pool_name",
        "parameter_openapi_schema",
        "path",
        "pull_steps",
        "entrypoint",
        "storage_document_id",
        "infrastructure_document_id",
        "enforce_parameter_schema",
    ] {
        out.insert(key.into(), deployment[key].clone());
    }
    out.insert(
        "global_concurrency_limit".into(),
        deployment["global_concurrency_limit"].get("limit").cloned().unwrap_or(Value::Null),
    );
    let mut schedules: Vec<Value> = deployment["schedules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            json!({
                "schedule": s["schedule"], "active": s["active"], "max_scheduled_runs": s["max_scheduled_runs"],
                "parameters": s["parameters"], "slug": s["slug"],
            })
        })
        .collect();
    schedules.sort_by_key(|s| s.to_string());
    out.insert("schedules".into(), Value::Array(schedules));
    // Labels: the server adds prefect.flow.id (differs per server); the rest must match,
    // except the ownership marker xtask adds (docs/ownership.md).
    let labels: serde_json::Map<String, Value> = deployment["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "prefect.flow.id" && !k.starts_with("xtask."))
        .collect();
    out.insert("labels".into(), Value::Object(labels));
    Value::Object(out)
}

fn read_state(client: &PrefectClient, names: &[&str]) -> BTreeMap<String, (String, Value)> {
    let deployments = client.read_deployments(json!({"deployments": {"name": {"any_": names}}})).unwrap();
    let flows = client.read_flows(json!({})).unwrap();
    let flow_name = |id: &Value| {
        flows.iter().find(|f| &f["id"] == id).map(|f| f["name"].as_str().unwrap().to_string()).unwrap_or_default()
    };
    deployments
        .iter()
        .map(|d| (d["name"].as_str().unwrap().to_string(), (flow_name(&d["flow_id"]), normalise(d))))
        .collect()
}

/// Differences we make on purpose (docs/parity.md): (deployment, field, prefect's value, ours).
fn allowed_differences() -> Vec<(&'static str, &'static str, Value, Value)> {
    vec![
        // Prefect's client sends str(None) on create; we send null, which is what Prefect itself stores on update.
        ("parity-no-docs", "description", json!("None"), Value::Null),
    ]
}

#[test]
fn full_fixture_matches_prefect_deploy() {
    let servers = servers();
    let names = ["parity-extract-nightly", "parity-transform", "parity-load", "parity-no-docs"];
    let xtask_client = client(&servers.xtask_url, None);
    let cli_client = client(&servers.cli_url, Some(&servers.cli_auth));
    for c in [&xtask_client, &cli_client] {
        c.create_work_pool("parity-pool", "process").unwrap();
    }

    let cli_dir = stage_fixture("full");
    let mut cli = Command::new(Path::new(&env("XTASK_TEST_VENV")).join("bin/prefect"));
    cli.args(["--no-prompt", "deploy", "--all"])
        .current_dir(&cli_dir)
        .env("PREFECT_API_URL", &servers.cli_url)
        .env("PREFECT_API_AUTH_STRING", &servers.cli_auth)
        .env("PARITY_SOURCE", "s3://from-env");
    run(cli, "prefect deploy --all");

    let xtask_dir = stage_fixture("full");
    let mut xtask = Command::new(env!("CARGO_BIN_EXE_xtask"));
    xtask
        .arg("register-flows")
        .current_dir(&xtask_dir)
        .env_remove("CARGO_MANIFEST_DIR")
        .env("PREFECT_API_URL", &servers.xtask_url)
        .env("PARITY_SOURCE", "s3://from-env");
    run(xtask, "xtask register-flows");

    let theirs = read_state(&cli_client, &names);
    let ours = read_state(&xtask_client, &names);
    assert_eq!(theirs.len(), names.len(), "prefect registered every deployment");
    assert_eq!(ours.len(), names.len(), "xtask registered every deployment");

    let allowed = allowed_differences();
    let mut problems = Vec::new();
    for (name, (their_flow, their)) in &theirs {
        let (our_flow, mine) = &ours[name];
        if their_flow != our_flow {
            problems.push(format!("{name}: flow name {their_flow:?} (prefect) vs {our_flow:?} (xtask)"));
        }
        for (field, their_value) in their.as_object().unwrap() {
            let my_value = &mine[field];
            if their_value == my_value {
                continue;
            }
            let is_allowed = allowed
                .iter()
                .any(|(d, f, t, m)| d == name && f == field && t == their_value && m == my_value);
            if !is_allowed {
                problems.push(format!("{name}.{field}:\n    prefect: {their_value}\n    xtask:   {my_value}"));
            }
        }
    }
    assert!(problems.is_empty(), "differences from `prefect deploy --all`:\n{}", problems.join("\n"));
    let _ = std::fs::remove_dir_all(cli_dir);
    let _ = std::fs::remove_dir_all(xtask_dir);
}
