//! Parity with `prefect deploy --all`: the same projects are registered with the real Prefect CLI
//! on one server and with `xtask register-flows` on another; every deployment (and the
//! automations its triggers own) is then compared field by field. The only differences allowed
//! are the deliberate ones listed in docs/parity.md (`support::parity::allowed_differences`).
//!
//! Projects: the feature fixtures in tests/fixtures/parity/ and every corpus file Prefect 3.9.1
//! registers (tests/fixtures/yaml/corpus/, made runnable by `support::parity::corpus`).
//! `XTASK_PARITY_SELF_CHECK=1` replaces xtask by a second Prefect CLI run to check the harness.

use std::path::Path;

use serde_json::json;

use crate::support::parity::corpus::{self, Plan};
use crate::support::parity::*;
use crate::support::{copy_tree, fixtures, scratch_dir};

fn env_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn fixture_case(name: &str, extra: impl Fn(&Path) + Send + Sync + 'static) -> Case {
    let src = fixtures("parity").join(name);
    let yaml = std::fs::read(src.join("prefect.yaml")).unwrap();
    Case {
        label: format!("fixture-{name}"),
        stage: Box::new(move |dir: &Path| {
            copy_tree(&src, dir);
            extra(dir);
        }),
        env: vec![],
        setup: Setup {
            pools: vec!["parity-pool".into()],
            ..Setup::default()
        },
        selection: Selection {
            deployment_names: deployment_names(&yaml),
            flow_prefix: "parity-".into(),
        },
        rerun: false,
        between_rounds: vec![],
    }
}

fn feature_cases() -> Vec<Case> {
    let mut full = fixture_case("full", |_| {});
    full.env = env_pairs(&[("PARITY_SOURCE", "s3://from-env")]);
    // The second round takes Prefect's update path (PATCH) against xtask's unchanged re-run,
    // after a "UI" change of fields the yaml omits: `paused` (Prefect resets it, xtask keeps it)
    // and `enforce_parameter_schema` (both keep it).
    full.rerun = true;
    full.between_rounds = vec![
        (PAUSED_IN_UI.into(), json!({"paused": true})),
        (
            "parity-load".into(),
            json!({"enforce_parameter_schema": false}),
        ),
    ];

    let yaml11 = fixture_case("yaml11", to_crlf_with_bom);

    let mut templating = fixture_case("templating", |_| {});
    templating.env = env_pairs(&[
        ("PARITY_STAGE", "staging"),
        ("PARITY_POOL", "parity-tpl-pool"),
        ("PARITY_TZ", "Europe/Berlin"),
    ]);
    templating.setup = Setup {
        pools: vec!["parity-pool".into(), "parity-tpl-pool".into()],
        variables: vec![
            ("parity_str".into(), json!("var-value")),
            ("parity_int".into(), json!(42)),
            ("parity_obj".into(), json!({"k": [1, 2]})),
            ("parity_tags".into(), json!(["from-variable", "t2"])),
        ],
        blocks: vec![
            (
                "secret".into(),
                "parity-secret".into(),
                json!({"value": "s3cr3t"}),
            ),
            (
                "secret".into(),
                "parity-jsonsecret".into(),
                json!({"value": {"a": {"b": [0, {"c": "deep"}]}}}),
            ),
        ],
    };

    let mut buildsteps = fixture_case("buildsteps", |_| {});
    buildsteps.env = env_pairs(&[("PARITY_STAGE", "staging")]);

    let mut triggers = fixture_case("triggers", |_| {});
    // Prefect deletes and re-creates the automations on every deploy; xtask leaves unchanged ones.
    triggers.rerun = true;
    let gitrepo = fixture_case("gitrepo", make_git_repo);
    let types = fixture_case("types", |_| {});
    let mut resources = fixture_case("resources", |_| {});
    resources.setup = Setup {
        pools: vec!["parity-pool".into(), "parity-res-pool".into()],
        variables: vec![("parity_res_model".into(), json!("whisper-tiny"))],
        ..Setup::default()
    };
    vec![
        full, templating, buildsteps, yaml11, triggers, gitrepo, types, resources,
    ]
}

#[test]
fn feature_fixtures_match_prefect_deploy() {
    let servers = Servers::from_env();
    let problems = run_cases(&servers, feature_cases(), 2);
    assert!(
        problems.is_empty(),
        "differences from `prefect deploy --all`:\n{}",
        problems.join("\n")
    );
}

#[test]
fn corpus_files_match_prefect_deploy() {
    let servers = Servers::from_env();
    let entries = corpus::entries();
    assert_eq!(entries.len(), 40, "every corpus file has a plan");
    let cases: Vec<Case> = entries
        .iter()
        .filter_map(|e| match &e.plan {
            Plan::Run(recipe) => Some(corpus::case(e, recipe)),
            Plan::Refused { .. } => None,
        })
        .collect();
    let problems = run_cases(&servers, cases, 2);
    assert!(
        problems.is_empty(),
        "differences from `prefect deploy --all`:\n{}",
        problems.join("\n")
    );
}

/// Files Prefect 3.9.1 does not register (whole file skipped, or a stop part-way): xtask must
/// refuse them too, before writing anything.
#[test]
fn corpus_files_prefect_refuses_are_refused_without_writes() {
    let servers = Servers::from_env();
    let mut problems = Vec::new();
    for entry in corpus::entries() {
        let Plan::Refused { reason, pools } = entry.plan else {
            continue;
        };
        // The pools exist, so that xtask refuses the file for what is wrong with it.
        let setup = Setup {
            pools: pools.iter().map(|p| p.to_string()).collect(),
            ..Setup::default()
        };
        apply_setup(&servers, &setup);
        let dir = scratch_dir(&format!("refused-c{:02}", entry.id));
        corpus::stage_refused(&dir, &entry);
        let prefix = corpus::flow_prefix(&entry);
        let by_prefix = json!({"flows": {"name": {"like_": prefix}}});
        for flow in servers.xtask.read_flows(by_prefix.clone()).unwrap() {
            // Left by an earlier run against the same server (deleting a flow deletes its deployments).
            servers
                .xtask
                .delete(&format!("/flows/{}", flow["id"].as_str().unwrap()))
                .unwrap();
        }
        let out = run_xtask(&servers, &dir, &[]);
        if out.success {
            problems.push(format!(
                "c{:02} {} ({reason}): xtask accepted it:\n{}",
                entry.id, entry.file, out.text
            ));
        }
        let flows = servers.xtask.read_flows(by_prefix.clone()).unwrap();
        let written = servers.xtask.read_deployments(by_prefix).unwrap();
        if !written.is_empty() || !flows.is_empty() {
            problems.push(format!(
                "c{:02} {}: xtask wrote {} flow(s), {} deployment(s)",
                entry.id,
                entry.file,
                flows.len(),
                written.len()
            ));
        }
        let _ = std::fs::remove_dir_all(dir.with_extension("prefect-home"));
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---- the harness itself (no server) -------------------------------------------------------

fn window() -> Window {
    let start: jiff::Timestamp = "2026-05-01T12:00:00Z".parse().unwrap();
    Window {
        start,
        end: start + jiff::SignedDuration::from_secs(3),
    }
}

fn stored(description: serde_json::Value, anchor: &str) -> serde_json::Value {
    json!({
        "id": "9d3c", "created": "2026-05-01T12:00:01Z", "name": "d", "description": description,
        "version": "1", "tags": ["a"], "labels": {"prefect.flow.id": "f1", "xtask.project": "p", "team": "x"},
        "global_concurrency_limit": {"id": "g", "limit": 2},
        "schedules": [
            {"id": "s1", "schedule": {"interval": 60.0, "anchor_date": anchor, "timezone": "UTC"}, "active": true,
             "max_scheduled_runs": null, "parameters": {}, "slug": null},
            {"id": "s2", "schedule": {"cron": "0 9 * * *", "timezone": null, "day_or": true}, "active": true,
             "max_scheduled_runs": null, "parameters": {}, "slug": null}
        ],
    })
}

#[test]
fn normalise_drops_ids_and_server_labels_and_marks_deploy_time_anchors() {
    let n = normalise(&stored(json!("x"), "2026-05-01T12:00:02.123456Z"), window());
    assert_eq!(n["labels"], json!({"team": "x"}));
    assert_eq!(n["global_concurrency_limit"], json!(2));
    assert!(n.get("id").is_none() && n.get("created").is_none());
    let anchors: Vec<_> = n["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["schedule"]["anchor_date"].clone())
        .collect();
    assert!(anchors.contains(&json!("<deploy-time>")), "{anchors:?}");
    // An anchor the yaml set (outside the run) is compared as is.
    let n = normalise(&stored(json!("x"), "2026-01-01T00:00:00Z"), window());
    assert!(n.to_string().contains("2026-01-01T00:00:00Z"));
}

#[test]
fn compare_reports_every_difference_except_the_allowed_ones() {
    let key = "flow/d".to_string();
    let theirs = State::from([(
        key.clone(),
        normalise(&stored(json!("None"), "2026-01-01T00:00:00Z"), window()),
    )]);
    let mut ours = State::from([(
        key.clone(),
        normalise(&stored(json!(null), "2026-01-01T00:00:00Z"), window()),
    )]);
    assert!(
        compare(&theirs, &ours).is_empty(),
        "\"None\" vs null is a deliberate difference"
    );
    ours.get_mut(&key).unwrap()["tags"] = json!(["b"]);
    ours.insert("flow/extra".into(), json!({}));
    let problems = compare(&theirs, &ours);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with("flow/d.tags")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("flow/extra") && p.contains("not by prefect")),
        "{problems:?}"
    );
    // The other direction of the quirk is not allowed.
    let problems = compare(&ours, &theirs);
    assert!(
        problems.iter().any(|p| p.starts_with("flow/d.description")),
        "{problems:?}"
    );
    // Every deliberate difference says why (docs/parity.md repeats it).
    for allowed in allowed_differences() {
        assert!(!allowed.reason.trim().is_empty(), "{}", allowed.field);
    }
}

#[test]
fn every_corpus_file_has_a_plan_and_every_edit_applies() {
    let entries = corpus::entries();
    let files: std::collections::BTreeSet<_> = entries.iter().map(|e| e.file).collect();
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(corpus::corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    assert_eq!(
        files
            .iter()
            .map(|f| f.to_string())
            .collect::<std::collections::BTreeSet<_>>(),
        on_disk
    );
    for entry in &entries {
        if let Plan::Run(recipe) = &entry.plan {
            let yaml = corpus::edited_yaml(entry, recipe);
            let dir = scratch_dir(&format!("stubs-c{:02}", entry.id));
            corpus::write_stubs(&dir, entry, yaml.as_bytes());
            assert!(
                std::fs::read_dir(&dir).unwrap().count() > 0,
                "{}: no stub written",
                entry.file
            );
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
