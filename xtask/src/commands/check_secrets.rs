//! `cargo xtask check-secrets`: proves everything the release needs is in place before anything
//! is built (the checklist is [`xtask::fly::checklist`]); prints it, values never shown.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{CheckSecretsArgs, GlobalArgs};
use xtask::fly;
use xtask::fly::checklist::{checklist, work_pool_items, FlyCheck};
use xtask::fly::secrets::Scope;
use xtask::prefect::prefect_yaml;
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
    let vars = EnvVars::capture();
    let mut list = checklist(&vars, fly, || {
        let project = Project::discover(global.prefect_file.as_deref(), Env::Prod)?;
        fly::target(&project, Env::Prod, args.app.as_deref())
    })?;
    // The pools the deployments use, when the prefect file is there and reads.
    if let Some(file) = Project::discover(global.prefect_file.as_deref(), Env::Prod)
        .ok()
        .and_then(|project| {
            let bytes = std::fs::read(&project.prefect_file).ok()?;
            prefect_yaml::parse(&project.prefect_file_label(), &bytes).ok()
        })
    {
        // With the other checks of this machine, before the Fly app's.
        let at = list
            .items
            .iter()
            .rposition(|item| item.scope == Scope::Local)
            .map_or(0, |i| i + 1);
        list.items.splice(at..at, work_pool_items(&vars, &file));
    }
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
