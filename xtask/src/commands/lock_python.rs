//! `cargo xtask lock-python`: regenerate the Python lock from the pin (uv), then check it.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{GlobalArgs, LockPythonArgs};
use xtask::local::python_lock::{self, LOCK_FILE, PIN_FILE};
use xtask::project::{repo_root, state_dir};

pub fn run(_global: &GlobalArgs, _args: LockPythonArgs) -> Result<ExitCode> {
    let root = repo_root();
    eprintln!("==> {LOCK_FILE} from {PIN_FILE} (uv pip compile --universal --generate-hashes)");
    python_lock::compile(&root, &state_dir().join("lock-tool-venv"))?;
    eprintln!("{LOCK_FILE} matches {PIN_FILE}; commit both");
    Ok(ExitCode::SUCCESS)
}
