//! `cargo xtask register-flows`: make the Prefect server's deployments match prefect.yaml.
//!
//! validate (everything, before any write) → read the server in bulk → plan → print →
//! apply (all or nothing) → verify. Also Fly's release_command: never reads stdin, never prompts,
//! ends with one `error:` line when it fails.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::{Engine, Env, GlobalArgs, RegisterFlowsArgs};
use crate::prefect::api::{encode_segment, PrefectClient};
use crate::project::Project;
use crate::sync::apply::{self, ApplyOptions, ApplyReport, ItemStatus};
use crate::sync::desired::{self, DesiredState};
use crate::sync::plan::{self, Action, Plan, ServerState, JSON_SCHEMA_VERSION};
use crate::sys::report::code;

/// Rounds of "apply, read back, re-plan" before giving up on a server that keeps changing under us
/// (another register-flows run writing at the same time).
const MAX_ROUNDS: usize = 3;

pub fn run(global: &GlobalArgs, args: RegisterFlowsArgs) -> Result<ExitCode> {
    if args.engine == Engine::PrefectCli {
        return run_prefect_cli(global, &args);
    }
    let started = Instant::now();
    let project = Project::discover(global, Env::Prod)?;
    let client = PrefectClient::from_env()?;
    client.set_verbose(global.verbose);
    let cancel = interrupt_flag();
    let desired = match desired::build(&project, &client) {
        Ok(desired) => desired,
        Err(err) => {
            if args.json {
                println!("{}", invalid_document(&client, &project, &args, &err));
            }
            return Err(err);
        }
    };
    let validated = started.elapsed();
    let outcome = sync(&client, &desired, &args, &cancel)?;
    let timings = Timings {
        validate: validated,
        read: outcome.read,
        write: outcome.write,
        total: started.elapsed(),
    };
    print_outcome(&client, &project, &desired, &args, &outcome, &timings);
    Ok(ExitCode::from(outcome.exit_code(&args)))
}

/// `--engine prefect-cli`: the old bash setup's behaviour, `prefect --no-prompt deploy --all`
/// (no plan, no prune, no rollback: Prefect's CLI has none of them).
fn run_prefect_cli(global: &GlobalArgs, args: &RegisterFlowsArgs) -> Result<ExitCode> {
    if args.dry_run || args.check || args.prune || args.json {
        bail!("--dry-run, --check, --prune and --json need the native engine; `prefect deploy` has no such modes");
    }
    let project = Project::discover(global, Env::Prod)?;
    let prefect = crate::prefect::deploy_cli::find_prefect()?;
    crate::prefect::deploy_cli::deploy_all(&project, &prefect, &[])?;
    Ok(ExitCode::from(code::OK))
}

/// The flag Ctrl-C / SIGTERM sets. Installed once per process (`deploy` may call `run` again).
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let for_handler = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if for_handler.swap(true, Ordering::SeqCst) {
                // A second signal: the user insists.
                std::process::exit(130);
            }
            eprintln!("interrupted: finishing the writes in flight, then rolling back (press Ctrl-C again to abort now)");
        });
        if let Err(err) = installed {
            eprintln!("warning: cannot install the Ctrl-C/SIGTERM handler ({err}); an interruption will not roll back");
        }
        flag
    })
    .clone()
}

/// What one sync did.
pub struct SyncOutcome {
    /// The plan of the first round (what the server differed in).
    pub plan: Plan,
    /// The apply report of the round that failed, or of the last round.
    pub report: Option<ApplyReport>,
    /// Rounds applied (0 for dry-run/check or an unchanged server).
    pub rounds: usize,
    /// True when, after the last round, the server still differed (a concurrent writer).
    pub unconverged: Option<Plan>,
    pub read: Duration,
    pub write: Duration,
    pub requests: usize,
    /// Of `requests`, those sent again after a retryable answer.
    pub retries: usize,
    pub writes_planned: usize,
}

impl SyncOutcome {
    pub fn failed(&self) -> bool {
        self.report.as_ref().is_some_and(|r| !r.succeeded()) || self.unconverged.is_some()
    }

    pub fn exit_code(&self, args: &RegisterFlowsArgs) -> u8 {
        if self.failed() {
            code::ERROR
        } else if args.check && self.plan.has_changes() {
            code::DRIFT
        } else {
            code::OK
        }
    }
}

/// Reads the server, plans, and (unless `--dry-run`/`--check`) applies until the server matches.
pub fn sync(
    client: &PrefectClient,
    desired: &DesiredState,
    args: &RegisterFlowsArgs,
    cancel: &AtomicBool,
) -> Result<SyncOutcome> {
    let read_started = Instant::now();
    let server = read_server_state(client, desired, args.prune)?;
    let first = plan::plan(desired, &server, args.prune);
    let mut read = read_started.elapsed();
    let mut outcome = SyncOutcome {
        writes_planned: first.write_count(),
        plan: first,
        report: None,
        rounds: 0,
        unconverged: None,
        read,
        write: Duration::ZERO,
        requests: 0,
        retries: 0,
    };
    if args.dry_run || args.check || !outcome.plan.has_changes() {
        outcome.requests = client.request_count();
        outcome.retries = client.retry_count();
        return Ok(outcome);
    }
    let options = ApplyOptions {
        concurrency: usize::from(args.concurrency),
        cancel,
        owner: &desired.owner,
    };
    let mut current = outcome.plan.clone();
    loop {
        let write_started = Instant::now();
        let report = apply::apply(client, &current, &options);
        outcome.write += write_started.elapsed();
        outcome.rounds += 1;
        let failed = !report.succeeded();
        outcome.report = Some(report);
        if failed {
            break;
        }
        // Read back what we touched: proves the server matches and catches a concurrent run's writes.
        let again = Instant::now();
        let server = read_server_state(client, desired, args.prune)?;
        let residual = plan::plan(desired, &server, args.prune);
        read += again.elapsed();
        if !residual.has_changes() {
            break;
        }
        if outcome.rounds >= MAX_ROUNDS || cancel.load(Ordering::SeqCst) {
            outcome.unconverged = Some(residual);
            break;
        }
        current = residual;
    }
    outcome.read = read;
    outcome.requests = client.request_count();
    outcome.retries = client.retry_count();
    Ok(outcome)
}

/// The server state the plan needs, in a few bulk reads (never one GET per deployment).
pub fn read_server_state(
    client: &PrefectClient,
    desired: &DesiredState,
    prune: bool,
) -> Result<ServerState> {
    let flow_names: Vec<&str> = {
        let mut names: Vec<&str> = desired
            .deployments
            .iter()
            .map(|d| d.flow_name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let deployment_names: Vec<&str> = desired
        .deployments
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let filter = if prune {
        // Prune candidates can have any name: read them all (labels cannot be filtered on).
        json!({})
    } else {
        json!({"flows": {"name": {"any_": flow_names}}, "deployments": {"name": {"any_": deployment_names}}})
    };
    let deployments = if !prune && deployment_names.is_empty() {
        Vec::new()
    } else {
        client
            .read_deployments(filter)
            .context("cannot read the server's deployments")?
    };
    let mut flow_ids: Vec<&str> = deployments
        .iter()
        .filter_map(|d| d.get("flow_id").and_then(Value::as_str))
        .collect();
    flow_ids.sort_unstable();
    flow_ids.dedup();
    let flows = if flow_ids.is_empty() {
        Vec::new()
    } else {
        client
            .read_flows(json!({"flows": {"id": {"any_": flow_ids}}}))
            .context("cannot read the server's flows")?
    };
    let automations = if desired.deployments.iter().any(|d| d.triggers.is_some()) {
        Some(read_related_automations(
            client,
            desired,
            &deployments,
            &flows,
        )?)
    } else {
        None
    };
    ServerState::from_json(deployments, &flows, automations)
}

/// The automations related to each existing deployment whose yaml states `triggers` (one GET
/// each: the API has no bulk read that says which deployment owns an automation).
fn read_related_automations(
    client: &PrefectClient,
    desired: &DesiredState,
    deployments: &[Value],
    flows: &[Value],
) -> Result<HashMap<String, Vec<Value>>> {
    let flow_ids: HashMap<&str, &str> = flows
        .iter()
        .filter_map(|f| Some((f.get("name")?.as_str()?, f.get("id")?.as_str()?)))
        .collect();
    let mut out = HashMap::new();
    for want in desired.deployments.iter().filter(|d| d.triggers.is_some()) {
        let Some(flow_id) = flow_ids.get(want.flow_name.as_str()) else {
            continue;
        };
        let found = deployments.iter().find(|d| {
            d.get("name").and_then(Value::as_str) == Some(want.name.as_str())
                && d.get("flow_id").and_then(Value::as_str) == Some(flow_id)
        });
        let Some(id) = found.and_then(|d| d.get("id")).and_then(Value::as_str) else {
            continue;
        };
        let related = client
            .get(&format!(
                "/automations/related-to/prefect.deployment.{}",
                encode_segment(id)
            ))
            .with_context(|| format!("cannot read the automations of {}", want.full_name()))?;
        let list = match related {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        out.insert(id.to_string(), list);
    }
    Ok(out)
}

pub struct Timings {
    pub validate: Duration,
    pub read: Duration,
    pub write: Duration,
    pub total: Duration,
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn print_outcome(
    client: &PrefectClient,
    project: &Project,
    desired: &DesiredState,
    args: &RegisterFlowsArgs,
    outcome: &SyncOutcome,
    timings: &Timings,
) {
    let mode = if args.check {
        "check"
    } else if args.dry_run {
        "dry-run"
    } else {
        "apply"
    };
    eprintln!(
        "register-flows ({mode}): {} → {} (project {})",
        project.prefect_file_label(),
        client.display_url(),
        desired.owner.project
    );
    for warning in desired.warnings.iter().chain(&outcome.plan.warnings) {
        eprintln!("warning: {warning}");
    }
    if mode == "apply" {
        eprint!("{}", render_result(outcome));
        if args.prune && outcome.plan.count(Action::Delete) > 0 {
            eprintln!("note: pruned deployments lose their scheduled runs");
        }
    } else {
        eprint!("{}", outcome.plan.render_text());
        if args.prune && outcome.plan.count(Action::Delete) > 0 {
            eprintln!("warning: deleting a deployment also deletes its scheduled runs");
        }
    }
    let writes = outcome
        .report
        .as_ref()
        .map_or(0, |_| outcome.writes_planned);
    eprintln!(
        "{} in {} (validate {}, read {}, write {}); {} requests{}{}.",
        summary_word(outcome, mode),
        secs(timings.total),
        secs(timings.validate),
        secs(timings.read),
        secs(timings.write),
        outcome.requests,
        match outcome.retries {
            0 => String::new(),
            n => format!(" ({n} of them retries: the server was busy or unreachable)"),
        },
        if mode == "apply" {
            format!(", {writes} writes planned")
        } else {
            String::new()
        }
    );
    if let Some(report) = outcome.report.as_ref().filter(|r| !r.succeeded()) {
        for step in &report.rollback {
            eprintln!(
                "  rollback: {} {}",
                if step.ok {
                    "✓"
                } else {
                    "✗ NOT ROLLED BACK:"
                },
                step.text
            );
        }
        let complete = report.rollback_complete();
        eprintln!(
            "error: register-flows failed: {}; {}",
            report.error.as_deref().unwrap_or("unknown error"),
            if complete {
                "every write was rolled back"
            } else {
                "the rollback was incomplete (see ✗ above)"
            }
        );
    } else if let Some(residual) = &outcome.unconverged {
        eprint!("{}", residual.render_text());
        eprintln!("error: register-flows failed: the server kept changing while registering (another run at the same time?); run it again");
    } else if args.check && outcome.plan.has_changes() {
        eprintln!(
            "drift: the server differs from {}",
            project.prefect_file_label()
        );
    }
    if args.json {
        println!(
            "{}",
            json_document(client, project, desired, mode, outcome, timings)
        );
    }
}

fn summary_word(outcome: &SyncOutcome, mode: &str) -> &'static str {
    match mode {
        "check" if outcome.plan.has_changes() => "Drift found",
        "check" => "In sync",
        "dry-run" => "Planned",
        _ if outcome.failed() => "Failed",
        _ if outcome.report.is_none() => "Nothing to do",
        _ => "Done",
    }
}

/// One line per deployment (created / updated: fields / unchanged / deleted), details indented.
pub fn render_result(outcome: &SyncOutcome) -> String {
    let mut out = String::new();
    let statuses = outcome.report.as_ref().map(|r| r.status.as_slice());
    for (i, item) in outcome.plan.items.iter().enumerate() {
        let status = statuses
            .and_then(|s| s.get(i))
            .cloned()
            .unwrap_or(ItemStatus::Done);
        let failed = outcome.report.as_ref().is_some_and(|r| !r.succeeded());
        let verb = match (item.action(), &status) {
            (Action::Unchanged, _) => "unchanged".to_string(),
            (_, ItemStatus::NotStarted) => format!("not {}", past(item.action())),
            (_, ItemStatus::Failed(why)) => format!("FAILED to {} ({why})", item.action().as_str()),
            (_, ItemStatus::Done) if failed => format!("{} (rolled back)", past(item.action())),
            (_, ItemStatus::Done) => past(item.action()).to_string(),
        };
        let fields = if item.action() == Action::Update {
            format!(": {}", item.changed_fields().join(", "))
        } else {
            String::new()
        };
        out.push_str(&format!("{verb} {}{fields}\n", item.full_name()));
        for change in item.changes() {
            out.push_str(&format!(
                "    {}: {} → {}\n",
                change.path,
                plan::short(change.old.as_ref(), 60),
                plan::short(change.new.as_ref(), 60)
            ));
        }
        for op in item.schedule_ops() {
            out.push_str(&format!(
                "    schedules: {}\n",
                plan::describe_schedule_op(op)
            ));
        }
    }
    out
}

fn past(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Unchanged => "unchanged",
        Action::Delete => "deleted",
    }
}

/// The `--json` document when the project did not validate (nothing was read or written).
fn invalid_document(
    client: &PrefectClient,
    project: &Project,
    args: &RegisterFlowsArgs,
    err: &anyhow::Error,
) -> Value {
    let errors: Vec<String> = match err.downcast_ref::<desired::ValidationErrors>() {
        Some(validation) => validation.problems.clone(),
        None => vec![crate::sys::redact::redact(&format!("{err:#}"))],
    };
    json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "mode": if args.check { "check" } else if args.dry_run { "dry-run" } else { "apply" },
        "status": "invalid",
        "server": client.display_url(),
        "prefect_file": project.prefect_file_label(),
        "errors": errors,
        "deployments": [],
    })
}

/// The `--json` document; its schema is documented in docs/register-flows-json.md.
pub fn json_document(
    client: &PrefectClient,
    project: &Project,
    desired: &DesiredState,
    mode: &str,
    outcome: &SyncOutcome,
    timings: &Timings,
) -> Value {
    let mut doc = outcome.plan.to_json();
    let statuses = outcome.report.as_ref().map(|r| r.status.clone());
    if let Some(Value::Array(items)) = doc.get_mut("deployments") {
        for (i, item) in items.iter_mut().enumerate() {
            let status = match statuses.as_ref().and_then(|s| s.get(i)) {
                None if mode == "apply" => "done",
                None => "planned",
                Some(ItemStatus::Done)
                    if outcome.report.as_ref().is_some_and(|r| !r.succeeded()) =>
                {
                    "rolled_back"
                }
                Some(ItemStatus::Done) => "done",
                Some(ItemStatus::NotStarted) => "not_started",
                Some(ItemStatus::Failed(_)) => "failed",
            };
            item["status"] = json!(status);
        }
    }
    let status = match mode {
        "check" if outcome.plan.has_changes() => "drift",
        "check" => "in_sync",
        "dry-run" => "planned",
        _ if outcome.failed() => "failed",
        _ if outcome.report.is_none() => "unchanged",
        _ => "applied",
    };
    let report = outcome.report.as_ref();
    let mut out = json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "mode": mode,
        "status": status,
        "server": client.display_url(),
        "prefect_file": project.prefect_file_label(),
        "project": desired.owner.project,
        "warnings": desired.warnings.iter().chain(&outcome.plan.warnings).collect::<Vec<_>>(),
        "error": report.and_then(|r| r.error.clone()).or_else(|| outcome.unconverged.as_ref().map(|_| "the server kept changing while registering".to_string())),
        "rollback": report.map(|r| r.rollback.iter().map(|s| json!({"ok": s.ok, "text": s.text})).collect::<Vec<_>>()).unwrap_or_default(),
        "requests": outcome.requests,
        "retries": outcome.retries,
        "rounds": outcome.rounds,
        "timings_ms": {
            "validate": timings.validate.as_millis() as u64,
            "read": timings.read.as_millis() as u64,
            "write": timings.write.as_millis() as u64,
            "total": timings.total.as_millis() as u64,
        },
    });
    if let (Value::Object(out), Value::Object(plan)) = (&mut out, doc) {
        for (key, value) in plan {
            if key != "warnings" {
                out.insert(key, value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::apply::RollbackStep;
    use crate::sync::desired::tests::sample;
    use crate::sync::plan::{DeploymentUpdate, FieldChange, PlanItem, ServerDeployment};
    use serde_json::Map;

    fn item(action: Action, name: &str, changes: Vec<FieldChange>) -> PlanItem {
        let mut desired = sample(name);
        desired.flow_name = "f".into();
        let server = ServerDeployment {
            id: format!("id-{name}"),
            name: name.into(),
            flow_name: "f".into(),
            owner: None,
            raw: json!({}),
        };
        match action {
            Action::Create => PlanItem::Create(desired),
            Action::Update => PlanItem::Update(Box::new(DeploymentUpdate {
                desired,
                server,
                changes,
                patch: Map::new(),
                restore_patch: Map::new(),
                schedule_ops: Vec::new(),
                replaced_automations: None,
            })),
            Action::Unchanged => PlanItem::Unchanged { desired, server },
            Action::Delete => PlanItem::Delete(server),
        }
    }

    fn outcome(report: Option<ApplyReport>) -> SyncOutcome {
        let change = FieldChange {
            path: "tags".into(),
            old: Some(json!(["a"])),
            new: Some(json!(["b"])),
        };
        let plan = Plan {
            items: vec![
                item(Action::Create, "new", vec![]),
                item(Action::Update, "upd", vec![change]),
                item(Action::Unchanged, "same", vec![]),
            ],
            warnings: vec![],
        };
        SyncOutcome {
            plan,
            report,
            rounds: 1,
            unconverged: None,
            read: Duration::ZERO,
            write: Duration::ZERO,
            requests: 0,
            retries: 0,
            writes_planned: 3,
        }
    }

    fn args(check: bool) -> RegisterFlowsArgs {
        RegisterFlowsArgs {
            dry_run: false,
            check,
            prune: false,
            json: false,
            engine: Engine::Native,
            concurrency: 8,
        }
    }

    #[test]
    fn result_lines_name_what_happened() {
        let ok = ApplyReport {
            status: vec![ItemStatus::Done; 3],
            error: None,
            interrupted: false,
            rollback: vec![],
        };
        let text = render_result(&outcome(Some(ok)));
        assert_eq!(
            text,
            "created f/new\nupdated f/upd: tags\n    tags: [\"a\"] → [\"b\"]\nunchanged f/same\n"
        );
        let failed = ApplyReport {
            status: vec![
                ItemStatus::Done,
                ItemStatus::Failed("boom".into()),
                ItemStatus::Done,
            ],
            error: Some("f/upd: boom".into()),
            interrupted: false,
            rollback: vec![RollbackStep {
                ok: true,
                text: "deleted f/new".into(),
            }],
        };
        let out = outcome(Some(failed));
        let text = render_result(&out);
        assert!(
            text.starts_with("created (rolled back) f/new\nFAILED to update (boom) f/upd: tags\n"),
            "{text}"
        );
        assert_eq!(out.exit_code(&args(false)), code::ERROR);
    }

    #[test]
    fn exit_codes_follow_terraforms_convention() {
        let mut planned = outcome(None);
        assert_eq!(planned.exit_code(&args(true)), code::DRIFT);
        assert_eq!(planned.exit_code(&args(false)), code::OK);
        planned.plan.items.truncate(0);
        assert_eq!(planned.exit_code(&args(true)), code::OK);
        planned.unconverged = Some(Plan::default());
        assert_eq!(planned.exit_code(&args(true)), code::ERROR);
    }
}
