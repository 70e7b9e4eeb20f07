//! Read a Prefect flow from its Python source without running Python.
//!
//! `prefect deploy` imports the flow file and asks the resulting `Flow` object for its name,
//! description, version and parameter schema. This module reproduces those answers from the
//! AST (rustpython-parser): it resolves the entrypoint to a file, finds the function, checks
//! it carries Prefect's `@flow` decorator (following imports and aliases), reads the decorator
//! keywords and the docstring exactly as `inspect.getdoc` and griffe see them, and hands the
//! signature to [`crate::prefect::param_schema`].

use crate::prefect::python_text::str_repr;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use md5::{Digest, Md5};
use rustpython_parser::ast::{self, Constant, Expr, Ranged, Stmt};
use rustpython_parser::Parse;
use serde_json::Value;

use crate::prefect::param_schema::{self, Param, ParamKind};

// ---------------------------------------------------------------------------------------------
// Entrypoints
// ---------------------------------------------------------------------------------------------

/// Where a flow lives, as written in prefect.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    /// The entrypoint string as given.
    pub raw: String,
    pub target: EntrypointTarget,
    /// The object inside the file: `func` or `Class.method`.
    pub object: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrypointTarget {
    /// `path/to/file.py:func`: a path relative to the project root (normalised, no `..`).
    Script(PathBuf),
    /// `pkg.mod:func` or `pkg.mod.func`: a dotted module name.
    Module(String),
}

/// Split an entrypoint the way Prefect's `import_object` does: `.py:` means a script path
/// (split at the last colon), otherwise `module:object` or `module.object` (last dot).
/// Paths must stay inside the project: absolute paths and `..` escapes are rejected.
pub fn parse_entrypoint(entrypoint: &str) -> Result<Entrypoint, String> {
    let raw = entrypoint.to_string();
    let trimmed = entrypoint.trim();
    if trimmed.is_empty() {
        return Err("the entrypoint is empty".into());
    }
    if trimmed.contains(".py:") {
        let (path, object) = trimmed.rsplit_once(':').unwrap_or((trimmed, ""));
        check_object_path(entrypoint, object)?;
        let path = contained_relative_path(path)
            .map_err(|why| format!("entrypoint {entrypoint:?}: {why}"))?;
        return Ok(Entrypoint {
            raw,
            target: EntrypointTarget::Script(path),
            object: object.into(),
        });
    }
    let (module, object) = if let Some((module, object)) = trimmed.rsplit_once(':') {
        (module, object)
    } else if let Some((module, object)) = trimmed.rsplit_once('.') {
        (module, object)
    } else {
        return Err(format!(
            "Invalid format for object import. Received {}. Use `path/to/file.py:function` \
             or `package.module:function`.",
            str_repr(entrypoint)
        ));
    };
    check_object_path(entrypoint, object)?;
    if module.is_empty() || !module.split('.').all(is_identifier) {
        return Err(format!(
            "entrypoint {entrypoint:?}: {module:?} is neither a `.py` file nor a dotted module name"
        ));
    }
    Ok(Entrypoint {
        raw,
        target: EntrypointTarget::Module(module.into()),
        object: object.into(),
    })
}

fn check_object_path(entrypoint: &str, object: &str) -> Result<(), String> {
    if object.is_empty() || !object.split('.').all(is_identifier) {
        return Err(format!(
            "entrypoint {entrypoint:?}: {object:?} is not a function name (expected `func` or \
             `Class.method`)"
        ));
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Normalise a relative path lexically, refusing anything that leaves the project root.
fn contained_relative_path(path: &str) -> Result<PathBuf, String> {
    let candidate = Path::new(path);
    if candidate.is_absolute() || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return Err(format!(
            "{path:?} is absolute; entrypoints must be relative to the project root"
        ));
    }
    let mut normal = PathBuf::new();
    for component in candidate.components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    return Err(format!("{path:?} points outside the project root"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{path:?} is absolute; entrypoints must be relative"
                ));
            }
        }
    }
    if normal.as_os_str().is_empty() {
        return Err(format!("{path:?} names no file"));
    }
    Ok(normal)
}

impl Entrypoint {
    /// Project-relative files that may hold the flow, in the order Python would try them
    /// (`pkg/mod.py` before `pkg/mod/__init__.py`). Pure: no file system access.
    pub fn file_candidates(&self) -> Vec<PathBuf> {
        match &self.target {
            EntrypointTarget::Script(path) => vec![path.clone()],
            EntrypointTarget::Module(module) => {
                let base: PathBuf = module.split('.').collect();
                vec![base.with_extension("py"), base.join("__init__.py")]
            }
        }
    }

    /// The function (or method) name, for messages: `func` or `Class.method`.
    pub fn function(&self) -> &str {
        &self.object
    }

    /// How Prefect names the file in its errors (`path` part of the entrypoint).
    pub fn file_label(&self) -> String {
        match &self.target {
            EntrypointTarget::Script(_) => self
                .raw
                .trim()
                .rsplit_once(':')
                .map_or(String::new(), |(p, _)| p.to_string()),
            EntrypointTarget::Module(module) => module.clone(),
        }
    }
}

/// The first existing candidate file under `root` (the only I/O in this module).
pub fn locate_entrypoint_file(root: &Path, entrypoint: &Entrypoint) -> Result<PathBuf, String> {
    let candidates = entrypoint.file_candidates();
    for candidate in &candidates {
        let full = root.join(candidate);
        if full.is_file() {
            return Ok(full);
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(format!(
        "entrypoint {:?}: no such file under {} (tried {})",
        entrypoint.raw,
        root.display(),
        tried.join(", ")
    ))
}

/// md5 hex of the flow file: Prefect's default flow version (`file_hash`).
pub fn file_version_hash(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Flow metadata
// ---------------------------------------------------------------------------------------------

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

const BANNED_CHARACTERS: [char; 5] = ['/', '%', '&', '>', '<'];
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

/// Read the flow `function` (`func` or `Class.method`) from `source`.
/// `file_label` names the file in messages (e.g. the entrypoint's path).
pub fn read_flow(source: &str, file_label: &str, function: &str) -> Result<FlowInfo, FlowError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("read_flow".into())
            .stack_size(READ_STACK_BYTES)
            .spawn_scoped(scope, || read_flow_here(source, file_label, function))
            .ok()
            .and_then(|reader| reader.join().ok())
    })
    // No thread (or it panicked, which a test would show): read on this one.
    .unwrap_or_else(|| read_flow_here(source, file_label, function))
}

fn read_flow_here(source: &str, file_label: &str, function: &str) -> Result<FlowInfo, FlowError> {
    let error = |kind, message: String, offset: Option<usize>| FlowError {
        kind,
        message,
        file: file_label.to_string(),
        line: offset.map(|o| line_of(source, o)),
    };
    let suite = ast::Suite::parse(source, file_label).map_err(|e| {
        let offset = usize::from(e.offset);
        let (line, column) = line_column(source, offset);
        FlowError {
            kind: FlowErrorKind::Syntax,
            message: format!(
                "invalid Python syntax at line {line}, column {column}: {}",
                e.error
            ),
            file: file_label.to_string(),
            line: Some(line),
        }
    })?;
    let module = ModuleIndex::new(&suite);

    let missing = || {
        error(
            FlowErrorKind::MissingFlow,
            format!(
                "Flow function with name {} not found in {}.",
                str_repr(function),
                str_repr(file_label)
            ),
            None,
        )
    };
    let def = module.find_function(function).ok_or_else(missing)?;
    let def = match def {
        Found::Def(def) => def,
        Found::Other(offset, what) => {
            return Err(error(
                FlowErrorKind::Unsupported,
                format!(
                    "{} is {what}, not a `def` decorated with @flow; xtask reads flows from \
                     their definition, so point the entrypoint at the module that defines it",
                    str_repr(function)
                ),
                Some(offset),
            ))
        }
    };
    let def_offset = usize::from(def.range.start());
    let short_name = function.rsplit('.').next().unwrap_or(function);

    let mut warnings = Vec::new();
    let decorator = module
        .flow_decorator(def.decorators, &mut warnings)
        .ok_or_else(|| {
            error(
                FlowErrorKind::NotAFlow,
                format!(
                "Function with name {} is not a flow. Make sure that it is decorated with '@flow'.",
                str_repr(function)
            ),
                Some(def_offset),
            )
        })?;

    let keyword = |name: &str| -> Result<Option<String>, String> {
        let Some(expr) = decorator.and_then(|call| {
            call.keywords
                .iter()
                .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == name))
        }) else {
            return Ok(None);
        };
        param_schema::eval_string(&module, &expr.value).map_err(|why| {
            format!(
                "@flow({name}=...) `{}` {why}",
                param_schema::unparse(&expr.value)
            )
        })
    };

    // name: `name or fn.__name__.replace("_", "-")`
    let flow_name = match keyword("name") {
        Ok(Some(name)) if !name.is_empty() => name,
        Ok(_) => short_name.replace('_', "-"),
        Err(why) => {
            return Err(error(
                FlowErrorKind::Unsupported,
                format!("{why}; the flow name must be a string literal"),
                Some(def_offset),
            ))
        }
    };
    if flow_name.contains(BANNED_CHARACTERS) {
        return Err(error(
            FlowErrorKind::InvalidName,
            format!(
                "Name {} contains an invalid character. Must not contain any of: ['/', '%', '&', \
                 '>', '<'].",
                str_repr(&flow_name)
            ),
            Some(def_offset),
        ));
    }

    let docstring = docstring_of(def.body);
    let getdoc = docstring.as_deref().map(cleandoc);
    let description = match keyword("description") {
        Ok(Some(text)) if !text.is_empty() => Some(text),
        Ok(_) => getdoc.clone(),
        Err(why) => {
            warnings.push(format!("{why}; using the docstring instead"));
            getdoc.clone()
        }
    };
    let version = match keyword("version") {
        Ok(version) => version.filter(|v| !v.is_empty()),
        Err(why) => {
            warnings.push(format!("{why}; falling back to the file hash"));
            None
        }
    };

    let params = collect_params(def.args);
    for param in &params {
        let message = if RESERVED_ARGUMENTS.contains(&param.name) {
            format!(
                "{} is a reserved argument name and cannot be used.",
                str_repr(param.name)
            )
        } else if VALIDATION_RESERVED.contains(&param.name) {
            "Flow function is not compatible with `validate_parameters`. Disable validation or \
             change the argument names."
                .to_string()
        } else if param.name.starts_with('_') {
            format!(
                "Fields must not use names with leading underscores; e.g., use {} instead of {}.",
                str_repr(param.name.trim_start_matches('_')),
                str_repr(param.name)
            )
        } else {
            continue;
        };
        return Err(error(
            FlowErrorKind::InvalidParameter,
            message,
            Some(def_offset),
        ));
    }

    let docstrings = parameter_docstrings(getdoc.as_deref());
    let schema = param_schema::parameter_schema(&module, &params, &docstrings, &mut warnings)
        .map_err(|why| error(FlowErrorKind::Unsupported, why, Some(def_offset)))?;

    Ok(FlowInfo {
        flow_name,
        description,
        version,
        parameter_openapi_schema: schema,
        warnings,
        line: line_of(source, def_offset),
    })
}

/// The parameters in `inspect.signature` order: positional-only, positional, `*args`,
/// keyword-only, `**kwargs`.
fn collect_params(args: &ast::Arguments) -> Vec<Param<'_>> {
    let mut params = Vec::new();
    fn with_default(arg: &ast::ArgWithDefault, kind: ParamKind) -> Param<'_> {
        Param {
            name: arg.def.arg.as_str(),
            kind,
            annotation: arg.def.annotation.as_deref(),
            default: arg.default.as_deref(),
        }
    }
    for arg in args.posonlyargs.iter().chain(&args.args) {
        params.push(with_default(arg, ParamKind::Positional));
    }
    if let Some(arg) = &args.vararg {
        params.push(Param {
            name: arg.arg.as_str(),
            kind: ParamKind::VarPositional,
            annotation: arg.annotation.as_deref(),
            default: None,
        });
    }
    for arg in &args.kwonlyargs {
        params.push(with_default(arg, ParamKind::KeywordOnly));
    }
    if let Some(arg) = &args.kwarg {
        params.push(Param {
            name: arg.arg.as_str(),
            kind: ParamKind::VarKeyword,
            annotation: arg.annotation.as_deref(),
            default: None,
        });
    }
    params
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

// ---------------------------------------------------------------------------------------------
// Module namespace
// ---------------------------------------------------------------------------------------------

/// What a module-level name is bound to, as far as the AST tells.
#[derive(Clone, Copy)]
enum Binding<'a> {
    /// `import a.b as x` (→ "a.b"), `import a.b` (binds `a` → "a").
    Module(&'a str),
    /// `from m import n [as x]` → "m.n".
    Imported(&'a str, &'a str),
    Class(&'a ast::StmtClassDef),
    Function,
    /// `NAME = expr` (single simple target).
    Value(&'a Expr),
    /// Bound in a way the reader does not follow (loops, unpacking, relative imports, ...).
    Opaque,
}

/// What an expression names.
pub(crate) enum Resolved<'a> {
    /// A dotted path rooted in an imported module or a builtin (`typing.List`,
    /// `builtins.int`, `prefect.flow`).
    Qualified(String),
    Class(&'a ast::StmtClassDef),
    Value(&'a Expr),
    Undefined,
    Unknown,
}

/// The module-level names of the flow's file.
pub(crate) struct ModuleIndex<'a> {
    suite: &'a [Stmt],
    bindings: HashMap<&'a str, Binding<'a>>,
    /// `from __future__ import annotations`: every annotation is a string.
    pub(crate) future_annotations: bool,
}

/// A function definition, sync or async.
struct FunctionDef<'a> {
    range: ast::text_size::TextRange,
    args: &'a ast::Arguments,
    body: &'a [Stmt],
    decorators: &'a [Expr],
}

enum Found<'a> {
    Def(FunctionDef<'a>),
    /// The name is bound, but not by a `def` (offset, description).
    Other(usize, &'static str),
}

const BUILTIN_NAMES: [&str; 14] = [
    "int",
    "float",
    "str",
    "bool",
    "bytes",
    "list",
    "dict",
    "tuple",
    "set",
    "frozenset",
    "object",
    "type",
    "staticmethod",
    "classmethod",
];

impl<'a> ModuleIndex<'a> {
    pub(crate) fn new(suite: &'a [Stmt]) -> Self {
        let mut index = Self {
            suite,
            bindings: HashMap::new(),
            future_annotations: false,
        };
        index.bind_block(suite);
        index
    }

    /// Bindings in execution order; later bindings win. `try:` bodies count (the common
    /// optional-import idiom); `if TYPE_CHECKING:` and other conditionals do not.
    fn bind_block(&mut self, block: &'a [Stmt]) {
        for stmt in block {
            match stmt {
                Stmt::Import(import) => {
                    for alias in &import.names {
                        let full = alias.name.as_str();
                        match &alias.asname {
                            Some(asname) => {
                                self.bindings.insert(asname.as_str(), Binding::Module(full));
                            }
                            None => {
                                let top = full.split('.').next().unwrap_or(full);
                                self.bindings.insert(top, Binding::Module(top));
                            }
                        }
                    }
                }
                Stmt::ImportFrom(import) => {
                    let relative = import.level.is_some_and(|l| l.to_u32() > 0);
                    let module = import.module.as_ref().map_or("", |m| m.as_str());
                    if module == "__future__" {
                        if import
                            .names
                            .iter()
                            .any(|a| a.name.as_str() == "annotations")
                        {
                            self.future_annotations = true;
                        }
                        continue;
                    }
                    for alias in &import.names {
                        let local = alias.asname.as_ref().unwrap_or(&alias.name).as_str();
                        let binding = if relative || module.is_empty() {
                            Binding::Opaque
                        } else {
                            Binding::Imported(module, alias.name.as_str())
                        };
                        self.bindings.insert(local, binding);
                    }
                }
                Stmt::ClassDef(class) => {
                    self.bindings
                        .insert(class.name.as_str(), Binding::Class(class));
                }
                Stmt::FunctionDef(f) => {
                    self.bindings.insert(f.name.as_str(), Binding::Function);
                }
                Stmt::AsyncFunctionDef(f) => {
                    self.bindings.insert(f.name.as_str(), Binding::Function);
                }
                Stmt::Assign(assign) => {
                    for target in &assign.targets {
                        match target {
                            Expr::Name(name) if assign.targets.len() == 1 => {
                                self.bindings
                                    .insert(name.id.as_str(), Binding::Value(&assign.value));
                            }
                            other => self.bind_opaque(other),
                        }
                    }
                }
                Stmt::AnnAssign(assign) => {
                    if let (Expr::Name(name), Some(value)) = (assign.target.as_ref(), &assign.value)
                    {
                        self.bindings
                            .insert(name.id.as_str(), Binding::Value(value));
                    }
                }
                Stmt::Try(t) => {
                    self.bind_block(&t.body);
                    for handler in &t.handlers {
                        let ast::ExceptHandler::ExceptHandler(h) = handler;
                        self.bind_opaque_block(&h.body);
                    }
                }
                Stmt::If(i) => {
                    let type_checking = matches!(i.test.as_ref(), Expr::Name(n) if n.id.as_str() == "TYPE_CHECKING")
                        || matches!(i.test.as_ref(), Expr::Attribute(a) if a.attr.as_str() == "TYPE_CHECKING");
                    if !type_checking {
                        self.bind_opaque_block(&i.body);
                        self.bind_opaque_block(&i.orelse);
                    }
                }
                Stmt::For(f) => self.bind_opaque(&f.target),
                Stmt::With(w) => {
                    for item in &w.items {
                        if let Some(var) = &item.optional_vars {
                            self.bind_opaque(var);
                        }
                    }
                    self.bind_opaque_block(&w.body);
                }
                _ => {}
            }
        }
    }

    /// Names bound conditionally: defined, but with a value we do not trust.
    fn bind_opaque_block(&mut self, block: &'a [Stmt]) {
        let mut inner = ModuleIndex {
            suite: self.suite,
            bindings: HashMap::new(),
            future_annotations: false,
        };
        inner.bind_block(block);
        for name in inner.bindings.keys() {
            self.bindings.entry(name).or_insert(Binding::Opaque);
        }
    }

    fn bind_opaque(&mut self, target: &'a Expr) {
        match target {
            Expr::Name(name) => {
                self.bindings.insert(name.id.as_str(), Binding::Opaque);
            }
            Expr::Tuple(t) => t.elts.iter().for_each(|e| self.bind_opaque(e)),
            Expr::List(l) => l.elts.iter().for_each(|e| self.bind_opaque(e)),
            _ => {}
        }
    }

    /// Resolve a `Name` or dotted `Attribute` chain.
    pub(crate) fn resolve(&self, expr: &Expr) -> Resolved<'a> {
        match expr {
            Expr::Name(name) => match self.bindings.get(name.id.as_str()) {
                Some(Binding::Module(path)) => Resolved::Qualified((*path).to_string()),
                Some(Binding::Imported(module, name)) => {
                    Resolved::Qualified(format!("{module}.{name}"))
                }
                Some(Binding::Class(class)) => Resolved::Class(class),
                Some(Binding::Value(value)) => Resolved::Value(value),
                Some(Binding::Function) | Some(Binding::Opaque) => Resolved::Unknown,
                None if BUILTIN_NAMES.contains(&name.id.as_str()) => {
                    Resolved::Qualified(format!("builtins.{}", name.id))
                }
                None => Resolved::Undefined,
            },
            Expr::Attribute(attr) => match self.resolve(&attr.value) {
                Resolved::Qualified(path) => Resolved::Qualified(format!("{path}.{}", attr.attr)),
                Resolved::Undefined => Resolved::Undefined,
                _ => Resolved::Unknown,
            },
            _ => Resolved::Unknown,
        }
    }

    /// The module attribute `function` (`func` or `Class.method`) as Python would see it
    /// after executing the module: the last top-level binding of the name.
    fn find_function(&self, function: &str) -> Option<Found<'a>> {
        let mut parts = function.split('.');
        let first = parts.next()?;
        let rest: Vec<&str> = parts.collect();
        let mut found = None;
        for stmt in self.suite {
            if let Some(hit) = binding_in(stmt, first) {
                found = Some(hit);
            }
        }
        match (found?, rest.as_slice()) {
            (Hit::Def(def), []) => Some(Found::Def(def)),
            (Hit::Class(class), [method]) => {
                let mut method_def = None;
                for stmt in &class.body {
                    if let Some(hit) = binding_in(stmt, method) {
                        method_def = Some(hit);
                    }
                }
                match method_def? {
                    Hit::Def(def) => Some(Found::Def(def)),
                    Hit::Other(offset, what) => Some(Found::Other(offset, what)),
                    Hit::Class(c) => Some(Found::Other(usize::from(c.range.start()), "a class")),
                }
            }
            (Hit::Class(c), []) => Some(Found::Other(usize::from(c.range.start()), "a class")),
            (Hit::Other(offset, what), []) => Some(Found::Other(offset, what)),
            _ => None,
        }
    }

    /// The `@flow` / `@flow(...)` decorator among `decorators`, if any: `Some(None)` for the
    /// bare form, `Some(Some(call))` for the call form.
    fn flow_decorator(
        &self,
        decorators: &'a [Expr],
        warnings: &mut Vec<String>,
    ) -> Option<Option<&'a ast::ExprCall>> {
        for (i, decorator) in decorators.iter().enumerate() {
            let (target, call) = match decorator {
                Expr::Call(call) => (call.func.as_ref(), Some(call)),
                other => (other, None),
            };
            let Resolved::Qualified(path) = self.resolve(target) else {
                continue;
            };
            if !matches!(path.as_str(), "prefect.flow" | "prefect.flows.flow") {
                continue;
            }
            for outer in &decorators[..i] {
                let outer_path = match self.resolve(outer) {
                    Resolved::Qualified(p) => p,
                    _ => param_schema::unparse(outer),
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
}

enum Hit<'a> {
    Def(FunctionDef<'a>),
    Class(&'a ast::StmtClassDef),
    Other(usize, &'static str),
}

/// Does this statement bind `name`? (Top level of a module or class body.)
fn binding_in<'a>(stmt: &'a Stmt, name: &str) -> Option<Hit<'a>> {
    let offset = usize::from(stmt.range().start());
    match stmt {
        Stmt::FunctionDef(f) if f.name.as_str() == name => Some(Hit::Def(FunctionDef {
            range: f.range,
            args: &f.args,
            body: &f.body,
            decorators: &f.decorator_list,
        })),
        Stmt::AsyncFunctionDef(f) if f.name.as_str() == name => Some(Hit::Def(FunctionDef {
            range: f.range,
            args: &f.args,
            body: &f.body,
            decorators: &f.decorator_list,
        })),
        Stmt::ClassDef(c) if c.name.as_str() == name => Some(Hit::Class(c)),
        Stmt::Assign(a)
            if a.targets
                .iter()
                .any(|t| matches!(t, Expr::Name(n) if n.id.as_str() == name)) =>
        {
            Some(Hit::Other(offset, "assigned with `=`"))
        }
        Stmt::AnnAssign(a) if matches!(a.target.as_ref(), Expr::Name(n) if n.id.as_str() == name) => {
            Some(Hit::Other(offset, "assigned with `=`"))
        }
        Stmt::Import(i)
            if i.names
                .iter()
                .any(|a| a.asname.as_ref().unwrap_or(&a.name).as_str() == name) =>
        {
            Some(Hit::Other(offset, "imported from another module"))
        }
        Stmt::ImportFrom(i)
            if i.names
                .iter()
                .any(|a| a.asname.as_ref().unwrap_or(&a.name).as_str() == name) =>
        {
            Some(Hit::Other(offset, "imported from another module"))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Docstrings
// ---------------------------------------------------------------------------------------------

/// The raw docstring of a body: a leading string-literal expression statement.
pub(crate) fn docstring_of(body: &[Stmt]) -> Option<String> {
    match body.first()? {
        Stmt::Expr(e) => match e.value.as_ref() {
            Expr::Constant(c) => match &c.value {
                Constant::Str(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// `inspect.cleandoc` (Python 3.11): expand tabs, strip the first line, dedent the rest by
/// their common indentation, drop leading/trailing empty lines.
pub(crate) fn cleandoc(doc: &str) -> String {
    let expanded = expand_tabs(doc);
    let mut lines: Vec<String> = expanded.split('\n').map(str::to_string).collect();
    let margin = lines
        .iter()
        .skip(1)
        .filter_map(|line| {
            let content = line.trim_start().chars().count();
            (content > 0).then(|| line.chars().count() - content)
        })
        .min();
    if let Some(first) = lines.first_mut() {
        *first = first.trim_start().to_string();
    }
    if let Some(margin) = margin {
        for line in lines.iter_mut().skip(1) {
            *line = line.chars().skip(margin).collect();
        }
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    while lines.first().is_some_and(|l| l.is_empty()) {
        lines.remove(0);
    }
    lines.join("\n")
}

/// `str.expandtabs(8)`: columns restart after `\n` and `\r`.
fn expand_tabs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut column = 0usize;
    for c in text.chars() {
        match c {
            '\t' => {
                let spaces = 8 - column % 8;
                out.push_str(&" ".repeat(spaces));
                column += spaces;
            }
            '\n' | '\r' => {
                out.push(c);
                column = 0;
            }
            c => {
                out.push(c);
                column += 1;
            }
        }
    }
    out
}

/// Prefect's `parameter_docstrings`: griffe's Google parser over `inspect.getdoc(fn)`; each
/// non-empty parameters section (`Args:`, `Arguments:`, `Params:`, `Parameters:`) replaces the
/// previous mapping.
pub(crate) fn parameter_docstrings(doc: Option<&str>) -> BTreeMap<String, String> {
    let mut result = BTreeMap::new();
    let Some(doc) = doc.filter(|d| !d.is_empty()) else {
        return result;
    };
    // griffe's Docstring: inspect.cleandoc(value.rstrip()).
    let cleaned = cleandoc(doc.trim_end());
    let lines: Vec<&str> = cleaned.split('\n').collect();
    let mut offset = 0usize;
    let mut in_code_block = false;
    while offset < lines.len() {
        let line = lines[offset];
        let is_fence = line.trim_start_matches(' ').starts_with("```");
        if in_code_block {
            in_code_block = !is_fence;
        } else if is_fence {
            in_code_block = true;
        } else if let Some(title) = admonition_title(line) {
            let blank = |i: usize| lines.get(i).is_some_and(|l| is_empty_line(l));
            let blank_line_above = offset == 0 || blank(offset - 1);
            let has_next = offset + 1 < lines.len();
            let has_next_two = offset + 2 < lines.len();
            let blank_below = has_next && blank(offset + 1);
            let blank_below_two = has_next_two && blank(offset + 2);
            let indented_below = has_next && !blank_below && lines[offset + 1].starts_with(' ');
            let indented_below_two =
                has_next_two && !blank_below_two && lines[offset + 2].starts_with(' ');
            let skipped = !(indented_below || indented_below_two)
                || !blank_line_above
                || (indented_below_two && blank_below);
            if !skipped {
                let kind = section_kind(&title);
                match kind {
                    Some(SectionKind::Parameters) => {
                        let (items, next) = read_block_items(&lines, offset + 1);
                        let parameters = parse_parameter_items(&lines, &items);
                        if !parameters.is_empty() {
                            result = parameters.into_iter().collect();
                        }
                        offset = next;
                    }
                    Some(SectionKind::Examples) => {
                        offset = read_block(&lines, offset + 1);
                    }
                    Some(SectionKind::Items) => {
                        offset = read_block_items(&lines, offset + 1).1;
                    }
                    None => {
                        // An admonition ("Note:"): its block is consumed when it has content.
                        let end = read_block(&lines, offset + 1);
                        if end > offset {
                            offset = end;
                        }
                    }
                }
            }
        }
        offset += 1;
    }
    result
}

enum SectionKind {
    Parameters,
    Examples,
    /// Every other known section: read as indented items.
    Items,
}

fn section_kind(title: &str) -> Option<SectionKind> {
    match title.to_lowercase().as_str() {
        "args" | "arguments" | "params" | "parameters" => Some(SectionKind::Parameters),
        "examples" => Some(SectionKind::Examples),
        "keyword args" | "keyword arguments" | "other args" | "other arguments"
        | "other params" | "other parameters" | "type args" | "type arguments" | "type params"
        | "type parameters" | "raises" | "exceptions" | "returns" | "yields" | "receives"
        | "attributes" | "functions" | "methods" | "classes" | "type aliases" | "modules"
        | "warns" | "warnings" => Some(SectionKind::Items),
        _ => None,
    }
}

/// griffe's `_RE_ADMONITION`: `^(?P<type>[\w][\s\w-]*):(\s+(?P<title>[^\s].*))?\s*$`,
/// returning the type.
fn admonition_title(line: &str) -> Option<String> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut chars = line.char_indices();
    let (_, first) = chars.next()?;
    if !word(first) {
        return None;
    }
    // The type is greedy over [\s\w-]; the regex backtracks to the last ':' that fits.
    let colon_positions: Vec<usize> = line.match_indices(':').map(|(i, _)| i).collect();
    for &colon in colon_positions.iter().rev() {
        let kind = &line[..colon];
        if !kind
            .chars()
            .all(|c| word(c) || c.is_whitespace() || c == '-')
        {
            continue;
        }
        let after = &line[colon + 1..];
        let valid_tail = after.trim().is_empty()
            || (after.starts_with(char::is_whitespace) && !after.trim_start().is_empty());
        if valid_tail {
            return Some(kind.to_string());
        }
    }
    None
}

fn is_empty_line(line: &str) -> bool {
    line.chars().all(char::is_whitespace)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// griffe's `_read_block_items`: returns (items as (first line index, lines), last offset).
fn read_block_items(lines: &[&str], offset: usize) -> (Vec<Vec<String>>, usize) {
    if offset >= lines.len() {
        return (Vec::new(), offset);
    }
    let mut index = offset;
    while index < lines.len() && is_empty_line(lines[index]) {
        index += 1;
    }
    let Some(first) = lines.get(index) else {
        return (Vec::new(), index.saturating_sub(1));
    };
    let indent = indent_of(first);
    if indent == 0 {
        return (Vec::new(), index.saturating_sub(1));
    }
    let cut = |line: &str, n: usize| line.get(n..).unwrap_or("").to_string();
    let mut items = Vec::new();
    let mut current = vec![cut(first, indent)];
    index += 1;
    while index < lines.len() {
        let line = lines[index];
        if is_empty_line(line) {
            current.push(String::new());
        } else if line.starts_with(&" ".repeat(indent * 2)) {
            current.push(cut(line, indent * 2));
        } else if line.starts_with(&" ".repeat(indent + 1)) {
            current.push(cut(line, indent_of(line)));
        } else if line.starts_with(&" ".repeat(indent)) {
            items.push(std::mem::take(&mut current));
            current.push(cut(line, indent));
        } else {
            break;
        }
        index += 1;
    }
    items.push(current);
    (items, index - 1)
}

/// griffe's `_read_block`: the offset of the block's last line.
fn read_block(lines: &[&str], offset: usize) -> usize {
    if offset >= lines.len() {
        return offset.saturating_sub(1);
    }
    let mut index = offset;
    while index < lines.len() && is_empty_line(lines[index]) {
        index += 1;
    }
    let Some(first) = lines.get(index) else {
        return offset.saturating_sub(1);
    };
    let indent = indent_of(first);
    if indent == 0 {
        return offset.saturating_sub(1);
    }
    index += 1;
    let prefix = " ".repeat(indent);
    while index < lines.len() && (lines[index].starts_with(&prefix) || is_empty_line(lines[index]))
    {
        index += 1;
    }
    index - 1
}

/// griffe's `_read_parameters`: `name (type): description` items.
fn parse_parameter_items(_lines: &[&str], items: &[Vec<String>]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in items {
        let Some((head, rest)) = item.split_first() else {
            continue;
        };
        let Some((name_with_type, first_line)) = head.split_once(':') else {
            continue;
        };
        let mut description_lines = vec![first_line.trim_start().to_string()];
        description_lines.extend(rest.iter().cloned());
        let description = description_lines
            .join("\n")
            .trim_end_matches('\n')
            .to_string();
        let name = if name_with_type.contains('(') && name_with_type.ends_with(')') {
            name_with_type
                .split_once('(')
                .map_or("", |(n, _)| n)
                .trim()
                .to_string()
        } else {
            name_with_type.to_string()
        };
        match out
            .iter_mut()
            .find(|(n, _): &&mut (String, String)| *n == name)
        {
            Some(slot) => slot.1 = description,
            None => out.push((name, description)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoints_split_like_prefect() {
        let ep = parse_entrypoint("flows/etl.py:extract").unwrap();
        assert_eq!(
            ep.target,
            EntrypointTarget::Script(PathBuf::from("flows/etl.py"))
        );
        assert_eq!(ep.object, "extract");
        assert_eq!(ep.file_candidates(), vec![PathBuf::from("flows/etl.py")]);
        assert_eq!(ep.file_label(), "flows/etl.py");

        let ep = parse_entrypoint("./flows/../app/f.py:Pipeline.run").unwrap();
        assert_eq!(
            ep.target,
            EntrypointTarget::Script(PathBuf::from("app/f.py"))
        );
        assert_eq!(ep.function(), "Pipeline.run");

        let ep = parse_entrypoint("app.flows.etl:run").unwrap();
        assert_eq!(ep.target, EntrypointTarget::Module("app.flows.etl".into()));
        assert_eq!(
            ep.file_candidates(),
            vec![
                PathBuf::from("app/flows/etl.py"),
                PathBuf::from("app/flows/etl/__init__.py")
            ]
        );
        let ep = parse_entrypoint("app.flows.etl.run").unwrap();
        assert_eq!(ep.target, EntrypointTarget::Module("app.flows.etl".into()));
        assert_eq!(ep.object, "run");
    }

    #[test]
    fn entrypoints_outside_the_project_are_rejected() {
        for bad in [
            "../../etc/passwd.py:x",
            "/abs/flow.py:f",
            "a/../../b.py:f",
            "C:/x.py:f",
        ] {
            let err = parse_entrypoint(bad).unwrap_err();
            assert!(
                err.contains("outside") || err.contains("absolute"),
                "{bad}: {err}"
            );
        }
        assert!(parse_entrypoint("../../etc/passwd:x").is_err());
        assert!(parse_entrypoint("noseparator")
            .unwrap_err()
            .contains("Invalid format"));
        assert!(parse_entrypoint("flow.py:").is_err());
        assert!(parse_entrypoint("flow.py:not-a-name").is_err());
    }

    #[test]
    fn locate_checks_candidates_in_order() {
        let root = std::env::temp_dir().join(format!("xtask-flow-source-{}", std::process::id()));
        std::fs::create_dir_all(root.join("pkg/mod")).unwrap();
        std::fs::write(root.join("pkg/mod/__init__.py"), "").unwrap();
        let ep = parse_entrypoint("pkg.mod:f").unwrap();
        assert_eq!(
            locate_entrypoint_file(&root, &ep).unwrap(),
            root.join("pkg/mod/__init__.py")
        );
        std::fs::write(root.join("pkg/mod.py"), "").unwrap();
        assert_eq!(
            locate_entrypoint_file(&root, &ep).unwrap(),
            root.join("pkg/mod.py")
        );
        let missing = parse_entrypoint("nope.py:f").unwrap();
        assert!(locate_entrypoint_file(&root, &missing)
            .unwrap_err()
            .contains("tried nope.py"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn md5_of_file_bytes() {
        assert_eq!(file_version_hash(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            file_version_hash(b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn cleandoc_matches_inspect() {
        assert_eq!(cleandoc("   "), "");
        assert_eq!(
            cleandoc("One.\n\n    Two.\n      Three.\n    "),
            "One.\n\nTwo.\n  Three."
        );
        assert_eq!(
            cleandoc("\n    Start.\n\n        Block.\n    "),
            "Start.\n\n    Block."
        );
        assert_eq!(cleandoc("a\tb\n\tc"), "a       b\nc");
    }

    #[test]
    fn python_repr_quotes() {
        assert_eq!(str_repr("x"), "'x'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'b\"c"), "'a\\'b\"c'");
    }

    #[test]
    fn griffe_parameters() {
        let doc = "Summary.\n\nArgs:\n    a (int): First.\n    b: Second\n        continued.\n    *args: Star.\n\nReturns:\n    x: y";
        let params = parameter_docstrings(Some(doc));
        assert_eq!(params.get("a").map(String::as_str), Some("First."));
        assert_eq!(
            params.get("b").map(String::as_str),
            Some("Second\ncontinued.")
        );
        assert_eq!(params.get("*args").map(String::as_str), Some("Star."));
        assert!(!params.contains_key("x"));
        // No blank line above: not a section.
        assert!(parameter_docstrings(Some("Summary.\nArgs:\n    a: A.")).is_empty());
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
        let src = "from prefect import flow\nfrom pydantic import BaseModel\nclass A(B):\n    x: int\nclass B(A):\n    y: int\nX = Y\nY = X\n@flow\ndef f(a: A = None, b: int = X):\n    pass\n";
        let info = read_flow(src, "f.py", "f").unwrap();
        assert_eq!(info.warnings.len(), 2, "{:?}", info.warnings);
        assert_eq!(
            info.parameter_openapi_schema["properties"]["a"],
            serde_json::json!({"default": null, "position": 0, "title": "a"})
        );
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
    fn non_literal_description_and_version_warn() {
        let src = "from prefect import flow\nimport os\n@flow(description=os.environ['D'], version=os.environ['V'])\ndef f():\n    '''Doc.'''\n";
        let info = read_flow(src, "f.py", "f").unwrap();
        assert_eq!(info.description.as_deref(), Some("Doc."));
        assert_eq!(info.version, None);
        assert_eq!(info.warnings.len(), 2, "{:?}", info.warnings);
    }
}
