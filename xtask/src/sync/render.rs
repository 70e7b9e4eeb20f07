//! register-flows' report: the human text (plan or result, summary line, rollback, drift) and
//! the `--json` document (schema in docs/register-flows-json.md).

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::prefect::api::PrefectClient;
use crate::project::Project;
use crate::sync::apply::{ItemStatus, RollbackStep};
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
    let report = outcome.report.as_ref();
    let rollback_lines = |out: &mut String| {
        for step in report.map(|r| r.rollback.as_slice()).unwrap_or_default() {
            let _ = writeln!(out, "{}", rollback_line(step));
        }
    };
    if let Some(report) = report.filter(|r| !r.succeeded()) {
        rollback_lines(&mut out);
        let _ = writeln!(
            out,
            "error: register-flows failed: {}; {}",
            report.error.as_deref().unwrap_or("unknown error"),
            rollback_verdict(outcome)
        );
    } else if let Some(residual) = &outcome.unconverged {
        out.push_str(&residual.render_text());
        rollback_lines(&mut out);
        let _ = writeln!(
            out,
            "error: register-flows failed: the server kept changing while registering (another run at the same time?); {}; run it again",
            rollback_verdict(outcome)
        );
    } else if options.check && outcome.plan.has_changes() {
        let _ = writeln!(
            out,
            "drift: the server differs from {}",
            project.prefect_file_label()
        );
    }
    out
}

/// One step of a rollback as the report (and the live progress on stderr) prints it.
pub(crate) fn rollback_line(step: &RollbackStep) -> String {
    let mark = if step.ok {
        "✓"
    } else {
        "✗ NOT ROLLED BACK:"
    };
    format!("  rollback: {mark} {}", step.text)
}

/// What the rollback of a failed run achieved, exactly.
fn rollback_verdict(outcome: &SyncOutcome) -> String {
    let Some(report) = &outcome.report else {
        return "nothing was written".into();
    };
    let rounds = if outcome.rounds > 1 {
        format!(" (of all {} rounds)", outcome.rounds)
    } else {
        String::new()
    };
    if report.rollback.is_empty() {
        "nothing had been written, so nothing was rolled back".into()
    } else if report.rollback_complete() {
        format!("every write{rounds} was rolled back")
    } else {
        format!("the rollback{rounds} was incomplete (see ✗ above)")
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

/// One line per pool, queue, limit or variable, then per deployment (created / updated: fields /
/// unchanged / deleted), details indented.
pub(crate) fn render_result(outcome: &SyncOutcome) -> String {
    let mut out = String::new();
    for (i, item) in outcome.plan.resources.items.iter().enumerate() {
        let status = outcome
            .report
            .as_ref()
            .and_then(|r| r.resource_status.get(i))
            .cloned()
            .unwrap_or(ItemStatus::Done);
        out.push_str(&format!(
            "{} {}\n",
            verb(outcome, item.action, status),
            item.title()
        ));
        if item.action != Action::Unchanged {
            for line in item.detail_lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    for (i, item) in outcome.plan.items.iter().enumerate() {
        let fields = if item.action() == Action::Update {
            format!(": {}", item.changed_fields().join(", "))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} {}{fields}\n",
            result_verb(outcome, i),
            item.full_name()
        ));
        for line in plan::change_lines(item) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// What happened to plan item `i` in an apply: `created`, `not updated`, `FAILED to delete (…)`,
/// `created (rolled back)`, `unchanged`.
fn result_verb(outcome: &SyncOutcome, i: usize) -> String {
    let Some(item) = outcome.plan.items.get(i) else {
        return String::new();
    };
    let status = outcome
        .report
        .as_ref()
        .and_then(|r| r.status.get(i))
        .cloned()
        .unwrap_or(ItemStatus::Done);
    verb(outcome, item.action(), status)
}

/// What happened to an item with `action` and `status` in an apply.
fn verb(outcome: &SyncOutcome, action: Action, status: ItemStatus) -> String {
    let failed = outcome.failed();
    let rolled_back = outcome
        .report
        .as_ref()
        .is_some_and(|r| r.rollback_complete());
    match (action, &status) {
        (Action::Unchanged, _) => "unchanged".to_string(),
        (_, ItemStatus::NotStarted) => format!("not {}", past(action)),
        (_, ItemStatus::Failed(why)) => format!("FAILED to {} ({why})", action.as_str()),
        (_, ItemStatus::Done) if failed && rolled_back => {
            format!("{} (rolled back)", past(action))
        }
        (_, ItemStatus::Done) if failed => {
            format!("{} (rollback incomplete, see ✗ below)", past(action))
        }
        (_, ItemStatus::Done) => past(action).to_string(),
    }
}

fn past(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Unchanged => "unchanged",
        Action::Delete => "deleted",
    }
}

/// The Markdown report (`--format markdown`) for a pull-request comment or a CI job summary;
/// the format is documented in docs/register-flows-markdown.md. Counts first, then one
/// collapsed block per deployment that changes (its lines are the text plan's), the unchanged
/// ones in one block, then the rollback, error or drift lines. No timings: the same plan renders
/// the same text, so an updated comment only changes when the plan does.
pub fn report_markdown(
    client: &PrefectClient,
    project: &Project,
    options: &SyncOptions,
    registration: &Registration,
) -> String {
    let Registration {
        desired, outcome, ..
    } = registration;
    let mode = options.mode();
    let plan = &outcome.plan;
    let applied = mode == "apply";
    // Past tense only for what was done and kept: a failed apply rolled back.
    let done = applied && !outcome.failed();
    let counts = [
        Action::Create,
        Action::Update,
        Action::Unchanged,
        Action::Delete,
    ]
    .map(|action| {
        let word = match action {
            Action::Unchanged => "unchanged".to_string(),
            _ if done => past(action).to_string(),
            _ => format!("to {}", action.as_str()),
        };
        format!("{} {word}", plan.count(action))
    })
    .join(", ");
    let mut out = String::new();
    let _ = writeln!(out, "### {}: {counts}\n", summary_word(outcome, mode));
    let _ = writeln!(
        out,
        "`register-flows{}` · {} → {} · project {}\n",
        match mode {
            "apply" => "",
            "check" => " --check",
            _ => " --dry-run",
        },
        code_span(&project.prefect_file_label()),
        code_span(&client.display_url()),
        code_span(&desired.owner.project)
    );
    for warning in desired.warnings.iter().chain(&plan.warnings) {
        let _ = writeln!(out, "- **warning:** {}", markdown_escape(warning));
    }
    if !desired.warnings.is_empty() || !plan.warnings.is_empty() {
        out.push('\n');
    }
    let mut unchanged = Vec::new();
    for (i, item) in plan.resources.items.iter().enumerate() {
        if item.action == Action::Unchanged {
            unchanged.push(item.title());
            continue;
        }
        let what = if applied {
            let status = outcome
                .report
                .as_ref()
                .and_then(|r| r.resource_status.get(i))
                .cloned()
                .unwrap_or(ItemStatus::Done);
            verb(outcome, item.action, status)
        } else {
            format!("{} {}", item.action.sigil(), item.action.as_str())
        };
        let location = item
            .source
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<details><summary><code>{}</code> <b>{}</b>{}</summary>\n",
            html_escape(&what),
            html_escape(&item.title()),
            html_escape(&location)
        );
        let lines = item.detail_lines();
        if !lines.is_empty() {
            out.push_str(&code_block(&lines.join("\n")));
        }
        out.push_str("\n</details>\n\n");
    }
    for (i, item) in plan.items.iter().enumerate() {
        let action = item.action();
        if action == Action::Unchanged {
            unchanged.push(item.full_name());
            continue;
        }
        let what = if applied {
            result_verb(outcome, i)
        } else {
            format!("{} {}", action.sigil(), action.as_str())
        };
        let fields = if action == Action::Update {
            format!(": {}", item.changed_fields().join(", "))
        } else {
            String::new()
        };
        let location = item
            .desired()
            .map(|d| format!(" ({})", d.source))
            .unwrap_or_default();
        let mut lines = plan::detail_lines(item);
        if let Some(created) = item.desired().filter(|_| action == Action::Create) {
            lines.extend(plan::create_lines(created));
        }
        let _ = writeln!(
            out,
            "<details><summary><code>{}</code> <b>{}</b>{}</summary>\n",
            html_escape(&what),
            html_escape(&item.full_name()),
            html_escape(&format!("{fields}{location}"))
        );
        if !lines.is_empty() {
            out.push_str(&code_block(&lines.join("\n")));
        }
        out.push_str("\n</details>\n\n");
    }
    if !unchanged.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>{} unchanged</summary>\n",
            unchanged.len()
        );
        for name in &unchanged {
            let _ = writeln!(out, "- <code>{}</code>", html_escape(name));
        }
        out.push_str("\n</details>\n\n");
    }
    let closing = closing_lines(project, options, outcome);
    if !closing.is_empty() {
        out.push_str(&code_block(closing.trim_end()));
    }
    out
}

/// The Markdown report when the project did not validate: every problem, nothing read or written.
pub fn invalid_markdown(project: &Project, options: &SyncOptions, err: &anyhow::Error) -> String {
    let problems: Vec<String> = match err.downcast_ref::<desired::ValidationErrors>() {
        Some(validation) => validation.problems.clone(),
        None => vec![format!("{err:#}")],
    };
    format!(
        "### Invalid: {} did not validate\n\n`register-flows{}` read and wrote nothing on the server.\n\n{}",
        code_span(&project.prefect_file_label()),
        match options.mode() {
            "apply" => "",
            "check" => " --check",
            _ => " --dry-run",
        },
        code_block(&problems.join("\n"))
    )
}

/// `text` in a fenced code block whose fence is longer than any backtick run inside it, so no
/// value can end the block early.
fn code_block(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}\n")
}

/// `text` as an inline code span (HTML-safe, no backtick can close it early).
fn code_span(text: &str) -> String {
    format!("<code>{}</code>", html_escape(text))
}

/// `&`, `<`, `>` and `"` as entities: text inside HTML (`<summary>`, `<code>`).
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Free text in Markdown: HTML escaped and Markdown's punctuation backslashed, so a warning
/// cannot turn into a link, a heading or a table.
fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in html_escape(text).chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '|' | '~' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
    let rolled_back = outcome.report.as_ref().is_some_and(|r| !r.succeeded());
    // Each item of a list gets the status of the same item in the report's list.
    let mut mark = |key: &str, statuses: Option<&[ItemStatus]>| {
        let Some(Value::Array(items)) = doc.get_mut(key) else {
            return;
        };
        for (i, item) in items.iter_mut().enumerate() {
            let status = match statuses.and_then(|s| s.get(i)) {
                None if mode == "apply" => "done",
                None => "planned",
                Some(ItemStatus::Done) if rolled_back => "rolled_back",
                Some(ItemStatus::Done) => "done",
                Some(ItemStatus::NotStarted) => "not_started",
                Some(ItemStatus::Failed(_)) => "failed",
            };
            item["status"] = json!(status);
        }
    };
    let report = outcome.report.as_ref();
    mark("deployments", report.map(|r| r.status.as_slice()));
    mark("resources", report.map(|r| r.resource_status.as_slice()));
    let mut out = document_header(client, project, desired, mode, outcome, timings);
    if let (Value::Object(out), Value::Object(plan)) = (&mut out, doc) {
        for (key, value) in plan {
            if key != "warnings" {
                out.insert(key, value);
            }
        }
        out.insert("selection".into(), selection_json(options));
    }
    out
}

/// `-n` patterns as given, or null when every deployment was selected.
fn selection_json(options: &SyncOptions) -> Value {
    if options.selection.is_all() {
        Value::Null
    } else {
        json!(options
            .selection
            .patterns()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>())
    }
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
            resources: Default::default(),
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
            resource_status: vec![],
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
            resource_status: vec![],
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
    // ---- Markdown: golden files in xtask/tests/fixtures/markdown/ --------------------------
    // `XTASK_BLESS=1 cargo test -p xtask --lib render::` rewrites them; review the diff.

    /// Compares `rendered`, masked as the command masks it (URL credentials; no secret variables
    /// here), with the golden file `name`.
    fn golden(name: &str, rendered: &str) {
        let actual = crate::sys::redact::redact_with(rendered, &[]);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/markdown")
            .join(name);
        if std::env::var_os("XTASK_BLESS").is_some() {
            std::fs::write(&path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (XTASK_BLESS=1 writes it)", path.display()));
        assert!(
            expected == actual,
            "{} differs from the rendering (XTASK_BLESS=1 rewrites it):\n{actual}",
            path.display()
        );
    }

    fn fixture_client() -> PrefectClient {
        PrefectClient::new(crate::prefect::api::ApiConfig::for_url(
            "https://deployer:SENTINELurlpw@gateway.example/prefect/api",
        ))
        .unwrap()
    }

    fn fixture_project() -> Project {
        Project {
            root: "/repo".into(),
            prefect_file: "/repo/prefect.yaml".into(),
        }
    }

    fn registration(outcome: SyncOutcome, warnings: Vec<String>) -> Registration {
        Registration {
            desired: DesiredState {
                owner: crate::sync::desired::Ownership {
                    project: "captionacc".into(),
                    prefect_file: "prefect.yaml".into(),
                },
                deployments: Vec::new(),
                warnings,
                resources: Default::default(),
            },
            outcome,
            timings: Timings {
                validate: Duration::from_millis(40),
                read: Duration::from_millis(12),
                write: Duration::ZERO,
                total: Duration::from_millis(52),
            },
        }
    }

    /// Every action, a value with credentials and one with backticks and HTML, and a prune.
    fn rich_outcome() -> SyncOutcome {
        let mut out = outcome(None);
        let url = FieldChange {
            path: "job_variables.env.DB_URL".into(),
            old: Some(json!("postgres://app:SENTINELdbpw@db.internal/app")),
            new: Some(json!("postgres://app:SENTINELdbpw@db2.internal/app")),
        };
        let odd = FieldChange {
            path: "description".into(),
            old: Some(json!("plain")),
            new: Some(json!("```</details><b>bold</b>")),
        };
        out.plan
            .items
            .push(item(Action::Update, "odd <name>", vec![url, odd]));
        let mut gone = item(Action::Delete, "old", vec![]);
        if let PlanItem::Delete(server) = &mut gone {
            server.raw = json!({"schedules": [{"id": "s1"}]});
        }
        out.plan.items.push(gone);
        out
    }

    fn options(dry_run: bool, check: bool) -> SyncOptions {
        SyncOptions {
            dry_run,
            check,
            prune: true,
            ..SyncOptions::default()
        }
    }

    #[test]
    fn markdown_plan_matches_its_golden_file() {
        let reg = registration(
            rich_outcome(),
            vec!["prefect.yaml:9: unknown key `foo` [x](y)".into()],
        );
        let md = report_markdown(
            &fixture_client(),
            &fixture_project(),
            &options(true, false),
            &reg,
        );
        golden("plan.md", &md);
    }

    #[test]
    fn markdown_drift_and_in_sync_match_their_golden_files() {
        let opts = options(false, true);
        let drift = registration(rich_outcome(), vec![]);
        golden(
            "drift.md",
            &report_markdown(&fixture_client(), &fixture_project(), &opts, &drift),
        );
        let mut same = outcome(None);
        same.plan.items.retain(|i| i.action() == Action::Unchanged);
        let in_sync = registration(same, vec![]);
        golden(
            "in-sync.md",
            &report_markdown(&fixture_client(), &fixture_project(), &opts, &in_sync),
        );
    }

    #[test]
    fn markdown_failed_apply_matches_its_golden_file() {
        let failed = ApplyReport {
            status: vec![
                ItemStatus::Done,
                ItemStatus::Failed("HTTP 422".into()),
                ItemStatus::Done,
            ],
            error: Some("f/upd: HTTP 422".into()),
            interrupted: false,
            rollback: vec![RollbackStep {
                ok: true,
                text: "deleted f/new".into(),
            }],
            resource_status: vec![],
        };
        let reg = registration(outcome(Some(failed)), vec![]);
        let md = report_markdown(
            &fixture_client(),
            &fixture_project(),
            &options(false, false),
            &reg,
        );
        golden("apply-failed.md", &md);
    }

    #[test]
    fn markdown_invalid_matches_its_golden_file() {
        let err = anyhow::Error::new(desired::ValidationErrors {
            problems: vec![
                "prefect.yaml:4: deployment `a`: work pool `nope` does not exist".into(),
                "prefect.yaml:9: deployment `b`: entrypoint `x.py:f`: no such file".into(),
            ],
        });
        golden(
            "invalid.md",
            &invalid_markdown(&fixture_project(), &options(true, false), &err),
        );
    }

    /// The Markdown masks exactly what the text masks: both go through `sys::redact` at the edge,
    /// and the masked value line is the same in both.
    #[test]
    fn markdown_and_text_mask_the_same_secrets() {
        let secrets = vec!["SENTINELdbpw".to_string()];
        let reg = registration(rich_outcome(), vec![]);
        let (client, project, opts) = (fixture_client(), fixture_project(), options(true, false));
        let text =
            crate::sys::redact::redact_with(&report_text(&client, &project, &opts, &reg), &secrets);
        let md = crate::sys::redact::redact_with(
            &report_markdown(&client, &project, &opts, &reg),
            &secrets,
        );
        for out in [&text, &md] {
            assert!(!out.contains("SENTINEL"), "{out}");
        }
        let masked = "job_variables.env.DB_URL: \"postgres://***@db.internal/app\" → \"postgres://***@db2.internal/app\"";
        assert!(text.contains(masked), "{text}");
        assert!(md.contains(masked), "{md}");
        // The server URL is masked even before redaction (display_url).
        assert!(
            md.contains("https://***@gateway.example/prefect/api"),
            "{md}"
        );
    }

    #[test]
    fn pools_limits_and_variables_are_reported_in_every_format() {
        use crate::sync::resources::{Kind, ResourceItem, ResourceOp};
        let mut out = outcome(None);
        let at = crate::sync::desired::SourceLocation {
            file: "prefect.yaml".into(),
            line: 7,
        };
        out.plan.resources.items = vec![
            ResourceItem {
                kind: Kind::Pool,
                name: "pool".into(),
                pool: None,
                source: Some(at.clone()),
                action: Action::Update,
                changes: vec![FieldChange {
                    path: "base_job_template.variables.properties.env.default.A".into(),
                    old: Some(json!("1")),
                    new: Some(json!("2")),
                }],
                op: ResourceOp::Update {
                    patch: Default::default(),
                    restore: Default::default(),
                },
            },
            ResourceItem {
                kind: Kind::Variable,
                name: "model".into(),
                pool: None,
                source: Some(at),
                action: Action::Unchanged,
                changes: vec![],
                op: ResourceOp::None,
            },
        ];
        let reg = registration(out, vec![]);
        let md = report_markdown(
            &fixture_client(),
            &fixture_project(),
            &options(true, false),
            &reg,
        );
        assert!(md.contains("<details><summary><code>~ update</code> <b>work pool 'pool'</b> (prefect.yaml:7)</summary>"), "{md}");
        assert!(
            md.contains("base_job_template.variables.properties.env.default.A: \"1\" → \"2\""),
            "{md}"
        );
        assert!(md.contains("- <code>variable 'model'</code>"), "{md}");
        let text = report_text(
            &fixture_client(),
            &fixture_project(),
            &options(true, false),
            &reg,
        );
        assert!(text.contains("~ update    work pool 'pool'  (prefect.yaml:7)\n    base_job_template.variables.properties.env.default.A: \"1\" → \"2\"\n"), "{text}");
        assert!(text.contains("Pools, queues, limits, variables: 0 to create, 1 to update, 1 unchanged, 0 to delete."), "{text}");
        let doc = json_document(
            &fixture_client(),
            &fixture_project(),
            &options(true, false),
            &reg,
        );
        assert_eq!(doc["resources"][0]["kind"], json!("work_pool"));
        assert_eq!(doc["resources"][0]["status"], json!("planned"));
        assert_eq!(doc["resources"][1]["action"], json!("unchanged"));
    }

    #[test]
    fn code_blocks_cannot_be_closed_by_their_content() {
        assert_eq!(code_block("a"), "```text\na\n```\n");
        assert_eq!(code_block("x ```` y"), "`````text\nx ```` y\n`````\n");
        assert_eq!(markdown_escape("[a](b) <i>"), "\\[a\\](b) &lt;i&gt;");
    }
}
