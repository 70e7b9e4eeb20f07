//! Read a Prefect flow from its Python source without running Python.
//!
//! `prefect deploy` imports the flow file and asks the resulting `Flow` object for its name,
//! description, version and parameter schema. This module reproduces those answers from the
//! AST (rustpython-parser): it resolves the entrypoint to a file, finds the function, checks
//! it carries Prefect's `@flow` decorator (following imports and aliases, through the
//! project's own modules), reads the decorator
//! keywords and the docstring exactly as `inspect.getdoc` and griffe see them, and hands the
//! signature to `schema`, which builds the parameter schema.
//!
//! Inside: `entrypoint` (where the flow lives), `module_index` (what a file's names are bound
//! to), `project` (the project modules the flow imports, names followed across them),
//! `docstring`, `signature` (the parameters), `schema` (signature → JSON schema) and
//! `unparse` (expressions back to text, for messages). Arrows point one way: `schema` reads
//! names through `project`, `module_index` and `docstring`, never back into this module.

mod docstring;
mod entrypoint;
mod module_index;
mod project;
mod schema;
mod signature;
mod unparse;

use std::fmt;
use std::path::Path;

use md5::{Digest, Md5};
use rustpython_parser::ast::{self, Expr};
use rustpython_parser::Parse;
use serde_json::Value;

use crate::prefect::prefect_yaml::FORBIDDEN_NAME_CHARS;
use crate::prefect::python_text::str_repr;
use docstring::{cleandoc, docstring_of, parameter_docstrings};
pub use entrypoint::{locate_entrypoint_file, parse_entrypoint, Entrypoint, EntrypointTarget};
use module_index::{Found, FunctionDef, ModuleIndex, Resolved};
pub use project::ReadProjectFile;
use project::{load_project, FlowLocation, LoadedModule, Project};
use unparse::unparse;

/// What `prefect deploy` learns from the loaded flow object.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowInfo {
    /// `@flow(name=...)` or the function name with `_` → `-`.
    pub flow_name: String,
    /// `@flow(description=...)` or `inspect.getdoc(fn)` (None without a docstring).
    pub description: Option<String>,
    /// `@flow(version=...)`; None means Prefect's default, [`file_version_hash`] of the file.
    pub version: Option<String>,
    /// `parameter_schema(flow).model_dump(exclude_unset=True)`, key order preserved.
    pub parameter_openapi_schema: Value,
    /// Places where the result may differ from Prefect's (with the parameter/type named).
    pub warnings: Vec<String>,
    /// 1-based line of the `def`.
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowErrorKind {
    /// The file is not valid Python.
    Syntax,
    /// No function/method of that name (Prefect's MissingFlowError).
    MissingFlow,
    /// The function is not decorated with Prefect's `@flow` (also MissingFlowError).
    NotAFlow,
    /// The flow name contains `/ % & > <` (InvalidNameError).
    InvalidName,
    /// A parameter name Prefect or pydantic refuses.
    InvalidParameter,
    /// Something Prefect would evaluate at import time that cannot be read statically.
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub kind: FlowErrorKind,
    /// The message, worded like Prefect's where Prefect has one.
    pub message: String,
    pub file: String,
    /// 1-based line, when one applies.
    pub line: Option<usize>,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for FlowError {}

const RESERVED_ARGUMENTS: [&str; 2] = ["return_state", "wait_for"];
/// Names pydantic refuses as fields of Prefect's ValidatedFunction model.
const VALIDATION_RESERVED: [&str; 10] = [
    "model_config",
    "model_dump",
    "model_dump_json",
    "model_validate",
    "model_validate_json",
    "model_validate_strings",
    "v__args",
    "v__kwargs",
    "v__positional_only",
    "v__duplicate_kwargs",
];

/// Stack for reading one flow file. The Python parser and its AST (parse, drop) recurse once per
/// nesting level, so a hostile file (`x = [[[…]]]` 300 000 deep, `1+1+…` 100 000 terms) would
/// overflow the main thread's 8 MiB. Reserved, not committed: untouched pages cost nothing; kept
/// well under a small VM's RAM so the kernel's overcommit check accepts it (if it does not, the
/// file is read on the calling thread).
const READ_STACK_BYTES: usize = 256 << 20;

/// Read the flow `function` (`func` or `Class.method`) from `source` alone (imports of other
/// project modules are not followed). `file_label` names the file in messages.
pub fn read_flow(source: &str, file_label: &str, function: &str) -> Result<FlowInfo, FlowError> {
    read_flow_on_big_stack(source, file_label, function, None)
}

/// Read the flow `entrypoint` names from `source`, the text of the project file `path`
/// (project-relative) it was found in. Imports of the project's own modules are followed
/// (bounded), each file asked of `read_file` by its project-relative path.
pub fn read_project_flow(
    entrypoint: &Entrypoint,
    path: &Path,
    source: &str,
    read_file: &ReadProjectFile<'_>,
) -> Result<FlowInfo, FlowError> {
    let location = FlowLocation {
        path: path.to_path_buf(),
        is_script: matches!(entrypoint.target, EntrypointTarget::Script(_)),
    };
    read_flow_on_big_stack(
        source,
        &entrypoint.file_label(),
        entrypoint.function(),
        Some((location, read_file)),
    )
}

/// The project around the flow's file: where it is, and how to read its other files.
type ProjectAccess<'r, 'f> = Option<(FlowLocation, &'r ReadProjectFile<'f>)>;

fn read_flow_on_big_stack(
    source: &str,
    file_label: &str,
    function: &str,
    project: ProjectAccess<'_, '_>,
) -> Result<FlowInfo, FlowError> {
    let project = &project;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("read_flow".into())
            .stack_size(READ_STACK_BYTES)
            .spawn_scoped(scope, || {
                read_flow_here(source, file_label, function, project)
            })
            .ok()
            .and_then(|reader| reader.join().ok())
    })
    // No thread (or it panicked, which a test would show): read on this one.
    .unwrap_or_else(|| read_flow_here(source, file_label, function, project))
}

fn read_flow_here(
    source: &str,
    file_label: &str,
    function: &str,
    project: &ProjectAccess<'_, '_>,
) -> Result<FlowInfo, FlowError> {
    let file = SourceFile {
        text: source,
        label: file_label,
    };
    let suite = file.parse()?;
    let flow_module = LoadedModule::new(file_label.into(), source.to_string(), suite);
    let loaded = match project {
        Some((location, read_file)) => load_project(flow_module, location, *read_file),
        None => vec![flow_module],
    };
    let project = Project::new(&loaded);
    let module = project.module(0);
    let def = find_flow_def(module, &file, function)?;
    let def_offset = usize::from(def.range.start());
    let at_def = |kind: FlowErrorKind, message: String| file.error(kind, message, Some(def_offset));

    let mut warnings = Vec::new();
    let decorator = flow_decorator(&project, def.decorators, &mut warnings).ok_or_else(|| {
        at_def(
            FlowErrorKind::NotAFlow,
            format!(
                "Function with name {} is not a flow. Make sure that it is decorated with '@flow'.",
                str_repr(function)
            ),
        )
    })?;
    let keywords = FlowKeywords {
        project: &project,
        call: decorator,
    };
    let short_name = function.rsplit('.').next().unwrap_or(function);
    let flow_name =
        flow_name(&keywords, short_name).map_err(|(kind, message)| at_def(kind, message))?;
    let getdoc = docstring_of(def.body).as_deref().map(cleandoc);
    let description = description(&keywords, getdoc.as_deref(), &mut warnings);
    let version = version(&keywords, &mut warnings);

    let params = signature::parameters(def.args);
    if let Some(message) = params.iter().find_map(|p| refused_parameter_name(p.name)) {
        return Err(at_def(FlowErrorKind::InvalidParameter, message));
    }
    let docstrings = parameter_docstrings(getdoc.as_deref());
    let schema = schema::parameter_schema(&project, &params, &docstrings, &mut warnings).map_err(
        |refusal| {
            let loaded = project.file(refusal.module);
            let label = if refusal.module == 0 {
                file_label.to_string()
            } else {
                loaded.path.display().to_string()
            };
            FlowError {
                kind: FlowErrorKind::Unsupported,
                message: format!(
                    "{}; Prefect imports the module and describes it in full, which xtask \
                     cannot match without running Python (register this project with \
                     `--engine prefect-cli`)",
                    refusal.message
                ),
                file: label,
                line: Some(line_of(&loaded.text, refusal.offset)),
            }
        },
    )?;

    Ok(FlowInfo {
        flow_name,
        description,
        version,
        parameter_openapi_schema: schema,
        warnings,
        line: line_of(source, def_offset),
    })
}

/// The flow's file: its text (for line numbers) and how messages name it.
struct SourceFile<'s> {
    text: &'s str,
    label: &'s str,
}

impl SourceFile<'_> {
    fn error(&self, kind: FlowErrorKind, message: String, offset: Option<usize>) -> FlowError {
        FlowError {
            kind,
            message,
            file: self.label.to_string(),
            line: offset.map(|o| line_of(self.text, o)),
        }
    }

    /// The file as a Python module; a syntax error names its line and column.
    fn parse(&self) -> Result<ast::Suite, FlowError> {
        ast::Suite::parse(self.text, self.label).map_err(|e| {
            let offset = usize::from(e.offset);
            let (line, column) = line_column(self.text, offset);
            FlowError {
                kind: FlowErrorKind::Syntax,
                message: format!(
                    "invalid Python syntax at line {line}, column {column}: {}",
                    e.error
                ),
                file: self.label.to_string(),
                line: Some(line),
            }
        })
    }
}

/// The `def` the module binds to `function` (`func` or `Class.method`).
fn find_flow_def<'a>(
    module: &ModuleIndex<'a>,
    file: &SourceFile<'_>,
    function: &str,
) -> Result<FunctionDef<'a>, FlowError> {
    match module.find_function(function) {
        Some(Found::Def(def)) => Ok(def),
        Some(Found::Other(offset, what)) => Err(file.error(
            FlowErrorKind::Unsupported,
            format!(
                "{} is {what}, not a `def` decorated with @flow; xtask reads flows from \
                 their definition, so point the entrypoint at the module that defines it",
                str_repr(function)
            ),
            Some(offset),
        )),
        None => Err(file.error(
            FlowErrorKind::MissingFlow,
            format!(
                "Flow function with name {} not found in {}.",
                str_repr(function),
                str_repr(file.label)
            ),
            None,
        )),
    }
}

/// Prefect's decorator, under the names it is exported as.
fn is_prefect_flow(path: &str) -> bool {
    matches!(path, "prefect.flow" | "prefect.flows.flow")
}

/// The `@flow` / `@flow(...)` decorator among `decorators`, if any: `Some(None)` for the
/// bare form, `Some(Some(call))` for the call form. The name may be re-exported by project
/// modules; bound by an `if` whose branches differ, it counts if one branch imports Prefect's.
fn flow_decorator<'a>(
    project: &Project<'a>,
    decorators: &'a [Expr],
    warnings: &mut Vec<String>,
) -> Option<Option<&'a ast::ExprCall>> {
    for (i, decorator) in decorators.iter().enumerate() {
        let (target, call) = match decorator {
            Expr::Call(call) => (call.func.as_ref(), Some(call)),
            other => (other, None),
        };
        match project.resolve(0, target) {
            Resolved::Qualified(path) if is_prefect_flow(&path) => {}
            Resolved::OneOf(paths) if paths.iter().any(|p| is_prefect_flow(p)) => {
                warnings.push(format!(
                    "decorator `{}` is bound by an `if` whose branches differ; assuming the \
                     branch that imports Prefect's `flow` runs",
                    unparse(target)
                ));
            }
            _ => continue,
        }
        for outer in &decorators[..i] {
            let outer_path = match project.resolve(0, outer) {
                Resolved::Qualified(p) => p,
                _ => unparse(outer),
            };
            if !matches!(
                outer_path.as_str(),
                "builtins.staticmethod" | "builtins.classmethod"
            ) {
                warnings.push(format!(
                    "decorator `{outer_path}` wraps the flow; assuming it returns the flow \
                     unchanged"
                ));
            }
        }
        return Some(call);
    }
    None
}

/// The keywords of the `@flow(...)` call, read as string constants.
struct FlowKeywords<'m, 'a> {
    project: &'m Project<'a>,
    /// None for the bare `@flow`.
    call: Option<&'a ast::ExprCall>,
}

impl FlowKeywords<'_, '_> {
    /// `Ok(None)` when the keyword is absent or None; `Err` says why its value is not a string.
    fn string(&self, name: &str) -> Result<Option<String>, String> {
        let Some(keyword) = self.call.and_then(|call| {
            call.keywords
                .iter()
                .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == name))
        }) else {
            return Ok(None);
        };
        schema::eval_string(self.project, &keyword.value)
            .map_err(|why| format!("@flow({name}=...) `{}` {why}", unparse(&keyword.value)))
    }
}

/// `name or fn.__name__.replace("_", "-")`; a name Prefect refuses is an error.
fn flow_name(
    keywords: &FlowKeywords<'_, '_>,
    short_name: &str,
) -> Result<String, (FlowErrorKind, String)> {
    let name = match keywords.string("name") {
        Ok(Some(name)) if !name.is_empty() => name,
        Ok(_) => short_name.replace('_', "-"),
        Err(why) => {
            return Err((
                FlowErrorKind::Unsupported,
                format!("{why}; the flow name must be a string literal"),
            ))
        }
    };
    if name.contains(FORBIDDEN_NAME_CHARS) {
        return Err((
            FlowErrorKind::InvalidName,
            format!(
                "Name {} contains an invalid character. Must not contain any of: ['/', '%', '&', \
                 '>', '<'].",
                str_repr(&name)
            ),
        ));
    }
    Ok(name)
}

/// `description or inspect.getdoc(fn)`; an unreadable keyword falls back to the docstring.
fn description(
    keywords: &FlowKeywords<'_, '_>,
    getdoc: Option<&str>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    match keywords.string("description") {
        Ok(Some(text)) if !text.is_empty() => Some(text),
        Ok(_) => getdoc.map(str::to_string),
        Err(why) => {
            warnings.push(format!("{why}; using the docstring instead"));
            getdoc.map(str::to_string)
        }
    }
}

/// `version`, if given; None means Prefect's default (the file hash).
fn version(keywords: &FlowKeywords<'_, '_>, warnings: &mut Vec<String>) -> Option<String> {
    match keywords.string("version") {
        Ok(version) => version.filter(|v| !v.is_empty()),
        Err(why) => {
            warnings.push(format!("{why}; falling back to the file hash"));
            None
        }
    }
}

/// Why Prefect (or pydantic, validating the call) refuses a parameter name, if it does.
fn refused_parameter_name(name: &str) -> Option<String> {
    if RESERVED_ARGUMENTS.contains(&name) {
        Some(format!(
            "{} is a reserved argument name and cannot be used.",
            str_repr(name)
        ))
    } else if VALIDATION_RESERVED.contains(&name) {
        Some(
            "Flow function is not compatible with `validate_parameters`. Disable validation or \
             change the argument names."
                .to_string(),
        )
    } else if name.starts_with('_') {
        Some(format!(
            "Fields must not use names with leading underscores; e.g., use {} instead of {}.",
            str_repr(name.trim_start_matches('_')),
            str_repr(name)
        ))
    } else {
        None
    }
}

/// md5 hex of the flow file: Prefect's default flow version (`file_hash`).
pub fn file_version_hash(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn line_of(source: &str, offset: usize) -> usize {
    line_column(source, offset).0
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_file_bytes() {
        assert_eq!(file_version_hash(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            file_version_hash(b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn decorators_and_errors() {
        let src = "import prefect as pf\nfrom prefect import task\n\n@pf.flow(name='n' 'm', version='1')\ndef f(x: int = 1):\n    '''Doc.'''\n\n@task\ndef t():\n    pass\n";
        let info = read_flow(src, "f.py", "f").unwrap();
        assert_eq!(info.flow_name, "nm");
        assert_eq!(info.version.as_deref(), Some("1"));
        assert_eq!(info.description.as_deref(), Some("Doc."));
        assert_eq!(info.line, 5);
        let err = read_flow(src, "f.py", "t").unwrap_err();
        assert_eq!(err.kind, FlowErrorKind::NotAFlow);
        let err = read_flow(src, "f.py", "nope").unwrap_err();
        assert_eq!(
            err.message,
            "Flow function with name 'nope' not found in 'f.py'."
        );
        let err = read_flow("def f(:\n", "bad.py", "f").unwrap_err();
        assert_eq!(err.kind, FlowErrorKind::Syntax);
        assert_eq!(err.line, Some(1));
        // A `flow` that is not Prefect's.
        let err = read_flow(
            "from mylib import flow\n@flow\ndef f():\n    pass\n",
            "f.py",
            "f",
        )
        .unwrap_err();
        assert_eq!(err.kind, FlowErrorKind::NotAFlow);
        // A non-literal name cannot be read statically.
        let err = read_flow("import os\nfrom prefect import flow\n@flow(name=os.environ['X'])\ndef f():\n    pass\n", "f.py", "f").unwrap_err();
        assert_eq!(err.kind, FlowErrorKind::Unsupported);
        assert_eq!(err.line, Some(4));
        // A flow assigned with `=`.
        let err = read_flow(
            "from prefect import flow\ndef g():\n    pass\nf = flow(g)\n",
            "f.py",
            "f",
        )
        .unwrap_err();
        assert_eq!(err.kind, FlowErrorKind::Unsupported);
    }

    #[test]
    fn cyclic_classes_and_constants_do_not_hang() {
        // A class cycle cannot be described: refused at the class, not looped on.
        let src = "from prefect import flow\nfrom pydantic import BaseModel\nclass A(B):\n    x: int\nclass B(A):\n    y: int\n@flow\ndef f(a: A = None):\n    pass\n";
        let err = read_flow(src, "f.py", "f").unwrap_err();
        assert_eq!((err.kind, err.line), (FlowErrorKind::Unsupported, Some(3)));
        assert!(err
            .message
            .starts_with("class A is part of a class hierarchy too deep"));
        // A constant cycle: the default is sent as null, with a warning.
        let src = "from prefect import flow\nX = Y\nY = X\n@flow\ndef f(b: int = X):\n    pass\n";
        let info = read_flow(src, "f.py", "f").unwrap();
        assert_eq!(info.warnings.len(), 1, "{:?}", info.warnings);
        assert_eq!(
            info.parameter_openapi_schema["properties"]["b"]["default"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn parameter_name_rules() {
        let check = |params: &str| {
            read_flow(
                &format!("from prefect import flow\n@flow\ndef f({params}):\n    pass\n"),
                "f.py",
                "f",
            )
        };
        assert_eq!(
            check("wait_for=1").unwrap_err().message,
            "'wait_for' is a reserved argument name and cannot be used."
        );
        assert_eq!(
            check("model_dump=1").unwrap_err().kind,
            FlowErrorKind::InvalidParameter
        );
        assert!(check("_x=1")
            .unwrap_err()
            .message
            .contains("use 'x' instead of '_x'"));
        assert!(check("model_fields: int = 1").is_ok());
    }

    #[test]
    fn annotated_without_a_type_is_untyped_not_a_panic() {
        let src = "from prefect import flow\nfrom typing import Annotated\n@flow\ndef f(x: Annotated[()] = 1):\n    pass\n";
        let info = read_flow(src, "f.py", "f").unwrap();
        assert_eq!(
            info.warnings,
            ["parameter 'x': annotation `Annotated[]` is `Annotated` without a type; treated as \
              untyped (what Prefect stores when it cannot import the module)"]
        );
        assert_eq!(
            info.parameter_openapi_schema["properties"]["x"],
            serde_json::json!({"default": 1, "position": 0, "title": "x"})
        );
    }

    /// Read `function` from `flow_path` in a project made of `files` (path, text).
    fn read_in_project(
        files: &[(&str, &str)],
        flow_path: &str,
        function: &str,
    ) -> Result<FlowInfo, FlowError> {
        let files: std::collections::HashMap<std::path::PathBuf, String> = files
            .iter()
            .map(|(p, t)| (std::path::PathBuf::from(p), t.to_string()))
            .collect();
        let read = |path: &Path| files.get(path).cloned();
        let entrypoint = parse_entrypoint(&format!("{flow_path}:{function}")).unwrap();
        let source = read(Path::new(flow_path)).unwrap();
        read_project_flow(&entrypoint, Path::new(flow_path), &source, &read)
    }

    #[test]
    fn decorator_re_exported_by_project_modules_is_prefects() {
        let lib_try = "try:\n    from prefect import flow\nexcept ImportError:\n    def flow(f):\n        return f\n";
        let lib_if = "import os\nif os.environ.get('X'):\n    def flow(f):\n        return f\nelse:\n    from prefect import flow\n";
        let lib_other = "from mylib import flow\n";
        for (import, lib, warns) in [
            ("from .lib.imports import flow", lib_try, false),
            ("from lib.imports import flow", lib_try, false),
            (
                "from .lib import imports\nflow = imports.flow",
                lib_try,
                false,
            ),
            ("from .lib.imports import flow", lib_if, true),
        ] {
            let main = format!("{import}\n@flow\ndef f(x: int = 1):\n    pass\n");
            let info = read_in_project(
                &[("flows/main.py", &main), ("flows/lib/imports.py", lib)],
                "flows/main.py",
                "f",
            )
            .unwrap_or_else(|e| panic!("{import}: {e}"));
            assert_eq!(info.flow_name, "f");
            assert_eq!(
                !info.warnings.is_empty(),
                warns,
                "{import}: {:?}",
                info.warnings
            );
        }
        // A re-exported decorator that is not Prefect's, and a missing module, are not flows.
        for lib in [lib_other, ""] {
            let files = [
                (
                    "main.py",
                    "from lib import flow\n@flow\ndef f():\n    pass\n",
                ),
                ("lib.py", lib),
            ];
            let err = read_in_project(&files, "main.py", "f").unwrap_err();
            assert_eq!(err.kind, FlowErrorKind::NotAFlow, "{lib:?}");
        }
        // Without project access (read_flow) the re-export cannot be followed.
        let err = read_flow(
            "from lib import flow\n@flow\ndef f():\n    pass\n",
            "main.py",
            "f",
        )
        .unwrap_err();
        assert_eq!(err.kind, FlowErrorKind::NotAFlow);
    }

    #[test]
    fn type_aliases_resolve_in_models_and_signatures() {
        let types = "from typing import Literal\nfrom typing_extensions import TypeAlias\nAction = Literal['create', 'delete']\nMode: TypeAlias = Literal['a', 'b']\n";
        let main = "from prefect import flow\nfrom pydantic import BaseModel\nfrom types_mod import Action, Mode\nclass M(BaseModel):\n    action: Action\n    mode: Mode = 'a'\n@flow\ndef f(m: M, a: Action = 'create'):\n    pass\n";
        let info = read_in_project(
            &[("main.py", main), ("types_mod.py", types)],
            "main.py",
            "f",
        )
        .unwrap();
        assert!(info.warnings.is_empty(), "{:?}", info.warnings);
        let schema = &info.parameter_openapi_schema;
        assert_eq!(schema["properties"]["m"]["$ref"], "#/definitions/M");
        assert_eq!(
            schema["definitions"]["M"]["properties"]["action"],
            serde_json::json!({"enum": ["create", "delete"], "title": "Action", "type": "string"})
        );
        assert_eq!(
            schema["definitions"]["M"]["required"],
            serde_json::json!(["action"])
        );
        assert_eq!(
            schema["properties"]["a"]["enum"],
            serde_json::json!(["create", "delete"])
        );

        // PEP 695 `type X = ...` is a TypeAliasType: the same `$ref` and `$defs` entry as the
        // `TypeAliasType("X", ...)` spelling, which the reexport golden checks against Prefect.
        let pep695 = "from typing import Literal\nfrom prefect import flow\ntype Stage = Literal['dev', 'prod']\n@flow\ndef f(stage: Stage = 'dev'):\n    pass\n";
        let spelled = "from typing import Literal\nfrom typing_extensions import TypeAliasType\nfrom prefect import flow\nStage = TypeAliasType('Stage', Literal['dev', 'prod'])\n@flow\ndef f(stage: Stage = 'dev'):\n    pass\n";
        let a = read_flow(pep695, "a.py", "f").unwrap();
        let b = read_flow(spelled, "b.py", "f").unwrap();
        assert_eq!(a.parameter_openapi_schema, b.parameter_openapi_schema);
        assert_eq!(
            a.parameter_openapi_schema["definitions"]["Stage"],
            serde_json::json!({"enum": ["dev", "prod"], "type": "string"})
        );
        // A generic `type` alias is not understood: untyped parameter, with a warning.
        let generic = "from prefect import flow\ntype Pair[T] = tuple[T, T]\n@flow\ndef f(p: Pair = None):\n    pass\n";
        let info = read_flow(generic, "g.py", "f").unwrap();
        assert!(
            info.warnings[0].contains("generic `type` alias"),
            "{:?}",
            info.warnings
        );
    }

    #[test]
    fn model_fields_keep_json_schema_extra() {
        let src = "from prefect import flow\nfrom pydantic import BaseModel, Field\nclass C(BaseModel):\n    days: int = Field(30, ge=1, json_schema_extra={'position': 0, 'ui': {'b': 1, 'a': 2}})\n@flow\ndef f(c: C = C()):\n    pass\n";
        let info = read_flow(src, "f.py", "f").unwrap();
        assert_eq!(
            info.parameter_openapi_schema["definitions"]["C"]["properties"]["days"],
            serde_json::json!({"default": 30, "minimum": 1, "position": 0, "title": "Days",
                "type": "integer", "ui": {"a": 2, "b": 1}})
        );
    }

    #[test]
    fn a_model_that_cannot_be_described_is_refused_at_its_line() {
        let models = "from pydantic import BaseModel, Json\n\nclass Cfg(BaseModel):\n    host: str\n    raw: Json = '{}'\n";
        let main = "from prefect import flow\nfrom .models import Cfg\n@flow\ndef f(cfg: Cfg):\n    pass\n";
        let err = read_in_project(
            &[("flows/main.py", main), ("flows/models.py", models)],
            "flows/main.py",
            "f",
        )
        .unwrap_err();
        assert_eq!(err.kind, FlowErrorKind::Unsupported);
        assert_eq!(err.file, "flows/models.py");
        assert_eq!(err.line, Some(5));
        assert!(
            err.message
                .starts_with("model Cfg.raw: annotation uses `pydantic.Json`"),
            "{}",
            err.message
        );
        // The same model in the flow's own file: the flow's file and line.
        let inline = "from prefect import flow\nfrom pydantic import BaseModel, Json\nclass Cfg(BaseModel):\n    raw: Json = '{}'\n@flow\ndef f(cfg: Cfg):\n    pass\n";
        let err = read_flow(inline, "flow.py", "f").unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("flow.py", Some(4)));
    }

    #[test]
    fn classes_and_metadata_prefect_would_describe_are_refused() {
        let check = |src: &str| read_flow(src, "f.py", "f").unwrap_err();
        let err = check("from typing import NamedTuple\nfrom prefect import flow\n\nclass P(NamedTuple):\n    x: int\n@flow\ndef f(p: P):\n    pass\n");
        assert_eq!(err.line, Some(4));
        assert!(
            err.message.starts_with("class P is a NamedTuple"),
            "{}",
            err.message
        );
        let err = check("from typing import Annotated\nfrom annotated_types import Gt\nfrom prefect import flow\n@flow\ndef f(\n    x: Annotated[int, Gt(1)] = 2,\n):\n    pass\n");
        assert_eq!(err.line, Some(6));
        assert!(
            err.message.starts_with("Annotated metadata `Gt("),
            "{}",
            err.message
        );
        // In a string annotation the string's own line is named.
        let err = check("from typing import Annotated\nfrom annotated_types import Gt\nfrom prefect import flow\n@flow\ndef f(\n    y: int = 1,\n    x: 'Annotated[int, Gt(1)]' = 2,\n):\n    pass\n");
        assert_eq!(err.line, Some(7));
    }

    #[test]
    fn non_literal_description_and_version_warn() {
        let src = "from prefect import flow\nimport os\n@flow(description=os.environ['D'], version=os.environ['V'])\ndef f():\n    '''Doc.'''\n";
        let info = read_flow(src, "f.py", "f").unwrap();
        assert_eq!(info.description.as_deref(), Some("Doc."));
        assert_eq!(info.version, None);
        assert_eq!(info.warnings.len(), 2, "{:?}", info.warnings);
    }
}
