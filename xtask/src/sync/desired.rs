//! The server state prefect.yaml asks for: one [`DesiredDeployment`] per yaml deployment, in the
//! Prefect REST API's own vocabulary (field names and value shapes of `POST /deployments/`).
//!
//! Pure: data plus the payloads derived from it. Reading the files, the server, git and the
//! environment to build it is [`crate::sync::load`]'s job.

use serde_json::{json, Map, Value};

use crate::prefect::flow;
use crate::prefect::prefect_yaml;
pub use crate::prefect::schedule::DesiredSchedule;
use crate::sys::redact::Secrets;

/// Where a deployment is declared, for error messages and the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The deployment fields prefect.yaml can own, in the order `prefect deploy` sends them.
/// `fields` of a [`DesiredDeployment`] only ever holds these keys.
pub const OWNED_FIELDS: &[&str] = &[
    "version",
    "description",
    "parameters",
    "paused",
    "concurrency_limit",
    "concurrency_options",
    "tags",
    "work_queue_name",
    "work_pool_name",
    "job_variables",
    "entrypoint",
    "parameter_openapi_schema",
    "pull_steps",
    "enforce_parameter_schema",
    // Not an API field: the name of the global limit in `concurrency_limit: {global: NAME}`
    // (compared with the name the server reports; sent as `global_concurrency_limit_id`).
    "global_concurrency_limit",
];

/// A field and the value the server gives it when a create leaves it out.
type ServerDefault = (&'static str, fn() -> Value);

/// Create-body fields left out when they hold the server's default, in groups the server reads
/// together. Present, they cost the server work that changes nothing for a new deployment:
/// `enforce_parameter_schema: true` re-checks the schema against the JSON Schema meta-schema and
/// the parameters against it (both done before any write, by `param_check`), and
/// `concurrency_limit: null` runs the concurrency-limit upsert. Measured on Prefect 3.9.1's
/// SQLite server: 44 → 32 ms per create (docs/register-flows.md, step 4).
const SERVER_DEFAULTED_ON_CREATE: [&[ServerDefault]; 2] = [
    &[("enforce_parameter_schema", || Value::Bool(true))],
    &[
        ("concurrency_limit", || Value::Null),
        ("concurrency_options", || Value::Null),
    ],
];

/// One deployment as prefect.yaml (plus the flow file) describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredDeployment {
    pub name: String,
    pub flow_name: String,
    pub source: SourceLocation,
    /// API fields (keys of [`OWNED_FIELDS`]) whose values this yaml owns. A key that is absent is
    /// left as it is on the server (e.g. `paused` when the yaml does not state it).
    pub fields: Map<String, Value>,
    /// Sent along with `version`; the OSS server does not store it, so it is never compared.
    pub version_info: Option<Value>,
    /// None: the yaml omits `schedules` (leave the server's as they are); Some([]): clear them.
    pub schedules: Option<Vec<DesiredSchedule>>,
    /// Automation bodies (`POST /automations/` without `owner_resource` and the actions'
    /// `deployment_id`). None: the yaml omits `triggers` (leave owned automations as they are).
    pub triggers: Option<Vec<Value>>,
    /// Values its templates took from blocks and environment variables, and the process's
    /// credentials: a plan shows a field holding one as `<secret changed>`, never the value.
    pub secrets: Secrets,
}

impl DesiredDeployment {
    /// `flow/deployment`, the name Prefect shows and `prefect deployment run` takes.
    pub(crate) fn full_name(&self) -> String {
        format!("{}/{}", self.flow_name, self.name)
    }

    /// The `POST /deployments/` body, with Prefect's create defaults for fields the yaml does not state
    /// (`paused: false`, `enforce_parameter_schema: true`) and the ownership labels.
    pub(crate) fn create_body(&self, flow_id: &str, owner: &Ownership) -> Value {
        let field = |key: &str| self.fields.get(key).cloned().unwrap_or(Value::Null);
        let schedules: Vec<Value> = self
            .schedules
            .iter()
            .flatten()
            .map(DesiredSchedule::create_body)
            .collect();
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name));
        body.insert("flow_id".into(), json!(flow_id));
        body.insert(
            "paused".into(),
            self.fields.get("paused").cloned().unwrap_or(json!(false)),
        );
        body.insert("schedules".into(), Value::Array(schedules));
        body.insert("concurrency_limit".into(), field("concurrency_limit"));
        body.insert("concurrency_options".into(), field("concurrency_options"));
        body.insert(
            "enforce_parameter_schema".into(),
            self.fields
                .get("enforce_parameter_schema")
                .cloned()
                .unwrap_or(json!(true)),
        );
        body.insert(
            "parameter_openapi_schema".into(),
            field("parameter_openapi_schema"),
        );
        body.insert(
            "parameters".into(),
            self.fields.get("parameters").cloned().unwrap_or(json!({})),
        );
        body.insert(
            "tags".into(),
            self.fields.get("tags").cloned().unwrap_or(json!([])),
        );
        body.insert("labels".into(), Value::Object(owner.labels()));
        if let Some(pull_steps) = self.fields.get("pull_steps") {
            body.insert("pull_steps".into(), pull_steps.clone());
        }
        body.insert("work_queue_name".into(), field("work_queue_name"));
        if let Some(pool) = self.fields.get("work_pool_name").filter(|v| !v.is_null()) {
            body.insert("work_pool_name".into(), pool.clone());
        }
        body.insert("storage_document_id".into(), Value::Null);
        body.insert("infrastructure_document_id".into(), Value::Null);
        body.insert("description".into(), field("description"));
        body.insert("path".into(), Value::Null);
        body.insert("entrypoint".into(), field("entrypoint"));
        body.insert(
            "job_variables".into(),
            self.fields
                .get("job_variables")
                .cloned()
                .unwrap_or(json!({})),
        );
        body.insert("version".into(), field("version"));
        if let Some(info) = &self.version_info {
            body.insert("version_info".into(), info.clone());
        }
        Value::Object(body)
    }

    /// `create_body` without the fields whose stated value is the server's own create default
    /// and whose presence makes the server work for nothing, plus those fields with the values
    /// they must end up with (for `plan::repair_patch` to check against the response).
    pub(crate) fn lean_create_body(
        &self,
        flow_id: &str,
        owner: &Ownership,
    ) -> (Value, Map<String, Value>) {
        let mut body = self.create_body(flow_id, owner);
        let mut defaulted = Map::new();
        if let Value::Object(fields) = &mut body {
            for group in SERVER_DEFAULTED_ON_CREATE {
                let all_default = group
                    .iter()
                    .all(|(field, default)| fields.get(*field) == Some(&default()));
                if all_default {
                    for (field, default) in group {
                        fields.remove(*field);
                        defaulted.insert((*field).to_string(), default());
                    }
                }
            }
        }
        (body, defaulted)
    }

    /// `POST /automations/` bodies for this deployment once its id is known.
    pub(crate) fn automation_bodies(&self, deployment_id: &str) -> Vec<Value> {
        self.triggers
            .iter()
            .flatten()
            .map(|trigger| automation_body(trigger, deployment_id))
            .collect()
    }
}

/// An automation body bound to a deployment: owned by it, its run-deployment actions pointing at it.
pub(crate) fn automation_body(trigger: &Value, deployment_id: &str) -> Value {
    let mut body = trigger.clone();
    if let Value::Object(map) = &mut body {
        map.insert(
            "owner_resource".into(),
            json!(format!("prefect.deployment.{deployment_id}")),
        );
        for key in ["actions", "actions_on_trigger", "actions_on_resolve"] {
            if let Some(Value::Array(actions)) = map.get_mut(key) {
                for action in actions {
                    let is_run_deployment =
                        action.get("type").and_then(Value::as_str) == Some("run-deployment");
                    let selected = action.get("source").and_then(Value::as_str) != Some("inferred");
                    if let (true, true, Value::Object(action)) =
                        (is_run_deployment, selected, action)
                    {
                        action.insert("deployment_id".into(), json!(deployment_id));
                    }
                }
            }
        }
    }
    body
}

/// The ownership marker: which project and prefect file registered a deployment.
///
/// Stored as deployment `labels` (set on create; the API cannot patch labels). Labels, unlike
/// tags, do not feed tag-based concurrency limits; see docs/ownership.md for the trade-offs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The yaml's top-level `name:` (Prefect's project name), else the project directory's name.
    pub project: String,
    /// The prefect file relative to the project root, e.g. `prefect.yaml`.
    pub prefect_file: String,
}

pub(crate) const LABEL_PROJECT: &str = "xtask.project";
pub(crate) const LABEL_PREFECT_FILE: &str = "xtask.prefect-file";

impl Ownership {
    pub(crate) fn labels(&self) -> Map<String, Value> {
        let mut labels = Map::new();
        labels.insert(LABEL_PROJECT.into(), json!(self.project));
        labels.insert(LABEL_PREFECT_FILE.into(), json!(self.prefect_file));
        labels
    }

    /// The name of this project's variable of one kind (`prefix`: its ledger, its lock):
    /// readable, in the characters Prefect allows in a variable name, and one to one with
    /// (project, prefect file) by a hash of the exact pair (`a/b` and `a-b` slug alike).
    pub(crate) fn variable_name(&self, prefix: &str) -> String {
        let slug = |text: &str| {
            let mut out = crate::prefect::variable_slug(text);
            out.truncate(80);
            out
        };
        // FNV-1a over the exact pair.
        let mut hash: u64 = 0xcbf29ce484222325;
        for byte in self
            .project
            .bytes()
            .chain([0])
            .chain(self.prefect_file.bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100000001b3);
        }
        format!(
            "{prefix}-{}-{}-{:08x}",
            slug(&self.project),
            slug(&self.prefect_file),
            hash as u32
        )
    }

    /// The marker a server deployment carries, if any (`labels` of a DeploymentResponse).
    pub(crate) fn from_labels(labels: &Value) -> Option<Ownership> {
        let project = labels.get(LABEL_PROJECT)?.as_str()?;
        let prefect_file = labels.get(LABEL_PREFECT_FILE)?.as_str()?;
        Some(Ownership {
            project: project.to_string(),
            prefect_file: prefect_file.to_string(),
        })
    }
}

impl std::fmt::Display for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.project, self.prefect_file)
    }
}

/// Everything prefect.yaml asks for, validated.
#[derive(Debug, Clone)]
pub struct DesiredState {
    pub owner: Ownership,
    pub deployments: Vec<DesiredDeployment>,
    /// The work pools, global limits and variables the yaml declares.
    pub resources: crate::sync::resources::DesiredResources,
    /// Non-fatal findings (unknown keys, degraded parameter types), already located.
    pub warnings: Vec<String>,
}

/// Problems found while building the desired state; nothing is written when there is any.
#[derive(Debug, Default)]
pub(crate) struct ValidationErrors {
    pub problems: Vec<String>,
}

impl ValidationErrors {
    pub(crate) fn push(
        &mut self,
        location: Option<&SourceLocation>,
        deployment: Option<&str>,
        message: impl std::fmt::Display,
    ) {
        let mut text = String::new();
        if let Some(location) = location {
            text.push_str(&format!("{location}: "));
        }
        if let Some(name) = deployment {
            text.push_str(&format!("deployment '{name}': "));
        }
        text.push_str(&message.to_string());
        self.problems.push(text);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "prefect.yaml is not valid ({n} problem{}); nothing was written:",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Checks that hold across deployments: `flow/name` unique.
pub(crate) fn check_unique_names(deployments: &[DesiredDeployment], errors: &mut ValidationErrors) {
    let mut seen: std::collections::HashMap<String, &SourceLocation> =
        std::collections::HashMap::new();
    for deployment in deployments {
        let full = deployment.full_name();
        match seen.get(&full) {
            Some(first) => errors.push(
                Some(&deployment.source),
                Some(&deployment.name),
                format!("'{full}' is declared twice (first at {first}); deployment names must be unique per flow"),
            ),
            None => {
                seen.insert(full, &deployment.source);
            }
        }
    }
}

/// The yaml's top-level `name:` (Prefect's project name), else the project directory's name.
pub(crate) fn project_name(root: &std::path::Path, file: &prefect_yaml::PrefectFile) -> String {
    let from_yaml = file.project_name.clone().filter(|n| !n.trim().is_empty());
    from_yaml.unwrap_or_else(|| {
        root.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".to_string())
    })
}

/// Where a deployment's version comes from when the yaml gives none, as Prefect infers it: the
/// commit of a CI run (GitHub, GitLab, Bitbucket, Azure DevOps variables) or of a git checkout with
/// an `origin` remote; its sha[:8] then wins even over `@flow(version=…)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GitVersion {
    /// Prefect's version type: `vcs:github`, `vcs:gitlab`, `vcs:bitbucket`, `vcs:azuredevops`, `vcs:git`.
    pub kind: &'static str,
    pub commit_sha: String,
    pub branch: String,
    pub url: String,
}

/// CI providers in Prefect's order: (type, sha, branch, repository, url base, url infix).
const CI_PROVIDERS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "vcs:github",
        "GITHUB_SHA",
        "GITHUB_REF_NAME",
        "GITHUB_REPOSITORY",
        "GITHUB_SERVER_URL",
        "/{repo}/tree/",
    ),
    (
        "vcs:gitlab",
        "CI_COMMIT_SHA",
        "CI_COMMIT_REF_NAME",
        "CI_PROJECT_NAME",
        "CI_PROJECT_URL",
        "/-/tree/",
    ),
    (
        "vcs:bitbucket",
        "BITBUCKET_COMMIT",
        "BITBUCKET_BRANCH",
        "BITBUCKET_REPO_SLUG",
        "BITBUCKET_GIT_HTTP_ORIGIN",
        "/src/",
    ),
    (
        "vcs:azuredevops",
        "BUILD_SOURCEVERSION",
        "BUILD_SOURCEBRANCHNAME",
        "BUILD_REPOSITORY_NAME",
        "BUILD_REPOSITORY_URI",
        "?version=GC",
    ),
];

impl GitVersion {
    /// The CI providers whose variables are all set (`env` is the lookup).
    pub(crate) fn from_ci(
        env: impl Fn(&str) -> Option<String>,
        in_checkout: bool,
    ) -> Vec<GitVersion> {
        if !in_checkout {
            return Vec::new();
        }
        CI_PROVIDERS
            .iter()
            .filter_map(|(kind, sha, branch, repo, base, infix)| {
                let (sha, branch, repo) = (env(sha)?, env(branch)?, env(repo)?);
                let base = env(base).unwrap_or_else(|| "None".into());
                Some(GitVersion {
                    kind,
                    url: crate::sys::redact::mask_url_credentials(&format!(
                        "{base}{}{sha}",
                        infix.replace("{repo}", &repo)
                    )),
                    commit_sha: sha,
                    branch,
                })
            })
            .collect()
    }

    /// The source a deployment's `version_type` selects: none for `prefect:simple`, that provider
    /// for a `vcs:*` type, else the first that works.
    pub(crate) fn select<'a>(
        found: &'a [GitVersion],
        version_type: Option<&str>,
    ) -> Option<&'a GitVersion> {
        match version_type {
            Some("prefect:simple") => None,
            Some(kind) => found.iter().find(|v| v.kind == kind),
            None => found.first(),
        }
    }

    fn short_sha(&self) -> String {
        self.commit_sha.chars().take(8).collect()
    }
}

/// A problem with one deployment, and the yaml key it is about (for the error's line).
pub(crate) struct FieldError {
    pub(crate) field: &'static str,
    pub(crate) message: String,
}

/// What Prefect infers for every deployment of one run when the yaml does not say.
pub(crate) struct Inferred {
    /// Version sources ([`GitVersion`]), in Prefect's order.
    pub(crate) git: Vec<GitVersion>,
    /// Start of schedules without an explicit one.
    pub(crate) now: jiff::Timestamp,
    /// The default pull step's directory: the project root, canonical.
    pub(crate) working_directory: String,
}

/// A deployment's flow as its entrypoint file defines it.
pub(crate) struct FlowFile {
    pub(crate) flow: flow::FlowInfo,
    /// Prefect's default version: the hash of the file.
    pub(crate) file_version: String,
}

/// One resolved yaml deployment plus its flow (read from the entrypoint file) → the API fields.
pub(crate) fn from_resolved(
    source: SourceLocation,
    resolved: prefect_yaml::ResolvedDeployment,
    has_triggers: bool,
    flow: FlowFile,
    inferred: &Inferred,
    warnings: &mut Vec<String>,
) -> Result<DesiredDeployment, FieldError> {
    let FlowFile { flow, file_version } = flow;
    let Inferred {
        git,
        now,
        working_directory,
    } = inferred;
    warnings.extend(
        flow.warnings
            .iter()
            .map(|w| format!("{source}: deployment '{}': {w}", resolved.name)),
    );

    // `version_type: prefect:simple` turns Prefect's inference off; `vcs:*` picks one source.
    let git = GitVersion::select(git, resolved.version_type.as_deref());
    let version = resolved
        .version
        .clone()
        .or_else(|| git.map(GitVersion::short_sha))
        .or_else(|| flow.version.clone())
        .unwrap_or(file_version);
    let version_info = match git {
        Some(git) => json!({
            "type": git.kind, "version": version, "commit_sha": git.commit_sha,
            "branch": git.branch, "url": git.url,
        }),
        None => json!({"type": "prefect:simple", "version": version}),
    };
    let description = resolved
        .description
        .clone()
        .or_else(|| flow.description.clone());
    let pull_steps = match resolved.pull_steps {
        prefect_yaml::PullSteps::Explicit(steps) => Value::Array(steps),
        prefect_yaml::PullSteps::Default => {
            // Prefect's default: the working directory the flow is deployed from, or /opt/prefect
            // for image-based job variables.
            let directory = if resolved.work_pool.job_variables.contains_key("image") {
                "/opt/prefect".to_string()
            } else {
                working_directory.to_string()
            };
            json!([{"prefect.deployments.steps.set_working_directory": {"directory": directory}}])
        }
    };

    // The server checks parameters against the schema when enforcement is on (the default for a
    // new deployment); checking here makes a bad value a validation error, before any write.
    if resolved.enforce_parameter_schema != Some(false) {
        let parameters = Value::Object(resolved.parameters.clone());
        if let Err(reason) =
            crate::prefect::param_check::validate(&parameters, &flow.parameter_openapi_schema)
        {
            return Err(FieldError {
                field: "parameters",
                message: format!(
                    "parameters do not match the flow's signature ({reason}); fix them, or set `enforce_parameter_schema: false`"
                ),
            });
        }
    }

    let mut fields = Map::new();
    fields.insert("version".into(), json!(version));
    fields.insert("description".into(), json!(description));
    fields.insert("parameters".into(), Value::Object(resolved.parameters));
    if let Some(paused) = resolved.paused {
        fields.insert("paused".into(), json!(paused));
    }
    match &resolved.global_concurrency_limit {
        // A shared limit: the deployment's own `concurrency_limit` is never sent (a null one
        // makes Prefect delete the limit the deployment runs under, the shared one included).
        Some(name) => {
            fields.insert("global_concurrency_limit".into(), json!(name));
            fields.insert(
                "concurrency_options".into(),
                resolved.concurrency_options.unwrap_or(Value::Null),
            );
        }
        None => {
            fields.insert(
                "concurrency_limit".into(),
                json!(resolved.concurrency_limit),
            );
            fields.insert(
                "concurrency_options".into(),
                resolved.concurrency_options.unwrap_or(Value::Null),
            );
        }
    }
    fields.insert("tags".into(), json!(resolved.tags));
    fields.insert(
        "work_queue_name".into(),
        json!(resolved.work_pool.work_queue_name),
    );
    fields.insert("work_pool_name".into(), json!(resolved.work_pool.name));
    fields.insert(
        "job_variables".into(),
        Value::Object(resolved.work_pool.job_variables),
    );
    fields.insert("entrypoint".into(), json!(resolved.entrypoint));
    fields.insert(
        "parameter_openapi_schema".into(),
        flow.parameter_openapi_schema,
    );
    fields.insert("pull_steps".into(), pull_steps);
    if let Some(enforce) = resolved.enforce_parameter_schema {
        fields.insert("enforce_parameter_schema".into(), json!(enforce));
    }
    let schedules = resolved
        .schedules
        .map(|list| list.iter().map(|s| s.desired(*now)).collect());
    let triggers = has_triggers.then(|| resolved.triggers.iter().map(trigger_automation).collect());
    let name = registered_name(&resolved.name);
    if name != resolved.name {
        warnings.push(format!(
            "{source}: deployment '{}' is registered as '{name}': Prefect drops a `.py` suffix from deployment names",
            resolved.name
        ));
    }
    Ok(DesiredDeployment {
        name,
        flow_name: flow.flow_name,
        source,
        fields,
        version_info: Some(version_info),
        schedules,
        triggers,
        secrets: Secrets::default(),
    })
}

/// The name Prefect registers: `RunnerDeployment` replaces a name ending in `.py` by
/// `Path(name).stem` (`train_models.py` → `train_models`; `.py` alone is a stem already).
/// Trigger names keep the yaml's name, as Prefect's do.
pub(crate) fn registered_name(name: &str) -> String {
    match name.strip_suffix(".py") {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => name.to_string(),
    }
}

/// A yaml trigger spec → the automation Prefect creates for it (`BaseDeploymentTrigger` fields
/// become the automation and its run-deployment action; the rest is the trigger).
pub(crate) fn trigger_automation(spec: &Value) -> Value {
    let empty = Map::new();
    let spec = spec.as_object().unwrap_or(&empty);
    let mut trigger = Map::new();
    for (key, value) in spec {
        if ![
            "name",
            "description",
            "enabled",
            "parameters",
            "job_variables",
            "schedule_after",
        ]
        .contains(&key.as_str())
        {
            trigger.insert(key.clone(), value.clone());
        }
    }
    let kind = match trigger.get("type").and_then(Value::as_str) {
        Some(kind) => kind.to_string(),
        None if trigger.get("posture").and_then(Value::as_str) == Some("Metric") => "metric".into(),
        None if trigger.contains_key("triggers") && trigger.contains_key("require") => {
            "compound".into()
        }
        None if trigger.contains_key("triggers") => "sequence".into(),
        None => "event".into(),
    };
    trigger.insert("type".into(), json!(kind));
    if kind == "event" {
        let defaults = [
            ("match", json!({})),
            ("match_related", json!({})),
            ("after", json!([])),
            ("expect", json!([])),
            ("for_each", json!([])),
            ("posture", json!("Reactive")),
            ("threshold", json!(1)),
            ("within", json!(0.0)),
        ];
        for (key, value) in defaults {
            trigger.entry(key.to_string()).or_insert(value);
        }
    }
    json!({
        "name": spec.get("name").cloned().unwrap_or(Value::Null),
        "description": spec.get("description").cloned().unwrap_or(json!("")),
        "enabled": spec.get("enabled").cloned().unwrap_or(json!(true)),
        "trigger": trigger,
        "actions": [{
            "type": "run-deployment",
            "source": "selected",
            "parameters": spec.get("parameters").cloned().unwrap_or(Value::Null),
            "job_variables": spec.get("job_variables").cloned().unwrap_or(Value::Null),
            "schedule_after": spec.get("schedule_after").cloned().unwrap_or(json!(0.0)),
        }],
        "actions_on_trigger": [],
        "actions_on_resolve": [],
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn ci_variables_give_the_version_in_prefects_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let github = env(&[
            ("GITHUB_SHA", "1234567890abcdef"),
            ("GITHUB_REF_NAME", "feature-x"),
            ("GITHUB_REPOSITORY", "acme/ghrepo"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("CI_COMMIT_SHA", "fedcba0987654321"),
            ("CI_COMMIT_REF_NAME", "main"),
            ("CI_PROJECT_NAME", "glrepo"),
        ]);
        let found = GitVersion::from_ci(github, true);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].kind, "vcs:github");
        assert_eq!(found[0].short_sha(), "12345678");
        assert_eq!(
            found[0].url,
            "https://github.com/acme/ghrepo/tree/1234567890abcdef"
        );
        // Without a checkout Prefect's getters fail (they read the commit message with git).
        assert!(GitVersion::from_ci(
            env(&[
                ("GITHUB_SHA", "1"),
                ("GITHUB_REF_NAME", "b"),
                ("GITHUB_REPOSITORY", "r")
            ]),
            false
        )
        .is_empty());
        // Incomplete variables: no version from that provider.
        assert!(GitVersion::from_ci(env(&[("GITHUB_SHA", "1")]), true).is_empty());

        assert_eq!(
            GitVersion::select(&found, None).map(|v| v.kind),
            Some("vcs:github")
        );
        assert_eq!(
            GitVersion::select(&found, Some("vcs:gitlab")).map(|v| v.kind),
            Some("vcs:gitlab")
        );
        assert_eq!(GitVersion::select(&found, Some("vcs:git")), None);
        assert_eq!(GitVersion::select(&found, Some("prefect:simple")), None);
    }

    // Server shapes: what a Prefect 3.9.1 server returned from GET /deployments/{id} for the
    // schedules the yaml items below create.
    #[test]
    fn yaml_schedules_match_the_server_shapes_they_create() {
        let now: jiff::Timestamp = "2026-11-27T04:28:17.634485Z".parse().unwrap();
        let want = |item: Value| {
            crate::prefect::schedule::parse_schedule(&item)
                .unwrap_or_else(|e| panic!("{item}: {e:?}"))
                .desired(now)
        };
        let server = |schedule: Value| json!({"schedule": schedule, "active": true, "max_scheduled_runs": null, "parameters": {}, "slug": null});
        // Equivalent: the plan keeps the server's schedule as it is (no write).
        let same = |s: &DesiredSchedule, have: &Value| {
            let mut have = have.clone();
            have["id"] = json!("s1");
            crate::sync::plan::reconcile_schedules(std::slice::from_ref(s), &[have]).is_empty()
        };
        let s = want(json!({"interval": 600}));
        assert!(same(
            &s,
            &server(
                json!({"interval": 600.0, "anchor_date": "2026-11-27T04:30:28.515295Z", "timezone": "UTC"})
            )
        ));
        assert!(!same(
            &s,
            &server(
                json!({"interval": 601.0, "anchor_date": "2026-11-27T04:30:28.515295Z", "timezone": "UTC"})
            )
        ));
        let s = want(json!({"interval": 600.5, "anchor_date": "2026-01-01T08:00:00Z"}));
        assert!(same(
            &s,
            &server(
                json!({"interval": 600.5, "anchor_date": "2026-01-01T10:00:00+02:00", "timezone": "UTC"})
            )
        ));
        assert!(!same(
            &s,
            &server(
                json!({"interval": 600.5, "anchor_date": "2026-01-01T10:00:00Z", "timezone": "UTC"})
            )
        ));
        let s = want(json!({"cron": "*/5 * * * *", "day_or": false}));
        assert!(same(
            &s,
            &server(json!({"cron": "*/5 * * * *", "timezone": null, "day_or": false}))
        ));
        assert!(!same(
            &s,
            &server(json!({"cron": "*/5 * * * *", "timezone": "UTC", "day_or": false}))
        ));
        assert!(!same(
            &s,
            &server(json!({"cron": "*/5 * * * *", "timezone": null, "day_or": true}))
        ));
        let s = want(json!({"rrule": "FREQ=MINUTELY;INTERVAL=7", "timezone": "Europe/Berlin"}));
        assert!(same(
            &s,
            &server(
                json!({"rrule": "DTSTART:20261127T052600\nFREQ=MINUTELY;INTERVAL=7", "timezone": "Europe/Berlin"})
            )
        ));
        let s = want(json!({"rrule": "FREQ=WEEKLY;BYDAY=MO,WE"}));
        assert!(same(
            &s,
            &server(
                json!({"rrule": "DTSTART:20200101T000000\nFREQ=WEEKLY;BYDAY=MO,WE", "timezone": "UTC"})
            )
        ));
        assert!(!same(
            &s,
            &server(
                json!({"rrule": "DTSTART:20200101T000000\nFREQ=WEEKLY;BYDAY=MO", "timezone": "UTC"})
            )
        ));
        let s = want(
            json!({"cron": "0 0 * * *", "active": false, "parameters": {"n": 2}, "slug": "s1"}),
        );
        let full = json!({"schedule": {"cron": "0 0 * * *", "timezone": null, "day_or": true}, "active": false, "max_scheduled_runs": null, "parameters": {"n": 2}, "slug": "s1"});
        assert!(same(&s, &full));
        let mut changed = full.clone();
        changed["parameters"] = json!({"n": 3});
        assert!(!same(&s, &changed));
        let mut changed = full.clone();
        changed["active"] = json!(true);
        assert!(!same(&s, &changed));
    }

    #[test]
    fn names_ending_in_py_are_registered_as_their_stem() {
        assert_eq!(registered_name("train_models.py"), "train_models");
        assert_eq!(registered_name("etl.v2.py"), "etl.v2");
        assert_eq!(registered_name("..py"), ".");
        assert_eq!(registered_name(".py"), ".py");
        assert_eq!(registered_name("nightly"), "nightly");
        assert_eq!(registered_name("copy.pyc"), "copy.pyc");
    }

    pub(crate) fn sample(name: &str) -> DesiredDeployment {
        let mut fields = Map::new();
        fields.insert("version".into(), json!("1.0"));
        fields.insert("description".into(), json!("A sample."));
        fields.insert("parameters".into(), json!({"n": 1}));
        fields.insert("concurrency_limit".into(), Value::Null);
        fields.insert("concurrency_options".into(), Value::Null);
        fields.insert("tags".into(), json!(["t"]));
        fields.insert("work_queue_name".into(), Value::Null);
        fields.insert("work_pool_name".into(), json!("pool"));
        fields.insert("job_variables".into(), json!({}));
        fields.insert("entrypoint".into(), json!("flows/a.py:a"));
        fields.insert(
            "parameter_openapi_schema".into(),
            json!({"title": "Parameters", "type": "object", "properties": {}}),
        );
        fields.insert("pull_steps".into(), json!([]));
        DesiredDeployment {
            name: name.into(),
            flow_name: "flow-a".into(),
            source: SourceLocation {
                file: "prefect.yaml".into(),
                line: 3,
            },
            fields,
            version_info: Some(json!({"type": "prefect:simple", "version": "1.0"})),
            schedules: Some(vec![DesiredSchedule {
                schedule: json!({"cron": "0 9 * * *", "timezone": "UTC", "day_or": true}),
                anchor_explicit: true,
                active: true,
                parameters: Map::new(),
                slug: None,
            }]),
            triggers: None,
            secrets: Default::default(),
        }
    }

    pub(crate) fn owner() -> Ownership {
        Ownership {
            project: "proj".into(),
            prefect_file: "prefect.yaml".into(),
        }
    }

    #[test]
    fn create_body_applies_prefect_defaults_and_labels() {
        let body = sample("d").create_body("flow-id", &owner());
        assert_eq!(body["paused"], json!(false));
        assert_eq!(body["enforce_parameter_schema"], json!(true));
        assert_eq!(
            body["labels"],
            json!({"xtask.project": "proj", "xtask.prefect-file": "prefect.yaml"})
        );
        assert_eq!(body["flow_id"], json!("flow-id"));
        assert_eq!(body["description"], json!("A sample."));
        assert_eq!(body["schedules"][0]["schedule"]["cron"], json!("0 9 * * *"));
        assert_eq!(body["schedules"][0]["slug"], Value::Null);
        assert_eq!(body["version_info"]["version"], json!("1.0"));
        // Stated values win over the defaults.
        let mut d = sample("d");
        d.fields.insert("paused".into(), json!(true));
        d.fields
            .insert("enforce_parameter_schema".into(), json!(false));
        d.schedules = None;
        let body = d.create_body("f", &owner());
        assert_eq!(body["paused"], json!(true));
        assert_eq!(body["enforce_parameter_schema"], json!(false));
        assert_eq!(body["schedules"], json!([]));
    }

    #[test]
    fn lean_create_body_leaves_out_only_server_defaults() {
        let d = sample("d");
        let (full, owner_) = (d.create_body("f", &owner()), owner());
        let (lean, defaulted) = d.lean_create_body("f", &owner_);
        for field in [
            "enforce_parameter_schema",
            "concurrency_limit",
            "concurrency_options",
        ] {
            assert!(full.get(field).is_some(), "{field} is in the full body");
            assert!(lean.get(field).is_none(), "{field} left out");
        }
        assert_eq!(
            Value::Object(defaulted),
            json!({"enforce_parameter_schema": true, "concurrency_limit": null, "concurrency_options": null})
        );
        // Everything else is sent as is.
        let mut rest = full.as_object().unwrap().clone();
        for field in [
            "enforce_parameter_schema",
            "concurrency_limit",
            "concurrency_options",
        ] {
            rest.remove(field);
        }
        assert_eq!(Value::Object(rest), lean);

        // Stated non-default values are sent; a limit keeps its options with it.
        let mut d = sample("d");
        d.fields
            .insert("enforce_parameter_schema".into(), json!(false));
        d.fields.insert("concurrency_limit".into(), json!(2));
        let (lean, defaulted) = d.lean_create_body("f", &owner());
        assert_eq!(lean["enforce_parameter_schema"], json!(false));
        assert_eq!(lean["concurrency_limit"], json!(2));
        assert_eq!(lean["concurrency_options"], Value::Null);
        assert!(defaulted.is_empty(), "{defaulted:?}");
    }

    #[test]
    fn ownership_round_trips_through_labels() {
        let labels = Value::Object(owner().labels());
        assert_eq!(Ownership::from_labels(&labels), Some(owner()));
        assert_eq!(
            Ownership::from_labels(&json!({"prefect.flow.id": "x"})),
            None
        );
        assert_eq!(Ownership::from_labels(&Value::Null), None);
    }

    #[test]
    fn automation_bodies_point_at_the_deployment() {
        let mut d = sample("d");
        d.triggers = Some(vec![json!({
            "name": "d__automation_1",
            "actions": [{"type": "run-deployment", "source": "selected", "parameters": {}}],
        })]);
        let bodies = d.automation_bodies("dep-1");
        assert_eq!(
            bodies[0]["owner_resource"],
            json!("prefect.deployment.dep-1")
        );
        assert_eq!(bodies[0]["actions"][0]["deployment_id"], json!("dep-1"));
    }

    #[test]
    fn duplicate_names_are_reported_with_both_locations() {
        let a = sample("same");
        let mut b = sample("same");
        b.source.line = 20;
        let mut errors = ValidationErrors::default();
        check_unique_names(&[a, b], &mut errors);
        assert_eq!(errors.problems.len(), 1);
        assert!(
            errors.problems[0].starts_with("prefect.yaml:20: deployment 'same':"),
            "{}",
            errors.problems[0]
        );
        assert!(errors.problems[0].contains("first at prefect.yaml:3"));
    }
}
