//! Which release registered a deployment*: the release identity baked into the image
//! (`.xtask-release`), recorded on every deployment as the tag `xtask.release:<id>`
//! (docs/releases.md says why a tag and not the version, a label or `version_info`).

use serde_json::Value;

use crate::sync::desired::DesiredState;
use crate::sync::plan::ServerState;

/// The file the image build writes into the app directory (the release command's working
/// directory): `image=<reference>` and `commit=<git sha>` lines.
pub const RELEASE_FILE: &str = ".xtask-release";

/// The tag prefix that records the release on a deployment (reserved: a yaml tag with it is
/// replaced by the run's release).
pub const TAG_PREFIX: &str = "xtask.release:";

/// One release: `id` is the image's tag (`<commit12>` or `<commit12>-dirty` for images
/// `cargo xtask build-image` made), the same whether read from the image's file or derived
/// from the reference `fly deploy --image` was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub image: Option<String>,
    pub commit: Option<String>,
}

impl Release {
    /// The release an image reference names: its tag (`registry.fly.io/app:0123abcd4567`
    /// → `0123abcd4567`), without a `@sha256:…` digest; the digest when there is no tag.
    pub fn from_image_ref(image: &str) -> Option<Release> {
        let image = image.trim();
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (image, None),
        };
        let last = name.rsplit('/').next().unwrap_or(name);
        let id = match last.split_once(':') {
            Some((_, tag)) if !tag.is_empty() => tag.to_string(),
            _ => digest?.to_string(),
        };
        valid_id(&id).then(|| Release {
            id,
            image: Some(image.to_string()),
            commit: None,
        })
    }

    /// Parses the release file's text; None when it names no image (an image built without
    /// the build arguments: nothing to record). Unknown keys are ignored, for later additions.
    pub fn parse_file(text: &str) -> Result<Option<Release>, String> {
        let mut image = None;
        let mut commit = None;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "{RELEASE_FILE}:{}: expected `key=value`, found {line:?}",
                    index + 1
                ));
            };
            let value = value.trim();
            match key.trim() {
                "image" if !value.is_empty() => image = Some(value.to_string()),
                "commit" if !value.is_empty() => commit = Some(value.to_string()),
                _ => {}
            }
        }
        let Some(image) = image else {
            return Ok(None);
        };
        let mut release = Release::from_image_ref(&image).ok_or_else(|| {
            format!("{RELEASE_FILE}: image {image:?} has no tag or digest to name the release by")
        })?;
        release.commit = commit;
        Ok(Some(release))
    }

    /// The tag recorded on each deployment.
    pub fn tag(&self) -> String {
        format!("{TAG_PREFIX}{}", self.id)
    }
}

/// Tags may hold any text; a release id stays readable and one word.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c))
}

/// The release recorded in a deployment's `tags` (the server's JSON list), if any.
pub fn recorded_release(tags: &Value) -> Option<&str> {
    tags.as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|tag| tag.strip_prefix(TAG_PREFIX))
}

/// The desired state with each deployment's release tag: `release`'s when this run knows its
/// release (the release command, deploy's checks); otherwise the one the server already records
/// (a run from a checkout neither changes nor drifts on it). The yaml's own tags come first, in
/// their order, without any `xtask.release:` tag.
pub(crate) fn with_release(
    desired: &DesiredState,
    server: &ServerState,
    release: Option<&Release>,
) -> DesiredState {
    let mut out = desired.clone();
    for want in &mut out.deployments {
        let recorded = || {
            server
                .deployments
                .iter()
                .find(|have| have.flow_name == want.flow_name && have.name == want.name)
                .and_then(|have| have.raw.get("tags"))
                .and_then(recorded_release)
                .map(|id| format!("{TAG_PREFIX}{id}"))
        };
        let tag = match release {
            Some(release) => Some(release.tag()),
            None => recorded(),
        };
        let mut tags: Vec<Value> = want
            .fields
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| {
                tags.iter()
                    .filter(|t| !t.as_str().is_some_and(|t| t.starts_with(TAG_PREFIX)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        tags.extend(tag.map(Value::String));
        want.fields.insert("tags".into(), Value::Array(tags));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::desired::{DesiredDeployment, Ownership, SourceLocation};
    use crate::sync::plan::ServerDeployment;
    use serde_json::{json, Map};

    #[test]
    fn the_release_of_an_image_reference_is_its_tag() {
        let r = Release::from_image_ref("registry.fly.io/captionacc-api:0123abcd4567").unwrap();
        assert_eq!(r.id, "0123abcd4567");
        assert_eq!(r.tag(), "xtask.release:0123abcd4567");
        assert_eq!(
            Release::from_image_ref("registry.fly.io/app:0123abcd4567-dirty@sha256:ab12")
                .unwrap()
                .id,
            "0123abcd4567-dirty"
        );
        assert_eq!(
            Release::from_image_ref("localhost:5000/app:v2").unwrap().id,
            "v2",
            "a registry port is not a tag"
        );
        assert_eq!(
            Release::from_image_ref("registry.fly.io/app@sha256:ab12")
                .unwrap()
                .id,
            "sha256:ab12"
        );
        assert_eq!(Release::from_image_ref("localhost:5000/app"), None);
        assert_eq!(Release::from_image_ref("app:bad tag"), None);
    }

    #[test]
    fn the_release_file_names_image_and_commit() {
        let r = Release::parse_file(
            "# written by the image build\nimage=registry.fly.io/app:0123abcd4567\ncommit=0123abcd4567890\nlater=x\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r,
            Release {
                id: "0123abcd4567".into(),
                image: Some("registry.fly.io/app:0123abcd4567".into()),
                commit: Some("0123abcd4567890".into()),
            }
        );
        // Built without the build arguments: nothing to record.
        assert_eq!(Release::parse_file("image=\ncommit=\n").unwrap(), None);
        assert_eq!(Release::parse_file("").unwrap(), None);
        let err = Release::parse_file("image=x:1\nnonsense\n").unwrap_err();
        assert!(err.starts_with(".xtask-release:2:"), "{err}");
        let err = Release::parse_file("image=registry/app\n").unwrap_err();
        assert!(err.contains("no tag"), "{err}");
    }

    #[test]
    fn recorded_release_reads_the_tag() {
        assert_eq!(
            recorded_release(&json!(["a", "xtask.release:r1", "b"])),
            Some("r1")
        );
        assert_eq!(recorded_release(&json!(["a"])), None);
        assert_eq!(recorded_release(&Value::Null), None);
    }

    fn desired(tags: Value) -> DesiredState {
        let mut fields = Map::new();
        fields.insert("tags".into(), tags);
        DesiredState {
            owner: Ownership {
                project: "p".into(),
                prefect_file: "prefect.yaml".into(),
            },
            deployments: ["a", "b"]
                .iter()
                .map(|name| DesiredDeployment {
                    name: (*name).into(),
                    flow_name: "f".into(),
                    source: SourceLocation {
                        file: "prefect.yaml".into(),
                        line: 1,
                    },
                    fields: fields.clone(),
                    version_info: None,
                    schedules: None,
                    triggers: None,
                    secrets: Default::default(),
                })
                .collect(),
            warnings: vec![],
            resources: Default::default(),
        }
    }

    fn server(tags: Value) -> ServerState {
        ServerState {
            deployments: vec![ServerDeployment {
                id: "id-a".into(),
                name: "a".into(),
                flow_name: "f".into(),
                owner: None,
                raw: json!({"tags": tags}),
            }],
            ..ServerState::default()
        }
    }

    fn tags_of(state: &DesiredState) -> Vec<Value> {
        state
            .deployments
            .iter()
            .map(|d| d.fields["tags"].clone())
            .collect()
    }

    #[test]
    fn a_known_release_is_recorded_on_every_deployment_after_the_yamls_tags() {
        let release = Release::from_image_ref("reg/app:r2").unwrap();
        let out = with_release(
            &desired(json!(["etl", "xtask.release:forged"])),
            &server(json!(["etl", "xtask.release:r1"])),
            Some(&release),
        );
        assert_eq!(
            tags_of(&out),
            vec![
                json!(["etl", "xtask.release:r2"]),
                json!(["etl", "xtask.release:r2"])
            ]
        );
    }

    #[test]
    fn an_unknown_release_keeps_what_the_server_records() {
        let out = with_release(
            &desired(json!(["etl"])),
            &server(json!(["etl", "xtask.release:r1"])),
            None,
        );
        assert_eq!(
            tags_of(&out),
            vec![json!(["etl", "xtask.release:r1"]), json!(["etl"])],
            "b is not on the server: created without a release"
        );
    }
}
