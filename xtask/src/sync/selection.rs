//! `-n/--name PATTERN`: which deployments a run plans, checks, writes and may prune, matched as
//! `prefect deploy -n` matches them (Prefect 3.9.1, `cli/deploy/_config.py`)*.
//!
//! A pattern is a deployment name (`nightly`) or `flow/deployment` (`ingest/nightly`); `*` matches
//! any run of characters in either part, everything else matches itself, and a part must match
//! whole. As in Prefect, the flow part is compared with the entrypoint's function name
//! (`flows/ingest.py:ingest_video`), `-` and `_` counting as the same character (Prefect turns
//! `-` into `_` for plain patterns and `_` into `-` for wildcard ones; both spellings work here).
//! Where Prefect differs, docs/parity.md says so.

use std::fmt;

use crate::prefect::prefect_yaml::DeploymentConfig;

/// One `-n` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    text: String,
    flow: Option<String>,
    deployment: String,
}

impl NamePattern {
    /// Parses `name` or `flow/name`; an empty part or a second `/` (deployment names cannot
    /// contain one) is an error.
    pub fn parse(text: &str) -> Result<NamePattern, String> {
        let (flow, deployment) = match text.split_once('/') {
            Some((flow, deployment)) => (Some(flow), deployment),
            None => (None, text),
        };
        if deployment.contains('/') {
            return Err(format!(
                "--name {text:?}: use `deployment` or `flow/deployment` (one `/`; a deployment name cannot contain `/`)"
            ));
        }
        if deployment.is_empty() || flow.is_some_and(str::is_empty) {
            return Err(format!(
                "--name {text:?}: empty {} name",
                if deployment.is_empty() {
                    "deployment"
                } else {
                    "flow"
                }
            ));
        }
        Ok(NamePattern {
            text: text.to_string(),
            flow: flow.map(normalise_flow),
            deployment: deployment.to_string(),
        })
    }

    /// True when this pattern names the deployment `deployment` of the flow function `function`
    /// (None: not known, so only a pattern without a flow part can match).
    pub fn matches(&self, function: Option<&str>, deployment: &str) -> bool {
        let flow_ok = match (&self.flow, function) {
            (None, _) => true,
            (Some(pattern), Some(function)) => glob_match(pattern, &normalise_flow(function)),
            (Some(_), None) => false,
        };
        flow_ok && glob_match(&self.deployment, deployment)
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `-n` patterns of one run; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    patterns: Vec<NamePattern>,
}

impl Selection {
    /// Every pattern parsed, or every bad one named.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Selection, String> {
        let mut patterns = Vec::new();
        let mut problems = Vec::new();
        for text in texts {
            match NamePattern::parse(text.as_ref()) {
                Ok(pattern) => patterns.push(pattern),
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(Selection { patterns })
        } else {
            Err(problems.join("\n"))
        }
    }

    pub fn new(patterns: Vec<NamePattern>) -> Selection {
        Selection { patterns }
    }

    /// True when no pattern was given (everything is selected).
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> &[NamePattern] {
        &self.patterns
    }

    /// True when some pattern names this deployment (always, for an empty selection).
    /// `entrypoint` is `path/file.py:function` (or None when unknown).
    pub fn selects(&self, entrypoint: Option<&str>, deployment: &str) -> bool {
        let function = entrypoint.map(entrypoint_function);
        self.is_all()
            || self
                .patterns
                .iter()
                .any(|pattern| pattern.matches(function, deployment))
    }

    /// Keeps the yaml deployments the selection names. A pattern that names none of them is an
    /// error listing every deployment the file declares (as `function/name`), unless
    /// `may_name_removed` (`--prune`: it may name a deployment the yaml no longer declares).
    pub fn retain_configs(
        &self,
        file_label: &str,
        configs: &mut Vec<DeploymentConfig>,
        may_name_removed: bool,
    ) -> Result<(), String> {
        if self.is_all() {
            return Ok(());
        }

        let unmatched: Vec<&NamePattern> = self
            .patterns
            .iter()
            .filter(|pattern| {
                !configs.iter().any(|config| {
                    pattern.matches(entrypoint_of(config).map(entrypoint_function), &config.name)
                })
            })
            .collect();
        if !unmatched.is_empty() && !may_name_removed {
            let existing: Vec<String> = configs
                .iter()
                .map(|config| match entrypoint_of(config) {
                    Some(entrypoint) => {
                        format!("{}/{}", entrypoint_function(entrypoint), config.name)
                    }
                    None => config.name.clone(),
                })
                .collect();
            let names: Vec<String> = unmatched.iter().map(|p| format!("{:?}", p.text)).collect();
            return Err(format!(
                "--name {} matches no deployment in {file_label}; it declares: {}",
                names.join(", "),
                if existing.is_empty() {
                    "none".to_string()
                } else {
                    existing.join(", ")
                }
            ));
        }
        configs.retain(|config| self.selects(entrypoint_of(config), &config.name));
        Ok(())
    }
}

fn entrypoint_of(config: &DeploymentConfig) -> Option<&str> {
    config.raw.get("entrypoint").and_then(|v| v.as_str())
}

/// The function part of `path/file.py:function` (the whole text when there is no `:`), as
/// Prefect's `entrypoint.split(":")[-1]`.
pub fn entrypoint_function(entrypoint: &str) -> &str {
    entrypoint.rsplit(':').next().unwrap_or(entrypoint)
}

fn normalise_flow(name: &str) -> String {
    name.replace('-', "_")
}

/// Whole-text match where `*` matches any run of characters (also none).
fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point (the last `*`): linear in practice, never
    // exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> NamePattern {
        NamePattern::parse(text).unwrap()
    }

    #[test]
    fn a_plain_name_matches_that_deployment_of_any_flow_and_only_whole() {
        let p = pattern("nightly");
        assert!(p.matches(Some("ingest"), "nightly"));
        assert!(p.matches(Some("report"), "nightly"));
        assert!(p.matches(None, "nightly"));
        assert!(!p.matches(Some("ingest"), "nightly-2"));
        assert!(!p.matches(Some("ingest"), "my-nightly"));
        assert!(!p.matches(Some("nightly"), "other"));
    }

    #[test]
    fn flow_slash_name_needs_both_parts_and_treats_dash_and_underscore_alike() {
        let p = pattern("ingest-video/nightly");
        assert!(p.matches(Some("ingest_video"), "nightly"));
        assert!(!p.matches(Some("ingest_audio"), "nightly"));
        assert!(!p.matches(Some("ingest_video"), "hourly"));
        assert!(!p.matches(None, "nightly"));
        // Prefect's wildcard branch compares `my-flow`, its plain branch `my_flow`: both work.
        assert!(pattern("ingest_video/nightly").matches(Some("ingest_video"), "nightly"));
        assert!(pattern("ingest_*/nightly").matches(Some("ingest_video"), "nightly"));
        assert!(pattern("ingest-*/nightly").matches(Some("ingest_video"), "nightly"));
        // Deployment names are compared as written: `-` is not `_` there.
        assert!(!pattern("night_ly").matches(Some("f"), "night-ly"));
    }

    #[test]
    fn stars_match_any_run_of_characters_in_either_part() {
        assert!(pattern("*").matches(Some("f"), "anything"));
        assert!(pattern("captionacc-*").matches(Some("f"), "captionacc-video-initial-processing"));
        assert!(!pattern("captionacc-*").matches(Some("f"), "other-captionacc-x"));
        assert!(pattern("*-processing").matches(Some("f"), "captionacc-video-processing"));
        assert!(pattern("a*b*c").matches(Some("f"), "aXXbYYc"));
        assert!(pattern("a*b*c").matches(Some("f"), "abc"));
        assert!(!pattern("a*b*c").matches(Some("f"), "aXXbYY"));
        assert!(pattern("*/nightly").matches(Some("any"), "nightly"));
        assert!(pattern("ingest*/*").matches(Some("ingest_video"), "x"));
        assert!(!pattern("ingest*/*").matches(Some("report"), "x"));
        // Regex characters are literal, as Prefect's re.escape makes them.
        assert!(pattern("a.b").matches(Some("f"), "a.b"));
        assert!(!pattern("a.b").matches(Some("f"), "axb"));
        assert!(pattern("a+(b)").matches(Some("f"), "a+(b)"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_pattern_named() {
        for bad in ["", "/x", "f/", "a/b/c"] {
            let err = NamePattern::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let err = Selection::parse(&["ok", "a/b/c", ""]).unwrap_err();
        assert_eq!(err.lines().count(), 2, "{err}");
    }

    #[test]
    fn an_empty_selection_selects_everything() {
        let all = Selection::default();
        assert!(all.is_all());
        assert!(all.selects(None, "x"));
        assert!(all.selects(Some("flows/a.py:f"), "y"));
    }

    #[test]
    fn selects_reads_the_function_from_the_entrypoint() {
        let s = Selection::parse(&["sample/a", "b"]).unwrap();
        assert!(s.selects(Some("flows/sample.py:sample"), "a"));
        assert!(!s.selects(Some("flows/other.py:other"), "a"));
        assert!(s.selects(Some("flows/other.py:other"), "b"));
        assert!(!s.selects(None, "a"));
        assert_eq!(entrypoint_function("flows/x.py:f"), "f");
        assert_eq!(entrypoint_function("C:/x.py:f"), "f");
    }

    fn configs(yaml: &str) -> Vec<DeploymentConfig> {
        crate::prefect::prefect_yaml::parse("prefect.yaml", yaml.as_bytes())
            .unwrap()
            .deployments
    }

    const YAML: &str = "deployments:\n- name: a\n  entrypoint: flows/sample.py:sample\n- name: b\n  entrypoint: flows/sample.py:sample\n- name: a\n  entrypoint: flows/other.py:other_flow\n";

    #[test]
    fn retain_configs_keeps_the_selected_in_file_order() {
        let mut all = configs(YAML);
        Selection::parse(&["a"])
            .unwrap()
            .retain_configs("prefect.yaml", &mut all, false)
            .unwrap();
        assert_eq!(
            all.iter().map(|c| c.line).collect::<Vec<_>>(),
            vec![2, 6],
            "both flows' `a`"
        );
        let mut all = configs(YAML);
        Selection::parse(&["other-flow/a", "b"])
            .unwrap()
            .retain_configs("prefect.yaml", &mut all, false)
            .unwrap();
        assert_eq!(all.iter().map(|c| c.line).collect::<Vec<_>>(), vec![4, 6]);
        let mut all = configs(YAML);
        Selection::default()
            .retain_configs("prefect.yaml", &mut all, false)
            .unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn a_pattern_matching_nothing_is_an_error_listing_what_exists() {
        let mut all = configs(YAML);
        let err = Selection::parse(&["a", "nope", "sample/zz*"])
            .unwrap()
            .retain_configs("prefect.yaml", &mut all, false)
            .unwrap_err();
        assert_eq!(
            err,
            "--name \"nope\", \"sample/zz*\" matches no deployment in prefect.yaml; it declares: sample/a, sample/b, other_flow/a"
        );
        assert_eq!(all.len(), 3, "nothing removed on error");
        // --prune: the pattern may name a deployment gone from the yaml; the rest are kept.
        Selection::parse(&["a", "nope"])
            .unwrap()
            .retain_configs("prefect.yaml", &mut all, true)
            .unwrap();
        assert_eq!(all.iter().map(|c| c.line).collect::<Vec<_>>(), vec![2, 6]);
    }
}
