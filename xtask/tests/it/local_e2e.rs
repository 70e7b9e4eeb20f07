//! `cargo xtask deploy --local` end to end, twice (the second run reuses everything), then
//! `cargo xtask down`. Uses its own state dir and port, so a developer's local server is untouched.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use xtask::local::process::{process_info, read_pid_file, PidRecord};
use xtask::local::LocalState;
use xtask::prefect::api::{ApiConfig, PrefectClient};

use crate::support::bin::{describe, run, xtask};
use crate::support::{client_at, unique, venv_dir};

/// Runs `down` for the state dir when the test ends, also when it fails half-way.
struct DownOnDrop(PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = xtask().arg("down").env("XTASK_STATE_DIR", &self.0).output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn alive(pid: u32) -> bool {
    process_info(pid).is_some_and(|info| !info.zombie)
}

fn records(state: &LocalState) -> (PidRecord, PidRecord) {
    let server = read_pid_file(&state.server_pid()).expect("server pid file");
    let worker =
        read_pid_file(&state.worker_pid("captionacc-workers-prod")).expect("worker pid file");
    (server, worker)
}

fn completed_runs(client: &PrefectClient) -> usize {
    let body = json!({"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 50});
    client
        .post("/flow_runs/filter", &body)
        .expect("flow runs")
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

fn deploy_local(state_dir: &Path) -> (std::process::Output, Duration) {
    // The venv must exist (`cargo xtask test` makes it); this test does not download Prefect.
    let _ = venv_dir();
    let start = Instant::now();
    let out = run(xtask()
        .args(["deploy", "--local"])
        .env("XTASK_STATE_DIR", state_dir));
    (out, start.elapsed())
}

#[test]
fn deploy_local_runs_a_flow_then_down_stops_everything() {
    let state_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("local-e2e"));
    let _down = DownOnDrop(state_dir.clone());
    let state = LocalState {
        dir: state_dir.join("local"),
    };

    let (out, first) = deploy_local(&state_dir);
    assert!(
        out.status.success(),
        "first deploy --local failed: {}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("→ Completed"),
        "no completed smoke run: {}",
        describe(&out)
    );
    assert!(
        stdout.contains("video-initial-processing/captionacc-prod-video-initial-processing"),
        "{stdout}"
    );

    let (server, worker) = records(&state);
    assert!(
        alive(server.pid) && alive(worker.pid),
        "server and worker keep running after deploy --local exits"
    );
    assert_eq!(worker.port, server.port);
    let client = client_at(&format!("http://127.0.0.1:{}/api", server.port), None);
    assert!(completed_runs(&client) >= 1);
    let deployments = client.read_deployments(json!({})).unwrap();
    assert_eq!(
        deployments.len(),
        2,
        "both deployments of prefect.yaml are registered"
    );
    let pool = client
        .read_work_pool("captionacc-workers-prod")
        .unwrap()
        .expect("work pool created");
    assert_eq!(pool["type"], "process");
    // Configured from prefect.yaml's `work_pools`, as in production; its limit and variable too.
    assert_eq!(
        pool["description"],
        "Fly.io process workers of the captionacc app (production)"
    );
    let limit = client
        .get("/v2/concurrency_limits/captionacc-prod-video-processing")
        .unwrap()
        .expect("the declared global limit");
    assert_eq!(limit["limit"], 2);
    let smoke = deployments
        .iter()
        .find(|d| d["name"] == "captionacc-prod-video-initial-processing")
        .expect("the smoke deployment");
    assert_eq!(
        smoke["global_concurrency_limit"]["name"],
        "captionacc-prod-video-processing"
    );
    let variable = client
        .read_variable("captionacc_prod_caption_retention_days")
        .unwrap()
        .expect("the declared variable");
    assert_eq!(variable["value"], 7);

    // Second run: same server and worker, another completed run.
    let (out, second) = deploy_local(&state_dir);
    assert!(
        out.status.success(),
        "second deploy --local failed: {}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reusing server") && stderr.contains("reusing worker"),
        "{stderr}"
    );
    assert_eq!(
        records(&state),
        (server.clone(), worker.clone()),
        "the same processes are reused"
    );
    assert!(completed_runs(&client) >= 2);
    assert_eq!(
        client.read_deployments(json!({})).unwrap().len(),
        2,
        "re-registering creates no duplicates"
    );
    eprintln!("deploy --local: first run {first:.1?}, second run {second:.1?}");

    let out = run(xtask().arg("down").env("XTASK_STATE_DIR", &state_dir));
    assert!(out.status.success(), "down failed: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("pid {}): stopped", server.pid)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("pid {}): stopped", worker.pid)),
        "{stdout}"
    );
    assert!(
        !alive(server.pid) && !alive(worker.pid),
        "down leaves no process behind"
    );
    assert!(
        !state.server_pid().exists() && state.worker_pid_files().is_empty(),
        "pid files are removed"
    );
    let mut cfg = ApiConfig::for_url(&format!("http://127.0.0.1:{}/api", server.port));
    cfg.max_retries = 0;
    assert!(
        PrefectClient::new(cfg).unwrap().health().is_err(),
        "the server no longer answers"
    );

    let out = run(xtask().arg("down").env("XTASK_STATE_DIR", &state_dir));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("nothing to stop"),
        "{}",
        describe(&out)
    );
}
