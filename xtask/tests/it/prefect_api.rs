//! The REST client against a real Prefect server (started by `cargo xtask test`).

use serde_json::json;
use xtask::prefect::api::{ApiConfig, ApiErrorKind, PrefectClient};

use crate::support::bin::{run, xtask};
use crate::support::{client, scratch_dir, secured_server, unique};

#[test]
fn health_pools_and_404s() {
    let client = client();
    client.health().unwrap();
    client.check_auth().unwrap();
    let pool = unique("api-pool");
    assert!(client.read_work_pool(&pool).unwrap().is_none());
    client.create_work_pool(&pool, "process").unwrap();
    // Creating again is fine (409 means it is already there).
    client.create_work_pool(&pool, "process").unwrap();
    let read = client.read_work_pool(&pool).unwrap().expect("pool exists");
    assert_eq!(read["name"], json!(pool));
    assert_eq!(read["type"], json!("process"));
    assert!(client
        .read_variable(&unique("no-such-var"))
        .unwrap()
        .is_none());
    assert!(!client
        .delete(&format!("/work_pools/{}", unique("missing")))
        .unwrap());
    assert!(client.delete(&format!("/work_pools/{pool}")).unwrap());
    assert!(client.read_work_pool(&pool).unwrap().is_none());
}

#[test]
fn filters_read_every_page() {
    let client = client();
    let prefix = unique("pages");
    // More than one page (200) of flows.
    for i in 0..205 {
        client
            .post("/flows/", &json!({"name": format!("{prefix}-{i:03}")}))
            .unwrap();
    }
    let flows = client
        .read_flows(json!({"flows": {"name": {"like_": prefix}}}))
        .unwrap();
    assert_eq!(flows.len(), 205);
    let mut names: Vec<&str> = flows.iter().map(|f| f["name"].as_str().unwrap()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 205, "no flow read twice");
}

#[test]
fn status_errors_carry_the_servers_detail() {
    let client = client();
    let err = client
        .post(
            "/deployments/",
            &json!({"name": "x", "flow_id": "not-a-uuid"}),
        )
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(
        err.to_string()
            .starts_with("POST /deployments/ failed: 422"),
        "{err}"
    );
}

#[test]
fn unreachable_server_fails_fast_and_masks_credentials() {
    // Nothing listens on the discard port on loopback.
    let mut cfg = ApiConfig::for_url("http://user:sentinel-password@127.0.0.1:9/api");
    cfg.max_retries = 5;
    let client = PrefectClient::new(cfg).unwrap();
    let started = std::time::Instant::now();
    let err = client.get("/work_pools/x").unwrap_err();
    assert!(matches!(err.kind, ApiErrorKind::Unreachable(_)), "{err:?}");
    assert!(
        started.elapsed().as_secs() < 5,
        "a server that never answered is not retried for long"
    );
    assert!(!err.to_string().contains("sentinel-password"), "{err}");
    assert!(!client.display_url().contains("sentinel-password"));
}

#[test]
fn basic_auth_and_csrf_token_exchange() {
    let (url, auth) = secured_server();
    let mut cfg = ApiConfig::for_url(&url);
    cfg.auth_string = Some(auth.clone());
    // A wrong API key must not matter: the auth string wins.
    cfg.api_key = Some("wrong-key".into());
    let client = PrefectClient::new(cfg).unwrap();
    client.check_auth().unwrap();
    // Mutating requests need the CSRF token; the client fetches it once and reuses it.
    let pool = unique("csrf-pool");
    client.create_work_pool(&pool, "process").unwrap();
    assert_eq!(client.csrf_exchange_count(), 1, "a write fetched the token");
    // Requests minus retries: a busy server's answer is retried, which is no second request.
    let sent = |c: &PrefectClient| c.request_count() - c.retry_count();
    let before = sent(&client);
    client
        .patch(
            &format!("/work_pools/{pool}"),
            &json!({"description": "patched"}),
        )
        .unwrap();
    assert_eq!(
        client.csrf_exchange_count(),
        1,
        "token reused, no second exchange"
    );
    assert_eq!(sent(&client) - before, 1, "the PATCH alone");
    assert_eq!(
        client.read_work_pool(&pool).unwrap().unwrap()["description"],
        json!("patched")
    );
    assert!(client.delete(&format!("/work_pools/{pool}")).unwrap());
}

#[test]
fn wrong_credentials_are_an_auth_error_without_the_secret() {
    let (url, _) = secured_server();
    for (key, auth) in [
        (Some("sentinel-api-key"), None),
        (None, Some("admin:sentinel-wrong")),
    ] {
        let mut cfg = ApiConfig::for_url(&url);
        cfg.api_key = key.map(String::from);
        cfg.auth_string = auth.map(String::from);
        let client = PrefectClient::new(cfg).unwrap();
        client.health().expect("health is unauthenticated");
        let err = client.check_auth().unwrap_err();
        assert!(err.is_auth(), "{err}");
        assert!(!err.to_string().contains("sentinel"), "{err}");
    }
}

/// A server that accepts connections and never answers: every command ends, with a timeout error.
#[test]
fn a_silent_server_times_out_instead_of_hanging() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Keep accepted sockets open (and silent) until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let dir = scratch_dir("silent-server");
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(
        dir.join("flows/f.py"),
        "from prefect import flow\n\n@flow\ndef f():\n    pass\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("prefect.yaml"),
        "deployments:\n  - name: silent\n    entrypoint: flows/f.py:f\n    work_pool:\n      name: p\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = run(xtask()
        .arg("register-flows")
        .current_dir(&dir)
        .env("PREFECT_API_URL", format!("http://127.0.0.1:{port}/api"))
        .env("PREFECT_API_REQUEST_TIMEOUT", "1")
        .env("PREFECT_CLIENT_MAX_RETRIES", "1"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer in time"), "{stderr}");
    // Two attempts of one second each plus a short backoff; a hang would never get here.
    assert!(
        started.elapsed().as_secs() < 30,
        "took {:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(dir);
}
