//! A stand-in `fly` for the integration tests (Fly.io cannot be reached from a test). The tests
//! compile it with rustc (std only, no crate) and put it first on PATH as `fly`.
//!
//! It behaves like flyctl where the xtask depends on it:
//! - every call is appended to `$FAKE_FLY_LOG` as one JSON line: argv and the NAMES of the
//!   environment variables (never values);
//! - `secrets list --json` lists the app's secrets (`$FAKE_FLY_SECRETS`, `NAME=VALUE` lines) in
//!   the format `$FAKE_FLY_SECRETS_FORMAT` (`graphql`, `machines`, `status`; default `status`),
//!   names in `$FAKE_FLY_STAGED` (comma-separated) reported as Staged; or prints
//!   `$FAKE_FLY_SECRETS_JSON` verbatim;
//! - `status --json` prints `$FAKE_FLY_STATUS_JSON` or one started machine;
//! - `deploy` reads fly.toml (`-c/--config`, else ./fly.toml) and runs `[deploy] release_command`
//!   the way Fly does: split with shlex rules, no shell, environment = `[env]` plus the app's
//!   secrets (secrets win) plus Fly's own variables and nothing from the caller except PATH, in
//!   the config file's directory (the image's workdir); on failure it prints flyctl's texts and
//!   exits 1;
//! - after the release command, `deploy` replaces the "worker Machine" when `$FAKE_FLY_MACHINE`
//!   names a directory: the process in its `worker.pid` is stopped the way Fly stops a Machine
//!   (fly.toml's `kill_signal`, default SIGINT; SIGKILL after `kill_timeout`, default 5 s; then
//!   whatever the process had started is gone too, as the VM is), and its `start` program
//!   starts the new one (which writes the new `worker.pid`). Each step is a line in its
//!   `events.log`: `stopped pid=… signal=… graceful=true|false ms=…` and `started pid=…`, with
//!   `at=` milliseconds since the epoch;
//! - with `$FAKE_FLY_STATE` (a directory) it keeps the app's releases and Machines as Fly does:
//!   every `deploy` adds a release (`releases --json`: `Version`, `Status` `complete` or `failed`,
//!   `ImageRef`, `CreatedAt`, `Description`) and, when it completes, puts one Machine per
//!   fly.toml `[processes]` group on the new image (`machines list --json`: `id`, `state`,
//!   `config.image`, `image_ref`, `config.metadata.fly_process_group` and
//!   `fly_release_version`); `$FAKE_FLY_STALE=<group>` leaves that group on its old image (a
//!   Machine Fly failed to update);
//! - with `$FAKE_FLY_IMAGES` (a directory) an image is a directory `<images>/<ref with / and : as
//!   _>` holding that release's project: the release command runs there (fly.toml, its `[env]`
//!   and release_command still come from `--config`, as with Fly); an image that is not there is
//!   Fly's "manifest unknown";
//! - `$FAKE_FLY_HANG=deploy` makes `deploy` hang, `$FAKE_FLY_HANG=chatter` makes it hang while
//!   printing a line every 10 ms; `$FAKE_FLY_NOT_LOGGED_IN=1` fails every call like flyctl
//!   without a token.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};
use std::time::{Duration, Instant};

// Compiled on its own (no crates): the JSON text helper is shared by path.
#[path = "stand_in_json.rs"]
mod stand_in_json;
use stand_in_json::json_string;

const MACHINE: &str = "148e1234a5d6e8";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    log_call(&args);
    if std::env::var("FAKE_FLY_NOT_LOGGED_IN").is_ok_and(|v| v == "1") {
        eprintln!("Error: No access token available. Please login with 'flyctl auth login'");
        exit(1);
    }
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match words.as_slice() {
        ["secrets", "list", ..] => secrets_list(),
        ["status", ..] => status(&args),
        ["machines", "list", ..] | ["machine", "list", ..] => machines_list(),
        ["releases", ..] => releases_list(),
        ["deploy", ..] => deploy(&args),
        _ => {
            eprintln!("Error: fake fly does not support `{}`", args.join(" "));
            exit(1);
        }
    }
}

fn log_call(args: &[String]) {
    let Ok(path) = std::env::var("FAKE_FLY_LOG") else {
        return;
    };
    let mut names: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    names.sort();
    let line = format!(
        "{{\"argv\":{},\"env\":{}}}\n",
        json_list(args),
        json_list(&names)
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open FAKE_FLY_LOG");
    file.write_all(line.as_bytes()).expect("write FAKE_FLY_LOG");
}

fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", quoted.join(","))
}


fn flag(args: &[String], names: &[&str]) -> Option<String> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        for name in names {
            if arg == name {
                return iter.next().cloned();
            }
            if let Some(value) = arg.strip_prefix(&format!("{name}=")) {
                return Some(value.to_string());
            }
        }
    }
    None
}

/// The app's secrets: `NAME=VALUE` lines.
fn app_secrets() -> Vec<(String, String)> {
    let Ok(path) = std::env::var("FAKE_FLY_SECRETS") else {
        return Vec::new();
    };
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("FAKE_FLY_SECRETS {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        })
        .collect()
}

fn secrets_list() {
    if let Ok(path) = std::env::var("FAKE_FLY_SECRETS_JSON") {
        print!(
            "{}",
            std::fs::read_to_string(path).expect("FAKE_FLY_SECRETS_JSON")
        );
        return;
    }
    let staged: Vec<String> = std::env::var("FAKE_FLY_STAGED")
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let format = std::env::var("FAKE_FLY_SECRETS_FORMAT").unwrap_or_else(|_| "status".into());
    let entries: Vec<String> = app_secrets()
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let name = json_string(name);
            let digest = format!("\"d1g{i:04}\"");
            match format.as_str() {
                "graphql" => format!("{{\"Name\":{name},\"Digest\":{digest},\"CreatedAt\":\"2024-05-01T10:00:00Z\"}}"),
                "machines" => format!(
                    "{{\"name\":{name},\"digest\":{digest},\"created_at\":\"2025-10-01T10:00:00Z\",\"updated_at\":\"2025-10-02T10:00:00Z\"}}"
                ),
                _ => {
                    let status = if staged.iter().any(|s| json_string(s) == name) { "Staged" } else { "Deployed" };
                    format!("{{\"name\":{name},\"digest\":{digest},\"status\":\"{status}\"}}")
                }
            }
        })
        .collect();
    println!("[{}]", entries.join(","));
}

fn status(args: &[String]) {
    if let Ok(path) = std::env::var("FAKE_FLY_STATUS_JSON") {
        print!(
            "{}",
            std::fs::read_to_string(path).expect("FAKE_FLY_STATUS_JSON")
        );
        return;
    }
    let app = flag(args, &["--app", "-a"]).unwrap_or_default();
    println!(
        "{{\"ID\":{app},\"Name\":{app},\"Deployed\":true,\"Status\":\"deployed\",\"Machines\":[{{\"id\":\"{MACHINE}\",\"state\":\"started\",\"config\":{{\"metadata\":{{\"fly_process_group\":\"app\"}}}}}}]}}",
        app = json_string(&app)
    );
}

fn deploy(args: &[String]) {
    let config = flag(args, &["--config", "-c"])
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fly.toml"));
    let toml = FlyToml::read(&config);
    let app = flag(args, &["--app", "-a"])
        .or(toml.app.clone())
        .unwrap_or_else(|| {
            eprintln!("Error: the config file must contain an app name or --app must be specified");
            exit(1)
        });
    let image = flag(args, &["--image", "-i"]).unwrap_or_else(|| {
        eprintln!("Error: fake fly only deploys prebuilt images (--image)");
        exit(1)
    });
    println!("==> Verifying app config\n--> Verified app config\n==> Building image\nSearching for image '{image}' remotely...");
    if std::env::var("FAKE_FLY_HANG").is_ok_and(|v| v == "deploy") {
        eprintln!("Running {app} release_command: (hanging)");
        std::thread::sleep(Duration::from_secs(3600));
    }
    if std::env::var("FAKE_FLY_HANG").is_ok_and(|v| v == "chatter") {
        // Hangs while printing: a progress line every 10 ms, forever.
        for n in 0u64.. {
            println!("  Waiting for release_command machine {MACHINE} ({n})");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let workdir = match std::env::var("FAKE_FLY_IMAGES") {
        Ok(images) => {
            let dir = Path::new(&images).join(image.replace(['/', ':'], "_"));
            if !dir.is_dir() {
                eprintln!("Error: failed to fetch an image or build from source: image not found: {image}: manifest unknown");
                exit(1);
            }
            dir
        }
        Err(_) => config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    if let Some(release) = &toml.release_command {
        let timeout = flag(args, &["--release-command-timeout"])
            .as_deref()
            .map(go_duration)
            .unwrap_or(Some(Duration::from_secs(300)));
        if let Err(code) = run_release_command(&app, &image, release, &toml, &workdir, timeout) {
            record_release(&image, "failed");
            exit(code);
        }
    }
    println!("Updating existing machines in '{app}' with rolling strategy");
    if let Ok(dir) = std::env::var("FAKE_FLY_MACHINE") {
        replace_machine(Path::new(&dir), &toml);
    }
    let version = record_release(&image, "complete");
    update_machines(&image, &toml, version);
    println!("✓ Machine {MACHINE} is now in a good state\nVisit your newly deployed app at https://{app}.fly.dev/");
}

/// Runs the release command; Err(exit code) after printing flyctl's failure texts.
fn run_release_command(
    app: &str,
    image: &str,
    release: &str,
    toml: &FlyToml,
    workdir: &Path,
    timeout: Option<Duration>,
) -> Result<(), i32> {
    eprintln!("Running {app} release_command: {release}");
    let argv = split(release).unwrap_or_else(|e| {
        eprintln!("Error: failed to parse release command: {e}");
        exit(1)
    });
    let Some((program, rest)) = argv.split_first() else {
        eprintln!("Error: empty release command");
        exit(1)
    };
    let mut env: BTreeMap<String, String> = toml.env.clone();
    env.extend(app_secrets()); // secrets override [env]
    env.insert("RELEASE_COMMAND".into(), "1".into());
    env.insert("FLY_PROCESS_GROUP".into(), "fly_app_release_command".into());
    env.insert("FLY_APP_NAME".into(), app.into());
    env.insert("FLY_IMAGE_REF".into(), image.into());
    env.insert("FLY_MACHINE_ID".into(), MACHINE.into());
    if let Some(region) = &toml.primary_region {
        env.insert("PRIMARY_REGION".into(), region.clone());
    }
    // An image's /app is no git checkout: the sandbox's git ceiling keeps the release command
    // from finding the repository the tests run in (whose `origin` would set the version).
    if let Ok(ceiling) = std::env::var("GIT_CEILING_DIRECTORIES") {
        env.insert("GIT_CEILING_DIRECTORIES".into(), ceiling);
    }
    // The image's PATH: here, the caller's (the test puts the compiled xtask on it).
    let path = std::env::var("PATH").unwrap_or_default();
    let resolved = resolve(program, &path).unwrap_or_else(|| {
        eprintln!("Error release_command failed running on machine {MACHINE} with exit code 127.");
        eprintln!("Error: release command failed - aborting deployment. machine {MACHINE} exited with non-zero status of 127");
        exit(1)
    });
    let mut child = Command::new(resolved)
        .args(rest)
        .env_clear()
        .envs(&env)
        .env("PATH", &path)
        .current_dir(workdir)
        .spawn()
        .unwrap_or_else(|e| {
            eprintln!("Error: release command could not start: {e}");
            exit(1)
        });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for release command") {
            break status;
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            let _ = child.kill();
            eprintln!("Error: release command failed - aborting deployment. error waiting for release_command machine {MACHINE} to finish running: timeout reached");
            return Err(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let code = status.code().unwrap_or(137);
    if code != 0 {
        eprintln!(
            "Error release_command failed running on machine {MACHINE} with exit code {code}."
        );
        eprintln!("Error: release command failed - aborting deployment. machine {MACHINE} exited with non-zero status of {code}");
        return Err(1);
    }
    eprintln!("Starting machine\n✔ release_command {MACHINE} completed successfully");
    Ok(())
}

fn state_file(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var("FAKE_FLY_STATE").ok()?);
    std::fs::create_dir_all(&dir).expect("create FAKE_FLY_STATE");
    Some(dir.join(name))
}

/// One JSON object per line (the fake's own storage), printed as a JSON list.
fn read_records(name: &str) -> Vec<String> {
    state_file(name)
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn write_records(name: &str, records: &[String]) {
    if let Some(path) = state_file(name) {
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(path, text).expect("write the fake's state");
    }
}

/// Appends a release; returns its version.
fn record_release(image: &str, status: &str) -> usize {
    let mut releases = read_records("releases.jsonl");
    let version = releases.len() + 1;
    releases.push(format!(
        "{{\"ID\":\"rel_{version}\",\"Version\":{version},\"Stable\":{stable},\"InProgress\":false,\"Status\":\"{status}\",\"Description\":\"Release\",\"Reason\":\"release\",\"User\":{{\"Email\":\"ci@example.com\"}},\"CreatedAt\":\"2026-01-01T00:{min:02}:{sec:02}Z\",\"ImageRef\":{image}}}",
        stable = status == "complete",
        min = version / 60 % 60,
        sec = version % 60,
        image = json_string(image)
    ));
    write_records("releases.jsonl", &releases);
    version
}

/// One Machine per process group on `image` (a `$FAKE_FLY_STALE` group keeps its old one).
fn update_machines(image: &str, toml: &FlyToml, version: usize) {
    let stale = std::env::var("FAKE_FLY_STALE").unwrap_or_default();
    let old = read_records("machines.jsonl");
    let groups: Vec<String> = if toml.processes.is_empty() {
        vec!["app".into()]
    } else {
        toml.processes.clone()
    };
    let machines: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let id = format!("{MACHINE}{i:02}");
            let previous = old.iter().find(|m| m.contains(&format!("\"id\":\"{id}\"")));
            match previous {
                Some(previous) if *group == stale => previous.clone(),
                _ => machine_json(&id, group, image, version),
            }
        })
        .collect();
    write_records("machines.jsonl", &machines);
}

fn machine_json(id: &str, group: &str, image: &str, version: usize) -> String {
    let (repository, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let (registry, repository) = repository.split_once('/').unwrap_or(("", repository));
    format!(
        "{{\"id\":\"{id}\",\"name\":\"{group}-{id}\",\"state\":\"started\",\"region\":\"iad\",\"image_ref\":{{\"registry\":{},\"repository\":{},\"tag\":{},\"digest\":\"sha256:{version:064}\"}},\"config\":{{\"image\":{},\"metadata\":{{\"fly_process_group\":{},\"fly_release_id\":\"rel_{version}\",\"fly_release_version\":\"{version}\"}}}}}}",
        json_string(registry),
        json_string(repository),
        json_string(tag),
        json_string(image),
        json_string(group)
    )
}

fn machines_list() {
    println!("[{}]", read_records("machines.jsonl").join(","));
}

fn releases_list() {
    // Newest first, as flyctl lists them.
    let mut releases = read_records("releases.jsonl");
    releases.reverse();
    println!("[{}]", releases.join(","));
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn machine_event(dir: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("events.log"))
        .expect("open the machine events log");
    writeln!(file, "{line} at={}", now_ms()).expect("write the machine events log");
}

/// `/proc/<pid>/stat`: (state, parent pid); None when the process is gone.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Every process below `root` (children, grandchildren, …).
fn descendants(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| Some((pid, proc_stat(pid)?.1)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|(_, p)| *p == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found.remove(0);
    found
}

fn signal(pid: u32, name: &str) {
    // A process already gone is no error (kill(1) would say so on stderr).
    let _ = Command::new("kill")
        .args(["-s", name.trim_start_matches("SIG"), "--", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stops the worker Machine as Fly does and starts its replacement.
fn replace_machine(dir: &Path, toml: &FlyToml) {
    let pid_file = dir.join("worker.pid");
    let old: u32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("fake fly: no pid in {}", pid_file.display()));
    let kill_signal = toml.kill_signal.clone().unwrap_or_else(|| "SIGINT".into());
    let kill_timeout = toml
        .kill_timeout
        .as_deref()
        .map(|t| match t.parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => go_duration(t),
        })
        .unwrap_or(Some(Duration::from_secs(5)))
        .expect("kill_timeout");
    println!("Stopping machine (process {old}) with {kill_signal}, up to {kill_timeout:?}");
    let inside = descendants(old);
    let started = Instant::now();
    signal(old, &kill_signal);
    while alive(old) && started.elapsed() < kill_timeout {
        std::thread::sleep(Duration::from_millis(50));
    }
    let graceful = !alive(old);
    if !graceful {
        signal(old, "SIGKILL");
    }
    // The VM is gone: nothing it ran survives.
    for pid in inside {
        signal(pid, "SIGKILL");
    }
    machine_event(
        dir,
        &format!(
            "stopped pid={old} signal={kill_signal} graceful={graceful} ms={}",
            started.elapsed().as_millis()
        ),
    );
    let status = Command::new(dir.join("start"))
        .status()
        .expect("fake fly: run the machine's start program");
    assert!(status.success(), "fake fly: the machine did not start");
    let new = std::fs::read_to_string(&pid_file).unwrap_or_default();
    machine_event(dir, &format!("started pid={}", new.trim()));
    println!("Machine replaced (process {})", new.trim());
}

fn resolve(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// `5m`, `30s`, `1h`, `none` (only what the tests use).
fn go_duration(text: &str) -> Option<Duration> {
    if text == "none" {
        return None;
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("fake fly: unsupported duration {text}"));
    Some(Duration::from_secs(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("fake fly: unsupported duration {text}"),
    }))
}

/// google/shlex as flyctl uses it: quotes, backslashes, `#` comments; no expansion.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => {
                            word.push(chars.next().ok_or("EOF found after escape character")?)
                        }
                        Some(c) => word.push(c),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("EOF found after escape character")?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The few fly.toml keys the fake needs, read with a line-based parser (top-level `key = value`,
/// `[deploy]`, `[env]`). Anything it cannot read in those places is an error, not a guess.
#[derive(Default)]
struct FlyToml {
    app: Option<String>,
    primary_region: Option<String>,
    release_command: Option<String>,
    kill_signal: Option<String>,
    kill_timeout: Option<String>,
    env: BTreeMap<String, String>,
    /// `[processes]` group names, in file order.
    processes: Vec<String>,
}

impl FlyToml {
    fn read(path: &Path) -> FlyToml {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            eprintln!(
                "Error: failed loading app config from {}: {e}",
                path.display()
            );
            exit(1)
        });
        let mut toml = FlyToml::default();
        let mut section = String::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                section = line
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_string();
                continue;
            }
            if !matches!(section.as_str(), "" | "deploy" | "env" | "processes") {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                eprintln!(
                    "Error: {}:{}: cannot read `{line}`",
                    path.display(),
                    index + 1
                );
                exit(1)
            };
            let key = key.trim().trim_matches('"').to_string();
            let value = toml_value(value.trim()).unwrap_or_else(|| {
                eprintln!(
                    "Error: {}:{}: unsupported value in `{line}`",
                    path.display(),
                    index + 1
                );
                exit(1)
            });
            match (section.as_str(), key.as_str()) {
                ("", "app") => toml.app = Some(value),
                ("", "primary_region") => toml.primary_region = Some(value),
                ("", "kill_signal") => toml.kill_signal = Some(value),
                ("", "kill_timeout") => toml.kill_timeout = Some(value),
                ("deploy", "release_command") => toml.release_command = Some(value),
                ("env", _) => {
                    toml.env.insert(key, value);
                }
                ("processes", _) => toml.processes.push(key),
                _ => {}
            }
        }
        toml
    }
}

/// A basic or literal string, or a bare number/boolean (as text); comments after the value.
fn toml_value(text: &str) -> Option<String> {
    if let Some(rest) = text.strip_prefix('\'') {
        return rest.split_once('\'').map(|(v, _)| v.to_string());
    }
    if let Some(rest) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    c => out.push(c),
                },
                c => out.push(c),
            }
        }
        return None;
    }
    let bare = text.split('#').next()?.trim();
    (!bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)))
    .then(|| bare.to_string())
}
