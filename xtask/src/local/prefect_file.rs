//! The few facts the local target needs from a prefect.yaml: deployment names and work pools.
//! (The full model with templating and validation is `crate::prefect::prefect_yaml`; this reads only
//! what `prefect deploy` needs to find before registering.)

use std::path::Path;

use anyhow::{bail, Context, Result};
use yaml_rust2::{Yaml, YamlLoader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSummary {
    pub name: String,
    pub pool: Option<String>,
}

/// Deployments in file order.
pub fn read(path: &Path) -> Result<Vec<DeploymentSummary>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    summarize(&text).with_context(|| format!("in {}", path.display()))
}

pub fn summarize(text: &str) -> Result<Vec<DeploymentSummary>> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("invalid YAML: {e}"))?;
    let Some(doc) = docs.first() else {
        bail!("the file is empty")
    };
    let Some(deployments) = doc["deployments"].as_vec() else {
        bail!("no `deployments:` list");
    };
    let mut out = Vec::new();
    for (i, deployment) in deployments.iter().enumerate() {
        let Some(name) = deployment["name"].as_str() else {
            bail!("deployment #{} has no `name`", i + 1);
        };
        let pool = match &deployment["work_pool"]["name"] {
            Yaml::String(pool) => Some(pool.clone()),
            _ => None,
        };
        out.push(DeploymentSummary {
            name: name.to_string(),
            pool,
        });
    }
    if out.is_empty() {
        bail!("`deployments:` is empty; nothing to deploy");
    }
    Ok(out)
}

/// Distinct work pools, first-seen order.
pub fn pools(deployments: &[DeploymentSummary]) -> Vec<String> {
    let mut pools: Vec<String> = Vec::new();
    for pool in deployments.iter().filter_map(|d| d.pool.as_ref()) {
        if !pools.contains(pool) {
            pools.push(pool.clone());
        }
    }
    pools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_pools() {
        let yaml = "deployments:\n  - name: a\n    work_pool:\n      name: p1\n  - name: b\n    work_pool: {name: p2}\n  - name: c\n    work_pool: {name: p1}\n  - name: d\n";
        let ds = summarize(yaml).unwrap();
        assert_eq!(
            ds.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(ds[3].pool, None);
        assert_eq!(pools(&ds), ["p1", "p2"]);
    }

    #[test]
    fn rejects_what_cannot_be_deployed() {
        for (yaml, expect) in [
            ("", "empty"),
            ("name: x\n", "no `deployments:`"),
            ("deployments: []\n", "is empty"),
            ("deployments:\n  - entrypoint: a.py:f\n", "#1 has no `name`"),
            ("deployments: [\n", "invalid YAML"),
        ] {
            let err = summarize(yaml).unwrap_err().to_string();
            assert!(err.contains(expect), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn reads_the_repository_files() {
        for file in ["prefect.yaml", "prefect-dev.yaml"] {
            let ds = read(&crate::project::repo_root().join(file)).unwrap();
            assert!(ds.len() >= 2, "{file}");
            assert_eq!(pools(&ds).len(), 1, "{file}");
        }
    }
}
