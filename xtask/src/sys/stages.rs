//! A tiny runner for composite commands: named stages in order, a header and a duration for each,
//! stop at the first failure with the stage named in the error, and a summary at the end.
//! Output goes to stderr (stdout stays free for machine-readable output).

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Result;

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
        }
    }

    fn header(&self, name: &str) -> String {
        format!("==> [{}/{}] {name}", self.records.len() + 1, self.total)
    }

    /// Runs one stage. On failure the error is wrapped in [`StageFailed`] naming the stage.
    pub fn run<T>(&mut self, name: &str, stage: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("{}", self.header(name));
        let started = Instant::now();
        let result = stage();
        let duration = started.elapsed();
        let index = self.records.len() + 1;
        let outcome = if result.is_ok() {
            Outcome::Done
        } else {
            Outcome::Failed
        };
        match &outcome {
            Outcome::Done => eprintln!("    done in {}", format_duration(duration)),
            _ => eprintln!("    FAILED after {}", format_duration(duration)),
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
    fn formats_durations() {
        assert_eq!(format_duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }
}
