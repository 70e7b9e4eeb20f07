//! A tiny runner for composite commands: named stages in order, a header and a duration for each,
//! stop at the first failure with the stage named in the error, and a summary at the end.
//! Output goes to stderr (stdout stays free for machine-readable output). On GitHub Actions
//! ([`CiOutput`]) each stage is a collapsible group, a failure is an error annotation, and the
//! summary (with what the stages attached, e.g. the plan) is appended to the job summary.

use std::fmt;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::sys::env_vars::EnvVars;

/// How the pipeline reports under CI. The output never has colour or prompts anywhere (CI or
/// not), so plain CI (`CI=true`) needs nothing more; GitHub Actions reads workflow commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiOutput {
    /// `GITHUB_ACTIONS=true`: `::group::` … `::endgroup::` around each stage's output and an
    /// `::error::` annotation naming the stage that failed.
    pub groups: bool,
    /// `$GITHUB_STEP_SUMMARY`: the Markdown summary is appended to this file.
    pub step_summary: Option<PathBuf>,
}

impl CiOutput {
    /// What the environment says about the CI this runs in.
    pub fn detect(env: &EnvVars) -> CiOutput {
        let github = env.get("GITHUB_ACTIONS") == Some("true");
        CiOutput {
            groups: github,
            step_summary: env
                .get("GITHUB_STEP_SUMMARY")
                .filter(|path| github && !path.trim().is_empty())
                .map(PathBuf::from),
        }
    }
}

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    Skipped(String),
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageRecord {
    pub name: String,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// The stages run so far. `what` names the pipeline in errors ("deploy").
#[derive(Debug)]
pub struct Pipeline {
    what: String,
    total: usize,
    records: Vec<StageRecord>,
    started: Instant,
    ci: CiOutput,
    /// Markdown the stages attached for the job summary (the plan), in order.
    attachments: Vec<String>,
}

/// The error of a failed stage: which one, after how long, and the cause (kept as the source,
/// so `report::exit` prints the chain).
#[derive(Debug)]
pub(crate) struct StageFailed {
    pub what: String,
    pub index: usize,
    pub total: usize,
    pub stage: String,
}

impl fmt::Display for StageFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} stopped at stage {}/{} ({})",
            self.what, self.index, self.total, self.stage
        )
    }
}

impl std::error::Error for StageFailed {}

impl Pipeline {
    pub fn new(what: &str, total: usize) -> Pipeline {
        Pipeline {
            what: what.to_string(),
            total,
            records: Vec::new(),
            started: Instant::now(),
            ci: CiOutput::default(),
            attachments: Vec::new(),
        }
    }

    /// Reports for `ci` (see [`CiOutput`]).
    pub fn with_ci(mut self, ci: CiOutput) -> Pipeline {
        self.ci = ci;
        self
    }

    /// Adds Markdown (already redacted) to the job summary, after the stage table.
    pub fn attach(&mut self, markdown: String) {
        self.attachments.push(markdown);
    }

    fn header(&self, name: &str) -> String {
        format!("==> [{}/{}] {name}", self.records.len() + 1, self.total)
    }

    /// Runs one stage. On failure the error is wrapped in [`StageFailed`] naming the stage.
    pub fn run<T>(&mut self, name: &str, stage: impl FnOnce() -> Result<T>) -> Result<T> {
        let group = if self.ci.groups { "::group::" } else { "" };
        eprintln!("{group}{}", self.header(name));
        let started = Instant::now();
        let result = stage();
        let duration = started.elapsed();
        let index = self.records.len() + 1;
        let outcome = if result.is_ok() {
            Outcome::Done
        } else {
            Outcome::Failed
        };
        if self.ci.groups {
            // The result line stays outside the group: visible with the group collapsed.
            eprintln!("::endgroup::");
        }
        match &outcome {
            Outcome::Done => eprintln!("    done in {}", format_duration(duration)),
            _ => eprintln!("    FAILED after {}", format_duration(duration)),
        }
        if self.ci.groups && outcome == Outcome::Failed {
            eprintln!(
                "::error title={} failed::stopped at stage {index}/{} ({name}); the cause is in the stage's group",
                self.what, self.total
            );
        }
        self.records.push(StageRecord {
            name: name.to_string(),
            outcome,
            duration,
        });
        result.map_err(|err| {
            err.context(StageFailed {
                what: self.what.clone(),
                index,
                total: self.total,
                stage: name.to_string(),
            })
        })
    }

    /// Records a stage that does not run, with the reason.
    pub fn skip(&mut self, name: &str, reason: &str) {
        eprintln!("{}\n    skipped: {reason}", self.header(name));
        self.records.push(StageRecord {
            name: name.to_string(),
            outcome: Outcome::Skipped(reason.to_string()),
            duration: Duration::ZERO,
        });
    }

    #[cfg(test)]
    pub(crate) fn records(&self) -> &[StageRecord] {
        &self.records
    }

    /// One line per stage and the total time.
    pub fn summary(&self) -> String {
        let mut out = format!("Summary of {}:\n", self.what);
        for (i, record) in self.records.iter().enumerate() {
            let state = match &record.outcome {
                Outcome::Done => format!("ok      {:>8}", format_duration(record.duration)),
                Outcome::Skipped(reason) => format!("skipped          ({reason})"),
                Outcome::Failed => format!("FAILED  {:>8}", format_duration(record.duration)),
            };
            out.push_str(&format!("  {}. {:<20} {state}\n", i + 1, record.name));
        }
        for i in self.records.len()..self.total {
            out.push_str(&format!("  {}. (not run)\n", i + 1));
        }
        out.push_str(&format!(
            "  total {}\n",
            format_duration(self.started.elapsed())
        ));
        out
    }

    /// The summary as Markdown: `heading`, a table of the stages (result and time) and the
    /// attachments.
    pub fn summary_markdown(&self, heading: &str) -> String {
        let failed = self.records.iter().any(|r| r.outcome == Outcome::Failed);
        let mut out = format!(
            "## {heading}: {}\n\n| # | stage | result | time |\n|---|---|---|---|\n",
            if failed { "failed" } else { "done" }
        );
        for (i, record) in self.records.iter().enumerate() {
            let (result, time) = match &record.outcome {
                Outcome::Done => ("ok".to_string(), format_duration(record.duration)),
                Outcome::Skipped(reason) => (format!("skipped ({reason})"), String::new()),
                Outcome::Failed => ("**FAILED**".to_string(), format_duration(record.duration)),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {time} |",
                i + 1,
                table_cell(&record.name),
                table_cell(&result)
            );
        }
        for i in self.records.len()..self.total {
            let _ = writeln!(out, "| {} | (not run) | | |", i + 1);
        }
        let _ = writeln!(
            out,
            "\nTotal {}.\n",
            format_duration(self.started.elapsed())
        );
        for attachment in &self.attachments {
            out.push_str(attachment);
            if !attachment.ends_with('\n') {
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }

    /// Appends [`Pipeline::summary_markdown`] to the job summary file, when there is one. A file
    /// that cannot be written is a warning: the deploy's own result stands.
    pub fn write_step_summary(&self, heading: &str) {
        let Some(path) = &self.ci.step_summary else {
            return;
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(self.summary_markdown(heading).as_bytes()));
        if let Err(err) = written {
            eprintln!(
                "warning: cannot write the job summary {}: {err}",
                path.display()
            );
        }
    }
}

/// Text for a Markdown table cell: no `|` ends the cell, no `<` starts markup.
fn table_cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('\n', " ")
}

/// `0.4s`, `12.3s`, `2m05s`.
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_first_failure_and_names_the_stage() {
        let mut p = Pipeline::new("deploy", 3);
        let mut ran = Vec::new();
        let first: Result<u32> = p.run("check secrets", || {
            ran.push(1);
            Ok(7)
        });
        assert_eq!(first.unwrap(), 7);
        let second: Result<()> = p.run("build image", || {
            ran.push(2);
            anyhow::bail!("docker is not running")
        });
        let err = second.unwrap_err();
        assert_eq!(err.to_string(), "deploy stopped at stage 2/3 (build image)");
        assert_eq!(
            err.chain().nth(1).unwrap().to_string(),
            "docker is not running"
        );
        let failed = err.downcast_ref::<StageFailed>().unwrap();
        assert_eq!((failed.index, failed.stage.as_str()), (2, "build image"));
        assert_eq!(ran, [1, 2]);
        let outcomes: Vec<&Outcome> = p.records().iter().map(|r| &r.outcome).collect();
        assert_eq!(outcomes, [&Outcome::Done, &Outcome::Failed]);
        let summary = p.summary();
        assert!(summary.contains("1. check secrets"), "{summary}");
        assert!(summary.contains("FAILED"), "{summary}");
        assert!(summary.contains("3. (not run)"), "{summary}");
    }

    #[test]
    fn skipped_stages_are_counted() {
        let mut p = Pipeline::new("deploy", 2);
        p.skip("build image", "--image given");
        let err = p
            .run("fly deploy", || -> Result<()> { anyhow::bail!("x") })
            .unwrap_err();
        assert_eq!(err.to_string(), "deploy stopped at stage 2/2 (fly deploy)");
        assert!(
            p.summary().contains("skipped          (--image given)"),
            "{}",
            p.summary()
        );
    }

    #[test]
    fn detects_github_actions_only() {
        let env = |vars: &[(&str, &str)]| CiOutput::detect(&vars.iter().copied().collect());
        assert_eq!(env(&[]), CiOutput::default());
        // Plain CI: no workflow commands (another CI would print them verbatim).
        assert_eq!(env(&[("CI", "true")]), CiOutput::default());
        assert_eq!(
            env(&[("GITHUB_ACTIONS", "true"), ("GITHUB_STEP_SUMMARY", "/s.md")]),
            CiOutput {
                groups: true,
                step_summary: Some("/s.md".into())
            }
        );
        assert_eq!(
            env(&[("GITHUB_STEP_SUMMARY", "/s.md")]).step_summary,
            None,
            "a summary path outside GitHub Actions is ignored"
        );
    }

    #[test]
    fn markdown_summary_lists_every_stage_and_the_attachments() {
        let mut p = Pipeline::new("deploy", 4);
        p.run("check secrets", || Ok(())).unwrap();
        p.skip("build image", "--image a|b");
        p.attach("### Planned: 1 to create".into());
        let _ = p.run("fly deploy", || -> Result<()> { anyhow::bail!("x") });
        let md = p.summary_markdown("Deploy to app (prod)");
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "## Deploy to app (prod): failed");
        assert!(lines[4].starts_with("| 1 | check secrets | ok | "), "{md}");
        assert_eq!(lines[5], "| 2 | build image | skipped (--image a\\|b) |  |");
        assert!(
            lines[6].starts_with("| 3 | fly deploy | **FAILED** | "),
            "{md}"
        );
        assert_eq!(lines[7], "| 4 | (not run) | | |");
        assert!(md.ends_with("### Planned: 1 to create\n\n"), "{md}");
    }

    #[test]
    fn writes_the_step_summary_by_appending() {
        let dir = std::env::temp_dir().join(format!("xtask-stages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.md");
        std::fs::write(&path, "earlier step\n").unwrap();
        let mut p = Pipeline::new("deploy", 1).with_ci(CiOutput {
            groups: true,
            step_summary: Some(path.clone()),
        });
        p.run("verify", || Ok(())).unwrap();
        p.write_step_summary("Deploy");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("earlier step\n## Deploy: done\n"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }
}
