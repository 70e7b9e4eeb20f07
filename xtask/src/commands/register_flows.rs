//! `cargo xtask register-flows`: make the Prefect server's deployments match prefect.yaml.
//!
//! validate (everything, before any write) → read the server in bulk → plan → print →
//! apply (all or nothing) → verify. Also Fly's release_command: never reads stdin, never prompts,
//! ends with one `error:` line when it fails.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::cli::{Engine, GlobalArgs, OutputFormat, RegisterFlowsArgs};
use xtask::prefect::api::{ApiConfig, PrefectClient};
use xtask::project::{Env, Project};
use xtask::sync::engine::{interrupt_flag, RegisterError};
use xtask::sync::{self, render};
use xtask::sys::env_vars::EnvVars;
use xtask::sys::redact::redact;
use xtask::sys::report::code;

pub fn run(global: &GlobalArgs, args: RegisterFlowsArgs) -> Result<ExitCode> {
    if args.engine == Engine::PrefectCli {
        return run_prefect_cli(global, &args);
    }
    let started = Instant::now();
    let project = Project::discover(global.prefect_file.as_deref(), Env::Prod)?;
    let env = EnvVars::capture();
    if let Some(problem) = xtask::fly::secrets::missing_required_credentials(&env) {
        bail!("{problem}");
    }
    let client = PrefectClient::new(ApiConfig::from_vars(&env)?)?;
    client.set_verbose(global.verbose);
    let cancel = interrupt_flag();
    client.set_interrupt(cancel.clone());
    let mut options = args.sync_options();
    options.release = sync::load::image_release(&project.root, &env)?;
    // Every report goes through the same redaction, so each format masks exactly what the text does.
    let registration = match sync::register(&project, &client, &env, &options, &cancel, started) {
        Ok(registration) => registration,
        Err(RegisterError::Invalid(err)) => {
            match args.output() {
                OutputFormat::Text => {}
                OutputFormat::Json => println!(
                    "{}",
                    redact(
                        &render::invalid_document(&client, &project, &options, &err).to_string()
                    )
                ),
                OutputFormat::Markdown => print!(
                    "{}",
                    redact(&render::invalid_markdown(&project, &options, &err))
                ),
            }
            return Err(err);
        }
        Err(RegisterError::Failed(err)) => return Err(err),
    };
    eprint!(
        "{}",
        redact(&render::report_text(
            &client,
            &project,
            &options,
            &registration
        ))
    );
    match args.output() {
        OutputFormat::Text => {}
        OutputFormat::Json => println!(
            "{}",
            redact(&render::json_document(&client, &project, &options, &registration).to_string())
        ),
        OutputFormat::Markdown => print!(
            "{}",
            redact(&render::report_markdown(
                &client,
                &project,
                &options,
                &registration
            ))
        ),
    }
    Ok(ExitCode::from(registration.outcome.exit_code(&options)))
}

/// `--engine prefect-cli`: the old bash setup's behaviour, `prefect --no-prompt deploy --all`
/// (no plan, no prune, no rollback: Prefect's CLI has none of them).
fn run_prefect_cli(global: &GlobalArgs, args: &RegisterFlowsArgs) -> Result<ExitCode> {
    if args.dry_run
        || args.check
        || args.prune
        || !args.names.is_empty()
        || args.output() != OutputFormat::Text
    {
        bail!("--dry-run, --check, --prune, --name, --json and --format need the native engine; `prefect deploy --all` has no such modes");
    }
    let project = Project::discover(global.prefect_file.as_deref(), Env::Prod)?;
    let prefect = xtask::prefect::deploy_cli::find_prefect()?;
    xtask::prefect::deploy_cli::deploy_all(&project, &prefect, &[])?;
    Ok(ExitCode::from(code::OK))
}
