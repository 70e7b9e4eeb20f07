//! Deploy's verify stage beyond the drift check: work will run. Every Machine of the worker
//! process groups runs the image this deploy shipped, every work pool the yaml uses has a worker
//! online, and each `--smoke` deployment runs to Completed. Each wait is bounded and a failure
//! names what is wrong. The decisions are pure functions; the waits read Fly and Prefect.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::fly::machines::{list_machines, machines_list_cmd, same_image, Machine};
use crate::fly::{split_command, FlyToml};
use crate::prefect::api::{encode_segment, ApiConfig, PrefectClient};
use crate::sys::env_vars::EnvVars;

/// How long verify waits for the Machines and the workers unless told otherwise.
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one smoke run may take from creation to a final state.
pub const SMOKE_TIMEOUT: Duration = Duration::from_secs(600);

/// How often the waits read again.
const POLL: Duration = Duration::from_secs(2);

/// A worker whose record says nothing about its interval heartbeats this often (Prefect's
/// default `PREFECT_WORKER_HEARTBEAT_SECONDS`).
const DEFAULT_HEARTBEAT: i64 = 30;

/// What verify waits for beyond the drift check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOptions {
    /// Bound of the waits for the Machines and the workers (together).
    pub timeout: Duration,
    /// Deployments to run now, each to Completed.
    pub smoke: Vec<SmokeSpec>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            timeout: DEFAULT_VERIFY_TIMEOUT,
            smoke: Vec::new(),
        }
    }
}

/// Where verify looks.
pub struct Target<'a> {
    pub fly: &'a Path,
    pub app: &'a str,
    pub toml: &'a FlyToml,
    /// The image the release shipped.
    pub image: &'a str,
    /// The work pools the yaml uses.
    pub pools: &'a [String],
    /// The environment whose Prefect settings reach the server.
    pub env: &'a EnvVars,
    pub verbose: bool,
}

/// The commands and waits `--dry-run` shows instead of running them.
pub fn describe(target: &Target, options: &VerifyOptions) -> Vec<String> {
    let mut lines = Vec::new();
    let groups = worker_groups(target.toml);
    if !groups.is_empty() {
        lines.push(format!(
            "$ {}   (until the Machines of {} run {}, at most {} s)",
            machines_list_cmd(target.fly, target.app),
            groups.join(", "),
            target.image,
            options.timeout.as_secs()
        ));
    }
    for pool in target.pools {
        lines.push(format!(
            "wait for a worker online in work pool {pool} (at most {} s)",
            options.timeout.as_secs()
        ));
    }
    for spec in &options.smoke {
        lines.push(format!("smoke run of {}", spec.label()));
    }
    lines
}

/// After `fly deploy` (or a rollback): the worker Machines run `target.image`, each pool has a
/// worker online (both within `options.timeout`), and each smoke run completes.
pub fn work_will_run(target: &Target, options: &VerifyOptions) -> Result<()> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let groups = worker_groups(target.toml);
    if !groups.is_empty() {
        let machines = wait_for_machines(target.fly, target.app, &groups, target.image, deadline)?;
        let count = machines
            .iter()
            .filter(|m| groups.contains(&m.group))
            .count();
        eprintln!(
            "    {count} worker Machine(s) ({}) run {}",
            groups.join(", "),
            target.image
        );
    }
    if target.pools.is_empty() && options.smoke.is_empty() {
        return Ok(());
    }
    let client = PrefectClient::new(ApiConfig::from_vars(target.env)?)?;
    client.set_verbose(target.verbose);
    wait_for_workers(&client, target.pools, started, deadline)?;
    for spec in &options.smoke {
        eprintln!("    smoke run of {}", spec.label());
        smoke(&client, spec)?;
    }
    Ok(())
}

/// `--smoke DEPLOYMENT[=PARAMS_JSON]`: a deployment (`name` or `flow/name`) and the parameters
/// of its run (the deployment's own when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeSpec {
    pub flow: Option<String>,
    pub name: String,
    pub parameters: Option<Map<String, Value>>,
}

impl SmokeSpec {
    /// Parses `name`, `flow/name`, `name={"k": 1}`.
    pub fn parse(text: &str) -> Result<SmokeSpec, String> {
        let (target, params) = match text.split_once('=') {
            Some((target, params)) => (target, Some(params)),
            None => (text, None),
        };
        let (flow, name) = match target.split_once('/') {
            Some((flow, name)) => (Some(flow.to_string()), name),
            None => (None, target),
        };
        if name.is_empty() || flow.as_deref() == Some("") || name.contains('/') {
            return Err(format!(
                "--smoke {text:?}: expected DEPLOYMENT or FLOW/DEPLOYMENT, optionally =PARAMS_JSON"
            ));
        }
        let parameters = match params {
            None => None,
            Some(json) => match serde_json::from_str::<Value>(json) {
                Ok(Value::Object(map)) => Some(map),
                Ok(_) => {
                    return Err(format!(
                        "--smoke {text:?}: the parameters must be a JSON object"
                    ))
                }
                Err(e) => return Err(format!("--smoke {text:?}: parameters are not JSON: {e}")),
            },
        };
        Ok(SmokeSpec {
            flow,
            name: name.to_string(),
            parameters,
        })
    }

    fn label(&self) -> String {
        match &self.flow {
            Some(flow) => format!("{flow}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The `[processes]` groups that run a Prefect worker (`… worker start …`), in name order.
pub fn worker_groups(toml: &FlyToml) -> Vec<String> {
    toml.processes
        .iter()
        .filter(|(_, command)| {
            split_command(command)
                .is_ok_and(|argv| argv.windows(2).any(|w| w[0] == "worker" && w[1] == "start"))
        })
        .map(|(group, _)| group.clone())
        .collect()
}

/// What keeps the worker groups from running `image`: a group without a started Machine, and
/// every Machine of the groups on another image or not started. Empty: all good.
pub fn machine_problems(machines: &[Machine], groups: &[String], image: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for group in groups {
        let of_group: Vec<&Machine> = machines.iter().filter(|m| &m.group == group).collect();
        if of_group.is_empty() {
            problems.push(format!("process group `{group}` has no Machine"));
        }
        for m in of_group {
            if !same_image(&m.image, image) {
                problems.push(format!(
                    "Machine {} (group `{group}`) still runs {} instead of {image}",
                    m.id,
                    if m.image.is_empty() {
                        "an unknown image"
                    } else {
                        &m.image
                    }
                ));
            } else if m.state != "started" {
                problems.push(format!(
                    "Machine {} (group `{group}`) runs the new image but is {}",
                    m.id, m.state
                ));
            }
        }
    }
    problems
}

/// The names of the workers (a `/work_pools/{name}/workers/filter` answer) that are online at
/// `now`: status ONLINE and a heartbeat within three of their intervals (Prefect's own
/// "inactive" multiple).
pub fn online_workers(workers: &[Value], now: jiff::Timestamp) -> Vec<String> {
    workers
        .iter()
        .filter(|w| w.get("status").and_then(Value::as_str) == Some("ONLINE"))
        .filter(|w| {
            let interval = w
                .get("heartbeat_interval_seconds")
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_HEARTBEAT)
                .max(1);
            w.get("last_heartbeat_time")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|at| now.duration_since(at).as_secs() <= 3 * interval)
        })
        .filter_map(|w| w.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Reads the Machines until every worker group runs `image`, or fails at `deadline` naming
/// what is still wrong.
pub fn wait_for_machines(
    fly: &Path,
    app: &str,
    groups: &[String],
    image: &str,
    deadline: Instant,
) -> Result<Vec<Machine>> {
    loop {
        let machines = list_machines(fly, app)?;
        let problems = machine_problems(&machines, groups, image);
        if problems.is_empty() {
            return Ok(machines);
        }
        if Instant::now() >= deadline {
            bail!(
                "the worker Machines do not run the image this deploy shipped: {}; see `fly machines list --app {app}`",
                problems.join("; ")
            );
        }
        std::thread::sleep(POLL);
    }
}

/// One read of a pool's workers (most recent heartbeat first).
pub fn read_workers(client: &PrefectClient, pool: &str) -> Result<Vec<Value>> {
    let answer = client
        .post(
            &format!("/work_pools/{}/workers/filter", encode_segment(pool)),
            &json!({"limit": 200}),
        )
        .with_context(|| format!("cannot read the workers of work pool `{pool}`"))?;
    match answer {
        Value::Array(workers) => Ok(workers),
        other => bail!("the workers of work pool `{pool}`: expected a list, got {other}"),
    }
}

/// Waits until every pool has a worker online; fails at `deadline` naming the pools without.
pub fn wait_for_workers(
    client: &PrefectClient,
    pools: &[String],
    started: Instant,
    deadline: Instant,
) -> Result<()> {
    let mut waiting: Vec<String> = pools.to_vec();
    loop {
        let mut still = Vec::new();
        for pool in &waiting {
            let online = online_workers(&read_workers(client, pool)?, jiff::Timestamp::now());
            if online.is_empty() {
                still.push(pool.clone());
            } else {
                eprintln!(
                    "    work pool {pool}: worker online ({})",
                    online.join(", ")
                );
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = waiting.iter().map(|p| format!("`{p}`")).collect();
            bail!(
                "work pool {} has no worker online after {} s: flow runs there would wait forever; \
                 check the worker Machines' logs (`fly logs --app APP`)",
                names.join(", "),
                started.elapsed().as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Runs one smoke deployment and waits for its final state (see `local::deploy::smoke_run`).
pub fn smoke(client: &PrefectClient, spec: &SmokeSpec) -> Result<()> {
    let mut filter = json!({"deployments": {"name": {"any_": [spec.name]}}});
    if let Some(flow) = &spec.flow {
        filter["flows"] = json!({"name": {"any_": [flow]}});
    }
    let found = client
        .read_deployments(filter)
        .with_context(|| format!("--smoke {}: cannot read the deployment", spec.label()))?;
    let deployment = match found.as_slice() {
        [one] => one,
        [] => bail!("--smoke {}: no such deployment on the server", spec.label()),
        _ => bail!(
            "--smoke {}: {} deployments have this name; write it as FLOW/DEPLOYMENT",
            spec.label(),
            found.len()
        ),
    };
    let parameters = spec.parameters.clone().map_or(json!({}), Value::Object);
    let run = crate::local::deploy::smoke_run(client, deployment, parameters, None, SMOKE_TIMEOUT)?;
    eprintln!("    smoke run {} ended {}", run.name, run.state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_specs_name_a_deployment_and_maybe_parameters() {
        assert_eq!(
            SmokeSpec::parse("nightly").unwrap(),
            SmokeSpec {
                flow: None,
                name: "nightly".into(),
                parameters: None
            }
        );
        let spec = SmokeSpec::parse(r#"ingest/nightly={"video_id": "a=b", "n": 2}"#).unwrap();
        assert_eq!(spec.flow.as_deref(), Some("ingest"));
        assert_eq!(spec.name, "nightly");
        assert_eq!(
            Value::Object(spec.parameters.unwrap()),
            json!({"video_id": "a=b", "n": 2})
        );
        for bad in ["", "/x", "f/", "a/b/c", "x=[1]", "x={nope"] {
            assert!(SmokeSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn worker_groups_are_the_processes_that_start_a_prefect_worker() {
        let toml = crate::fly::parse_fly_toml(
            "app = \"a\"\n[processes]\n  app = \"python -m app.api\"\n  worker = \"prefect worker start --pool p\"\n  batch = \"prefect worker start -p q\"\n",
            "fly.toml",
        )
        .unwrap();
        assert_eq!(worker_groups(&toml), vec!["batch", "worker"]);
    }

    fn machine(id: &str, group: &str, state: &str, image: &str) -> Machine {
        Machine {
            id: id.into(),
            group: group.into(),
            state: state.into(),
            image: image.into(),
            release_version: None,
        }
    }

    #[test]
    fn machines_left_on_the_old_image_are_named() {
        let groups = vec!["worker".to_string()];
        let new = "r/app:new";
        assert!(machine_problems(
            &[
                machine("m1", "worker", "started", "r/app:new@sha256:1"),
                machine("m2", "app", "started", "r/app:old"),
            ],
            &groups,
            new
        )
        .is_empty());
        assert_eq!(
            machine_problems(
                &[
                    machine("m1", "worker", "started", "r/app:new"),
                    machine("m3", "worker", "started", "r/app:old"),
                    machine("m4", "worker", "stopped", "r/app:new"),
                ],
                &groups,
                new
            ),
            vec![
                "Machine m3 (group `worker`) still runs r/app:old instead of r/app:new",
                "Machine m4 (group `worker`) runs the new image but is stopped",
            ]
        );
        assert_eq!(
            machine_problems(&[], &groups, new),
            vec!["process group `worker` has no Machine"]
        );
    }

    #[test]
    fn a_worker_is_online_with_a_recent_heartbeat() {
        let now: jiff::Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let workers = [
            json!({"name": "fresh", "status": "ONLINE", "last_heartbeat_time": "2026-01-01T00:09:30Z", "heartbeat_interval_seconds": 30}),
            json!({"name": "stale", "status": "ONLINE", "last_heartbeat_time": "2026-01-01T00:08:00Z", "heartbeat_interval_seconds": 30}),
            json!({"name": "offline", "status": "OFFLINE", "last_heartbeat_time": "2026-01-01T00:09:59Z"}),
            json!({"name": "default-interval", "status": "ONLINE", "last_heartbeat_time": "2026-01-01T00:08:31Z", "heartbeat_interval_seconds": null}),
            json!({"name": "no-heartbeat", "status": "ONLINE"}),
        ];
        assert_eq!(
            online_workers(&workers, now),
            vec!["fresh", "default-interval"]
        );
    }
}
