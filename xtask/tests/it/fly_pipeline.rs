//! `cargo xtask deploy` end to end: the real binary, the stand-in fly on PATH (its `deploy` runs
//! fly.toml's release_command — the compiled xtask — like Fly does), and the real test Prefect
//! server (XTASK_TEST_PREFECT_API_URL).

use std::time::{Duration, Instant};

use serde_json::json;
use xtask::fly::{self, DeployRequest, FlyError, FlyFailure};

use crate::support::fly::{Sandbox, API_KEY, AUTH_STRING, FLY_TOKEN, SENTINELS};
use crate::support::{
    client, ensure_pool, repo_root, secured_server, server_url, worker_heartbeat,
};

const IMAGE: &str = "registry.fly.io/captionacc-api:deadbeef";

/// A sandbox ready to deploy: host env and app secrets complete, with sentinel credentials.
fn ready(test: &str) -> Sandbox {
    // The release command validates that the pools exist before it writes anything.
    ensure_pool(&client(), "captionacc-workers-prod");
    ensure_pool(&client(), "captionacc-workers-dev");
    // Verify wants a worker online in every pool the yaml uses.
    worker_heartbeat(
        &client(),
        "captionacc-workers-prod",
        "fly-pipeline-stand-in",
    );
    worker_heartbeat(&client(), "captionacc-workers-dev", "fly-pipeline-stand-in");
    let mut sandbox = Sandbox::new(test);
    let url = server_url();
    sandbox.connect_to(&url);
    sandbox
}

fn deployments_on_server(tag: &str) -> Vec<serde_json::Value> {
    client()
        .read_deployments(json!({"deployments": {"name": {"like_": tag}}}))
        .unwrap()
}

#[test]
fn deploy_runs_the_stages_in_order() {
    let sandbox = ready("in-order");
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(
        sandbox.call_names(),
        ["secrets list", "deploy", "status"],
        "{}",
        run.all()
    );

    let deploy = &sandbox.calls()[1];
    let config = sandbox.project.join("fly.toml").display().to_string();
    assert_eq!(
        deploy.argv,
        [
            "deploy",
            "--config",
            &config,
            "--app",
            &sandbox.app,
            "--image",
            IMAGE,
            "--release-command-timeout",
            "7m",
            "--deploy-retries",
            "0",
            "--yes",
        ]
    );
    // flyctl gets the token from the environment, never from argv.
    assert!(
        deploy.env.contains(&"FLY_API_TOKEN".to_string()),
        "{deploy:?}"
    );

    let mut last = 0;
    for stage in [
        "[1/6] check secrets",
        "[2/6] validate and plan",
        "[3/6] build image",
        "[4/6] drain workers",
        "[5/6] fly deploy",
        "[6/6] verify",
    ] {
        let at = run
            .stderr
            .find(stage)
            .unwrap_or_else(|| panic!("no `{stage}` header:\n{}", run.all()));
        assert!(at >= last, "`{stage}` out of order:\n{}", run.all());
        last = at;
    }
    run.assert_stderr_has("Summary of deploy");

    // The release command registered the deployments with the release Machine's environment.
    let deployments = deployments_on_server(&sandbox.tag);
    assert_eq!(deployments.len(), 2, "{deployments:#?}");
    for d in &deployments {
        assert_eq!(
            d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"],
            "/app",
            "{d:#}"
        );
    }
    run.assert_no_secrets(SENTINELS);
}

/// On GitHub Actions a deploy groups each stage's output, annotates the failing stage and writes
/// its summary (stage table and the plan) to the job summary, with no secret in any of it.
#[test]
fn deploy_on_github_actions_groups_stages_and_writes_the_job_summary() {
    let mut sandbox = ready("github-actions");
    let summary = sandbox.root.join("step-summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let summary_path = summary.display().to_string();
    sandbox
        .env("CI", "true")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary_path);
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stderr.matches("::group::").count(), 4, "{}", run.all());
    assert_eq!(
        run.stderr.matches("::endgroup::").count(),
        4,
        "{}",
        run.all()
    );
    run.assert_stderr_has("::group::==> [1/6] check secrets");
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.starts_with("earlier step\n## Deploy of prefect.yaml to Fly app"),
        "{text}"
    );
    assert!(
        text.contains(
            "| 3 | build image | skipped (--image registry.fly.io/captionacc-api:deadbeef) |"
        ),
        "{text}"
    );
    assert!(text.contains("| 6 | verify | ok |"), "{text}");
    assert!(
        text.contains("### Planned: 2 to create, 0 to update"),
        "{text}"
    );
    assert!(
        text.contains(&format!("captionacc-prod-{}-video", sandbox.tag)),
        "{text}"
    );
    for sentinel in SENTINELS {
        assert!(
            !text.contains(sentinel),
            "the job summary leaks {sentinel}:\n{text}"
        );
    }
    run.assert_no_secrets(SENTINELS);

    // A failing stage: an error annotation names it, and the summary says so.
    sandbox.write_prefect_yaml("prod", "captionacc-workers-dev");
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("::error title=deploy failed::stopped at stage 2/6 (validate and plan)");
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.contains("| 2 | validate and plan | **FAILED** |"),
        "{text}"
    );
    assert!(text.contains("| 6 | (not run) | | |"), "{text}");
}

/// The app lacks the credentials its server demands (server 2 answers 401 without them).
#[test]
fn missing_secret_stops_before_fly_deploy() {
    let mut sandbox = ready("no-secret");
    let (url, auth) = secured_server();
    sandbox.write_secrets(&[("PREFECT_API_URL", &url)]);
    sandbox
        .env("PREFECT_API_URL", &url)
        .env("PREFECT_API_AUTH_STRING", &auth);
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("error: deploy stopped at stage 1/6 (check secrets)");
    run.assert_stderr_has("PREFECT_API_AUTH_STRING or PREFECT_API_KEY");
    assert_eq!(sandbox.call_names(), ["secrets list"]);
    run.assert_no_secrets(SENTINELS);
}

#[test]
fn crossed_pool_stops_before_fly_deploy() {
    let sandbox = ready("crossed-pool");
    sandbox.write_prefect_yaml("prod", "captionacc-workers-dev");
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("deploy stopped at stage 2/6 (validate and plan)");
    run.assert_stderr_has("is a prod deployment but uses the dev pool `captionacc-workers-dev`");
    assert!(
        !sandbox.call_names().contains(&"deploy".to_string()),
        "{:?}",
        sandbox.call_names()
    );
    assert!(
        deployments_on_server(&sandbox.tag).is_empty(),
        "nothing may be registered"
    );
}

#[test]
fn invalid_yaml_stops_before_fly_deploy() {
    let sandbox = ready("invalid-yaml");
    let yaml = std::fs::read_to_string(sandbox.project.join("prefect.yaml")).unwrap();
    let broken = yaml.replace(
        "app/flows/caption_cleanup.py",
        "app/flows/no_such_flow_file.py",
    );
    std::fs::write(sandbox.project.join("prefect.yaml"), broken).unwrap();
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("deploy stopped at stage 2/6 (validate and plan)");
    assert!(
        run.stderr.contains("no_such_flow_file.py"),
        "the error must name the missing file:\n{}",
        run.all()
    );
    assert_eq!(sandbox.call_names(), ["secrets list"]);
    assert!(
        deployments_on_server(&sandbox.tag).is_empty(),
        "validation failed: nothing may be registered"
    );
}

#[test]
fn failing_release_command_fails_the_deploy() {
    let sandbox = ready("release-fails");
    // The app's secret points the release Machine at a server that is not there; this host's
    // URL is fine, so stages 1-3 pass and the failure happens inside `fly deploy`.
    sandbox.write_secrets(&[
        ("PREFECT_API_URL", "http://127.0.0.1:9/api"),
        ("PREFECT_API_AUTH_STRING", AUTH_STRING),
    ]);
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("deploy stopped at stage 5/6 (fly deploy)");
    run.assert_stderr_has(
        "the release command (register-flows) failed with exit code 1 on machine 148e1234a5d6e8",
    );
    assert_eq!(
        sandbox.call_names(),
        ["secrets list", "deploy"],
        "verify must not run"
    );
    assert!(deployments_on_server(&sandbox.tag).is_empty());
    run.assert_no_secrets(SENTINELS);
}

#[test]
fn hanging_fly_deploy_is_stopped() {
    let mut sandbox = ready("hang");
    sandbox.env("FAKE_FLY_HANG", "deploy");
    let started = Instant::now();
    let run = sandbox.run(&["deploy", "--image", IMAGE, "--timeout", "3"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("deploy stopped at stage 5/6 (fly deploy)");
    run.assert_stderr_has("did not finish within 3s and was stopped");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn release_output_is_masked() {
    let sandbox = ready("release-output");
    // The release command prints the secret it was given (a careless script would).
    sandbox.write_fly_toml(r#"sh -c 'echo "auth is $PREFECT_API_AUTH_STRING"; exit 4'"#);
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("auth is ***");
    run.assert_stderr_has("failed with exit code 4");
    run.assert_no_secrets(SENTINELS);
}

#[test]
fn release_that_registers_nothing_fails_verification() {
    let sandbox = ready("verify-drift");
    sandbox.write_fly_toml("true");
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("deploy stopped at stage 6/6 (verify)");
    run.assert_stderr_has("does not match prefect.yaml");
}

#[test]
fn verify_requires_a_running_machine() {
    let mut sandbox = ready("no-machines");
    let status = sandbox.root.join("status.json");
    std::fs::write(&status, r#"{"Name":"x","Machines":[{"id":"m1","state":"stopped","config":{"metadata":{"fly_process_group":"app"}}}]}"#).unwrap();
    sandbox.env("FAKE_FLY_STATUS_JSON", &status.display().to_string());
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("deploy stopped at stage 6/6 (verify)");
    assert!(
        run.stderr
            .contains("has no running machine (0 of 1 machine(s) started"),
        "{}",
        run.all()
    );
}

#[test]
fn dry_run_runs_no_fly_command() {
    let sandbox = ready("dry-run");
    let run = sandbox.run(&["deploy", "--dry-run", "--image", IMAGE]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        sandbox.calls().is_empty(),
        "dry run called fly: {:?}",
        sandbox.calls()
    );
    let config = sandbox.project.join("fly.toml").display().to_string();
    let expected = format!(
        "fly deploy --config {config} --app {} --image {IMAGE} --release-command-timeout 7m --deploy-retries 0 --yes",
        sandbox.app
    );
    assert!(
        run.stderr.contains(&expected),
        "missing `{expected}`:\n{}",
        run.all()
    );
    run.assert_stderr_has(&format!("fly secrets list --app {} --json", sandbox.app));
    run.assert_stderr_has(&format!("fly status --app {} --json", sandbox.app));
    assert!(
        deployments_on_server(&sandbox.tag).is_empty(),
        "a dry run writes nothing"
    );
    run.assert_no_secrets(SENTINELS);
}

/// "Run nothing" includes the build steps (issue 12 item 9): they are shown, not run, and the
/// placeholders of their outputs stay as written in the plan.
#[test]
fn dry_run_shows_build_steps_without_running_them() {
    let sandbox = ready("dry-run-steps");
    let path = sandbox.project.join("prefect.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap().replace(
        "deployments:\n",
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: marker\n      script: touch built.marker\ndeployments:\n",
    );
    let yaml = yaml.replacen(
        "    parameters:\n      video_id: smoke-test\n",
        "    parameters:\n      video_id: smoke-test\n    tags: [\"built-{{ marker.stdout }}\"]\n",
        1,
    );
    std::fs::write(&path, yaml).unwrap();
    let run = sandbox.run(&["deploy", "--dry-run", "--image", IMAGE]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        !sandbox.project.join("built.marker").exists(),
        "deploy --dry-run ran a build step:\n{}",
        run.all()
    );
    run.assert_stderr_has("not run (dry run): build step 1 (run_shell_script): touch built.marker");
    // Without --dry-run the same steps run (in the plan stage, as register-flows does).
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        sandbox.project.join("built.marker").exists(),
        "{}",
        run.all()
    );
}

#[test]
fn dev_deploy_uses_the_dev_app_and_yaml() {
    let sandbox = ready("dev-env");
    let prod_yaml = sandbox.project.join("prefect.yaml");
    sandbox.write_prefect_yaml("dev", "captionacc-workers-dev");
    std::fs::rename(&prod_yaml, sandbox.project.join("prefect-dev.yaml")).unwrap();
    sandbox.write_prefect_yaml("prod", "captionacc-workers-prod");
    let run = sandbox.run(&[
        "deploy",
        "--env",
        "dev",
        "--dry-run",
        "--image",
        IMAGE,
        "--release-command-timeout",
        "9m",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_stderr_has(&format!(
        "Deploying prefect-dev.yaml to Fly app {}-dev",
        sandbox.app
    ));
    run.assert_stderr_has(&format!("--app {}-dev --image", sandbox.app));
    // The flag overrides fly.toml's release_command_timeout (7m).
    run.assert_stderr_has("--release-command-timeout 9m");
    // The lint checks the dev yaml against the dev environment: a prod yaml would be refused.
    std::fs::rename(&prod_yaml, sandbox.project.join("prefect-dev.yaml")).unwrap();
    let run = sandbox.run(&["deploy", "--env", "dev", "--dry-run", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("belongs to prod but this is a dev deploy");
}

#[test]
fn dev_deploy_builds_with_the_dev_fly_toml() {
    let sandbox = ready("dev-fly-toml");
    let prod_yaml = sandbox.project.join("prefect.yaml");
    sandbox.write_prefect_yaml("dev", "captionacc-workers-dev");
    std::fs::rename(&prod_yaml, sandbox.project.join("prefect-dev.yaml")).unwrap();
    let fly_toml = std::fs::read_to_string(sandbox.project.join("fly.toml")).unwrap();
    let dev_app = format!("{}-staging", sandbox.app);
    let dev_toml = fly_toml.replace(
        &format!("app = \"{}\"", sandbox.app),
        &format!("app = \"{dev_app}\""),
    );
    assert_ne!(dev_toml, fly_toml, "the sandbox's fly.toml names its app");
    std::fs::write(sandbox.project.join("fly-dev.toml"), dev_toml).unwrap();
    let run = sandbox.run(&["deploy", "--env", "dev", "--dry-run"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let dev_config = sandbox.project.join("fly-dev.toml").display().to_string();
    // Both the build (Fly's builder; a dry run prints it on stdout) and the deploy read the dev
    // app's own config.
    run.assert_stdout_has(&format!("--app {dev_app} --config {dev_config}"));
    run.assert_stderr_has(&format!(
        "fly deploy --config {dev_config} --app {dev_app} --image"
    ));
}

// ---- The stand-in fly itself, driven through the library (no register-flows needed) ---------

fn deploy_with_fake(
    sandbox: &Sandbox,
    extra_env: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<fly::RunOutput> {
    let mut cmd = fly::deploy_cmd(
        &sandbox.bin.join("fly"),
        &DeployRequest {
            config: sandbox.project.join("fly.toml"),
            app: sandbox.app.clone(),
            image: IMAGE.into(),
            release_command_timeout: "5m".into(),
        },
    );
    // The environment the fake (and through it the release command) sees.
    cmd.env.push((
        "PATH".into(),
        format!("{}:/usr/bin:/bin", sandbox.bin.display()),
    ));
    cmd.env
        .push(("FAKE_FLY_LOG".into(), sandbox.log.display().to_string()));
    cmd.env.push((
        "FAKE_FLY_SECRETS".into(),
        sandbox.secrets.display().to_string(),
    ));
    cmd.env.push(("FLY_API_TOKEN".into(), FLY_TOKEN.into()));
    for (k, v) in extra_env {
        cmd.env.push((k.to_string(), v.to_string()));
    }
    fly::run_checked(&cmd, timeout, false)
}

fn failure(result: anyhow::Result<fly::RunOutput>) -> FlyFailure {
    let err = result.expect_err("fly deploy should fail");
    err.downcast_ref::<FlyError>()
        .unwrap_or_else(|| panic!("not a FlyError: {err:#}"))
        .failure
        .clone()
}

#[test]
fn fake_runs_release_command_like_fly() {
    let sandbox = Sandbox::new("fake-env");
    sandbox.write_secrets(&[
        ("PREFECT_API_URL", "http://secret-wins/api"),
        ("PREFECT_API_KEY", API_KEY),
    ]);
    // No shell: `sh` is the program, the test script is one argument. It checks the release
    // Machine's environment: [env] + secrets (secrets win), Fly's variables, nothing of the caller's.
    sandbox.write_fly_toml(
        r#"sh -c 'test "$APP_DIR" = /app && test "$PREFECT_API_URL" = http://secret-wins/api && test -n "$PREFECT_API_KEY" && test "$RELEASE_COMMAND" = 1 && test -z "$FLY_API_TOKEN" && test -z "$FAKE_FLY_LOG" && test -f fly.toml'"#,
    );
    let output = deploy_with_fake(&sandbox, &[], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        output.stdout.contains("Visit your newly deployed app"),
        "{output:?}"
    );
    assert_eq!(sandbox.call_names(), ["deploy"]);
}

#[test]
fn fake_release_command_failure_is_classified() {
    let sandbox = Sandbox::new("fake-fails");
    sandbox.write_fly_toml("sh -c 'echo registering; exit 3'");
    let got = failure(deploy_with_fake(&sandbox, &[], Duration::from_secs(60)));
    assert_eq!(
        got,
        FlyFailure::ReleaseCommand {
            machine: Some("148e1234a5d6e8".into()),
            exit_code: Some(3)
        }
    );
}

#[test]
fn fake_release_command_timeout_is_classified() {
    let sandbox = Sandbox::new("fake-release-timeout");
    sandbox.write_fly_toml("sleep 30");
    let mut cmd_timeout = fly::deploy_cmd(
        &sandbox.bin.join("fly"),
        &DeployRequest {
            config: sandbox.project.join("fly.toml"),
            app: sandbox.app.clone(),
            image: IMAGE.into(),
            release_command_timeout: "1s".into(),
        },
    );
    cmd_timeout.env.push((
        "FAKE_FLY_SECRETS".into(),
        sandbox.secrets.display().to_string(),
    ));
    let got = failure(fly::run_checked(
        &cmd_timeout,
        Duration::from_secs(60),
        false,
    ));
    assert_eq!(got, FlyFailure::ReleaseCommandTimeout);
}

#[test]
fn hanging_fake_is_killed_by_the_outer_timeout() {
    let sandbox = Sandbox::new("fake-hang");
    let started = Instant::now();
    let got = failure(deploy_with_fake(
        &sandbox,
        &[("FAKE_FLY_HANG", "deploy")],
        Duration::from_secs(1),
    ));
    assert_eq!(got, FlyFailure::Timeout(Duration::from_secs(1)));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// The seed's own setup (issue 12 item 0): the repository's fly.toml and prefect.yaml, exactly
/// one Fly secret (PREFECT_API_URL) and a server that asks for no credentials. It deploys, with a
/// loud warning instead of the failure it used to be.
fn seed(test: &str) -> Sandbox {
    ensure_pool(&client(), "captionacc-workers-prod");
    worker_heartbeat(
        &client(),
        "captionacc-workers-prod",
        "fly-pipeline-stand-in",
    );
    let mut sandbox = Sandbox::new(test);
    for file in ["fly.toml", "prefect.yaml"] {
        std::fs::copy(repo_root().join(file), sandbox.project.join(file)).unwrap();
    }
    let url = server_url();
    sandbox.write_secrets(&[("PREFECT_API_URL", &url)]);
    sandbox
        .env("PREFECT_API_URL", &url)
        .env("FLY_API_TOKEN", FLY_TOKEN);
    sandbox
}

#[test]
fn the_seeds_setup_deploys_with_a_loud_warning() {
    let sandbox = seed("seed-setup");
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_stderr_has(
        "[warn] PREFECT_API_AUTH_STRING or PREFECT_API_KEY: MISSING, and http://127.0.0.1",
    );
    run.assert_stderr_has("ANYONE WHO CAN REACH THAT URL CAN CHANGE DEPLOYMENTS");
    // fly.toml runs a worker group: verify checks its Machines run the image.
    assert_eq!(
        sandbox.call_names(),
        ["secrets list", "deploy", "status", "machines list"],
        "{}",
        run.all()
    );
    let names: Vec<String> = client()
        .read_deployments(json!({"deployments": {"name": {"any_": [
            "captionacc-prod-video-initial-processing",
            "captionacc-prod-caption-cleanup"
        ]}}}))
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    run.assert_no_secrets(SENTINELS);
}

/// The switch: `XTASK_REQUIRE_CREDENTIALS = "true"` in fly.toml [env] makes the same setup fail
/// before anything is built or deployed.
#[test]
fn the_seeds_setup_fails_when_credentials_are_required() {
    let sandbox = seed("seed-required");
    let path = sandbox.project.join("fly.toml");
    let toml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[env]\n", "[env]\n  XTASK_REQUIRE_CREDENTIALS = \"true\"\n");
    assert!(toml.contains("XTASK_REQUIRE_CREDENTIALS"), "{toml}");
    std::fs::write(&path, toml).unwrap();
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has(
        "[FAIL] PREFECT_API_AUTH_STRING or PREFECT_API_KEY: missing, and XTASK_REQUIRE_CREDENTIALS makes credentials mandatory",
    );
    assert_eq!(sandbox.call_names(), ["secrets list"], "{}", run.all());
}

/// A server that demands credentials the app lacks fails the check (and so the deploy).
#[test]
fn missing_credentials_fail_when_the_server_demands_them() {
    let mut sandbox = seed("seed-secured");
    let (url, auth) = secured_server();
    sandbox.write_secrets(&[("PREFECT_API_URL", &url)]);
    sandbox
        .env("PREFECT_API_URL", &url)
        .env("PREFECT_API_AUTH_STRING", &auth);
    let run = sandbox.run(&["check-secrets"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stdout_has("[ok]   authenticated read");
    run.assert_stdout_has(
        "[FAIL] PREFECT_API_AUTH_STRING or PREFECT_API_KEY: missing, and http://127.0.0.1",
    );
    run.assert_stdout_has("demands credentials (answered 401");
    assert!(!run.all().contains(&auth), "{}", run.all());
}

/// The release command honours the switch too (fly.toml `[env]` reaches the release Machine):
/// without credentials it refuses before any request, and nothing is written.
#[test]
fn the_release_command_refuses_to_run_without_required_credentials() {
    let mut sandbox = seed("release-requires-credentials");
    sandbox.write_prefect_yaml("prod", "captionacc-workers-prod");
    sandbox.env("XTASK_REQUIRE_CREDENTIALS", "true");
    let run = sandbox.run(&["register-flows"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("error: XTASK_REQUIRE_CREDENTIALS is on, but neither PREFECT_API_KEY nor PREFECT_API_AUTH_STRING is set");
    assert!(deployments_on_server(&sandbox.tag).is_empty());
}

#[test]
fn chattering_fake_is_killed_by_the_outer_timeout() {
    // flyctl can hang while still printing progress; the timeout must fire all the same, and
    // the captured output must stay bounded. Run on a thread so the defect (a wait that never
    // ends) fails the test instead of hanging it.
    let sandbox = Sandbox::new("fake-chatter");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = deploy_with_fake(
            &sandbox,
            &[("FAKE_FLY_HANG", "chatter")],
            Duration::from_secs(2),
        );
        let _ = tx.send(result);
    });
    let result = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the fly timeout never fired while output flowed");
    let err = result.expect_err("fly deploy should fail");
    let failure = err
        .downcast_ref::<FlyError>()
        .unwrap_or_else(|| panic!("not a FlyError: {err:#}"));
    assert_eq!(failure.failure, FlyFailure::Timeout(Duration::from_secs(2)));
    assert!(
        failure.tail.len() <= 200
            && failure
                .tail
                .last()
                .is_some_and(|l| l.contains("Waiting for release_command")),
        "{:?}",
        failure.tail.last()
    );
}

/// The release that registered each deployment is recorded as its `xtask.release:<id>` tag: read
/// from the release file baked into the image, else from Fly's FLY_IMAGE_REF; deploy's own check
/// expects exactly that release, and a check from a checkout (no release known) is in sync too.
#[test]
fn every_deployment_records_the_release_that_registered_it() {
    let mut sandbox = ready("release-tag");
    let tag = sandbox.tag.clone();
    let tags_of = || -> Vec<serde_json::Value> {
        deployments_on_server(&tag)
            .iter()
            .map(|d| d["tags"].clone())
            .collect()
    };
    // 1. The image's release file names the release (the fake runs the release command in the
    //    project directory, the image's workdir).
    std::fs::write(
        sandbox.project.join(".xtask-release"),
        format!("image={IMAGE}\ncommit=deadbeef00000000000000000000000000000000\n"),
    )
    .unwrap();
    let run = sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(
        tags_of(),
        vec![json!(["xtask.release:deadbeef"]); 2],
        "{}",
        run.all()
    );

    // 2. An image without the file: Fly's FLY_IMAGE_REF names it. Every deployment moves to it
    //    (a tags-only update) and the deploy's check (stage 6) is in sync with it.
    std::fs::remove_file(sandbox.project.join(".xtask-release")).unwrap();
    let second = "registry.fly.io/captionacc-api:cafe0002";
    let run = sandbox.run(&["deploy", "--image", second]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(tags_of(), vec![json!(["xtask.release:cafe0002"]); 2]);
    run.assert_stderr_has("tags");

    // 3. From the checkout (no release file, no FLY_IMAGE_REF): in sync, and an apply keeps the
    //    recorded release. (APP_DIR as fly.toml [env] gives it to the release Machine.)
    sandbox.env("APP_DIR", "/app");
    let run = sandbox.run(&["register-flows", "--check"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let run = sandbox.run(&["register-flows"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(tags_of(), vec![json!(["xtask.release:cafe0002"]); 2]);

    // 4. A release file that cannot be read fails the release command before any write.
    std::fs::write(sandbox.project.join(".xtask-release"), "garbage\n").unwrap();
    let run = sandbox.run(&["register-flows", "--check"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has(".xtask-release:1: expected `key=value`");
}
