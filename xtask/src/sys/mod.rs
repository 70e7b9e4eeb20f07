//! Plumbing every command shares: the stage runner, redaction of secrets, and exit reporting.

pub mod redact;
pub mod report;
pub mod stages;
