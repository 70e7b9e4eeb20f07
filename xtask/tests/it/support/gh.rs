//! The GitHub tests' world: the stand-in `gh` (`fake_gh.rs`, compiled once) on PATH, and the
//! repository state it serves (pull requests, issues, comments as files), seeded and read back.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::bin::{run, xtask, Outcome};

/// The repository the stand-in serves.
pub const REPO: &str = "acme/flows";

/// Compiles `fake_gh.rs` (next to this file) once and returns the binary.
pub fn fake_gh() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| super::compile_stand_in("fake_gh.rs", "gh"))
        .clone()
}

/// A repository's issues and comments, and a bin directory with `gh` = the stand-in.
pub struct GhWorld {
    pub root: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    bin: PathBuf,
    extra_env: Vec<(String, String)>,
}

/// An issue or pull request as the stand-in keeps it.
#[derive(Debug, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
}

/// A comment as the stand-in keeps it.
#[derive(Debug, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub user: String,
}

impl GhWorld {
    pub fn new(test: &str) -> GhWorld {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("gh-tests")
            .join(test);
        let _ = std::fs::remove_dir_all(&root);
        let bin = root.join("bin");
        let state = root.join("state");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(state.join("issues")).unwrap();
        std::fs::create_dir_all(state.join("comments")).unwrap();
        std::os::unix::fs::symlink(fake_gh(), bin.join("gh")).unwrap();
        GhWorld {
            log: root.join("gh-calls.log"),
            root,
            state,
            bin,
            extra_env: Vec::new(),
        }
    }

    /// Adds an issue (or a pull request) as someone else opened it.
    pub fn seed_issue(&self, number: u64, title: &str, body: &str, pull_request: bool) {
        let dir = self.state.join(format!("issues/{number}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("title"), title).unwrap();
        std::fs::write(dir.join("body"), body).unwrap();
        std::fs::write(dir.join("state"), "open").unwrap();
        if pull_request {
            std::fs::write(dir.join("pull_request"), "").unwrap();
        }
    }

    /// Adds a comment by `user`.
    pub fn seed_comment(&self, id: u64, issue: u64, user: &str, body: &str) {
        let dir = self.state.join(format!("comments/{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("issue"), issue.to_string()).unwrap();
        std::fs::write(dir.join("body"), body).unwrap();
        std::fs::write(dir.join("user"), user).unwrap();
    }

    pub fn issues(&self) -> Vec<Issue> {
        self.numbers("issues")
            .into_iter()
            .map(|number| {
                let read = |f: &str| self.read(&format!("issues/{number}/{f}"));
                Issue {
                    number,
                    title: read("title"),
                    body: read("body"),
                    state: read("state"),
                }
            })
            .collect()
    }

    /// The comments on issue or pull request `issue`, oldest first.
    pub fn comments(&self, issue: u64) -> Vec<Comment> {
        self.numbers("comments")
            .into_iter()
            .map(|id| {
                let read = |f: &str| self.read(&format!("comments/{id}/{f}"));
                Comment {
                    id,
                    issue: read("issue").parse().unwrap(),
                    body: read("body"),
                    user: read("user"),
                }
            })
            .filter(|c| c.issue == issue)
            .collect()
    }

    /// The calls made so far, `METHOD path` each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Sets a variable for every command this world runs.
    pub fn env(&mut self, name: &str, value: &str) -> &mut GhWorld {
        self.extra_env.push((name.into(), value.into()));
        self
    }

    /// Writes `text` to a file in the world and returns its path (a report for `--body-file`).
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `cargo xtask <args>` as a workflow step runs it: only PATH (the stand-in first), HOME,
    /// GH_TOKEN and the repository Actions sets, plus [`GhWorld::env`].
    pub fn run(&self, args: &[&str]) -> Outcome {
        let mut cmd = xtask();
        cmd.args(args)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin.display()))
            .env("HOME", &self.root)
            .env("GH_TOKEN", "ghs_SENTINELgithubtoken")
            .env("GITHUB_REPOSITORY", REPO)
            .env("FAKE_GH_REPO", REPO)
            .env("FAKE_GH_STATE", &self.state)
            .env("FAKE_GH_LOG", &self.log);
        for (name, value) in &self.extra_env {
            cmd.env(name, value);
        }
        let started = std::time::Instant::now();
        let output = run(&mut cmd);
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: started.elapsed(),
            timed_out: false,
        }
    }

    fn numbers(&self, dir: &str) -> Vec<u64> {
        let mut out: Vec<u64> = std::fs::read_dir(self.state.join(dir))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.state.join(path)).unwrap_or_default()
    }
}
