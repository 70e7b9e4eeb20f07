//! No secret ever reaches stdout or stderr: every subcommand runs with sentinel values in
//! PREFECT_API_KEY, PREFECT_API_AUTH_STRING, FLY_API_TOKEN, FLY_ACCESS_TOKEN and a
//! PREFECT_API_URL carrying `user:sentinelpw@`, against
//! - server 1 of the harness (success; it has no auth, so credentials are ignored),
//! - server 2 with its real auth string (success; the real string is then the secret),
//! - an unused loopback port (server down),
//! - server 2 with a wrong auth string (401),
//!
//! and the output must contain no sentinel, nor its base64 (as sent in `Authorization: Basic`).
//! Values templated into a deployment are secrets too: a sentinel in a secret block and one in an
//! environment variable, both in `work_pool.job_variables`, change between runs, and every plan
//! (`--dry-run`, `--check`, `--json`, Markdown, `deploy --dry-run`, apply) shows the change as
//! `<secret changed>`; a templated parameter failing the schema check is reported masked.
//! `fly` is the fly helper's stand-in (tests/it/support/fake_fly.rs), whose app secrets hold the
//! sentinels too; `docker` is a stand-in script. Fly cannot be reached from tests.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::support::bin::{Invocation, Outcome};
use crate::support::fly::{
    fake_fly, url_with_credentials as with_credentials, API_KEY, AUTH_STRING, FLY_TOKEN,
    URL_PASSWORD, URL_USER,
};
use crate::support::{
    client, client_at, ensure_pool, repo_root, scratch_dir, secured_server, server_url, unique,
};

const POOL: &str = "xsec-pool";

/// Every subcommand (and the flags that change what is printed).
const COMMANDS: &[&[&str]] = &[
    &["register-flows"],
    &["register-flows", "--dry-run"],
    &["register-flows", "--json"],
    &["register-flows", "--dry-run", "--json"],
    &["register-flows", "--check"],
    &["register-flows", "--check", "--json"],
    &["register-flows", "--dry-run", "--format", "markdown"],
    &["register-flows", "--check", "--format", "markdown"],
    &["--verbose", "register-flows"],
    &["--verbose", "register-flows", "--dry-run"],
    &["check-secrets", "--local-only"],
    &["check-secrets"],
    &["check-secrets", "--json"],
    &["--verbose", "check-secrets"],
    &["deploy", "--dry-run"],
    &["--verbose", "deploy", "--dry-run"],
    &["build-image", "--dry-run"],
    &["build-image", "--dry-run", "--fly"],
];

/// A stand-in docker: `version`/`info` answer, builds succeed silently.
const FAKE_DOCKER: &str = r#"#!/bin/sh
case "$1" in
  version|--version) echo "Docker version 27.0.0, build stand-in" ;;
  info) echo "Server Version: 27.0.0" ;;
esac
exit 0
"#;

/// The secrets of one scenario and how to recognise them in output.
struct Needles(Vec<(String, String)>);

impl Needles {
    fn new(secrets: &[(&str, &str)]) -> Needles {
        let mut needles = Vec::new();
        for (label, value) in secrets {
            let b64 = base64::engine::general_purpose::STANDARD.encode(value);
            needles.push((label.to_string(), value.to_string()));
            needles.push((format!("base64 of {label}"), b64));
        }
        Needles(needles)
    }

    /// Labels of the needles found in `text` (never the values, which may be real).
    fn found_in(&self, text: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, needle)| text.contains(needle.as_str()))
            .map(|(label, _)| label.clone())
            .collect()
    }
}

/// A loopback port nothing listens on.
fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A small project: one deployment of a flow of its own, the repo's fly.toml (with `[env]`
/// PREFECT_API_URL pointing at `plain_url`) and Dockerfile when present, stand-in `fly`/`docker`
/// (returned: the directory to put first on PATH).
fn project(label: &str, plain_url: &str) -> (PathBuf, PathBuf) {
    let dir = scratch_dir(&format!("secrets-{label}"));
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(
        dir.join("flows/xsec_flow.py"),
        "from prefect import flow\n\n\n@flow(name=\"xsec-flow\")\ndef xsec_flow(n: int = 1) -> int:\n    return n\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("prefect.yaml"),
        format!(
            "name: xsec\ndeployments:\n  - name: xsec-deploy\n    entrypoint: flows/xsec_flow.py:xsec_flow\n    work_pool:\n      name: {POOL}\n"
        ),
    )
    .unwrap();
    let repo = repo_root();
    let fly_toml = std::fs::read_to_string(repo.join("fly.toml")).unwrap();
    let fly_toml: String = fly_toml
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("PREFECT_API_URL") {
                format!("  PREFECT_API_URL = \"{plain_url}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("fly.toml"), fly_toml).unwrap();
    for file in ["Dockerfile", ".dockerignore"] {
        if repo.join(file).is_file() {
            std::fs::copy(repo.join(file), dir.join(file)).unwrap();
        }
    }
    let bin = dir.join("stand-in-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(fake_fly(), bin.join("fly")).unwrap();
    let docker = bin.join("docker");
    std::fs::write(&docker, FAKE_DOCKER).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The Fly app's secrets as the stand-in serves them: the same sentinels.
    std::fs::write(
        dir.join("fly-app-secrets.env"),
        format!(
            "PREFECT_API_URL={}\nPREFECT_API_AUTH_STRING={AUTH_STRING}\nPREFECT_API_KEY={API_KEY}\n",
            with_credentials(plain_url)
        ),
    )
    .unwrap();
    (dir, bin)
}

/// What a scenario expects of the register-flows runs (the others only must not leak).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Success,
    Failure,
}

/// Runs every command of [`COMMANDS`] in `project` with `env` and checks the output for `needles`.
fn run_all(
    scenario: &str,
    project: &Path,
    bin: &Path,
    env: &[(&str, &str)],
    needles: &Needles,
    expect: Expect,
) {
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for args in COMMANDS {
        let mut invocation = Invocation::new(project, args)
            .path_prefix(bin)
            .env("XTASK_PROJECT_ROOT", project.to_str().unwrap())
            .env("FLY_APP", "xsec-app")
            .env(
                "FAKE_FLY_SECRETS",
                project.join("fly-app-secrets.env").to_str().unwrap(),
            );
        for (key, value) in env {
            invocation = invocation.env(key, value);
        }
        let outcome: Outcome = invocation.run();
        let label = args.join(" ");
        summary.push(format!("{label}: exit {:?}", outcome.code));
        let leaked = needles.found_in(&format!("{}\n{}", outcome.stdout, outcome.stderr));
        if !leaked.is_empty() {
            failures.push(format!("`{label}` printed {}", leaked.join(", ")));
        }
        if outcome.timed_out || outcome.code.is_none() || outcome.code == Some(101) {
            failures.push(format!(
                "`{label}` hung, crashed or panicked (exit {:?})",
                outcome.code
            ));
        }
        let writes = args.contains(&"register-flows")
            && !args.contains(&"--dry-run")
            && !args.contains(&"--check");
        if writes {
            let ok = match expect {
                Expect::Success => outcome.code == Some(0),
                Expect::Failure => outcome.code == Some(1),
            };
            if !ok {
                failures.push(format!(
                    "`{label}` exited {:?}, which is not this scenario's expected path; stderr:\n{}",
                    outcome.code,
                    needles_masked(&outcome.stderr_excerpt(), needles)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{scenario}:\n{}\n\nall runs:\n{}",
        failures.join("\n"),
        summary.join("\n")
    );
}

/// `text` with every needle replaced, so a failure message does not repeat a real secret.
fn needles_masked(text: &str, needles: &Needles) -> String {
    let mut out = text.to_string();
    for (label, needle) in &needles.0 {
        out = out.replace(needle.as_str(), &format!("<{label}>"));
    }
    out
}

fn sentinel_needles() -> Needles {
    Needles::new(&[
        ("PREFECT_API_KEY", API_KEY),
        ("PREFECT_API_AUTH_STRING", AUTH_STRING),
        ("FLY_API_TOKEN", FLY_TOKEN),
        (
            "FLY_API_TOKEN without its prefix",
            FLY_TOKEN.trim_start_matches("FlyV1 "),
        ),
        ("URL password", URL_PASSWORD),
        ("URL user:password", &format!("{URL_USER}:{URL_PASSWORD}")),
    ])
}

fn sentinel_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PREFECT_API_URL", with_credentials(url)),
        ("PREFECT_API_KEY", API_KEY.to_string()),
        ("PREFECT_API_AUTH_STRING", AUTH_STRING.to_string()),
        ("FLY_API_TOKEN", FLY_TOKEN.to_string()),
        ("FLY_ACCESS_TOKEN", FLY_TOKEN.to_string()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn no_secret_in_output_when_the_server_answers() {
    let url = server_url();
    ensure_pool(&client_at(&url, None), POOL);
    let (project, bin) = project("up", &url);
    let env = sentinel_env(&url);
    run_all(
        "server 1 (no auth: the sentinels are sent and ignored)",
        &project,
        &bin,
        &as_refs(&env),
        &sentinel_needles(),
        Expect::Success,
    );
}

#[test]
fn no_secret_in_output_with_a_real_auth_string() {
    let (url, auth) = secured_server();
    ensure_pool(&client_at(&url, Some(&auth)), POOL);
    let (project, bin) = project("auth", &url);
    let env = [
        ("PREFECT_API_URL", url.as_str()),
        ("PREFECT_API_AUTH_STRING", auth.as_str()),
        ("PREFECT_API_KEY", API_KEY),
        ("FLY_API_TOKEN", FLY_TOKEN),
        ("FLY_ACCESS_TOKEN", FLY_TOKEN),
    ];
    let needles = Needles::new(&[
        ("the real PREFECT_API_AUTH_STRING", auth.as_str()),
        ("PREFECT_API_KEY", API_KEY),
        ("FLY_API_TOKEN", FLY_TOKEN),
    ]);
    run_all(
        "server 2 with its real auth string",
        &project,
        &bin,
        &env,
        &needles,
        Expect::Success,
    );
}

#[test]
fn no_secret_in_output_when_the_server_is_down() {
    let url = format!("http://127.0.0.1:{}/api", unused_port());
    let (project, bin) = project("down", &url);
    let env = sentinel_env(&url);
    run_all(
        "server down",
        &project,
        &bin,
        &as_refs(&env),
        &sentinel_needles(),
        Expect::Failure,
    );
}

#[test]
fn no_secret_in_output_when_the_server_says_401() {
    let (url, _real_auth) = secured_server();
    let (project, bin) = project("unauthorized", &url);
    // The sentinel auth string is wrong for server 2: every request is refused with 401.
    let env = sentinel_env(&url);
    run_all(
        "server 2 with a wrong auth string (401)",
        &project,
        &bin,
        &as_refs(&env),
        &sentinel_needles(),
        Expect::Failure,
    );
}

// ---- values that came from a secret block or an environment variable (issue 12 item 1) ----

/// The sentinels' shape: long enough to be masked in any text, unique per run.
fn sentinel(label: &str) -> String {
    format!("SENTINEL{label}{}", std::process::id())
}

/// A `secret` block document holding `value`, created or overwritten.
fn set_secret_block(name: &str, value: &str) {
    let client = client();
    let data = serde_json::json!({"value": value});
    if let Some(existing) = client.read_block_document("secret", name).unwrap() {
        let path = format!("/block_documents/{}", existing["id"].as_str().unwrap());
        client
            .patch(
                &path,
                &serde_json::json!({"data": data, "merge_existing_data": false}),
            )
            .unwrap();
        return;
    }
    let block_type = client.get("/block_types/slug/secret").unwrap().unwrap();
    let schemas = client
        .post(
            "/block_schemas/filter",
            &serde_json::json!({"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}}),
        )
        .unwrap();
    let body = serde_json::json!({
        "name": name, "data": data, "block_type_id": block_type["id"],
        "block_schema_id": schemas[0]["id"],
    });
    client.post("/block_documents/", &body).unwrap();
}

/// The scenario's project: one deployment `name` with `extra` after its `work_pool`'s name
/// (indented by 6, it continues `work_pool`; by 4, it is a key of the deployment).
fn templated_project(label: &str, name: &str, extra: &str) -> (PathBuf, PathBuf) {
    let url = server_url();
    ensure_pool(&client_at(&url, None), POOL);
    let (dir, bin) = project(label, &url);
    std::fs::write(
        dir.join("prefect.yaml"),
        format!(
            "name: xsec\ndeployments:\n  - name: {name}\n    entrypoint: flows/xsec_flow.py:xsec_flow\n    work_pool:\n      name: {POOL}\n{extra}"
        ),
    )
    .unwrap();
    (dir, bin)
}

fn invocation(project: &Path, bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let url = server_url();
    let mut invocation = Invocation::new(project, args)
        .path_prefix(bin)
        .env("XTASK_PROJECT_ROOT", project.to_str().unwrap())
        .env("FLY_APP", "xsec-app")
        .env(
            "FAKE_FLY_SECRETS",
            project.join("fly-app-secrets.env").to_str().unwrap(),
        );
    for (key, value) in sentinel_env(&url) {
        invocation = invocation.env(key, &value);
    }
    for (key, value) in env {
        invocation = invocation.env(key, value);
    }
    invocation.run()
}

/// The server holds the deployment made with the old secret; the yaml now yields the new one.
/// Every command that shows a plan must see the change and show `<secret changed>`, never
/// either value; apply writes the new value and the server then matches.
fn changed_secret_is_shown_masked(
    project: &Path,
    bin: &Path,
    deployment: &str,
    env: &[(&str, &str)],
    needles: &Needles,
) -> Vec<String> {
    let mut failures = Vec::new();
    let runs: &[(&[&str], i32)] = &[
        (&["register-flows", "--dry-run"], 0),
        (&["register-flows", "--check"], 2),
        (&["register-flows", "--dry-run", "--json"], 0),
        (&["register-flows", "--check", "--json"], 2),
        (&["register-flows", "--dry-run", "--format", "markdown"], 0),
        (&["--verbose", "register-flows", "--dry-run"], 0),
        (
            &[
                "deploy",
                "--dry-run",
                "--image",
                "registry.fly.io/xsec-app:t",
            ],
            0,
        ),
        (&["register-flows", "--json"], 0),
        (&["register-flows", "--check"], 0),
    ];
    for (args, code) in runs {
        let outcome = invocation(project, bin, args, env);
        let label = args.join(" ");
        let all = format!("{}\n{}", outcome.stdout, outcome.stderr);
        let leaked = needles.found_in(&all);
        if !leaked.is_empty() {
            failures.push(format!("`{label}` printed {}", leaked.join(", ")));
        }
        if outcome.code != Some(*code) {
            failures.push(format!(
                "`{label}` exited {:?}, expected {code}:\n{}",
                outcome.code,
                needles_masked(&outcome.stderr_excerpt(), needles)
            ));
        }
        let shows_change = *code == 2 || (*code == 0 && !args.contains(&"--check"));
        if shows_change && !all.contains("<secret changed>") {
            failures.push(format!(
                "`{label}` does not show `<secret changed>`:\n{}",
                needles_masked(&all, needles)
            ));
        }
    }
    let server = client()
        .get(&format!("/deployments/name/xsec-flow/{deployment}"))
        .unwrap()
        .expect("the deployment");
    if !needles.0.iter().any(|(label, value)| {
        label == "new value" && server["job_variables"]["env"]["TOKEN"] == **value
    }) {
        failures.push("apply did not write the new value".into());
    }
    failures
}

#[test]
fn a_changed_secret_block_value_is_masked() {
    let block = unique("xsec-tok").to_lowercase();
    let deployment = unique("xsec-block");
    let (old, new) = (sentinel("blockold"), sentinel("blocknew"));
    let extra = format!(
        "      job_variables:\n        env:\n          TOKEN: \"{{{{ prefect.blocks.secret.{block} }}}}\"\n"
    );
    let (project, bin) = templated_project("block", &deployment, &extra);
    set_secret_block(&block, &old);
    let first = invocation(&project, &bin, &["register-flows"], &[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr_excerpt());
    set_secret_block(&block, &new);
    let needles = Needles::new(&[("old value", &old), ("new value", &new)]);
    let failures = changed_secret_is_shown_masked(&project, &bin, &deployment, &[], &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_changed_env_var_in_job_variables_is_masked() {
    let deployment = unique("xsec-env");
    let (old, new) = (sentinel("envold"), sentinel("envnew"));
    let extra = "      job_variables:\n        env:\n          TOKEN: \"{{ $XSEC_TOKEN }}\"\n";
    let (project, bin) = templated_project("env", &deployment, extra);
    let first = invocation(&project, &bin, &["register-flows"], &[("XSEC_TOKEN", &old)]);
    assert_eq!(first.code, Some(0), "{}", first.stderr_excerpt());
    let needles = Needles::new(&[("old value", &old), ("new value", &new)]);
    let failures = changed_secret_is_shown_masked(
        &project,
        &bin,
        &deployment,
        &[("XSEC_TOKEN", &new)],
        &needles,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A templated parameter that fails the schema check: the problem is reported, masked.
#[test]
fn a_templated_parameter_failing_the_schema_check_is_masked() {
    let deployment = unique("xsec-param");
    let value = sentinel("param");
    let extra = "    parameters:\n      n: \"{{ $XSEC_PARAM }}\"\n";
    let (project, bin) = templated_project("param", &deployment, extra);
    let env = [("XSEC_PARAM", value.as_str())];
    let outcome = invocation(&project, &bin, &["register-flows", "--dry-run"], &env);
    assert_eq!(outcome.code, Some(1), "{}", outcome.all());
    outcome.assert_stderr_has("parameters do not match the flow's signature");
    let needles = Needles::new(&[("templated parameter", &value)]);
    assert!(
        needles.found_in(&outcome.all()).is_empty(),
        "{}",
        needles_masked(&outcome.all(), &needles)
    );
    let sentinels = sentinel_env(&server_url());
    let mut env_all = as_refs(&sentinels);
    env_all.push(("XSEC_PARAM", &value));
    let mut all_needles = sentinel_needles();
    all_needles.0.extend(needles.0);
    run_all(
        "a templated parameter failing the schema check",
        &project,
        &bin,
        &env_all,
        &all_needles,
        Expect::Failure,
    );
}

#[test]
fn needles_find_plain_and_base64_forms() {
    let needles = Needles::new(&[("K", "abc-secret")]);
    let b64 = base64::engine::general_purpose::STANDARD.encode("abc-secret");
    assert_eq!(needles.found_in("x abc-secret y"), vec!["K"]);
    assert_eq!(
        needles.found_in(&format!("Basic {b64}")),
        vec!["base64 of K"]
    );
    assert!(needles.found_in("abc-***").is_empty());
    assert_eq!(needles_masked("a abc-secret", &needles), "a <K>");
}
