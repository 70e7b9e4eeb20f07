//! The module-level names of a flow's file and what they are bound to (imports, classes,
//! constants), so an expression like `pf.flow` or `typing.List` resolves to a qualified name
//! the way Python would see it after running the module. Imports of the project's own modules
//! are followed by `project`, which owns one index per module.

use std::collections::HashMap;

use rustpython_parser::ast::{self, Expr, Ranged, Stmt};

/// What a module-level name is bound to, as far as the AST tells.
#[derive(Clone, Copy)]
enum Binding<'a> {
    /// `import a.b as x` (→ "a.b"), `import a.b` (binds `a` → "a").
    Module(&'a str),
    /// `from m import n [as x]` → "m.n".
    Imported(&'a str, &'a str),
    /// `from .m import n [as x]` (level, module, name) → ".m.n"; only the project resolves it.
    Relative(u32, &'a str, &'a str),
    Class(&'a ast::StmtClassDef),
    Function,
    /// `NAME = expr` (single simple target).
    Value(&'a Expr),
    /// `type NAME = expr` (PEP 695).
    TypeAlias(&'a ast::StmtTypeAlias),
    /// Bound differently by the branches of an `if`: see `ModuleIndex::branches`.
    Conditional,
    /// Bound in a way the reader does not follow (loops, unpacking, relative imports, ...).
    Opaque,
}

/// Which module of the project a name was found in (0 is the flow's file).
pub(super) type ModuleId = usize;

/// What an expression names.
pub(super) enum Resolved<'a> {
    /// A dotted path rooted in an imported module or a builtin (`typing.List`,
    /// `builtins.int`, `prefect.flow`). A leading `.` marks a relative import the project
    /// has not resolved yet.
    Qualified(String),
    /// A class, and the module whose names its body uses.
    Class(ModuleId, &'a ast::StmtClassDef),
    /// A module-level value (`NAME = expr`), and the module it is evaluated in.
    Value(ModuleId, &'a Expr),
    /// A PEP 695 `type NAME = expr`, and its module.
    TypeAlias(ModuleId, &'a ast::StmtTypeAlias),
    /// A module of the project itself (`from . import helpers`).
    ProjectModule(ModuleId),
    /// A name the branches of an `if` bind to different things: the dotted paths some branches
    /// import (the others bind something the reader does not follow).
    OneOf(Vec<String>),
    Undefined,
    Unknown,
}

/// The module-level names of one file of the project.
pub(super) struct ModuleIndex<'a> {
    pub(super) id: ModuleId,
    suite: &'a [Stmt],
    bindings: HashMap<&'a str, Binding<'a>>,
    /// For `Binding::Conditional` names: the dotted path each branch imports them from
    /// (None for a branch that binds them some other way).
    branches: HashMap<&'a str, Vec<Option<String>>>,
    /// `from __future__ import annotations`: every annotation is a string.
    pub(super) future_annotations: bool,
}

/// A function definition, sync or async.
pub(super) struct FunctionDef<'a> {
    pub(super) range: ast::text_size::TextRange,
    pub(super) args: &'a ast::Arguments,
    pub(super) body: &'a [Stmt],
    pub(super) decorators: &'a [Expr],
}

pub(super) enum Found<'a> {
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
    pub(super) fn new(id: ModuleId, suite: &'a [Stmt]) -> Self {
        let mut index = Self {
            id,
            suite,
            bindings: HashMap::new(),
            branches: HashMap::new(),
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
                Stmt::Import(import) => self.bind_import(import),
                Stmt::ImportFrom(import) => self.bind_import_from(import),
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
                Stmt::TypeAlias(alias) => match alias.name.as_ref() {
                    Expr::Name(name) => {
                        self.bindings
                            .insert(name.id.as_str(), Binding::TypeAlias(alias));
                    }
                    other => self.bind_opaque(other),
                },
                Stmt::Try(t) => {
                    self.bind_block(&t.body);
                    for handler in &t.handlers {
                        let ast::ExceptHandler::ExceptHandler(h) = handler;
                        self.bind_opaque_block(&h.body);
                    }
                }
                Stmt::If(i) => self.bind_if(i),
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

    /// `import a.b as x` binds `x` to `a.b`; `import a.b` binds `a`.
    fn bind_import(&mut self, import: &'a ast::StmtImport) {
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

    /// `from m import n [as x]` (relative too: the project follows those); `__future__` only
    /// sets a flag.
    fn bind_import_from(&mut self, import: &'a ast::StmtImportFrom) {
        let level = import.level.map_or(0, |l| l.to_u32());
        let module = import.module.as_ref().map_or("", |m| m.as_str());
        if module == "__future__" {
            if import
                .names
                .iter()
                .any(|a| a.name.as_str() == "annotations")
            {
                self.future_annotations = true;
            }
            return;
        }
        for alias in &import.names {
            let local = alias.asname.as_ref().unwrap_or(&alias.name).as_str();
            let binding = if level > 0 {
                Binding::Relative(level, module, alias.name.as_str())
            } else if module.is_empty() || alias.name.as_str() == "*" {
                Binding::Opaque
            } else {
                Binding::Imported(module, alias.name.as_str())
            };
            self.bindings.insert(local, binding);
        }
    }

    /// `if TYPE_CHECKING:` binds nothing at run time. Other branches bind conditionally: which
    /// one runs is not known, but what each imports is kept (a decorator imported from
    /// `prefect` in one branch is still recognised).
    fn bind_if(&mut self, i: &'a ast::StmtIf) {
        let type_checking = matches!(i.test.as_ref(), Expr::Name(n) if n.id.as_str() == "TYPE_CHECKING")
            || matches!(i.test.as_ref(), Expr::Attribute(a) if a.attr.as_str() == "TYPE_CHECKING");
        if type_checking {
            return;
        }
        for block in [&i.body, &i.orelse] {
            let inner = self.inner_bindings(block);
            for name in inner.bindings.keys().copied() {
                let path = match inner.resolve_name(name) {
                    Resolved::Qualified(path) => Some(path),
                    _ => None,
                };
                // An earlier unconditional binding is one of the possibilities too.
                let earlier = match self.bindings.get(name) {
                    Some(Binding::Conditional) | None => None,
                    Some(_) => Some(match self.resolve_name(name) {
                        Resolved::Qualified(p) => Some(p),
                        _ => None,
                    }),
                };
                let branches = self.branches.entry(name).or_default();
                branches.extend(earlier);
                branches.push(path);
                self.bindings.insert(name, Binding::Conditional);
            }
        }
    }

    /// The names a nested block binds, on their own.
    fn inner_bindings(&self, block: &'a [Stmt]) -> ModuleIndex<'a> {
        let mut inner = ModuleIndex {
            id: self.id,
            suite: self.suite,
            bindings: HashMap::new(),
            branches: HashMap::new(),
            future_annotations: false,
        };
        inner.bind_block(block);
        inner
    }

    /// Names bound conditionally: defined, but with a value we do not trust.
    fn bind_opaque_block(&mut self, block: &'a [Stmt]) {
        let inner = self.inner_bindings(block);
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

    /// What a module-level name is bound to in this file alone.
    pub(super) fn resolve_name(&self, name: &str) -> Resolved<'a> {
        match self.bindings.get(name) {
            Some(Binding::Module(path)) => Resolved::Qualified((*path).to_string()),
            Some(Binding::Imported(module, name)) => {
                Resolved::Qualified(format!("{module}.{name}"))
            }
            Some(Binding::Relative(level, module, name)) => {
                let dots = ".".repeat(*level as usize);
                if module.is_empty() {
                    Resolved::Qualified(format!("{dots}{name}"))
                } else {
                    Resolved::Qualified(format!("{dots}{module}.{name}"))
                }
            }
            Some(Binding::Class(class)) => Resolved::Class(self.id, class),
            Some(Binding::Value(value)) => Resolved::Value(self.id, value),
            Some(Binding::TypeAlias(alias)) => Resolved::TypeAlias(self.id, alias),
            Some(Binding::Conditional) => Resolved::OneOf(
                self.branches
                    .get(name)
                    .map(|paths| paths.iter().flatten().cloned().collect())
                    .unwrap_or_default(),
            ),
            Some(Binding::Function) | Some(Binding::Opaque) => Resolved::Unknown,
            None if BUILTIN_NAMES.contains(&name) => {
                Resolved::Qualified(format!("builtins.{name}"))
            }
            None => Resolved::Undefined,
        }
    }

    /// Resolve a `Name` or dotted `Attribute` chain within this file.
    pub(super) fn resolve(&self, expr: &Expr) -> Resolved<'a> {
        match expr {
            Expr::Name(name) => self.resolve_name(name.id.as_str()),
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
    pub(super) fn find_function(&self, function: &str) -> Option<Found<'a>> {
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
