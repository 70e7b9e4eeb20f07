//! Loading the desired state: reads prefect.yaml and the flow files, runs the build/push steps,
//! asks git and the CI variables for a version, reads the blocks, variables and work pools the
//! yaml names from the server, and the clock; [`crate::sync::desired`] turns that into data.

use std::collections::hash_map::Entry;
use std::path::Path;

use anyhow::Context as _;
use serde_json::{Map, Value};

use crate::prefect::api::PrefectClient;
use crate::prefect::flow;
use crate::prefect::prefect_yaml;
use crate::prefect::resources_yaml::{Resources, TemplateDecl};
use crate::prefect::steps::Steps;
use crate::prefect::template::{self, PlaceholderKind, TemplateValues};
use crate::prefect::work_pool_template;
use crate::project::Project;
use crate::sync::desired::{
    check_unique_names, from_resolved, project_name, DesiredState, FieldError, FlowFile,
    GitVersion, Inferred, Ownership, SourceLocation, ValidationErrors,
};
use crate::sync::release::{Release, RELEASE_FILE};
use crate::sync::resources::{DesiredPool, DesiredResources};
use crate::sync::selection::Selection;
use crate::sys::env_vars::EnvVars;
use crate::sys::redact::{self, Secrets, SECRET_ENV_VARS};

/// Builds and validates the desired state of every deployment in the project's prefect file,
/// with `env` as the environment (`{{ $NAME }}`, build steps, CI variables). Without
/// `run_steps` the build/push steps are printed, not run, and their outputs stay placeholders.
/// Every problem (yaml, templates, flow files, work pools, duplicate names) is collected, each
/// with file:line and the deployment's name; if there is any, a [`ValidationErrors`] is returned
/// and nothing may be written.
pub(crate) fn desired_state(
    project: &Project,
    client: &PrefectClient,
    env: &EnvVars,
    run_steps: bool,
    selection: &Selection,
    prune: bool,
) -> anyhow::Result<DesiredState> {
    let label = project.prefect_file_label();
    let bytes = std::fs::read(&project.prefect_file).with_context(|| {
        format!(
            "cannot read {} (use --prefect-file to point at another file)",
            project.prefect_file.display()
        )
    })?;
    let mut file = prefect_yaml::parse(&label, &bytes).map_err(|diagnostics| ValidationErrors {
        problems: diagnostics.0.iter().map(ToString::to_string).collect(),
    })?;
    // `-n`: the other deployments are not loaded at all (as `prefect deploy -n`), so one that
    // does not validate does not stop the selected ones. With `--prune` a pattern may name a
    // deployment gone from the yaml: the engine checks it against the server.
    selection
        .retain_configs(&label, &mut file.deployments, prune)
        .map_err(|problem| ValidationErrors {
            problems: vec![problem],
        })?;
    let mut errors = ValidationErrors::default();
    let mut warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
    let selected: Vec<Steps> = file
        .deployments
        .iter()
        .map(|config| {
            let (build, push) = prefect_yaml::build_and_push_steps(&file, config);
            Steps { build, push }
        })
        .collect();
    let mut values = template_values(&file, &selected, client, env)?;
    // What output must not show, per deployment: the values its templates take from blocks and
    // environment variables, and the credentials this process holds. Known before any step
    // runs or any problem is reported, so every message is redacted from here on.
    let credentials = Secrets::new(
        SECRET_ENV_VARS
            .iter()
            .filter_map(|name| env.get(name).map(str::to_string)),
    );
    let secrets_of: Vec<Secrets> = file
        .deployments
        .iter()
        .map(|config| {
            let mut all = Value::Object(config.raw.clone());
            if let (Value::Object(map), Some(pull)) = (&mut all, &file.pull) {
                map.insert("file pull".into(), Value::Array(pull.clone()));
            }
            let mut secrets = Secrets::new(template::secret_values(
                &template::placeholders(&all),
                &values,
            ));
            secrets.extend(&credentials);
            redact::remember(&secrets);
            secrets
        })
        .collect();
    let source_of = |config: &prefect_yaml::DeploymentConfig| SourceLocation {
        file: label.clone(),
        line: config.line,
    };
    // Every deployment's steps are checked before any runs: when one cannot run natively, none
    // runs (their side effects would be wasted), and deployments with steps are not resolved.
    let mut steps_runnable = true;
    for (config, steps) in file.deployments.iter().zip(&selected) {
        for problem in crate::prefect::steps::check(steps) {
            errors.push(Some(&source_of(config)), Some(&config.name), problem);
            steps_runnable = false;
        }
    }
    let inferred = Inferred {
        git: detect_git_versions(&project.root, env),
        now: jiff::Timestamp::now(),
        working_directory: std::fs::canonicalize(&project.root)
            .unwrap_or_else(|_| project.root.clone())
            .display()
            .to_string(),
    };
    let mut deployments = Vec::new();
    let mut pools = Vec::new();
    let mut limits = Vec::new();
    for ((config, steps), secrets) in file.deployments.iter().zip(&selected).zip(&secrets_of) {
        let source = source_of(config);
        values.step_outputs = Map::new();
        if !steps.is_empty() {
            if !steps_runnable {
                continue;
            }
            if !run_steps {
                for line in crate::prefect::steps::describe(steps) {
                    eprintln!("deployment '{}': not run (dry run): {line}", config.name);
                }
                values.steps_not_run = true;
            } else {
                match crate::prefect::steps::run(steps, &project.root, &values, &config.name) {
                    Ok(outputs) => values.step_outputs = outputs,
                    Err(message) => {
                        errors.push(Some(&source), Some(&config.name), message);
                        continue;
                    }
                }
            }
        }
        let resolved = match prefect_yaml::resolve(&file, config, &values) {
            Ok(resolved) => resolved,
            Err(diagnostics) => {
                errors.problems.extend(
                    diagnostics
                        .0
                        .iter()
                        .map(|problem| secrets.mask_text(&problem.to_string())),
                );
                continue;
            }
        };
        if let Some(limit) = &resolved.global_concurrency_limit {
            limits.push(LimitUse {
                at: SourceLocation {
                    file: source.file.clone(),
                    line: config.position_of("concurrency_limit.global").0,
                },
                deployment: config.name.clone(),
                limit: limit.clone(),
            });
        }
        let has_triggers = config.raw.contains_key("triggers");
        // Checked even when the flow file has a problem: every problem is reported at once.
        pools.push(PoolUse {
            source: source.clone(),
            deployment: config.name.clone(),
            pool: resolved.work_pool.name.clone(),
        });
        let deployment = read_flow_file(&project.root, &resolved.entrypoint).and_then(|flow| {
            from_resolved(
                source.clone(),
                resolved,
                has_triggers,
                flow,
                &inferred,
                &mut warnings,
            )
        });
        match deployment {
            Ok(mut deployment) => {
                deployment.secrets = secrets.clone();
                deployments.push(deployment)
            }
            Err(FieldError { field, message }) => {
                // A parameter check echoes values; paths in other messages must stay readable.
                let message = if field == "parameters" {
                    secrets.mask_text(&message)
                } else {
                    message
                };
                // Point at the yaml key the problem is about, not just the deployment.
                let at = SourceLocation {
                    file: source.file.clone(),
                    line: config.position_of(field).0,
                };
                errors.push(Some(&at), Some(&config.name), message)
            }
        }
    }
    check_unique_names(&deployments, &mut errors);
    check_work_pools(&pools, &file.resources, client, &mut errors)?;
    check_global_limits(&limits, &file.resources, client, &mut errors)?;
    let resources = desired_resources(&file, &label, client, &mut errors)?;
    if !errors.is_empty() {
        return Err(errors.into());
    }
    Ok(DesiredState {
        owner: Ownership {
            project: project_name(&project.root, &file),
            prefect_file: label,
        },
        deployments,
        resources,
        warnings,
    })
}

/// The flow a deployment's `entrypoint` names, read from its file under `root`.
fn read_flow_file(root: &Path, entrypoint: &str) -> Result<FlowFile, FieldError> {
    let at_entrypoint = |message: String| FieldError {
        field: "entrypoint",
        message,
    };
    let entrypoint = flow::parse_entrypoint(entrypoint).map_err(at_entrypoint)?;
    let path = flow::locate_entrypoint_file(root, &entrypoint).map_err(at_entrypoint)?;
    let bytes = std::fs::read(&path)
        .map_err(|e| at_entrypoint(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let relative = path.strip_prefix(root).unwrap_or(&path);
    // The project modules the flow imports (its decorator, aliases, models) are read too.
    let read_project_file = |file: &Path| std::fs::read_to_string(root.join(file)).ok();
    let flow = flow::read_project_flow(&entrypoint, relative, &text, &read_project_file)
        .map_err(|e| at_entrypoint(e.to_string()))?;
    Ok(FlowFile {
        flow,
        file_version: flow::file_version_hash(&bytes),
    })
}

/// Blocks and variables the templates (deployments and their build/push steps) name, read once
/// each (one GET per distinct name), and the environment.
fn template_values(
    file: &prefect_yaml::PrefectFile,
    steps: &[Steps],
    client: &PrefectClient,
    env: &EnvVars,
) -> anyhow::Result<TemplateValues> {
    let mut values = TemplateValues {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..TemplateValues::default()
    };
    for (config, steps) in file.deployments.iter().zip(steps) {
        for placeholder in config
            .placeholders()
            .into_iter()
            .chain(steps.placeholders())
        {
            match placeholder.kind {
                PlaceholderKind::Block { slug, name, .. } => {
                    if let Entry::Vacant(slot) = values.blocks.entry((slug.clone(), name.clone())) {
                        let document = client
                            .read_block_document(&slug, &name)
                            .with_context(|| format!("cannot read block '{slug}/{name}'"))?;
                        slot.insert(
                            document.map(|d| d.get("data").cloned().unwrap_or(Value::Null)),
                        );
                    }
                }
                PlaceholderKind::Variable { name } => {
                    if let Entry::Vacant(slot) = values.variables.entry(name.clone()) {
                        // Declared in the same file: the value it will have once applied (no
                        // chicken-and-egg on a fresh server).
                        if let Some(declared) = file.resources.variable(&name) {
                            slot.insert(Some(declared.value.clone()));
                            continue;
                        }
                        let variable = client
                            .read_variable(&name)
                            .with_context(|| format!("cannot read variable '{name}'"))?;
                        slot.insert(
                            variable.map(|v| v.get("value").cloned().unwrap_or(Value::Null)),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    Ok(values)
}

/// Every version source that works here, in Prefect's order (the first one is used by default):
/// the CI variables of `env`, then the checkout's `origin` commit.
fn detect_git_versions(root: &Path, env: &EnvVars) -> Vec<GitVersion> {
    let git = |args: &[&str]| -> Option<String> {
        let text = crate::sys::process::git(root, args, env).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    // Prefect's CI getters also read the commit message with git: no checkout, no CI version.
    let in_checkout = git(&["log", "-1", "--pretty=%B"]).is_some();
    let mut found = GitVersion::from_ci(
        |name| env.get(name).filter(|v| !v.is_empty()).map(str::to_string),
        in_checkout,
    );
    if let (Some(url), Some(commit_sha)) = (
        git(&["config", "--get", "remote.origin.url"]),
        git(&["rev-parse", "HEAD"]),
    ) {
        found.push(GitVersion {
            kind: "vcs:git",
            commit_sha,
            branch: git(&["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_default(),
            url: crate::sys::redact::mask_url_credentials(&url),
        });
    }
    found
}

/// A deployment's work pool, to check on the server.
struct PoolUse {
    source: SourceLocation,
    deployment: String,
    pool: Option<String>,
}

/// Every distinct work pool must be declared in `work_pools` or exist on the server (one GET
/// each) and not be a `prefect-agent` pool; a declared pool that exists must have the declared
/// type (Prefect cannot change a pool's type).
fn check_work_pools(
    uses: &[PoolUse],
    resources: &Resources,
    client: &PrefectClient,
    errors: &mut ValidationErrors,
) -> anyhow::Result<()> {
    for pool in &resources.work_pools {
        let found = client
            .read_work_pool(&pool.name)
            .with_context(|| format!("cannot check work pool '{}'", pool.name))?;
        let server_type = found
            .as_ref()
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str);
        if let Some(server_type) = server_type.filter(|t| *t != pool.pool_type) {
            errors.push(
                Some(&SourceLocation {
                    file: resources_file(uses),
                    line: pool.line,
                }),
                None,
                format!(
                    "work pool '{}': declared with type '{}', but the server's pool is of type '{server_type}'; Prefect cannot change a pool's type (delete the pool by hand, or declare type '{server_type}')",
                    pool.name, pool.pool_type
                ),
            );
        }
    }
    let mut checked: std::collections::HashMap<&str, Result<(), String>> =
        std::collections::HashMap::new();
    for using in uses {
        let Some(pool) = using.pool.as_deref() else {
            errors.push(
                Some(&using.source),
                Some(&using.deployment),
                "a work pool is required: set `work_pool.name`",
            );
            continue;
        };
        if resources.pool(pool).is_some() {
            continue;
        }
        if !checked.contains_key(pool) {
            let verdict = match client.read_work_pool(pool) {
                Ok(None) => Err(format!(
                    "work pool '{pool}' is neither declared in `work_pools` nor on the server, so no worker could run this deployment; declare it (`work_pools: [{{name: {pool}, type: process}}]`) or create it first"
                )),
                Ok(Some(found)) if found.get("type").and_then(Value::as_str) == Some("prefect-agent") => {
                    Err(format!("work pool '{pool}' is of type 'prefect-agent', which project deployments cannot use"))
                }
                Ok(Some(_)) => Ok(()),
                Err(err) => return Err(anyhow::Error::new(err).context(format!("cannot check work pool '{pool}'"))),
            };
            checked.insert(pool, verdict);
        }
        if let Some(Err(message)) = checked.get(pool) {
            errors.push(Some(&using.source), Some(&using.deployment), message);
        }
    }
    Ok(())
}

/// The release this image is: the release file the image build wrote into the app directory
/// (`root`), else the image reference Fly gives the release Machine (`FLY_IMAGE_REF`); None in a
/// checkout, which then leaves each deployment's recorded release as it is (docs/releases.md).
pub fn image_release(root: &Path, env: &EnvVars) -> anyhow::Result<Option<Release>> {
    let path = root.join(RELEASE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Some(release) = Release::parse_file(&text).map_err(anyhow::Error::msg)? {
                return Ok(Some(release));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => anyhow::bail!("cannot read {}: {err}", path.display()),
    }
    Ok(env
        .get("FLY_IMAGE_REF")
        .filter(|image| !image.is_empty())
        .and_then(Release::from_image_ref))
}

/// The file label for a location when only the uses know it.
fn resources_file(uses: &[PoolUse]) -> String {
    uses.first()
        .map(|u| u.source.file.clone())
        .unwrap_or_else(|| "prefect.yaml".to_string())
}

/// A deployment's `concurrency_limit: {global: NAME}`, to check.
struct LimitUse {
    at: SourceLocation,
    deployment: String,
    limit: String,
}

/// A global limit a deployment names must be declared in `concurrency_limits` or exist on the
/// server (one GET per distinct undeclared name).
fn check_global_limits(
    uses: &[LimitUse],
    resources: &Resources,
    client: &PrefectClient,
    errors: &mut ValidationErrors,
) -> anyhow::Result<()> {
    let mut exists: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
    for using in uses {
        if resources.limit(&using.limit).is_some() {
            continue;
        }
        let found = match exists.get(using.limit.as_str()) {
            Some(found) => *found,
            None => {
                let found = client
                    .get(&format!(
                        "/v2/concurrency_limits/{}",
                        crate::prefect::api::encode_segment(&using.limit)
                    ))
                    .with_context(|| {
                        format!("cannot check global concurrency limit '{}'", using.limit)
                    })?
                    .is_some();
                exists.insert(&using.limit, found);
                found
            }
        };
        if !found {
            errors.push(
                Some(&using.at),
                Some(&using.deployment),
                format!(
                    "global concurrency limit '{}' is neither declared in `concurrency_limits` nor on the server; declare it (`concurrency_limits: [{{name: {}, limit: 1}}]`)",
                    using.limit, using.limit
                ),
            );
        }
    }
    Ok(())
}

/// The declared work pools with their base job templates (the type's default with the
/// `job_variables` set, or the stated template), limits and variables.
fn desired_resources(
    file: &prefect_yaml::PrefectFile,
    label: &str,
    _client: &PrefectClient,
    errors: &mut ValidationErrors,
) -> anyhow::Result<DesiredResources> {
    let mut pools = Vec::new();
    for decl in &file.resources.work_pools {
        let at = SourceLocation {
            file: label.to_string(),
            line: decl.line,
        };
        let default = work_pool_template::default_template(&decl.pool_type);
        let unknown_type = || {
            format!(
                "work pool '{}': Prefect 3.9.1 knows no default base job template for type '{}' offline (known: {}); state the whole `base_job_template`",
                decl.name,
                decl.pool_type,
                work_pool_template::known_types().join(", ")
            )
        };
        let template = match &decl.template {
            TemplateDecl::Full(template) => Some(template.clone()),
            TemplateDecl::Overrides(overrides) => match &default {
                Some(base) => match work_pool_template::with_job_variables(base, overrides) {
                    Ok(template) => Some(template),
                    Err(problem) => {
                        errors.push(
                            Some(&at),
                            None,
                            format!("work pool '{}': {problem}", decl.name),
                        );
                        continue;
                    }
                },
                None => {
                    errors.push(Some(&at), None, unknown_type());
                    continue;
                }
            },
            TemplateDecl::Unstated => None,
        };
        let Some(create_template) = template.clone().or(default) else {
            errors.push(Some(&at), None, unknown_type());
            continue;
        };
        pools.push(DesiredPool {
            decl: decl.clone(),
            template,
            create_template,
        });
    }
    Ok(DesiredResources {
        file: label.to_string(),
        pools,
        limits: file.resources.concurrency_limits.clone(),
        variables: file.resources.variables.clone(),
    })
}
