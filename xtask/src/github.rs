//! GitHub from CI, through the `gh` CLI (`gh api`): the plan of a pull request as one comment,
//! updated in place on every push, and an environment's drift as one issue, opened or updated
//! while the check finds drift and closed when the server is in sync again.
//!
//! The comment and the issue are found by a marker (an HTML comment, invisible when rendered) at
//! the start of their body, so a title edited by hand or other comments change nothing. Which
//! one to act on and what to do is pure ([`find_marked`], [`drift_action`]); `gh` runs at the edge.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use xshell::cmd;

use crate::sys::env_vars::EnvVars;
use crate::sys::process::{self, shell};
use crate::sys::report::code;

/// GitHub refuses comment and issue bodies longer than this (characters).
const BODY_LIMIT: usize = 65_536;
/// The body is one `gh` argument; Linux refuses a single argument over 128 KiB.
const BODY_BYTES: usize = 120_000;

/// One `gh api` call is given up on after this long (a hung network must not hang CI).
const GH_TIMEOUT: Duration = Duration::from_secs(60);

/// The marker of the comment or issue named `key` (`plan-prod`, `drift-dev`).
pub fn marker(key: &str) -> String {
    format!("<!-- xtask:{key} -->")
}

/// `marker`, a blank line and `text`, cut to GitHub's limit with a note saying where the rest is.
pub fn body(marker: &str, text: &str) -> String {
    let note = "\n\n… (cut to GitHub's size limit; the whole report is in the job log)\n";
    let full = format!("{marker}\n\n{text}");
    if full.chars().count() <= BODY_LIMIT && full.len() <= BODY_BYTES {
        return full;
    }
    let (keep_chars, keep_bytes) = (BODY_LIMIT - note.chars().count(), BODY_BYTES - note.len());
    let mut cut = String::new();
    for c in full.chars().take(keep_chars) {
        if cut.len() + c.len_utf8() > keep_bytes {
            break;
        }
        cut.push(c);
    }
    cut.push_str(note);
    cut
}

/// Of `items` (a listing of comments or issues), the first whose body starts with `marker`, as
/// its `id_key` (`id` for a comment, `number` for an issue). Pull requests in an issue listing
/// are skipped.
pub fn find_marked(items: &[Value], marker: &str, id_key: &str) -> Option<u64> {
    items
        .iter()
        .filter(|item| item.get("pull_request").is_none())
        .find(|item| {
            item.get("body")
                .and_then(Value::as_str)
                .is_some_and(|body| body.starts_with(marker))
        })
        .and_then(|item| item.get(id_key)?.as_u64())
}

/// What the drift issue needs after a `register-flows --check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftAction {
    Open,
    Update(u64),
    Close(u64),
    Nothing,
}

/// From `register-flows --check`'s exit code and the open drift issue (if any). An exit code
/// other than 0 (in sync) and 2 (drift) is an error: the check itself failed, and the issue
/// must not be closed (nor opened) on a failed check.
pub fn drift_action(check_exit: u8, open_issue: Option<u64>) -> Result<DriftAction> {
    Ok(match (check_exit, open_issue) {
        (code::DRIFT, Some(n)) => DriftAction::Update(n),
        (code::DRIFT, None) => DriftAction::Open,
        (code::OK, Some(n)) => DriftAction::Close(n),
        (code::OK, None) => DriftAction::Nothing,
        (other, _) => bail!(
            "register-flows --check exited {other} (an error, not drift): the drift issue is left as it is"
        ),
    })
}

/// `gh` for one repository (`owner/name`).
pub struct Gh {
    pub program: PathBuf,
    pub repo: String,
}

impl Gh {
    /// `gh` on PATH, for `repo`.
    pub fn find(repo: &str) -> Result<Gh> {
        let repo = repo.trim();
        let valid = repo.split_once('/').is_some_and(|(owner, name)| {
            !owner.is_empty() && !name.is_empty() && !name.contains('/')
        });
        if !valid {
            bail!(
                "the repository must be `owner/name` (GITHUB_REPOSITORY on Actions), got {repo:?}"
            );
        }
        let program = which::which("gh").map_err(|_| {
            anyhow::anyhow!("`gh` (the GitHub CLI) is not on PATH; GitHub's runners have it")
        })?;
        Ok(Gh {
            program,
            repo: repo.to_string(),
        })
    }

    /// Every item of a listing (`gh api --paginate`, which prints one JSON array per page).
    fn list(&self, path: &str) -> Result<Vec<Value>> {
        let sh = shell()?;
        let gh = &self.program;
        let path = format!("repos/{}/{path}", self.repo);
        let stdout = self.run(cmd!(sh, "{gh} api --paginate {path}"), &path)?;
        let mut items = Vec::new();
        for page in serde_json::Deserializer::from_str(&stdout).into_iter::<Value>() {
            match page.with_context(|| format!("gh api {path}: the answer is not JSON"))? {
                Value::Array(page) => items.extend(page),
                other => bail!("gh api {path}: expected a JSON array, got {other}"),
            }
        }
        Ok(items)
    }

    /// A write: `gh api --method METHOD PATH -f key=value…` (raw string fields).
    fn write(&self, method: &str, path: &str, fields: &[(&str, &str)]) -> Result<Value> {
        let sh = shell()?;
        let gh = &self.program;
        let path = format!("repos/{}/{path}", self.repo);
        let args: Vec<String> = fields
            .iter()
            .flat_map(|(key, value)| ["-f".to_string(), format!("{key}={value}")])
            .collect();
        let what = format!("{method} {path}");
        let stdout = self.run(
            cmd!(sh, "{gh} api --method {method} {path} {args...}"),
            &what,
        )?;
        serde_json::from_str(&stdout)
            .with_context(|| format!("gh api {what}: the answer is not JSON"))
    }

    fn run(&self, cmd: xshell::Cmd<'_>, what: &str) -> Result<String> {
        let out = process::run_with_timeout(cmd, GH_TIMEOUT, |_| {})?;
        if out.timed_out {
            bail!("gh api {what}: no answer after {}s", GH_TIMEOUT.as_secs());
        }
        if !out.success() {
            bail!(
                "gh api {what} failed ({}): {}",
                out.code
                    .map_or("killed".to_string(), |c| format!("exit {c}")),
                out.tail.join("\n").trim()
            );
        }
        Ok(out.stdout)
    }
}

/// What happened to the comment or issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    Created(u64),
    Updated(u64),
    Closed(u64),
    Nothing,
}

impl std::fmt::Display for Posted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Posted::Created(n) => write!(f, "created #{n}"),
            Posted::Updated(n) => write!(f, "updated #{n}"),
            Posted::Closed(n) => write!(f, "closed #{n}"),
            Posted::Nothing => write!(f, "nothing to do"),
        }
    }
}

/// Posts `text` as the pull request's comment `key`: creates it the first time, edits it after.
pub fn upsert_pr_comment(gh: &Gh, pr: u64, key: &str, text: &str) -> Result<Posted> {
    let marker = marker(key);
    let comments = gh.list(&format!("issues/{pr}/comments?per_page=100"))?;
    let body = body(&marker, text);
    match find_marked(&comments, &marker, "id") {
        Some(id) => {
            gh.write(
                "PATCH",
                &format!("issues/comments/{id}"),
                &[("body", &body)],
            )?;
            Ok(Posted::Updated(id))
        }
        None => {
            let created = gh.write("POST", &format!("issues/{pr}/comments"), &[("body", &body)])?;
            Ok(Posted::Created(
                created.get("id").and_then(Value::as_u64).unwrap_or(0),
            ))
        }
    }
}

/// Brings `env`'s drift issue in line with a `register-flows --check` that exited `check_exit`
/// and printed `report`: opens or updates it on drift, closes it (with a comment) when in sync.
pub fn sync_drift_issue(
    gh: &Gh,
    env: &str,
    check_exit: u8,
    report: &str,
    run_url: Option<&str>,
) -> Result<Posted> {
    let marker = marker(&format!("drift-{env}"));
    let issues = gh.list("issues?state=open&per_page=100")?;
    let seen = run_url
        .map(|url| format!("Seen by [the scheduled check]({url})."))
        .unwrap_or_else(|| "Seen by the scheduled check.".to_string());
    match drift_action(check_exit, find_marked(&issues, &marker, "number"))? {
        DriftAction::Open => {
            let text = format!("{seen} `cargo xtask register-flows --env {env}` puts the server back; this issue closes itself when the check finds it in sync.\n\n{report}");
            let created = gh.write(
                "POST",
                "issues",
                &[
                    ("title", &drift_title(env)),
                    ("body", &body(&marker, &text)),
                ],
            )?;
            Ok(Posted::Created(
                created.get("number").and_then(Value::as_u64).unwrap_or(0),
            ))
        }
        DriftAction::Update(n) => {
            let text = format!("{seen} `cargo xtask register-flows --env {env}` puts the server back; this issue closes itself when the check finds it in sync.\n\n{report}");
            gh.write(
                "PATCH",
                &format!("issues/{n}"),
                &[("body", &body(&marker, &text))],
            )?;
            Ok(Posted::Updated(n))
        }
        DriftAction::Close(n) => {
            let note = format!("In sync again. {seen}");
            gh.write("POST", &format!("issues/{n}/comments"), &[("body", &note)])?;
            gh.write(
                "PATCH",
                &format!("issues/{n}"),
                &[("state", "closed"), ("state_reason", "completed")],
            )?;
            Ok(Posted::Closed(n))
        }
        DriftAction::Nothing => Ok(Posted::Nothing),
    }
}

/// The Actions run that is running this, from the variables every job has.
pub fn run_url(env: &EnvVars) -> Option<String> {
    let [server, repo, run] = ["GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"]
        .map(|name| env.get(name).filter(|v| !v.is_empty()));
    Some(format!("{}/{}/actions/runs/{}", server?, repo?, run?))
}

/// The drift issue's title.
pub fn drift_title(env: &str) -> String {
    format!("Drift: the {env} Prefect server differs from its prefect yaml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_marked_item_only() {
        let m = marker("plan-prod");
        let comments = vec![
            json!({"id": 1, "body": "LGTM"}),
            json!({"id": 2, "body": format!("quoting {m}")}),
            json!({"id": 3, "body": format!("{m}\n\nplan")}),
            json!({"id": 4, "body": format!("{m}\n\nlater duplicate")}),
        ];
        assert_eq!(find_marked(&comments, &m, "id"), Some(3));
        assert_eq!(find_marked(&comments, &marker("plan-dev"), "id"), None);
        let issues = vec![
            json!({"number": 7, "body": format!("{m}"), "pull_request": {}}),
            json!({"number": 8, "body": null}),
        ];
        assert_eq!(find_marked(&issues, &m, "number"), None);
    }

    #[test]
    fn drift_action_follows_the_check() {
        assert_eq!(drift_action(2, None).unwrap(), DriftAction::Open);
        assert_eq!(drift_action(2, Some(5)).unwrap(), DriftAction::Update(5));
        assert_eq!(drift_action(0, Some(5)).unwrap(), DriftAction::Close(5));
        assert_eq!(drift_action(0, None).unwrap(), DriftAction::Nothing);
        let err = drift_action(1, Some(5)).unwrap_err().to_string();
        assert!(err.contains("left as it is"), "{err}");
    }

    #[test]
    fn bodies_start_with_the_marker_and_fit_githubs_limit() {
        let m = marker("drift-prod");
        assert_eq!(body(&m, "x"), format!("{m}\n\nx"));
        let long = "e".repeat(BODY_LIMIT * 2);
        let cut = body(&m, &long);
        assert!(cut.starts_with(&m));
        assert_eq!(cut.chars().count(), BODY_LIMIT);
        let wide = body(&m, &"→".repeat(BODY_LIMIT));
        assert!(wide.len() <= BODY_BYTES && wide.chars().count() < BODY_LIMIT);
        assert!(
            cut.ends_with("the whole report is in the job log)\n"),
            "{}",
            &cut[cut.len() - 80..]
        );
    }

    #[test]
    fn repository_must_be_owner_slash_name() {
        for bad in ["", "owner", "/name", "owner/", "a/b/c"] {
            let err = Gh::find(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("owner/name"), "{bad:?}: {err}");
        }
    }
}
