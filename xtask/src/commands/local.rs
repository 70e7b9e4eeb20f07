//! `cargo xtask down` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, DownArgs};

pub fn down(_global: &GlobalArgs, _args: DownArgs) -> Result<ExitCode> {
    bail!("`down` is not available in this build yet")
}
