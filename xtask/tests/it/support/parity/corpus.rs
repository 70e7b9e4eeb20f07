//! The 40 real prefect.yaml files (xtask/tests/fixtures/yaml/corpus/, from
//! ../shared/corpus/prefect-yaml/) as parity cases: how each is made runnable here, or why it
//! cannot be (docs/parity.md repeats every reason).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Case, Selection, Setup};
use crate::support::fixtures;

/// What the parity test does with one corpus file.
pub enum Plan {
    /// Both engines register it; the servers must end up identical.
    Run(Recipe),
    /// Prefect 3.9.1 does not register it (or only part of it), or it needs what this machine
    /// lacks. xtask must refuse it without writing anything.
    Refused {
        reason: &'static str,
        pools: &'static [&'static str],
    },
}

/// How to make a file runnable here.
#[derive(Default)]
pub struct Recipe {
    /// Environment variables the yaml references.
    pub env: &'static [(&'static str, &'static str)],
    /// Prefect variables it references (name, JSON text).
    pub variables: &'static [(&'static str, &'static str)],
    /// Top-level sections replaced by other YAML (`build`/`push` steps that need docker, git or
    /// the network): (section key, replacement text including the key, why).
    pub sections: &'static [(&'static str, &'static str, &'static str)],
    /// Plain text replacements applied after the sections (from, to).
    pub replace: &'static [(&'static str, &'static str)],
}

pub struct Entry {
    /// The file's number in the corpus INDEX.md.
    pub id: u32,
    pub file: &'static str,
    pub plan: Plan,
}

const NO_ENV: &[(&str, &str)] = &[];

pub fn entries() -> Vec<Entry> {
    use Plan::*;
    let run = |env, sections, replace, variables| {
        Run(Recipe {
            env,
            variables,
            sections,
            replace,
        })
    };
    let plain = || Run(Recipe::default());
    vec![
        Entry { id: 1, file: "2024mt03579__airlines-prefect-workflow__prefect.yaml", plan: plain() },
        Entry {
            id: 2,
            file: "3commacapital__prefect-flows__prefect.yaml",
            plan: Refused {
                reason: "schedules carry `max_active_runs`/`catchup` (Prefect 3.0 wrote them): Prefect 3.9.1 rejects \
                         the whole file and stops with \"An entrypoint must be provided\"",
                pools: &[],
            },
        },
        Entry {
            id: 3,
            file: "9MRTAE__ingest-aws-s3__prefect.yaml",
            plan: run(
                &[
                    ("PREFECT_IMAGE", "registry.example/ingest:1.0"),
                    ("CI_COMMIT_BRANCH", "main"),
                    ("JOB_BACKDATE", "3"),
                    ("JOB_STARTDATE", "2026-01-01"),
                    ("JOB_ENDDATE", "2026-01-31"),
                ],
                &[],
                &[],
                &[],
            ),
        },
        Entry { id: 4, file: "9xxxxxx__meprefect__prefect.yaml", plan: plain() },
        Entry {
            id: 5,
            file: "AloisCRR__repossessed-assets__prefect.yaml",
            plan: Refused {
                reason: "`tags` holds a list (an alias to a list inside a list): Prefect stores the tag \
                         \"['etl', 'scraping']\" (Python's repr); xtask refuses a non-string tag",
                pools: &[],
            },
        },
        Entry {
            id: 6,
            file: "Aniekan-Udo__ML-pipeline__prefect.yaml",
            plan: Refused { reason: "no `work_pool`: Prefect stops at the first deployment (\"A work pool is required\")", pools: &[] },
        },
        Entry {
            id: 7,
            file: "AnnaVitry__MLOPS_MLFactory_automatisation__prefect.yaml",
            plan: run(
                &[("AWS_ACCESS_KEY_ID", "parity-key-id"), ("AWS_SECRET_ACCESS_KEY", "parity-secret-key")],
                &[(
                    "build",
                    "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: build-image\n      script: echo mlfactory-worker:latest\n",
                    "the docker image build is replaced by a run_shell_script that prints the image it would build",
                )],
                &[("{{ build-image.image }}", "{{ build-image.stdout }}")],
                &[],
            ),
        },
        Entry { id: 8, file: "Armegas__iris-mlops-bot__prefect.yaml", plan: plain() },
        Entry { id: 9, file: "ArthurZakirov__sheets-to-postgresql__prefect.yaml", plan: plain() },
        Entry { id: 10, file: "Artoss__labour_market_AU__prefect.yaml", plan: plain() },
        Entry { id: 11, file: "BTHiggins__WeatherData__prefect.yaml", plan: plain() },
        Entry { id: 12, file: "Ben-Epstein__prefect-modal__prefect.yaml", plan: plain() },
        Entry { id: 13, file: "Ben-Epstein__prefect-quickstart__prefect.yaml", plan: plain() },
        Entry {
            id: 14,
            file: "CAJ2__sage-databot__prefect.yaml",
            plan: Refused { reason: "`entrypoint: null` (and docker build/push steps): Prefect stops with \"An entrypoint must be provided\"", pools: &[] },
        },
        Entry {
            id: 15,
            file: "CBIIT__CCDI-Hub-Prefect-Dataloader__prefect.yaml",
            plan: run(NO_ENV, &[], &[], &[("ccdi_dataloader_sandbox_secret_name", "\"ccdi/sandbox/loader\"")]),
        },
        Entry { id: 16, file: "CBIIT__ChildhoodCancerDataInitiative-Prefect_Pipeline__kids-first-prefect.yaml", plan: plain() },
        Entry {
            id: 17,
            file: "CBIIT__prefect-toolkit__prefect.yaml",
            plan: Refused { reason: "`parameters:` with no value (null): Prefect 3.9.1 rejects the whole file", pools: &[] },
        },
        Entry {
            id: 18,
            file: "CLDC-OU__ExampleMessagerFlow__prefect.yaml",
            plan: run(
                NO_ENV,
                &[(
                    "build",
                    "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: get-latest-tag\n      stream_output: false\n      script: echo v1.4.2\n",
                    "the run_shell_script asks api.github.com for the latest release tag; here it prints a fixed tag",
                )],
                &[],
                &[],
            ),
        },
        Entry {
            id: 19,
            file: "Cam0505__CamOnPrefect__prefect.yaml",
            plan: Refused { reason: "no deployment has an `entrypoint`: Prefect stops with \"An entrypoint must be provided\"", pools: &["camprocess1"] },
        },
        Entry {
            id: 20,
            file: "Cobrachainsaw__ETL_V1__prefect__prefect.yaml",
            plan: Refused { reason: "`version: 1.0` is a float: Prefect 3.9.1 rejects the whole file", pools: &["ecg_queue"] },
        },
        Entry {
            id: 21,
            file: "EWECORP__PREFECT_DIARCO__prefect_-_FUTURO.yaml",
            plan: Refused {
                reason: "two deployments have no `work_pool`: Prefect registers the first ten, then stops (\"A work pool is \
                         required\"); xtask validates everything first and writes nothing",
                pools: &["dmz-diarco"],
            },
        },
        Entry {
            id: 22,
            file: "Honglin-Jiang__ba882-sec-team__prefect.yaml",
            plan: Refused { reason: "schedules carry `max_active_runs`/`catchup`: Prefect 3.9.1 rejects the whole file", pools: &["ba882-team9-schedule", "ba882-team9-autorun"] },
        },
        Entry { id: 23, file: "Kyytox__russia_ukraine_war_analytics_hub__prefect.yaml", plan: plain() },
        Entry {
            id: 24,
            file: "OlegPodlipalin__prefect-flows__prefect.yaml",
            plan: run(
                &[("PARENT_DIR_PATH", "/srv/kedro/"), ("WORKPOOL_NAME", "parity-kedro-pool"), ("HOST_DIR_PATH", "/host/kedro/")],
                &[],
                &[],
                &[],
            ),
        },
        Entry { id: 25, file: "PrefectHQ__demos__demos__crypto_prices__prefect.yaml", plan: plain() },
        Entry {
            id: 26,
            file: "PrefectHQ__prefect-demos__prefect.yaml",
            plan: Refused { reason: "not valid YAML (aliases to anchors that are never defined): Prefect skips the file", pools: &[] },
        },
        Entry { id: 27, file: "PrefectHQ__prefect-recipes__flows-advanced__using_state_hooks__prefect.yaml", plan: plain() },
        Entry {
            id: 28,
            file: "PrefectHQ__prefect__src__prefect__deployments__recipes__docker-git__prefect.yaml",
            plan: Refused { reason: "`prefect init` recipe: name, entrypoint and work pool are null placeholders", pools: &[] },
        },
        Entry {
            id: 29,
            file: "PrefectHQ__prefect__src__prefect__deployments__templates__prefect.yaml",
            plan: Refused { reason: "`prefect init` template: name, entrypoint and work pool are null placeholders", pools: &[] },
        },
        Entry { id: 30, file: "PrefectHQ__prefect__tests__cli__test_deploy.py__inline-trigger-event-template-params.yaml", plan: plain() },
        Entry { id: 31, file: "PrefectHQ__prefect__tests__cli__test_deploy.py__inline-trigger-prefect-kind-jinja-params.yaml", plan: plain() },
        Entry {
            id: 32,
            file: "amackojc__prefect-aks-ml__prefect__prefect.yaml",
            plan: run(
                &[("AZURE_STORAGE_ACCESS_KEY", "parity-azure-key")],
                &[
                    (
                        "build",
                        "build:\n- prefect.deployments.steps.run_shell_script:\n    id: build-image\n    script: echo prefect17245984157znv.azurecr.io/prefect-gpu:v0.1.45\n",
                        "the docker image build is replaced by a run_shell_script that prints the image it would build",
                    ),
                    ("push", "push: null\n", "pushing an image needs docker and a registry"),
                ],
                &[("{{ build-image.image }}", "{{ build-image.stdout }}")],
                &[],
            ),
        },
        Entry {
            id: 33,
            file: "datopian__preflow__flows__prefect.yaml",
            plan: Refused { reason: "`schedule: []` (a list for the singular key): Prefect 3.9.1 rejects the whole file", pools: &["default"] },
        },
        Entry {
            id: 34,
            file: "dijarvrella__prefect-flows__prefect.yaml",
            plan: Refused { reason: "`version: 1.0` is a float: Prefect 3.9.1 rejects the whole file", pools: &["seedoo-custom-worker"] },
        },
        Entry {
            id: 35,
            file: "domoench__prefect-df__flows__deployments__etl_flow.yaml",
            plan: run(
                NO_ENV,
                &[
                    (
                        "build",
                        "build:\n- prefect.deployments.steps.run_shell_script:\n    id: build_image\n    script: echo 326060909633.dkr.ecr.us-west-2.amazonaws.com/prefect-df/flows/etl_flow:latest\n- prefect.deployments.steps.run_shell_script:\n    id: build_image_tag\n    script: echo latest\n",
                        "the docker image build is replaced by run_shell_scripts that print the image and tag it would build",
                    ),
                    ("push", "push: null\n", "pushing an image needs docker and a registry"),
                ],
                &[("{{ build_image.image }}", "{{ build_image.stdout }}"), ("{{ build_image.tag }}", "{{ build_image_tag.stdout }}")],
                &[],
            ),
        },
        Entry {
            id: 36,
            file: "felipesabate-pullpodev__Proyecto_Moss__prefect__prefect.yaml",
            plan: Refused {
                reason: "Windows absolute entrypoint `C:/Users/…/main.py:daily_flow`: Prefect on Linux reads it as a \
                         relative path (it registers only if a directory named `C:` exists); xtask refuses absolute \
                         entrypoints",
                pools: &["mi_work_pool"],
            },
        },
        Entry { id: 37, file: "hyperrealist__srx-workflows__prefect-dev.yaml", plan: plain() },
        Entry {
            id: 38,
            file: "tig0826__prefect-workflow__dqx__prefect.yaml",
            plan: run(
                NO_ENV,
                &[
                    ("build", "build: null\n", "a docker image build needs docker (its outputs are used only by the push step)"),
                    ("push", "push: null\n", "pushing an image needs docker and a registry"),
                ],
                &[],
                &[("dqx_image_name", "\"tig0826/dqx\"")],
            ),
        },
        Entry {
            id: 39,
            file: "webcodelabb__AI-DataOps-Pipeline__prefect__prefect.yaml",
            plan: Refused { reason: "no `work_pool`: Prefect stops with \"A work pool is required\"", pools: &[] },
        },
        Entry {
            id: 40,
            file: "wsargent__prefect-notifications__prefect__prefect.yaml",
            plan: run(NO_ENV, &[("push", "push: null\n", "pushing to S3 needs prefect-aws and the network")], &[], &[]),
        },
    ]
}

pub fn corpus_dir() -> PathBuf {
    fixtures("yaml/corpus")
}

/// The corpus yaml with the recipe's edits applied.
pub fn edited_yaml(entry: &Entry, recipe: &Recipe) -> String {
    let path = corpus_dir().join(entry.file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::from_utf8(bytes).unwrap();
    for (key, replacement, _why) in recipe.sections {
        text = replace_section(&text, key, replacement)
            .unwrap_or_else(|| panic!("{}: no top-level `{key}:`", entry.file));
    }
    for (from, to) in recipe.replace {
        assert!(text.contains(from), "{}: `{from}` not found", entry.file);
        text = text.replace(from, to);
    }
    text
}

/// Replaces the top-level `key:` section (up to the next top-level key) with `replacement`.
fn replace_section(text: &str, key: &str, replacement: &str) -> Option<String> {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(&format!("{key}:")))?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| {
            l.chars()
                .next()
                .is_some_and(|c| !c.is_whitespace() && c != '#' && c != '-')
        })
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out: String = lines[..start].concat();
    out.push_str(&replacement.replace('\n', eol));
    out.push_str(&lines[end..].concat());
    Some(out)
}

/// Flow names get the file's id as a prefix (`c07-...`), so the corpus files' flows stay apart on
/// the shared servers; the flow name then comes from `@flow(name=...)`.
pub fn flow_prefix(entry: &Entry) -> String {
    format!("c{:02}-", entry.id)
}

/// Stub flow files for every entrypoint: `path.py:fn`, `./path.py:fn`, `pkg.mod:fn`.
pub fn write_stubs(project: &Path, entry: &Entry, yaml: &[u8]) {
    let file =
        xtask::prefect::prefect_yaml::parse(entry.file, yaml).unwrap_or_else(|e| panic!("{e}"));
    let mut sources: std::collections::BTreeMap<PathBuf, Vec<String>> = Default::default();
    for d in &file.deployments {
        let entrypoint = d
            .raw
            .get("entrypoint")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: {} has no entrypoint", entry.file, d.name));
        let (path, function) = entrypoint
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{entrypoint}: no ':'"));
        let relative = if path.ends_with(".py") {
            PathBuf::from(path.trim_start_matches("./"))
        } else {
            // A module path: a package per dotted component.
            let parts: Vec<&str> = path.split('.').collect();
            let mut dir = project.to_path_buf();
            for package in &parts[..parts.len() - 1] {
                dir = dir.join(package);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("__init__.py"), "").unwrap();
            }
            PathBuf::from(parts.join("/") + ".py")
        };
        let functions = sources.entry(relative).or_default();
        if !functions.iter().any(|f| f == function) {
            functions.push(function.to_string());
        }
    }
    for (relative, functions) in sources {
        let mut text = format!(
            "\"\"\"Stub flows for corpus file {}.\"\"\"\n\nfrom prefect import flow\n",
            entry.file
        );
        for function in functions {
            let flow_name = format!("{}{}", flow_prefix(entry), function.replace('_', "-"));
            text.push_str(&format!(
                "\n\n@flow(name={flow_name:?})\ndef {function}():\n    \"\"\"Stub of {function}.\"\"\"\n"
            ));
        }
        let path = project.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Work pools the file's deployments name (after substituting the recipe's env vars).
fn pools(entry: &Entry, recipe: &Recipe, yaml: &[u8]) -> Vec<String> {
    let file = xtask::prefect::prefect_yaml::parse(entry.file, yaml).unwrap();
    let mut pools: Vec<String> = file
        .deployments
        .iter()
        .filter_map(|d| {
            d.raw
                .get("work_pool")?
                .get("name")?
                .as_str()
                .map(String::from)
        })
        .map(|name| {
            recipe
                .env
                .iter()
                .fold(name, |n, (k, v)| n.replace(&format!("{{{{ ${k} }}}}"), v))
        })
        .collect();
    pools.sort();
    pools.dedup();
    pools
}

/// A runnable corpus entry as a parity case.
pub fn case(entry: &Entry, recipe: &Recipe) -> Case {
    let yaml = edited_yaml(entry, recipe);
    let names = super::deployment_names(yaml.as_bytes());
    let setup = Setup {
        pools: pools(entry, recipe, yaml.as_bytes()),
        variables: recipe
            .variables
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::from_str::<Value>(v).unwrap()))
            .collect(),
        blocks: vec![],
    };
    let file = entry.file;
    let id = entry.id;
    let stage_yaml = yaml.clone();
    Case {
        label: format!("c{id:02}"),
        stage: Box::new(move |dir: &Path| {
            std::fs::write(dir.join("prefect.yaml"), &stage_yaml).unwrap();
            let entry = Entry {
                id,
                file,
                plan: Plan::Refused {
                    reason: "",
                    pools: &[],
                },
            };
            write_stubs(dir, &entry, stage_yaml.as_bytes());
        }),
        env: recipe
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        setup,
        selection: Selection {
            deployment_names: names,
            flow_prefix: flow_prefix(entry),
        },
        rerun: false,
        between_rounds: vec![],
    }
}

/// Stages a refused file verbatim, with stub flows for every `entrypoint:` line that names one
/// (found by a plain text scan: xtask's parser refuses these files), so that xtask fails on what
/// makes the file unacceptable, not on a missing flow file.
pub fn stage_refused(dir: &Path, entry: &Entry) {
    let bytes = std::fs::read(corpus_dir().join(entry.file)).unwrap();
    std::fs::write(dir.join("prefect.yaml"), &bytes).unwrap();
    let mut stub_yaml = String::from("deployments:\n");
    for line in String::from_utf8_lossy(&bytes).lines() {
        let Some(value) = line.trim().strip_prefix("entrypoint:") else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if value.contains(".py:") && !value.starts_with('/') {
            let n = stub_yaml.lines().count();
            stub_yaml.push_str(&format!(
                "  - name: stub-{n}\n    entrypoint: \"{value}\"\n"
            ));
        }
    }
    if stub_yaml.lines().count() > 1 {
        write_stubs(dir, entry, stub_yaml.as_bytes());
    }
}
