//! In-process syncs for the register-flows tests: clients with chosen retries, desired states
//! built by hand, running the engine, and a normalised snapshot of what the server holds.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use serde_json::{json, Map, Value};
use xtask::prefect::api::{ApiConfig, PrefectClient};
use xtask::sync::desired::{
    DesiredDeployment, DesiredSchedule, DesiredState, Ownership, SourceLocation,
};
use xtask::sync::plan::server_field;
use xtask::sync::{sync, SyncOptions, SyncOutcome};

/// A client with few, fast retries (tests inject failures on purpose).
pub fn client_with_retries(url: &str, max_retries: u32) -> PrefectClient {
    let mut cfg = ApiConfig::for_url(url);
    cfg.max_retries = max_retries;
    cfg.timeout = std::time::Duration::from_secs(30);
    PrefectClient::new(cfg).expect("client")
}

pub fn cron(expr: &str) -> DesiredSchedule {
    DesiredSchedule {
        schedule: json!({"cron": expr, "timezone": "UTC", "day_or": true}),
        anchor_explicit: true,
        active: true,
        parameters: Map::new(),
        slug: None,
    }
}

/// A deployment as a prefect.yaml would describe it.
pub fn deployment(
    flow: &str,
    name: &str,
    pool: &str,
    schedules: Vec<DesiredSchedule>,
) -> DesiredDeployment {
    let mut fields = Map::new();
    fields.insert("version".into(), json!("1.0"));
    fields.insert("description".into(), json!(format!("{name} for tests")));
    fields.insert("parameters".into(), json!({"n": 1}));
    fields.insert("concurrency_limit".into(), Value::Null);
    fields.insert("concurrency_options".into(), Value::Null);
    fields.insert("tags".into(), json!(["test"]));
    fields.insert("work_queue_name".into(), Value::Null);
    fields.insert("work_pool_name".into(), json!(pool));
    fields.insert("job_variables".into(), json!({}));
    fields.insert("entrypoint".into(), json!("flows/sample.py:sample"));
    fields.insert(
        "parameter_openapi_schema".into(),
        json!({"title": "Parameters", "type": "object", "properties": {"n": {"default": 1, "position": 0, "title": "n", "type": "integer"}}}),
    );
    fields.insert(
        "pull_steps".into(),
        json!([{"prefect.deployments.steps.set_working_directory": {"directory": "/tmp"}}]),
    );
    DesiredDeployment {
        name: name.into(),
        flow_name: flow.into(),
        source: SourceLocation {
            file: "prefect.yaml".into(),
            line: 1,
        },
        fields,
        version_info: Some(json!({"type": "prefect:simple", "version": "1.0"})),
        schedules: Some(schedules),
        triggers: None,
        secrets: Default::default(),
    }
}

pub fn state(project: &str, deployments: Vec<DesiredDeployment>) -> DesiredState {
    DesiredState {
        owner: Ownership {
            project: project.into(),
            prefect_file: "prefect.yaml".into(),
        },
        deployments,
        warnings: vec![],
        resources: Default::default(),
    }
}

pub fn args(prune: bool, concurrency: u16) -> SyncOptions {
    SyncOptions {
        dry_run: false,
        check: false,
        prune,
        concurrency,
        ..SyncOptions::default()
    }
}

/// Runs one in-process sync.
pub fn run_sync(client: &PrefectClient, desired: &DesiredState, args: &SyncOptions) -> SyncOutcome {
    let cancel = AtomicBool::new(false);
    sync(client, desired, args, &cancel).expect("sync")
}

/// A sync that must succeed (a test's setup): a failure is reported as itself, not as a later
/// missing deployment.
pub fn run_sync_ok(
    client: &PrefectClient,
    desired: &DesiredState,
    args: &SyncOptions,
) -> SyncOutcome {
    let outcome = run_sync(client, desired, args);
    assert_eq!(
        outcome.exit_code(args),
        0,
        "setup sync failed: {:?}",
        outcome.report.as_ref().map(|r| &r.error)
    );
    outcome
}

/// Every deployment of `flow` as comparable JSON: owned fields as the server normalises them,
/// labels, paused, enforce flag, schedules without ids (sorted), keyed by name.
pub fn snapshot(client: &PrefectClient, flow: &str) -> BTreeMap<String, Value> {
    let deployments = client
        .read_deployments(json!({"flows": {"name": {"any_": [flow]}}}))
        .expect("read deployments");
    let mut out = BTreeMap::new();
    for raw in deployments {
        let name = raw["name"].as_str().unwrap_or_default().to_string();
        let mut fields = Map::new();
        for field in xtask::sync::desired::OWNED_FIELDS {
            fields.insert((*field).to_string(), server_field(field, &raw));
        }
        let mut labels = raw["labels"].as_object().cloned().unwrap_or_default();
        labels.retain(|k, _| !k.starts_with("prefect."));
        fields.insert("labels".into(), Value::Object(labels));
        let mut schedules: Vec<String> = raw["schedules"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| json!({"schedule": s["schedule"], "active": s["active"], "parameters": s["parameters"], "slug": s["slug"]}).to_string())
            .collect();
        schedules.sort();
        fields.insert("schedules".into(), json!(schedules));
        out.insert(name, Value::Object(fields));
    }
    out
}

/// Schedule ids by cron expression, of one deployment.
pub fn schedule_ids(client: &PrefectClient, flow: &str, name: &str) -> BTreeMap<String, String> {
    let raw = client
        .get(&format!("/deployments/name/{flow}/{name}"))
        .expect("read")
        .expect("exists");
    raw["schedules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["schedule"]["cron"].as_str().unwrap_or("?").to_string(),
                s["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub fn deployment_id(client: &PrefectClient, flow: &str, name: &str) -> Option<String> {
    client
        .get(&format!("/deployments/name/{flow}/{name}"))
        .expect("read")
        .map(|d| d["id"].as_str().unwrap_or_default().to_string())
}

/// Ids of the scheduled (future) flow runs of a deployment.
pub fn scheduled_run_ids(client: &PrefectClient, deployment_id: &str) -> Vec<String> {
    let runs = client
        .post(
            "/flow_runs/filter",
            &json!({"deployments": {"id": {"any_": [deployment_id]}}, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 200}),
        )
        .expect("read runs");
    let mut ids: Vec<String> = runs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}
