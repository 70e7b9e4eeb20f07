//! `cargo xtask bench`: register-flows against `prefect deploy --all`, side by side in one run
//! (the measurement itself is `xtask::bench`).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{BenchArgs, GlobalArgs};
use xtask::bench::{self, BenchOptions};
use xtask::sys::report::code;

pub fn run(_global: &GlobalArgs, args: BenchArgs) -> Result<ExitCode> {
    bench::run(&BenchOptions {
        deployments: args.deployments,
        runs: args.runs,
        settle: args.settle,
        api_url: args.api_url,
    })?;
    Ok(ExitCode::from(code::OK))
}
