//! `cargo xtask check-secrets`: proves everything the release needs is in place before anything
//! is built (the checklist is [`xtask::fly::checklist`]); prints it, values never shown.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{CheckSecretsArgs, GlobalArgs};
use xtask::fly;
use xtask::fly::checklist::{checklist, FlyCheck};
use xtask::project::{Env, Project};
use xtask::sys::env_vars::EnvVars;
use xtask::sys::redact::redact;
use xtask::sys::report::code;

pub fn run(global: &GlobalArgs, args: CheckSecretsArgs) -> Result<ExitCode> {
    let fly = if args.local_only {
        FlyCheck::Skip
    } else {
        FlyCheck::Run
    };
    let list = checklist(&EnvVars::capture(), fly, || {
        let project = Project::discover(global.prefect_file.as_deref(), Env::Prod)?;
        fly::target(&project, Env::Prod, args.app.as_deref())
    })?;
    let text = redact(&list.render_text());
    if args.json {
        eprint!("{text}");
        println!(
            "{}",
            redact(&serde_json::to_string_pretty(&list.to_json())?)
        );
    } else {
        print!("{text}");
    }
    Ok(ExitCode::from(if list.has_failures() {
        code::ERROR
    } else {
        code::OK
    }))
}
