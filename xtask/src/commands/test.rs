//! `cargo xtask test` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, TestArgs};

pub fn run(_global: &GlobalArgs, _args: TestArgs) -> Result<ExitCode> {
    bail!("`test` is not available in this build yet")
}
