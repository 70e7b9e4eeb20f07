//! `cargo xtask status` against the real Prefect server and the stand-in fly: healthy after a
//! deploy (release, workers, Machines), degraded on drift and on a failed last run, an error
//! when the server or Fly cannot be read (never a table presented as healthy), bulk reads only.

use serde_json::{json, Value};

use crate::support::bin::{describe, run};
use crate::support::fault_proxy::{FaultProxy, Rules};
use crate::support::fly::{Sandbox, SENTINELS};
use crate::support::{client, ensure_pool, server_url, worker_heartbeat};

fn deployed(test: &str) -> (Sandbox, String) {
    let mut sandbox = Sandbox::new(test);
    let pool = format!("captionacc-workers-prod-{}", sandbox.tag);
    ensure_pool(&client(), &pool);
    worker_heartbeat(&client(), &pool, "status-stand-in");
    sandbox.write_prefect_yaml("prod", &pool);
    let url = server_url();
    sandbox.connect_to(&url);
    let run = sandbox.run(&[
        "deploy",
        "--image",
        "registry.fly.io/captionacc-api:status1",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    (sandbox, pool)
}

fn status_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

#[test]
fn status_shows_health_drift_and_failed_runs_from_bulk_reads() {
    let (sandbox, pool) = deployed("status-health");
    let video = format!("captionacc-prod-{}-video", sandbox.tag);

    // Healthy: in sync, the release recorded, a worker online, the Machine on the image.
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let out = run(sandbox
        .xtask(&["status", "--json"])
        .env("PREFECT_API_URL", &proxy.api_url));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc = status_json(&out);
    assert_eq!(doc["status"], "healthy", "{doc:#}");
    let deployments = doc["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2, "{doc:#}");
    for d in deployments {
        assert_eq!(d["sync"], "in_sync", "{d:#}");
        assert_eq!(d["release"], "status1", "{d:#}");
        assert_eq!(d["paused"], false);
    }
    assert_eq!(
        doc["work_pools"],
        json!([{"name": pool, "exists": true, "paused": false, "workers_online": ["status-stand-in"]}])
    );
    assert_eq!(
        doc["process_groups"][0]["machines"][0]["image"],
        "registry.fly.io/captionacc-api:status1"
    );
    assert_eq!(
        doc["process_groups"][0]["machines"][0]["release_status"],
        "complete"
    );
    // Bulk reads: no per-deployment GET, and a request count that does not grow with them.
    let log = proxy.log();
    assert!(
        !log.iter()
            .any(|l| l.method == "GET" && l.path.starts_with("/api/deployments/")),
        "{:#?}",
        proxy.write_lines()
    );
    assert_eq!(
        proxy.writes(),
        0,
        "status reads only: {:#?}",
        proxy.write_lines()
    );

    // The screen: no colour when not on a terminal.
    let out = run(&mut sandbox.xtask(&["status"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text.contains(&format!("{video}  in sync")), "{text}");
    assert!(text.contains("release status1"), "{text}");
    assert!(text.trim_end().ends_with("HEALTHY"), "{text}");
    assert!(!text.contains('\x1b'), "{text}");

    // -n: one deployment.
    let out = run(&mut sandbox.xtask(&["status", "--json", "-n", &video]));
    assert_eq!(
        status_json(&out)["deployments"].as_array().unwrap().len(),
        1
    );

    // A failed last run: degraded (2), named.
    let id = client()
        .read_deployments(json!({"deployments": {"name": {"any_": [video]}}}))
        .unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let flow_run = client()
        .post(&format!("/deployments/{id}/create_flow_run"), &json!({}))
        .unwrap();
    let run_id = flow_run["id"].as_str().unwrap();
    client()
        .post(
            &format!("/flow_runs/{run_id}/set_state"),
            &json!({"state": {"type": "FAILED", "name": "Failed"}, "force": true}),
        )
        .unwrap();
    let out = run(&mut sandbox.xtask(&["status", "--json"]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let doc = status_json(&out);
    assert_eq!(doc["status"], "degraded");
    let video_status = doc["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == video.as_str())
        .unwrap();
    assert_eq!(video_status["last_run"]["id"], run_id);
    assert_eq!(video_status["last_run"]["state_type"], "FAILED");
    assert!(
        doc["problems"][0]
            .as_str()
            .unwrap()
            .contains("last run Failed"),
        "{doc:#}"
    );

    // Drift: degraded (2) naming the field; the text says DEGRADED.
    let yaml_path = sandbox.project.join("prefect.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    std::fs::write(&yaml_path, yaml.replace("dry_run: true", "dry_run: false")).unwrap();
    let out = run(&mut sandbox.xtask(&["status"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text.contains("drifted: parameters"), "{text}");
    assert!(text.contains("DEGRADED:"), "{text}");
    for sentinel in SENTINELS {
        assert!(!text.contains(sentinel));
    }
}

#[test]
fn status_is_an_error_when_the_server_or_fly_cannot_be_read() {
    let (sandbox, _pool) = deployed("status-unreadable");

    let out = run(sandbox
        .xtask(&["status", "--json"])
        .env("PREFECT_API_URL", "http://127.0.0.1:9/api"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = status_json(&out);
    assert_eq!(doc["status"], "error");
    assert!(
        doc["errors"][0]
            .as_str()
            .unwrap()
            .contains("Prefect server"),
        "{doc:#}"
    );
    // What could be read (Fly) is still shown.
    assert_eq!(doc["process_groups"][0]["group"], "app");

    let out = run(sandbox
        .xtask(&["status"])
        .env("PREFECT_API_URL", "http://127.0.0.1:9/api"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text.contains("ERROR: could not read everything, so health is unknown"),
        "{text}"
    );
    assert!(!text.contains("HEALTHY"), "{text}");

    let out = run(sandbox
        .xtask(&["status", "--json"])
        .env("FAKE_FLY_NOT_LOGGED_IN", "1"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = status_json(&out);
    assert_eq!(doc["status"], "error");
    assert!(
        doc["errors"][0].as_str().unwrap().contains("Fly Machines"),
        "{doc:#}"
    );
    assert_eq!(doc["deployments"].as_array().unwrap().len(), 2);
}
