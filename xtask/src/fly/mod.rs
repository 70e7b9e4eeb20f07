//! Everything about flyctl: reading fly.toml, building the exact argv of each `fly` command (so
//! `--dry-run` and tests can show them), running them with an outer timeout, and reading their
//! output. flyctl exits 1 for every kind of failure, so a failed `fly deploy` is classified from
//! its text.
//!
//! Tokens never go on the command line: flyctl reads FLY_API_TOKEN / FLY_ACCESS_TOKEN from the
//! environment it inherits, so no argv built here carries a secret and a printed command is safe.

pub mod checklist;
pub mod machines;
pub mod release_env;
pub mod secrets;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::fly::secrets::{parse_fly_secrets, FlySecrets};
use crate::project::{Env, Project};
use crate::sys::process::{self, shell_quote};
use crate::sys::redact::redact;

pub use crate::sys::process::RunOutput;

// ---------------------------------------------------------------------------------------------
// fly.toml

/// The parts of fly.toml the xtask uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlyToml {
    pub app: Option<String>,
    pub primary_region: Option<String>,
    /// `[deploy] release_command`, run by Fly without a shell in a temporary Machine.
    pub release_command: Option<String>,
    /// `[deploy] release_command_timeout`, a Go duration such as `5m`.
    pub release_command_timeout: Option<String>,
    /// `[env]`: plain (non-secret) variables of every Machine, the release Machine included.
    pub env: BTreeMap<String, String>,
    /// `[processes]`: process group → command.
    pub processes: BTreeMap<String, String>,
    /// `kill_signal`: what Fly sends a Machine's process before stopping it (Fly: SIGINT).
    pub kill_signal: Option<String>,
    /// `kill_timeout`: how long Fly waits after `kill_signal` before SIGKILL (Fly: 5 s).
    pub kill_timeout: Option<Duration>,
}

#[derive(Deserialize)]
struct RawFlyToml {
    app: Option<String>,
    primary_region: Option<String>,
    #[serde(default)]
    deploy: RawDeploy,
    #[serde(default)]
    env: BTreeMap<String, toml::Value>,
    #[serde(default)]
    processes: BTreeMap<String, String>,
    kill_signal: Option<String>,
    kill_timeout: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
struct RawDeploy {
    release_command: Option<String>,
    release_command_timeout: Option<String>,
}

/// Parses fly.toml text; `label` names the file in errors.
pub(crate) fn parse_fly_toml(text: &str, label: &str) -> Result<FlyToml> {
    let raw: RawFlyToml =
        toml::from_str(text).with_context(|| format!("{label} is not valid fly.toml"))?;
    let mut env = BTreeMap::new();
    for (name, value) in raw.env {
        // Fly stores [env] values as strings; numbers and booleans are written as their text.
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => bail!("{label}: [env] {name} must be a string"),
        };
        env.insert(name, text);
    }
    // Fly takes whole seconds or a duration string.
    let kill_timeout = match raw.kill_timeout {
        None => None,
        Some(toml::Value::Integer(secs)) if secs >= 0 => Some(Duration::from_secs(secs as u64)),
        Some(toml::Value::String(text)) => parse_go_duration(&text)
            .ok()
            .flatten()
            .with_context(|| format!("{label}: kill_timeout `{text}` is not a duration like 30s"))
            .map(Some)?,
        Some(other) => bail!(
            "{label}: kill_timeout must be seconds or a duration like 30s, not a {}",
            other.type_str()
        ),
    };
    Ok(FlyToml {
        app: raw.app.filter(|a| !a.is_empty()),
        primary_region: raw.primary_region,
        release_command: raw.deploy.release_command.filter(|c| !c.trim().is_empty()),
        release_command_timeout: raw.deploy.release_command_timeout,
        env,
        processes: raw.processes,
        kill_signal: raw.kill_signal,
        kill_timeout,
    })
}

/// The signals Prefect's worker turns into its graceful stop (3.9.1,
/// `prefect.utilities.processutils.setup_signal_handlers_worker`: the first SIGTERM becomes a
/// SIGINT to itself, the first SIGINT goes to Python's handler; a second one of either kills it).
pub(crate) const WORKER_STOP_SIGNALS: &[&str] = &["SIGTERM", "SIGINT"];

/// What a worker's graceful stop needs at most (measured: ~2 s against a local server; the
/// rest is room for a slow API), and the most Fly allows on shared-CPU Machines.
pub(crate) const WORKER_STOP_TIME: (Duration, Duration) =
    (Duration::from_secs(15), Duration::from_secs(300));

/// Why fly.toml's Machine stop settings would cut a worker's graceful stop short; `None` when
/// they do not (or no worker runs). Fly's defaults are SIGINT and 5 s.
pub(crate) fn worker_stop_problem(toml: &FlyToml) -> Option<String> {
    if toml.worker_pools().is_empty() {
        return None;
    }
    let signal = toml.kill_signal.as_deref().unwrap_or("SIGINT");
    let timeout = toml.kill_timeout.unwrap_or(Duration::from_secs(5));
    let (needed, allowed) = WORKER_STOP_TIME;
    if !WORKER_STOP_SIGNALS.contains(&signal) {
        Some(format!(
            "kill_signal {signal} is not one the Prefect worker stops gracefully on ({})",
            WORKER_STOP_SIGNALS.join(", ")
        ))
    } else if timeout < needed || timeout > allowed {
        Some(format!(
            "kill_timeout {}s is outside {}..={}s: the worker's graceful stop needs up to {}s, \
             shared-CPU Machines allow {}s",
            timeout.as_secs(),
            needed.as_secs(),
            allowed.as_secs(),
            needed.as_secs(),
            allowed.as_secs()
        ))
    } else {
        None
    }
}

/// The fly.toml `[env]` variable that sets `deploy`'s default `--drain-timeout`.
pub const DRAIN_TIMEOUT_VAR: &str = "XTASK_DRAIN_TIMEOUT";

impl FlyToml {
    /// The work pools this app's Machines poll: the `--pool` (`-p`) of every `[processes]`
    /// command that is `… worker start …` (Prefect's worker), in name order.
    pub fn worker_pools(&self) -> Vec<String> {
        let mut pools: Vec<String> = self
            .processes
            .values()
            .filter_map(|command| split_command(command).ok())
            .filter(|argv| argv.windows(2).any(|w| w[0] == "worker" && w[1] == "start"))
            .filter_map(|argv| {
                argv.iter()
                    .enumerate()
                    .find_map(|(i, arg)| match arg.as_str() {
                        "--pool" | "-p" => argv.get(i + 1).cloned(),
                        _ => arg.strip_prefix("--pool=").map(str::to_string),
                    })
            })
            .collect();
        pools.sort();
        pools.dedup();
        pools
    }
}

pub(crate) fn read_fly_toml(path: &Path) -> Result<FlyToml> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_fly_toml(&text, &path.display().to_string())
}

/// Which Fly app and config an environment deploys to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlyTarget {
    /// Passed to flyctl as `--config`.
    pub config: PathBuf,
    pub app: String,
    pub toml: FlyToml,
}

/// Dev config file: when present, `--env dev` uses it (and its `app`) instead of fly.toml.
pub(crate) const DEV_FLY_TOML: &str = "fly-dev.toml";
/// Without fly-dev.toml, the dev app is fly.toml's app with this suffix.
pub(crate) const DEV_APP_SUFFIX: &str = "-dev";

/// Resolves the app for `env`: `--app` wins; prod uses fly.toml's `app`; dev uses fly-dev.toml
/// when it exists, else fly.toml with the app `<app>-dev` (same image, env and release command).
pub fn target(project: &Project, env: Env, app_override: Option<&str>) -> Result<FlyTarget> {
    let dev_toml = project.root.join(DEV_FLY_TOML);
    let (config, dev_suffix) = match env {
        Env::Dev if dev_toml.is_file() => (dev_toml, false),
        Env::Dev => (project.fly_toml(), true),
        Env::Prod => (project.fly_toml(), false),
    };
    let toml = read_fly_toml(&config)?;
    let app = match (app_override.filter(|a| !a.is_empty()), &toml.app) {
        (Some(app), _) => app.to_string(),
        (None, Some(app)) if dev_suffix => format!("{app}{DEV_APP_SUFFIX}"),
        (None, Some(app)) => app.clone(),
        (None, None) => bail!("{} has no `app`; pass --app NAME", config.display()),
    };
    Ok(FlyTarget { config, app, toml })
}

// ---------------------------------------------------------------------------------------------
// Command lines

/// Splits a command line the way flyctl splits `release_command` (github.com/google/shlex):
/// whitespace separates words, single quotes are literal, double quotes and backslashes escape,
/// `#` at the start of a word starts a comment. No variables, globs or operators: there is no shell.
pub(crate) fn split_command(line: &str) -> Result<Vec<String>, String> {
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
            '#' if !in_word => {
                // Comment to end of line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("unclosed double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unclosed double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
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

/// Parses a Go duration as flyctl's flags take it (`90s`, `5m`, `1h30m`); `none` means no limit.
pub fn parse_go_duration(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "none" {
        return Ok(None);
    }
    if text == "0" {
        return Ok(Some(Duration::ZERO));
    }
    let bad = || format!("`{text}` is not a duration like 90s, 5m or 1h30m (or `none`)");
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(bad());
        }
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total)
        .map(Some)
        .map_err(|_| bad())
}

/// One flyctl invocation: program, arguments and extra environment. Its `Display` is the exact
/// command line (shell-quoted), as printed by `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlyCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Extra variables set for this command (never secrets).
    pub env: Vec<(String, String)>,
}

impl FlyCommand {
    fn new(program: &Path, args: &[&str]) -> FlyCommand {
        FlyCommand {
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            // Plain output: no colour codes in the text the failure classification reads.
            env: vec![("NO_COLOR".into(), "1".into())],
        }
    }

    /// `fly deploy`, `fly secrets list`: the program and its subcommand words, for messages
    /// (the full line was printed before it ran).
    pub(crate) fn short_name(&self) -> String {
        let program = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let words = self
            .args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .map(String::as_str);
        std::iter::once(program.as_str())
            .chain(words)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The process to run: the program, its arguments and `env` on top of ours.
    fn command(&self) -> Result<Command> {
        let sh = process::shell()?;
        let (program, args) = (&self.program, &self.args);
        let cmd = xshell::cmd!(sh, "{program} {args...}").envs(self.env.iter().cloned());
        Ok(cmd.into())
    }

    /// The argv, program first (for tests).
    #[cfg(test)]
    pub(crate) fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

impl fmt::Display for FlyCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.env {
            write!(f, "{name}={} ", shell_quote(value))?;
        }
        // Only the program's name: the full path is noise in a printed plan.
        let program = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        write!(
            f,
            "{}",
            program.unwrap_or_else(|| self.program.display().to_string())
        )?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

/// The flyctl executable on PATH: `fly`, else `flyctl`. Callers say what to do without it.
pub(crate) fn flyctl_on_path() -> Result<PathBuf, which::Error> {
    which::which("fly").or_else(|_| which::which("flyctl"))
}

/// The flyctl executable for `check-secrets` and `deploy` (see [`flyctl_on_path`]).
pub fn find_fly() -> Result<PathBuf> {
    flyctl_on_path().map_err(|_| {
        anyhow::anyhow!(
            "flyctl not found: neither `fly` nor `flyctl` is on PATH. Install it \
             (https://fly.io/docs/flyctl/install/) or use --local-only to skip the Fly checks"
        )
    })
}

/// `fly secrets list --app APP --json`
pub(crate) fn secrets_list_cmd(fly: &Path, app: &str) -> FlyCommand {
    FlyCommand::new(fly, &["secrets", "list", "--app", app, "--json"])
}

/// `fly status --app APP --json`
pub fn status_cmd(fly: &Path, app: &str) -> FlyCommand {
    FlyCommand::new(fly, &["status", "--app", app, "--json"])
}

/// What `fly deploy` deploys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    pub config: PathBuf,
    pub app: String,
    pub image: String,
    /// Go duration for `--release-command-timeout` (`5m`, `none`).
    pub release_command_timeout: String,
}

/// `fly deploy --config C --app APP --image REF --release-command-timeout T --deploy-retries 0 --yes`.
/// Retries are pinned to 0: the default (`auto`) is decided by a remote feature flag.
pub fn deploy_cmd(fly: &Path, req: &DeployRequest) -> FlyCommand {
    let config = req.config.display().to_string();
    FlyCommand::new(
        fly,
        &[
            "deploy",
            "--config",
            &config,
            "--app",
            &req.app,
            "--image",
            &req.image,
            "--release-command-timeout",
            &req.release_command_timeout,
            "--deploy-retries",
            "0",
            "--yes",
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// Running

/// Runs `cmd` with stdin closed, killing it after `timeout`. With `echo`, every output line is
/// printed to stderr (indented, secrets masked) as it arrives; stdout is also returned whole.
pub(crate) fn run(cmd: &FlyCommand, timeout: Duration, echo: bool) -> Result<RunOutput> {
    process::run_with_timeout(cmd.command()?, timeout, |line| {
        if echo {
            eprintln!("    {}", redact(line));
        }
    })
}

/// Why a `fly` command failed, read from its output (flyctl exits 1 for all of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlyFailure {
    /// The release command (register-flows) exited non-zero in the release Machine.
    ReleaseCommand {
        machine: Option<String>,
        exit_code: Option<i32>,
    },
    /// The release command did not finish within --release-command-timeout.
    ReleaseCommandTimeout,
    /// The image could not be built, pulled or resolved.
    Image,
    /// Not logged in, or the token is not allowed to do this.
    Auth,
    /// The app does not exist (or the token cannot see it).
    AppNotFound,
    /// Machines did not become healthy.
    HealthChecks,
    /// The outer timeout expired and flyctl was killed.
    Timeout(Duration),
    /// flyctl was interrupted or cancelled (exit 126/127).
    Interrupted,
    /// Anything else; the last output lines are in the error.
    Other,
}

impl fmt::Display for FlyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlyFailure::ReleaseCommand { machine, exit_code } => {
                write!(f, "the release command (register-flows) failed")?;
                if let Some(code) = exit_code {
                    write!(f, " with exit code {code}")?;
                }
                if let Some(machine) = machine {
                    write!(f, " on machine {machine}")?;
                }
                write!(f, "; nothing was rolled out. Its output is above; reproduce locally with `cargo xtask register-flows --dry-run`")
            }
            FlyFailure::ReleaseCommandTimeout => write!(
                f,
                "the release command did not finish within --release-command-timeout; nothing was rolled out"
            ),
            FlyFailure::Image => write!(f, "the image could not be built or pulled"),
            FlyFailure::Auth => write!(
                f,
                "flyctl is not authenticated: run `fly auth login`, or set FLY_API_TOKEN \
                 (or FLY_ACCESS_TOKEN) to a deploy token (`fly tokens create deploy`)"
            ),
            FlyFailure::AppNotFound => write!(f, "the Fly app was not found (check --app and the token's organization)"),
            FlyFailure::HealthChecks => write!(f, "the new Machines did not pass their health checks"),
            FlyFailure::Timeout(limit) => write!(
                f,
                "flyctl did not finish within {}s and was stopped; check `fly status` and `fly releases` \
                 before retrying",
                limit.as_secs()
            ),
            FlyFailure::Interrupted => write!(f, "flyctl was interrupted"),
            FlyFailure::Other => write!(f, "flyctl failed"),
        }
    }
}

/// Classifies a failed flyctl run from its exit code and output (pure).
pub(crate) fn classify_failure(output: &RunOutput, timeout: Duration) -> FlyFailure {
    if output.timed_out {
        return FlyFailure::Timeout(timeout);
    }
    let text = output.tail.join("\n");
    let lower = text.to_ascii_lowercase();
    if lower.contains("release command failed") || lower.contains("release_command failed") {
        if lower.contains("timeout reached") || lower.contains("timed out") {
            return FlyFailure::ReleaseCommandTimeout;
        }
        return FlyFailure::ReleaseCommand {
            machine: word_after(&text, "on machine ").or_else(|| word_after(&text, "machine ")),
            exit_code: word_after(&text, "with exit code ")
                .or_else(|| word_after(&text, "non-zero status of "))
                .and_then(|w| w.parse().ok()),
        };
    }
    if [
        "no access token available",
        "not logged in",
        "unauthorized",
        "you must be authenticated",
        "not authorized",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
    {
        return FlyFailure::Auth;
    }
    if lower.contains("could not find app") || lower.contains("app not found") {
        return FlyFailure::AppNotFound;
    }
    if [
        "failed to fetch an image or build from source",
        "error building",
        "failed to solve",
        "failed to resolve image",
        "manifest unknown",
        "failed to build",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
    {
        return FlyFailure::Image;
    }
    if lower.contains("health check") && (lower.contains("failed") || lower.contains("timeout")) {
        return FlyFailure::HealthChecks;
    }
    if matches!(output.code, Some(126 | 127)) {
        return FlyFailure::Interrupted;
    }
    FlyFailure::Other
}

/// The whitespace-delimited word following `marker` (trailing punctuation removed).
fn word_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let word: String = text.get(start..)?.split_whitespace().next()?.to_string();
    let word = word.trim_end_matches(['.', ',', ':', ';', ')']);
    (!word.is_empty()).then(|| word.to_string())
}

/// A failed fly command: what failed, why, and its last output lines (secrets masked).
#[derive(Debug)]
pub struct FlyError {
    pub command: String,
    pub failure: FlyFailure,
    pub tail: Vec<String>,
}

impl fmt::Display for FlyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.command, self.failure)?;
        let shown: Vec<&String> = self.tail.iter().rev().take(5).collect();
        if !shown.is_empty() {
            write!(f, "\n  last output:")?;
            for line in shown.into_iter().rev() {
                write!(f, "\n    {}", redact(line))?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for FlyError {}

/// Runs a command and turns any failure into a classified [`FlyError`].
pub fn run_checked(cmd: &FlyCommand, timeout: Duration, echo: bool) -> Result<RunOutput> {
    let output = run(cmd, timeout, echo)?;
    if output.success() {
        return Ok(output);
    }
    Err(FlyError {
        command: cmd.short_name(),
        failure: classify_failure(&output, timeout),
        tail: output.tail,
    }
    .into())
}

/// Time allowed for the quick read-only commands (secrets list, status).
pub(crate) const QUICK_TIMEOUT: Duration = Duration::from_secs(120);

/// `fly secrets list --json`, parsed.
pub(crate) fn secrets_list(fly: &Path, app: &str) -> Result<FlySecrets> {
    let output = run_checked(&secrets_list_cmd(fly, app), QUICK_TIMEOUT, false)?;
    parse_fly_secrets(&output.stdout).map_err(anyhow::Error::msg)
}

/// Machines of an app by state, from `fly status --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineSummary {
    pub total: usize,
    pub started: usize,
    /// Process group → (started, total).
    pub by_group: BTreeMap<String, (usize, usize)>,
}

impl fmt::Display for MachineSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} machine(s) started", self.started, self.total)?;
        let groups: Vec<String> = self
            .by_group
            .iter()
            .map(|(g, (s, t))| format!("{g}: {s}/{t}"))
            .collect();
        if !groups.is_empty() {
            write!(f, " ({})", groups.join(", "))?;
        }
        Ok(())
    }
}

/// Parses `fly status --json` (`{"Machines": [{"state", "config": {"metadata": {"fly_process_group"}}}]}`).
pub(crate) fn parse_status(json: &str) -> Result<MachineSummary, String> {
    let value: Value = serde_json::from_str(json.trim())
        .map_err(|e| format!("`fly status --json` printed something that is not JSON ({e})"))?;
    let machines = match value.get("Machines").or_else(|| value.get("machines")) {
        Some(Value::Array(machines)) => machines.as_slice(),
        Some(Value::Null) | None => &[],
        Some(_) => return Err("`fly status --json`: `Machines` is not a list".into()),
    };
    let mut summary = MachineSummary::default();
    for machine in machines {
        let started = machine.get("state").and_then(Value::as_str) == Some("started");
        let group = machine
            .pointer("/config/metadata/fly_process_group")
            .and_then(Value::as_str)
            .unwrap_or("app")
            .to_string();
        summary.total += 1;
        let entry = summary.by_group.entry(group).or_default();
        entry.1 += 1;
        if started {
            summary.started += 1;
            entry.0 += 1;
        }
    }
    Ok(summary)
}

/// `fly status --json`, summarised.
pub fn status(fly: &Path, app: &str) -> Result<MachineSummary> {
    let output = run_checked(&status_cmd(fly, app), QUICK_TIMEOUT, false)?;
    parse_status(&output.stdout).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_project_fly_toml() {
        let toml = read_fly_toml(&crate::project::repo_root().join("fly.toml")).unwrap();
        assert_eq!(toml.app.as_deref(), Some("captionacc-api"));
        assert_eq!(
            toml.release_command.as_deref(),
            Some("xtask register-flows --prune")
        );
        assert_eq!(toml.release_command_timeout.as_deref(), Some("5m"));
        assert_eq!(toml.env.get("APP_DIR").map(String::as_str), Some("/app"));
        assert!(toml.processes.contains_key("worker"));
    }

    #[test]
    fn the_project_fly_toml_lets_the_worker_stop_gracefully() {
        let toml = read_fly_toml(&crate::project::repo_root().join("fly.toml")).unwrap();
        assert_eq!(worker_stop_problem(&toml), None);
        assert_eq!(toml.worker_pools(), ["captionacc-workers-prod"]);
        // Fly's defaults (SIGINT, 5 s) are too short for the worker's stop.
        let defaults = FlyToml {
            kill_signal: None,
            kill_timeout: None,
            ..toml.clone()
        };
        let problem = worker_stop_problem(&defaults).unwrap();
        assert!(
            problem.starts_with("kill_timeout 5s is outside"),
            "{problem}"
        );
        let usr1 = FlyToml {
            kill_signal: Some("SIGUSR1".into()),
            ..toml.clone()
        };
        assert!(worker_stop_problem(&usr1).unwrap().contains("SIGUSR1"));
        let no_worker = FlyToml {
            processes: BTreeMap::new(),
            ..defaults
        };
        assert_eq!(worker_stop_problem(&no_worker), None);
        assert_eq!(
            toml.env.get(DRAIN_TIMEOUT_VAR).map(String::as_str),
            Some("10m")
        );
    }

    #[test]
    fn worker_pools_come_from_worker_start_commands() {
        let toml = parse_fly_toml(
            r#"
kill_timeout = 12
[processes]
  app = "python -m app.api --pool not-a-worker"
  a = "prefect worker start --pool p1 --type process"
  b = "prefect worker start -p 'p 2'"
  c = "/venv/bin/prefect worker start --pool=p1"
  d = "prefect worker start"
"#,
            "f",
        )
        .unwrap();
        assert_eq!(toml.worker_pools(), ["p 2", "p1"]);
        assert_eq!(toml.kill_timeout, Some(Duration::from_secs(12)));
        assert_eq!(toml.kill_signal, None);
        let text = parse_fly_toml("kill_timeout = \"1m30s\"", "f").unwrap();
        assert_eq!(text.kill_timeout, Some(Duration::from_secs(90)));
        for bad in [
            "kill_timeout = \"soon\"",
            "kill_timeout = true",
            "kill_timeout = -1",
        ] {
            let err = parse_fly_toml(bad, "x/fly.toml").unwrap_err();
            assert!(
                format!("{err:#}").contains("kill_timeout"),
                "{bad}: {err:#}"
            );
        }
    }

    #[test]
    fn fly_toml_errors_name_the_file() {
        let err = parse_fly_toml("app = [", "x/fly.toml").unwrap_err();
        assert!(format!("{err:#}").contains("x/fly.toml"), "{err:#}");
        let err = parse_fly_toml("[env]\nA = [1]\n", "f.toml").unwrap_err();
        assert!(err.to_string().contains("[env] A"), "{err}");
        let ok = parse_fly_toml("[env]\nN = 3\nB = true\n", "f").unwrap();
        assert_eq!(ok.env["N"], "3");
        assert_eq!(ok.app, None);
    }

    #[test]
    fn splits_like_flyctl() {
        let cases: &[(&str, &[&str])] = &[
            ("xtask register-flows", &["xtask", "register-flows"]),
            ("  a   b\tc ", &["a", "b", "c"]),
            (r#"echo "a b" 'c d' e\ f"#, &["echo", "a b", "c d", "e f"]),
            (r#"x "say \"hi\"" 'it''s'"#, &["x", "say \"hi\"", "its"]),
            ("x $HOME && y", &["x", "$HOME", "&&", "y"]),
            ("x # comment", &["x"]),
            ("x a#b", &["x", "a#b"]),
            ("x ''", &["x", ""]),
        ];
        for (line, want) in cases {
            assert_eq!(split_command(line).unwrap(), *want, "{line}");
        }
        for bad in ["x 'open", "x \"open", "x \\"] {
            assert!(split_command(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(
            parse_go_duration("5m").unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_go_duration("none").unwrap(), None);
        assert_eq!(parse_go_duration("0").unwrap(), Some(Duration::ZERO));
        for bad in ["", "5", "m", "5 m", "5x", "-5m", "1..2s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_the_deploy_command() {
        let cmd = deploy_cmd(
            Path::new("/usr/bin/fly"),
            &DeployRequest {
                config: PathBuf::from("/p/fly.toml"),
                app: "captionacc-api".into(),
                image: "registry.fly.io/captionacc-api:abc123".into(),
                release_command_timeout: "5m".into(),
            },
        );
        assert_eq!(
            cmd.argv(),
            [
                "/usr/bin/fly",
                "deploy",
                "--config",
                "/p/fly.toml",
                "--app",
                "captionacc-api",
                "--image",
                "registry.fly.io/captionacc-api:abc123",
                "--release-command-timeout",
                "5m",
                "--deploy-retries",
                "0",
                "--yes",
            ]
        );
        assert_eq!(
            cmd.to_string(),
            "NO_COLOR=1 fly deploy --config /p/fly.toml --app captionacc-api --image \
             registry.fly.io/captionacc-api:abc123 --release-command-timeout 5m --deploy-retries 0 --yes"
        );
        assert_eq!(
            secrets_list_cmd(Path::new("flyctl"), "a b").to_string(),
            "NO_COLOR=1 flyctl secrets list --app 'a b' --json"
        );
        assert_eq!(
            status_cmd(Path::new("fly"), "x").args,
            ["status", "--app", "x", "--json"]
        );
    }

    #[test]
    fn short_name_is_program_and_subcommand() {
        assert_eq!(
            secrets_list_cmd(Path::new("/x/flyctl"), "a").short_name(),
            "flyctl secrets list"
        );
    }

    #[test]
    fn dev_target_is_fly_dev_toml_or_suffixed_app() {
        let dir = std::env::temp_dir().join(format!("xtask-fly-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fly.toml"), "app = \"web\"\n").unwrap();
        let project = Project {
            root: dir.clone(),
            prefect_file: dir.join("prefect.yaml"),
        };
        assert_eq!(target(&project, Env::Prod, None).unwrap().app, "web");
        assert_eq!(target(&project, Env::Dev, None).unwrap().app, "web-dev");
        assert_eq!(
            target(&project, Env::Dev, None).unwrap().config,
            dir.join("fly.toml")
        );
        assert_eq!(
            target(&project, Env::Prod, Some("other")).unwrap().app,
            "other"
        );
        std::fs::write(dir.join(DEV_FLY_TOML), "app = \"web-staging\"\n").unwrap();
        let dev = target(&project, Env::Dev, None).unwrap();
        assert_eq!(
            (dev.app.as_str(), dev.config.clone()),
            ("web-staging", dir.join(DEV_FLY_TOML))
        );
        std::fs::write(dir.join("fly.toml"), "primary_region = \"iad\"\n").unwrap();
        let err = target(&project, Env::Prod, None).unwrap_err().to_string();
        assert!(err.contains("has no `app`; pass --app"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn output(lines: &[&str]) -> RunOutput {
        RunOutput {
            code: Some(1),
            tail: lines.iter().map(|l| l.to_string()).collect(),
            ..RunOutput::default()
        }
    }

    #[test]
    fn classifies_release_command_failure() {
        let out = output(&[
            "Running captionacc-api release_command: xtask register-flows",
            "Error release_command failed running on machine 3d8d9e1b with exit code 1.",
            "Error: release command failed - aborting deployment. machine 3d8d9e1b exited with non-zero status of 1",
        ]);
        assert_eq!(
            classify_failure(&out, Duration::from_secs(1)),
            FlyFailure::ReleaseCommand {
                machine: Some("3d8d9e1b".into()),
                exit_code: Some(1)
            }
        );
        let only_final = output(&[
            "Error: release command failed - aborting deployment. machine e78 exited with non-zero status of 2",
        ]);
        assert_eq!(
            classify_failure(&only_final, Duration::from_secs(1)),
            FlyFailure::ReleaseCommand {
                machine: Some("e78".into()),
                exit_code: Some(2)
            }
        );
    }

    #[test]
    fn classifies_other_failures() {
        let t = Duration::from_secs(9);
        let cases = [
            ("Error: release command failed - aborting deployment. error waiting for release_command machine e78 to finish running: timeout reached", FlyFailure::ReleaseCommandTimeout),
            ("Error: No access token available. Please login with 'flyctl auth login'", FlyFailure::Auth),
            ("Error: failed to fetch an image or build from source: error building: exit status 1", FlyFailure::Image),
            ("Error: failed to resolve image registry.fly.io/x:y: manifest unknown", FlyFailure::Image),
            ("Error: Could not find App \"nope\"", FlyFailure::AppNotFound),
            ("Error: something unexpected", FlyFailure::Other),
        ];
        for (line, want) in cases {
            assert_eq!(classify_failure(&output(&[line]), t), want, "{line}");
        }
        let hung = RunOutput {
            timed_out: true,
            ..output(&["Running release command"])
        };
        assert_eq!(classify_failure(&hung, t), FlyFailure::Timeout(t));
        let cancelled = RunOutput {
            code: Some(127),
            ..output(&[])
        };
        assert_eq!(classify_failure(&cancelled, t), FlyFailure::Interrupted);
    }

    #[test]
    fn parses_status_json() {
        let json = r#"{"ID":"x","Name":"captionacc-api","Machines":[
            {"id":"1","state":"started","config":{"metadata":{"fly_process_group":"app"}}},
            {"id":"2","state":"stopped","config":{"metadata":{"fly_process_group":"app"}}},
            {"id":"3","state":"started","config":{"metadata":{"fly_process_group":"worker"}}}]}"#;
        let s = parse_status(json).unwrap();
        assert_eq!((s.total, s.started), (3, 2));
        assert_eq!(s.by_group["app"], (1, 2));
        assert_eq!(
            s.to_string(),
            "2 of 3 machine(s) started (app: 1/2, worker: 1/1)"
        );
        assert_eq!(parse_status(r#"{"Machines":null}"#).unwrap().total, 0);
        assert!(parse_status("Error: oops").is_err());
    }

    #[test]
    fn runs_with_timeout_and_captures_output() {
        let sh = Path::new("/bin/sh");
        let mut cmd = FlyCommand::new(sh, &["-c", "echo out; echo err >&2; exit 3"]);
        let out = run(&cmd, Duration::from_secs(10), false).unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert!(out.tail.contains(&"err".to_string()));
        cmd.args = vec!["-c".into(), "echo $NO_COLOR; exec sleep 30".into()];
        let started = std::time::Instant::now();
        let out = run(&cmd, Duration::from_millis(300), false).unwrap();
        assert!(
            out.timed_out && started.elapsed() < Duration::from_secs(10),
            "{out:?}"
        );
        assert_eq!(out.tail, ["1"]);
    }
}
