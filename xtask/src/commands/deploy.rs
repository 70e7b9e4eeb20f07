//! `cargo xtask deploy` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, DeployArgs};

pub fn run(_global: &GlobalArgs, _args: DeployArgs) -> Result<ExitCode> {
    bail!("`deploy` is not available in this build yet")
}
