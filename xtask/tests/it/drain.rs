//! `deploy` never crashes a running flow: a real Prefect process worker stands in for the worker
//! Machine, the stand-in fly replaces it the way Fly does (fly.toml's kill_signal, SIGKILL after
//! kill_timeout, everything it ran gone with it; a new worker started), and a flow that takes
//! ~20 s is running when `deploy` starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::bin::Outcome;
use crate::support::fly::{url_with_credentials, Sandbox, AUTH_STRING, FLY_TOKEN, SENTINELS};
use crate::support::{client, ensure_pool, repo_root, server_url, venv_dir, wait_for};

const IMAGE: &str = "registry.fly.io/captionacc-api:drain";

/// A flow that takes `seconds` (the proving scenarios use ~20 s).
const SLOW_FLOW: &str = r#"import time

from prefect import flow


@flow
def slow(seconds: int = 20) -> str:
    """Works for a while, like a video job."""
    time.sleep(seconds)
    return "done"
"#;

/// A sandboxed project whose fly.toml runs a Prefect worker on a pool of its own, with the
/// project's kill_signal/kill_timeout, and its "worker Machine": a real process worker (also
/// the world of `verify`'s tests).
pub(crate) struct World {
    pub(crate) sandbox: Sandbox,
    pub(crate) pool: String,
    machine: PathBuf,
}

impl World {
    pub(crate) fn new(test: &str) -> World {
        let mut sandbox = Sandbox::new(test);
        let pool = format!("captionacc-workers-prod-{}", sandbox.tag);
        ensure_pool(&client(), &pool);
        let project = sandbox.project.display().to_string();
        std::fs::write(sandbox.project.join("app/flows/slow.py"), SLOW_FLOW).unwrap();
        std::fs::write(
            sandbox.project.join("prefect.yaml"),
            format!(
                r#"name: captionacc-{tag}
prefect-version: 3.9.1
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $APP_DIR }}}}"
deployments:
  - name: captionacc-prod-{tag}-slow
    entrypoint: app/flows/slow.py:slow
    work_pool:
      name: {pool}
"#,
                tag = sandbox.tag
            ),
        )
        .unwrap();
        // The Machines' stop settings are the project's own: this is what proves them.
        let fly_toml = std::fs::read_to_string(repo_root().join("fly.toml")).unwrap();
        let stop_settings: String = fly_toml
            .lines()
            .filter(|l| l.starts_with("kill_signal") || l.starts_with("kill_timeout"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(stop_settings.lines().count(), 2, "{fly_toml}");
        std::fs::write(
            sandbox.project.join("fly.toml"),
            format!(
                r#"app = "{app}"
primary_region = "iad"
{stop_settings}
[deploy]
  release_command = "xtask register-flows"

[env]
  APP_DIR = "{project}"

[processes]
  app = "python -m app.api"
  worker = "prefect worker start --pool {pool} --type process"
"#,
                app = sandbox.app
            ),
        )
        .unwrap();
        let url = server_url();
        sandbox.write_secrets(&[
            ("PREFECT_API_URL", &url),
            ("PREFECT_API_AUTH_STRING", AUTH_STRING),
        ]);
        let machine = sandbox.root.join("machine");
        std::fs::create_dir_all(&machine).unwrap();
        sandbox
            .env("PREFECT_API_URL", &url_with_credentials(&url))
            .env("PREFECT_API_AUTH_STRING", AUTH_STRING)
            .env("FLY_API_TOKEN", FLY_TOKEN)
            .env("APP_DIR", &project)
            .env("FAKE_FLY_MACHINE", &machine.display().to_string());
        write_start_program(&machine, &sandbox.project, &pool, &url);
        World {
            sandbox,
            pool,
            machine,
        }
    }

    /// Registers the deployment and starts the first worker Machine.
    pub(crate) fn start(&self) {
        let run = self.sandbox.run(&["register-flows"]);
        assert_eq!(run.code, Some(0), "{}", run.all());
        let status = std::process::Command::new(self.machine.join("start"))
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn deployment_id(&self) -> String {
        let path = format!(
            "/deployments/name/slow/captionacc-prod-{}-slow",
            self.sandbox.tag
        );
        let deployment = client().get(&path).unwrap().expect("the deployment");
        deployment["id"].as_str().unwrap().to_string()
    }

    /// A run of the slow flow, scheduled now; its id.
    fn schedule_run(&self, seconds: u32) -> String {
        let path = format!("/deployments/{}/create_flow_run", self.deployment_id());
        let run = client()
            .post(&path, &json!({"parameters": {"seconds": seconds}}))
            .unwrap();
        run["id"].as_str().unwrap().to_string()
    }

    fn pool_paused(&self) -> bool {
        let pool = client().read_work_pool(&self.pool).unwrap().unwrap();
        pool["is_paused"] == json!(true)
    }

    fn marker(&self) -> Option<Value> {
        client()
            .get(&format!("/variables/name/xtask-drain-{}", self.pool))
            .unwrap()
    }

    /// `stopped …`/`started …` lines of the stand-in fly's machine log.
    fn machine_events(&self) -> Vec<String> {
        std::fs::read_to_string(self.machine.join("events.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts `deploy …` in the background, output to files.
    fn spawn(&self, args: &[&str]) -> Background {
        let out = self
            .sandbox
            .root
            .join(format!("deploy-{}.out", unique_suffix()));
        let child = self
            .sandbox
            .xtask(args)
            .stdout(Stdio::from(
                std::fs::File::create(out.with_extension("stdout")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&out).unwrap()))
            .spawn()
            .unwrap();
        Background {
            child,
            stderr: out,
            started: Instant::now(),
        }
    }
}

/// The test's worker Machine goes away with the test (also when it fails): the worker would
/// otherwise outlive the test servers, polling a server that is gone.
impl Drop for World {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.machine.join("worker.pid")).unwrap_or_default();
        let pid = pid.trim();
        if !pid.is_empty() {
            // The worker leads its own session (setsid), so its group is itself and its helpers.
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The "Machine image": starts a worker in a session of its own, with SIGINT at its default
/// (a background job of `sh` starts with SIGINT ignored; a Fly Machine's process does not),
/// nothing of the caller's environment, and writes its pid for the stand-in fly.
fn write_start_program(machine: &Path, project: &Path, pool: &str, url: &str) {
    let prefect = venv_dir().join("bin/prefect");
    let script = format!(
        r#"#!/bin/sh
cd '{project}' || exit 1
setsid env -i --default-signal=INT PATH=/usr/bin:/bin HOME='{machine}' \
  PREFECT_API_URL='{url}' PREFECT_HOME='{machine}/prefect-home' APP_DIR='{project}' \
  PREFECT_WORKER_QUERY_SECONDS=1 \
  '{prefect}' worker start --pool '{pool}' --type process >> '{machine}/worker.log' 2>&1 < /dev/null &
echo $! > '{machine}/worker.pid'
"#,
        project = project.display(),
        machine = machine.display(),
        prefect = prefect.display(),
    );
    let path = machine.join("start");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Background {
    child: Child,
    stderr: PathBuf,
    started: Instant,
}

impl Background {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the deploy to end (killing it after `bound`).
    fn finish(mut self, bound: Duration) -> Outcome {
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > bound {
                timed_out = true;
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Outcome {
            code: status.code(),
            stdout: std::fs::read_to_string(self.stderr.with_extension("stdout"))
                .unwrap_or_default(),
            stderr: self.stderr(),
            elapsed: self.started.elapsed(),
            timed_out,
        }
    }
}

fn flow_run(id: &str) -> Value {
    client()
        .get(&format!("/flow_runs/{id}"))
        .unwrap()
        .expect("the flow run")
}

fn state_of(id: &str) -> String {
    flow_run(id)["state"]["type"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// Waits until the run is in `state` (or has ended elsewhere); its state type.
fn wait_for_state(id: &str, want: &str, secs: u64) -> String {
    let mut last = String::new();
    wait_for(secs, || {
        last = state_of(id);
        last == want || ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"].contains(&last.as_str())
    });
    last
}

/// Milliseconds since the epoch of a Prefect timestamp.
fn epoch_ms(timestamp: &Value) -> i128 {
    let text = timestamp.as_str().unwrap_or_else(|| panic!("{timestamp}"));
    let ts: jiff::Timestamp = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    ts.as_millisecond() as i128
}

/// `at=` of a machine event line.
fn event_at(line: &str) -> i128 {
    line.rsplit("at=").next().unwrap().trim().parse().unwrap()
}

#[test]
fn a_deploy_waits_for_the_running_flow_and_the_new_worker_runs_what_was_scheduled() {
    let world = World::new("drain-rolls");
    world.start();
    let running = world.schedule_run(20);
    assert_eq!(wait_for_state(&running, "RUNNING", 90), "RUNNING");

    let deploy = world.spawn(&["deploy", "--image", IMAGE]);
    assert!(
        wait_for(30, || world.pool_paused()),
        "the pool was not paused:\n{}",
        deploy.stderr()
    );
    // Scheduled while the deploy runs: the old worker must not take it, the new one must.
    let scheduled = world.schedule_run(1);
    let run = deploy.finish(Duration::from_secs(240));
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_stderr_has("[4/6] drain workers");
    run.assert_stderr_has(&format!("work pool {} paused", world.pool));
    run.assert_stderr_has("waiting for 1 run(s) in progress");
    run.assert_stderr_has(flow_run(&running)["name"].as_str().unwrap());
    run.assert_stderr_has("drained: no run in progress");
    run.assert_stderr_has(&format!("work pool {} resumed", world.pool));
    run.assert_no_secrets(SENTINELS);

    // The running flow finished on the old worker before it was stopped: COMPLETED, not CRASHED.
    assert_eq!(state_of(&running), "COMPLETED", "{}", run.all());
    let events = world.machine_events();
    let stopped = events
        .iter()
        .find(|l| l.starts_with("stopped"))
        .unwrap_or_else(|| panic!("no machine was replaced: {events:?}\n{}", run.all()));
    // The worker stopped by itself on kill_signal, within kill_timeout.
    assert!(stopped.contains("graceful=true"), "{stopped}");
    let ended = epoch_ms(&flow_run(&running)["end_time"]);
    assert!(ended < event_at(stopped), "{ended} vs {stopped}");

    // The run scheduled during the deploy waited, then ran on the new worker.
    assert_eq!(wait_for_state(&scheduled, "COMPLETED", 120), "COMPLETED");
    let started = epoch_ms(&flow_run(&scheduled)["start_time"]);
    assert!(started > event_at(stopped), "{started} vs {stopped}");
    assert!(!world.pool_paused());
    assert_eq!(world.marker(), None);
}

#[test]
fn an_aborted_or_killed_deploy_leaves_no_pool_paused() {
    let world = World::new("drain-aborts");
    world.start();
    let running = world.schedule_run(20);
    assert_eq!(wait_for_state(&running, "RUNNING", 90), "RUNNING");
    let name = flow_run(&running)["name"].as_str().unwrap().to_string();

    // --dry-run lists the runs it would wait for, and writes nothing.
    let dry = world
        .sandbox
        .run(&["deploy", "--dry-run", "--image", IMAGE]);
    assert_eq!(dry.code, Some(0), "{}", dry.all());
    dry.assert_stderr_has(&format!("would pause {}", world.pool));
    dry.assert_stderr_has("1 run(s) in progress:");
    dry.assert_stderr_has(&name);
    assert!(!world.pool_paused());

    // A bound too short, abort: nothing deployed, the pool resumed, the run untouched.
    let abort = world.sandbox.run(&[
        "deploy",
        "--image",
        IMAGE,
        "--drain-timeout",
        "1s",
        "--on-drain-timeout",
        "abort",
    ]);
    assert_eq!(abort.code, Some(1), "{}", abort.all());
    abort.assert_stderr_has("deploy stopped at stage 4/6 (drain workers)");
    abort.assert_stderr_has("1 run(s) still in progress after 1.0s");
    abort.assert_stderr_has(&name);
    assert!(
        !world.sandbox.call_names().contains(&"deploy".to_string()),
        "{:?}",
        world.sandbox.call_names()
    );
    assert!(!world.pool_paused());
    assert_eq!(world.marker(), None);
    assert_eq!(world.machine_events(), Vec::<String>::new());
    assert_eq!(state_of(&running), "RUNNING");

    // Ctrl-C mid-drain: the interrupt handler stops the wait and resumes the pool.
    let interrupted = world.spawn(&["deploy", "--image", IMAGE]);
    assert!(
        wait_for(30, || world.pool_paused()),
        "{}",
        interrupted.stderr()
    );
    let pid = interrupted.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-s", "INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let run = interrupted.finish(Duration::from_secs(60));
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("interrupted while draining");
    run.assert_stderr_has(&format!("work pool {} resumed", world.pool));
    assert!(!world.pool_paused());
    assert_eq!(world.marker(), None);

    // Killed mid-drain: the pool stays paused, with the marker that says whose pause it is.
    let mut killed = world.spawn(&["deploy", "--image", IMAGE]);
    assert!(wait_for(30, || world.pool_paused()), "{}", killed.stderr());
    killed.child.kill().unwrap(); // SIGKILL: no handler, no Drop
    killed.child.wait().unwrap();
    assert!(world.pool_paused());
    let marker = world.marker().expect("the pause marker");
    assert_eq!(marker["value"]["pool"], json!(world.pool), "{marker}");

    // check-secrets reports it...
    let check = world.sandbox.run(&["check-secrets", "--local-only"]);
    check.assert_stdout_has(&format!("work pool {} left paused", world.pool));
    check.assert_stdout_has("The next deploy resumes it");

    // ...and the next deploy reports it, takes it over, drains and resumes it.
    let next = world.sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(next.code, Some(0), "{}", next.all());
    next.assert_stderr_has(&format!(
        "work pool {} was left paused (paused by a deploy of {}",
        world.pool, world.sandbox.app
    ));
    next.assert_stderr_has(&format!("work pool {} resumed", world.pool));
    assert!(!world.pool_paused());
    assert_eq!(world.marker(), None);
    assert_eq!(state_of(&running), "COMPLETED", "{}", next.all());
}

#[test]
fn a_failed_release_command_still_resumes_the_pool() {
    let world = World::new("drain-bad-release");
    let run = world.sandbox.run(&["register-flows"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let fly_toml = world.sandbox.project.join("fly.toml");
    let text = std::fs::read_to_string(&fly_toml).unwrap();
    std::fs::write(
        &fly_toml,
        text.replace(
            "\"xtask register-flows\"",
            "\"xtask register-flows --no-such-flag\"",
        ),
    )
    .unwrap();
    let run = world.sandbox.run(&["deploy", "--image", IMAGE]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("drained: no run in progress");
    run.assert_stderr_has("deploy stopped at stage 5/6 (fly deploy)");
    run.assert_stderr_has("the release command (register-flows) failed");
    run.assert_stderr_has(&format!("work pool {} resumed", world.pool));
    assert!(!world.pool_paused());
    assert_eq!(world.marker(), None);
}

/// The kill_signal in fly.toml relies on the worker's documented handling, in the Prefect this
/// project pins: the first SIGTERM becomes a SIGINT (graceful), a second one SIGKILL.
#[test]
fn the_pinned_prefect_worker_stops_gracefully_on_sigterm() {
    let source = std::fs::read_dir(venv_dir().join("lib"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            e.path()
                .join("site-packages/prefect/utilities/processutils/__init__.py")
        })
        .find(|p| p.is_file())
        .expect("prefect's processutils in the test venv");
    let text = std::fs::read_to_string(&source).unwrap();
    assert!(
        text.contains("setup_handler(signal.SIGTERM, signal.SIGINT, signal.SIGKILL)"),
        "{} no longer turns SIGTERM into a graceful stop: revisit fly.toml kill_signal",
        source.display()
    );
    let fly_toml = std::fs::read_to_string(repo_root().join("fly.toml")).unwrap();
    assert!(fly_toml.contains("kill_signal = \"SIGTERM\""), "{fly_toml}");
}
