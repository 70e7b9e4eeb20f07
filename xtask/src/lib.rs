//! The logic behind `cargo xtask`. Pure modules (no I/O) first, then the edges.

// Pure: prefect.yaml → desired server state.
pub mod yaml;
pub mod prefect_yaml;
pub mod template;
pub mod schedule;
pub mod flow_source;
pub mod param_schema;
pub mod desired;
pub mod param_check;
pub mod plan;
pub mod secrets;

// Edges: HTTP, processes, files.
pub mod prefect_api;
pub mod apply;
pub mod steps;
pub mod fly;
pub mod pipeline;
pub mod docker;
pub mod local;
pub mod prefect_cli;
pub mod project;
pub mod python_text;
pub mod redact;
pub mod report;

pub mod cli;
pub mod commands;
