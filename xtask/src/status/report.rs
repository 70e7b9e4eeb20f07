//! What `cargo xtask status` found, its health (exit 0 healthy, 2 degraded, 1 error), and its two
//! renderings: the screen (colour only when asked) and the `--json` document
//! (docs/status-json.md)*.

use serde_json::{json, Value};

use crate::sys::report::code;

/// The JSON document's schema version.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// One deployment of the yaml, as the server has it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentStatus {
    pub flow_name: String,
    pub name: String,
    pub sync: SyncState,
    pub paused: Option<bool>,
    /// The release recorded on it (docs/releases.md).
    pub release: Option<String>,
    /// Expected start of its next scheduled run.
    pub next_run: Option<String>,
    pub last_run: Option<RunSummary>,
}

impl DeploymentStatus {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.flow_name, self.name)
    }
}

/// The deployment against the yaml.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncState {
    InSync,
    /// On the server, differing in these top-level fields.
    Drifted(Vec<String>),
    /// In the yaml, not on the server.
    Missing,
}

/// A flow run, briefly.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub id: String,
    /// COMPLETED, FAILED, CRASHED, RUNNING, …
    pub state_type: String,
    pub state_name: String,
    /// When it started (or was expected to).
    pub at: String,
}

impl RunSummary {
    pub fn failed(&self) -> bool {
        matches!(self.state_type.as_str(), "FAILED" | "CRASHED")
    }
}

/// One work pool the yaml (or fly.toml's workers) uses.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStatus {
    pub name: String,
    /// None: the pool does not exist on the server.
    pub paused: Option<bool>,
    pub workers_online: Vec<String>,
}

/// One Fly process group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStatus {
    pub group: String,
    /// Runs a Prefect worker (fly.toml `[processes]`).
    pub worker: bool,
    pub machines: Vec<MachineStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MachineStatus {
    pub id: String,
    pub state: String,
    pub image: String,
    /// The Fly release that created it, and that release's image/status when Fly lists it.
    pub release_version: Option<String>,
    pub release_status: Option<String>,
}

/// Everything `status` read, and what it could not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusReport {
    pub env: String,
    pub app: String,
    pub server: String,
    pub prefect_file: String,
    pub deployments: Vec<DeploymentStatus>,
    pub pools: Vec<PoolStatus>,
    pub groups: Vec<GroupStatus>,
    /// What could not be read (the report is then an error, never "healthy").
    pub errors: Vec<String>,
}

impl StatusReport {
    /// Why the system is degraded, one line each; empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.deployments {
            match &d.sync {
                SyncState::InSync => {}
                SyncState::Drifted(fields) => out.push(format!(
                    "{} differs from {} ({})",
                    d.full_name(),
                    self.prefect_file,
                    fields.join(", ")
                )),
                SyncState::Missing => out.push(format!(
                    "{} is in {} but not on the server",
                    d.full_name(),
                    self.prefect_file
                )),
            }
            if let Some(run) = d.last_run.as_ref().filter(|r| r.failed()) {
                out.push(format!(
                    "{}: last run {} ({})",
                    d.full_name(),
                    run.state_name,
                    run.at
                ));
            }
        }
        for p in &self.pools {
            match p.paused {
                None => out.push(format!("work pool {} does not exist", p.name)),
                Some(_) if p.workers_online.is_empty() => {
                    out.push(format!("work pool {} has no worker online", p.name))
                }
                _ => {}
            }
        }
        for g in self.groups.iter().filter(|g| g.worker) {
            if !g.machines.iter().any(|m| m.state == "started") {
                out.push(format!("process group {} has no started Machine", g.group));
            }
        }
        out
    }

    /// 1 when something could not be read, 2 when degraded, 0 when healthy.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            code::ERROR
        } else if !self.problems().is_empty() {
            code::DRIFT
        } else {
            code::OK
        }
    }

    fn verdict(&self) -> &'static str {
        match self.exit_code() {
            code::OK => "healthy",
            code::DRIFT => "degraded",
            _ => "error",
        }
    }

    /// The `--json` document (docs/status-json.md).
    pub fn to_json(&self) -> Value {
        json!({
            "schema_version": STATUS_SCHEMA_VERSION,
            "status": self.verdict(),
            "env": self.env,
            "app": self.app,
            "server": self.server,
            "prefect_file": self.prefect_file,
            "errors": self.errors,
            "problems": self.problems(),
            "deployments": self.deployments.iter().map(|d| json!({
                "full_name": d.full_name(),
                "flow_name": d.flow_name,
                "name": d.name,
                "sync": match &d.sync {
                    SyncState::InSync => "in_sync",
                    SyncState::Drifted(_) => "drifted",
                    SyncState::Missing => "missing",
                },
                "drifted_fields": match &d.sync {
                    SyncState::Drifted(fields) => json!(fields),
                    _ => json!([]),
                },
                "paused": d.paused,
                "release": d.release,
                "next_run": d.next_run,
                "last_run": d.last_run.as_ref().map(|r| json!({
                    "id": r.id, "state_type": r.state_type, "state_name": r.state_name, "at": r.at,
                })),
            })).collect::<Vec<_>>(),
            "work_pools": self.pools.iter().map(|p| json!({
                "name": p.name,
                "exists": p.paused.is_some(),
                "paused": p.paused,
                "workers_online": p.workers_online,
            })).collect::<Vec<_>>(),
            "process_groups": self.groups.iter().map(|g| json!({
                "group": g.group,
                "worker": g.worker,
                "machines": g.machines.iter().map(|m| json!({
                    "id": m.id,
                    "state": m.state,
                    "image": m.image,
                    "release_version": m.release_version,
                    "release_status": m.release_status,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The screen. `colour`: ANSI colours on the health words (the caller decides: a terminal
    /// and no NO_COLOR).
    pub fn to_text(&self, colour: bool) -> String {
        let paint = |text: &str, ansi: &str| {
            if colour {
                format!("\x1b[{ansi}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let good = |t: &str| paint(t, "32");
        let bad = |t: &str| paint(t, "31");
        let warn = |t: &str| paint(t, "33");
        let mut out = format!(
            "{} ({} environment) — Prefect {} — {}\n",
            self.app, self.env, self.server, self.prefect_file
        );
        out.push_str("\nDeployments\n");
        if self.deployments.is_empty() {
            out.push_str("  (none read)\n");
        }
        for d in &self.deployments {
            let sync = match &d.sync {
                SyncState::InSync => good("in sync"),
                SyncState::Drifted(fields) => warn(&format!("drifted: {}", fields.join(", "))),
                SyncState::Missing => bad("not on the server"),
            };
            let paused = if d.paused == Some(true) {
                format!("  {}", warn("paused"))
            } else {
                String::new()
            };
            let last = match &d.last_run {
                Some(r) if r.failed() => bad(&format!("{} {}", r.state_name, r.at)),
                Some(r) => format!("{} {}", r.state_name, r.at),
                None => "none".into(),
            };
            out.push_str(&format!(
                "  {}  {sync}{paused}\n    release {}  next run {}  last run {last}\n",
                d.full_name(),
                d.release.as_deref().unwrap_or("-"),
                d.next_run.as_deref().unwrap_or("none scheduled"),
            ));
        }
        out.push_str("\nWork pools\n");
        for p in &self.pools {
            let state = match p.paused {
                None => bad("does not exist"),
                Some(_) if p.workers_online.is_empty() => bad("no worker online"),
                Some(paused) => format!(
                    "{} online ({}){}",
                    good(&p.workers_online.len().to_string()),
                    p.workers_online.join(", "),
                    if paused { "  paused" } else { "" }
                ),
            };
            out.push_str(&format!("  {}  {state}\n", p.name));
        }
        out.push_str("\nFly process groups\n");
        if self.groups.is_empty() {
            out.push_str("  (none read)\n");
        }
        for g in &self.groups {
            out.push_str(&format!(
                "  {}{}: {} Machine(s)\n",
                g.group,
                if g.worker { " (worker)" } else { "" },
                g.machines.len()
            ));
            for m in &g.machines {
                let state = if m.state == "started" {
                    good(&m.state)
                } else {
                    warn(&m.state)
                };
                let release = match (&m.release_version, &m.release_status) {
                    (Some(v), Some(s)) => format!("v{v} ({s})"),
                    (Some(v), None) => format!("v{v}"),
                    _ => "-".into(),
                };
                out.push_str(&format!(
                    "    {}  {state}  {}  release {release}\n",
                    m.id, m.image
                ));
            }
        }
        let problems = self.problems();
        out.push('\n');
        if !self.errors.is_empty() {
            out.push_str(&format!(
                "{}: could not read everything, so health is unknown:\n",
                bad("ERROR")
            ));
            for e in &self.errors {
                out.push_str(&format!("  - {e}\n"));
            }
        }
        if !problems.is_empty() {
            out.push_str(&format!("{}:\n", warn("DEGRADED")));
            for p in &problems {
                out.push_str(&format!("  - {p}\n"));
            }
        }
        if self.errors.is_empty() && problems.is_empty() {
            out.push_str(&format!("{}\n", good("HEALTHY")));
        }
        out
    }
}

/// Colour only on a terminal and never with NO_COLOR set (to anything non-empty, as
/// no-color.org says).
pub fn use_colour(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && !no_color.is_some_and(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> StatusReport {
        StatusReport {
            env: "prod".into(),
            app: "captionacc-api".into(),
            server: "https://p/api".into(),
            prefect_file: "prefect.yaml".into(),
            deployments: vec![DeploymentStatus {
                flow_name: "f".into(),
                name: "d".into(),
                sync: SyncState::InSync,
                paused: Some(false),
                release: Some("abc123".into()),
                next_run: Some("2026-01-01T01:00:00Z".into()),
                last_run: Some(RunSummary {
                    id: "r1".into(),
                    state_type: "COMPLETED".into(),
                    state_name: "Completed".into(),
                    at: "2026-01-01T00:00:00Z".into(),
                }),
            }],
            pools: vec![PoolStatus {
                name: "pool".into(),
                paused: Some(false),
                workers_online: vec!["w1".into()],
            }],
            groups: vec![GroupStatus {
                group: "worker".into(),
                worker: true,
                machines: vec![MachineStatus {
                    id: "m1".into(),
                    state: "started".into(),
                    image: "r/app:abc123".into(),
                    release_version: Some("4".into()),
                    release_status: Some("complete".into()),
                }],
            }],
            errors: vec![],
        }
    }

    #[test]
    fn a_healthy_system_exits_0_and_says_so_without_colour() {
        let report = healthy();
        assert_eq!(report.exit_code(), 0);
        assert!(report.problems().is_empty());
        let text = report.to_text(false);
        assert!(text.contains("f/d  in sync"), "{text}");
        assert!(text.contains("release abc123"), "{text}");
        assert!(
            text.contains("m1  started  r/app:abc123  release v4 (complete)"),
            "{text}"
        );
        assert!(text.ends_with("HEALTHY\n"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        assert!(report.to_text(true).contains("\x1b[32mHEALTHY\x1b[0m"));
        let doc = report.to_json();
        assert_eq!(doc["status"], "healthy");
        assert_eq!(doc["deployments"][0]["sync"], "in_sync");
        assert_eq!(doc["deployments"][0]["release"], "abc123");
        assert_eq!(doc["work_pools"][0]["workers_online"], json!(["w1"]));
        assert_eq!(
            doc["process_groups"][0]["machines"][0]["release_version"],
            "4"
        );
    }

    #[test]
    fn drift_no_worker_a_failed_run_or_a_stopped_worker_group_is_degraded() {
        let mut r = healthy();
        r.deployments[0].sync = SyncState::Drifted(vec!["parameters".into()]);
        assert_eq!(r.exit_code(), 2);
        assert_eq!(
            r.problems(),
            vec!["f/d differs from prefect.yaml (parameters)"]
        );
        let mut r = healthy();
        r.pools[0].workers_online.clear();
        assert_eq!(r.problems(), vec!["work pool pool has no worker online"]);
        let mut r = healthy();
        r.deployments[0].last_run.as_mut().unwrap().state_type = "CRASHED".into();
        assert_eq!(r.exit_code(), 2);
        let mut r = healthy();
        r.groups[0].machines[0].state = "stopped".into();
        assert_eq!(
            r.problems(),
            vec!["process group worker has no started Machine"]
        );
        let mut r = healthy();
        r.deployments[0].sync = SyncState::Missing;
        r.pools[0].paused = None;
        assert_eq!(r.problems().len(), 2);
        assert_eq!(r.to_json()["status"], "degraded");
        assert!(r.to_text(false).contains("DEGRADED:\n"));
    }

    #[test]
    fn anything_unread_is_an_error_never_healthy() {
        let mut r = healthy();
        r.errors.push("Fly: fly machines list failed".into());
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.to_json()["status"], "error");
        let text = r.to_text(false);
        assert!(
            text.contains("ERROR: could not read everything, so health is unknown:\n  - Fly: fly machines list failed"),
            "{text}"
        );
        assert!(!text.contains("HEALTHY"), "{text}");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("")));
        assert!(!use_colour(true, Some("1")));
        assert!(!use_colour(false, None));
    }
}
