//! Prefect, as `prefect deploy` sees it: the prefect.yaml model (on a YAML 1.1 loader), templating,
//! schedules, reading flows and their parameter schemas, build steps, and the REST API client.

pub mod api;
pub mod deploy_cli;
pub mod flow;
pub mod json;
pub mod param_check;
pub mod prefect_yaml;
pub mod python_text;
pub mod resources_yaml;
pub mod schedule;
pub mod steps;
pub mod template;
pub mod work_pool_template;
pub mod yaml;

/// `text` in the characters Prefect allows in a variable name: lowercase ASCII letters, digits,
/// `_`, and `-` for everything else (the names of this tool's marker, lock and ledger variables).
pub(crate) fn variable_slug(text: &str) -> String {
    text.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '-',
        })
        .collect()
}
