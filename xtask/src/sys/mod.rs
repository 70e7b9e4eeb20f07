//! Plumbing every command shares: running other programs, the stage runner, redaction of secrets,
//! exit reporting, and the environment snapshot.

pub mod env_vars;
pub mod process;
pub mod redact;
pub mod report;
pub mod stages;
