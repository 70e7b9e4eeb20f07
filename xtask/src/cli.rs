//! The command-line grammar (clap derive). Doc comments are the `--help` text.
//! Only parsing lives here; each command's behaviour lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use xtask::deploy::drain::OnDrainTimeout;
use xtask::deploy::verify::SmokeSpec;
use xtask::project::Env;
use xtask::sync::engine::{SyncOptions, DEFAULT_CONCURRENCY};
use xtask::sync::selection::{NamePattern, Selection};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Ship Prefect flows to Fly.io: register deployments natively, check secrets, build and deploy.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// The prefect.yaml to read (default: prefect.yaml, or prefect-dev.yaml with `--env dev`).
    /// Entrypoints resolve relative to the project root, as Prefect does.
    #[arg(long, global = true, value_name = "PATH", env = "XTASK_PREFECT_FILE")]
    pub prefect_file: Option<PathBuf>,

    /// Print more detail: every HTTP request, every external command.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The ordered pipeline: check secrets -> validate and plan -> build image -> fly deploy
    /// (whose release_command registers the flows) -> verify the server matches the yaml.
    /// With --local: the same against a local Prefect server and worker on this machine.
    Deploy(DeployArgs),
    /// Register every deployment in prefect.yaml with the Prefect server at PREFECT_API_URL,
    /// natively over the REST API: validated before any write, only what changed, all-or-nothing.
    /// This is also Fly's release_command inside the image.
    RegisterFlows(RegisterFlowsArgs),
    /// Go back to an earlier Fly release (default: the last completed one before the current):
    /// shows what changes on the Prefect server, drains the workers, `fly deploy --image` of
    /// that release's image (whose release command re-registers its deployments and prunes the
    /// newer ones), then verifies. Fly secrets and fly.toml are not rolled back.
    Rollback(RollbackArgs),
    /// One screen: each deployment in sync or drifted, paused, next and last run, its release;
    /// each work pool's workers; each Fly process group's Machines, image and release. Reads
    /// only. Exit 0 healthy, 2 degraded (drift, no worker, last run failed), 1 could not read.
    Status(StatusArgs),
    /// Prove the secrets a release needs exist, locally and in the Fly app. Never prints values.
    CheckSecrets(CheckSecretsArgs),
    /// Build the production image from the Dockerfile (docker, or Fly's builder with --fly).
    BuildImage(BuildImageArgs),
    /// Stop the local Prefect server and worker that `deploy --local` started.
    Down(DownArgs),
    /// Regenerate app/requirements.lock (every Python package by version and hash) from the one
    /// pin, app/requirements.txt, with uv (installed by hash from xtask/python-lock-tool.txt).
    /// The image, the venv and the tests install the lock; a test fails when it does not match the pin.
    LockPython(LockPythonArgs),
    /// Run the whole test suite: bootstraps the venv, starts throwaway Prefect servers,
    /// runs unit and integration tests, stops the servers (also on failure).
    Test(TestArgs),
    /// Benchmark register-flows against `prefect deploy --all` on one local server; prints ratios.
    Bench(BenchArgs),
    /// What the GitHub workflows run after a plan or a drift check (through `gh`, which needs
    /// GH_TOKEN): post the plan as one pull-request comment, keep the drift issue in step.
    #[command(subcommand)]
    Github(GithubCommand),
}

#[derive(Debug, Subcommand)]
pub enum GithubCommand {
    /// Post a Markdown report as the pull request's one comment for `--key`: created the first
    /// time, edited in place after (found by a hidden marker, not by its author or position).
    PlanComment(PlanCommentArgs),
    /// After `register-flows --check`: exit 2 (drift) opens or updates the environment's drift
    /// issue with the report, exit 0 (in sync) closes it; any other exit code changes nothing
    /// and fails.
    DriftIssue(DriftIssueArgs),
}

#[derive(Debug, Args)]
pub struct PlanCommentArgs {
    /// The pull request's number.
    #[arg(long)]
    pub pr: u64,
    /// Which comment: one per key (e.g. `plan-prod`).
    #[arg(long, default_value = "plan")]
    pub key: String,
    /// The Markdown to post (e.g. `register-flows --dry-run --format markdown` output).
    #[arg(long, value_name = "PATH")]
    pub body_file: PathBuf,
    /// `owner/name` of the repository.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repo: String,
}

#[derive(Debug, Args)]
pub struct DriftIssueArgs {
    /// The environment that was checked (one issue each).
    #[arg(long, value_enum)]
    pub env: EnvArg,
    /// `register-flows --check`'s exit code.
    #[arg(long, value_name = "CODE")]
    pub check_exit: u8,
    /// The check's Markdown report (`register-flows --check --format markdown` output).
    #[arg(long, value_name = "PATH")]
    pub body_file: PathBuf,
    /// `owner/name` of the repository.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repo: String,
}

/// Which environment's files and app to use ([`Env`] as a flag value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum EnvArg {
    /// prefect.yaml, app `captionacc-api`, pool `captionacc-workers-prod`.
    #[default]
    Prod,
    /// prefect-dev.yaml, pool `captionacc-workers-dev`.
    Dev,
}

impl From<EnvArg> for Env {
    fn from(arg: EnvArg) -> Env {
        match arg {
            EnvArg::Prod => Env::Prod,
            EnvArg::Dev => Env::Dev,
        }
    }
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Which environment to deploy.
    #[arg(long, value_enum, default_value_t = EnvArg::Prod)]
    pub env: EnvArg,
    /// Run everything on this machine: a local Prefect server (started if needed),
    /// a process worker, and one smoke flow run that must complete.
    #[arg(long)]
    pub local: bool,
    /// Print the exact commands and the plan without running any of them.
    #[arg(long)]
    pub dry_run: bool,
    /// Fly app name (default: `app` in fly.toml).
    #[arg(long, env = "FLY_APP")]
    pub app: Option<String>,
    /// Deploy this already-built image instead of building one.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Timeout for Fly's release command, e.g. `10m` or `none`
    /// (default: `[deploy] release_command_timeout` in fly.toml, else 5m).
    #[arg(long, value_name = "DURATION")]
    pub release_command_timeout: Option<String>,
    /// Give up on `fly deploy` after this many seconds (flyctl can hang, also while it keeps
    /// printing).
    #[arg(long, default_value_t = 1200, value_name = "SECONDS")]
    pub timeout: u64,
    /// Do not drain the workers: `fly deploy` replaces their Machines with runs in progress
    /// (they are killed). A pool a killed deploy left paused is still resumed.
    #[arg(long, conflicts_with_all = ["drain_timeout", "on_drain_timeout"])]
    pub no_drain: bool,
    /// How long to wait for the flow runs in progress on the workers' pools before their
    /// Machines are replaced, e.g. `20m` (default: fly.toml `[env] XTASK_DRAIN_TIMEOUT`, else 10m).
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// What to do when runs are still in progress at --drain-timeout: `abort` deploys nothing
    /// and resumes the pools; `proceed` rolls anyway (those runs are killed). Never asks.
    #[arg(long, value_enum, default_value_t = OnDrainTimeoutArg::Abort, value_name = "WHAT")]
    pub on_drain_timeout: OnDrainTimeoutArg,
    /// With --local: the port for a newly started Prefect server (default: a free one).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// How long verify waits for the worker Machines to run the new image and for a worker
    /// to be online in every work pool the yaml uses.
    #[arg(
        long,
        default_value_t = 120,
        value_name = "SECONDS",
        conflicts_with = "local"
    )]
    pub verify_timeout: u64,
    /// After the release, run this deployment now (`name` or `flow/name`, optionally
    /// `=PARAMS_JSON`) and fail the deploy unless it completes; repeatable. On failure the
    /// run's link and the tail of its logs are printed.
    #[arg(long, value_name = "DEPLOYMENT[=PARAMS_JSON]", value_parser = SmokeSpec::parse, conflicts_with = "local")]
    pub smoke: Vec<SmokeSpec>,
}

/// `--on-drain-timeout` ([`OnDrainTimeout`] as a flag value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnDrainTimeoutArg {
    /// Roll anyway; the runs still in progress are killed with their Machines.
    Proceed,
    /// Deploy nothing and resume the pools.
    Abort,
}

impl From<OnDrainTimeoutArg> for OnDrainTimeout {
    fn from(arg: OnDrainTimeoutArg) -> OnDrainTimeout {
        match arg {
            OnDrainTimeoutArg::Proceed => OnDrainTimeout::Proceed,
            OnDrainTimeoutArg::Abort => OnDrainTimeout::Abort,
        }
    }
}

/// How register-flows talks to Prefect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Engine {
    /// Native REST client: validate, plan, write only what changed, roll back on failure.
    #[default]
    Native,
    /// Shell out to `prefect --no-prompt deploy --all` (the old bash setup's behaviour).
    PrefectCli,
}

/// What register-flows prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Nothing: the human text on stderr is the whole report.
    #[default]
    Text,
    /// The JSON document.
    Json,
    /// The Markdown report.
    Markdown,
}

#[derive(Debug, Args, Clone)]
pub struct RegisterFlowsArgs {
    /// Compute the plan against the live server and print it; write nothing.
    #[arg(long, conflicts_with = "check")]
    pub dry_run: bool,
    /// Drift check: exit 0 when the server matches the yaml, 2 when it differs, 1 on error.
    #[arg(long)]
    pub check: bool,
    /// Delete deployments this project created earlier that are no longer in the yaml.
    #[arg(long)]
    pub prune: bool,
    /// Print the plan/result as JSON on stdout (human text goes to stderr); `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// What stdout gets besides the human text on stderr: nothing (`text`), the JSON document
    /// (docs/register-flows-json.md) or a Markdown report for a pull-request comment or a CI
    /// job summary (docs/register-flows-markdown.md).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Registration engine.
    #[arg(long, value_enum, default_value_t = Engine::Native)]
    pub engine: Engine,
    /// How many writes may run at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Only the deployments this pattern names (repeatable), as `prefect deploy -n` matches:
    /// a deployment name or `flow/deployment` (the flow as the entrypoint's function name),
    /// `*` matching anything. Only they are planned, checked and written, and `--prune` deletes
    /// nothing else; a pattern that matches nothing is an error.
    #[arg(short = 'n', long = "name", value_name = "PATTERN", value_parser = NamePattern::parse)]
    pub names: Vec<NamePattern>,
    /// How long to wait for another run of this project that is writing to the server (its
    /// lock, docs/register-flows.md) before giving up.
    #[arg(long, default_value_t = xtask::sync::lock::LOCK_WAIT.as_secs(), value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub lock_wait: u64,
}

impl RegisterFlowsArgs {
    /// `--json` is `--format json`.
    pub fn output(&self) -> OutputFormat {
        if self.json {
            OutputFormat::Json
        } else {
            self.format
        }
    }

    /// What the sync may do (the flags that are not about output or engine).
    pub fn sync_options(&self) -> SyncOptions {
        SyncOptions {
            dry_run: self.dry_run,
            check: self.check,
            prune: self.prune,
            concurrency: self.concurrency,
            run_steps: true,
            selection: Selection::new(self.names.clone()),
            // The command reads it from the image (`commands::register_flows`).
            release: None,
            lock_wait: std::time::Duration::from_secs(self.lock_wait),
        }
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Which environment to roll back.
    #[arg(long, value_enum, default_value_t = EnvArg::Prod)]
    pub env: EnvArg,
    /// Fly app name (default: `app` in fly.toml).
    #[arg(long, env = "FLY_APP")]
    pub app: Option<String>,
    /// The release to go back to: `vN` (Fly's release version), its image tag (the release
    /// recorded on deployments) or its image reference.
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<String>,
    /// Show the release, the plan and the commands; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Give up on `fly deploy` after this many seconds.
    #[arg(long, default_value_t = 1200, value_name = "SECONDS")]
    pub timeout: u64,
    /// Timeout for the release command (default: fly.toml's, else 5m).
    #[arg(long, value_name = "DURATION")]
    pub release_command_timeout: Option<String>,
    /// Do not drain the workers first (runs in progress are killed with their Machines).
    #[arg(long, conflicts_with = "drain_timeout")]
    pub no_drain: bool,
    /// How long to wait for runs in progress before the Machines are replaced.
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// As deploy's --verify-timeout.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub verify_timeout: u64,
    /// As deploy's --smoke (repeatable).
    #[arg(long, value_name = "DEPLOYMENT[=PARAMS_JSON]", value_parser = SmokeSpec::parse)]
    pub smoke: Vec<SmokeSpec>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Which environment to look at.
    #[arg(long, value_enum, default_value_t = EnvArg::Prod)]
    pub env: EnvArg,
    /// Fly app name (default: `app` in fly.toml).
    #[arg(long, env = "FLY_APP")]
    pub app: Option<String>,
    /// The JSON document on stdout instead of the screen (docs/status-json.md).
    #[arg(long)]
    pub json: bool,
    /// Only the deployments this pattern names (repeatable; as register-flows -n).
    #[arg(short = 'n', long = "name", value_name = "PATTERN", value_parser = NamePattern::parse)]
    pub names: Vec<NamePattern>,
}

#[derive(Debug, Args, Clone)]
pub struct CheckSecretsArgs {
    /// Fly app whose secrets to check (default: `app` in fly.toml).
    #[arg(long, env = "FLY_APP")]
    pub app: Option<String>,
    /// Check only this machine's environment and the Prefect server; skip Fly.
    #[arg(long)]
    pub local_only: bool,
    /// Print the checklist as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct BuildImageArgs {
    /// Print the build command without running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Build with Fly's builder and push to its registry (`fly deploy --build-only --push`).
    #[arg(long)]
    pub fly: bool,
    /// Fly app name for --fly (default: `app` in fly.toml).
    #[arg(long, env = "FLY_APP")]
    pub app: Option<String>,
    /// Image repository to tag (default: the app name).
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// Target platform.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Extra build argument, repeatable.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// For engines without a registry (tests): build the Dockerfile's base images locally from
    /// Debian packages and this machine's Rust toolchain, with crates and wheels prepared here,
    /// and pass them as RUST_IMAGE/PYTHON_IMAGE. Cached; rebuilt only when missing.
    #[arg(long, conflicts_with = "fly")]
    pub local_bases: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {}

#[derive(Debug, Args)]
pub struct LockPythonArgs {}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip the tidy gate (`cargo fmt --check`, `cargo clippy -D warnings`) while iterating on a
    /// test; CI always runs it.
    #[arg(long)]
    pub no_tidy: bool,
    /// Which passes run. `all`: the suite against the SQLite servers, then the sync, fault and
    /// concurrency suites against a production-shaped server (PostgreSQL + Redis, several API
    /// workers; skipped with the reason when their programs are missing, and when cargo test
    /// arguments are given). `production`: only that pass (with the cargo test arguments, if any).
    #[arg(long, value_enum, default_value_t = TestPasses::All)]
    pub servers: TestPasses,
    /// Arguments passed through to `cargo test` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestPasses {
    All,
    Sqlite,
    Production,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How many deployments the generated project has.
    #[arg(long, default_value_t = 51)]
    pub deployments: usize,
    /// xtask runs per scenario (the median is reported; default 5); the Prefect CLI runs once.
    /// With --compile: clean builds per subject (default 1) and edits (at least 3).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Seconds to wait before each measured command (both engines), before waiting for the
    /// server to go idle.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Measure against this server instead of a throwaway local one (e.g. a Postgres-backed
    /// server). Only the bench's own deployments are deleted; its idleness cannot be watched,
    /// so give a longer --settle (10 s or more).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// Measure against a throwaway production-shaped server: PostgreSQL + Redis (Debian's
    /// packages), several API workers, the services in their own process (docs/benchmark.md).
    #[arg(long, conflicts_with = "api_url")]
    pub production_server: bool,
    /// Measure compile cost instead: clean build against the card's dependency set, an edit's
    /// rebuild, the test build (docs/compile-time.md).
    #[arg(long, conflicts_with_all = ["deployments", "settle", "api_url", "production_server"])]
    pub compile: bool,
    /// With --compile: the image too (source-only rebuild, binary size, start-up); needs Docker.
    #[arg(long, requires = "compile")]
    pub image: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_each_subcommand() {
        for args in [
            &["xtask", "deploy", "--local"][..],
            &["xtask", "deploy", "--env", "dev", "--dry-run"],
            &[
                "xtask",
                "deploy",
                "--drain-timeout",
                "20m",
                "--on-drain-timeout",
                "proceed",
            ],
            &["xtask", "deploy", "--no-drain"],
            &[
                "xtask",
                "deploy",
                "--smoke",
                "d",
                "--smoke",
                "f/d={\"n\": 1}",
                "--verify-timeout",
                "30",
            ],
            &["xtask", "register-flows", "-n", "a", "--name", "f/*"],
            &["xtask", "status", "--json", "--env", "dev", "-n", "a"],
            &["xtask", "rollback", "--to", "v3", "--dry-run"],
            &["xtask", "register-flows", "--dry-run", "--json"],
            &["xtask", "register-flows", "--check", "--prune"],
            &[
                "xtask",
                "register-flows",
                "--dry-run",
                "--format",
                "markdown",
            ],
            &["xtask", "--prefect-file", "x.yaml", "register-flows"],
            &["xtask", "register-flows", "--prefect-file", "x.yaml"],
            &["xtask", "check-secrets", "--local-only"],
            &["xtask", "build-image", "--dry-run"],
            &[
                "xtask",
                "build-image",
                "--local-bases",
                "--build-arg",
                "A=b",
            ],
            &["xtask", "down"],
            &[
                "xtask",
                "github",
                "plan-comment",
                "--pr",
                "7",
                "--body-file",
                "p.md",
                "--repo",
                "o/r",
            ],
            &[
                "xtask",
                "github",
                "drift-issue",
                "--env",
                "dev",
                "--check-exit",
                "2",
                "--body-file",
                "d.md",
                "--repo",
                "o/r",
            ],
            &["xtask", "test", "--", "--nocapture"],
            &["xtask", "test", "--no-tidy", "--", "parity::"],
            &["xtask", "bench"],
            &[
                "xtask",
                "bench",
                "--api-url",
                "http://127.0.0.1:4200/api",
                "--settle",
                "10",
            ],
            &["xtask", "bench", "--compile", "--image", "--runs", "2"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn plain_register_flows_means_the_default_sync() {
        let Command::RegisterFlows(parsed) = Cli::try_parse_from(["xtask", "register-flows"])
            .unwrap()
            .command
        else {
            panic!("register-flows parses as RegisterFlows");
        };
        assert_eq!(parsed.sync_options(), SyncOptions::default());
        assert_eq!(
            (parsed.output(), parsed.engine),
            (OutputFormat::Text, Engine::Native)
        );
    }

    #[test]
    fn rejects_bad_input() {
        for args in [
            &["xtask"][..],
            &["xtask", "register-flows", "--no-such-flag"],
            &["xtask", "register-flows", "--dry-run", "--check"],
            &["xtask", "register-flows", "--engine", "bogus"],
            &["xtask", "register-flows", "--json", "--format", "markdown"],
            &["xtask", "register-flows", "--format", "html"],
            &["xtask", "deploy", "--env", "staging"],
            &["xtask", "bench", "--image"],
            &[
                "xtask",
                "bench",
                "--compile",
                "--api-url",
                "http://127.0.0.1:4200/api",
            ],
            &["xtask", "register-flows", "--prefect-file"],
            &["xtask", "register-flows", "--concurrency", "0"],
            &["xtask", "build-image", "--fly", "--local-bases"],
            &["xtask", "deploy", "--no-drain", "--drain-timeout", "5m"],
            &["xtask", "deploy", "--on-drain-timeout", "ask"],
            &["xtask", "deploy", "--local", "--smoke", "d"],
            &["xtask", "deploy", "--smoke", "d=[1]"],
            &["xtask", "register-flows", "-n", "a/b/c"],
            &[
                "xtask",
                "register-flows",
                "--engine",
                "prefect-cli",
                "-n",
                "",
            ],
        ] {
            assert!(
                Cli::try_parse_from(args).is_err(),
                "{args:?} should be rejected"
            );
        }
    }
}
