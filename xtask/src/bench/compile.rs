//! `cargo xtask bench --compile`: what compiling the xtask costs, as ratios measured side by
//! side in one run (docs/compile-time.md):
//!
//! 1. a clean debug build of the xtask (what a newcomer's first `cargo xtask` compiles) against
//!    a clean build of `benches/card-deps`, a crate using only the card's dependency set, built
//!    the same way (crates already downloaded, empty target directories, alternating runs);
//! 2. one source file really edited, then the rebuild, and the test build after it;
//! 3. with a Docker engine, the image: a source-only change rebuilt with the dependency layer
//!    cached, the binary's size and `xtask --version`'s start-up inside the image.
//!
//! Everything is built in a copy of the working tree under the state directory, so the edits
//! never touch the repository and the developer's `target/` stays warm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::docker::{self, local_bases};
use crate::sys::process::{self, Measured};

/// What the issue that introduced this bench asks of the numbers.
const CLEAN_RATIO_TARGET: f64 = 1.6;
const EDIT_REBUILD_TARGET: Duration = Duration::from_secs(15);
const IMAGE_REBUILD_TARGET: Duration = Duration::from_secs(90);
const STARTUP_TARGET_MS: f64 = 10.0;
const BINARY_SIZE_TARGET_MB: f64 = 12.0;

/// The paths of the working tree that the builds (and the image's build context) need.
const TREE: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "xtask/Cargo.toml",
    "xtask/src",
    "xtask/tests",
    // The integration tests include the fuzz targets' shared entry point.
    "fuzz/entry.rs",
    "benches/card-deps/Cargo.toml",
    "benches/card-deps/Cargo.lock",
    "benches/card-deps/src",
    "Dockerfile",
    ".dockerignore",
    "app",
    "prefect.yaml",
    "prefect-dev.yaml",
    "fly.toml",
    "scripts",
];

/// The file the edit-and-rebuild step changes (in the copy): a library module the binary uses.
const EDITED_FILE: &str = "xtask/src/project.rs";

/// What to measure (the `bench --compile` arguments).
pub struct CompileOptions {
    /// Clean builds per subject, and edits per rebuild measurement (medians are reported).
    pub runs: usize,
    /// Measure the image too (needs a Docker engine; base images are built locally if missing).
    pub image: bool,
}

/// The numbers of one bench run.
#[derive(Debug, Default)]
struct Report {
    card_clean: Vec<Measured>,
    xtask_clean: Vec<Measured>,
    edit_rebuild: Vec<Measured>,
    test_build: Option<Measured>,
    image: Option<ImageNumbers>,
}

#[derive(Debug)]
struct ImageNumbers {
    source_rebuild: Duration,
    binary_bytes: u64,
    startup_ms: f64,
}

/// Runs every measurement and prints the report on stdout (progress on stderr).
pub fn run(opts: &CompileOptions) -> Result<()> {
    let runs = opts.runs.max(1);
    let work = crate::project::state_dir().join("bench-compile");
    let tree = work.join("tree");
    eprintln!("==> copying the working tree to {}", tree.display());
    copy_tree(&crate::project::repo_root(), &tree)?;
    let card = tree.join("benches/card-deps");
    let cargo = cargo_program();

    eprintln!("==> downloading crates for both (not timed)");
    for dir in [&tree, &card] {
        run_quiet(&cargo, &["fetch", "--locked"], dir, None, &work)?;
    }

    let mut report = Report::default();
    let xtask_target = work.join("target-xtask");
    let card_target = work.join("target-card");
    for run in 1..=runs {
        eprintln!("==> clean debug builds, run {run}/{runs}");
        remove_dir(&card_target)?;
        let card_build = &["build", "--locked", "--offline"];
        let card_run = timed(&cargo, card_build, &card, &card_target, &work, "card deps")?;
        eprintln!("    card deps: {}", describe(&card_run));
        report.card_clean.push(card_run);
        remove_dir(&xtask_target)?;
        let xtask_run = timed(&cargo, XTASK_BUILD, &tree, &xtask_target, &work, "xtask")?;
        eprintln!("    xtask:     {}", describe(&xtask_run));
        report.xtask_clean.push(xtask_run);
    }

    let edited = tree.join(EDITED_FILE);
    for edit in 1..=runs.max(3) {
        append_edit(&edited, edit)?;
        let measured = timed(
            &cargo,
            XTASK_BUILD,
            &tree,
            &xtask_target,
            &work,
            "xtask after an edit",
        )?;
        eprintln!("    edit {edit}: {}", describe(&measured));
        report.edit_rebuild.push(measured);
    }

    eprintln!("==> the test build after an edit (its first build is not timed)");
    let test_build = &["test", "--locked", "--offline", "-p", "xtask", "--no-run"];
    timed(
        &cargo,
        test_build,
        &tree,
        &xtask_target,
        &work,
        "test build",
    )?;
    append_edit(&edited, 1000)?;
    report.test_build = Some(timed(
        &cargo,
        test_build,
        &tree,
        &xtask_target,
        &work,
        "test build after an edit",
    )?);

    if opts.image {
        report.image = Some(measure_image(&tree, &work)?);
    }
    print!("{}", render(&report));
    Ok(())
}

/// What `cargo xtask` (the alias in .cargo/config.toml) builds before it runs.
const XTASK_BUILD: &[&str] = &[
    "build",
    "--locked",
    "--offline",
    "-p",
    "xtask",
    "--bin",
    "xtask",
];

/// Builds the image twice from the copy: once to fill the dependency layer (not timed), then
/// after a source-only edit (timed); then reads the binary's size and start-up in the image.
fn measure_image(tree: &Path, work: &Path) -> Result<ImageNumbers> {
    let docker = docker::find_docker()?;
    docker::ensure_engine(&docker)?;
    eprintln!("==> image: base images (built locally if missing)");
    let bases = local_bases::ensure(&docker, &crate::project::repo_root(), &work.join("bases"))?;
    let tag = "xtask-bench-compile:latest";
    let mut argv = vec!["build".to_string(), "--tag".into(), tag.into()];
    for arg in bases.build_args() {
        argv.extend(["--build-arg".to_string(), arg]);
    }
    argv.push(".".into());
    eprintln!("==> image: first build (fills the dependency layer; not timed)");
    run_quiet(&docker, &argv, tree, None, work)?;
    append_edit(&tree.join(EDITED_FILE), 2000)?;
    eprintln!("==> image: rebuild after a source-only change");
    let rebuild = timed_program(&docker, &argv, tree, None, work, "image rebuild")?;

    let sh = process::shell()?;
    let size = cmd!(
        sh,
        "{docker} run --rm --entrypoint stat {tag} -c %s /usr/local/bin/xtask"
    )
    .read()
    .context("cannot read the binary's size in the image")?;
    // The mean of 100 runs, loop overhead included: an upper bound on one start-up.
    let script = "s=$(date +%s%N); i=0; while [ $i -lt 100 ]; do xtask --version >/dev/null; \
                  i=$((i+1)); done; e=$(date +%s%N); echo $(( (e - s) / 100 ))";
    let startup_ns = cmd!(sh, "{docker} run --rm --entrypoint sh {tag} -c {script}")
        .read()
        .context("cannot time `xtask --version` in the image")?;
    Ok(ImageNumbers {
        source_rebuild: rebuild.wall,
        binary_bytes: size.trim().parse().context("unexpected output of stat")?,
        startup_ms: startup_ns
            .trim()
            .parse::<f64>()
            .context("unexpected timing output")?
            / 1e6,
    })
}

/// The report as printed (pure, so it is unit-tested).
fn render(report: &Report) -> String {
    let mut out = String::new();
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let card = median(&report.card_clean);
    let xtask = median(&report.xtask_clean);
    if let (Some(card), Some(xtask)) = (card, xtask) {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-6);
        let wall = ratio(xtask.wall, card.wall);
        let cpu = ratio(xtask.cpu, card.cpu);
        out.push_str(&format!(
            "\nclean debug build (medians of {} run(s), crates already downloaded)\n\n",
            report.xtask_clean.len()
        ));
        out.push_str(&format!(
            "{:<16} {:>12} {:>12} {:>8} {:>8}\n",
            "", "card deps", "xtask", "ratio", "target"
        ));
        out.push_str(&format!(
            "{:<16} {:>10.1} s {:>10.1} s {:>7.2}x {:>6.1}x {}\n",
            "wall",
            card.wall.as_secs_f64(),
            xtask.wall.as_secs_f64(),
            wall,
            CLEAN_RATIO_TARGET,
            verdict(wall <= CLEAN_RATIO_TARGET)
        ));
        out.push_str(&format!(
            "{:<16} {:>10.1} s {:>10.1} s {:>7.2}x\n",
            "cpu (user+sys)",
            card.cpu.as_secs_f64(),
            xtask.cpu.as_secs_f64(),
            cpu
        ));
    }
    if let Some(edit) = median(&report.edit_rebuild) {
        out.push_str(&format!(
            "\nedit one file, rebuild:   {:>6.1} s (median of {}; target <= {} s) {}\n",
            edit.wall.as_secs_f64(),
            report.edit_rebuild.len(),
            EDIT_REBUILD_TARGET.as_secs(),
            verdict(edit.wall <= EDIT_REBUILD_TARGET)
        ));
    }
    if let Some(test) = &report.test_build {
        out.push_str(&format!(
            "test build after an edit: {:>6.1} s (compile and link of the test binaries)\n",
            test.wall.as_secs_f64()
        ));
    }
    match &report.image {
        Some(image) => {
            let mb = image.binary_bytes as f64 / 1e6;
            out.push_str(&format!(
                "\nimage, source-only change: {:>6.1} s (target <= {} s) {}\n",
                image.source_rebuild.as_secs_f64(),
                IMAGE_REBUILD_TARGET.as_secs(),
                verdict(image.source_rebuild <= IMAGE_REBUILD_TARGET)
            ));
            out.push_str(&format!(
                "image, xtask binary:       {mb:>6.1} MB (target <= {BINARY_SIZE_TARGET_MB} MB) {}\n",
                verdict(mb <= BINARY_SIZE_TARGET_MB)
            ));
            out.push_str(&format!(
                "image, xtask --version:    {:>6.2} ms (mean of 100; target <= {STARTUP_TARGET_MS} ms) {}\n",
                image.startup_ms,
                verdict(image.startup_ms <= STARTUP_TARGET_MS)
            ));
        }
        None => out.push_str("\nimage: not measured (add --image; needs a Docker engine)\n"),
    }
    out
}

fn describe(run: &Measured) -> String {
    format!(
        "{:.1} s wall, {:.1} s cpu",
        run.wall.as_secs_f64(),
        run.cpu.as_secs_f64()
    )
}

fn median(runs: &[Measured]) -> Option<Measured> {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|m| m.wall);
    sorted.get(sorted.len() / 2).copied()
}

/// Appends a new public function to `file`: a real change (new code, a changed crate
/// interface), not just a new mtime.
fn append_edit(file: &Path, n: usize) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .with_context(|| format!("cannot edit {}", file.display()))?;
    writeln!(
        f,
        "\n/// Added by `cargo xtask bench --compile` in its copy of the tree.\npub fn bench_edit_{n}() -> usize {{\n    {n}\n}}"
    )
    .with_context(|| format!("cannot edit {}", file.display()))
}

fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

/// A measured cargo command with its own target directory.
fn timed(
    cargo: &Path,
    args: &[&str],
    dir: &Path,
    target: &Path,
    work: &Path,
    what: &str,
) -> Result<Measured> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    timed_program(cargo, &args, dir, Some(target), work, what)
}

fn timed_program(
    program: &Path,
    args: &[String],
    dir: &Path,
    target: Option<&Path>,
    work: &Path,
    what: &str,
) -> Result<Measured> {
    let log_path = work.join("build.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let measured = process::run_measured(command(program, args, dir, target), log)?;
    if !measured.success {
        bail!(
            "{what}: `{}` failed; its output is in {}",
            process::shell_line(program, args),
            log_path.display()
        );
    }
    Ok(measured)
}

fn run_quiet<S: AsRef<str>>(
    program: &Path,
    args: &[S],
    dir: &Path,
    target: Option<&Path>,
    work: &Path,
) -> Result<()> {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    timed_program(program, &args, dir, target, work, "preparation").map(|_| ())
}

// std::process: run_measured takes a Command and reads the child's own CPU time and memory.
fn command(program: &Path, args: &[String], dir: &Path, target: Option<&Path>) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    // The copy's own target directories, whatever the developer's environment says; the
    // card crate and the xtask are built with the same flags.
    cmd.env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_INCREMENTAL");
    if let Some(target) = target {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    cmd
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// A fresh copy of the [`TREE`] paths of `root` in `dst` (Python caches left out).
fn copy_tree(root: &Path, dst: &Path) -> Result<()> {
    remove_dir(dst)?;
    for rel in TREE {
        let src = root.join(rel);
        if src.exists() {
            copy_path(&src, &dst.join(rel))?;
        }
    }
    Ok(())
}

fn copy_path(src: &Path, dst: &Path) -> Result<()> {
    let name = src.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == "__pycache__" || name == ".venv" {
        return Ok(());
    }
    if src.is_dir() {
        std::fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
        let entries =
            std::fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))?;
        for entry in entries {
            let entry = entry?;
            copy_path(&entry.path(), &dst.join(entry.file_name()))?;
        }
        return Ok(());
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::copy(src, dst)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(wall_s: u64, cpu_s: u64) -> Measured {
        Measured {
            success: true,
            wall: Duration::from_secs(wall_s),
            max_rss_kib: 0,
            cpu: Duration::from_secs(cpu_s),
        }
    }

    #[test]
    fn report_gives_ratios_and_verdicts() {
        let report = Report {
            card_clean: vec![measured(50, 90)],
            xtask_clean: vec![measured(75, 150)],
            edit_rebuild: vec![measured(9, 9), measured(30, 30), measured(10, 10)],
            test_build: Some(measured(20, 20)),
            image: Some(ImageNumbers {
                source_rebuild: Duration::from_secs(120),
                binary_bytes: 9_500_000,
                startup_ms: 1.25,
            }),
        };
        let text = render(&report);
        assert!(text.contains("1.50x    1.6x ok"), "{text}");
        assert!(text.contains("1.67x"), "{text}");
        assert!(
            text.contains("   10.0 s (median of 3; target <= 15 s) ok"),
            "{text}"
        );
        assert!(
            text.contains("test build after an edit:   20.0 s"),
            "{text}"
        );
        assert!(text.contains("120.0 s (target <= 90 s) MISSED"), "{text}");
        assert!(text.contains("9.5 MB (target <= 12 MB) ok"), "{text}");
        assert!(text.contains("1.25 ms"), "{text}");
    }

    #[test]
    fn a_missed_ratio_and_a_missing_image_are_said() {
        let report = Report {
            card_clean: vec![measured(50, 50)],
            xtask_clean: vec![measured(200, 200)],
            ..Report::default()
        };
        let text = render(&report);
        assert!(text.contains("4.00x    1.6x MISSED"), "{text}");
        assert!(text.contains("image: not measured"), "{text}");
    }

    #[test]
    fn an_edit_changes_the_file_each_time() {
        let dir = std::env::temp_dir().join(format!("xtask-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lib.rs");
        std::fs::write(&file, "//! x\n").unwrap();
        append_edit(&file, 1).unwrap();
        let first = std::fs::read_to_string(&file).unwrap();
        append_edit(&file, 2).unwrap();
        let second = std::fs::read_to_string(&file).unwrap();
        assert!(first.contains("pub fn bench_edit_1() -> usize"));
        assert!(second.contains("pub fn bench_edit_2() -> usize") && second.starts_with(&first));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_tree_holds_what_the_dockerfile_copies() {
        let dockerfile =
            std::fs::read_to_string(crate::project::repo_root().join("Dockerfile")).unwrap();
        for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
            if line.contains("--from=") {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            for src in &words[1..words.len() - 1] {
                let src = src.trim_end_matches('/');
                assert!(
                    TREE.iter()
                        .any(|t| src == *t || src.starts_with(&format!("{t}/"))),
                    "the Dockerfile copies {src}, which bench --compile does not copy"
                );
            }
        }
    }
}
