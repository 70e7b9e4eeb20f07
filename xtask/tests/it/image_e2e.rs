//! The production image, end to end on a real Docker engine.
//!
//! Builds the project's Dockerfile with `xtask build-image --local-bases` (through the binary),
//! then on a private Docker network: a Prefect server (from the same image), the release command
//! exactly as fly.toml states it (no shell, fly.toml `[env]` with PREFECT_API_URL pointing at that
//! server, as a Fly secret would), a worker running fly.toml's `worker` process group, and a flow
//! run through the API that must reach Completed. Then a release with a changed prefect.yaml
//! (applied) and one with a bad entrypoint (fails, server left as it was).
//!
//! Without a reachable engine (`docker info` fails) the test prints a SKIPPED line and passes.
//! Every container and the network get unique names and are removed at the end, also on failure.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::bin::{run, xtask};

const SERVER_ALIAS: &str = "prefect-server";
const SERVER_PORT: u16 = 4200;
const CHANGED_DESCRIPTION: &str = "Changed by the image end-to-end test.";

/// Written past the test harness's capture, so the skip is visible in a normal `cargo test` run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
}

/// Runs docker and returns its stdout; panics with its stderr on failure.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's containers and network when dropped (also when the test panics).
struct Resources {
    prefix: String,
    containers: RefCell<Vec<String>>,
    network: String,
}

impl Resources {
    fn new() -> Resources {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("xtask-e2e-{}", &id[..10]);
        let network = format!("{prefix}-net");
        docker_ok(&["network", "create", &network]);
        Resources {
            prefix,
            containers: RefCell::new(Vec::new()),
            network,
        }
    }

    /// A unique container name, registered for removal.
    fn container(&self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        self.containers.borrow_mut().push(name.clone());
        name
    }

    fn logs(&self, name: &str) -> String {
        let out = docker(&["logs", "--tail", "60", name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        for name in self.containers.borrow().iter() {
            let _ = docker(&["rm", "--force", "--volumes", name]);
        }
        let _ = docker(&["network", "rm", &self.network]);
    }
}

/// What fly.toml says about the release command, the process groups and the environment.
struct FlyConfig {
    release_command: Vec<String>,
    worker_command: Vec<String>,
    env: Vec<(String, String)>,
}

fn fly_config(root: &Path) -> FlyConfig {
    let text = std::fs::read_to_string(root.join("fly.toml")).expect("read fly.toml");
    let table: toml::Table = text.parse().expect("fly.toml is TOML");
    // Fly runs these without a shell: the words split on whitespace.
    let words = |value: Option<&toml::Value>, what: &str| -> Vec<String> {
        let command = value
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("fly.toml has no {what}"));
        command.split_whitespace().map(str::to_string).collect()
    };
    let env = table
        .get("env")
        .and_then(|v| v.as_table())
        .map(|env| {
            env.iter()
                .map(|(key, value)| {
                    (
                        key.clone(),
                        value
                            .as_str()
                            .expect("[env] values are strings")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    FlyConfig {
        release_command: words(
            table.get("deploy").and_then(|d| d.get("release_command")),
            "[deploy] release_command",
        ),
        worker_command: words(
            table.get("processes").and_then(|p| p.get("worker")),
            "[processes] worker",
        ),
        env,
    }
}

/// `docker run` arguments for the environment of a Fly machine of this app: fly.toml `[env]`,
/// with PREFECT_API_URL set to the test server (in production a secret overrides it likewise).
fn machine_env(fly: &FlyConfig, api_url_in_network: &str) -> Vec<String> {
    let mut args = Vec::new();
    for (key, value) in &fly.env {
        if key != "PREFECT_API_URL" {
            args.push("--env".to_string());
            args.push(format!("{key}={value}"));
        }
    }
    args.push("--env".to_string());
    args.push(format!("PREFECT_API_URL={api_url_in_network}"));
    args
}

struct Api {
    base: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn new(base: String) -> Api {
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Api { base, http }
    }

    fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let body = response.text().unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    fn post(&self, path: &str, payload: &Value) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(payload)
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status();
        let body = response.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    fn deployments(&self) -> Vec<Value> {
        let (status, body) = self.post("/deployments/filter", &json!({}));
        assert!(
            status.is_success(),
            "POST /deployments/filter: {status}: {body}"
        );
        let mut list = body.as_array().cloned().expect("a list of deployments");
        list.sort_by_key(|d| d["name"].as_str().unwrap_or_default().to_string());
        list
    }

    fn deployment(&self, name: &str) -> Value {
        self.deployments()
            .into_iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("deployment {name} is not on the server"))
    }
}

/// The deployments without the fields a worker or the server's own services change
/// (`last_polled`, `status`) and without `updated`, so that an engine that rolls back a partial
/// write counts as having left the server as it was.
fn comparable(deployments: &[Value]) -> Vec<Value> {
    deployments
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if let Some(map) = d.as_object_mut() {
                for volatile in ["last_polled", "status", "updated"] {
                    map.remove(volatile);
                }
            }
            d
        })
        .collect()
}

/// Runs the release command in a fresh container of the image, optionally with another
/// prefect.yaml copied over /app/prefect.yaml first; returns the exit code, output and wall time.
fn release(
    res: &Resources,
    image: &str,
    fly: &FlyConfig,
    api_url: &str,
    role: &str,
    prefect_yaml: Option<&Path>,
) -> (i32, String, Duration) {
    let name = res.container(role);
    let mut args: Vec<String> = vec![
        "create".into(),
        "--name".into(),
        name.clone(),
        "--network".into(),
        res.network.clone(),
    ];
    args.extend(machine_env(fly, api_url));
    args.push(image.to_string());
    args.extend(fly.release_command.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&args);
    if let Some(file) = prefect_yaml {
        docker_ok(&[
            "cp",
            &file.display().to_string(),
            &format!("{name}:/app/prefect.yaml"),
        ]);
    }
    let started = Instant::now();
    let out = docker(&["start", "--attach", &name]);
    let elapsed = started.elapsed();
    let code: i32 = docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &name])
        .parse()
        .expect("exit code");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (code, text, elapsed)
}

fn wait_for_health(api: &Api, res: &Resources, server: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = api
            .http
            .get(format!("{}/health", api.base))
            .send()
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the Prefect server container did not become healthy:\n{}",
            res.logs(server)
        );
        sleep(Duration::from_millis(500));
    }
}

fn write_variant(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write prefect.yaml variant");
    path
}

#[test]
fn production_image_end_to_end() {
    if !xtask::docker::engine_available() {
        say("SKIPPED image_e2e::production_image_end_to_end: no Docker engine reachable (`docker info` failed)");
        return;
    }
    let root = xtask::project::repo_root();
    let fly = fly_config(&root);
    assert_eq!(
        fly.release_command,
        ["xtask", "register-flows", "--prune"],
        "fly.toml's release_command changed; update this test"
    );

    // 1. Build through the binary, as a user would.
    let started = Instant::now();
    // The build log (a thousand lines cold) is shown only when the build fails.
    let build = run(xtask()
        .args(["build-image", "--local-bases"])
        .current_dir(&root)
        .env("XTASK_PROJECT_ROOT", &root)
        // The base images stay cached in the default state dir (target/xtask/) between runs.
        .env_remove("XTASK_STATE_DIR"));
    let log = String::from_utf8_lossy(&build.stderr);
    if !build.status.success() {
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(120)..].join("\n");
        panic!(
            "xtask build-image failed ({}); last lines of its output:\n{tail}",
            build.status
        );
    }
    for line in log
        .lines()
        .filter(|l| l.starts_with("base image ") || l.starts_with("built "))
    {
        say(&format!("image_e2e: {line}"));
    }
    let image = String::from_utf8_lossy(&build.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(!image.is_empty(), "build-image printed no image reference");
    say(&format!(
        "image_e2e: build-image took {:.0?} in all",
        started.elapsed()
    ));
    let revision = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"org.opencontainers.image.revision\"}}",
        &image,
    ]);
    assert_eq!(
        revision.len(),
        40,
        "the image has no revision label: {revision:?}"
    );

    // The release file the release command reads: this image's reference and commit.
    let release_file = docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "cat",
        "/app/.xtask-release",
    ]);
    assert_eq!(
        release_file.trim(),
        format!("image={image}\ncommit={revision}"),
        "the image's release file"
    );

    // The image's entry points exist: the old bash entry point is a shim over xtask.
    let shim = docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "scripts/deploy_flows.sh",
        "--help",
    ]);
    assert!(
        shim.contains("--dry-run"),
        "scripts/deploy_flows.sh --help did not reach register-flows:\n{shim}"
    );

    let res = Resources::new();

    // 2. A Prefect server from the same image, published on a random host port.
    let server = res.container("server");
    docker_ok(&[
        "run",
        "--detach",
        "--name",
        &server,
        "--network",
        &res.network,
        "--network-alias",
        SERVER_ALIAS,
        "--publish",
        &format!("127.0.0.1::{SERVER_PORT}"),
        "--env",
        "PREFECT_SERVER_ANALYTICS_ENABLED=false",
        &image,
        "prefect",
        "server",
        "start",
        "--host",
        "0.0.0.0",
        "--port",
        &SERVER_PORT.to_string(),
    ]);
    let host_port = docker_ok(&["port", &server, &format!("{SERVER_PORT}/tcp")]);
    let host_port = host_port
        .lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .expect("published port")
        .to_string();
    let api = Api::new(format!("http://{host_port}/api"));
    let api_in_network = format!("http://{SERVER_ALIAS}:{SERVER_PORT}/api");
    wait_for_health(&api, &res, &server);

    // The pool exists before a release, as in production.
    let pool = fly
        .worker_command
        .iter()
        .skip_while(|w| *w != "--pool")
        .nth(1)
        .cloned()
        .expect("--pool in the worker command");
    let (status, body) = api.post("/work_pools/", &json!({"name": pool, "type": "process"}));
    assert!(
        status.is_success(),
        "creating work pool {pool}: {status}: {body}"
    );

    // 3. The release command exactly as fly.toml states it.
    let (code, output, first_release) =
        release(&res, &image, &fly, &api_in_network, "release-1", None);
    assert_eq!(code, 0, "the release command failed:\n{output}");
    say(&format!(
        "image_e2e: release command took {first_release:.1?} (container start included)"
    ));
    let yaml = std::fs::read_to_string(root.join("prefect.yaml")).expect("read prefect.yaml");
    let deployed = api.deployments();
    for name in [
        "captionacc-prod-video-initial-processing",
        "captionacc-prod-caption-cleanup",
    ] {
        assert!(
            yaml.contains(name),
            "prefect.yaml no longer has {name}; update this test"
        );
        let deployment = deployed
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} not registered:\n{output}"));
        assert_eq!(deployment["work_pool_name"], pool.as_str());
        // The release is recorded from the file baked into the image, not from the network.
        let release_tag = format!("xtask.release:{}", image.rsplit(':').next().unwrap());
        assert!(
            deployment["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| *t == release_tag.as_str())),
            "{name} does not record {release_tag}: {}",
            deployment["tags"]
        );
    }

    // 4. The worker process group picks up a flow run, which completes.
    let worker = res.container("worker");
    let mut worker_args: Vec<String> = vec![
        "run".into(),
        "--detach".into(),
        "--name".into(),
        worker.clone(),
        "--network".into(),
        res.network.clone(),
    ];
    worker_args.extend(machine_env(&fly, &api_in_network));
    worker_args.push("--env".into());
    // Poll often so the test does not wait for the default interval.
    worker_args.push("PREFECT_WORKER_QUERY_SECONDS=2".into());
    worker_args.push(image.clone());
    worker_args.extend(fly.worker_command.iter().cloned());
    docker_ok(&worker_args.iter().map(String::as_str).collect::<Vec<_>>());

    let video = api.deployment("captionacc-prod-video-initial-processing");
    let deployment_id = video["id"].as_str().expect("deployment id");
    let (status, run) = api.post(
        &format!("/deployments/{deployment_id}/create_flow_run"),
        &json!({}),
    );
    assert!(status.is_success(), "create_flow_run: {status}: {run}");
    let run_id = run["id"].as_str().expect("flow run id").to_string();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let run = api.get(&format!("/flow_runs/{run_id}"));
        let state = run["state"]["type"]
            .as_str()
            .unwrap_or("UNKNOWN")
            .to_string();
        if state == "COMPLETED" {
            break;
        }
        assert!(
            !matches!(state.as_str(), "FAILED" | "CRASHED" | "CANCELLED")
                && Instant::now() < deadline,
            "flow run {run_id} ended {state} ({}); worker log:\n{}",
            run["state"]["message"],
            res.logs(&worker)
        );
        sleep(Duration::from_secs(2));
    }
    // Stop the worker: from now on only releases write to the server.
    docker_ok(&["rm", "--force", &worker]);

    // 5. A release with a changed prefect.yaml is applied.
    let scratch = std::env::temp_dir().join(&res.prefix);
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let original_description = video["description"]
        .as_str()
        .expect("description")
        .to_string();
    assert!(
        yaml.contains(&original_description),
        "the description in prefect.yaml changed; update this test"
    );
    let changed = yaml.replacen(&original_description, CHANGED_DESCRIPTION, 1);
    let changed_path = write_variant(&scratch, "prefect-changed.yaml", &changed);
    let (code, output, _) = release(
        &res,
        &image,
        &fly,
        &api_in_network,
        "release-2",
        Some(&changed_path),
    );
    assert_eq!(
        code, 0,
        "the release with a changed prefect.yaml failed:\n{output}"
    );
    assert_eq!(
        api.deployment("captionacc-prod-video-initial-processing")["description"],
        CHANGED_DESCRIPTION
    );

    // 6. A failing release (a bad entrypoint, next to a change that would otherwise be written)
    //    exits non-zero and leaves the deployments as they were.
    let before = api.deployments();
    let bad_entrypoint = "entrypoint: app/flows/caption_cleanup.py:cleanup_stale_captions";
    assert!(
        yaml.contains(bad_entrypoint),
        "the cleanup entrypoint in prefect.yaml changed; update this test"
    );
    let broken = yaml
        .replacen(
            &original_description,
            "This change must not reach the server.",
            1,
        )
        .replacen(
            bad_entrypoint,
            "entrypoint: app/flows/caption_cleanup.py:no_such_flow",
            1,
        );
    let broken_path = write_variant(&scratch, "prefect-broken.yaml", &broken);
    let (code, output, _) = release(
        &res,
        &image,
        &fly,
        &api_in_network,
        "release-3",
        Some(&broken_path),
    );
    assert_ne!(
        code, 0,
        "a release with a bad entrypoint must fail:\n{output}"
    );
    assert!(
        output.contains("error"),
        "the failing release printed no error:\n{output}"
    );
    say(&format!(
        "image_e2e: the failing release exited {code}: {}",
        output
            .lines()
            .rfind(|l| l.contains("error"))
            .unwrap_or_default()
    ));
    let after = api.deployments();
    assert_eq!(
        comparable(&before),
        comparable(&after),
        "the failing release changed the server's deployments:\n{output}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The build context the repository's `.dockerignore` lets through, on the real engine: a
/// context with the repository's `.dockerignore` and a tree holding what a developer keeps
/// beside the code, copied whole into a `FROM scratch` image whose files are then listed.
#[test]
fn dockerignore_keeps_local_secrets_and_venvs_out_of_the_context() {
    if !xtask::docker::engine_available() {
        say("SKIPPED image_e2e::dockerignore_keeps_local_secrets_and_venvs_out_of_the_context: no Docker engine reachable");
        return;
    }
    let root = xtask::project::repo_root();
    let dir = &crate::support::scratch_dir(&crate::support::unique("dockerignore"));
    std::fs::copy(root.join(".dockerignore"), dir.join(".dockerignore")).unwrap();
    let kept = [
        "app/__init__.py",
        "app/api.py",
        "app/flows/clean.py",
        "app/flows/pkg/util.py",
        "app/requirements.txt",
        "app/requirements.lock",
        "prefect.yaml",
        "fly.toml",
        "xtask/src/lib.rs",
        "Cargo.lock",
    ];
    let left_out = [
        "app/.env",
        "app/.venv/bin/python",
        "app/.venv/lib/python3.11/site-packages/secret.py",
        "app/flows/.env.local",
        "app/venv/lib/x.py",
        "app/.git/config",
        "app/flows/__pycache__/clean.cpython-311.pyc",
        ".env",
        "target/debug/xtask",
        ".venv/bin/python",
    ];
    for path in kept.iter().chain(&left_out) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "x").unwrap();
    }
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY . /context/\n").unwrap();
    let tag = format!("xtask-dockerignore-test:{}", std::process::id());
    docker_ok(&["build", "--quiet", "--tag", &tag, &dir.to_string_lossy()]);
    let container = docker_ok(&["create", &tag, "/none"]);
    let tar = dir.join("export.tar");
    let exported = docker(&["export", "--output", &tar.to_string_lossy(), &container]);
    docker(&["rm", &container]);
    docker(&["rmi", "--force", &tag]);
    assert!(
        exported.status.success(),
        "docker export failed: {exported:?}"
    );
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("context/"))
        .filter(|l| !l.ends_with('/'))
        .map(str::to_string)
        .collect();
    for path in kept {
        assert!(
            files.iter().any(|f| f == path),
            "{path} is missing from the context: {files:?}"
        );
    }
    for path in left_out {
        assert!(
            !files.iter().any(|f| f == path),
            "{path} reached the image's build context: {files:?}"
        );
    }
}
