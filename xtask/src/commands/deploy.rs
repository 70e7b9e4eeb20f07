//! `cargo xtask deploy`: the Fly release pipeline (`xtask::deploy`); `deploy --local` is
//! [`crate::commands::local`].

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::cli::{DeployArgs, GlobalArgs};
use xtask::deploy::drain::DrainOptions;
use xtask::deploy::verify::VerifyOptions;
use xtask::deploy::{deploy, DeployOptions};
use xtask::fly;
use xtask::project::{Env, Project};
use xtask::sys::report::code;

pub fn run(global: &GlobalArgs, args: DeployArgs) -> Result<ExitCode> {
    let env = Env::from(args.env);
    let project = Project::discover(global.prefect_file.as_deref(), env)?;
    let target = fly::target(&project, env, args.app.as_deref())?;
    let options = DeployOptions {
        env,
        dry_run: args.dry_run,
        image: args.image,
        release_command_timeout: args.release_command_timeout,
        timeout: args.timeout,
        verbose: global.verbose,
        drain: DrainOptions {
            enabled: !args.no_drain,
            timeout: args.drain_timeout,
            on_timeout: args.on_drain_timeout.into(),
        },
        verify: VerifyOptions {
            timeout: Duration::from_secs(args.verify_timeout),
            smoke: args.smoke,
        },
    };
    deploy(&project, &target, &options)?;
    Ok(ExitCode::from(code::OK))
}
