//! How a command's result becomes an exit code and a message.
//! Every failure prints one `error: …` line (plus its causes) with secrets masked, and exits non-zero,
//! so Fly aborts a deploy whose release command failed.

use std::process::ExitCode;

/// Exit codes shared by all commands.
pub mod code {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    /// `register-flows --check`: the server differs from the yaml (Terraform's -detailed-exitcode).
    pub const DRIFT: u8 = 2;
}

pub fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            let mut text = format!("error: {err}");
            for cause in err.chain().skip(1) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
            eprintln!("{}", crate::sys::redact::redact(&text));
            ExitCode::from(code::ERROR)
        }
    }
}
