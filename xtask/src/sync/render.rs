//! register-flows' report: the human text (plan or result, summary line, rollback, drift) and
//! the `--json` document (schema in docs/register-flows-json.md).

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::prefect::api::PrefectClient;
use crate::project::Project;
use crate::sync::apply::ItemStatus;
use crate::sync::desired::{self, DesiredState};
use crate::sync::engine::{Registration, SyncOptions, SyncOutcome, Timings};
use crate::sync::plan::{self, Action, JSON_SCHEMA_VERSION};

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The text a run prints on stderr: header, warnings, the plan (or what was done), the summary
/// line, and the rollback, error or drift lines.
pub fn report_text(
    client: &PrefectClient,
    project: &Project,
    options: &SyncOptions,
    registration: &Registration,
) -> String {
    let Registration {
        desired,
        outcome,
        timings,
    } = registration;
    let mode = options.mode();
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "register-flows ({mode}): {} → {} (project {})",
        project.prefect_file_label(),
        client.display_url(),
        desired.owner.project
    ));
    for warning in desired.warnings.iter().chain(&outcome.plan.warnings) {
        line(format!("warning: {warning}"));
    }
    let deletes = options.prune && outcome.plan.count(Action::Delete) > 0;
    if mode == "apply" {
        out.push_str(&render_result(outcome));
        if deletes {
            out.push_str("note: pruned deployments lose their scheduled runs\n");
        }
    } else {
        out.push_str(&outcome.plan.render_text());
        if deletes {
            out.push_str("warning: deleting a deployment also deletes its scheduled runs\n");
        }
    }
    out.push_str(&summary_line(outcome, mode, timings));
    out.push_str(&closing_lines(project, options, outcome));
    out
}

/// `Done in 1.23 s (validate …, read …, write …); N requests, M writes planned.`
fn summary_line(outcome: &SyncOutcome, mode: &str, timings: &Timings) -> String {
    let writes = outcome
        .report
        .as_ref()
        .map_or(0, |_| outcome.writes_planned);
    format!(
        "{} in {} (validate {}, read {}, write {}); {} requests{}{}.\n",
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
    )
}

/// The rollback and `error:` lines of a failed run, the residual plan of one that did not
/// converge, or the drift line of a check that found differences.
fn closing_lines(project: &Project, options: &SyncOptions, outcome: &SyncOutcome) -> String {
    let mut out = String::new();
    if let Some(report) = outcome.report.as_ref().filter(|r| !r.succeeded()) {
        for step in &report.rollback {
            let _ = writeln!(
                out,
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
        let _ = writeln!(
            out,
            "error: register-flows failed: {}; {}",
            report.error.as_deref().unwrap_or("unknown error"),
            if complete {
                "every write was rolled back"
            } else {
                "the rollback was incomplete (see ✗ above)"
            }
        );
    } else if let Some(residual) = &outcome.unconverged {
        out.push_str(&residual.render_text());
        out.push_str("error: register-flows failed: the server kept changing while registering (another run at the same time?); run it again\n");
    } else if options.check && outcome.plan.has_changes() {
        let _ = writeln!(
            out,
            "drift: the server differs from {}",
            project.prefect_file_label()
        );
    }
    out
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
pub(crate) fn render_result(outcome: &SyncOutcome) -> String {
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
pub fn invalid_document(
    client: &PrefectClient,
    project: &Project,
    options: &SyncOptions,
    err: &anyhow::Error,
) -> Value {
    let errors: Vec<String> = match err.downcast_ref::<desired::ValidationErrors>() {
        Some(validation) => validation.problems.clone(),
        None => vec![crate::sys::redact::redact(&format!("{err:#}"))],
    };
    json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "mode": options.mode(),
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
    options: &SyncOptions,
    registration: &Registration,
) -> Value {
    let Registration {
        desired,
        outcome,
        timings,
    } = registration;
    let mode = options.mode();
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
    let mut out = document_header(client, project, desired, mode, outcome, timings);
    if let (Value::Object(out), Value::Object(plan)) = (&mut out, doc) {
        for (key, value) in plan {
            if key != "warnings" {
                out.insert(key, value);
            }
        }
    }
    out
}

/// The document's fields before the plan's own (`deployments`, counts).
fn document_header(
    client: &PrefectClient,
    project: &Project,
    desired: &DesiredState,
    mode: &str,
    outcome: &SyncOutcome,
    timings: &Timings,
) -> Value {
    let status = match mode {
        "check" if outcome.plan.has_changes() => "drift",
        "check" => "in_sync",
        "dry-run" => "planned",
        _ if outcome.failed() => "failed",
        _ if outcome.report.is_none() => "unchanged",
        _ => "applied",
    };
    let report = outcome.report.as_ref();
    json!({
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::apply::{ApplyReport, RollbackStep};
    use crate::sync::desired::tests::sample;
    use crate::sync::plan::Plan;
    use crate::sync::plan::{DeploymentUpdate, FieldChange, PlanItem, ServerDeployment};
    use crate::sys::report::code;
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

    fn args(check: bool) -> SyncOptions {
        SyncOptions {
            check,
            ..SyncOptions::default()
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
