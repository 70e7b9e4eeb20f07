//! register-flows' engine: load the desired state, read the server, plan, apply, report.

pub mod apply;
pub mod desired;
pub mod engine;
pub mod load;
pub mod plan;
pub mod render;
pub mod server_state;

pub use engine::{register, sync, SyncOptions, SyncOutcome};
