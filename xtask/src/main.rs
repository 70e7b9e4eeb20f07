//! `cargo xtask`: ship Prefect flows to Fly.io.
//!
//! Table of contents — each command lives in `commands/`, the logic it uses in the library:
//! - `deploy`          → commands::deploy          (pipeline; `--local` → commands::local)
//! - `register-flows`  → commands::register_flows  (also Fly's release_command)
//! - `check-secrets`   → commands::check_secrets
//! - `build-image`     → commands::build_image
//! - `down`            → commands::local
//! - `test`            → commands::test
//! - `bench`           → commands::bench

use std::process::ExitCode;

use clap::Parser;
use xtask::cli::{Cli, Command};
use xtask::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Deploy(args) => commands::deploy::run(&cli.global, args),
        Command::RegisterFlows(args) => commands::register_flows::run(&cli.global, args),
        Command::CheckSecrets(args) => commands::check_secrets::run(&cli.global, args),
        Command::BuildImage(args) => commands::build_image::run(&cli.global, args),
        Command::Down(args) => commands::local::down(&cli.global, args),
        Command::Test(args) => commands::test::run(&cli.global, args),
        Command::Bench(args) => commands::bench::run(&cli.global, args),
    };
    xtask::sys::report::exit(result)
}
