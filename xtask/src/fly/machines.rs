//! The app's Machines and releases as flyctl lists them (`fly machines list --json`,
//! `fly releases --image --json`): parsed (pure) and read (with the common time limit).

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::{run_checked, FlyCommand, QUICK_TIMEOUT};

/// One Machine: what status and verify need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub id: String,
    /// fly.toml `[processes]` group (`app` when Fly records none).
    pub group: String,
    /// `started`, `stopped`, `created`, …
    pub state: String,
    /// The image reference it runs (`config.image`, else rebuilt from `image_ref`).
    pub image: String,
    /// The Fly release that created it (`config.metadata.fly_release_version`).
    pub release_version: Option<String>,
}

/// `fly machines list --app APP --json`
pub fn machines_list_cmd(fly: &Path, app: &str) -> FlyCommand {
    FlyCommand::new(fly, &["machines", "list", "--app", app, "--json"])
}

/// `fly releases --app APP --image --json`
pub fn releases_cmd(fly: &Path, app: &str) -> FlyCommand {
    FlyCommand::new(fly, &["releases", "--app", app, "--image", "--json"])
}

/// Parses `fly machines list --json` (a list of Machines).
pub fn parse_machines(json: &str) -> Result<Vec<Machine>, String> {
    let value: Value = serde_json::from_str(json.trim()).map_err(|e| {
        format!("`fly machines list --json` printed something that is not JSON ({e})")
    })?;
    let list = match &value {
        Value::Array(list) => list,
        Value::Null => return Ok(Vec::new()),
        _ => return Err("`fly machines list --json`: not a list".into()),
    };
    Ok(list
        .iter()
        .map(|m| {
            let text = |pointer: &str| m.pointer(pointer).and_then(Value::as_str);
            Machine {
                id: text("/id").unwrap_or("?").to_string(),
                group: text("/config/metadata/fly_process_group")
                    .unwrap_or("app")
                    .to_string(),
                state: text("/state").unwrap_or("unknown").to_string(),
                image: text("/config/image")
                    .map(str::to_string)
                    .or_else(|| image_from_ref(m.get("image_ref")?))
                    .unwrap_or_default(),
                release_version: m
                    .pointer("/config/metadata/fly_release_version")
                    .and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    }),
            }
        })
        .collect())
}

/// `registry/repository:tag` from the `image_ref` object.
fn image_from_ref(image_ref: &Value) -> Option<String> {
    let part = |key: &str| image_ref.get(key).and_then(Value::as_str).unwrap_or("");
    let repository = part("repository");
    if repository.is_empty() {
        return None;
    }
    let mut out = match part("registry") {
        "" => repository.to_string(),
        registry => format!("{registry}/{repository}"),
    };
    if !part("tag").is_empty() {
        out = format!("{out}:{}", part("tag"));
    }
    Some(out)
}

/// Two image references name the same image: equal once a `@sha256:…` digest is set aside
/// (Fly may report the reference it was given with or without the digest it resolved).
pub fn same_image(a: &str, b: &str) -> bool {
    let strip = |r: &str| r.split('@').next().unwrap_or(r).trim().to_string();
    strip(a) == strip(b)
}

/// One Fly release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlyRelease {
    pub version: u64,
    /// `complete`, `failed`, `running`, …
    pub status: String,
    pub image: String,
    pub created_at: String,
}

impl FlyRelease {
    pub fn completed(&self) -> bool {
        self.status.eq_ignore_ascii_case("complete")
            || self.status.eq_ignore_ascii_case("succeeded")
    }
}

/// Parses `fly releases --image --json`; newest first.
pub fn parse_releases(json: &str) -> Result<Vec<FlyRelease>, String> {
    let value: Value = serde_json::from_str(json.trim())
        .map_err(|e| format!("`fly releases --json` printed something that is not JSON ({e})"))?;
    let Value::Array(list) = value else {
        return Err("`fly releases --json`: not a list".into());
    };
    let mut out = Vec::new();
    for r in &list {
        let text = |key: &str| r.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let version = r
            .get("Version")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .ok_or_else(|| format!("`fly releases --json`: a release without a Version: {r}"))?;
        out.push(FlyRelease {
            version,
            status: text("Status"),
            image: text("ImageRef"),
            created_at: text("CreatedAt"),
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.version));
    Ok(out)
}

/// `fly machines list --json`, parsed.
pub fn list_machines(fly: &Path, app: &str) -> Result<Vec<Machine>> {
    let output = run_checked(&machines_list_cmd(fly, app), QUICK_TIMEOUT, false)?;
    parse_machines(&output.stdout).map_err(anyhow::Error::msg)
}

/// `fly releases --image --json`, parsed, newest first.
pub fn list_releases(fly: &Path, app: &str) -> Result<Vec<FlyRelease>> {
    let output = run_checked(&releases_cmd(fly, app), QUICK_TIMEOUT, false)?;
    parse_releases(&output.stdout).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_carry_group_state_image_and_release() {
        let json = r#"[
          {"id":"m1","state":"started","config":{"image":"registry.fly.io/app:abc","metadata":{"fly_process_group":"worker","fly_release_version":"7"}}},
          {"id":"m2","state":"stopped","image_ref":{"registry":"registry.fly.io","repository":"app","tag":"old","digest":"sha256:1"},"config":{"metadata":{"fly_release_version":6}}}
        ]"#;
        let machines = parse_machines(json).unwrap();
        assert_eq!(
            machines,
            vec![
                Machine {
                    id: "m1".into(),
                    group: "worker".into(),
                    state: "started".into(),
                    image: "registry.fly.io/app:abc".into(),
                    release_version: Some("7".into()),
                },
                Machine {
                    id: "m2".into(),
                    group: "app".into(),
                    state: "stopped".into(),
                    image: "registry.fly.io/app:old".into(),
                    release_version: Some("6".into()),
                },
            ]
        );
        assert_eq!(parse_machines("null").unwrap(), vec![]);
        assert!(parse_machines("{}").is_err());
        assert!(parse_machines("Error: x").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn images_compare_without_their_digest() {
        assert!(same_image("r/app:abc", "r/app:abc@sha256:12"));
        assert!(!same_image("r/app:abc", "r/app:abd"));
    }

    #[test]
    fn releases_are_newest_first_with_their_image() {
        let json = r#"[
          {"Version":1,"Status":"complete","ImageRef":"r/app:one","CreatedAt":"2026-01-01T00:00:01Z"},
          {"Version":3,"Status":"failed","ImageRef":"r/app:three","CreatedAt":"2026-01-01T00:00:03Z"},
          {"Version":"2","Status":"complete","ImageRef":"r/app:two","CreatedAt":"2026-01-01T00:00:02Z"}
        ]"#;
        let releases = parse_releases(json).unwrap();
        assert_eq!(
            releases.iter().map(|r| r.version).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        assert!(!releases[0].completed());
        assert!(releases[1].completed());
        assert_eq!(releases[1].image, "r/app:two");
        assert!(parse_releases(r#"[{"Status":"complete"}]"#)
            .unwrap_err()
            .contains("without a Version"));
    }
}
