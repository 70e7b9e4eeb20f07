//! `cargo xtask check-secrets` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, CheckSecretsArgs};

pub fn run(_global: &GlobalArgs, _args: CheckSecretsArgs) -> Result<ExitCode> {
    bail!("`check-secrets` is not available in this build yet")
}
