//! A Prefect process worker polling one work pool of the local server.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use xshell::cmd;

use super::server::{api_url, without_prefect_env};
use crate::sys::process::shell;

/// Words a worker's command line contains (checked before reusing or killing a pid).
pub(crate) const WORKER_WORDS: &[&str] = &["worker", "start"];

#[derive(Debug, Clone)]
pub(crate) struct WorkerSpec {
    pub prefect: PathBuf,
    pub pool: String,
    pub port: u16,
    pub home: PathBuf,
    /// The checkout: the flows' pull step `set_working_directory` uses `{{ $APP_DIR }}`.
    pub app_dir: PathBuf,
    pub log: PathBuf,
}

/// `prefect worker start --pool P --type process` talking to the local server only.
pub(crate) fn worker_command(spec: &WorkerSpec) -> Result<Command> {
    let sh = shell()?;
    sh.change_dir(&spec.app_dir);
    let (prefect, pool) = (&spec.prefect, &spec.pool);
    let cmd = cmd!(sh, "{prefect} worker start --pool {pool} --type process");
    let cmd = without_prefect_env(cmd)
        .env("PREFECT_API_URL", api_url(spec.port))
        .env("PREFECT_HOME", &spec.home)
        .env("APP_DIR", &spec.app_dir)
        // Pick up the smoke run within ~2 s instead of the default 10 s.
        .env("PREFECT_WORKER_QUERY_SECONDS", "2");
    Ok(cmd.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn worker_command_points_at_the_local_server() {
        let spec = WorkerSpec {
            prefect: PathBuf::from("/r/.venv/bin/prefect"),
            pool: "captionacc-workers-prod".into(),
            port: 4435,
            home: PathBuf::from("/r/target/xtask/local/home"),
            app_dir: PathBuf::from("/r"),
            log: PathBuf::from("/r/target/xtask/local/worker.log"),
        };
        let cmd = worker_command(&spec).unwrap();
        let args = crate::sys::process::args_of(&cmd);
        assert_eq!(
            args,
            [
                "worker",
                "start",
                "--pool",
                "captionacc-workers-prod",
                "--type",
                "process"
            ]
        );
        let env = |name: &str| crate::sys::process::env_set_by(&cmd, name);
        assert_eq!(
            env("PREFECT_API_URL").as_deref(),
            Some("http://127.0.0.1:4435/api")
        );
        assert_eq!(env("APP_DIR").as_deref(), Some("/r"));
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/r")));
    }
}
