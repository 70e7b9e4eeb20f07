//! The project-local Python venv with the pinned Prefect (`.venv/`): the pin is
//! `app/requirements.txt`, what is installed is its lock `app/requirements.lock` (every package
//! by version and hash, `pip --require-hashes`; [`super::python_lock`]).
//!
//! The hot path (venv already there) spawns no process: it compares a stamp file holding the
//! hash of the lock with the current file, and reads the installed Prefect version
//! from the `prefect-<version>.dist-info` directory name.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use xshell::cmd;

use super::python_lock;
use crate::sys::process::{self, shell};

/// Prefect 3.9 requires Python >= 3.11 (its `Requires-Python`).
pub(crate) const MIN_PYTHON: (u32, u32) = (3, 11);

/// Written into the venv after a successful install.
const STAMP_FILE: &str = ".xtask-stamp";

/// A venv with `bin/prefect` and `bin/python`.
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
    pub fn prefect(&self) -> PathBuf {
        self.bin("prefect")
    }
    pub(crate) fn python(&self) -> PathBuf {
        self.bin("python")
    }
}

/// What [`ensure`] has to do to a venv.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Ready: stamp and installed Prefect match the requirements.
    Reuse,
    /// The interpreter is there but the packages are missing or out of date: `pip install -r`.
    Install(String),
    /// No usable interpreter: create the venv (again).
    Create,
}

/// What is on disk, gathered without spawning anything.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub has_python: bool,
    pub has_prefect: bool,
    pub stamp: Option<String>,
    pub installed_prefect: Vec<String>,
}

/// The pinned version in a requirements file: the `prefect==X` line (comments and extras ignored).
pub(crate) fn pinned_prefect_version(requirements: &str) -> Option<String> {
    requirements.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        let (name, version) = line.split_once("==")?;
        let name = name.split('[').next().unwrap_or("").trim();
        let version = version.split(';').next().unwrap_or("").trim();
        (name.eq_ignore_ascii_case("prefect") && !version.is_empty()).then(|| version.to_string())
    })
}

/// The stamp content for a requirements file: changes whenever the file does.
pub(crate) fn stamp_text(requirements: &str) -> String {
    let digest = Md5::digest(requirements.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("requirements-md5 {hex}\n")
}

/// Decides what to do from what is on disk. Pure.
pub(crate) fn decide(observed: &Observed, expected_stamp: &str, pinned: &str) -> Action {
    if !observed.has_python {
        return Action::Create;
    }
    if !observed.has_prefect {
        return Action::Install("prefect is not installed".into());
    }
    if !observed.installed_prefect.iter().any(|v| v == pinned) {
        let found = if observed.installed_prefect.is_empty() {
            "an unknown version".to_string()
        } else {
            observed.installed_prefect.join(", ")
        };
        return Action::Install(format!("prefect {found} is installed, {pinned} is pinned"));
    }
    if observed.stamp.as_deref() != Some(expected_stamp) {
        return Action::Install(format!(
            "{} changed since the last install",
            python_lock::LOCK_FILE
        ));
    }
    Action::Reuse
}

/// Versions from `prefect-<version>.dist-info` directory names.
pub(crate) fn dist_info_versions<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|name| name.strip_prefix("prefect-")?.strip_suffix(".dist-info"))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// `Python 3.11.7` → (3, 11).
pub(crate) fn parse_python_version(output: &str) -> Option<(u32, u32)> {
    let version = output.trim().strip_prefix("Python ")?;
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

fn observe(dir: &Path) -> Observed {
    let mut installed = Vec::new();
    // lib/python3.X/site-packages/prefect-<v>.dist-info
    if let Ok(libs) = std::fs::read_dir(dir.join("lib")) {
        for lib in libs.flatten() {
            if let Ok(entries) = std::fs::read_dir(lib.path().join("site-packages")) {
                let names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                installed.extend(dist_info_versions(names.iter().map(String::as_str)));
            }
        }
    }
    Observed {
        has_python: dir.join("bin/python").exists(),
        has_prefect: dir.join("bin/prefect").exists(),
        stamp: std::fs::read_to_string(dir.join(STAMP_FILE)).ok(),
        installed_prefect: installed,
    }
}

/// Makes `dir` a venv with the lock of the repository at `root` installed, creating or updating
/// it as needed (with pip's progress on the terminal), and returns it. Fast when nothing changed.
/// A lock that does not match the pin is an error before anything is installed.
pub fn ensure(dir: &Path, root: &Path) -> Result<Venv> {
    let pin = root.join(python_lock::PIN_FILE);
    let requirements = root.join(python_lock::LOCK_FILE);
    let text =
        std::fs::read_to_string(&pin).with_context(|| format!("cannot read {}", pin.display()))?;
    let pinned = pinned_prefect_version(&text).with_context(|| {
        format!(
            "{} does not pin prefect (expected a line `prefect==X.Y.Z`)",
            pin.display()
        )
    })?;
    python_lock::check(root)?;
    let lock = std::fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let expected_stamp = stamp_text(&lock);
    let venv = Venv {
        dir: dir.to_path_buf(),
    };

    let mut action = decide(&observe(dir), &expected_stamp, &pinned);
    if action == Action::Reuse {
        return Ok(venv);
    }
    let mut host_pip = None;
    if action == Action::Create {
        eprintln!(
            "==> creating the Python venv {} (prefect {pinned})",
            dir.display()
        );
        host_pip = create(dir)?;
        action = Action::Install("new venv".into());
    }
    if let Action::Install(why) = &action {
        eprintln!(
            "==> installing {} into {} ({why})",
            requirements.display(),
            dir.display()
        );
        install(&venv, &requirements, HASHED, host_pip.as_deref())?;
    }
    let after = observe(dir);
    if !after.has_prefect || !after.installed_prefect.contains(&pinned) {
        bail!(
            "pip finished but {} does not have prefect {pinned}; remove {} and run again",
            dir.display(),
            dir.display()
        );
    }
    std::fs::write(dir.join(STAMP_FILE), &expected_stamp)
        .with_context(|| format!("cannot write {}", dir.join(STAMP_FILE).display()))?;
    Ok(venv)
}

/// pip's options for the app venv: every file checked against the lock's hashes.
const HASHED: &[&str] = &["--require-hashes"];

/// pip's options for a tools venv: every wheel pinned by hash, no source builds, nothing
/// pulled in that the file does not pin.
const HASHED_BINARIES: &[&str] = &["--require-hashes", "--only-binary=:all:", "--no-deps"];

/// Makes `dir` a venv with the tools of `requirements` (every line pinned by version and hash)
/// and checks that each of `programs` is in its `bin/`. Reinstalls when the file changed (the
/// same stamp as the app venv's); fast when nothing did.
pub fn ensure_tools(dir: &Path, requirements: &Path, programs: &[&str]) -> Result<Venv> {
    let text = std::fs::read_to_string(requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let expected_stamp = stamp_text(&text);
    let venv = Venv {
        dir: dir.to_path_buf(),
    };
    let ready = |venv: &Venv| programs.iter().all(|p| venv.bin(p).is_file());
    let stamp = std::fs::read_to_string(dir.join(STAMP_FILE)).ok();
    if stamp.as_deref() == Some(expected_stamp.as_str()) && ready(&venv) {
        return Ok(venv);
    }
    let mut host_pip = None;
    if !venv.python().exists() {
        eprintln!("==> creating the tools venv {}", dir.display());
        host_pip = create(dir)?;
    }
    eprintln!(
        "==> installing {} into {} (pinned by hash)",
        requirements.display(),
        dir.display()
    );
    install(&venv, requirements, HASHED_BINARIES, host_pip.as_deref())?;
    if let Some(missing) = programs.iter().find(|p| !venv.bin(p).is_file()) {
        bail!(
            "pip finished but {} has no bin/{missing}; remove {} and run again",
            dir.display(),
            dir.display()
        );
    }
    std::fs::write(dir.join(STAMP_FILE), &expected_stamp)
        .with_context(|| format!("cannot write {}", dir.join(STAMP_FILE).display()))?;
    Ok(venv)
}

/// Makes `dir` a package directory for `venv`'s interpreter holding `requirements` (pinned by
/// hash, no dependencies: they must already be in the venv), for a process that gets `dir` on
/// PYTHONPATH; the venv itself stays exactly its lock. Reinstalls when the file changed.
pub fn ensure_overlay(venv: &Venv, dir: &Path, requirements: &Path) -> Result<()> {
    let text = std::fs::read_to_string(requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let expected_stamp = stamp_text(&text);
    let stamp = std::fs::read_to_string(dir.join(STAMP_FILE)).ok();
    if stamp.as_deref() == Some(expected_stamp.as_str()) {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    let target = dir
        .to_str()
        .with_context(|| format!("{} is not UTF-8", dir.display()))?;
    eprintln!(
        "==> installing {} into {} (pinned by hash)",
        requirements.display(),
        dir.display()
    );
    let mut options = HASHED_BINARIES.to_vec();
    options.extend(["--target", target]);
    install(venv, requirements, &options, None)?;
    std::fs::write(dir.join(STAMP_FILE), &expected_stamp)
        .with_context(|| format!("cannot write {}", dir.join(STAMP_FILE).display()))
}

/// The interpreter used to create the venv: `XTASK_PYTHON`, else `python3` on PATH.
fn host_python() -> Result<PathBuf> {
    if let Some(python) = std::env::var_os("XTASK_PYTHON").filter(|p| !p.is_empty()) {
        return which::which(&python).map_err(|_| {
            anyhow::anyhow!(
                "XTASK_PYTHON={} is not an executable Python interpreter",
                python.to_string_lossy()
            )
        });
    }
    which::which("python3").map_err(|_| {
        anyhow::anyhow!(
            "python3 is not on PATH: install Python {}.{}+ with venv support \
             (Debian/Ubuntu: `apt install python3 python3-venv`, macOS: `brew install python`), \
             or set XTASK_PYTHON to an interpreter",
            MIN_PYTHON.0,
            MIN_PYTHON.1
        )
    })
}

/// Creates the venv. Returns the host interpreter when the venv has no pip of its own
/// (Debian's python3 without python3-venv lacks ensurepip; the host's pip installs into it).
fn create(dir: &Path) -> Result<Option<PathBuf>> {
    let python = host_python()?;
    let sh = shell()?;
    let version = process::capture(cmd!(sh, "{python} --version"))
        .with_context(|| format!("cannot run {}", python.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&version.stdout),
        String::from_utf8_lossy(&version.stderr)
    );
    match parse_python_version(&text) {
        Some(v) if v >= MIN_PYTHON => {}
        Some((major, minor)) => bail!(
            "{} is Python {major}.{minor}; prefect needs Python {}.{}+ (install a newer python3 or set XTASK_PYTHON)",
            python.display(),
            MIN_PYTHON.0,
            MIN_PYTHON.1
        ),
        None => bail!("{} --version printed {:?}; is it a Python interpreter?", python.display(), text.trim()),
    }

    let out = process::capture(venv_command(&sh, &python, dir, true))
        .with_context(|| format!("cannot run {} -m venv", python.display()))?;
    if out.status.success() {
        return Ok(None);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !stderr.contains("ensurepip") {
        bail!(
            "`{} -m venv {}` failed:\n{}",
            python.display(),
            dir.display(),
            stderr.trim()
        );
    }
    // No ensurepip: a venv without pip, filled by the host's pip if it has one.
    let host_has_pip = process::capture(cmd!(sh, "{python} -m pip --version"))
        .is_ok_and(|out| out.status.success());
    let bare = process::capture(venv_command(&sh, &python, dir, false));
    match bare {
        Ok(out) if out.status.success() && host_has_pip => Ok(Some(python)),
        _ => bail!(
            "cannot create a venv: {} has no `ensurepip` and no pip. Install the venv module \
             (Debian/Ubuntu: `apt install python3-venv`) and run again",
            python.display()
        ),
    }
}

/// `python -m venv --clear [--without-pip] DIR` (`--clear` repairs a half-created venv).
fn venv_command<'a>(
    sh: &'a xshell::Shell,
    python: &Path,
    dir: &Path,
    with_pip: bool,
) -> xshell::Cmd<'a> {
    let without_pip = (!with_pip).then_some("--without-pip");
    cmd!(sh, "{python} -m venv --clear {without_pip...} {dir}")
}

/// `pip install [options] -r requirements` into the venv, output on the terminal (progress).
fn pip_install_command(
    sh: &xshell::Shell,
    venv: &Venv,
    requirements: &Path,
    options: &[&str],
    host_python: Option<&Path>,
) -> Command {
    let mut install = vec!["install", "--disable-pip-version-check"];
    install.extend_from_slice(options);
    install.push("-r");
    let cmd = match host_python {
        Some(host) => {
            let target = venv.python();
            cmd!(
                sh,
                "{host} -m pip --python {target} {install...} {requirements}"
            )
        }
        None => {
            let python = venv.python();
            cmd!(sh, "{python} -m pip {install...} {requirements}")
        }
    };
    cmd.into()
}

fn install(venv: &Venv, requirements: &Path, options: &[&str], host: Option<&Path>) -> Result<()> {
    // A venv made without pip earlier (see `create`) still needs the host's pip.
    let fallback;
    let host = match host {
        Some(p) => Some(p),
        None if !venv.bin("pip").exists() => {
            fallback = host_python()?;
            Some(fallback.as_path())
        }
        None => None,
    };
    // pip's progress goes to stderr with ours; stdout stays for the command's result.
    let sh = shell()?;
    let status =
        process::status_to_stderr(pip_install_command(&sh, venv, requirements, options, host))
            .context("cannot run pip")?;
    if !status.success() {
        bail!(
            "`pip install -r {}` failed ({status}); see pip's output above. Check the network access to the \
             package index (pip honours PIP_INDEX_URL and proxy variables), then run again",
            requirements.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pinned_version() {
        assert_eq!(
            pinned_prefect_version("prefect==3.9.1\n").as_deref(),
            Some("3.9.1")
        );
        assert_eq!(
            pinned_prefect_version("# deps\nhttpx==0.27\n  prefect[aws] == 3.9.1  # pinned\n")
                .as_deref(),
            Some("3.9.1")
        );
        assert_eq!(
            pinned_prefect_version("prefect==3.9.1 ; python_version>'3'").as_deref(),
            Some("3.9.1")
        );
        assert_eq!(
            pinned_prefect_version("prefect-aws==0.5\nprefect>=3\n"),
            None
        );
        assert_eq!(pinned_prefect_version("# prefect==3.9.1\n"), None);
        assert_eq!(pinned_prefect_version("prefect==\n"), None);
    }

    #[test]
    fn stamp_follows_the_file_content() {
        let a = stamp_text("prefect==3.9.1\n");
        assert_eq!(a, stamp_text("prefect==3.9.1\n"));
        assert_ne!(a, stamp_text("prefect==3.9.2\n"));
        assert!(a.starts_with("requirements-md5 ") && a.len() == "requirements-md5 ".len() + 33);
    }

    #[test]
    fn decides_from_what_is_on_disk() {
        let stamp = stamp_text("prefect==3.9.1\n");
        let ready = Observed {
            has_python: true,
            has_prefect: true,
            stamp: Some(stamp.clone()),
            installed_prefect: vec!["3.9.1".into()],
        };
        assert_eq!(decide(&ready, &stamp, "3.9.1"), Action::Reuse);
        assert_eq!(
            decide(&Observed::default(), &stamp, "3.9.1"),
            Action::Create
        );
        let no_prefect = Observed {
            has_prefect: false,
            ..ready_clone(&ready)
        };
        assert!(matches!(
            decide(&no_prefect, &stamp, "3.9.1"),
            Action::Install(_)
        ));
        let old = Observed {
            installed_prefect: vec!["3.8.0".into()],
            ..ready_clone(&ready)
        };
        assert_eq!(
            decide(&old, &stamp, "3.9.1"),
            Action::Install("prefect 3.8.0 is installed, 3.9.1 is pinned".into())
        );
        let changed = Observed {
            stamp: Some(stamp_text("prefect==3.9.1\nhttpx\n")),
            ..ready_clone(&ready)
        };
        assert!(matches!(
            decide(&changed, &stamp, "3.9.1"),
            Action::Install(_)
        ));
        let unstamped = Observed {
            stamp: None,
            ..ready_clone(&ready)
        };
        assert!(matches!(
            decide(&unstamped, &stamp, "3.9.1"),
            Action::Install(_)
        ));
    }

    fn ready_clone(o: &Observed) -> Observed {
        Observed {
            has_python: o.has_python,
            has_prefect: o.has_prefect,
            stamp: o.stamp.clone(),
            installed_prefect: o.installed_prefect.clone(),
        }
    }

    #[test]
    fn finds_prefect_dist_info_only() {
        let names = [
            "prefect-3.9.1.dist-info",
            "prefect_aws-0.5.0.dist-info",
            "prefect",
            "prefect-.dist-info",
            "pip-24.0.dist-info",
        ];
        assert_eq!(dist_info_versions(names), vec!["3.9.1".to_string()]);
    }

    #[test]
    fn parses_python_versions() {
        assert_eq!(parse_python_version("Python 3.11.7\n"), Some((3, 11)));
        assert_eq!(parse_python_version("Python 3.13.0rc1"), Some((3, 13)));
        assert_eq!(parse_python_version("Python 3.9"), Some((3, 9)));
        assert_eq!(parse_python_version("pypy"), None);
        assert!(parse_python_version("Python 3.10.2").unwrap() < MIN_PYTHON);
    }

    #[test]
    fn builds_the_commands() {
        let venv = Venv {
            dir: PathBuf::from("/r/.venv"),
        };
        let sh = shell().unwrap();
        let cmd = pip_install_command(&sh, &venv, Path::new("/r/app/requirements.txt"), &[], None);
        assert_eq!(cmd.get_program(), "/r/.venv/bin/python");
        let args = crate::sys::process::args_of(&cmd);
        assert_eq!(
            args,
            [
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-r",
                "/r/app/requirements.txt"
            ]
        );
        let cmd = pip_install_command(
            &sh,
            &venv,
            Path::new("req.txt"),
            HASHED_BINARIES,
            Some(Path::new("/usr/bin/python3")),
        );
        assert_eq!(cmd.get_program(), "/usr/bin/python3");
        let args = crate::sys::process::args_of(&cmd);
        assert_eq!(&args[..4], ["-m", "pip", "--python", "/r/.venv/bin/python"]);
        assert_eq!(
            &args[4..],
            [
                "install",
                "--disable-pip-version-check",
                "--require-hashes",
                "--only-binary=:all:",
                "--no-deps",
                "-r",
                "req.txt"
            ]
        );
        let cmd = venv_command(&sh, Path::new("python3"), Path::new("/r/.venv"), false);
        assert_eq!(
            cmd.to_string(),
            "python3 -m venv --clear --without-pip /r/.venv"
        );
        let cmd = venv_command(&sh, Path::new("python3"), Path::new("/r/.venv"), true);
        assert_eq!(cmd.to_string(), "python3 -m venv --clear /r/.venv");
    }
}
