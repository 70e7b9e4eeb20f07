//! check-secrets' checklist: everything the release needs, proved before anything is built —
//! locally (PREFECT_API_URL, the server's /health, an authenticated read) and in the Fly app
//! (`fly secrets list --json` against [`crate::fly::secrets::required`]). Every problem becomes
//! an item, so all are reported at once; values are never shown.

use std::path::PathBuf;

use anyhow::Result;

use crate::deploy::drain;
use crate::fly::secrets::{
    self, check_fly_secrets, check_local_env, probe_item, ApiUrl, CheckItem, CheckStatus,
    Checklist, LocalEnv, ProbeOutcome, Scope, ServerKind, Unauthenticated,
    XTASK_REQUIRE_CREDENTIALS,
};
use crate::fly::{self, FlyTarget};
use crate::prefect::api::{plain_http_warning, ApiConfig, ApiError, ApiErrorKind, PrefectClient};
use crate::prefect::prefect_yaml::PrefectFile;
use crate::sys::env_vars::EnvVars;
use crate::sys::redact::redact;

/// Whether (and how) to check the Fly app's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlyCheck {
    Run,
    /// `--local-only`.
    Skip,
    /// `deploy --dry-run`: print the command instead of running it.
    DryRun,
}

/// Builds the whole checklist from this machine's environment `vars` and, unless skipped, the
/// Fly app `fly_target` resolves (asked only then). Errors only when the checks themselves
/// cannot be made sense of; every problem with the setup becomes a failed item.
pub fn checklist(
    vars: &EnvVars,
    fly_check: FlyCheck,
    fly_target: impl FnOnce() -> Result<FlyTarget>,
) -> Result<Checklist> {
    let mut list = Checklist::default();
    let local_env = LocalEnv::from_lookup(|name| vars.get(name).map(str::to_string));
    let (items, local_url) = check_local_env(&local_env);
    list.extend(items);
    if let Some(url) = &local_url {
        list.extend(probe_server(vars, &url.display));
    }
    match fly_check {
        FlyCheck::Skip => list.push(CheckItem::new(
            Scope::Fly,
            "Fly app",
            CheckStatus::Skipped,
            "--local-only: the Fly app's secrets were not checked",
        )),
        FlyCheck::Run | FlyCheck::DryRun => {
            list.extend(check_fly_app(
                fly_target(),
                vars,
                local_url.as_ref(),
                fly_check == FlyCheck::DryRun,
            ));
        }
    }
    Ok(list)
}

/// `/health`, then an authenticated read (skipped when the server does not answer at all).
fn probe_server(vars: &EnvVars, display: &str) -> Vec<CheckItem> {
    let client = match ApiConfig::from_vars(vars).and_then(PrefectClient::new) {
        Ok(client) => client,
        Err(err) => {
            return vec![CheckItem::new(
                Scope::Local,
                "Prefect client",
                CheckStatus::Fail,
                redact(&format!("{err:#}")),
            )]
        }
    };
    let health = outcome(client.health());
    let mut items = vec![probe_item("server health (/health)", display, &health)];
    if matches!(health, ProbeOutcome::Timeout | ProbeOutcome::Unreachable(_)) {
        items.push(CheckItem::new(
            Scope::Local,
            "authenticated read",
            CheckStatus::Skipped,
            "the server did not answer",
        ));
    } else {
        let auth = outcome(client.check_auth());
        items.push(probe_item("authenticated read", display, &auth));
        if auth == ProbeOutcome::Ok {
            items.extend(left_paused(&client));
        }
    }
    items
}

/// Work pools a killed deploy left paused (its pause marker is still there): no flow run starts
/// on them until they are resumed. A warning, not a failure: the next deploy resumes them.
fn left_paused(client: &PrefectClient) -> Vec<CheckItem> {
    let markers = match drain::read_markers(client) {
        Ok(markers) => markers,
        Err(err) => {
            return vec![CheckItem::new(
                Scope::Local,
                "work pools left paused",
                CheckStatus::Warn,
                redact(&format!("cannot read the deploy pause markers: {err}")),
            )]
        }
    };
    let still_paused = |pool: &str| {
        client
            .read_work_pool(pool)
            .ok()
            .flatten()
            .and_then(|p| p.get("is_paused").and_then(serde_json::Value::as_bool))
            != Some(false)
    };
    markers
        .iter()
        .filter(|marker| still_paused(&marker.pool))
        .map(|marker| {
            CheckItem::new(
                Scope::Local,
                format!("work pool {} left paused", marker.pool),
                CheckStatus::Warn,
                format!(
                    "{} that has not resumed it (still draining, or killed): no flow run starts \
                     on it. The next deploy resumes it (or `prefect work-pool resume {}`)",
                    marker.describe(),
                    marker.pool
                ),
            )
        })
        .collect()
}

/// The same read as the authenticated one, made without any credentials (none in headers or
/// the URL), against this host's PREFECT_API_URL: does the server do without them?
fn read_without_credentials(vars: &EnvVars, url: Option<&ApiUrl>) -> Unauthenticated {
    let Some(url) = url else {
        return Unauthenticated::Unknown("no usable PREFECT_API_URL here to ask the server".into());
    };
    let mut cfg = match ApiConfig::from_vars(vars) {
        Ok(cfg) => cfg,
        Err(err) => return Unauthenticated::Unknown(redact(&format!("{err:#}"))),
    };
    cfg.api_key = None;
    cfg.auth_string = None;
    if let Ok(mut parsed) = reqwest::Url::parse(&cfg.url) {
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        cfg.url = parsed.to_string().trim_end_matches('/').to_string();
    }
    let client = match PrefectClient::new(cfg) {
        Ok(client) => client,
        Err(err) => return Unauthenticated::Unknown(redact(&format!("{err:#}"))),
    };
    let display = url.display.clone();
    match outcome(client.check_auth()) {
        ProbeOutcome::Ok => Unauthenticated::Answered { url: display },
        ProbeOutcome::Auth(code) => Unauthenticated::Refused { url: display, code },
        ProbeOutcome::Timeout => Unauthenticated::Unknown(format!("{display} timed out")),
        ProbeOutcome::Unreachable(why) | ProbeOutcome::Failed(why) => {
            Unauthenticated::Unknown(format!("{display}: {why}"))
        }
    }
}

fn outcome(result: Result<(), ApiError>) -> ProbeOutcome {
    let Err(err) = result else {
        return ProbeOutcome::Ok;
    };
    if err.is_auth() {
        return ProbeOutcome::Auth(err.status().unwrap_or_default());
    }
    match &err.kind {
        ApiErrorKind::Timeout => ProbeOutcome::Timeout,
        ApiErrorKind::Unreachable(why) => ProbeOutcome::Unreachable(redact(why)),
        ApiErrorKind::Status { code, .. } => {
            ProbeOutcome::Failed(format!("{} {} answered {code}", err.method, err.path))
        }
        ApiErrorKind::InvalidResponse(_) => ProbeOutcome::Failed(redact(&err.to_string())),
    }
}

/// The Fly half: app name, fly.toml `[env]` and release command, flyctl, and the secrets list.
/// Missing credentials are judged by a read without any against this host's server (`vars`,
/// `local_url`), unless XTASK_REQUIRE_CREDENTIALS (here or in fly.toml `[env]`) requires them.
fn check_fly_app(
    target: Result<FlyTarget>,
    vars: &EnvVars,
    local_url: Option<&ApiUrl>,
    dry_run: bool,
) -> Vec<CheckItem> {
    let mut items = Vec::new();
    let fail = |check: &str, detail: String| {
        CheckItem::new(Scope::Fly, check, CheckStatus::Fail, redact(&detail))
    };
    let target = match target {
        Ok(target) => target,
        Err(err) => {
            items.push(fail("fly.toml", format!("{err:#}")));
            return items;
        }
    };
    items.extend(check_release_command(
        &target.toml.release_command,
        &target.config,
    ));
    if let Some(problem) = fly::worker_stop_problem(&target.toml) {
        items.push(CheckItem::new(
            Scope::Fly,
            "worker stop settings in fly.toml",
            CheckStatus::Warn,
            problem,
        ));
    }

    // The kind of server decides the credential. A URL in fly.toml [env] is what the release
    // Machine uses (unless a secret overrides it, whose value cannot be read): prefer it.
    let mut kind = local_url.map_or(ServerKind::SelfHosted, |u| u.kind);
    if let Some(url) = target.toml.env.get(secrets::PREFECT_API_URL) {
        if secrets::url_has_credentials(url) {
            items.push(CheckItem::new(
                Scope::Fly,
                "PREFECT_API_URL in fly.toml [env]",
                CheckStatus::Warn,
                "carries credentials in plain text; move the URL to a secret (`fly secrets import`)",
            ));
        }
        match secrets::validate_api_url(url) {
            Ok(url) => kind = url.kind,
            Err(problem) => items.push(fail("PREFECT_API_URL in fly.toml [env]", problem)),
        }
        if let Some(warning) = plain_http_warning(url) {
            items.push(CheckItem::new(
                Scope::Fly,
                "PREFECT_API_URL in fly.toml [env]",
                CheckStatus::Warn,
                format!("the release Machine's {warning}"),
            ));
        }
    }

    let fly_program = match fly::find_fly() {
        Ok(path) => path,
        Err(err) if dry_run => {
            items.push(CheckItem::new(
                Scope::Fly,
                "flyctl",
                CheckStatus::Warn,
                err.to_string(),
            ));
            PathBuf::from("fly")
        }
        Err(err) => {
            items.push(fail("flyctl", err.to_string()));
            return items;
        }
    };
    let command = fly::secrets_list_cmd(&fly_program, &target.app);
    if dry_run {
        items.push(CheckItem::new(
            Scope::Fly,
            "secrets of app",
            CheckStatus::Skipped,
            format!("dry run; would run: {command}"),
        ));
        return items;
    }
    match fly::secrets_list(&fly_program, &target.app) {
        Ok(listed) => {
            let format = listed
                .format
                .map(|f| f.to_string())
                .unwrap_or_else(|| "empty list".into());
            items.push(CheckItem::new(
                Scope::Fly,
                "secrets of app",
                CheckStatus::Ok,
                format!(
                    "{}: {} secret(s) listed, format {format}",
                    target.app,
                    listed.secrets.len()
                ),
            ));
            let required = secrets::required(kind);
            let policy = [
                vars.get(XTASK_REQUIRE_CREDENTIALS),
                target
                    .toml
                    .env
                    .get(XTASK_REQUIRE_CREDENTIALS)
                    .map(String::as_str),
            ]
            .into_iter()
            .any(secrets::switch_is_on);
            let has_credentials = required
                .iter()
                .filter(|r| r.server_may_waive)
                .flat_map(|r| r.any_of)
                .any(|name| listed.secrets.iter().any(|s| s.name == *name));
            // The server is asked only when its answer matters.
            let unauthenticated = if policy {
                Unauthenticated::Forbidden
            } else if has_credentials || kind == ServerKind::Cloud {
                Unauthenticated::Unknown("not asked".into())
            } else {
                read_without_credentials(vars, local_url)
            };
            items.extend(check_fly_secrets(
                &required,
                &listed.secrets,
                &target.toml.env,
                &unauthenticated,
                &target.app,
            ));
        }
        Err(err) => items.push(fail("secrets of app", format!("{}: {err:#}", target.app))),
    }
    items
}

/// The required list matches what `xtask register-flows` reads; another release command would
/// need other secrets, so say so.
fn check_release_command(
    release_command: &Option<String>,
    config: &std::path::Path,
) -> Option<CheckItem> {
    let label = "release_command";
    let Some(line) = release_command else {
        return Some(CheckItem::new(
            Scope::Fly,
            label,
            CheckStatus::Warn,
            format!(
                "{} has no [deploy] release_command: the deployments would not be registered",
                config.display()
            ),
        ));
    };
    match fly::split_command(line) {
        Ok(argv) if is_register_flows(&argv) => None,
        Ok(_) => Some(CheckItem::new(
            Scope::Fly,
            label,
            CheckStatus::Warn,
            format!("`{line}` is not `xtask register-flows`; the secrets checked here are the ones register-flows reads"),
        )),
        Err(problem) => Some(CheckItem::new(
            Scope::Fly,
            label,
            CheckStatus::Fail,
            format!("`{line}` cannot be split into arguments: {problem}"),
        )),
    }
}

fn is_register_flows(argv: &[String]) -> bool {
    let program = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    program == Some("xtask") && argv.iter().any(|a| a == "register-flows")
}

/// The work pools the deployments of `file` name: each must be declared in its `work_pools` or
/// exist on the server at `vars`' PREFECT_API_URL (one GET per undeclared pool); otherwise no
/// worker could run them and register-flows refuses the file.
pub fn work_pool_items(vars: &EnvVars, file: &PrefectFile) -> Vec<CheckItem> {
    let client = ApiConfig::from_vars(vars).and_then(PrefectClient::new);
    file.work_pools()
        .iter()
        .map(|pool| {
            let users: Vec<&str> = file
                .deployments
                .iter()
                .filter(|d| d.work_pool_name() == Some(pool.as_str()))
                .map(|d| d.name.as_str())
                .collect();
            let on_server = if file.resources.pool(pool).is_some() {
                Ok(true)
            } else {
                match &client {
                    Ok(client) => client
                        .read_work_pool(pool)
                        .map(|found| found.is_some())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(format!("{e:#}")),
                }
            };
            pool_item(pool, &users, file.resources.pool(pool).is_some(), on_server)
        })
        .collect()
}

/// One pool's line: declared, on the server, missing (a failure), or not checkable.
fn pool_item(
    pool: &str,
    users: &[&str],
    declared: bool,
    on_server: Result<bool, String>,
) -> CheckItem {
    let check = format!("work pool {pool}");
    let (status, detail) = match (declared, on_server) {
        (true, _) => (
            CheckStatus::Ok,
            "declared in work_pools (register-flows creates or updates it)".to_string(),
        ),
        (false, Ok(true)) => (CheckStatus::Ok, "exists on the server".to_string()),
        (false, Ok(false)) => (
            CheckStatus::Fail,
            format!(
                "used by {} but neither declared in work_pools nor on the server: no worker could run them; declare it in the prefect file",
                users.join(", ")
            ),
        ),
        (false, Err(why)) => (
            CheckStatus::Skipped,
            redact(&format!("cannot read it from the server: {why}")),
        ),
    };
    CheckItem::new(Scope::Local, check, status, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_used_but_neither_declared_nor_on_the_server_fails() {
        let declared = pool_item("p", &["d"], true, Ok(false));
        assert_eq!(declared.status, CheckStatus::Ok);
        assert!(declared.detail.starts_with("declared in work_pools"));
        assert_eq!(
            pool_item("p", &["d"], false, Ok(true)).status,
            CheckStatus::Ok
        );
        let missing = pool_item("p", &["d", "e"], false, Ok(false));
        assert_eq!(missing.status, CheckStatus::Fail);
        assert_eq!(missing.check, "work pool p");
        assert!(
            missing
                .detail
                .starts_with("used by d, e but neither declared in work_pools nor on the server"),
            "{}",
            missing.detail
        );
        assert_eq!(
            pool_item("p", &["d"], false, Err("down".into())).status,
            CheckStatus::Skipped
        );
    }

    #[test]
    fn release_command_recognised() {
        let path = std::path::Path::new("fly.toml");
        assert_eq!(
            check_release_command(&Some("xtask register-flows".into()), path),
            None
        );
        assert_eq!(
            check_release_command(
                &Some("/usr/local/bin/xtask register-flows --json".into()),
                path
            ),
            None
        );
        let other = check_release_command(&Some("prefect deploy --all".into()), path).unwrap();
        assert_eq!(other.status, CheckStatus::Warn);
        let broken = check_release_command(&Some("xtask 'register-flows".into()), path).unwrap();
        assert_eq!(broken.status, CheckStatus::Fail);
        assert_eq!(
            check_release_command(&None, path).unwrap().status,
            CheckStatus::Warn
        );
    }
}
