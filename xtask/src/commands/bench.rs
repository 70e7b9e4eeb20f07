//! `cargo xtask bench`: register-flows against `prefect deploy --all` side by side in one run,
//! or with `--compile` the cost of compiling the xtask (the measurements are `xtask::bench`).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{BenchArgs, GlobalArgs};
use xtask::bench::compile::{self, CompileOptions};
use xtask::bench::register::{self, BenchOptions};
use xtask::sys::report::code;

pub fn run(_global: &GlobalArgs, args: BenchArgs) -> Result<ExitCode> {
    if args.compile {
        compile::run(&CompileOptions {
            runs: args.runs.unwrap_or(1),
            image: args.image,
        })?;
    } else {
        register::run(&BenchOptions {
            deployments: args.deployments,
            runs: args.runs.unwrap_or(5),
            settle: args.settle,
            api_url: args.api_url,
            production_server: args.production_server,
        })?;
    }
    Ok(ExitCode::from(code::OK))
}
