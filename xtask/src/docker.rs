//! (being written by the build-image helper) Minimal interface the deploy pipeline calls;
//! replaced by the real implementation on merge.

use anyhow::{bail, Result};

use crate::project::Project;

/// How to build the image.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub dry_run: bool,
    pub platform: String,
    pub build_args: Vec<String>,
    pub repository: Option<String>,
    pub fly_app: Option<String>,
    pub via_fly: bool,
}

/// Builds the image and returns its reference.
pub fn build_image(_project: &Project, _opts: &BuildOptions) -> Result<String> {
    bail!("building the image is not available in this build yet; pass --image REF")
}
