//! `cargo xtask`: ship Prefect flows to Fly.io.
//!
//! Table of contents — the grammar is `cli`, each command a thin module in `commands/`
//! (arguments → library → report → exit code); the logic lives in the library (`xtask::…`):
//! - `deploy`          → commands::deploy          → xtask::deploy (the Fly pipeline: fly, docker, sync)
//! - `deploy --local`  → commands::local           → xtask::local, sync
//! - `register-flows`  → commands::register_flows  (also Fly's release_command) → xtask::sync
//! - `rollback`        → commands::rollback        → xtask::deploy::rollback (fly releases, drain, verify)
//! - `status`          → commands::status          → xtask::status (reads only)
//! - `check-secrets`   → commands::check_secrets   → xtask::fly::checklist
//! - `build-image`     → commands::build_image     → xtask::docker
//! - `down`            → commands::local           → xtask::local
//! - `lock-python`     → commands::lock_python     → xtask::local::python_lock
//! - `test`            → commands::test            (tidy gate, throwaway servers, cargo test)
//! - `bench`           → commands::bench           → xtask::bench
//! - `github …`        → commands::github          → xtask::github (the workflows' comment and issue)

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Deploy(args) if args.local => commands::local::deploy_local(&cli.global, &args),
        Command::Deploy(args) => commands::deploy::run(&cli.global, args),
        Command::RegisterFlows(args) => commands::register_flows::run(&cli.global, args),
        Command::Rollback(args) => commands::rollback::run(&cli.global, args),
        Command::Status(args) => commands::status::run(&cli.global, args),
        Command::CheckSecrets(args) => commands::check_secrets::run(&cli.global, args),
        Command::BuildImage(args) => commands::build_image::run(&cli.global, args),
        Command::Down(args) => commands::local::down(&cli.global, args),
        Command::LockPython(args) => commands::lock_python::run(&cli.global, args),
        Command::Test(args) => commands::test::run(&cli.global, args),
        Command::Bench(args) => commands::bench::run(&cli.global, args),
        Command::Github(command) => commands::github::run(command),
    };
    xtask::sys::report::exit(result)
}
