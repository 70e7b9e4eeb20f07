//! A stand-in `gh` (the GitHub CLI) for the integration tests: GitHub cannot be reached from a
//! test. The tests compile it with rustc (std only, no crate) and put it first on PATH as `gh`.
//!
//! It behaves like `gh api` against one repository's issues and comments, kept as files in
//! `$FAKE_GH_STATE` (`issues/<n>/{title,body,state,pull_request}`, `comments/<id>/{issue,body,user}`):
//! - `gh api [--paginate] [--method M] repos/OWNER/REPO/PATH [-f key=value]…`, for
//!   `GET issues?…`, `POST issues`, `PATCH issues/<n>`, `GET issues/<n>/comments?…`,
//!   `POST issues/<n>/comments`, `PATCH issues/comments/<id>`; the repository must be
//!   `$FAKE_GH_REPO` (else HTTP 404, like GitHub);
//! - listings come in pages of two, as gh prints them: page 1 only without `--paginate`, every
//!   page as its own JSON array with it;
//! - like gh on Actions, it refuses to run without GH_TOKEN (or GITHUB_TOKEN);
//! - `$FAKE_GH_FORBID=<text>`: a call whose `METHOD path` contains it fails with HTTP 403, as a
//!   read-only token does;
//! - every call is appended to `$FAKE_GH_LOG` as one line `METHOD path`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::exit;

// Compiled on its own (no crates): the JSON text helper is shared by path.
#[path = "stand_in_json.rs"]
mod stand_in_json;
use stand_in_json::json_string;

const PAGE: usize = 2;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let token = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if !token("GH_TOKEN") && !token("GITHUB_TOKEN") {
        eprintln!("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable. Example:\n  env:\n    GH_TOKEN: ${{{{ github.token }}}}");
        exit(4);
    }
    if args.first().map(String::as_str) != Some("api") {
        fail(&format!("fake gh does not support `{}`", args.join(" ")));
    }
    let mut paginate = false;
    let mut method: Option<String> = None;
    let mut path: Option<String> = None;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--paginate" => paginate = true,
            "--method" | "-X" => method = rest.next().cloned(),
            "-f" | "--raw-field" => {
                let field = rest.next().cloned().unwrap_or_default();
                match field.split_once('=') {
                    Some((k, v)) => fields.push((k.to_string(), v.to_string())),
                    None => fail(&format!("field {field:?} is not key=value")),
                }
            }
            other if other.starts_with('-') => fail(&format!("fake gh does not support {other}")),
            other if path.is_none() => path = Some(other.to_string()),
            other => fail(&format!("unexpected argument {other}")),
        }
    }
    let path = path.unwrap_or_else(|| fail("no endpoint"));
    // gh's rule: fields make it a POST unless a method is given.
    let method = method.unwrap_or_else(|| if fields.is_empty() { "GET" } else { "POST" }.into());
    log(&format!("{method} {path}"));
    if let Ok(forbid) = std::env::var("FAKE_GH_FORBID") {
        if !forbid.is_empty() && format!("{method} {path}").contains(&forbid) {
            eprintln!("gh: Resource not accessible by integration (HTTP 403)");
            exit(1);
        }
    }
    let repo = std::env::var("FAKE_GH_REPO").unwrap_or_default();
    let Some(endpoint) = path.strip_prefix(&format!("repos/{repo}/")) else {
        eprintln!("gh: Not Found (HTTP 404)");
        exit(1);
    };
    let (endpoint, query) = endpoint.split_once('?').unwrap_or((endpoint, ""));
    let state = PathBuf::from(std::env::var("FAKE_GH_STATE").expect("FAKE_GH_STATE"));
    let parts: Vec<&str> = endpoint.split('/').collect();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["issues"]) => {
            let open_only = !query.contains("state=all") && !query.contains("state=closed");
            let items: Vec<String> = numbers(&state.join("issues"))
                .into_iter()
                .filter(|n| !open_only || read(&state.join(format!("issues/{n}/state"))) == "open")
                .map(|n| issue_json(&state, n))
                .collect();
            print_pages(&items, paginate);
        }
        ("POST", ["issues"]) => {
            let n = numbers(&state.join("issues")).last().map_or(1, |n| n + 1);
            let dir = state.join(format!("issues/{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            write(&dir.join("title"), &field("title").unwrap_or_else(|| fail("title is required")));
            write(&dir.join("body"), &field("body").unwrap_or_default());
            write(&dir.join("state"), "open");
            println!("{}", issue_json(&state, n));
        }
        ("PATCH", ["issues", n]) => {
            let dir = existing(&state.join(format!("issues/{n}")));
            for (key, value) in &fields {
                match key.as_str() {
                    "title" | "body" | "state" | "state_reason" => write(&dir.join(key), value),
                    other => fail(&format!("unknown issue field {other}")),
                }
            }
            println!("{}", issue_json(&state, n.parse().unwrap()));
        }
        ("GET", ["issues", n, "comments"]) => {
            existing(&state.join(format!("issues/{n}")));
            let items: Vec<String> = numbers(&state.join("comments"))
                .into_iter()
                .filter(|id| read(&state.join(format!("comments/{id}/issue"))) == *n)
                .map(|id| comment_json(&state, id))
                .collect();
            print_pages(&items, paginate);
        }
        ("POST", ["issues", n, "comments"]) => {
            existing(&state.join(format!("issues/{n}")));
            let id = numbers(&state.join("comments")).last().map_or(1000, |id| id + 1);
            let dir = state.join(format!("comments/{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            write(&dir.join("issue"), n);
            write(&dir.join("body"), &field("body").unwrap_or_else(|| fail("body is required")));
            write(&dir.join("user"), "github-actions[bot]");
            println!("{}", comment_json(&state, id));
        }
        ("PATCH", ["issues", "comments", id]) => {
            let dir = existing(&state.join(format!("comments/{id}")));
            write(&dir.join("body"), &field("body").unwrap_or_else(|| fail("body is required")));
            println!("{}", comment_json(&state, id.parse().unwrap()));
        }
        _ => fail(&format!("fake gh does not support {method} {path}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("gh: {message}");
    exit(1)
}

fn log(line: &str) {
    if let Ok(path) = std::env::var("FAKE_GH_LOG") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open FAKE_GH_LOG");
        writeln!(file, "{line}").expect("write FAKE_GH_LOG");
    }
}

fn existing(dir: &Path) -> PathBuf {
    if !dir.is_dir() {
        eprintln!("gh: Not Found (HTTP 404)");
        exit(1);
    }
    dir.to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The numeric directory names under `dir`, ascending.
fn numbers(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

fn print_pages(items: &[String], paginate: bool) {
    let pages: Vec<&[String]> = if items.is_empty() {
        vec![&[]]
    } else {
        items.chunks(PAGE).collect()
    };
    let shown = if paginate { &pages[..] } else { &pages[..1] };
    for page in shown {
        print!("[{}]", page.join(","));
    }
    println!();
}

fn issue_json(state: &Path, n: u64) -> String {
    let dir = state.join(format!("issues/{n}"));
    let pull_request = if dir.join("pull_request").exists() {
        format!(",\"pull_request\":{{\"url\":\"https://api.github.invalid/pulls/{n}\"}}")
    } else {
        String::new()
    };
    format!(
        "{{\"number\":{n},\"title\":{},\"body\":{},\"state\":{}{pull_request}}}",
        json_string(&read(&dir.join("title"))),
        json_string(&read(&dir.join("body"))),
        json_string(&read(&dir.join("state")))
    )
}

fn comment_json(state: &Path, id: u64) -> String {
    let dir = state.join(format!("comments/{id}"));
    format!(
        "{{\"id\":{id},\"body\":{},\"user\":{{\"login\":{}}}}}",
        json_string(&read(&dir.join("body"))),
        json_string(&read(&dir.join("user")))
    )
}

