//! The logic behind `cargo xtask`; the CLI and its commands are the binary (main.rs), which this
//! library never sees. docs/architecture.md says how the parts fit.

pub mod bench; // cargo xtask bench: both engines side by side on one server; compile cost; ratios
pub mod deploy; // cargo xtask deploy: secrets → validate and plan → build → fly deploy → verify
pub mod docker; // image builds: docker or Fly's builder, locally built base images
pub mod fly; // flyctl and fly.toml, the release Machine's environment, check-secrets' checklist
pub mod github; // CI on GitHub through `gh`: the plan comment on a pull request, the drift issue
pub mod local; // deploy --local: venv, throwaway Prefect server, process workers, smoke run
pub mod prefect; // Prefect's model (pure: yaml, templates, schedules, flows → schemas) + steps, API client
pub mod project; // where things are: project root, prefect file, prod/dev, state and venv dirs
pub mod status; // cargo xtask status: deployments, pools, Fly groups at a glance (report pure)
pub mod sync; // register-flows: desired state and plan (pure); load, server reads, apply (I/O); report
pub mod sys; // plumbing: stage runner, redaction, exit codes, the environment snapshot
