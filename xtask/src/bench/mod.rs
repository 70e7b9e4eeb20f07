//! `cargo xtask bench`: numbers printed as ratios of two things measured side by side in one
//! run, never timed assertions in tests.
//!
//! - [`register`]: register-flows against `prefect deploy --all` on one server.
//! - [`compile`] (`--compile`): what compiling the xtask costs, against the card's dependency
//!   set alone, and in the image.

pub mod compile;
pub mod register;
