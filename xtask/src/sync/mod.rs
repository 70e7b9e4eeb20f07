//! register-flows' engine: load the desired state, read the server, plan, apply, report.
//! `desired`, `plan`, `pool_lint` and `render` are pure; `load`, `server_state`, `apply` and `lock`
//! (one writing run per project at a time) do I/O.

pub mod apply;
pub mod desired;
pub mod engine;
pub mod load;
pub mod lock;
pub mod plan;
pub mod pool_lint;
pub mod release;
pub mod render;
pub mod resources;
pub mod resources_apply;
pub mod selection;
pub mod server_state;

pub use engine::{register, register_reported, sync, SyncOptions, SyncOutcome};
