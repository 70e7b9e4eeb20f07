//! The integration tests, as one test binary: one module per area, one shared `support` module.
//! Run them through `cargo xtask test` (it starts the Prefect servers they need); one area or
//! one test with a name filter, e.g. `cargo xtask test -- parity::` or
//! `cargo xtask test -- sync_faults::prune`.

mod support;

mod bad_inputs;
mod build_steps;
mod check_secrets;
mod drain;
mod flow_golden;
mod flow_project_golden;
mod fly_pipeline;
mod fuzz_regressions;
mod github_ci;
mod image_e2e;
mod local_e2e;
mod memory_bounds;
mod parity;
mod prefect_api;
mod register_flows;
mod release_hygiene;
mod resources;
mod rollback;
mod secrets_hygiene;
mod status;
mod sync_faults;
mod tidy;
mod verify;
mod workflows;
