//! What the workflows run after a plan or a drift check (`cargo xtask github …`), against the
//! stand-in `gh` (tests/it/support/fake_gh.rs; GitHub cannot be reached from a test): the plan
//! is one pull-request comment, created then edited in place; an environment's drift is one
//! issue, opened on drift, updated while it lasts, closed once in sync.

use crate::support::gh::{GhWorld, REPO};

const PR: u64 = 12;

fn plan_comment(world: &GhWorld, report: &str) -> crate::support::bin::Outcome {
    let file = world.file("plan.md", report);
    world.run(&[
        "github",
        "plan-comment",
        "--pr",
        &PR.to_string(),
        "--key",
        "plan-prod",
        "--body-file",
        &file.display().to_string(),
    ])
}

fn drift_issue(
    world: &GhWorld,
    env: &str,
    check_exit: &str,
    report: &str,
) -> crate::support::bin::Outcome {
    let file = world.file(&format!("drift-{env}.md"), report);
    world.run(&[
        "github",
        "drift-issue",
        "--env",
        env,
        "--check-exit",
        check_exit,
        "--body-file",
        &file.display().to_string(),
    ])
}

/// A pull request with three comments by people (so the listing has two pages).
fn pull_request(test: &str) -> GhWorld {
    let world = GhWorld::new(test);
    world.seed_issue(PR, "Add a flow", "please review", true);
    for id in 1..=3 {
        world.seed_comment(id, PR, "reviewer", &format!("comment {id}"));
    }
    world
}

#[test]
fn plan_comment_is_created_once_then_edited_in_place() {
    let world = pull_request("plan-comment");
    let first = plan_comment(
        &world,
        "### Planned: 1 to create, 0 to update, 2 unchanged, 0 to delete\n",
    );
    assert_eq!(first.code, Some(0), "{}", first.all());
    let comments = world.comments(PR);
    assert_eq!(comments.len(), 4, "{comments:#?}");
    let ours = &comments[3];
    assert!(
        ours.body
            .starts_with("<!-- xtask:plan-prod -->\n\n### Planned: 1 to create"),
        "{ours:?}"
    );

    // The next push: the same comment, new text; nobody else's comment touched.
    let second = plan_comment(
        &world,
        "### Planned: 0 to create, 1 to update, 2 unchanged, 0 to delete\n",
    );
    assert_eq!(second.code, Some(0), "{}", second.all());
    second.assert_stderr_has(&format!("updated #{}", ours.id));
    let after = world.comments(PR);
    assert_eq!(after.len(), 4, "a second comment was created: {after:#?}");
    assert_eq!(after[3].id, ours.id);
    assert!(
        after[3].body.contains("0 to create, 1 to update"),
        "{:?}",
        after[3]
    );
    for (i, comment) in after[..3].iter().enumerate() {
        assert_eq!(comment.body, format!("comment {}", i + 1));
    }
    // Our comment sits on the listing's second page: found only by following the pages.
    assert_eq!(
        world.calls(),
        [
            format!("GET repos/{REPO}/issues/{PR}/comments?per_page=100"),
            format!("POST repos/{REPO}/issues/{PR}/comments"),
            format!("GET repos/{REPO}/issues/{PR}/comments?per_page=100"),
            format!("PATCH repos/{REPO}/issues/comments/{}", ours.id),
        ]
    );
}

#[test]
fn plan_comments_of_two_environments_stay_apart() {
    let world = pull_request("plan-two-envs");
    assert_eq!(plan_comment(&world, "prod plan").code, Some(0));
    let file = world.file("dev.md", "dev plan");
    let dev = world.run(&[
        "github",
        "plan-comment",
        "--pr",
        "12",
        "--key",
        "plan-dev",
        "--body-file",
        &file.display().to_string(),
    ]);
    assert_eq!(dev.code, Some(0), "{}", dev.all());
    let bodies: Vec<String> = world
        .comments(PR)
        .into_iter()
        .map(|c| c.body)
        .skip(3)
        .collect();
    assert_eq!(
        bodies,
        [
            "<!-- xtask:plan-prod -->\n\nprod plan",
            "<!-- xtask:plan-dev -->\n\ndev plan"
        ]
    );
}

#[test]
fn drift_opens_one_issue_updates_it_and_closes_it_when_in_sync() {
    let mut world = GhWorld::new("drift-issue");
    world
        .env("GITHUB_SERVER_URL", "https://github.example")
        .env("GITHUB_RUN_ID", "99");
    // Unrelated: an issue and a pull request (a pull request is an issue in the listing too).
    world.seed_issue(1, "Bug", "something", false);
    world.seed_issue(
        2,
        "Feature",
        "<!-- xtask:drift-prod --> quoted in a PR",
        true,
    );

    let opened = drift_issue(
        &world,
        "prod",
        "2",
        "### Drift found: 0 to create, 1 to update\n",
    );
    assert_eq!(opened.code, Some(0), "{}", opened.all());
    let issues = world.issues();
    assert_eq!(issues.len(), 3, "{issues:#?}");
    let issue = &issues[2];
    assert_eq!(issue.state, "open");
    assert!(issue.title.contains("prod"), "{issue:?}");
    assert!(
        issue.body.starts_with("<!-- xtask:drift-prod -->"),
        "{issue:?}"
    );
    assert!(
        issue
            .body
            .contains("### Drift found: 0 to create, 1 to update"),
        "{issue:?}"
    );
    assert!(
        issue
            .body
            .contains("https://github.example/acme/flows/actions/runs/99"),
        "{issue:?}"
    );

    // Still drifting: the same issue, the new report; no second issue.
    let again = drift_issue(
        &world,
        "prod",
        "2",
        "### Drift found: 1 to create, 1 to update\n",
    );
    assert_eq!(again.code, Some(0), "{}", again.all());
    let issues = world.issues();
    assert_eq!(issues.len(), 3, "{issues:#?}");
    assert!(
        issues[2].body.contains("1 to create, 1 to update"),
        "{:?}",
        issues[2]
    );

    // Another environment in sync closes nothing of prod's.
    let dev = drift_issue(&world, "dev", "0", "### In sync\n");
    assert_eq!(dev.code, Some(0), "{}", dev.all());
    dev.assert_stderr_has("dev drift issue: nothing to do");
    assert_eq!(world.issues()[2].state, "open");

    // A failed check (exit 1) is not "in sync": the issue stays open and the step fails.
    let failed = drift_issue(&world, "prod", "1", "### Invalid\n");
    assert!(
        failed.clean_failure_problems().is_empty(),
        "{:?}\n{}",
        failed.clean_failure_problems(),
        failed.all()
    );
    failed.assert_stderr_has("left as it is");
    assert_eq!(world.issues()[2].state, "open");

    // In sync: closed, with a comment saying so.
    let calls_before = world.calls().len();
    let closed = drift_issue(&world, "prod", "0", "### In sync\n");
    assert_eq!(closed.code, Some(0), "{}", closed.all());
    let issues = world.issues();
    assert_eq!(issues[2].state, "closed");
    assert_eq!(issues[0].state, "open", "an unrelated issue was touched");
    assert_eq!(issues[1].state, "open", "a pull request was touched");
    let notes = world.comments(issues[2].number);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].body.starts_with("In sync again."), "{notes:?}");
    assert_eq!(world.calls().len() - calls_before, 3, "{:?}", world.calls());

    // Drift again later: a new issue (the closed one is history); the pull request #2 is none.
    let reopened = drift_issue(&world, "prod", "2", "### Drift found\n");
    assert_eq!(reopened.code, Some(0), "{}", reopened.all());
    let open: Vec<u64> = world
        .issues()
        .iter()
        .filter(|i| {
            i.number != 2 && i.state == "open" && i.body.starts_with("<!-- xtask:drift-prod")
        })
        .map(|i| i.number)
        .collect();
    assert_eq!(open.len(), 1, "{:#?}", world.issues());
}

#[test]
fn reports_are_masked_before_they_are_posted() {
    let mut world = pull_request("masked");
    world.env("PREFECT_API_KEY", "pnu_SENTINELapikey0001");
    let run = plan_comment(
        &world,
        "key pnu_SENTINELapikey0001 url https://u:SENTINELpw@h/api\n",
    );
    assert_eq!(run.code, Some(0), "{}", run.all());
    let body = &world.comments(PR)[3].body;
    assert!(!body.contains("SENTINEL"), "{body}");
    assert!(body.contains("key *** url https://***@h/api"), "{body}");
    run.assert_no_secrets(&["SENTINEL"]);
}

#[test]
fn gh_failures_are_clean_errors() {
    // A read-only token (a fork's pull request): gh's 403 is the error, nothing half-done.
    let mut world = pull_request("forbidden");
    world.env("FAKE_GH_FORBID", "POST");
    let run = plan_comment(&world, "plan");
    assert!(
        run.clean_failure_problems().is_empty(),
        "{:?}\n{}",
        run.clean_failure_problems(),
        run.all()
    );
    run.assert_stderr_has("HTTP 403");
    assert_eq!(world.comments(PR).len(), 3);

    // No token: gh's own explanation reaches the log; the token never does.
    let world = pull_request("no-token");
    let file = world.file("p.md", "plan");
    let mut cmd_world = world;
    cmd_world.env("GH_TOKEN", "");
    let run = cmd_world.run(&[
        "github",
        "plan-comment",
        "--pr",
        "12",
        "--body-file",
        &file.display().to_string(),
    ]);
    assert!(
        run.clean_failure_problems().is_empty(),
        "{:?}\n{}",
        run.clean_failure_problems(),
        run.all()
    );
    run.assert_stderr_has("set the GH_TOKEN environment variable");

    // Bad input: a missing report file, a malformed repository.
    let world = pull_request("bad-input");
    let missing = world.run(&[
        "github",
        "plan-comment",
        "--pr",
        "12",
        "--body-file",
        "/nonexistent/p.md",
    ]);
    assert!(
        missing.clean_failure_problems().is_empty(),
        "{}",
        missing.all()
    );
    missing.assert_stderr_has("/nonexistent/p.md");
    let file = world.file("p.md", "plan");
    let repo = world.run(&[
        "github",
        "plan-comment",
        "--pr",
        "12",
        "--repo",
        "not-a-repo",
        "--body-file",
        &file.display().to_string(),
    ]);
    assert!(repo.clean_failure_problems().is_empty(), "{}", repo.all());
    repo.assert_stderr_has("owner/name");
    assert!(world.calls().is_empty(), "{:?}", world.calls());
}
