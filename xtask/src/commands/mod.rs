//! One module per subcommand, each `run(global, args) -> Result<ExitCode>`: arguments → library
//! (`xtask::…`) → report → exit code. No command calls another's `run`.

pub mod bench;
pub mod build_image;
pub mod check_secrets;
pub mod deploy;
pub mod local;
pub mod register_flows;
pub mod test;

use std::time::Instant;

use anyhow::Result;

use xtask::prefect::api::{ApiConfig, PrefectClient};
use xtask::project::Project;
use xtask::sync::engine::interrupt_flag;
use xtask::sync::{self, render, SyncOptions};
use xtask::sys::env_vars::EnvVars;

/// A register-flows run inside another command (deploy's plan and check, `deploy --local`),
/// against the server `env` names and with `env` as the environment, reported on stderr as
/// register-flows reports it. Returns register-flows' exit code.
pub(crate) fn register_reported(
    project: &Project,
    env: &EnvVars,
    verbose: bool,
    options: &SyncOptions,
) -> Result<u8> {
    let started = Instant::now();
    let client = PrefectClient::new(ApiConfig::from_vars(env)?)?;
    client.set_verbose(verbose);
    let cancel = interrupt_flag();
    let registration = sync::register(project, &client, env, options, &cancel, started)?;
    eprint!(
        "{}",
        render::report_text(&client, project, options, &registration)
    );
    Ok(registration.outcome.exit_code(options))
}
