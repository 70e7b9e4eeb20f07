//! `cargo xtask rollback`: back to an earlier Fly release (`xtask::deploy::rollback`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::cli::{GlobalArgs, RollbackArgs};
use xtask::deploy::drain::{DrainOptions, OnDrainTimeout};
use xtask::deploy::rollback::{rollback, RollbackOptions};
use xtask::deploy::verify::VerifyOptions;
use xtask::fly;
use xtask::project::{Env, Project};
use xtask::sys::report::code;

pub fn run(global: &GlobalArgs, args: RollbackArgs) -> Result<ExitCode> {
    let env = Env::from(args.env);
    let project = Project::discover(global.prefect_file.as_deref(), env)?;
    let target = fly::target(&project, env, args.app.as_deref())?;
    let release_command_timeout = args
        .release_command_timeout
        .or_else(|| target.toml.release_command_timeout.clone())
        .unwrap_or_else(|| "5m".to_string());
    let options = RollbackOptions {
        env,
        to: args.to,
        dry_run: args.dry_run,
        timeout: Duration::from_secs(args.timeout),
        release_command_timeout,
        verbose: global.verbose,
        drain: DrainOptions {
            enabled: !args.no_drain,
            timeout: args.drain_timeout,
            on_timeout: OnDrainTimeout::Abort,
        },
        verify: VerifyOptions {
            timeout: Duration::from_secs(args.verify_timeout),
            smoke: args.smoke,
        },
    };
    rollback(&project, &target, &options)?;
    Ok(ExitCode::from(code::OK))
}
