//! register-flows' sync engine against a real Prefect server, through a fault-injecting proxy:
//! minimal writes, dry-run/check, prune ownership, rollback after any failing write, convergence
//! despite resets and random 503s, and schedule ids/runs that survive unrelated changes.

use serde_json::json;
use xtask::sync::plan::Action;

use crate::support::fault_proxy::{Fault, FaultProxy, Rules};
use crate::support::sync::*;
use crate::support::{ensure_pool, server_url, unique, wait_for};

/// A project in its "before" state and its "after" (target) state:
/// keep (unchanged), upd (parameters + schedules change), gone (pruned), new (created).
struct Scenario {
    flow: String,
    before: xtask::sync::desired::DesiredState,
    after: xtask::sync::desired::DesiredState,
}

fn scenario(tag: &str) -> Scenario {
    let flow = unique(&format!("flow-{tag}"));
    let pool = unique(&format!("pool-{tag}"));
    let project = unique(&format!("proj-{tag}"));
    ensure_pool(&client_with_retries(&server_url(), 3), &pool);
    let keep = deployment(&flow, "keep", &pool, vec![cron("0 1 * * *")]);
    let upd = deployment(
        &flow,
        "upd",
        &pool,
        vec![cron("0 2 * * *"), cron("0 3 * * *")],
    );
    let gone = deployment(&flow, "gone", &pool, vec![cron("0 4 * * *")]);
    let before = state(&project, vec![keep.clone(), upd.clone(), gone]);
    let mut upd2 = upd;
    upd2.fields.insert("parameters".into(), json!({"n": 2}));
    upd2.schedules = Some(vec![
        cron("0 2 * * *"),
        cron("0 5 * * *"),
        cron("0 6 * * *"),
    ]);
    let new = deployment(&flow, "new", &pool, vec![cron("0 7 * * *")]);
    let after = state(&project, vec![keep, upd2, new]);
    Scenario {
        flow,
        before,
        after,
    }
}

#[test]
fn minimal_writes_dry_run_and_check() {
    let s = scenario("min");
    let direct = client_with_retries(&server_url(), 5); // setup and snapshots: patient
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let via_proxy = client_with_retries(&proxy.api_url, 5);

    let first = run_sync(&via_proxy, &s.before, &args(false, 4));
    assert!(!first.failed());
    assert_eq!(first.plan.count(Action::Create), 3);
    // One flow + three deployments.
    assert_eq!(proxy.successful_writes(), 4, "{:#?}", proxy.write_lines());

    proxy.reset_counts();
    let again = run_sync(&via_proxy, &s.before, &args(false, 4));
    assert_eq!(again.plan.count(Action::Unchanged), 3);
    assert_eq!(
        proxy.writes(),
        0,
        "an unchanged re-run must not write: {:#?}",
        proxy.write_lines()
    );

    // One field changed: exactly one PATCH of exactly that field.
    let mut changed = s.before.clone();
    changed.deployments[0]
        .fields
        .insert("tags".into(), json!(["test", "more"]));
    proxy.reset_counts();
    let one = run_sync(&via_proxy, &changed, &args(false, 4));
    assert!(!one.failed());
    let writes = proxy.write_lines();
    assert_eq!(proxy.successful_writes(), 1, "{writes:#?}");
    assert!(
        writes[0].starts_with("PATCH /api/deployments/"),
        "{writes:#?}"
    );
    assert_eq!(
        snapshot(&direct, &s.flow)["keep"]["tags"],
        json!(["test", "more"])
    );

    // Dry-run and check see the difference and write nothing.
    let before = snapshot(&direct, &s.flow);
    proxy.reset_counts();
    let mut dry = args(true, 4);
    dry.dry_run = true;
    let planned = run_sync(&via_proxy, &s.after, &dry);
    assert_eq!(
        (
            planned.plan.count(Action::Create),
            planned.plan.count(Action::Update),
            planned.plan.count(Action::Delete)
        ),
        (1, 2, 1)
    );
    let mut check = args(true, 4);
    check.check = true;
    let checked = run_sync(&via_proxy, &s.after, &check);
    assert_eq!(checked.exit_code(&check), 2);
    assert_eq!(proxy.writes(), 0, "{:#?}", proxy.write_lines());
    assert_eq!(snapshot(&direct, &s.flow), before);
    let in_sync = run_sync(&via_proxy, &changed, &check);
    assert_eq!(in_sync.exit_code(&check), 0);
}

#[test]
fn prune_deletes_only_this_projects_deployments() {
    let s = scenario("prune");
    let direct = client_with_retries(&server_url(), 5); // setup and snapshots: patient
    run_sync_ok(&direct, &s.before, &args(false, 4));
    // A deployment made by hand (no marker) and one of another project, same flow.
    let flow_id = direct.post("/flows/", &json!({"name": s.flow})).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pool = s.before.deployments[0].fields["work_pool_name"].clone();
    direct
        .post(
            "/deployments/",
            &json!({"name": "by-hand", "flow_id": flow_id, "work_pool_name": pool}),
        )
        .unwrap();
    let mut other = s.before.clone();
    other.owner.project = unique("other-project");
    other.deployments = vec![deployment(
        &s.flow,
        "theirs",
        pool.as_str().unwrap(),
        vec![],
    )];
    run_sync_ok(&direct, &other, &args(false, 4));

    // Without --prune nothing goes; with it, only `gone`.
    let kept = run_sync_ok(&direct, &s.after, &args(false, 4));
    assert_eq!(kept.plan.count(Action::Delete), 0);
    assert!(snapshot(&direct, &s.flow).contains_key("gone"));
    let pruned = run_sync_ok(&direct, &s.after, &args(true, 4));
    assert_eq!(pruned.plan.count(Action::Delete), 1);
    let names: Vec<String> = snapshot(&direct, &s.flow).into_keys().collect();
    assert_eq!(names, vec!["by-hand", "keep", "new", "theirs", "upd"]);
}

#[test]
fn every_failing_write_is_rolled_back() {
    let s = scenario("rollback");
    let direct = client_with_retries(&server_url(), 5); // setup and snapshots: patient
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let via_proxy = client_with_retries(&proxy.api_url, 2);
    run_sync_ok(&direct, &s.before, &args(true, 4));
    let before = snapshot(&direct, &s.flow);
    let keep_id = deployment_id(&direct, &s.flow, "keep");

    let total = {
        let mut dry = args(true, 1);
        dry.dry_run = true;
        run_sync(&direct, &s.after, &dry).writes_planned
    };
    assert!(
        total >= 6,
        "the scenario should need several writes, got {total}"
    );
    for n in 1..=total {
        for concurrency in [1, 4] {
            proxy.set_rules(Rules {
                nth_write: Some((n, Fault::Status(500))),
                ..Rules::default()
            });
            let outcome = run_sync(&via_proxy, &s.after, &args(true, concurrency));
            let report = outcome.report.as_ref().expect("applied");
            assert!(
                outcome.failed(),
                "write {n} failed but the sync succeeded: {:#?}",
                proxy.write_lines()
            );
            assert!(
                report.rollback_complete(),
                "write {n}: {:#?}",
                report.rollback
            );
            assert_eq!(snapshot(&direct, &s.flow), before, "write {n} (concurrency {concurrency}): state differs after rollback; writes {:#?}; rollback {:#?}", proxy.write_lines(), report.rollback);
            // The untouched deployment was never replaced.
            assert_eq!(deployment_id(&direct, &s.flow, "keep"), keep_id);
        }
    }
    // And without faults the same plan goes through.
    proxy.set_rules(Rules::default());
    let ok = run_sync(&via_proxy, &s.after, &args(true, 4));
    assert!(!ok.failed());
    let after = snapshot(&direct, &s.flow);
    assert_eq!(
        after.keys().cloned().collect::<Vec<_>>(),
        vec!["keep", "new", "upd"]
    );
    assert_eq!(after["upd"]["parameters"], json!({"n": 2}));
}

#[test]
fn resets_and_random_503s_still_reach_the_target() {
    let s = scenario("flaky");
    let direct = client_with_retries(&server_url(), 5); // setup and snapshots: patient
    run_sync_ok(&direct, &s.after, &args(true, 4));
    let target = snapshot(&direct, &s.flow);
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let via_proxy = client_with_retries(&proxy.api_url, 5);
    let total = {
        run_sync_ok(&direct, &s.before, &args(true, 4));
        let mut dry = args(true, 1);
        dry.dry_run = true;
        run_sync(&direct, &s.after, &dry).writes_planned
    };
    for n in 1..=total {
        // (A 503 on a single write is covered by the random 503s below.)
        for fault in [Fault::ResetBefore, Fault::ResetAfter] {
            run_sync_ok(&direct, &s.before, &args(true, 4));
            proxy.set_rules(Rules {
                nth_write: Some((n, fault)),
                ..Rules::default()
            });
            let outcome = run_sync(&via_proxy, &s.after, &args(true, 4));
            assert!(
                !outcome.failed(),
                "write {n} {fault:?}: {:?}",
                outcome.report.as_ref().map(|r| &r.error)
            );
            assert_eq!(
                snapshot(&direct, &s.flow),
                target,
                "write {n} {fault:?}: {:#?}",
                proxy.write_lines()
            );
        }
    }
    run_sync_ok(&direct, &s.before, &args(true, 4));
    proxy.set_rules(Rules {
        random_503: 0.25,
        ..Rules::default()
    });
    proxy.reset_counts();
    let retries_before = via_proxy.retry_count();
    let outcome = run_sync(&via_proxy, &s.after, &args(true, 4));
    assert!(
        !outcome.failed(),
        "{:?}",
        outcome.report.as_ref().map(|r| &r.error)
    );
    let answered_503 = proxy.log().iter().filter(|l| l.outcome == "503").count();
    assert!(answered_503 > 0, "the proxy should have answered some 503s");
    // The client's counts cover its whole life (for the CLI: the process), like `requests`.
    assert_eq!(outcome.retries, via_proxy.retry_count());
    assert_eq!(
        outcome.retries - retries_before,
        answered_503,
        "every 503 is retried once and counted"
    );
    assert!(
        proxy.log().iter().any(|l| l.outcome == "503"),
        "the proxy should have injected 503s"
    );
    assert_eq!(snapshot(&direct, &s.flow), target);
}

#[test]
fn a_server_that_stays_broken_is_reported_honestly() {
    let s = scenario("broken");
    let direct = client_with_retries(&server_url(), 5); // setup and snapshots: patient
    run_sync_ok(&direct, &s.before, &args(true, 4));
    let proxy = FaultProxy::start(&server_url(), Rules::default());
    let via_proxy = client_with_retries(&proxy.api_url, 1);
    // Writes 1-2 succeed (the flow, then one more), every later write (rollback included) fails.
    proxy.set_rules(Rules {
        writes_from: Some((3, Fault::Status(500))),
        ..Rules::default()
    });
    let outcome = run_sync(&via_proxy, &s.after, &args(true, 1));
    let report = outcome.report.expect("applied");
    assert!(report.error.is_some());
    assert!(!report.rollback_complete(), "{:#?}", report.rollback);
    assert!(
        report
            .rollback
            .iter()
            .any(|s| !s.ok && s.text.contains("could not")),
        "{:#?}",
        report.rollback
    );
}

#[test]
fn untouched_schedules_keep_their_ids_and_runs() {
    let s = scenario("runs");
    let direct = client_with_retries(&server_url(), 5); // setup and snapshots: patient
    run_sync_ok(&direct, &s.before, &args(false, 4));
    let keep = deployment_id(&direct, &s.flow, "keep").unwrap();
    let upd = deployment_id(&direct, &s.flow, "upd").unwrap();
    assert!(
        wait_for(60, || !scheduled_run_ids(&direct, &keep).is_empty()
            && !scheduled_run_ids(&direct, &upd).is_empty()),
        "the server's scheduler created no runs"
    );
    let keep_runs = scheduled_run_ids(&direct, &keep);
    let keep_schedules = schedule_ids(&direct, &s.flow, "keep");
    let upd_schedules = schedule_ids(&direct, &s.flow, "upd");
    let upd_runs = scheduled_run_ids(&direct, &upd);

    // Another deployment changes and `upd` gains a schedule: nothing of `keep` is touched, and
    // adding a schedule deletes none of `upd`'s runs.
    let mut next = s.before.clone();
    next.deployments[2]
        .fields
        .insert("tags".into(), json!(["other"]));
    next.deployments[1]
        .schedules
        .as_mut()
        .unwrap()
        .push(cron("0 8 * * *"));
    let outcome = run_sync(&direct, &next, &args(false, 4));
    assert!(!outcome.failed());
    assert_eq!(schedule_ids(&direct, &s.flow, "keep"), keep_schedules);
    assert_eq!(scheduled_run_ids(&direct, &keep), keep_runs);
    let now_upd = schedule_ids(&direct, &s.flow, "upd");
    for (cron, id) in &upd_schedules {
        assert_eq!(
            now_upd.get(cron),
            Some(id),
            "schedule {cron} of upd was replaced"
        );
    }
    let still = scheduled_run_ids(&direct, &upd);
    assert!(
        upd_runs.iter().all(|r| still.contains(r)),
        "adding a schedule deleted runs of the others"
    );

    // Another field of `upd` changes: its schedules keep their ids (the server deletes and
    // re-creates the future runs of a patched deployment; they come back).
    next.deployments[1]
        .fields
        .insert("description".into(), json!("changed"));
    let before_ids = schedule_ids(&direct, &s.flow, "upd");
    run_sync_ok(&direct, &next, &args(false, 4));
    assert_eq!(schedule_ids(&direct, &s.flow, "upd"), before_ids);
    assert!(
        wait_for(60, || !scheduled_run_ids(&direct, &upd).is_empty()),
        "runs were not re-created"
    );
}

/// A sync creating the deployment `raced` while another writer creates the same one between our
/// read and our create: writes are 1 = POST /flows/, 2 = POST /deployments/ (held back until the
/// other writer's create is done), then `more_writes` faults; `retries` for our client.
struct RacedCreate {
    flow: String,
    direct: xtask::prefect::api::PrefectClient,
    proxy: FaultProxy,
    desired: xtask::sync::desired::DesiredState,
    outcome: xtask::sync::SyncOutcome,
    /// The id of the other writer's deployment.
    theirs: String,
}

fn race_a_create(tag: &str, more_writes: Vec<(usize, Fault)>, retries: u32) -> RacedCreate {
    let flow = unique(&format!("flow-{tag}"));
    let pool = unique(&format!("pool-{tag}"));
    let direct = client_with_retries(&server_url(), 5);
    ensure_pool(&direct, &pool);
    let desired = state(
        &unique(&format!("proj-{tag}")),
        vec![deployment(&flow, "raced", &pool, vec![cron("0 8 * * *")])],
    );
    let proxy = FaultProxy::start(
        &server_url(),
        Rules {
            nth_write: Some((2, Fault::Delay(std::time::Duration::from_secs(3)))),
            more_writes,
            ..Rules::default()
        },
    );
    let via_proxy = client_with_retries(&proxy.api_url, retries);
    let (outcome, theirs) = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            assert!(
                wait_for(20, || proxy.writes() >= 2),
                "the xtask never sent its create"
            );
            let flow_id = direct
                .post("/flows/", &json!({ "name": flow }))
                .expect("flow")["id"]
                .clone();
            direct
                .post(
                    "/deployments/",
                    &json!({"name": "raced", "flow_id": flow_id, "work_pool_name": pool,
                            "enforce_parameter_schema": false, "concurrency_limit": 3}),
                )
                .expect("the other writer's create")["id"]
                .as_str()
                .expect("an id")
                .to_string()
        });
        let outcome = run_sync(&via_proxy, &desired, &args(false, 1));
        (outcome, other.join().expect("the other writer"))
    });
    RacedCreate {
        flow,
        direct,
        proxy,
        desired,
        outcome,
        theirs,
    }
}

/// Creates leave out fields that hold the server's defaults (`enforce_parameter_schema: true`,
/// no concurrency limit) and check the response. When someone creates the same deployment between
/// the plan and the POST, the POST upserts theirs, which keeps their values for the left-out
/// fields: the check must see that and patch them to the yaml's.
#[test]
fn a_deployment_created_behind_our_back_still_ends_as_the_yaml_says() {
    let RacedCreate {
        flow,
        direct,
        proxy,
        desired,
        outcome,
        ..
    } = race_a_create("race", Vec::new(), 5);
    assert!(!outcome.failed(), "{:#?}", proxy.write_lines());
    // Repaired right after the create, not by the read-back round that follows every apply
    // (which only sees fields the yaml states; `enforce_parameter_schema` is not stated here).
    assert_eq!(outcome.rounds, 1, "{:#?}", proxy.write_lines());
    let raw = direct
        .get(&format!("/deployments/name/{flow}/raced"))
        .expect("read")
        .expect("exists");
    assert_eq!(raw["enforce_parameter_schema"], json!(true));
    assert_eq!(
        xtask::sync::plan::server_field("concurrency_limit", &raw),
        json!(null)
    );
    // And a plain re-run agrees nothing is left to do.
    let again = run_sync(&direct, &desired, &args(false, 1));
    assert_eq!(again.plan.count(Action::Unchanged), 1);
}

/// `POST /deployments/` is an upsert: when someone else creates the deployment between our read
/// and our create, the create answers 200 (updated) instead of 201, and a later failure must not
/// make our rollback delete their deployment.
#[test]
fn a_rollback_never_deletes_a_deployment_someone_else_created() {
    // Write 3 is the PATCH repairing the fields the other writer set: refused (the rollback's
    // writes after it go through).
    let RacedCreate {
        flow,
        direct,
        proxy,
        outcome,
        theirs,
        ..
    } = race_a_create("theirs", vec![(3, Fault::Status(400))], 2);
    let report = outcome.report.as_ref().expect("applied");
    assert!(outcome.failed(), "{:#?}", proxy.write_lines());
    assert_eq!(
        deployment_id(&direct, &flow, "raced").as_deref(),
        Some(theirs.as_str()),
        "their deployment was deleted by our rollback: {:#?}",
        report.rollback
    );
    // And the report says so: their earlier values could not be put back.
    assert!(!report.rollback_complete(), "{:#?}", report.rollback);
    assert!(
        report
            .rollback
            .iter()
            .any(|step| !step.ok && step.text.contains("someone else created it")),
        "{:#?}",
        report.rollback
    );
}

/// A project with one deployment on the server and a yaml that adds a second, `fresh`.
struct OneAndFresh {
    flow: String,
    direct: xtask::prefect::api::PrefectClient,
    desired: xtask::sync::desired::DesiredState,
    registered_id: String,
}

fn one_registered_and_one_fresh(tag: &str, registered: &str) -> OneAndFresh {
    let flow = unique(&format!("flow-{tag}"));
    let pool = unique(&format!("pool-{tag}"));
    let direct = client_with_retries(&server_url(), 5);
    ensure_pool(&direct, &pool);
    let project = unique(&format!("proj-{tag}"));
    let first = deployment(&flow, registered, &pool, vec![cron("0 9 * * *")]);
    run_sync_ok(
        &direct,
        &state(&project, vec![first.clone()]),
        &args(false, 1),
    );
    let registered_id = deployment_id(&direct, &flow, registered).expect("registered");
    let desired = state(
        &project,
        vec![
            first,
            deployment(&flow, "fresh", &pool, vec![cron("0 10 * * *")]),
        ],
    );
    OneAndFresh {
        flow,
        direct,
        desired,
        registered_id,
    }
}

/// A run is all or nothing across its rounds: when a later round fails, what the earlier rounds
/// wrote is rolled back too, and the report says every write of all rounds was.
#[test]
fn a_failing_later_round_rolls_back_the_earlier_rounds() {
    let OneAndFresh {
        flow,
        direct,
        desired,
        registered_id: stable_id,
    } = one_registered_and_one_fresh("rounds", "stable");
    // Round 1: 1 = POST /flows/, 2 = create "fresh" (held back while another writer changes
    // "stable", which round 1's read-back then finds); round 2's first write (3) is refused.
    let proxy = FaultProxy::start(
        &server_url(),
        Rules {
            nth_write: Some((2, Fault::Delay(std::time::Duration::from_secs(3)))),
            more_writes: vec![(3, Fault::Status(400))],
            ..Rules::default()
        },
    );
    let via_proxy = client_with_retries(&proxy.api_url, 2);
    let outcome = std::thread::scope(|scope| {
        scope.spawn(|| {
            assert!(
                wait_for(20, || proxy.writes() >= 2),
                "the xtask never sent its create"
            );
            direct
                .patch(
                    &format!("/deployments/{stable_id}"),
                    &json!({"parameters": {"n": 7}}),
                )
                .expect("the other writer's change");
        });
        run_sync(&via_proxy, &desired, &args(false, 1))
    });
    assert_eq!(outcome.rounds, 2, "{:#?}", proxy.write_lines());
    let report = outcome.report.as_ref().expect("applied");
    assert!(outcome.failed(), "{:#?}", proxy.write_lines());
    assert!(report.rollback_complete(), "{:#?}", report.rollback);
    assert_eq!(
        deployment_id(&direct, &flow, "fresh"),
        None,
        "round 1's create was kept: {:#?}",
        report.rollback
    );
    assert!(
        report
            .rollback
            .iter()
            .any(|step| step.text.contains("deleted") && step.text.contains("fresh")),
        "{:#?}",
        report.rollback
    );
}

/// One writing run per project at a time: a run with writes to make waits for another run's
/// lock and gives up naming its holder, writing nothing; a dead run's expired lock is taken over;
/// the lock is gone after a run that succeeded and after one that failed and rolled back.
/// (Two runs at once end in the yaml's state: register_flows::two_concurrent_runs_end_in_the_yaml_state.)
#[test]
fn one_writing_run_per_project_at_a_time() {
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use xtask::sync::lock::{lock_name, LockRecord, LOCK_TAG};

    let s = scenario("lock");
    let direct = client_with_retries(&server_url(), 5);
    let name = lock_name(&s.before.owner);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hold = |expires: u64| {
        let other = LockRecord {
            token: "another-run".into(),
            host: "other-host".into(),
            pid: 4242,
            acquired: now - 60,
            expires,
        };
        direct
            .post(
                "/variables/",
                &json!({"name": name, "value": other.to_value(), "tags": [LOCK_TAG]}),
            )
            .expect("create the other run's lock");
    };
    let lock_exists = || direct.read_variable(&name).unwrap().is_some();

    // Held by a live run: waits, then fails naming it, and writes nothing.
    hold(now + 900);
    let mut waiting = args(false, 4);
    waiting.lock_wait = Duration::from_secs(2);
    let err = xtask::sync::sync(&direct, &s.before, &waiting, &AtomicBool::new(false))
        .err()
        .expect("the run must not write while another holds the lock");
    let message = format!("{err:#}");
    assert!(
        message.contains("other-host pid 4242") && message.contains(&name),
        "{message}"
    );
    assert!(
        snapshot(&direct, &s.flow).is_empty(),
        "wrote despite the lock"
    );
    // A dry run and a check only read: no lock needed, no wait.
    let mut dry = args(false, 4);
    dry.dry_run = true;
    dry.lock_wait = Duration::ZERO;
    assert!(run_sync(&direct, &s.before, &dry).writes_planned > 0);
    assert!(lock_exists(), "a dry run touched the other run's lock");

    // Expired (its run died): taken over; the run succeeds and releases it.
    direct
        .delete(&format!("/variables/name/{name}"))
        .expect("delete the lock");
    hold(now - 1);
    run_sync_ok(&direct, &s.before, &args(false, 4));
    assert_eq!(snapshot(&direct, &s.flow).len(), 3);
    assert!(!lock_exists(), "the lock outlived the run");

    // A run that fails and rolls back releases it too.
    let proxy = FaultProxy::start(
        &server_url(),
        Rules {
            nth_write: Some((1, Fault::Status(500))),
            ..Rules::default()
        },
    );
    let outcome = run_sync(
        &client_with_retries(&proxy.api_url, 1),
        &s.after,
        &args(false, 4),
    );
    assert!(outcome.failed());
    assert!(!lock_exists(), "a failed run left its lock");

    // A run that waited plans again as it was asked to: with `-n upd` and --prune, nothing
    // outside the selection is deleted (`gone` is owned and no longer in the yaml).
    hold(now + 900);
    let lock_path = format!("/variables/name/{name}");
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        client_with_retries(&server_url(), 5)
            .delete(&lock_path)
            .expect("the other run ends");
    });
    let mut selected = args(true, 4);
    selected.selection = xtask::sync::selection::Selection::parse(&["upd"]).unwrap();
    selected.lock_wait = Duration::from_secs(60);
    let outcome = run_sync(&direct, &s.after, &selected);
    releaser.join().unwrap();
    assert!(!outcome.failed(), "{:?}", outcome.report.map(|r| r.error));
    let names: Vec<String> = snapshot(&direct, &s.flow).keys().cloned().collect();
    assert!(
        names.contains(&"gone".to_string()),
        "pruned outside -n: {names:?}"
    );
}

/// A server that never settles (another writer, outside any lock, undoes one of our fields after
/// every write of ours): the run gives up after its rounds, rolls back every round's writes,
/// and says so — the earlier rounds' creates are gone, the report is true, the exit code is 1.
#[test]
fn an_unconverged_run_is_rolled_back_whole() {
    use crate::support::fault_proxy::AfterWrite;
    use std::sync::Arc;

    let OneAndFresh {
        flow,
        direct,
        desired,
        registered_id: contested_id,
    } = one_registered_and_one_fresh("unsettled", "contested");
    // After each of our writes, the other writer changes `contested` again (directly, not
    // through the proxy), so every read-back finds it changed.
    let intruder = client_with_retries(&server_url(), 5);
    let hook_id = contested_id.clone();
    let proxy = FaultProxy::start(
        &server_url(),
        Rules {
            after_write: Some(AfterWrite(Arc::new(move |_, _| {
                let _ = intruder.patch(
                    &format!("/deployments/{hook_id}"),
                    &json!({"parameters": {"n": 99}}),
                );
            }))),
            ..Rules::default()
        },
    );
    let outcome = run_sync(
        &client_with_retries(&proxy.api_url, 2),
        &desired,
        &args(false, 2),
    );
    proxy.set_rules(Rules::default());
    assert_eq!(outcome.rounds, 3, "{:#?}", proxy.write_lines());
    assert!(outcome.unconverged.is_some(), "the run claimed to converge");
    assert!(outcome.failed());
    assert_eq!(outcome.exit_code(&args(false, 2)), 1);
    let report = outcome.report.as_ref().expect("applied");
    assert!(report.rollback_complete(), "{:#?}", report.rollback);
    assert_eq!(
        deployment_id(&direct, &flow, "fresh"),
        None,
        "round 1's create was kept: {:#?}",
        report.rollback
    );
    assert!(
        report
            .rollback
            .iter()
            .any(|step| step.text.contains("deleted") && step.text.contains("fresh")),
        "{:#?}",
        report.rollback
    );
}
