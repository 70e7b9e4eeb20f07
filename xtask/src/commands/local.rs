//! `cargo xtask down` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{DeployArgs, GlobalArgs, DownArgs};

pub fn down(_global: &GlobalArgs, _args: DownArgs) -> Result<ExitCode> {
    bail!("`down` is not available in this build yet")
}

/// `cargo xtask deploy --local` (placeholder until the local-deploy helper's version is merged).
pub fn deploy_local(_global: &GlobalArgs, _args: &DeployArgs) -> Result<ExitCode> {
    bail!("`deploy --local` is not available in this build yet")
}
