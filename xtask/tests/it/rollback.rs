//! `cargo xtask rollback` end to end: a git checkout with two releases, the stand-in fly keeping
//! the app's releases and one directory per image (that release's project, where it runs the
//! release command `xtask register-flows --prune`), the real Prefect server. After release 2 and a
//! rollback the server is exactly as release 1 left it, deployment by deployment.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::bin::describe;
use crate::support::fly::{url_with_credentials, Sandbox, AUTH_STRING, FLY_TOKEN, SENTINELS};
use crate::support::sync::snapshot;
use crate::support::{client, copy_tree, ensure_pool, server_url, worker_heartbeat};

const FLOWS: [&str; 2] = ["video-initial-processing", "captionacc-caption-cleanup"];

struct Releases {
    sandbox: Sandbox,
    images: std::path::PathBuf,
}

impl Releases {
    fn new(test: &str) -> Releases {
        let mut sandbox = Sandbox::new(test);
        let pool = format!("captionacc-workers-prod-{}", sandbox.tag);
        ensure_pool(&client(), &pool);
        worker_heartbeat(&client(), &pool, "rollback-stand-in");
        sandbox.write_prefect_yaml("prod", &pool);
        sandbox.write_fly_toml("xtask register-flows --prune");
        let url = server_url();
        sandbox.write_secrets(&[
            ("PREFECT_API_URL", &url),
            ("PREFECT_API_AUTH_STRING", AUTH_STRING),
        ]);
        let images = sandbox.root.join("images");
        std::fs::create_dir_all(&images).unwrap();
        let ceiling = sandbox.root.display().to_string();
        sandbox
            .env("PREFECT_API_URL", &url_with_credentials(&url))
            .env("PREFECT_API_AUTH_STRING", AUTH_STRING)
            .env("FLY_API_TOKEN", FLY_TOKEN)
            .env("APP_DIR", "/app")
            .env("FAKE_FLY_IMAGES", &images.display().to_string())
            // The project is its own checkout and an image directory is none: git must not find
            // the repository the tests run in, whose `origin` (a CI clone has one, a worktree
            // not) would give the release command another deployment version than the check.
            .env("GIT_CEILING_DIRECTORIES", &ceiling);
        git(&sandbox.project, &["init", "-q", "-b", "main"]);
        Releases { sandbox, images }
    }

    /// Commits the project and "builds" its image: a directory holding the project and its
    /// release file. Returns the image reference.
    fn build(&self, message: &str) -> String {
        let project = &self.sandbox.project;
        git(project, &["add", "-A"]);
        git(project, &["commit", "-q", "-m", message]);
        let commit = git(project, &["rev-parse", "HEAD"]);
        let image = format!("registry.fly.io/captionacc-api:{}", &commit[..12]);
        let dir = self.image_dir(&image);
        copy_tree(project, &dir);
        let _ = std::fs::remove_dir_all(dir.join(".git"));
        std::fs::write(
            dir.join(".xtask-release"),
            format!("image={image}\ncommit={commit}\n"),
        )
        .unwrap();
        image
    }

    fn image_dir(&self, image: &str) -> std::path::PathBuf {
        self.images.join(image.replace(['/', ':'], "_"))
    }

    /// This test's deployments, comparable (owned fields, labels, schedules without ids).
    fn state(&self) -> BTreeMap<String, Value> {
        let mut all = BTreeMap::new();
        for flow in FLOWS {
            for (name, value) in snapshot(&client(), flow) {
                if name.contains(&self.sandbox.tag) {
                    all.insert(format!("{flow}/{name}"), value);
                }
            }
        }
        all
    }

    /// `status --json`: each deployment of the checkout's yaml as [sync, recorded release].
    fn status(&self) -> Vec<Value> {
        let out = self.sandbox.run(&["status", "--json"]);
        let doc: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.all()));
        doc["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!([d["sync"], d["release"]]))
            .collect()
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_rollback_leaves_the_server_exactly_as_the_earlier_release_left_it() {
    let r = Releases::new("rollback-exact");
    let tag = r.sandbox.tag.clone();

    // Release 1. Its yaml states every deployment's schedules (an omitted `schedules:` keeps
    // the server's, so a rollback could not take a newer release's schedules away).
    let yaml_path = r.sandbox.project.join("prefect.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).unwrap() + "    schedules: []\n";
    std::fs::write(&yaml_path, &yaml).unwrap();
    let image1 = r.build("release 1");
    let run = r.sandbox.run(&["deploy", "--image", &image1]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let release1 = r.state();
    assert_eq!(release1.len(), 2, "{release1:#?}");
    let id1 = image1.rsplit(':').next().unwrap().to_string();
    assert_eq!(r.status(), vec![json!(["in_sync", id1]); 2]);

    // Release 2: a changed parameter, a new schedule, a new deployment.
    let pool = format!("captionacc-workers-prod-{tag}");
    let yaml = yaml
        .strip_suffix("    schedules: []\n")
        .unwrap()
        .replace("video_id: smoke-test", "video_id: release-2")
        + &format!("    schedules:\n      - cron: \"0 4 * * *\"\n        timezone: UTC\n  - name: captionacc-prod-{tag}-extra\n    entrypoint: app/flows/caption_cleanup.py:cleanup_stale_captions\n    work_pool:\n      name: {pool}\n");
    std::fs::write(&yaml_path, yaml).unwrap();
    let image2 = r.build("release 2");
    let run = r.sandbox.run(&["deploy", "--image", &image2]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let release2 = r.state();
    assert_eq!(release2.len(), 3);
    assert_ne!(release2, release1);

    // --dry-run: the release, the plan (what release 1's command will do) and the commands;
    // nothing changes.
    let calls_before = r.sandbox.call_names().len();
    let run = r.sandbox.run(&["rollback", "--dry-run"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_stderr_has(&format!("back to: v1 {image1}"));
    run.assert_stderr_has(&format!(
        "- delete    captionacc-caption-cleanup/captionacc-prod-{tag}-extra"
    ));
    run.assert_stderr_has(&format!(
        "~ update    video-initial-processing/captionacc-prod-{tag}-video"
    ));
    run.assert_stderr_has("not rolled back: the app's Fly secrets");
    run.assert_stderr_has(&format!(
        "fly deploy --config {}",
        r.sandbox.project.join("fly.toml").display()
    ));
    assert_eq!(r.state(), release2, "--dry-run changed the server");
    assert!(
        !r.sandbox.call_names()[calls_before..].contains(&"deploy".to_string()),
        "{:?}",
        r.sandbox.call_names()
    );

    // Bad input: a release that does not exist; the ones that do are listed.
    let run = r.sandbox.run(&["rollback", "--to", "v9"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("--to v9: no such release; the app's releases: v2 complete");
    assert_eq!(r.state(), release2);

    // The rollback: the server equals release 1's, deployment by deployment, schedules included.
    let run = r.sandbox.run(&["rollback"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_no_secrets(SENTINELS);
    assert_eq!(r.state(), release1);
    // status (against this checkout, which is at release 2) shows release 1 on the server.
    assert_eq!(
        r.status(),
        vec![
            json!(["drifted", id1]),
            json!(["drifted", id1]),
            json!(["missing", null])
        ]
    );

    // Rolling back again goes to release 2, whose image is gone from the registry: a clear
    // error and nothing changed.
    std::fs::remove_dir_all(r.image_dir(&image2)).unwrap();
    let run = r.sandbox.run(&["rollback"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has(&format!(
        "release v2's image {image2} is no longer in Fly's registry"
    ));
    assert_eq!(r.state(), release1);
}

#[test]
fn a_rollback_needs_an_earlier_completed_release_and_a_pruning_release_command() {
    let r = Releases::new("rollback-none");
    let image1 = r.build("release 1");
    let run = r.sandbox.run(&["deploy", "--image", &image1]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let state = r.state();
    let run = r.sandbox.run(&["rollback"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("no completed release before the current v1 to roll back to");
    assert_eq!(r.state(), state);

    r.sandbox.write_fly_toml("xtask register-flows");
    let run = r.sandbox.run(&["rollback", "--dry-run"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_stderr_has("a rollback needs `xtask register-flows --prune` there");
}
