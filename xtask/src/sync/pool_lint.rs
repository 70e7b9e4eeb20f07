//! The pool naming lint `deploy` runs before planning: a deployment and its work pool belong to
//! one environment (prod or dev), and to the one being deployed. Pure.

use crate::prefect::prefect_yaml::PrefectFile;
use crate::project::Env;

/// A deployment's name and work pool, as written in prefect.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentPool {
    pub name: String,
    /// Line of the deployment in the file (for messages).
    pub line: usize,
    pub pool: Option<String>,
}

/// The environment a name belongs to, from its `-`/`_`/`.`-separated words: `prod`/`production`
/// or `dev`/`development`. `None` when it names neither (or both).
pub(crate) fn env_of(name: &str) -> Option<Env> {
    let mut found = None;
    for word in name.split(['-', '_', '.']) {
        let env = match word.to_ascii_lowercase().as_str() {
            "prod" | "production" => Env::Prod,
            "dev" | "development" => Env::Dev,
            _ => continue,
        };
        if found.is_some_and(|f| f != env) {
            return None;
        }
        found = Some(env);
    }
    found
}

/// Refuses a dev deployment on a prod pool and vice versa, and deployments or pools of the
/// other environment than the one being deployed. The rule comes from the names themselves
/// (`captionacc-prod-*` → `captionacc-workers-prod`), so new deployments need no list update.
pub fn lint_pool_names(deployments: &[DeploymentPool], target: Env) -> Vec<String> {
    let mut problems = Vec::new();
    for d in deployments {
        let name_env = env_of(&d.name);
        let pool_env = d.pool.as_deref().and_then(env_of);
        let pool = d.pool.as_deref().unwrap_or("(none)");
        match (name_env, pool_env) {
            (Some(n), Some(p)) if n != p => problems.push(format!(
                "line {}: deployment `{}` is a {} deployment but uses the {} pool `{pool}`",
                d.line,
                d.name,
                n.name(),
                p.name()
            )),
            (n, p) => {
                if let Some(env) = n.or(p).filter(|e| *e != target) {
                    problems.push(format!(
                        "line {}: deployment `{}` (pool `{pool}`) belongs to {} but this is a {} deploy",
                        d.line,
                        d.name,
                        env.name(),
                        target.name()
                    ));
                }
            }
        }
    }
    problems
}

/// Names and pools of a parsed prefect.yaml's deployments (as written, before templating).
pub fn deployment_pools(file: &PrefectFile) -> Vec<DeploymentPool> {
    file.deployments
        .iter()
        .map(|d| DeploymentPool {
            name: d.name.clone(),
            line: d.line,
            pool: d.work_pool_name().map(str::to_string),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefect::prefect_yaml;

    fn dp(name: &str, pool: Option<&str>) -> DeploymentPool {
        DeploymentPool {
            name: name.into(),
            line: 1,
            pool: pool.map(String::from),
        }
    }

    #[test]
    fn env_from_name_words() {
        assert_eq!(env_of("captionacc-prod-video"), Some(Env::Prod));
        assert_eq!(env_of("captionacc-workers-dev"), Some(Env::Dev));
        assert_eq!(env_of("my_production.pool"), Some(Env::Prod));
        assert_eq!(env_of("captionacc-video"), None);
        // Words, not substrings: "product", "devices" name no environment.
        assert_eq!(env_of("product-devices"), None);
        assert_eq!(env_of("prod-to-dev-copy"), None);
    }

    #[test]
    fn accepts_matching_pools() {
        let prod = [
            dp(
                "captionacc-prod-video-initial-processing",
                Some("captionacc-workers-prod"),
            ),
            dp(
                "captionacc-prod-caption-cleanup",
                Some("captionacc-workers-prod"),
            ),
            dp("neutral", Some("shared-pool")),
            dp("neutral-no-pool", None),
        ];
        assert_eq!(lint_pool_names(&prod, Env::Prod), Vec::<String>::new());
        let dev = [dp("captionacc-dev-video", Some("captionacc-workers-dev"))];
        assert_eq!(lint_pool_names(&dev, Env::Dev), Vec::<String>::new());
    }

    #[test]
    fn refuses_crossed_pools() {
        let problems = lint_pool_names(
            &[
                dp("captionacc-dev-video", Some("captionacc-workers-prod")),
                dp("captionacc-prod-video", Some("captionacc-workers-dev")),
            ],
            Env::Prod,
        );
        assert_eq!(
            problems,
            [
                "line 1: deployment `captionacc-dev-video` is a dev deployment but uses the prod pool `captionacc-workers-prod`",
                "line 1: deployment `captionacc-prod-video` is a prod deployment but uses the dev pool `captionacc-workers-dev`",
            ]
        );
    }

    #[test]
    fn refuses_the_other_environment() {
        let problems = lint_pool_names(
            &[dp("captionacc-dev-video", Some("captionacc-workers-dev"))],
            Env::Prod,
        );
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("belongs to dev but this is a prod deploy"),
            "{}",
            problems[0]
        );
        let problems = lint_pool_names(&[dp("video", Some("captionacc-workers-prod"))], Env::Dev);
        assert!(
            problems[0].contains("belongs to prod but this is a dev deploy"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn reads_names_and_pools() {
        let text = "
definitions:
  pools:
    prod: &prod
      work_pool:
        name: captionacc-workers-prod
deployments:
  - name: a
    work_pool: {name: p1}
  - <<: *prod
    name: b
";
        let file = prefect_yaml::parse("prefect.yaml", text.as_bytes()).unwrap();
        let got = deployment_pools(&file);
        let want = [
            DeploymentPool {
                name: "a".into(),
                line: 8,
                pool: Some("p1".into()),
            },
            DeploymentPool {
                name: "b".into(),
                line: 10,
                pool: Some("captionacc-workers-prod".into()),
            },
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn the_project_yaml_files_pass_the_lint() {
        let root = crate::project::repo_root();
        for (file, env) in [("prefect.yaml", Env::Prod), ("prefect-dev.yaml", Env::Dev)] {
            let bytes = std::fs::read(root.join(file)).unwrap();
            let deployments = deployment_pools(&prefect_yaml::parse(file, &bytes).unwrap());
            assert!(!deployments.is_empty(), "{file}");
            assert_eq!(
                lint_pool_names(&deployments, env),
                Vec::<String>::new(),
                "{file}"
            );
            let other = if env == Env::Prod {
                Env::Dev
            } else {
                Env::Prod
            };
            assert_eq!(
                lint_pool_names(&deployments, other).len(),
                deployments.len(),
                "{file}"
            );
        }
    }
}
