//! `cargo xtask deploy` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, DeployArgs};

pub fn run(global: &GlobalArgs, args: DeployArgs) -> Result<ExitCode> {
    if args.local {
        return crate::commands::local::deploy_local(global, &args);
    }
    bail!("`deploy` is not available in this build yet")
}
