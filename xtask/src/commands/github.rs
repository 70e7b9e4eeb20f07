//! `cargo xtask github …`: what the workflows run after a plan or a drift check
//! (`xtask::github`): the pull request's plan comment and the environment's drift issue.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{DriftIssueArgs, GithubCommand, PlanCommentArgs};
use xtask::github::{self, Gh};
use xtask::project::Env;
use xtask::sys::env_vars::EnvVars;
use xtask::sys::redact::redact;
use xtask::sys::report::code;

/// A report larger than this is not a plan (GitHub keeps 64 KiB of it anyway).
const MAX_REPORT_BYTES: u64 = 4 << 20;

pub fn run(command: GithubCommand) -> Result<ExitCode> {
    match command {
        GithubCommand::PlanComment(args) => plan_comment(&args),
        GithubCommand::DriftIssue(args) => drift_issue(&args),
    }
}

fn plan_comment(args: &PlanCommentArgs) -> Result<ExitCode> {
    let report = read_report(&args.body_file)?;
    let gh = Gh::find(&args.repo)?;
    let posted = github::upsert_pr_comment(&gh, args.pr, &args.key, &report)?;
    eprintln!("pull request #{} comment `{}`: {posted}", args.pr, args.key);
    Ok(ExitCode::from(code::OK))
}

fn drift_issue(args: &DriftIssueArgs) -> Result<ExitCode> {
    let report = read_report(&args.body_file)?;
    let gh = Gh::find(&args.repo)?;
    let env = Env::from(args.env);
    let posted = github::sync_drift_issue(
        &gh,
        env.name(),
        args.check_exit,
        &report,
        github::run_url(&EnvVars::capture()).as_deref(),
    )?;
    eprintln!("{} drift issue: {posted}", env.name());
    Ok(ExitCode::from(code::OK))
}

/// The report file, masked again (it came from our own output, but it is about to be public).
fn read_report(path: &Path) -> Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_REPORT_BYTES).read_to_string(&mut text))
        .with_context(|| format!("cannot read the report {}", path.display()))?;
    Ok(redact(&text))
}
