//! Work pools (with queues), global concurrency limits and variables declared in prefect.yaml,
//! end to end: the real binary against a real Prefect server (through the fault proxy where
//! writes are counted or made to fail). State is asserted by reading the server back.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::support::bin::{describe as text, xtask};
use crate::support::fault_proxy::{Fault, FaultProxy, Rules};
use crate::support::sync::client_with_retries;
use crate::support::{scratch_dir, server_url, unique};
use xtask::prefect::api::PrefectClient;

/// A throwaway project whose pool, limit, variables and flow carry unique names.
struct Project {
    dir: PathBuf,
    name: String,
    flow: String,
    pool: String,
    limit: String,
    variable: String,
}

impl Project {
    fn new(tag: &str) -> Project {
        let dir = scratch_dir(&unique(&format!("res-{tag}")));
        let flow = unique(&format!("res-flow-{tag}"));
        std::fs::create_dir_all(dir.join("flows")).unwrap();
        std::fs::write(
            dir.join("flows/sample.py"),
            format!(
                "from prefect import flow\n\n\n@flow(name=\"{flow}\")\ndef sample(label: str = \"x\"):\n    \"\"\"A sample flow.\"\"\"\n    return label\n"
            ),
        )
        .unwrap();
        Project {
            dir,
            name: unique(&format!("res-proj-{tag}")),
            flow,
            pool: unique(&format!("res-pool-{tag}")),
            limit: unique(&format!("res-limit-{tag}")),
            variable: unique(&format!("res_var_{tag}")).replace('-', "_"),
        }
    }

    /// prefect.yaml with the given sections (each a complete top-level block) and one deployment
    /// `d` on the project's pool and `queue`, under the global limit when `global` is set.
    fn write(&self, sections: &str, queue: &str, global: bool) {
        let limit = if global {
            format!(
                "    concurrency_limit: {{global: {}, collision_strategy: ENQUEUE}}\n",
                self.limit
            )
        } else {
            String::new()
        };
        let yaml = format!(
            "name: {}\nprefect-version: 3.9.1\npull:\n  - prefect.deployments.steps.set_working_directory:\n      directory: /opt/test\n{sections}\ndeployments:\n  - name: d\n    entrypoint: flows/sample.py:sample\n    parameters:\n      label: \"{{{{ prefect.variables.{} }}}}\"\n{limit}    work_pool:\n      name: {}\n      work_queue_name: {queue}\n",
            self.name, self.variable, self.pool
        );
        std::fs::write(self.dir.join("prefect.yaml"), yaml).unwrap();
    }

    /// The sections of the first version: a pool with two queues and an env default, a limit
    /// of 1, the variable.
    fn sections_v1(&self) -> String {
        format!(
            "work_pools:\n  - name: {pool}\n    type: process\n    description: first\n    concurrency_limit: 2\n    job_variables:\n      env: {{A: \"1\"}}\n    queues:\n      - {{name: default, priority: 1}}\n      - {{name: q1, priority: 2, concurrency_limit: 3}}\nconcurrency_limits:\n  - {{name: {limit}, limit: 1, slot_decay_per_second: 0}}\nvariables:\n  - {{name: {var}, value: v1, tags: [res]}}\n",
            pool = self.pool,
            limit = self.limit,
            var = self.variable
        )
    }

    /// The second version: other pool limit and env default, queue q1 removed and q2 added,
    /// the limit at 2, another value, one more variable.
    fn sections_v2(&self) -> String {
        format!(
            "work_pools:\n  - name: {pool}\n    type: process\n    description: second\n    concurrency_limit: 5\n    job_variables:\n      env: {{A: \"2\"}}\n    queues:\n      - {{name: default, priority: 1}}\n      - {{name: q2, priority: 2}}\nconcurrency_limits:\n  - {{name: {limit}, limit: 2, slot_decay_per_second: 0.5}}\nvariables:\n  - {{name: {var}, value: v2, tags: [res]}}\n  - {{name: {var}_extra, value: {{nested: [1, 2]}}}}\n",
            pool = self.pool,
            limit = self.limit,
            var = self.variable
        )
    }

    fn command(&self, api_url: &str, args: &[&str]) -> Command {
        let mut cmd = xtask();
        cmd.arg("register-flows")
            .args(args)
            .current_dir(&self.dir)
            .env("PREFECT_API_URL", api_url)
            .env("PREFECT_HOME", self.dir.join(".prefect-home"));
        cmd
    }

    fn run(&self, api_url: &str, args: &[&str]) -> Output {
        self.command(api_url, args).output().expect("run xtask")
    }

    /// Everything this project's run may touch, as the server reports it (ids and timestamps
    /// left out where a rollback legitimately changes them).
    fn state(&self, client: &PrefectClient) -> Value {
        let pool = client
            .get(&format!("/work_pools/{}", self.pool))
            .unwrap()
            .map(|p| {
                json!({
                    "type": p["type"], "description": p["description"],
                    "concurrency_limit": p["concurrency_limit"], "is_paused": p["is_paused"],
                    "base_job_template": p["base_job_template"],
                })
            });
        let mut queues: Vec<Value> = if pool.is_some() {
            client
                .read_listing(
                    &format!("/work_pools/{}/queues/filter", self.pool),
                    json!({}),
                )
                .unwrap()
                .iter()
                .map(|q| {
                    json!({"name": q["name"], "priority": q["priority"],
                           "concurrency_limit": q["concurrency_limit"], "is_paused": q["is_paused"],
                           "description": q["description"]})
                })
                .collect()
        } else {
            Vec::new()
        };
        queues.sort_by_key(|q| q["name"].to_string());
        let limit = client
            .get(&format!("/v2/concurrency_limits/{}", self.limit))
            .unwrap()
            .map(|l| {
                json!({"limit": l["limit"], "active": l["active"],
                       "slot_decay_per_second": l["slot_decay_per_second"]})
            });
        let variable = |name: &str| {
            client
                .read_variable(name)
                .unwrap()
                .map(|v| json!({"value": v["value"], "tags": v["tags"]}))
        };
        let deployment = client
            .get(&format!("/deployments/name/{}/d", self.flow))
            .unwrap()
            .map(|d| {
                json!({
                    "parameters": d["parameters"], "work_queue_name": d["work_queue_name"],
                    "limit": d["global_concurrency_limit"].get("name"),
                })
            });
        json!({
            "pool": pool,
            "queues": queues,
            "limit": limit,
            "variable": variable(&self.variable),
            "extra": variable(&format!("{}_extra", self.variable)),
            "ledger": self.ledger(client),
            "deployment": deployment,
        })
    }

    /// The ownership ledger's value (None before the project created anything).
    fn ledger(&self, client: &PrefectClient) -> Option<Value> {
        let ledgers = client
            .read_listing(
                "/variables/filter",
                json!({"variables": {"tags": {"all_": ["xtask-ownership"]}}}),
            )
            .unwrap();
        ledgers
            .into_iter()
            .map(|v| v["value"].clone())
            .find(|v| v["project"] == json!(self.name))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Equal states, or a failure naming the parts that differ.
fn assert_same(now: &Value, expected: &Value, context: &str) {
    if now == expected {
        return;
    }
    let differing: Vec<String> = expected
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| now.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("{k}: expected {v}\n      found {}", now[k.as_str()]))
        .collect();
    panic!("{context}\n  {}", differing.join("\n  "));
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn declared_resources_are_created_updated_left_unchanged_and_checked() {
    let p = Project::new("life");
    let client = client_with_retries(&server_url(), 3);
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    p.write(&p.sections_v1(), "q1", true);

    // Create on a server where none of them exists: the pool need not exist beforehand, the
    // templated parameter takes the declared variable's value.
    let out = p.run(&proxy.api_url, &["--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let state = p.state(&client);
    let pool = &state["pool"];
    assert_eq!(pool["type"], json!("process"));
    assert_eq!(pool["concurrency_limit"], json!(2));
    assert_eq!(pool["description"], json!("first"));
    let env = &pool["base_job_template"]["variables"]["properties"]["env"];
    assert_eq!(env["default"], json!({"A": "1"}));
    assert_eq!(
        state["queues"],
        json!([
            {"name": "default", "priority": 1, "concurrency_limit": null, "is_paused": false, "description": "The work pool's default queue."},
            {"name": "q1", "priority": 2, "concurrency_limit": 3, "is_paused": false, "description": ""},
        ])
    );
    assert_eq!(state["limit"]["limit"], json!(1));
    assert_eq!(state["variable"], json!({"value": "v1", "tags": ["res"]}));
    assert_eq!(
        state["deployment"],
        json!({"parameters": {"label": "v1"}, "work_queue_name": "q1", "limit": p.limit})
    );
    let ledger = state["ledger"].clone();
    assert_eq!(ledger["work_pools"], json!([p.pool]));
    assert_eq!(ledger["concurrency_limits"], json!([p.limit]));
    assert_eq!(ledger["variables"], json!([p.variable]));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let created: Vec<&str> = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == json!("create"))
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        created,
        vec![
            "work_pool",
            "queue",
            "queue",
            "concurrency_limit",
            "variable"
        ]
    );

    // Unchanged: zero writes, --check in sync.
    proxy.reset_counts();
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(proxy.writes(), 0, "{:#?}", proxy.write_lines());
    assert!(
        stderr(&out).contains(&format!("unchanged work pool '{}'", p.pool)),
        "{}",
        text(&out)
    );
    assert_eq!(code(&p.run(&proxy.api_url, &["--check"])), 0);

    // Drift made through the API: --check exits 2 and names it.
    client
        .patch(
            &format!("/work_pools/{}", p.pool),
            &json!({"concurrency_limit": 9}),
        )
        .unwrap();
    let out = p.run(&server_url(), &["--check"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "~ update    work pool '{}'  (prefect.yaml:7)\n    concurrency_limit: 9 → 2\n",
            p.pool
        )),
        "{}",
        text(&out)
    );

    // Update: pool fields and job variables (diffed leaf by leaf), a queue added and one removed,
    // the limit, a variable's value, a new variable; the deployment moves to the new queue.
    p.write(&p.sections_v2(), "q2", true);
    let out = p.run(&server_url(), &["--dry-run"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let plan = stderr(&out);
    for line in [
        "    base_job_template.variables.properties.env.default.A: \"1\" → \"2\"\n".to_string(),
        format!("+ create    queue '{}/q2'", p.pool),
        format!("- delete    queue '{}/q1'", p.pool),
        format!("~ update    concurrency limit '{}'", p.limit),
        "    value: \"v1\" → \"v2\"\n".to_string(),
        "    parameters.label: \"v1\" → \"v2\"\n".to_string(),
    ] {
        assert!(plan.contains(&line), "missing {line:?} in\n{plan}");
    }
    let out = p.run(&server_url(), &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let state = p.state(&client);
    assert_eq!(state["pool"]["concurrency_limit"], json!(5));
    assert_eq!(state["pool"]["description"], json!("second"));
    assert_eq!(
        state["pool"]["base_job_template"]["variables"]["properties"]["env"]["default"],
        json!({"A": "2"})
    );
    let queue_names: Vec<&Value> = state["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| &q["name"])
        .collect();
    assert_eq!(queue_names, vec![&json!("default"), &json!("q2")]);
    assert_eq!(
        state["limit"],
        json!({"limit": 2, "active": true, "slot_decay_per_second": 0.5})
    );
    assert_eq!(state["variable"]["value"], json!("v2"));
    assert_eq!(state["extra"]["value"], json!({"nested": [1, 2]}));
    assert_eq!(
        state["deployment"],
        json!({"parameters": {"label": "v2"}, "work_queue_name": "q2", "limit": p.limit})
    );
    assert_eq!(
        state["ledger"]["variables"],
        json!([p.variable.clone(), format!("{}_extra", p.variable)])
    );
    assert_eq!(code(&p.run(&server_url(), &["--check"])), 0);
}

#[test]
fn a_failed_apply_rolls_back_pools_limits_and_variables_exactly() {
    let p = Project::new("rollback");
    let client = client_with_retries(&server_url(), 5);
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let reset = |p: &Project| {
        p.write(&p.sections_v1(), "q1", true);
        let out = p.run(&server_url(), &["--prune"]);
        assert_eq!(code(&out), 0, "{}", text(&out));
    };
    reset(&p);
    let before = p.state(&client);
    // How many writes the change takes, counted once without faults.
    p.write(&p.sections_v2(), "q2", true);
    proxy.reset_counts();
    let out = p.run(&proxy.api_url, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let total = proxy.writes();
    assert!(
        total >= 8,
        "expected several writes, got {total}: {:#?}",
        proxy.write_lines()
    );
    for n in 1..=total {
        reset(&p);
        assert_same(
            &p.state(&client),
            &before,
            &format!("reset before write {n}"),
        );
        p.write(&p.sections_v2(), "q2", true);
        proxy.set_rules(Rules {
            nth_write: Some((n, Fault::Status(500))),
            ..Rules::default()
        });
        let out = p.run(&proxy.api_url, &[]);
        assert_eq!(code(&out), 1, "write {n} failed, yet: {}", text(&out));
        assert!(
            stderr(&out).contains("every write was rolled back"),
            "write {n}: {}",
            text(&out)
        );
        assert_same(
            &p.state(&client),
            &before,
            &format!(
                "write {n}: the state differs after the rollback; writes {:#?}\n{}",
                proxy.write_lines(),
                text(&out)
            ),
        );
    }
}

#[test]
fn prune_deletes_only_this_projects_unused_resources() {
    let a = Project::new("prune-a");
    let b = Project::new("prune-b");
    let client = client_with_retries(&server_url(), 3);
    // A declares its pool, a second pool, its limit and variable; B uses A's second pool
    // (declaring it too, so its ledger does not own it) and declares a variable of its own.
    let spare = unique("res-spare");
    let spare_pool = format!("  - {{name: {spare}, type: process}}\n");
    let sections_a = a.sections_v1().replacen(
        "concurrency_limits:",
        &format!("{spare_pool}concurrency_limits:"),
        1,
    );
    a.write(&sections_a, "q1", true);
    let out = a.run(&server_url(), &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let b_yaml = format!(
        "work_pools:\n{spare_pool}variables:\n  - {{name: {}, value: b}}\n",
        b.variable
    );
    let b_write = |b: &Project| {
        let yaml = format!(
            "name: {}\n{b_yaml}deployments:\n  - name: d\n    entrypoint: flows/sample.py:sample\n    work_pool:\n      name: {spare}\n",
            b.name
        );
        std::fs::write(b.dir.join("prefect.yaml"), yaml).unwrap();
    };
    b_write(&b);
    let out = b.run(&server_url(), &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    // A hand-made variable that looks like A's.
    let hand = format!("{}_hand", a.variable);
    client
        .post("/variables/", &json!({"name": hand, "value": 1}))
        .unwrap();

    // A drops everything but its pool: its variable goes, its limit goes (its deployment leaves
    // it in the same run), the spare pool stays (B's deployment uses it), B's and the hand-made
    // variables stay.
    let only_pool = a
        .sections_v1()
        .split("concurrency_limits:")
        .next()
        .unwrap()
        .to_string();
    a.write(&only_pool, "q1", false);
    std::fs::write(
        a.dir.join("prefect.yaml"),
        std::fs::read_to_string(a.dir.join("prefect.yaml"))
            .unwrap()
            .replace(
                &format!("{{{{ prefect.variables.{} }}}}", a.variable),
                "fixed",
            ),
    )
    .unwrap();
    let out = a.run(&server_url(), &["--prune"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("deleted variable '{}'", a.variable)),
        "{err}"
    );
    assert!(
        err.contains(&format!("deleted concurrency limit '{}'", a.limit)),
        "{err}"
    );
    assert!(
        err.contains(&format!("warning: work pool '{spare}' is no longer in the yaml but is not deleted: deployments still use it ({}/d)", b.flow)),
        "{err}"
    );
    assert!(client.read_variable(&a.variable).unwrap().is_none());
    assert!(client
        .get(&format!("/v2/concurrency_limits/{}", a.limit))
        .unwrap()
        .is_none());
    assert!(client.read_work_pool(&spare).unwrap().is_some());
    assert!(client.read_work_pool(&a.pool).unwrap().is_some());
    assert!(client.read_variable(&b.variable).unwrap().is_some());
    assert!(client.read_variable(&hand).unwrap().is_some());
    let ledger = a.ledger(&client).unwrap();
    assert_eq!(ledger["variables"], json!([]));
    assert_eq!(ledger["concurrency_limits"], json!([]));
    assert_eq!(ledger["work_pools"], json!([a.pool, spare]));
    // B's ledger does not own the spare pool A created: B's prune never deletes it either.
    let out = b.run(&server_url(), &["--prune"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(client.read_work_pool(&spare).unwrap().is_some());
}

#[test]
fn a_deployment_under_a_global_limit_of_one_makes_the_second_run_wait() {
    let p = Project::new("limit");
    let client = client_with_retries(&server_url(), 3);
    p.write(&p.sections_v1(), "q1", true);
    let out = p.run(&server_url(), &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let deployment = client
        .get(&format!("/deployments/name/{}/d", p.flow))
        .unwrap()
        .unwrap();
    let id = deployment["id"].as_str().unwrap();
    assert_eq!(
        deployment["global_concurrency_limit"]["name"],
        json!(p.limit)
    );
    assert_eq!(deployment["global_concurrency_limit"]["limit"], json!(1));
    // Two runs of the deployment; each asks the server to start (the transition a worker
    // proposes). The server's orchestration takes a slot of the deployment's limit for the
    // first and makes the second wait for one.
    let runs: Vec<String> = (0..2)
        .map(|_| {
            let run = client
                .post(
                    &format!("/deployments/{id}/create_flow_run"),
                    &json!({"parameters": {}}),
                )
                .unwrap();
            run["id"].as_str().unwrap().to_string()
        })
        .collect();
    let propose = |run: &str| -> Value {
        client
            .post(
                &format!("/flow_runs/{run}/set_state"),
                &json!({"state": {"type": "PENDING"}}),
            )
            .unwrap()
    };
    let first = propose(&runs[0]);
    assert_eq!(first["status"], json!("ACCEPT"), "{first}");
    let second = propose(&runs[1]);
    assert_ne!(second["status"], json!("ACCEPT"), "{second}");
    let state = client
        .get(&format!("/flow_runs/{}", runs[1]))
        .unwrap()
        .unwrap();
    assert_eq!(state["state"]["type"], json!("SCHEDULED"), "{state}");
    assert_eq!(
        state["state"]["name"],
        json!("AwaitingConcurrencySlot"),
        "{state}"
    );
    let limit = client
        .get(&format!("/v2/concurrency_limits/{}", p.limit))
        .unwrap()
        .unwrap();
    assert_eq!(limit["active_slots"], json!(1));
    // The first run ends: its slot is released and the second may start.
    for ty in ["RUNNING", "COMPLETED"] {
        let done = client
            .post(
                &format!("/flow_runs/{}/set_state", runs[0]),
                &json!({"state": {"type": ty}}),
            )
            .unwrap();
        assert_eq!(done["status"], json!("ACCEPT"), "{done}");
    }
    let again = propose(&runs[1]);
    assert_eq!(again["status"], json!("ACCEPT"), "{again}");
    // The shared limit survives deleting the deployment (its own limit would not).
    p.write(&p.sections_v1(), "q1", true);
    std::fs::write(
        p.dir.join("prefect.yaml"),
        std::fs::read_to_string(p.dir.join("prefect.yaml"))
            .unwrap()
            .replace("  - name: d\n", "  - name: e\n"),
    )
    .unwrap();
    let out = p.run(&server_url(), &["--prune"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(client
        .get(&format!("/deployments/name/{}/d", p.flow))
        .unwrap()
        .is_none());
    assert!(client
        .get(&format!("/v2/concurrency_limits/{}", p.limit))
        .unwrap()
        .is_some());
}

/// The embedded default templates are the ones the installed Prefect takes offline, and a pool's
/// `job_variables` reach a flow run's job configuration the way Prefect's worker builds it.
#[test]
fn base_job_templates_are_prefects_and_pool_job_variables_reach_the_worker() {
    let python = crate::support::venv_dir().join("bin/python");
    let script = r#"
import asyncio, json, pathlib, sys, prefect
from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type
from prefect.workers.process import ProcessJobConfiguration
meta = pathlib.Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
out = {w["type"]: w["default_base_job_configuration"] for c in json.loads(meta.read_text()).values() for w in c.values()}
out["process"] = asyncio.run(get_default_base_job_template_for_infrastructure_type("process"))
pool_template = json.loads(sys.argv[1])
config = asyncio.run(ProcessJobConfiguration.from_template_and_values(pool_template, {"env": {"B": "2"}}))
print(json.dumps({"defaults": out, "env": config.env, "working_dir": str(config.working_dir)}))
"#;
    let embedded: Value =
        serde_json::from_str(include_str!("../../src/prefect/base_job_templates.json")).unwrap();
    let overrides = json!({"env": {"A": "1"}, "working_dir": "/srv/app"});
    let pool_template = xtask::prefect::work_pool_template::with_job_variables(
        &embedded["process"],
        overrides.as_object().unwrap(),
    )
    .unwrap();
    let out = Command::new(&python)
        .args(["-c", script, &pool_template.to_string()])
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "{}", text(&out));
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["defaults"], embedded);
    // The pool's env default merged with the deployment's, its working_dir default taken.
    assert_eq!(found["env"]["A"], json!("1"));
    assert_eq!(found["env"]["B"], json!("2"));
    assert_eq!(found["working_dir"], json!("/srv/app"));
}

/// A pool with work in progress is not pruned, even when no deployment uses it any more.
#[test]
fn prune_keeps_a_pool_with_runs_in_progress() {
    let p = Project::new("busy");
    let client = client_with_retries(&server_url(), 3);
    let busy = unique("res-busy-pool");
    let with_busy = |p: &Project, deployment_pool: &str| {
        let sections = p.sections_v1().replacen(
            "concurrency_limits:",
            &format!("  - {{name: {busy}, type: process}}\nconcurrency_limits:"),
            1,
        );
        p.write(&sections, "default", false);
        let path = p.dir.join("prefect.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap().replace(
            &format!("      name: {}\n", p.pool),
            &format!("      name: {deployment_pool}\n"),
        );
        std::fs::write(&path, yaml).unwrap();
    };
    // The deployment runs on the busy pool; one of its runs is in progress.
    with_busy(&p, &busy);
    let out = p.run(&server_url(), &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let deployment = client
        .get(&format!("/deployments/name/{}/d", p.flow))
        .unwrap()
        .unwrap();
    assert_eq!(deployment["work_pool_name"], json!(busy));
    let run = client
        .post(
            &format!(
                "/deployments/{}/create_flow_run",
                deployment["id"].as_str().unwrap()
            ),
            &json!({"parameters": {}}),
        )
        .unwrap();
    let run_id = run["id"].as_str().unwrap();
    for ty in ["PENDING", "RUNNING"] {
        let answer = client
            .post(
                &format!("/flow_runs/{run_id}/set_state"),
                &json!({"state": {"type": ty}}),
            )
            .unwrap();
        assert_eq!(answer["status"], json!("ACCEPT"), "{answer}");
    }
    // The yaml moves the deployment to the other pool and drops the busy one: not deleted.
    p.write(&p.sections_v1(), "default", false);
    let out = p.run(&server_url(), &["--prune"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: work pool '{busy}' is no longer in the yaml but is not deleted: 1 flow run(s) in it are pending or running"
        )),
        "{}",
        text(&out)
    );
    assert!(client.read_work_pool(&busy).unwrap().is_some());
    // Once the run finished, the next prune deletes it.
    let answer = client
        .post(
            &format!("/flow_runs/{run_id}/set_state"),
            &json!({"state": {"type": "COMPLETED"}}),
        )
        .unwrap();
    assert_eq!(answer["status"], json!("ACCEPT"), "{answer}");
    let out = p.run(&server_url(), &["--prune"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("deleted work pool '{busy}'")),
        "{}",
        text(&out)
    );
    assert!(client.read_work_pool(&busy).unwrap().is_none());
}
