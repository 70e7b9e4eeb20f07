//! `register-flows` with build/push steps, end to end: the real binary on a temp project against
//! the test server (XTASK_TEST_PREFECT_API_URL, provided by `cargo xtask test`). Server state is
//! read back, never taken from our own output.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::bin::{describe, run, xtask};
use crate::support::{client, ensure_pool, scratch_dir, server_url, unique};

/// A scratch project with one flow (unique name) and a unique work pool on test server 1.
struct StepsProject {
    root: PathBuf,
    flow: String,
    pool: String,
}

impl StepsProject {
    fn new(tag: &str) -> StepsProject {
        let flow = unique(&format!("steps-{tag}"));
        let pool = unique(&format!("steps-pool-{tag}"));
        ensure_pool(&client(), &pool);
        let root = scratch_dir(&unique("project"));
        std::fs::create_dir_all(root.join("flows")).unwrap();
        std::fs::write(
            root.join("flows/sample.py"),
            format!(
                "from prefect import flow\n\n\n@flow(name=\"{flow}\")\ndef sample(n: int = 1, label: str = \"x\"):\n    return n\n"
            ),
        )
        .unwrap();
        StepsProject { root, flow, pool }
    }

    /// prefect.yaml: `top` (top-level keys such as `build:`), then one deployment `name` whose
    /// extra keys (indented by 4) are `fields`.
    fn write_yaml(&self, top: &str, name: &str, fields: &str) {
        let yaml = format!(
            "name: {flow}\nprefect-version: 3.9.1\n{top}\ndeployments:\n  - name: {name}\n    entrypoint: flows/sample.py:sample\n    work_pool:\n      name: {pool}\n{fields}",
            flow = self.flow,
            pool = self.pool,
        );
        std::fs::write(self.root.join("prefect.yaml"), yaml).unwrap();
    }

    fn register(&self, args: &[&str]) -> std::process::Output {
        run(xtask()
            .current_dir(&self.root)
            .env("XTASK_PROJECT_ROOT", &self.root)
            .arg("register-flows")
            .args(args)
            .env("PREFECT_API_URL", server_url()))
    }

    /// The deployment as the server has it, or None.
    fn server_deployment(&self, name: &str) -> Option<Value> {
        client()
            .get(&format!("/deployments/name/{}/{name}", self.flow))
            .expect("read the deployment")
    }
}

impl Drop for StepsProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn assert_failed_with(out: &std::process::Output, needles: &[&str]) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", describe(out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "missing `{needle}`:\n{}",
            describe(out)
        );
    }
    stderr
}

#[test]
fn step_outputs_feed_version_parameters_tags_and_pull_steps() {
    let p = StepsProject::new("outputs");
    let build = "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: get-commit\n      script: echo abc123\n\
                 push:\n  - prefect.deployments.steps.utility.run_shell_script:\n      id: pushed\n      script: echo \"{{ stdout }}-pushed\"\n      stream_output: false\n\
                 pull:\n  - prefect.deployments.steps.set_working_directory:\n      directory: /opt/{{ get-commit.stdout }}\n";
    let fields = "    version: \"v-{{ get-commit.stdout }}\"\n    tags: [\"{{ pushed.stdout }}\"]\n    parameters:\n      n: 2\n      label: \"{{ get-commit.stdout }}\"\n";
    p.write_yaml(build, "d", fields);

    let out = p.register(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `stream_output` defaults to true: the build step's output is echoed (to stderr); the push
    // step's is not.
    assert!(stderr.lines().any(|l| l == "abc123"), "{}", describe(&out));
    assert!(!stderr.contains("abc123-pushed\n"), "{}", describe(&out));

    let server = p.server_deployment("d").expect("deployment created");
    assert_eq!(server["version"], json!("v-abc123"));
    assert_eq!(server["parameters"], json!({"n": 2, "label": "abc123"}));
    assert_eq!(server["tags"], json!(["abc123-pushed"]));
    assert_eq!(
        server["pull_steps"],
        json!([{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/abc123"}}])
    );

    // --check runs the steps too and finds no drift.
    let out = p.register(&["--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn a_failing_script_writes_nothing() {
    let p = StepsProject::new("fail");
    p.write_yaml("", "d", "    version: \"1\"\n");
    let out = p.register(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let before = p.server_deployment("d").expect("deployment created");

    let build = "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: v\n      script: |\n        echo 2\n        ls /definitely/not/here\n";
    p.write_yaml(build, "d", "    version: \"{{ v.stdout }}\"\n");
    let out = p.register(&[]);
    assert_failed_with(
        &out,
        &[
            "prefect.yaml:11: deployment 'd': build step 1: `run_shell_script` failed with error code 2 running `ls`",
            "/definitely/not/here",
            "nothing was written",
        ],
    );
    let after = p.server_deployment("d").expect("deployment still there");
    assert_eq!(after["version"], json!("1"));
    assert_eq!(after["updated"], before["updated"]);
}

#[test]
fn python_steps_are_refused_before_any_step_runs() {
    let p = StepsProject::new("python");
    let marker = p.root.join("marker");
    let build = format!(
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      script: touch {}\n  - prefect_docker.deployments.steps.build_docker_image:\n      id: image\n      requires: prefect-docker\n      image_name: x\n",
        marker.display()
    );
    p.write_yaml(&build, "d", "");
    let out = p.register(&[]);
    let stderr = assert_failed_with(
        &out,
        &[
            "deployment 'd': build step 2: `prefect_docker.deployments.steps.build_docker_image` is a Python step",
            "--engine prefect-cli",
        ],
    );
    assert!(!stderr.contains("running build step"), "{stderr}");
    assert!(
        !marker.exists(),
        "the shell step ran although another step was refused"
    );
    assert!(p.server_deployment("d").is_none());

    // `shell: true` is refused the same way.
    let build = "build:\n  - prefect.deployments.steps.run_shell_script:\n      script: echo hi | tr a-z A-Z\n      shell: true\n";
    p.write_yaml(build, "d", "");
    let out = p.register(&[]);
    assert_failed_with(&out, &["`shell: true`", "--engine prefect-cli"]);
    assert!(p.server_deployment("d").is_none());
}

#[test]
fn shell_syntax_in_a_script_is_not_interpreted() {
    let p = StepsProject::new("inject");
    let pwned = p.root.join("pwned");
    let target = pwned.display().to_string();
    let script = format!(
        "echo hi; touch {target} && touch {target} | touch {target} $(touch {target}) `touch {target}`"
    );
    let build = format!(
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: say\n      script: '{script}'\n"
    );
    p.write_yaml(
        &build,
        "d",
        "    parameters:\n      label: \"{{ say.stdout }}\"\n",
    );
    let out = p.register(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!Path::new(&pwned).exists(), "the script was run by a shell");
    // Everything after `echo` reached it as arguments.
    let server = p.server_deployment("d").expect("deployment created");
    assert_eq!(
        server["parameters"]["label"],
        json!(script.replacen("echo ", "", 1))
    );
}

/// A templated value that would add a command or an argument is refused, naming the step and
/// the placeholder, before the step runs and with nothing written (issue 12 item 9).
#[test]
fn templated_values_cannot_add_commands_or_arguments() {
    let p = StepsProject::new("inject");
    let build = "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: tagged\n      script: |\n        touch first.marker\n        echo {{ $XTASK_INJECTED }}\n";
    p.write_yaml(build, "d", "    version: \"{{ tagged.stdout }}\"\n");
    for (value, needle) in [
        ("v1\ntouch pwned.marker", "would add a line"),
        (
            "v1 --output=/etc/passwd",
            "would change the words of the line",
        ),
    ] {
        let out = run(xtask()
            .current_dir(&p.root)
            .env("XTASK_PROJECT_ROOT", &p.root)
            .args(["register-flows"])
            .env("PREFECT_API_URL", server_url())
            .env("XTASK_INJECTED", value));
        assert_failed_with(
            &out,
            &[
                "deployment 'd': build step 1: the value of {{ $XTASK_INJECTED }}",
                needle,
                "nothing was written",
            ],
        );
        assert!(!p.root.join("first.marker").exists(), "{}", describe(&out));
        assert!(!p.root.join("pwned.marker").exists(), "{}", describe(&out));
    }
    assert!(p.server_deployment("d").is_none());
    // One word: fine.
    let out = run(xtask()
        .current_dir(&p.root)
        .env("XTASK_PROJECT_ROOT", &p.root)
        .args(["register-flows"])
        .env("PREFECT_API_URL", server_url())
        .env("XTASK_INJECTED", "v1"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(p.server_deployment("d").unwrap()["version"], json!("v1"));
}

/// Build steps do not get the Fly or Prefect credentials unless they name them.
#[test]
fn steps_get_credentials_only_when_they_name_them() {
    let p = StepsProject::new("env");
    let build = "build:\n  - prefect.deployments.steps.run_shell_script:\n      script: env\n  - prefect.deployments.steps.run_shell_script:\n      script: printenv FLY_API_TOKEN\n      stream_output: false\n";
    p.write_yaml(build, "d", "");
    let out = run(xtask()
        .current_dir(&p.root)
        .env("XTASK_PROJECT_ROOT", &p.root)
        .args(["register-flows", "--dry-run"])
        .env("PREFECT_API_URL", server_url())
        .env("XTASK_VISIBLE", "yes")
        .env("FLY_API_TOKEN", "FlyV1 fm2_stepsentinel0001")
        .env("PREFECT_API_KEY", "pnu_stepsentinel0002"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The first step's `env` listing: the ordinary variable, no credential (not even its name);
    // the second step names FLY_API_TOKEN and gets it (printenv fails on an unset variable).
    assert!(stderr.contains("XTASK_VISIBLE=yes"), "{}", describe(&out));
    for name in ["FLY_API_TOKEN=", "PREFECT_API_KEY="] {
        assert!(!stderr.contains(name), "{name}:\n{}", describe(&out));
    }
    assert!(!stderr.contains("stepsentinel"), "{}", describe(&out));
}
