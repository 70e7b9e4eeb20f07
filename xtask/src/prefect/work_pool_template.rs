//! A work pool type's default base job template, and the pool-level `job_variables` merged into
//! it (pure).
//!
//! Where Prefect 3.9.1 gets the default offline (`workers/utilities.py`,
//! `get_default_base_job_template_for_infrastructure_type`, used by `prefect work-pool create`
//! and by a worker that creates its pool): the worker class of the type when it is installed
//! (`process` ships with Prefect: `ProcessWorker.get_default_base_job_template()`), else the
//! collections registry's worker metadata, of which the server bundles a copy
//! (`server/api/collections_data/views/aggregate-worker-metadata.json`, served offline). The
//! embedded `base_job_templates.json` holds exactly those: `process` from the worker class, the
//! other types from the bundled metadata; `tests/it/resources.rs` proves both against the
//! installed Prefect. Regenerate it with the script in docs/resources.md after a Prefect upgrade.
//!
//! A pool-level job variable is the `default` of that variable in the template's
//! `variables.properties` (what the UI's "Defaults" edits): a worker starts from these defaults
//! and lays the deployment's `job_variables` over them (`BaseJobConfiguration.from_template_and_values`;
//! `env` merged key by key), so the deployment still wins.

use serde_json::{Map, Value};

const DEFAULTS: &str = include_str!("base_job_templates.json");

/// The types with an embedded default template.
pub fn known_types() -> Vec<String> {
    match serde_json::from_str::<Value>(DEFAULTS) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The default base job template of `pool_type`, None when Prefect 3.9.1 knows no such type offline.
pub fn default_template(pool_type: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(DEFAULTS) {
        Ok(Value::Object(mut map)) => map.remove(pool_type),
        _ => None,
    }
}

/// `template` with each of `job_variables` set as its variable's default; an error names the
/// variables the template does not have.
pub fn with_job_variables(
    template: &Value,
    job_variables: &Map<String, Value>,
) -> Result<Value, String> {
    let mut out = template.clone();
    let Some(properties) = out
        .get_mut("variables")
        .and_then(|v| v.get_mut("properties"))
        .and_then(Value::as_object_mut)
    else {
        return Err("the base job template has no `variables.properties`".into());
    };
    let unknown: Vec<&str> = job_variables
        .keys()
        .filter(|k| !properties.contains_key(k.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let mut known: Vec<&str> = properties.keys().map(String::as_str).collect();
        known.sort_unstable();
        return Err(format!(
            "`job_variables` names {} that the type's base job template does not have; it has: {}",
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        ));
    }
    for (key, value) in job_variables {
        if let Some(Value::Object(property)) = properties.get_mut(key) {
            property.insert("default".into(), value.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_embedded_template_is_one_prefect_accepts() {
        let types = known_types();
        for t in [
            "process",
            "docker",
            "kubernetes",
            "ecs",
            "cloud-run",
            "cloud-run-v2",
            "vertex-ai",
            "azure-container-instance",
        ] {
            assert!(types.iter().any(|k| k == t), "{t} missing");
            let template = default_template(t).unwrap();
            assert_eq!(
                crate::prefect::resources_yaml::template_problem(&template),
                None,
                "{t}"
            );
        }
        assert_eq!(default_template("no-such-type"), None);
    }

    #[test]
    fn job_variables_become_the_defaults_of_the_templates_variables() {
        let base = default_template("process").unwrap();
        let vars = json!({"env": {"A": "1"}, "working_dir": "/app"});
        let merged = with_job_variables(&base, vars.as_object().unwrap()).unwrap();
        let props = &merged["variables"]["properties"];
        assert_eq!(props["env"]["default"], json!({"A": "1"}));
        assert_eq!(props["working_dir"]["default"], json!("/app"));
        // Nothing else moves: the job configuration and the other variables are the type's.
        assert_eq!(merged["job_configuration"], base["job_configuration"]);
        assert_eq!(props["command"], base["variables"]["properties"]["command"]);
        let err =
            with_job_variables(&base, json!({"image": "x"}).as_object().unwrap()).unwrap_err();
        assert!(
            err.starts_with("`job_variables` names `image` that the type's base job template does not have; it has: command, env, labels, name, stream_output, working_dir"),
            "{err}"
        );
    }
}
