//! The logic behind `cargo xtask`; docs/architecture.md says how the parts fit.

pub mod docker;
pub mod fly;
pub mod local;
pub mod prefect;
pub mod project;
pub mod sync;
pub mod sys;

pub mod cli;
pub mod commands;
