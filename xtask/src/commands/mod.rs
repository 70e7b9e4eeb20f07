//! One module per subcommand, each `run(global, args) -> Result<ExitCode>`: arguments → library
//! (`xtask::…`) → report → exit code. No command calls another's `run`.

pub mod bench;
pub mod build_image;
pub mod check_secrets;
pub mod deploy;
pub mod github;
pub mod local;
pub mod lock_python;
pub mod register_flows;
pub mod rollback;
pub mod status;
pub mod test;
