//! `cargo xtask build-image` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, BuildImageArgs};

pub fn run(_global: &GlobalArgs, _args: BuildImageArgs) -> Result<ExitCode> {
    bail!("`build-image` is not available in this build yet")
}
