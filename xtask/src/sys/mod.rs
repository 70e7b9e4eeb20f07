//! Plumbing every command shares: the stage runner, redaction of secrets, exit reporting, and the
//! environment snapshot.

pub mod env_vars;
pub mod redact;
pub mod report;
pub mod stages;
