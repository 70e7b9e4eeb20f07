//! What the integration tests share: the test servers, unique names, clients, scratch
//! directories and fixtures (here), running the binary (`bin`), the stand-in `fly` and its
//! sandbox (`fly`), the fault-injecting proxy (`fault_proxy`), in-process syncs (`sync`) and
//! the parity harness (`parity`).
//!
//! Tests run through `cargo xtask test`, which starts two throwaway Prefect servers and sets
//! XTASK_TEST_PREFECT_API_URL, XTASK_TEST_PREFECT_API_URL_2 (+ its auth string) and
//! XTASK_TEST_VENV. A test that needs them panics with a pointer to that command instead of
//! passing silently. The servers are shared by all tests: name everything with [`unique`].
//!
//! `fake_fly.rs` and `fake_gh.rs` are no modules of this crate: [`fly::fake_fly`] and
//! [`gh::fake_gh`] compile them as programs of their own ([`compile_stand_in`]).

pub mod bin;
pub mod fault_proxy;
pub mod fly;
pub mod gh;
pub mod parity;
pub mod sync;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use xtask::prefect::api::{ApiConfig, PrefectClient};

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value.trim().to_string(),
        _ => panic!("{name} is not set: run the integration tests through `cargo xtask test` (it starts the Prefect servers and sets it)"),
    }
}

/// API URL of test server 1 (no auth), e.g. `http://127.0.0.1:4431/api`.
pub fn server_url() -> String {
    required_env("XTASK_TEST_PREFECT_API_URL")
        .trim_end_matches('/')
        .to_string()
}

/// Test server 2, which requires its auth string and has CSRF protection on: (URL, auth string).
pub fn secured_server() -> (String, String) {
    (
        required_env("XTASK_TEST_PREFECT_API_URL_2"),
        required_env("XTASK_TEST_PREFECT_AUTH_STRING_2"),
    )
}

/// The venv with the pinned Prefect.
pub fn venv_dir() -> PathBuf {
    PathBuf::from(required_env("XTASK_TEST_VENV"))
}

/// The repository checkout (holds prefect.yaml, app/, fly.toml, fuzz/).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `xtask/tests/fixtures/<name>`.
pub fn fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A name no other test (or earlier run against the same server) uses: `prefix-<pid>-<n>-<time>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() % 1_000_000_000)
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{micros}", std::process::id())
}

/// A client for `url`, with `auth` as PREFECT_API_AUTH_STRING.
pub fn client_at(url: &str, auth: Option<&str>) -> PrefectClient {
    let mut cfg = ApiConfig::for_url(url);
    cfg.auth_string = auth.map(String::from);
    PrefectClient::new(cfg).unwrap_or_else(|e| panic!("client for {url}: {e}"))
}

/// A client for test server 1.
pub fn client() -> PrefectClient {
    client_at(&server_url(), None)
}

/// Creates a process work pool unless it exists.
pub fn ensure_pool(client: &PrefectClient, name: &str) {
    client
        .create_work_pool(name, "process")
        .unwrap_or_else(|e| panic!("cannot create work pool {name}: {e}"));
}

/// Records a worker heartbeat in `pool` (a stand-in for a worker Machine that is up): online for
/// an hour, as far as deploy's verify stage can tell.
pub fn worker_heartbeat(client: &PrefectClient, pool: &str, worker: &str) {
    client
        .post(
            // Test pool names are plain words: no escaping needed.
            &format!("/work_pools/{pool}/workers/heartbeat"),
            &serde_json::json!({"name": worker, "heartbeat_interval_seconds": 3600}),
        )
        .unwrap_or_else(|e| panic!("cannot record a heartbeat in {pool}: {e}"));
}

/// An empty directory of its own (removed and recreated if it exists), outside any git
/// checkout, so that the binary falls back to the file hash as the default version unless a
/// test makes the directory a repository on purpose. `label` must be unique in the run.
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("xtask-tests-{}", std::process::id()))
        .join(label);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Copies the files of `src` into `dst` recursively (existing files are overwritten).
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Waits until `check` holds (polling), up to `secs`.
pub fn wait_for(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    check()
}

/// Compiles the stand-in program `support/<source>` (std only, plain rustc) into
/// `<target tmp>/stand-ins/<program>` unless it is up to date, and returns the binary.
pub fn compile_stand_in(source: &str, program: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/support")
        .join(source);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("stand-ins")
        .join(program);
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join(program);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // The stand-ins share `stand_in_json.rs` (included by path): a change to it rebuilds them too.
    let shared = source.with_file_name("stand_in_json.rs");
    let newest_source = modified(&source).max(modified(&shared));
    if modified(&binary).is_some() && modified(&binary) >= newest_source {
        return binary;
    }
    // An earlier run may still use the binary: build aside, then rename (atomic).
    let staging = dir.join(format!("{program}-{}", std::process::id()));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let crate_name = format!("stand_in_{}", program.replace('-', "_"));
    let out = Command::new(rustc)
        .args(["--edition", "2021", "--crate-name", &crate_name, "-o"])
        .arg(&staging)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("run rustc to build {}: {e}", source.display()));
    assert!(
        out.status.success(),
        "compiling {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&staging, &binary).unwrap();
    binary
}
