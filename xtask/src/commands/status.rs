//! `cargo xtask status`: the system at a glance (`xtask::status`), as a screen or `--json`;
//! exit 0 healthy, 2 degraded, 1 when something could not be read.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{GlobalArgs, StatusArgs};
use xtask::fly;
use xtask::project::{Env, Project};
use xtask::status::report::use_colour;
use xtask::status::{collect, StatusInput};
use xtask::sync::selection::Selection;
use xtask::sys::env_vars::EnvVars;
use xtask::sys::redact::redact;

pub fn run(global: &GlobalArgs, args: StatusArgs) -> Result<ExitCode> {
    let env = Env::from(args.env);
    let project = Project::discover(global.prefect_file.as_deref(), env)?;
    let target = fly::target(&project, env, args.app.as_deref())?;
    let fly_program = fly::find_fly().map_err(|e| format!("{e:#}"));
    let host_env = EnvVars::capture();
    let report = collect(&StatusInput {
        project: &project,
        env,
        target: &target,
        fly: fly_program.as_deref().map_err(Clone::clone),
        host_env: &host_env,
        selection: Selection::new(args.names),
        verbose: global.verbose,
    });
    if args.json {
        println!("{}", redact(&report.to_json().to_string()));
    } else {
        let colour = use_colour(
            std::io::stdout().is_terminal(),
            std::env::var("NO_COLOR").ok().as_deref(),
        );
        print!("{}", redact(&report.to_text(colour)));
    }
    Ok(ExitCode::from(report.exit_code()))
}
