//! The Python lock: `app/requirements.lock`, the full dependency set of the one pin
//! (`app/requirements.txt`) with the hash of every file, so that two builds of one commit install
//! the same bytes. The image, the venv and the tests install from it (`pip --require-hashes`);
//! `cargo xtask lock-python` regenerates it with uv (xtask/python-lock-tool.txt).
//!
//! Reading and checking the two files is pure; [`compile`] is the edge that runs uv.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::local::venv::{self, MIN_PYTHON};
use crate::sys::process::{self, shell};

/// The one pin, relative to the repository root.
pub const PIN_FILE: &str = "app/requirements.txt";
/// The lock generated from it, relative to the repository root.
pub const LOCK_FILE: &str = "app/requirements.lock";
/// The hashed pin of the lock tool, relative to the repository root.
pub const TOOL_FILE: &str = "xtask/python-lock-tool.txt";
/// The command that regenerates the lock (written into its header, named in every error).
pub const LOCK_COMMAND: &str = "cargo xtask lock-python";

/// Resolving ~110 packages takes seconds; a stalled index must not hang the command.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// One requirement line: `name==version`, or a name with another specifier (`version` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Normalized as pip compares names (lowercase, runs of `-_.` as one `-`).
    pub name: String,
    pub version: String,
    pub hashes: usize,
    /// 1-based line where the requirement starts.
    pub line: usize,
}

/// The requirement lines of a requirements file, with `\` continuations joined; comments,
/// blank lines and option lines (`--index-url …`) are skipped.
pub fn parse_requirements(text: &str) -> Vec<Requirement> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("");
        let line = if line.trim_start().starts_with('#') {
            ""
        } else {
            line
        };
        if logical.is_empty() {
            start = index + 1;
        }
        let (body, continued) = match line.trim_end().strip_suffix('\\') {
            Some(body) => (body, true),
            None => (line, false),
        };
        logical.push_str(body);
        logical.push(' ');
        if !continued {
            if let Some(req) = requirement(&logical, start) {
                out.push(req);
            }
            logical.clear();
        }
    }
    if let Some(req) = requirement(&logical, start) {
        out.push(req);
    }
    out
}

fn requirement(logical: &str, line: usize) -> Option<Requirement> {
    let mut words = logical.split_whitespace();
    let first = words.next()?;
    if first.starts_with('-') {
        return None;
    }
    let spec = logical.split(';').next().unwrap_or("").trim();
    let spec = spec.split_whitespace().next().unwrap_or("");
    let name_end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(spec.len());
    let name = normalize(&spec[..name_end]);
    if name.is_empty() {
        return None;
    }
    let rest = spec[name_end..]
        .trim_start_matches(|c| c != '=' && c != '<' && c != '>' && c != '!' && c != '~');
    let version = rest.strip_prefix("==").unwrap_or("").trim().to_string();
    let hashes = logical
        .split_whitespace()
        .filter(|w| w.starts_with("--hash="))
        .count();
    Some(Requirement {
        name,
        version,
        hashes,
        line,
    })
}

/// A distribution name as pip compares them (PEP 503).
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if "-_.".contains(c) {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('-');
        }
        separator = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Why the lock does not match the pin (empty: it does): a pinned package missing from the lock
/// or locked at another version, a lock entry that is not `==` a version or has no hash.
pub fn lock_problems(pin_text: &str, lock_text: &str) -> Vec<String> {
    let pins = parse_requirements(pin_text);
    let locked = parse_requirements(lock_text);
    let mut problems = Vec::new();
    if pins.is_empty() {
        problems.push(format!("{PIN_FILE} pins nothing"));
    }
    for pin in &pins {
        match locked.iter().find(|l| l.name == pin.name) {
            None => problems.push(format!(
                "{PIN_FILE}:{} pins {} but {LOCK_FILE} does not have it",
                pin.line, pin.name
            )),
            Some(l) if !pin.version.is_empty() && l.version != pin.version => {
                problems.push(format!(
                    "{PIN_FILE}:{} pins {}=={} but {LOCK_FILE}:{} has {}=={}",
                    pin.line, pin.name, pin.version, l.line, l.name, l.version
                ))
            }
            Some(_) => {}
        }
    }
    for l in &locked {
        if l.version.is_empty() {
            problems.push(format!(
                "{LOCK_FILE}:{}: {} is not pinned to one version (`==`)",
                l.line, l.name
            ));
        }
        if l.hashes == 0 {
            problems.push(format!("{LOCK_FILE}:{}: {} has no --hash", l.line, l.name));
        }
    }
    problems
}

/// Reads both files under `root` and fails, naming each mismatch, unless the lock matches the pin.
pub fn check(root: &Path) -> Result<()> {
    let pin = read(&root.join(PIN_FILE))?;
    let lock = read(&root.join(LOCK_FILE))?;
    let problems = lock_problems(&pin, &lock);
    if !problems.is_empty() {
        bail!(
            "{LOCK_FILE} does not match {PIN_FILE}:\n  {}\nregenerate it with `{LOCK_COMMAND}`",
            problems.join("\n  ")
        );
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {} (the Python lock is generated from the pin by `{LOCK_COMMAND}`)",
            path.display()
        )
    })
}

/// Regenerates the lock under `root` from the pin with uv (installed by hash into `tool_venv`),
/// for every Python from [`MIN_PYTHON`] on and every platform, then checks it.
pub fn compile(root: &Path, tool_venv: &Path) -> Result<()> {
    let tools = venv::ensure_tools(tool_venv, &root.join(TOOL_FILE), &["uv"])?;
    let uv = tools.bin("uv");
    let python = format!("{}.{}", MIN_PYTHON.0, MIN_PYTHON.1);
    let sh = shell()?;
    sh.change_dir(root);
    let run = cmd!(
        sh,
        "{uv} pip compile {PIN_FILE} --universal --python-version {python} --generate-hashes
            --custom-compile-command {LOCK_COMMAND} --output-file {LOCK_FILE} --quiet"
    );
    let out = process::capture_within(run, COMPILE_TIMEOUT, process::MAX_CAPTURED_BYTES)
        .context("cannot run uv")?;
    if !out.status.success() {
        bail!(
            "`uv pip compile` failed ({}):\n{}\nuv reads the index from UV_INDEX_URL and trusts SSL_CERT_FILE",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    check(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = "# This file was autogenerated by uv via the following command:\n\
#    cargo xtask lock-python\n\
Prefect==3.9.1 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via -r app/requirements.txt\n\
async-timeout==5.0.1 ; python_full_version < '3.11.3' \\\n    --hash=sha256:cc\n    # via\n    #   prefect\n";

    #[test]
    fn reads_continued_lines_with_markers_and_hashes() {
        let reqs = parse_requirements(LOCK);
        assert_eq!(
            reqs,
            vec![
                Requirement {
                    name: "prefect".into(),
                    version: "3.9.1".into(),
                    hashes: 2,
                    line: 3
                },
                Requirement {
                    name: "async-timeout".into(),
                    version: "5.0.1".into(),
                    hashes: 1,
                    line: 7
                },
            ]
        );
    }

    #[test]
    fn names_compare_as_pip_compares_them() {
        assert_eq!(normalize("Typing_Extensions"), "typing-extensions");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("a--_b"), "a-b");
    }

    #[test]
    fn a_matching_lock_has_no_problems() {
        assert!(lock_problems("prefect==3.9.1\n", LOCK).is_empty());
        // A pin without a version only needs the package in the lock.
        assert!(lock_problems("prefect>=3\n", LOCK).is_empty());
    }

    #[test]
    fn a_lock_for_another_pin_is_named_with_both_lines() {
        let problems = lock_problems("# the pin\nprefect==3.9.2\n", LOCK);
        assert_eq!(
            problems,
            vec!["app/requirements.txt:2 pins prefect==3.9.2 but app/requirements.lock:3 has prefect==3.9.1"]
        );
        let problems = lock_problems("prefect==3.9.1\nhttpx==0.28.1\n", LOCK);
        assert_eq!(
            problems,
            vec!["app/requirements.txt:2 pins httpx but app/requirements.lock does not have it"]
        );
    }

    #[test]
    fn unhashed_or_unpinned_lock_entries_are_problems() {
        let problems = lock_problems(
            "prefect==3.9.1\n",
            "prefect==3.9.1\nanyio>=4 --hash=sha256:aa\n",
        );
        assert_eq!(
            problems,
            vec![
                "app/requirements.lock:1: prefect has no --hash",
                "app/requirements.lock:2: anyio is not pinned to one version (`==`)",
            ]
        );
        assert_eq!(
            lock_problems("", LOCK),
            vec!["app/requirements.txt pins nothing"]
        );
    }

    /// The committed lock is the lock of the committed pin: this fails when the pin changes and
    /// the lock was not regenerated.
    #[test]
    fn the_committed_lock_matches_the_pin() {
        check(&crate::project::repo_root()).unwrap();
        let lock = std::fs::read_to_string(crate::project::repo_root().join(LOCK_FILE)).unwrap();
        let prefect = parse_requirements(&lock)
            .into_iter()
            .find(|r| r.name == "prefect")
            .expect("the lock has prefect");
        assert_eq!(prefect.version, crate::project::PREFECT_VERSION);
        assert!(
            parse_requirements(&lock).len() > 50,
            "the lock holds the whole dependency set, not only the pin"
        );
    }
}
