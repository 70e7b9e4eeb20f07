//! `cargo xtask check-secrets` end to end: the real binary, the stand-in fly on PATH, the real
//! test Prefect server (XTASK_TEST_PREFECT_API_URL), and small fault-injecting HTTP servers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::support::fly::{
    url_with_credentials, Sandbox, API_KEY, AUTH_STRING, FLY_TOKEN, SENTINELS, URL_PASSWORD,
};
use crate::support::server_url;

/// A sandbox whose host environment and Fly app are complete, with sentinel credentials (and
/// the work pool its prefect.yaml uses on the server).
fn complete(test: &str) -> Sandbox {
    crate::support::ensure_pool(&crate::support::client(), "captionacc-workers-prod");
    let mut sandbox = Sandbox::new(test);
    let url = server_url();
    sandbox.write_secrets(&[
        ("PREFECT_API_URL", &url),
        ("PREFECT_API_AUTH_STRING", AUTH_STRING),
    ]);
    sandbox
        .env("PREFECT_API_URL", &url_with_credentials(&url))
        .env("PREFECT_API_AUTH_STRING", AUTH_STRING)
        .env("PREFECT_API_KEY", API_KEY)
        .env("FLY_API_TOKEN", FLY_TOKEN);
    sandbox
}

#[test]
fn all_three_secrets_list_formats_pass() {
    for (format, label) in [
        ("graphql", "Name/Digest/CreatedAt"),
        ("machines", "name/digest/created_at"),
        ("status", "name/digest/status"),
    ] {
        let mut sandbox = complete(&format!("formats-{format}"));
        sandbox.env("FAKE_FLY_SECRETS_FORMAT", format);
        let run = sandbox.run(&["check-secrets"]);
        assert_eq!(run.code, Some(0), "{format}:\n{}", run.all());
        assert!(
            run.stdout.contains(label),
            "{format}: format not reported:\n{}",
            run.all()
        );
        run.assert_stdout_has("[ok]   PREFECT_API_AUTH_STRING or PREFECT_API_KEY");
        run.assert_stdout_has("[ok]   authenticated read");
        run.assert_no_secrets(SENTINELS);
        let calls = sandbox.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(
            calls[0].argv,
            ["secrets", "list", "--app", &sandbox.app, "--json"]
        );
    }
}

#[test]
fn missing_secrets_are_all_reported_and_fail() {
    let mut sandbox = Sandbox::new("missing");
    sandbox.write_secrets(&[("UNRELATED", "x")]);
    // Nothing set on the host either: every problem at once, local and Fly.
    sandbox.env("FAKE_FLY_SECRETS_FORMAT", "machines");
    let run = sandbox.run(&["check-secrets", "--json"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let json: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.all()));
    assert_eq!(json["ok"], false);
    let failed: Vec<(String, String)> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "fail")
        .map(|i| {
            (
                i["scope"].as_str().unwrap().to_string(),
                i["check"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [
            ("local".to_string(), "PREFECT_API_URL".to_string()),
            (
                "fly".to_string(),
                "PREFECT_API_AUTH_STRING or PREFECT_API_KEY".to_string()
            ),
        ],
        "{}",
        run.all()
    );
    // PREFECT_API_URL comes from fly.toml [env], so it is not missing in the app.
    run.assert_stderr_has("PREFECT_API_URL from fly.toml [env]");
}

#[test]
fn staged_secret_is_reported() {
    let mut sandbox = complete("staged");
    sandbox.env("FAKE_FLY_STAGED", "PREFECT_API_AUTH_STRING");
    let run = sandbox.run(&["check-secrets"]);
    assert_eq!(
        run.code,
        Some(0),
        "a staged secret is a warning, not a failure:\n{}",
        run.all()
    );
    run.assert_stdout_has(
        "[warn] PREFECT_API_AUTH_STRING or PREFECT_API_KEY: PREFECT_API_AUTH_STRING is only Staged",
    );
    run.assert_no_secrets(SENTINELS);
}

#[test]
fn local_only_never_calls_fly() {
    let sandbox = complete("local-only");
    let run = sandbox.run(&["check-secrets", "--local-only"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_stdout_has("[skip] Fly app");
    assert!(sandbox.calls().is_empty());
    // The URL is shown with its credentials masked.
    run.assert_stdout_has("http://***@127.0.0.1");
    run.assert_no_secrets(SENTINELS);
}

#[test]
fn json_output_has_no_values() {
    let sandbox = complete("json-values");
    let run = sandbox.run(&["check-secrets", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["ok"], true);
    run.assert_no_secrets(SENTINELS);
    assert!(
        !run.stdout.contains("deployer"),
        "URL user name leaked:\n{}",
        run.all()
    );
}

#[test]
fn missing_fly_is_explained() {
    let mut sandbox = complete("no-fly");
    std::fs::remove_file(sandbox.bin.join("fly")).unwrap();
    sandbox.env("PATH", &sandbox.bin.display().to_string());
    let run = sandbox.run(&["check-secrets"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stdout_has("neither `fly` nor `flyctl` is on PATH");
}

#[test]
fn flyctl_name_is_found_too() {
    let sandbox = complete("flyctl-name");
    std::fs::rename(sandbox.bin.join("fly"), sandbox.bin.join("flyctl")).unwrap();
    let run = sandbox.run(&["check-secrets"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(sandbox.call_names(), ["secrets list"]);
}

#[test]
fn not_logged_in_mentions_the_token_variables() {
    let mut sandbox = complete("not-logged-in");
    sandbox.env("FAKE_FLY_NOT_LOGGED_IN", "1");
    let run = sandbox.run(&["check-secrets"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stdout.contains("FLY_API_TOKEN") && run.stdout.contains("FLY_ACCESS_TOKEN"),
        "{}",
        run.all()
    );
    run.assert_no_secrets(SENTINELS);
}

#[test]
fn invalid_url_is_rejected_without_showing_credentials() {
    let mut sandbox = complete("bad-url");
    sandbox.env(
        "PREFECT_API_URL",
        &format!("https://deployer:{URL_PASSWORD}@gw.example/prefect"),
    );
    let run = sandbox.run(&["check-secrets", "--local-only"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stdout_has("https://***@gw.example/prefect: the path must end in /api");
    run.assert_no_secrets(SENTINELS);
}

/// Serves `/api/health` with 200 and everything else with `status`, or never answers (`None`).
fn fault_server(status: Option<u16>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(status) = status else {
                held.push(stream); // hang: keep the connection open, never answer
                continue;
            };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let code = if request.starts_with("GET /api/health") {
                200
            } else {
                status
            };
            let body = if code == 200 {
                "true"
            } else {
                r#"{"detail":"Unauthorized"}"#
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/api")
}

#[test]
fn rejected_credentials_are_an_auth_problem() {
    let mut sandbox = complete("auth-401");
    sandbox.env("PREFECT_API_URL", &fault_server(Some(401)));
    let run = sandbox.run(&["check-secrets", "--local-only"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stdout_has("[ok]   server health");
    run.assert_stdout_has("[FAIL] authenticated read: auth problem");
    run.assert_no_secrets(SENTINELS);
}

#[test]
fn silent_server_is_unreachable() {
    let mut sandbox = complete("timeout");
    sandbox
        .env("PREFECT_API_URL", &fault_server(None))
        .env("PREFECT_API_REQUEST_TIMEOUT", "1")
        .env("PREFECT_CLIENT_MAX_RETRIES", "0");
    let started = std::time::Instant::now();
    let run = sandbox.run(&["check-secrets", "--local-only"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stdout_has("[FAIL] server health (/health): unreachable");
    run.assert_stdout_has("[skip] authenticated read");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn credentials_in_fly_toml_env_are_flagged_not_shown() {
    let sandbox = complete("toml-credentials");
    let path = sandbox.project.join("fly.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let leaky = toml.replace(
        "https://gateway.invalid",
        &format!("https://deployer:{URL_PASSWORD}@gateway.invalid"),
    );
    std::fs::write(&path, leaky).unwrap();
    let run = sandbox.run(&["check-secrets"]);
    run.assert_stdout_has(
        "[warn] PREFECT_API_URL in fly.toml [env]: carries credentials in plain text",
    );
    run.assert_no_secrets(SENTINELS);
}

/// Issue 12 item 2: credentials over plain http to a host that is neither loopback nor on
/// Fly's private network are warned about once on stderr, and the checklist says so.
#[test]
fn credentials_over_plain_http_are_warned_about_once() {
    let mut sandbox = complete("plain-http");
    sandbox
        .env(
            "PREFECT_API_URL",
            "http://prefect-gateway.invalid/prefect/api",
        )
        .env("PREFECT_API_REQUEST_TIMEOUT", "2")
        .env("PREFECT_CLIENT_MAX_RETRIES", "0");
    let run = sandbox.run(&["check-secrets", "--local-only"]);
    run.assert_stdout_has("[warn] transport: credentials");
    assert_eq!(
        run.stderr.matches("warning: credentials").count(),
        1,
        "{}",
        run.all()
    );
    run.assert_stderr_has("prefect-gateway.invalid over plain http");
    run.assert_no_secrets(SENTINELS);

    // Loopback (the test server): not a word.
    let run = complete("plain-http-loopback").run(&["check-secrets", "--local-only"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(!run.all().contains("plain http"), "{}", run.all());
}

/// A work pool the deployments use must be declared in `work_pools` or exist on the server.
#[test]
fn a_pool_neither_declared_nor_on_the_server_fails_the_check() {
    let sandbox = complete("pool-missing");
    let pool = crate::support::unique("cs-missing-pool");
    sandbox.write_prefect_yaml("prod", &pool);
    let run = sandbox.run(&["check-secrets", "--local-only"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stdout_has(&format!("work pool {pool}"));
    run.assert_stdout_has("neither declared in work_pools nor on the server");
    // Declared in the prefect file: register-flows will create it, the check passes.
    let path = sandbox.project.join("prefect.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap().replacen(
        "deployments:\n",
        &format!("work_pools:\n  - {{name: {pool}, type: process}}\ndeployments:\n"),
        1,
    );
    std::fs::write(&path, yaml).unwrap();
    let run = sandbox.run(&["check-secrets", "--local-only"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_stdout_has("declared in work_pools");
    run.assert_no_secrets(SENTINELS);
}
