//! `cargo xtask bench` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, BenchArgs};

pub fn run(_global: &GlobalArgs, _args: BenchArgs) -> Result<ExitCode> {
    bail!("`bench` is not available in this build yet")
}
