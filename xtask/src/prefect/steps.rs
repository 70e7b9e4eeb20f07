//! `prefect deploy`'s build and push steps, run natively before the desired state is built.
//!
//! Only `run_shell_script` runs here, and without a shell: each line is split like Python's
//! `shlex.split` and executed directly, so `;`, `|`, `&&` or `$(…)` are plain arguments. Every other
//! step is a Python callable only Prefect can import: refused, pointing at `--engine prefect-cli`.
//!
//! Outputs flow as in Prefect 3.9.1 (`prefect/deployments/steps/core.py`): before each step its
//! inputs are templated with the outputs of the steps before it (then blocks, variables, env); its
//! output mapping is merged into the outputs and also stored under its `id`, so both
//! `{{ stdout }}` and `{{ get-commit.stdout }}` work in the deployment afterwards.
//! Templating goes through `template::resolve_deployment`, which substitutes step outputs last:
//! unlike Prefect, text a step printed is never templated again, and a missing value is an error.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::prefect::python_text::value_str;
use crate::prefect::template::{self, Placeholder, PlaceholderKind, TemplateValues};
use crate::sys::redact::{redact, SECRET_ENV_VARS};

/// The spellings of `run_shell_script` (Prefect imports either).
pub(crate) const RUN_SHELL_SCRIPT: &[&str] = &[
    "prefect.deployments.steps.run_shell_script",
    "prefect.deployments.steps.utility.run_shell_script",
];

/// The keyword arguments of Prefect's `run_shell_script`.
const SHELL_INPUTS: &[&str] = &[
    "script",
    "directory",
    "env",
    "stream_output",
    "expand_env_vars",
    "shell",
];

const PREFECT_CLI_HINT: &str = "use `--engine prefect-cli` to run it with `prefect deploy`";

/// A deployment's build and push steps as written (see `prefect_yaml::build_and_push_steps`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Steps {
    pub build: Vec<Value>,
    pub push: Vec<Value>,
}

impl Steps {
    pub(crate) fn is_empty(&self) -> bool {
        self.build.is_empty() && self.push.is_empty()
    }

    /// Placeholders in the steps' inputs, so blocks and variables can be fetched beforehand.
    pub(crate) fn placeholders(&self) -> Vec<Placeholder> {
        let all: Vec<Value> = self.build.iter().chain(&self.push).cloned().collect();
        template::placeholders(&Value::Array(all))
    }

    /// Every step in run order (build, then push), with a label for messages.
    fn each(&self) -> Vec<(String, &Value)> {
        fn labelled<'a>(section: &str, steps: &'a [Value]) -> Vec<(String, &'a Value)> {
            let label = |i: usize| format!("{section} step {}", i + 1);
            steps
                .iter()
                .enumerate()
                .map(|(i, s)| (label(i), s))
                .collect()
        }
        let mut all = labelled("build", &self.build);
        all.extend(labelled("push", &self.push));
        all
    }
}

/// Problems that keep the steps from running natively (Python steps, `shell: true`, unknown
/// inputs), found without running anything, one message per step.
pub(crate) fn check(steps: &Steps) -> Vec<String> {
    steps
        .each()
        .into_iter()
        .filter_map(|(label, step)| parse_step(step).err().map(|e| format!("{label}: {e}")))
        .collect()
}

/// What [`run`] would do, one line per step, for a dry run that runs nothing. Placeholders are
/// shown as written (never their values).
pub(crate) fn describe(steps: &Steps) -> Vec<String> {
    steps
        .each()
        .into_iter()
        .map(|(label, step)| match parse_step(step) {
            Ok(Some(call)) => {
                let script = call
                    .inputs
                    .get("script")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let lines: Vec<&str> = python_splitlines(script)
                    .into_iter()
                    .filter(|line| !line.trim().is_empty())
                    .collect();
                format!("{label} (run_shell_script): {}", lines.join(" / "))
            }
            Ok(None) => format!("{label}: empty, skipped"),
            Err(problem) => format!("{label}: {problem}"),
        })
        .collect()
}

/// Runs the build steps, then the push steps, in order, in `root` (the project root, Prefect's
/// working directory). Returns the step outputs to template the deployment with. `values`
/// supplies blocks, variables and the environment; its `step_outputs` are ignored.
pub(crate) fn run(
    steps: &Steps,
    root: &Path,
    values: &TemplateValues,
    deployment: &str,
) -> Result<Map<String, Value>, String> {
    let mut scope = TemplateValues {
        step_outputs: Map::new(),
        ..values.clone()
    };
    for (label, step) in steps.each() {
        let fail = |e: String| format!("{label}: {e}");
        let Some(call) = parse_step(step).map_err(fail)? else {
            continue; // `{}`: Prefect skips empty steps.
        };
        eprintln!("deployment '{deployment}': running {label} (run_shell_script)");
        if let Some(Value::String(raw)) = call.inputs.get("script") {
            check_script_shape(raw, &scope).map_err(fail)?;
        }
        let inputs = template::resolve_deployment(&Value::Object(call.inputs), &scope).map_err(
            |errors| {
                let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
                fail(messages.join("; "))
            },
        )?;
        let script = ShellScript::from_inputs(&inputs).map_err(fail)?;
        let output = script
            .run(root, &step_environment(&scope.env, step))
            .map_err(fail)?;
        if let Some(id) = call.id {
            scope.step_outputs.insert(id, Value::Object(output.clone()));
        }
        scope.step_outputs.extend(output);
    }
    Ok(scope.step_outputs)
}

/// The environment a step runs with: all of `env` except the credentials of
/// [`SECRET_ENV_VARS`] (Fly and Prefect tokens), which only a step that names them gets.
fn step_environment(env: &HashMap<String, String>, step: &Value) -> HashMap<String, String> {
    let text = step.to_string();
    env.iter()
        .filter(|(name, _)| !SECRET_ENV_VARS.contains(&name.as_str()) || text.contains(*name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Each templated line of `script` must keep its shape: a value that adds a line (a whole new
/// command) or changes how many words the line splits into (new arguments) is refused, naming
/// the placeholder. Prefect pastes values in as they are; values from variables, blocks or
/// earlier steps' output must not be able to say what runs.
fn check_script_shape(raw: &str, scope: &TemplateValues) -> Result<(), String> {
    let resolve = |text: &str| -> Option<String> {
        match template::resolve_deployment(&Value::String(text.to_string()), scope).ok()? {
            Value::String(s) => Some(s),
            other => Some(value_str(&other)),
        }
    };
    for line in python_splitlines(raw) {
        // `ctx.*` stays as written (the worker's business), so it is text like any other.
        let placeholders: Vec<Placeholder> = template::find_placeholders(line)
            .into_iter()
            .filter(|p| p.kind != PlaceholderKind::Context)
            .collect();
        if placeholders.is_empty() {
            continue;
        }
        // Unresolvable placeholders are reported by the templating of the step itself.
        let Some(resolved) = resolve(line) else {
            continue;
        };
        // The line with each placeholder as one plain word, except `p` with its value.
        let with_value_of = |p: Option<&Placeholder>| -> Option<(String, String)> {
            let mut text = line.to_string();
            let mut value = String::new();
            for q in &placeholders {
                let replacement = if Some(q) == p {
                    value = resolve(&q.full_match)?;
                    value.clone()
                } else {
                    "X".to_string()
                };
                text = text.replace(&q.full_match, &replacement);
            }
            Some((value, text))
        };
        let substituted_alone = |p: &Placeholder| with_value_of(Some(p));
        if python_splitlines(&resolved).len() > 1 {
            let culprits: Vec<&str> = placeholders
                .iter()
                .filter(|p| {
                    substituted_alone(p).is_some_and(|(value, _)| {
                        python_splitlines(&value).len() > 1 || value.ends_with(['\n', '\r'])
                    })
                })
                .map(|p| p.full_match.as_str())
                .collect();
            return Err(format!(
                "the value of {} would add a line to `script`, that is a command of its own; \
                 templated values must stay within their line",
                names(&culprits, &placeholders)
            ));
        }
        let count = |text: &str| shlex_split(text).map(|words| words.len());
        let Some((_, plain)) = with_value_of(None) else {
            continue;
        };
        let Ok(expected) = count(&plain) else {
            continue; // the line itself does not split: reported when it runs
        };
        if count(&resolved) != Ok(expected) {
            let culprits: Vec<&str> = placeholders
                .iter()
                .filter(|p| {
                    substituted_alone(p).is_some_and(|(_, alone)| count(&alone) != Ok(expected))
                })
                .map(|p| p.full_match.as_str())
                .collect();
            return Err(format!(
                "the value of {} would change the words of the line `{line}` (it holds spaces, \
                 quotes or backslashes, or is empty), adding or removing arguments; templated \
                 values must stay one word each (quote the placeholder if the value has spaces)",
                names(&culprits, &placeholders)
            ));
        }
    }
    Ok(())
}

/// `{{ a }}` / `{{ a }}, {{ b }}`: the culprits, else every placeholder of the line.
fn names(culprits: &[&str], all: &[Placeholder]) -> String {
    if culprits.is_empty() {
        let all: Vec<&str> = all.iter().map(|p| p.full_match.as_str()).collect();
        all.join(", ")
    } else {
        culprits.join(", ")
    }
}

/// A natively runnable step: its inputs without the reserved `id` and `requires`.
#[derive(Debug, PartialEq)]
struct Call {
    id: Option<String>,
    inputs: Map<String, Value>,
}

/// `{fqn: {inputs…, id?, requires?}}` → the call; `Ok(None)` for an empty step.
fn parse_step(step: &Value) -> Result<Option<Call>, String> {
    let Value::Object(map) = step else {
        return Err(format!("a step must be a mapping, got {step}"));
    };
    let mut entries = map.iter();
    let Some((fqn, inputs)) = entries.next() else {
        return Ok(None);
    };
    let extra: Vec<&str> = entries.map(|(k, _)| k.as_str()).collect();
    if !extra.is_empty() {
        return Err(format!(
            "`{fqn}` has unexpected additional keys: {} (are its inputs mis-indented?)",
            extra.join(", ")
        ));
    }
    if !RUN_SHELL_SCRIPT.contains(&fqn.as_str()) {
        return Err(format!(
            "`{fqn}` is a Python step, which the native engine does not run (it runs only \
             `prefect.deployments.steps.run_shell_script`); {PREFECT_CLI_HINT}"
        ));
    }
    let mut inputs = match inputs {
        Value::Object(inputs) => inputs.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(format!(
                "the inputs of `{fqn}` must be a mapping, got {other}"
            ))
        }
    };
    inputs.remove("requires");
    let id = match inputs.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id).filter(|id| !id.is_empty()),
        Some(other) => return Err(format!("`id` must be a string, got {other}")),
    };
    if let Some(key) = inputs.keys().find(|k| !SHELL_INPUTS.contains(&k.as_str())) {
        return Err(format!(
            "run_shell_script has no input `{key}` (it takes {})",
            SHELL_INPUTS.join(", ")
        ));
    }
    if inputs.get("shell") == Some(&Value::Bool(true)) {
        return Err(shell_refusal());
    }
    Ok(Some(Call { id, inputs }))
}

fn shell_refusal() -> String {
    format!(
        "run_shell_script with `shell: true` is not run by the native engine (a shell would \
         interpret the script); drop `shell: true` (pipes and `;` then become plain arguments) or \
         {PREFECT_CLI_HINT}"
    )
}

/// `run_shell_script`'s inputs after templating.
#[derive(Debug, PartialEq)]
struct ShellScript {
    script: String,
    directory: Option<String>,
    env: Vec<(String, String)>,
    stream_output: bool,
    expand_env_vars: bool,
}

impl ShellScript {
    fn from_inputs(inputs: &Value) -> Result<ShellScript, String> {
        let get = |key: &str| inputs.get(key).filter(|v| !v.is_null());
        let flag = |key: &str, default: bool| match get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("`{key}` must be true or false, got {other}")),
        };
        let script = match get("script") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(format!("`script` must be a string, got {other}")),
            None => return Err("run_shell_script needs a `script`".into()),
        };
        let directory = match get("directory") {
            None => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(other) => return Err(format!("`directory` must be a string, got {other}")),
        };
        let env = match get("env") {
            None => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(format!(
                        "`env.{k}` must be a string (quote it in the yaml), got {other}"
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("`env` must be a mapping, got {other}")),
        };
        if flag("shell", false)? {
            return Err(shell_refusal());
        }
        Ok(ShellScript {
            script,
            directory,
            env,
            stream_output: flag("stream_output", true)?,
            expand_env_vars: flag("expand_env_vars", false)?,
        })
    }

    /// Runs each non-empty line as one command (no shell, stdin closed) in `directory`
    /// (relative to `root`; default `root`), stopping at the first failure, like Prefect.
    /// Returns `{"stdout", "stderr"}`: everything the commands printed, trimmed.
    /// `env` is the whole environment the commands get (the template values' `$NAME`s).
    fn run(
        &self,
        root: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Map<String, Value>, String> {
        let dir = match &self.directory {
            Some(dir) => root.join(dir),
            None => root.to_path_buf(),
        };
        if !dir.is_dir() {
            return Err(format!("directory {} does not exist", dir.display()));
        }
        let sh = xshell::Shell::new().map_err(|e| format!("cannot start commands: {e}"))?;
        sh.change_dir(&dir);
        // What `$NAME` expands to: the environment plus the step's `env`, as in Prefect.
        let mut environment = env.clone();
        environment.extend(self.env.iter().cloned());
        let (mut stdout, mut stderr) = (String::new(), String::new());
        for line in python_splitlines(&self.script) {
            let line = if self.expand_env_vars {
                safe_substitute(line, |name| environment.get(name).cloned())
            } else {
                line.to_string()
            };
            let words =
                shlex_split(&line).map_err(|e| format!("cannot split a line of `script`: {e}"))?;
            let Some((program, args)) = words.split_first() else {
                continue;
            };
            let step = sh.cmd(program).args(args).env_clear().envs(&environment);
            let output = crate::sys::process::capture(step)
                .map_err(|e| format!("cannot run `{program}`: {}", redact(&e.to_string())))?;
            let out = String::from_utf8_lossy(&output.stdout);
            let err = String::from_utf8_lossy(&output.stderr);
            if self.stream_output {
                eprint!("{}{}", redact(&out), redact(&err));
            }
            stdout.push_str(&out);
            stderr.push_str(&err);
            if !output.status.success() {
                let code = output
                    .status
                    .code()
                    .map_or_else(|| "(killed by a signal)".to_string(), |c| c.to_string());
                return Err(format!(
                    "`run_shell_script` failed with error code {code} running `{program}`: {}",
                    redact(stderr.trim())
                ));
            }
        }
        let mut result = Map::new();
        result.insert("stdout".into(), json!(stdout.trim()));
        result.insert("stderr".into(), json!(stderr.trim()));
        Ok(result)
    }
}

/// Python's `str.splitlines()`: every line break Python knows, `\r\n` as one, no trailing empty line.
fn python_splitlines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if !is_break {
            continue;
        }
        lines.push(&text[start..i]);
        start = i + c.len_utf8();
        if c == '\r' {
            if let Some(&(j, '\n')) = chars.peek() {
                chars.next();
                start = j + 1;
            }
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Python's `shlex.split(line)` (POSIX mode, no comments): words separated by space, tab, CR
/// or LF; single quotes literal; in double quotes a backslash escapes only `"` and `\`; outside
/// quotes it escapes any character. `''` is an empty word. Errors as Python words them.
pub(crate) fn shlex_split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word has started (it may still be empty: `''`).
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("No closing quotation".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("No escaped character".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("No closing quotation".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("No escaped character".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Python's `string.Template(text).safe_substitute(env)`: `$$` → `$`, `$NAME` and `${NAME}`
/// (NAME = ASCII letter or `_`, then letters, digits, `_`) → the value; unknown names and any
/// other `$` are kept as written.
pub(crate) fn safe_substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let named = identifier_len(after);
        if named > 0 {
            let name = &after[..named];
            out.push_str(&lookup(name).unwrap_or_else(|| format!("${name}")));
            rest = &after[named..];
            continue;
        }
        if let Some(inner) = after.strip_prefix('{') {
            let braced = identifier_len(inner);
            if braced > 0 && inner[braced..].starts_with('}') {
                let name = &inner[..braced];
                out.push_str(&lookup(name).unwrap_or_else(|| format!("${{{name}}}")));
                rest = &inner[braced + 1..];
                continue;
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Length in bytes of the ASCII identifier at the start of `s` (0 if none).
fn identifier_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => bytes
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        shlex_split(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn shlex_split_follows_python_posix_rules() {
        // Each case checked against Python 3.11's shlex.split.
        assert_eq!(split("echo abc123"), ["echo", "abc123"]);
        assert_eq!(
            split("  git   rev-parse\t--short HEAD  "),
            ["git", "rev-parse", "--short", "HEAD"]
        );
        assert_eq!(
            split("echo hi; touch /tmp/x"),
            ["echo", "hi;", "touch", "/tmp/x"]
        );
        assert_eq!(
            split("a | b && c $(d) `e`"),
            ["a", "|", "b", "&&", "c", "$(d)", "`e`"]
        );
        assert_eq!(split("echo 'a b' \"c d\""), ["echo", "a b", "c d"]);
        assert_eq!(split("a'b c'd"), ["ab cd"]);
        assert_eq!(split("x '' \"\" y"), ["x", "", "", "y"]);
        assert_eq!(
            split(r#"'a\b' "a\b" "a\"b" "a\\b" a\ b a\b"#),
            [r"a\b", r"a\b", "a\"b", r"a\b", "a b", "ab"]
        );
        assert_eq!(split("# not a comment"), ["#", "not", "a", "comment"]);
        assert_eq!(
            split("python -c \"print('hi')\""),
            ["python", "-c", "print('hi')"]
        );
        assert_eq!(split("héllo wörld"), ["héllo", "wörld"]);
        assert_eq!(split("   "), Vec::<String>::new());
        assert_eq!(split(""), Vec::<String>::new());
        // Only ASCII space, tab, CR, LF separate words.
        assert_eq!(split("a\u{a0}b\x0bc"), ["a\u{a0}b\x0bc"]);
        assert_eq!(
            shlex_split("echo 'open").unwrap_err(),
            "No closing quotation"
        );
        assert_eq!(
            shlex_split("echo \"open").unwrap_err(),
            "No closing quotation"
        );
        assert_eq!(shlex_split("echo x\\").unwrap_err(), "No escaped character");
    }

    #[test]
    fn splitlines_matches_python() {
        assert_eq!(python_splitlines("a\nb\r\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(python_splitlines("a\n\nb\n"), ["a", "", "b"]);
        assert_eq!(python_splitlines("a\x0cb\u{2028}c"), ["a", "b", "c"]);
        assert_eq!(python_splitlines(""), Vec::<&str>::new());
        assert_eq!(python_splitlines("\n"), [""]);
    }

    #[test]
    fn safe_substitute_matches_string_template() {
        let env = |name: &str| match name {
            "HOME" => Some("/home/u".to_string()),
            "A_1" => Some("x".to_string()),
            _ => None,
        };
        assert_eq!(
            safe_substitute("echo $HOME ${HOME}/bin", env),
            "echo /home/u /home/u/bin"
        );
        assert_eq!(safe_substitute("$A_1b ${A_1}b", env), "$A_1b xb");
        assert_eq!(
            safe_substitute("$$HOME costs $5 ${ } ${HOME", env),
            "$HOME costs $5 ${ } ${HOME"
        );
        assert_eq!(
            safe_substitute("$MISSING ${MISSING} $", env),
            "$MISSING ${MISSING} $"
        );
        assert_eq!(safe_substitute("$é $HOMEé", env), "$é /home/ué");
        // The value is not expanded again.
        let dollar = |_: &str| Some("$HOME".to_string());
        assert_eq!(safe_substitute("$X", dollar), "$HOME");
    }

    fn step(fqn: &str, inputs: Value) -> Value {
        json!({ fqn: inputs })
    }

    #[test]
    fn only_run_shell_script_is_accepted() {
        let steps = Steps {
            build: vec![
                step(
                    RUN_SHELL_SCRIPT[0],
                    json!({"id": "c", "script": "echo", "requires": "x"}),
                ),
                step(RUN_SHELL_SCRIPT[1], json!({"script": "echo"})),
                json!({}),
                step(
                    "prefect_docker.deployments.steps.build_docker_image",
                    json!({"image_name": "i"}),
                ),
            ],
            push: vec![
                step(
                    RUN_SHELL_SCRIPT[0],
                    json!({"script": "echo", "shell": true}),
                ),
                step(RUN_SHELL_SCRIPT[0], json!({"script": "echo", "cwd": "/"})),
                json!({"a.b": {}, "script": "x"}),
            ],
        };
        let problems = check(&steps);
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("build step 4: `prefect_docker.deployments.steps.build_docker_image` is a Python step"), "{}", problems[0]);
        assert!(
            problems[0].contains("--engine prefect-cli"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].starts_with("push step 1: run_shell_script with `shell: true`"),
            "{}",
            problems[1]
        );
        assert!(problems[1].contains("--engine prefect-cli"));
        assert!(
            problems[2].contains("push step 2: run_shell_script has no input `cwd`"),
            "{}",
            problems[2]
        );
        assert!(
            problems[3].contains("push step 3: `a.b` has unexpected additional keys: script"),
            "{}",
            problems[3]
        );
        // Reserved keywords are taken out of the inputs.
        let call = parse_step(&steps.build[0]).unwrap().unwrap();
        assert_eq!(call.id.as_deref(), Some("c"));
        assert_eq!(Value::Object(call.inputs), json!({"script": "echo"}));
        assert_eq!(parse_step(&json!({})).unwrap(), None);
    }

    #[test]
    fn shell_script_inputs_are_typed() {
        let parsed = ShellScript::from_inputs(&json!({"script": "echo", "env": {"A": "1"}, "stream_output": false, "directory": null})).unwrap();
        assert_eq!(
            parsed,
            ShellScript {
                script: "echo".into(),
                directory: None,
                env: vec![("A".into(), "1".into())],
                stream_output: false,
                expand_env_vars: false,
            }
        );
        let err = |inputs: Value| ShellScript::from_inputs(&inputs).unwrap_err();
        assert!(err(json!({})).contains("needs a `script`"));
        assert!(err(json!({"script": 1})).contains("`script` must be a string"));
        assert!(err(json!({"script": "x", "env": {"PORT": 80}}))
            .contains("`env.PORT` must be a string"));
        assert!(err(json!({"script": "x", "stream_output": "false"}))
            .contains("`stream_output` must be true or false"));
        // A templated `shell: true` is refused too.
        assert!(err(json!({"script": "x", "shell": true})).contains("--engine prefect-cli"));
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-steps-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn outputs_chain_through_ids_and_templates() {
        let root = temp_dir("chain");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let steps = Steps {
            build: vec![step(
                RUN_SHELL_SCRIPT[0],
                json!({"id": "first", "script": "echo abc123\n\n  \nls -d /", "stream_output": false}),
            )],
            push: vec![step(
                RUN_SHELL_SCRIPT[1],
                json!({
                    "id": "second",
                    "script": "pwd\nprintenv GREETING\necho {{ first.stdout }} {{ $XTASK_STEPS_TEST }} $XTASK_STEPS_TEST",
                    "directory": "sub",
                    "env": {"GREETING": "hi"},
                    "stream_output": false,
                }),
            )],
        };
        let mut values = TemplateValues::default();
        values
            .env
            .insert("XTASK_STEPS_TEST".into(), "from-env".into());
        let build_only = Steps {
            build: steps.build.clone(),
            push: vec![],
        };
        let outputs = run(&build_only, &root, &values, "d").unwrap();
        // Both commands' output, trimmed; blank lines skipped.
        assert_eq!(
            outputs["first"],
            json!({"stdout": "abc123\n/", "stderr": ""})
        );
        // In Prefect `{{ first.stdout }}`'s newline would start a new command (`/`); here a
        // value that adds a line is refused before anything of the step runs.
        let sub = std::fs::canonicalize(root.join("sub")).unwrap();
        let err = run(&steps, &root, &values, "d").unwrap_err();
        assert!(
            err.starts_with("push step 1: the value of {{ first.stdout }} would add a line"),
            "{err}"
        );
        // One-line output chains cleanly, under its id and merged at the top level.
        let mut single = steps.clone();
        single.build[0] = step(
            RUN_SHELL_SCRIPT[0],
            json!({"id": "first", "script": "echo abc123", "stream_output": false}),
        );
        let outputs = run(&single, &root, &values, "d").unwrap();
        let expected = format!("{}\nhi\nabc123 from-env $XTASK_STEPS_TEST", sub.display());
        assert_eq!(outputs["first"], json!({"stdout": "abc123", "stderr": ""}));
        assert_eq!(outputs["second"]["stdout"], json!(expected));
        assert_eq!(outputs["stdout"], json!(expected));
        assert_eq!(outputs["stderr"], json!(""));
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn scope(pairs: &[(&str, &str)]) -> TemplateValues {
        let mut values = TemplateValues::default();
        for (name, value) in pairs {
            values.step_outputs.insert(name.to_string(), json!(value));
        }
        values.env.insert("TAG".into(), "v1.2".into());
        values
    }

    #[test]
    fn templated_values_cannot_add_lines_or_words() {
        let values = scope(&[
            ("one", "abc"),
            ("spaced", "a b"),
            ("lines", "x\nrm -rf /"),
            ("quote", "a' 'b"),
            ("empty", ""),
        ]);
        let check = |script: &str| check_script_shape(script, &values);
        for fine in [
            "echo {{ one }} {{ $TAG }}",
            "echo '{{ spaced }}'",
            "echo \"{{ spaced }}\" done",
            "echo plain\nls {{ one }}",
            "echo x{{ one }}y",
            "echo {{ ctx.flow_run.id }}",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
        let err = check("echo {{ one }}\necho {{ lines }}").unwrap_err();
        assert!(
            err.starts_with("the value of {{ lines }} would add a line"),
            "{err}"
        );
        let err = check("git tag {{ one }} {{ spaced }}").unwrap_err();
        assert!(
            err.starts_with("the value of {{ spaced }} would change the words of the line `git tag {{ one }} {{ spaced }}`"),
            "{err}"
        );
        let err = check("echo '{{ quote }}'").unwrap_err();
        assert!(err.starts_with("the value of {{ quote }}"), "{err}");
        let err = check("rm {{ empty }} x").unwrap_err();
        assert!(err.starts_with("the value of {{ empty }}"), "{err}");
        // Through `run`: the step is named and nothing of it runs.
        let root = temp_dir("shape");
        let steps = Steps {
            build: vec![step(
                RUN_SHELL_SCRIPT[0],
                json!({"script": "touch first\ntouch {{ $SPACED }}", "stream_output": false}),
            )],
            push: vec![],
        };
        let mut values = values.clone();
        values.env.insert("SPACED".into(), "a b".into());
        let err = run(&steps, &root, &values, "d").unwrap_err();
        assert!(
            err.starts_with("build step 1: the value of {{ $SPACED }}"),
            "{err}"
        );
        assert!(!root.join("first").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn steps_get_credentials_only_when_they_name_them() {
        let env: HashMap<String, String> = [
            ("HOME", "/h"),
            ("FLY_API_TOKEN", "fly"),
            ("PREFECT_API_KEY", "key"),
            ("PREFECT_API_AUTH_STRING", "auth"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let plain = step(RUN_SHELL_SCRIPT[0], json!({"script": "env"}));
        let mut names: Vec<String> = step_environment(&env, &plain).into_keys().collect();
        names.sort();
        assert_eq!(names, ["HOME"]);
        let named = step(
            RUN_SHELL_SCRIPT[0],
            json!({"script": "flyctl deploy", "env": {"FLY_API_TOKEN": "{{ $FLY_API_TOKEN }}"}}),
        );
        let mut names: Vec<String> = step_environment(&env, &named).into_keys().collect();
        names.sort();
        assert_eq!(names, ["FLY_API_TOKEN", "HOME"]);
    }

    #[test]
    fn describe_shows_steps_without_running_them() {
        let steps = Steps {
            build: vec![step(
                RUN_SHELL_SCRIPT[0],
                json!({"script": "docker build -t {{ $TAG }} .\n\ndocker push x"}),
            )],
            push: vec![json!({})],
        };
        assert_eq!(
            describe(&steps),
            [
                "build step 1 (run_shell_script): docker build -t {{ $TAG }} . / docker push x",
                "push step 1: empty, skipped"
            ]
        );
    }

    #[test]
    fn failures_name_the_step_and_keep_stderr() {
        let root = temp_dir("fail");
        let run_one = |inputs: Value| {
            let steps = Steps {
                build: vec![],
                push: vec![step(RUN_SHELL_SCRIPT[0], inputs)],
            };
            run(&steps, &root, &TemplateValues::default(), "d")
        };
        let err = run_one(json!({"script": "ls /definitely/not/here", "stream_output": false}))
            .unwrap_err();
        assert!(
            err.starts_with(
                "push step 1: `run_shell_script` failed with error code 2 running `ls`: "
            ),
            "{err}"
        );
        assert!(err.contains("/definitely/not/here"), "{err}");
        let err = run_one(json!({"script": "no-such-program-xyz"})).unwrap_err();
        assert!(err.contains("cannot run `no-such-program-xyz`"), "{err}");
        let err = run_one(json!({"script": "echo {{ nope.stdout }}"})).unwrap_err();
        assert!(
            err.contains("script: placeholder {{ nope.stdout }}"),
            "{err}"
        );
        let err = run_one(json!({"script": "echo", "directory": "missing"})).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        // Without `expand_env_vars`, `$X` reaches the program verbatim; with it, it is expanded.
        let out = run_one(
            json!({"script": "echo $GREETING", "env": {"GREETING": "hi"}, "stream_output": false}),
        )
        .unwrap();
        assert_eq!(out["stdout"], json!("$GREETING"));
        let out = run_one(json!({"script": "echo $GREETING $$", "env": {"GREETING": "hi"}, "expand_env_vars": true, "stream_output": false})).unwrap();
        assert_eq!(out["stdout"], json!("hi $"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
