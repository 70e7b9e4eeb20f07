//! The Dockerfile's base images, built locally for an engine that cannot pull (no registry) and
//! containers that cannot download packages during `docker build` (`build-image --local-bases`).
//!
//! Production pulls `rust:1-slim-bookworm` and `python:3.11-slim-bookworm`; here they are
//! stand-ins with the same shape, passed through the Dockerfile's `RUST_IMAGE`/`PYTHON_IMAGE`
//! build args, so the Dockerfile itself is the production one:
//!
//! 1. `debian`: a debootstrap'ed bookworm rootfs, `docker import`ed (needs root and debootstrap).
//! 2. `python`: debian + Debian's python3.11 and venv; `rust`: debian + gcc + this machine's Rust
//!    toolchain (Debian's rustc is too old for the lockfile), copied in from the active sysroot.
//! 3. The build's downloads, baked into thin derived images because containers here cannot
//!    download during `docker build` (HTTPS to the package registries goes through a
//!    TLS-intercepting proxy the images do not trust): a wheel directory of app/requirements.lock
//!    (`PIP_NO_INDEX` + `PIP_FIND_LINKS`), downloaded inside the Python base with the host's CA
//!    bundle, and `cargo vendor` output from the host with a source replacement in `CARGO_HOME`.
//!
//! Tags end in a hash of their recipe and input file (pin, lockfile), so a change gives new
//! images while unchanged ones are reused.
//!
//! Every image is built only when its tag is missing from the engine.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use xshell::{cmd, Cmd};

use crate::local::python_lock;
use crate::sys::process::{self, shell};

/// Bump when the debootstrap recipe changes (the derived images hash their own recipes).
const DEBIAN_RECIPE: &str = "r1";
const REPO_PREFIX: &str = "xtask-local";
const SUITE: &str = "bookworm";
/// The Python of the production base image; the wheels are downloaded for it.
const PYTHON_SERIES: &str = "3.11";
const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image tags to pass as the Dockerfile's base images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBases {
    pub rust_image: String,
    pub python_image: String,
}

impl LocalBases {
    /// `--build-arg` values selecting these images in the Dockerfile.
    pub fn build_args(&self) -> Vec<String> {
        vec![
            format!("RUST_IMAGE={}", self.rust_image),
            format!("PYTHON_IMAGE={}", self.python_image),
        ]
    }
}

/// Every tag of the chain, derived from the inputs (pure, so it is unit-tested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseTags {
    pub debian: String,
    pub python: String,
    pub rust: String,
    pub python_offline: String,
    pub rust_offline: String,
}

impl BaseTags {
    /// Each tag ends in a hash of the recipe that builds it (its generated Dockerfile, which
    /// names the parent tag) and of its input file, so a change anywhere up the chain, in the
    /// pin or in the lockfile gives new images while unchanged ones are reused.
    pub(crate) fn new(rust_version: &str, requirements: &[u8], lockfile: &[u8]) -> BaseTags {
        let debian = format!("{REPO_PREFIX}/debian:{SUITE}-{DEBIAN_RECIPE}");
        let python = format!(
            "{REPO_PREFIX}/python:{PYTHON_SERIES}-{SUITE}-{}",
            short_hash(&[python_dockerfile(&debian).as_bytes()])
        );
        let rust = format!(
            "{REPO_PREFIX}/rust:{rust_version}-{SUITE}-{}",
            short_hash(&[rust_dockerfile(&debian).as_bytes()])
        );
        let python_offline = format!(
            "{REPO_PREFIX}/python:{PYTHON_SERIES}-{SUITE}-wheels-{}",
            short_hash(&[python_offline_dockerfile(&python).as_bytes(), requirements])
        );
        let rust_offline = format!(
            "{REPO_PREFIX}/rust:{rust_version}-{SUITE}-vendor-{}",
            short_hash(&[
                rust_offline_dockerfile(&rust).as_bytes(),
                VENDORED_CARGO_CONFIG.as_bytes(),
                lockfile,
            ])
        );
        BaseTags {
            debian,
            python,
            rust,
            python_offline,
            rust_offline,
        }
    }
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        // Length-prefixed, so that moving bytes between parts changes the hash.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// `rustc 1.95.0 (59807616e 2026-04-14)` → `1.95.0`.
pub(crate) fn parse_rustc_version(output: &str) -> Option<String> {
    let version = output.split_whitespace().nth(1)?;
    let valid = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c));
    valid.then(|| version.to_string())
}

fn python_dockerfile(debian: &str) -> String {
    format!(
        "FROM {debian}\n\
         ENV DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update \\\n \
         && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 ca-certificates \\\n \
         && rm -rf /var/lib/apt/lists/* \\\n \
         && python3 --version\n\
         CMD [\"python3\"]\n"
    )
}

fn rust_dockerfile(debian: &str) -> String {
    format!(
        "FROM {debian}\n\
         ENV DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update \\\n \
         && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \\\n \
         && rm -rf /var/lib/apt/lists/*\n\
         COPY bin/rustc bin/cargo /usr/local/rust/bin/\n\
         COPY lib /usr/local/rust/lib\n\
         ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:{PATH_ENV}\n\
         RUN mkdir -p /usr/local/cargo && rustc --version && cargo --version\n"
    )
}

fn python_offline_dockerfile(python: &str) -> String {
    format!(
        "FROM {python} AS download\n\
         COPY requirements.lock host-ca.crt /tmp/\n\
         RUN python3 -m venv /tmp/pip \\\n \
         && if [ -s /tmp/host-ca.crt ]; then export PIP_CERT=/tmp/host-ca.crt; fi \\\n \
         && /tmp/pip/bin/pip download --disable-pip-version-check --only-binary=:all: \\\n \
         --require-hashes --requirement /tmp/requirements.lock --dest /wheels\n\
         \n\
         FROM {python}\n\
         COPY --from=download /wheels /opt/wheelhouse\n\
         ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/wheelhouse\n"
    )
}

fn rust_offline_dockerfile(rust: &str) -> String {
    format!(
        "FROM {rust}\n\
         COPY vendor /usr/local/cargo/vendor\n\
         COPY cargo-config.toml /usr/local/cargo/config.toml\n"
    )
}

/// Cargo reads this from `CARGO_HOME`: crates come from the vendored copy, never the network.
const VENDORED_CARGO_CONFIG: &str = "[source.crates-io]\n\
replace-with = \"vendored-sources\"\n\
\n\
[source.vendored-sources]\n\
directory = \"/usr/local/cargo/vendor\"\n\
\n\
[net]\n\
offline = true\n";

/// Builds whatever image of the chain is missing and returns the two base images to use.
/// `work_dir` holds the rootfs and the prepared inputs while they are needed.
pub fn ensure(docker: &Path, root: &Path, work_dir: &Path) -> Result<LocalBases> {
    let tags = tags_for(root)?;
    let sysroot = rust_sysroot(root)?;
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;

    build_if_missing(docker, &tags.debian, || {
        build_debian(docker, &tags.debian, work_dir)
    })?;
    build_if_missing(docker, &tags.python, || {
        let context = fresh_dir(work_dir, "python")?;
        write(
            &context.join("Dockerfile"),
            &python_dockerfile(&tags.debian),
        )?;
        docker_build_dir(docker, &tags.python, &context)?;
        remove_dir(&context);
        Ok(())
    })?;
    build_if_missing(docker, &tags.rust, || {
        build_rust(docker, &tags.rust, &tags.debian, &sysroot, work_dir)
    })?;
    build_if_missing(docker, &tags.python_offline, || {
        let context = fresh_dir(work_dir, "python-offline")?;
        prepare_wheel_download(root, &context)?;
        write(
            &context.join("Dockerfile"),
            &python_offline_dockerfile(&tags.python),
        )?;
        docker_build_dir(docker, &tags.python_offline, &context)?;
        remove_dir(&context);
        Ok(())
    })?;
    build_if_missing(docker, &tags.rust_offline, || {
        let context = fresh_dir(work_dir, "rust-offline")?;
        vendor_crates(root, &context.join("vendor"))?;
        write(&context.join("cargo-config.toml"), VENDORED_CARGO_CONFIG)?;
        write(
            &context.join("Dockerfile"),
            &rust_offline_dockerfile(&tags.rust),
        )?;
        docker_build_dir(docker, &tags.rust_offline, &context)?;
        remove_dir(&context);
        Ok(())
    })?;
    Ok(LocalBases {
        rust_image: tags.rust_offline,
        python_image: tags.python_offline,
    })
}

/// Runs `build` unless `tag` is already on the engine, and says which happened and how long it took.
fn build_if_missing(docker: &Path, tag: &str, build: impl FnOnce() -> Result<()>) -> Result<()> {
    if image_exists(docker, tag)? {
        eprintln!("base image {tag}: cached");
        return Ok(());
    }
    let started = std::time::Instant::now();
    build()?;
    eprintln!("base image {tag}: built in {:.0?}", started.elapsed());
    Ok(())
}

/// The tags `ensure` would use, without building anything (for `--dry-run`).
pub fn tags_for(root: &Path) -> Result<BaseTags> {
    let requirements = read(&root.join(python_lock::LOCK_FILE))?;
    let lockfile = read(&root.join("Cargo.lock"))?;
    let sh = shell()?;
    sh.change_dir(root);
    let rustc = rustc_program();
    let rustc = output(cmd!(sh, "{rustc} --version"), &rustc)
        .context("cannot run `rustc --version` to pick the toolchain for the builder base image")?;
    let version = parse_rustc_version(&rustc)
        .with_context(|| format!("unexpected `rustc --version` output {rustc:?}"))?;
    Ok(BaseTags::new(&version, &requirements, &lockfile))
}

fn build_debian(docker: &Path, tag: &str, work_dir: &Path) -> Result<()> {
    let debootstrap = which::which("debootstrap").context(
        "building the base images needs `debootstrap` (Debian/Ubuntu: apt-get install debootstrap)",
    )?;
    let sh = shell()?;
    let uid = output(cmd!(sh, "id -u"), Path::new("id")).context("cannot run `id -u`")?;
    if uid.trim() != "0" {
        bail!("debootstrap needs root to build the {tag} base image: run as root (e.g. in CI) or build it once with sudo");
    }
    let rootfs = fresh_dir(work_dir, "rootfs")?;
    eprintln!("building base image {tag}: debootstrap {SUITE} (about half a minute)");
    // Default mirror unless overridden (air-gapped CI points this at its mirror).
    let mirror = std::env::var_os("XTASK_DEBIAN_MIRROR");
    let debootstrap_cmd = cmd!(
        sh,
        "{debootstrap} --variant=minbase {SUITE} {rootfs} {mirror...}"
    );
    run(debootstrap_cmd, true).context("debootstrap failed")?;

    // tar | docker import: the rootfs becomes an image without an intermediate archive.
    let path = format!("ENV PATH={PATH_ENV}");
    let (tar_status, import) = process::pipe(
        cmd!(sh, "tar -C {rootfs} --numeric-owner -c ."),
        cmd!(
            sh,
            "{docker} import --change {path} --change 'CMD [\"bash\"]' - {tag}"
        ),
        ["tar", "docker import"],
    )?;
    remove_dir(&rootfs);
    if !tar_status.success() || !import.success() {
        bail!("importing the debootstrap rootfs as {tag} failed (tar: {tar_status}, docker import: {import})");
    }
    Ok(())
}

/// The toolchain goes in as a tar stream built from the sysroot (bin/rustc, bin/cargo, lib),
/// so nothing is copied on the host and docs/clippy stay out of the image.
fn build_rust(
    docker: &Path,
    tag: &str,
    debian: &str,
    sysroot: &Path,
    work_dir: &Path,
) -> Result<()> {
    let context = fresh_dir(work_dir, "rust")?;
    write(&context.join("Dockerfile"), &rust_dockerfile(debian))?;
    for part in ["bin/rustc", "bin/cargo", "lib"] {
        if !sysroot.join(part).exists() {
            bail!("the Rust toolchain at {} has no {part}", sysroot.display());
        }
    }
    eprintln!(
        "building base image {tag} with the toolchain at {}",
        sysroot.display()
    );
    let sh = shell()?;
    let (tar_status, build) = process::pipe(
        cmd!(
            sh,
            "tar -C {sysroot} -c bin/rustc bin/cargo lib -C {context} Dockerfile"
        ),
        cmd!(sh, "{docker} build --tag {tag} -"),
        ["tar", "docker build"],
    )?;
    remove_dir(&context);
    if !tar_status.success() || !build.success() {
        bail!("building {tag} failed (tar: {tar_status}, docker build: {build})");
    }
    Ok(())
}

fn docker_build_dir(docker: &Path, tag: &str, context: &Path) -> Result<()> {
    eprintln!("building base image {tag}");
    let sh = shell()?;
    run(cmd!(sh, "{docker} build --tag {tag} {context}"), true)
        .with_context(|| format!("building the base image {tag} failed"))
}

/// The context of the wheel image: the lock and the host's CA bundle. The wheels are downloaded
/// inside the Python base itself, so that dependency markers (`python_full_version < "3.11.3"`)
/// and wheel tags are evaluated for the image's interpreter (`pip download --python-version` on
/// the host still evaluates markers against the host's Python). The host's CA bundle lets that
/// step trust what the host trusts (a TLS-intercepting proxy); it stays in the download stage.
fn prepare_wheel_download(root: &Path, context: &Path) -> Result<()> {
    let requirements = root.join(python_lock::LOCK_FILE);
    std::fs::copy(&requirements, context.join("requirements.lock"))
        .with_context(|| format!("cannot copy {}", requirements.display()))?;
    let bundle = match host_ca_bundle() {
        Some(path) => read(&path)?,
        None => Vec::new(),
    };
    std::fs::write(context.join("host-ca.crt"), bundle)
        .context("cannot write the CA bundle into the build context")
}

/// The CA bundle the host's tools use, when there is one.
fn host_ca_bundle() -> Option<PathBuf> {
    ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"]
        .iter()
        .filter_map(|name| std::env::var_os(name).map(PathBuf::from))
        .chain(std::iter::once(PathBuf::from(
            "/etc/ssl/certs/ca-certificates.crt",
        )))
        .find(|path| path.is_file())
}

fn vendor_crates(root: &Path, dest: &Path) -> Result<()> {
    eprintln!("vendoring the crates of Cargo.lock for the image");
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let sh = shell()?;
    sh.change_dir(root);
    let vendor = cmd!(
        sh,
        "{cargo} vendor --locked --versioned-dirs --quiet {dest}"
    );
    run(vendor.ignore_stdout(), false).context("`cargo vendor` failed")
}

fn rustc_program() -> PathBuf {
    std::env::var_os("RUSTC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("rustc"))
}

fn rust_sysroot(root: &Path) -> Result<PathBuf> {
    let sh = shell()?;
    sh.change_dir(root);
    let rustc = rustc_program();
    let sysroot = output(cmd!(sh, "{rustc} --print sysroot"), &rustc)
        .context("cannot run `rustc --print sysroot`")?;
    Ok(PathBuf::from(sysroot.trim()))
}

fn image_exists(docker: &Path, tag: &str) -> Result<bool> {
    let sh = shell()?;
    let format = "{{.Id}}";
    let inspect = cmd!(sh, "{docker} image inspect --format {format} {tag}");
    let output = process::capture(inspect.ignore_stdout().ignore_stderr())
        .context("cannot run docker image inspect")?;
    Ok(output.status.success())
}

fn fresh_dir(work_dir: &Path, name: &str) -> Result<PathBuf> {
    let dir = work_dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove the leftover {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Best effort: a leftover work directory is recreated by `fresh_dir` next time.
fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Runs a step of the chain, its stdout on our stderr (`to_stderr`) or as the command set it.
fn run(cmd: impl Into<std::process::Command>, to_stderr: bool) -> Result<()> {
    let cmd = cmd.into();
    let program = cmd.get_program().to_owned();
    let status = if to_stderr {
        process::status_to_stderr(cmd)
    } else {
        process::status(cmd)
    }
    .with_context(|| format!("cannot run {program:?}"))?;
    if !status.success() {
        bail!("{program:?} exited with {status}");
    }
    Ok(())
}

/// The stdout of a step that must succeed; `program` names it in errors.
fn output(cmd: Cmd<'_>, program: &Path) -> Result<String> {
    let out = process::capture(cmd).with_context(|| format!("cannot run {program:?}"))?;
    if !out.status.success() {
        bail!(
            "{program:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_inputs() {
        let a = BaseTags::new("1.95.0", b"prefect==3.9.1\n", b"lock-a");
        assert_eq!(a.debian, "xtask-local/debian:bookworm-r1");
        assert!(a.python.starts_with("xtask-local/python:3.11-bookworm-"));
        assert!(a.rust.starts_with("xtask-local/rust:1.95.0-bookworm-"));
        assert!(a
            .python_offline
            .starts_with("xtask-local/python:3.11-bookworm-wheels-"));
        assert!(a
            .rust_offline
            .starts_with("xtask-local/rust:1.95.0-bookworm-vendor-"));
        // Another toolchain gives another builder chain.
        assert_ne!(
            a.rust_offline,
            BaseTags::new("1.96.0", b"prefect==3.9.1\n", b"lock-a").rust_offline
        );

        // A new pin changes only the wheel image; a new lockfile only the vendored one.
        let b = BaseTags::new("1.95.0", b"prefect==3.9.2\n", b"lock-a");
        assert_ne!(a.python_offline, b.python_offline);
        assert_eq!(a.rust_offline, b.rust_offline);
        let c = BaseTags::new("1.95.0", b"prefect==3.9.1\n", b"lock-b");
        assert_eq!(a.python_offline, c.python_offline);
        assert_ne!(a.rust_offline, c.rust_offline);
        // Same inputs, same tags: the cache is reused.
        assert_eq!(a, BaseTags::new("1.95.0", b"prefect==3.9.1\n", b"lock-a"));
    }

    #[test]
    fn build_args_select_the_offline_images() {
        let bases = LocalBases {
            rust_image: "r:1".into(),
            python_image: "p:2".into(),
        };
        assert_eq!(bases.build_args(), ["RUST_IMAGE=r:1", "PYTHON_IMAGE=p:2"]);
    }

    #[test]
    fn rustc_version_is_parsed() {
        assert_eq!(
            parse_rustc_version("rustc 1.95.0 (59807616e 2026-04-14)\n").as_deref(),
            Some("1.95.0")
        );
        assert_eq!(
            parse_rustc_version("rustc 1.96.0-nightly (abc 2026-05-01)").as_deref(),
            Some("1.96.0-nightly")
        );
        assert_eq!(parse_rustc_version("rustc"), None);
        assert_eq!(parse_rustc_version("rustc 1.0/../x"), None);
    }

    #[test]
    fn generated_dockerfiles_build_on_the_given_base() {
        assert!(python_dockerfile("d:1").starts_with("FROM d:1\n"));
        assert!(rust_dockerfile("d:1").contains("COPY lib /usr/local/rust/lib"));
        assert!(python_offline_dockerfile("p:1").contains("PIP_NO_INDEX=1"));
        assert!(rust_offline_dockerfile("r:1").contains("/usr/local/cargo/config.toml"));
        let config: toml::Table = VENDORED_CARGO_CONFIG.parse().unwrap();
        assert_eq!(
            config["source"]["crates-io"]["replace-with"].as_str(),
            Some("vendored-sources")
        );
    }
}
