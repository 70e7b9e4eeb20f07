//! Deploy's verify stage proves that work will run: the stand-in fly's worker Machines must run
//! the shipped image, every pool the yaml uses needs a worker online (the real Prefect server's
//! workers endpoint), and `--smoke` runs a deployment on a real process worker to a final state.

use serde_json::json;

use crate::drain::World;
use crate::support::bin::run;
use crate::support::fly::{Sandbox, SENTINELS};
use crate::support::{client, ensure_pool, server_url, worker_heartbeat};

const FAILING_FLOW: &str = r#"from prefect import flow, get_run_logger


@flow
def failing():
    """Fails, as a broken release would."""
    get_run_logger().info("the smoke flow is about to fail")
    raise RuntimeError("the smoke flow failed on purpose")
"#;

#[test]
fn worker_machines_must_run_the_new_image_and_smoke_runs_must_complete() {
    let world = World::new("verify-smoke");
    let sandbox = &world.sandbox;
    std::fs::write(sandbox.project.join("app/flows/failing.py"), FAILING_FLOW).unwrap();
    let yaml_path = sandbox.project.join("prefect.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).unwrap()
        + &format!(
            "  - name: captionacc-prod-{tag}-failing\n    entrypoint: app/flows/failing.py:failing\n    work_pool:\n      name: {pool}\n",
            tag = sandbox.tag,
            pool = world.pool
        );
    std::fs::write(&yaml_path, yaml).unwrap();
    world.start();
    let slow = format!("captionacc-prod-{}-slow", sandbox.tag);
    let failing = format!("failing/captionacc-prod-{}-failing", sandbox.tag);

    // 1. The worker Machine runs the new image, the pool has a worker, the smoke run completes.
    let first = "registry.fly.io/captionacc-api:verify-1";
    let run1 = sandbox.run(&[
        "deploy",
        "--image",
        first,
        "--no-drain",
        "--smoke",
        &format!("{slow}={{\"seconds\": 1}}"),
    ]);
    assert_eq!(run1.code, Some(0), "{}", run1.all());
    run1.assert_stderr_has(&format!("1 worker Machine(s) (worker) run {first}"));
    run1.assert_stderr_has(&format!("work pool {}: worker online", world.pool));
    run1.assert_stderr_has("/runs/flow-run/");
    run1.assert_stderr_has("ended Completed");
    run1.assert_no_secrets(SENTINELS);

    // 2. A smoke run of a failing flow fails the deploy, with the run's log tail.
    let second = "registry.fly.io/captionacc-api:verify-2";
    let run2 = sandbox.run(&[
        "deploy",
        "--image",
        second,
        "--no-drain",
        "--smoke",
        &failing,
    ]);
    assert_eq!(run2.code, Some(1), "{}", run2.all());
    run2.assert_stderr_has("ended Failed");
    run2.assert_stderr_has("flow run logs:");
    run2.assert_stderr_has("the smoke flow failed on purpose");
    run2.assert_stderr_has("/runs/flow-run/");

    // 3. A worker Machine Fly left on the old image fails verify, naming it.
    let third = "registry.fly.io/captionacc-api:verify-3";
    let out = run(sandbox
        .xtask(&[
            "deploy",
            "--image",
            third,
            "--no-drain",
            "--verify-timeout",
            "2",
        ])
        .env("FAKE_FLY_STALE", "worker"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "(group `worker`) still runs {second} instead of {third}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("[6/6] verify"), "{stderr}");
}

#[test]
fn a_deploy_whose_worker_never_comes_online_fails_verify() {
    let mut sandbox = Sandbox::new("verify-no-worker");
    let pool = format!("captionacc-workers-prod-{}", sandbox.tag);
    ensure_pool(&client(), &pool);
    sandbox.write_prefect_yaml("prod", &pool);
    let url = server_url();
    sandbox.connect_to(&url);
    let image = "registry.fly.io/captionacc-api:no-worker";

    let run = sandbox.run(&["deploy", "--image", image, "--verify-timeout", "3"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has(&format!("work pool `{pool}` has no worker online after"));
    run.assert_stderr_has("verify");
    run.assert_no_secrets(SENTINELS);
    // The deployments were registered (the release went out); only verify failed.
    let registered = client()
        .read_deployments(json!({"work_pools": {"name": {"any_": [pool]}}}))
        .unwrap();
    assert_eq!(registered.len(), 2);

    // Once a worker heartbeats in the pool, the same deploy verifies.
    worker_heartbeat(&client(), &pool, "verify-stand-in");
    let run = sandbox.run(&["deploy", "--image", image, "--verify-timeout", "3"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_stderr_has(&format!(
        "work pool {pool}: worker online (verify-stand-in)"
    ));
}
