//! Building the production image from the project's Dockerfile: with the local docker CLI, or
//! with Fly's builder (`fly deploy --build-only --push`). Tags come from the git commit, labels
//! follow the OCI annotation keys. The argv construction is pure and unit-tested; running it is
//! [`build_image`].
//!
//! [`local_bases`] builds the Dockerfile's base images on an engine without a registry (tests).

pub mod local_bases;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::project::Env;
use crate::project::Project;
use crate::sys::env_vars::EnvVars;
use crate::sys::process::{self, git, shell_line};
use crate::sys::redact::mask_url_credentials;

/// Fly's registry; flyctl lets `FLY_REGISTRY_HOST` change it, and so do we.
const FLY_REGISTRY_HOST: &str = "registry.fly.io";

/// How to build the image. `Default` is a local docker build for Fly's platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Print the exact command instead of running it.
    pub dry_run: bool,
    /// `--platform` of the docker build (Fly runs linux/amd64).
    pub platform: String,
    /// `KEY=VALUE` (or `KEY`, taken from the environment by docker), passed as `--build-arg`.
    pub build_args: Vec<String>,
    /// Image repository of the local tag (default: the Fly app name).
    pub repository: Option<String>,
    /// Fly app (default: `app` in fly.toml).
    pub fly_app: Option<String>,
    /// The Fly config Fly's builder reads (default: fly.toml; a dev deploy passes fly-dev.toml).
    pub fly_config: Option<PathBuf>,
    /// Build with Fly's builder and push to Fly's registry instead of building locally.
    pub via_fly: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            dry_run: false,
            platform: "linux/amd64".to_string(),
            build_args: Vec::new(),
            repository: None,
            fly_app: None,
            fly_config: None,
            via_fly: false,
        }
    }
}

/// The commit the image is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitState {
    /// Full commit hash (40 hex digits).
    pub commit: String,
    /// The working tree differs from the commit (tracked changes or untracked files).
    pub dirty: bool,
}

/// Builds the image and returns its reference (`<repository>:<tag>` locally,
/// `registry.fly.io/<app>:<tag>` with `via_fly`). With `dry_run`, prints the command and
/// returns the reference it would produce.
pub fn build_image(project: &Project, opts: &BuildOptions) -> Result<String> {
    for arg in &opts.build_args {
        validate_build_arg(arg)?;
    }
    // Git runs with this snapshot of our environment (one per build).
    let env = EnvVars::capture();
    let git = git_state(&project.root, &env)?;
    let tag = image_tag(&git);
    let app = match &opts.fly_app {
        Some(app) => app.clone(),
        None => crate::fly::target(project, Env::Prod, None)?.app,
    };
    let registry = std::env::var("FLY_REGISTRY_HOST")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| FLY_REGISTRY_HOST.to_string());
    let repository = opts.repository.clone().unwrap_or_else(|| app.clone());
    let image_ref = if opts.via_fly {
        format!("{registry}/{app}:{tag}")
    } else {
        validate_repository(&repository)?;
        format!("{repository}:{tag}")
    };
    // The release the image is, baked into it for its release command (docs/releases.md).
    let build_args = release_build_args(&opts.build_args, &image_ref, &git.commit);

    if opts.via_fly {
        let fly = if opts.dry_run {
            find_fly().unwrap_or_else(|_| PathBuf::from("fly"))
        } else {
            find_fly()?
        };
        let config = opts
            .fly_config
            .clone()
            .unwrap_or_else(|| project.fly_toml());
        let argv = fly_build_argv(&app, &config, &tag, &build_args);
        run_or_print(&fly, &argv, &project.root, opts.dry_run)
            .context("`fly deploy --build-only` failed; see its output above")?;
        return Ok(image_ref);
    }

    let created = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let source = git_source_url(&project.root, &env);
    let labels = oci_labels(&git, source.as_deref(), &created);
    let argv = docker_build_argv(&BuildCommand {
        dockerfile: &project.dockerfile(),
        context: &project.root,
        image_ref: &image_ref,
        platform: &opts.platform,
        labels: &labels,
        build_args: &build_args,
    });
    if opts.dry_run {
        let docker = find_docker().unwrap_or_else(|_| PathBuf::from("docker"));
        run_or_print(&docker, &argv, &project.root, true)?;
        return Ok(image_ref);
    }
    let docker = find_docker()?;
    ensure_engine(&docker)?;
    run_or_print(&docker, &argv, &project.root, false).with_context(|| {
        format!(
            "building {image_ref} from {} failed",
            project.dockerfile().display()
        )
    })?;
    Ok(image_ref)
}

/// The release a build of this checkout will be (its image tag; docs/releases.md), for deploy's
/// plan before the image exists; None outside a git checkout (the build then fails anyway).
pub(crate) fn planned_release(root: &Path, env: &EnvVars) -> Option<crate::sync::release::Release> {
    let git = git_state(root, env).ok()?;
    Some(crate::sync::release::Release {
        id: image_tag(&git),
        image: None,
        commit: Some(git.commit),
    })
}

// ---- pure parts ----------------------------------------------------------------------------

/// The caller's build arguments plus `XTASK_IMAGE` and `XTASK_COMMIT`, which the Dockerfile
/// writes to the release file (`sync::release::RELEASE_FILE`); a caller's own value wins.
pub(crate) fn release_build_args(given: &[String], image_ref: &str, commit: &str) -> Vec<String> {
    let mut args = given.to_vec();
    for (key, value) in [("XTASK_IMAGE", image_ref), ("XTASK_COMMIT", commit)] {
        if !given.iter().any(|arg| arg.split('=').next() == Some(key)) {
            args.push(format!("{key}={value}"));
        }
    }
    args
}

/// `<short sha>` or `<short sha>-dirty`: the same commit always gives the same tag, and an
/// image built from uncommitted changes can never be mistaken for the commit's image.
pub(crate) fn image_tag(git: &GitState) -> String {
    let short = git.commit.get(..12).unwrap_or(&git.commit);
    if git.dirty {
        format!("{short}-dirty")
    } else {
        short.to_string()
    }
}

/// OCI annotation labels (`org.opencontainers.image.*`). `source` is omitted when unknown.
pub(crate) fn oci_labels(
    git: &GitState,
    source: Option<&str>,
    created: &str,
) -> Vec<(String, String)> {
    let mut labels = vec![
        (
            "org.opencontainers.image.revision".to_string(),
            git.commit.clone(),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            created.to_string(),
        ),
    ];
    if let Some(source) = source {
        labels.push((
            "org.opencontainers.image.source".to_string(),
            source.to_string(),
        ));
    }
    labels
}

/// The inputs of a local `docker build`.
#[derive(Debug, Clone)]
pub(crate) struct BuildCommand<'a> {
    pub dockerfile: &'a Path,
    pub context: &'a Path,
    pub image_ref: &'a str,
    pub platform: &'a str,
    pub labels: &'a [(String, String)],
    pub build_args: &'a [String],
}

/// The argv (without the program) of `docker build`.
pub(crate) fn docker_build_argv(cmd: &BuildCommand) -> Vec<String> {
    let mut argv = vec![
        "build".to_string(),
        "--platform".to_string(),
        cmd.platform.to_string(),
        "--file".to_string(),
        cmd.dockerfile.display().to_string(),
        "--tag".to_string(),
        cmd.image_ref.to_string(),
    ];
    for (key, value) in cmd.labels {
        argv.push("--label".to_string());
        argv.push(format!("{key}={value}"));
    }
    for arg in cmd.build_args {
        argv.push("--build-arg".to_string());
        argv.push(arg.clone());
    }
    argv.push(cmd.context.display().to_string());
    argv
}

/// The argv (without the program) of the build through Fly: the image lands in Fly's registry
/// as `<app>:<label>`, ready for `fly deploy --image`.
pub(crate) fn fly_build_argv(
    app: &str,
    fly_toml: &Path,
    label: &str,
    build_args: &[String],
) -> Vec<String> {
    let mut argv = vec![
        "deploy".to_string(),
        "--build-only".to_string(),
        "--push".to_string(),
        "--image-label".to_string(),
        label.to_string(),
        "--app".to_string(),
        app.to_string(),
        "--config".to_string(),
        fly_toml.display().to_string(),
    ];
    for arg in build_args {
        argv.push("--build-arg".to_string());
        argv.push(arg.clone());
    }
    argv
}

/// A build arg is `KEY=VALUE` or `KEY` (docker then reads it from the environment).
pub(crate) fn validate_build_arg(arg: &str) -> Result<()> {
    let key = arg.split_once('=').map_or(arg, |(key, _)| key);
    let valid = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        bail!("invalid --build-arg {arg:?}: expected KEY=VALUE with KEY made of letters, digits and _");
    }
    Ok(())
}

/// Docker repository names are lowercase path components (`name`, `host:port/a/b`).
fn validate_repository(repository: &str) -> Result<()> {
    let valid = !repository.is_empty()
        && repository
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c))
        && !repository.ends_with(':')
        && !repository.starts_with(['/', '.', '-']);
    if !valid {
        bail!("invalid image repository {repository:?}: use lowercase letters, digits, '.', '_', '-' and '/'");
    }
    Ok(())
}

/// The remote as a browsable source URL for the `source` label: `git@github.com:o/r.git`,
/// `ssh://git@github.com/o/r.git` and `https://user:token@github.com/o/r.git` all give
/// `https://github.com/o/r` (credentials never kept). Local paths and `file://` give `None`.
pub(crate) fn normalize_source_url(remote: &str) -> Option<String> {
    let remote = remote.trim();
    let (scheme, host, path) = if let Some(rest) = remote.strip_prefix("git@") {
        let (host, path) = rest.split_once(':')?;
        ("https", host, path)
    } else {
        let (scheme, rest) = remote.split_once("://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        match scheme {
            "https" | "http" => (scheme, host, path),
            // The ssh port says nothing about the web address.
            "ssh" | "git" => ("https", host.split(':').next().unwrap_or(host), path),
            _ => return None,
        }
    };
    if host.is_empty() {
        return None;
    }
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    Some(format!("{scheme}://{host}/{path}"))
}

// ---- edges -----------------------------------------------------------------------------------

/// The docker CLI on PATH.
pub fn find_docker() -> Result<PathBuf> {
    which::which("docker").context("the `docker` CLI is not on PATH: install Docker (or use --fly to build with Fly's builder)")
}

fn find_fly() -> Result<PathBuf> {
    crate::fly::flyctl_on_path()
        .context("neither `fly` nor `flyctl` is on PATH: install flyctl to build with --fly")
}

/// Fails with an actionable message when the docker CLI cannot talk to an engine.
pub fn ensure_engine(docker: &Path) -> Result<()> {
    let sh = process::shell()?;
    let format = "{{.ServerVersion}}";
    let output = process::capture(cmd!(sh, "{docker} info --format {format}"))
        .with_context(|| format!("cannot run {}", docker.display()))?;
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr);
        let detail = detail
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no detail")
            .trim();
        bail!(
            "no Docker engine is reachable (`docker info` failed: {}); start Docker, or point DOCKER_HOST at an engine, \
             or build with Fly's builder (--fly)",
            mask_url_credentials(detail)
        );
    }
    Ok(())
}

/// Whether the docker CLI is present and an engine answers (used by tests to decide whether to skip).
pub fn engine_available() -> bool {
    find_docker()
        .map(|docker| ensure_engine(&docker).is_ok())
        .unwrap_or(false)
}

/// The commit of `root` and whether the tree is dirty.
pub(crate) fn git_state(root: &Path, env: &EnvVars) -> Result<GitState> {
    let commit = git(root, &["rev-parse", "--verify", "HEAD"], env).context(
        "cannot determine the git commit for the image tag (is this a git checkout with a commit?)",
    )?;
    let commit = commit.trim().to_string();
    if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("`git rev-parse HEAD` printed {commit:?}, not a commit hash");
    }
    let status = git(root, &["status", "--porcelain"], env)
        .context("cannot read the git status for the dirty marker")?;
    Ok(GitState {
        commit,
        dirty: !status.trim().is_empty(),
    })
}

fn git_source_url(root: &Path, env: &EnvVars) -> Option<String> {
    git(root, &["remote", "get-url", "origin"], env)
        .ok()
        .and_then(|url| normalize_source_url(&url))
}

/// Runs `program argv` in `dir` with the output on stderr (stdout stays free for the image
/// reference), or only prints the command line.
fn run_or_print(program: &Path, argv: &[String], dir: &Path, dry_run: bool) -> Result<()> {
    let line = shell_line(program, argv);
    if dry_run {
        println!("{line}");
        return Ok(());
    }
    eprintln!("+ {line}");
    let sh = process::shell()?;
    sh.change_dir(dir);
    let status = process::status_to_stderr(cmd!(sh, "{program} {argv...}"))
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !status.success() {
        bail!("{} exited with {status}", program.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn git(dirty: bool) -> GitState {
        GitState {
            commit: SHA.to_string(),
            dirty,
        }
    }

    #[test]
    fn tag_is_short_sha_with_dirty_marker() {
        assert_eq!(image_tag(&git(false)), "0123456789ab");
        assert_eq!(image_tag(&git(true)), "0123456789ab-dirty");
        // A short commit string (never from git, but no panic either).
        assert_eq!(
            image_tag(&GitState {
                commit: "abc".into(),
                dirty: false
            }),
            "abc"
        );
    }

    #[test]
    fn labels_carry_revision_created_and_source() {
        let labels = oci_labels(
            &git(true),
            Some("https://github.com/o/r"),
            "2026-01-02T03:04:05Z",
        );
        assert_eq!(
            labels,
            vec![
                (
                    "org.opencontainers.image.revision".to_string(),
                    SHA.to_string()
                ),
                (
                    "org.opencontainers.image.created".to_string(),
                    "2026-01-02T03:04:05Z".to_string()
                ),
                (
                    "org.opencontainers.image.source".to_string(),
                    "https://github.com/o/r".to_string()
                ),
            ]
        );
        assert_eq!(oci_labels(&git(false), None, "t").len(), 2);
    }

    #[test]
    fn docker_argv_is_complete_and_ordered() {
        let labels = oci_labels(&git(false), None, "2026-01-02T03:04:05Z");
        let build_args = vec!["RUST_IMAGE=r:1".to_string(), "HTTP_PROXY".to_string()];
        let argv = docker_build_argv(&BuildCommand {
            dockerfile: Path::new("/p/Dockerfile"),
            context: Path::new("/p"),
            image_ref: "captionacc-api:0123456789ab",
            platform: "linux/amd64",
            labels: &labels,
            build_args: &build_args,
        });
        assert_eq!(
            argv,
            [
                "build",
                "--platform",
                "linux/amd64",
                "--file",
                "/p/Dockerfile",
                "--tag",
                "captionacc-api:0123456789ab",
                "--label",
                &format!("org.opencontainers.image.revision={SHA}"),
                "--label",
                "org.opencontainers.image.created=2026-01-02T03:04:05Z",
                "--build-arg",
                "RUST_IMAGE=r:1",
                "--build-arg",
                "HTTP_PROXY",
                "/p",
            ]
        );
    }

    #[test]
    fn fly_argv_builds_only_and_pushes_with_label() {
        let argv = fly_build_argv(
            "captionacc-api",
            Path::new("/p/fly.toml"),
            "0123456789ab-dirty",
            &["A=b".into()],
        );
        assert_eq!(
            argv,
            [
                "deploy",
                "--build-only",
                "--push",
                "--image-label",
                "0123456789ab-dirty",
                "--app",
                "captionacc-api",
                "--config",
                "/p/fly.toml",
                "--build-arg",
                "A=b",
            ]
        );
    }

    #[test]
    fn the_release_is_passed_as_build_arguments_unless_given() {
        assert_eq!(
            release_build_args(&["A=1".into()], "reg/app:abc", "abc123"),
            vec!["A=1", "XTASK_IMAGE=reg/app:abc", "XTASK_COMMIT=abc123"]
        );
        assert_eq!(
            release_build_args(&["XTASK_IMAGE=mine".into()], "reg/app:abc", "abc123"),
            vec!["XTASK_IMAGE=mine", "XTASK_COMMIT=abc123"]
        );
    }

    #[test]
    fn build_args_are_validated() {
        for ok in ["A=b", "RUST_IMAGE=rust:1-slim", "A=", "HTTP_PROXY", "X=a=b"] {
            assert!(validate_build_arg(ok).is_ok(), "{ok}");
        }
        for bad in ["", "=x", "A B=c", "-A=b", "ä=1"] {
            assert!(validate_build_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repositories_are_validated() {
        for ok in ["captionacc-api", "registry.example:5000/team/app", "a_b.c"] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Caps", "a b", "/abs", "a:", "-x"] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_urls_are_normalized_without_credentials() {
        let expected = Some("https://github.com/o/r".to_string());
        for remote in [
            "git@github.com:o/r.git\n",
            "https://github.com/o/r.git",
            "https://user:tok3n@github.com/o/r.git",
            "ssh://git@github.com:22/o/r.git",
            "https://github.com/o/r/",
        ] {
            assert_eq!(normalize_source_url(remote), expected, "{remote}");
        }
        // An @ in the path is not a credential separator.
        assert_eq!(
            normalize_source_url("https://host/o/r@v1").as_deref(),
            Some("https://host/o/r@v1")
        );
        assert_eq!(
            normalize_source_url("http://u:p@host/r").as_deref(),
            Some("http://host/r")
        );
        for local in [
            "/work/wt/docker",
            "../repo",
            "file:///srv/repo.git",
            "https://",
        ] {
            assert_eq!(normalize_source_url(local), None, "{local}");
        }
    }

    #[test]
    fn default_options_target_fly_platform() {
        let opts = BuildOptions::default();
        assert_eq!(opts.platform, "linux/amd64");
        assert!(!opts.via_fly && !opts.dry_run);
    }
}
