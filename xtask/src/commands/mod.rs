//! One module per subcommand. Each exposes `run(global, args) -> Result<ExitCode>`.

pub mod bench;
pub mod build_image;
pub mod check_secrets;
pub mod deploy;
pub mod local;
pub mod register_flows;
pub mod test;
