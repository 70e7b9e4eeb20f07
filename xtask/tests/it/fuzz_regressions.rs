//! Replays every committed fuzz input — the seed corpora (`fuzz/seeds/`), the inputs that once
//! crashed or hung a target (`fuzz/regressions/`) and the project's own fixtures — through the
//! fuzz targets' exact bodies (`fuzz/entry.rs`), so a normal `cargo test` keeps them fixed
//! without cargo-fuzz. See docs/fuzzing.md.

// The fuzz crate compiles the same file into its targets: one copy of each body, two crates.
#[path = "../../../fuzz/entry.rs"]
mod entry;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::repo_root as repo;

/// Far above what any input takes (milliseconds); only a hang or a blow-up gets near it.
const SLOW: Duration = Duration::from_secs(5);

/// Every file under `dirs` (recursively), sorted.
fn files_under(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().filter(|d| d.is_dir()).cloned().collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs `target` on each input; collects panics and slow inputs.
fn replay(target: fn(&[u8]), inputs: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    for path in inputs {
        let bytes = std::fs::read(path).unwrap();
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| target(&bytes)));
        let elapsed = started.elapsed();
        let shown = path.strip_prefix(repo()).unwrap_or(path).display();
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            problems.push(format!("{shown}: panicked: {message}"));
        } else if elapsed > SLOW {
            problems.push(format!("{shown}: took {elapsed:?}"));
        }
    }
    problems
}

fn check(target: fn(&[u8]), name: &str, extra_dirs: &[&str]) {
    let mut dirs = vec![
        repo().join("fuzz/seeds").join(name),
        repo().join("fuzz/regressions").join(name),
    ];
    dirs.extend(extra_dirs.iter().map(|d| repo().join(d)));
    let inputs = files_under(&dirs);
    let regressions = files_under(&[repo().join("fuzz/regressions").join(name)]);
    assert!(
        inputs.len() > 10,
        "{name}: only {} inputs found; the seed corpus is missing",
        inputs.len()
    );
    let problems = replay(target, &inputs);
    assert!(
        problems.is_empty(),
        "{name}: {} of {} inputs ({} crash regressions) fail:\n{}",
        problems.len(),
        inputs.len(),
        regressions.len(),
        problems.join("\n")
    );
}

#[test]
fn prefect_yaml_inputs_replay_without_panics() {
    check(
        entry::prefect_yaml,
        "prefect_yaml",
        &[
            "xtask/tests/fixtures/bad",
            "xtask/tests/fixtures/yaml",
            "xtask/tests/fixtures/parity",
        ],
    );
}

#[test]
fn flow_source_inputs_replay_without_panics() {
    check(
        entry::flow_source,
        "flow_source",
        &[
            "app/flows",
            "xtask/tests/fixtures/flows",
            "xtask/tests/fixtures/bad",
        ],
    );
}

/// The harness must get past parsing on real inputs, or the fuzzer only exercises the parser.
#[test]
fn the_targets_reach_templating_and_schemas() {
    let yaml = files_under(&[repo().join("fuzz/seeds/prefect_yaml")]);
    let resolved: usize = yaml
        .iter()
        .map(|p| entry::prefect_yaml_resolved(&std::fs::read(p).unwrap()))
        .sum();
    assert!(resolved >= 20, "only {resolved} seed deployments resolved");
    let python = files_under(&[repo().join("fuzz/seeds/flow_source")]);
    let read: usize = python
        .iter()
        .map(|p| entry::flow_source_read(&std::fs::read(p).unwrap()))
        .sum();
    assert!(read >= 5, "only {read} seed flows were read");
}

#[test]
fn the_replay_reports_panics() {
    fn panics(_: &[u8]) {
        panic!("boom");
    }
    let file = std::env::temp_dir().join(format!("fuzz-replay-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    let problems = replay(panics, std::slice::from_ref(&file));
    std::fs::remove_file(&file).unwrap();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("boom"), "{problems:?}");
}
