//! register-flows' engine: the desired state, the plan against the server, and applying it.

pub mod apply;
pub mod desired;
pub mod plan;
