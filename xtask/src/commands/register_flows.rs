//! `cargo xtask register-flows` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, RegisterFlowsArgs};

pub fn run(_global: &GlobalArgs, _args: RegisterFlowsArgs) -> Result<ExitCode> {
    bail!("`register-flows` is not available in this build yet")
}
