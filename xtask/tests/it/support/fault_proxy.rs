//! A fault-injecting HTTP/1.1 proxy for integration tests: sits between the xtask and a real
//! Prefect server, counts requests, and makes chosen writes fail (an error status, a reset
//! connection before or after the server saw the request, a delay) or answers 503 at random.
//! std::net and threads only; one request per connection (`Connection: close` to both sides).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do to a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answer this status without forwarding (the server never sees the request).
    Status(u16),
    /// Close the connection without forwarding.
    ResetBefore,
    /// Forward, let the server apply it, then close without answering (outcome unknown to the client).
    ResetAfter,
    /// Wait, then forward.
    Delay(Duration),
}

/// Write numbers (`n`) count the writes the server took or refused for good: a write the server
/// answered 503 (busy, which the client sends again) gives its number back, so that the n-th
/// write is the same one on a busy machine as on an idle one.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// (n, fault): the n-th write (1-based) gets `fault`.
    pub nth_write: Option<(usize, Fault)>,
    /// Further (n, fault) pairs, like `nth_write`.
    pub more_writes: Vec<(usize, Fault)>,
    /// Every write from the n-th on gets `fault` (a server that stays broken).
    pub writes_from: Option<(usize, Fault)>,
    /// Every write gets this fault (e.g. a delay, to interrupt mid-apply).
    pub every_write: Option<Fault>,
    /// Probability (0..1) that any request is answered 503 without forwarding.
    pub random_503: f64,
    /// Called after each write the server answered, before the answer reaches the client: a
    /// concurrent writer that always gets in between a write and the read that follows it.
    pub after_write: Option<AfterWrite>,
}

/// A hook run with the method and path of a write the server has answered.
#[derive(Clone)]
pub struct AfterWrite(pub Arc<WriteHook>);

pub type WriteHook = dyn Fn(&str, &str) + Send + Sync;

impl std::fmt::Debug for AfterWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterWrite(..)")
    }
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// The status sent back, or "reset".
    pub outcome: String,
    pub is_write: bool,
}

struct Shared {
    upstream: String,
    rules: Mutex<Rules>,
    writes: AtomicUsize,
    log: Mutex<Vec<Logged>>,
    rng: AtomicU64,
    stopped: AtomicBool,
    /// Ids of the lock variables created through the proxy (their release is `DELETE
    /// /variables/<id>`).
    lock_ids: Mutex<Vec<String>>,
}

pub struct FaultProxy {
    /// The API URL to give the xtask (`http://127.0.0.1:<port>/api`).
    pub api_url: String,
    shared: Arc<Shared>,
    port: u16,
}

/// A request for the run's lock (`xtask::sync::lock`): taking it (a POST of a variable tagged
/// `xtask-lock`) and releasing it (by name, or `DELETE /variables/<id>` of one created here). Not
/// counted as a write and given no write fault (random 503s still apply): the scenarios count
/// and break the deployment writes; what a lock does under faults is tested on its own.
fn is_lock_request(path: &str, body: &[u8], lock_ids: &[String]) -> bool {
    is_lock_create(path, body)
        || path.contains("/variables/name/xtask-lock-")
        || lock_ids
            .iter()
            .any(|id| path.ends_with(&format!("/variables/{id}")))
}

fn is_lock_create(path: &str, body: &[u8]) -> bool {
    let tag = xtask::sync::lock::LOCK_TAG.as_bytes();
    path.ends_with("/variables/") && body.windows(tag.len()).any(|w| w == tag)
}

/// The `"id"` of a JSON object in an HTTP response (head and body, raw).
fn response_id(response: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(response);
    let body = text.split("\r\n\r\n").nth(1)?;
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("id")?.as_str().map(str::to_string)
}

/// A write: anything but GET, except the read-only `…/filter` and `…/count` POSTs.
pub fn is_write(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    method != "GET"
        && !path.ends_with("/filter")
        && !path.ends_with("/count")
        && !path.contains("/csrf-token")
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream_api_url` (e.g. `http://127.0.0.1:4440/api`).
    pub fn start(upstream_api_url: &str, rules: Rules) -> FaultProxy {
        let without_scheme = upstream_api_url.trim_start_matches("http://");
        let (authority, api_path) = match without_scheme.find('/') {
            Some(i) => (&without_scheme[..i], &without_scheme[i..]),
            None => (without_scheme, ""),
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            upstream: authority.to_string(),
            rules: Mutex::new(rules),
            writes: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            stopped: AtomicBool::new(false),
            lock_ids: Mutex::new(Vec::new()),
        });
        let accept_shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept_shared.clone();
                std::thread::spawn(move || handle(stream, &shared));
            }
        });
        FaultProxy {
            api_url: format!("http://127.0.0.1:{port}{api_path}"),
            shared,
            port,
        }
    }

    pub fn set_rules(&self, rules: Rules) {
        *self.shared.rules.lock().unwrap() = rules;
        self.shared.writes.store(0, Ordering::SeqCst);
    }

    /// Writes seen since start (or the last `set_rules`/`reset_counts`), faulted ones included,
    /// those the server answered 503 (and the client sends again) not.
    pub fn writes(&self) -> usize {
        self.shared.writes.load(Ordering::SeqCst)
    }

    /// Writes the server answered with a success (the SQLite server answers 503 under concurrent
    /// writes, which the client retries: those attempts are not counted here).
    pub fn successful_writes(&self) -> usize {
        self.log()
            .iter()
            .filter(|l| l.is_write && l.outcome.starts_with('2'))
            .count()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn reset_counts(&self) {
        self.shared.writes.store(0, Ordering::SeqCst);
        self.shared.log.lock().unwrap().clear();
    }

    /// The writes seen, as `METHOD path` lines (for assertion messages).
    pub fn write_lines(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l.is_write)
            .map(|l| format!("{} {} → {}", l.method, l.path, l.outcome))
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn next_random(shared: &Shared) -> f64 {
    // xorshift64*: deterministic per proxy, good enough for fault injection.
    let mut x = shared.rng.load(Ordering::SeqCst);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    shared.rng.store(x, Ordering::SeqCst);
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

fn handle(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Some((head, body)) = read_request(&client) else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let lock_request = is_lock_request(&path, &body, &shared.lock_ids.lock().unwrap());
    let write = is_write(&method, &path) && !lock_request;
    let fault = {
        let rules = shared.rules.lock().unwrap().clone();
        let mut fault = None;
        if write {
            let n = shared.writes.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some((k, f)) = rules.nth_write {
                if k == n {
                    fault = Some(f);
                }
            }
            if let Some((_, f)) = rules.more_writes.iter().find(|(k, _)| *k == n) {
                fault = Some(*f);
            }
            if let Some((k, f)) = rules.writes_from {
                if n >= k {
                    fault = Some(f);
                }
            }
            if fault.is_none() {
                fault = rules.every_write;
            }
        }
        if fault.is_none() && rules.random_503 > 0.0 && next_random(shared) < rules.random_503 {
            fault = Some(Fault::Status(503));
        }
        fault
    };
    let log = |outcome: String| {
        shared.log.lock().unwrap().push(Logged {
            method: method.clone(),
            path: path.clone(),
            outcome,
            is_write: write,
        });
    };
    match fault {
        Some(Fault::Status(code)) => {
            let body = format!("{{\"detail\":\"injected fault {code}\"}}");
            let response = format!(
                "HTTP/1.1 {code} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes());
            log(code.to_string());
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Some(Fault::ResetBefore) => {
            log("reset".into());
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Some(Fault::Delay(d)) => std::thread::sleep(d),
        _ => {}
    }
    // Forward with `Connection: close` and relay the whole answer.
    let mut forwarded = String::new();
    forwarded.push_str(&request_line);
    forwarded.push_str("\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("connection: close\r\n\r\n");
    let Ok(mut upstream) = TcpStream::connect(&shared.upstream) else {
        log("upstream down".into());
        return;
    };
    let _ = upstream.set_read_timeout(Some(Duration::from_secs(120)));
    if upstream
        .write_all(forwarded.as_bytes())
        .and_then(|_| upstream.write_all(&body))
        .is_err()
    {
        log("upstream write failed".into());
        return;
    }
    let mut response = Vec::new();
    let _ = upstream.read_to_end(&mut response);
    if fault == Some(Fault::ResetAfter) {
        log("reset after forward".into());
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let status = String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)
        .unwrap_or("?")
        .to_string();
    if write && status == "503" {
        // (Never below zero: the counts may have been reset meanwhile.)
        let _ = shared
            .writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
    if is_lock_create(&path, &body) {
        if let Some(id) = response_id(&response) {
            shared.lock_ids.lock().unwrap().push(id);
        }
    }
    if write {
        let hook = shared.rules.lock().unwrap().after_write.clone();
        if let Some(AfterWrite(hook)) = hook {
            hook(&method, &path);
        }
    }
    log(status);
    let _ = client.write_all(&response);
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads one request: the head (up to the blank line) and a `content-length` body.
fn read_request(stream: &TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}
