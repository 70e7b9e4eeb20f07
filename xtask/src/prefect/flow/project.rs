//! The flow's file and the project modules it imports (a decorator re-exported by
//! `lib/imports.py`, a type alias or model from `types.py`), found the way Python's import
//! system would find them and resolved across files. Files come from a reader the caller
//! supplies, so this stays free of I/O; only paths inside the project are ever asked for.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use rustpython_parser::ast::{self, Stmt};
use rustpython_parser::Parse;

use super::module_index::{ModuleId, ModuleIndex, Resolved};

/// Reads a project file by its project-relative path (None: no such file).
pub type ReadProjectFile<'r> = dyn Fn(&Path) -> Option<String> + Sync + 'r;

/// Most project modules read for one flow (the flow's file included).
const MAX_PROJECT_MODULES: usize = 64;
/// Longest chain of project imports followed from the flow's file.
const MAX_IMPORT_DEPTH: usize = 8;
/// Longest chain of re-exports followed when resolving one name.
const MAX_REEXPORT_DEPTH: usize = 16;

/// Top-level modules already imported when Prefect loads a flow (Prefect itself, pydantic, the
/// standard modules they use): `sys.modules` answers for them, so a project file of the same
/// name (`flows/prefect.py`, `types.py`) is never what they import.
const PRELOADED: [&str; 27] = [
    "prefect",
    "pydantic",
    "pydantic_core",
    "typing",
    "typing_extensions",
    "annotated_types",
    "abc",
    "asyncio",
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",
    "importlib",
    "inspect",
    "ipaddress",
    "json",
    "logging",
    "os",
    "pathlib",
    "re",
    "sys",
    "types",
    "uuid",
    "warnings",
    "zoneinfo",
];

/// Where the flow's file sits and how Python imports it.
pub(super) struct FlowLocation {
    /// Project-relative path of the flow's file.
    pub(super) path: PathBuf,
    /// A `file.py:func` entrypoint: Prefect loads it as a package whose submodules live next
    /// to it or in the working directory, with both directories first on `sys.path`.
    pub(super) is_script: bool,
}

/// One parsed module of the project.
pub(super) struct LoadedModule {
    /// Project-relative path; how messages name the file.
    pub(super) path: PathBuf,
    pub(super) text: String,
    pub(super) suite: ast::Suite,
    /// Import specs as this module writes them (`lib.imports`, `.lib`, `..`) → module.
    links: HashMap<String, ModuleId>,
}

impl LoadedModule {
    pub(super) fn new(path: PathBuf, text: String, suite: ast::Suite) -> Self {
        Self {
            path,
            text,
            suite,
            links: HashMap::new(),
        }
    }
}

/// The flow's module (first) and every project module reachable through its imports, within
/// the bounds above. A module that cannot be read or parsed is left out: its names stay
/// unresolved, as for any module outside the project.
pub(super) fn load_project(
    flow: LoadedModule,
    location: &FlowLocation,
    read: &ReadProjectFile<'_>,
) -> Vec<LoadedModule> {
    let flow_dir = location
        .path
        .parent()
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let mut absolute_roots = Vec::new();
    if location.is_script && !flow_dir.as_os_str().is_empty() {
        absolute_roots.push(flow_dir.clone());
    }
    absolute_roots.push(PathBuf::new());

    let mut modules = vec![flow];
    let mut by_path: HashMap<PathBuf, ModuleId> = HashMap::from([(modules[0].path.clone(), 0)]);
    let mut unreadable: HashSet<PathBuf> = HashSet::new();
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    while let Some((id, depth)) = queue.pop_front() {
        if depth >= MAX_IMPORT_DEPTH {
            continue;
        }
        let relative_roots = if id == 0 && location.is_script {
            absolute_roots.clone()
        } else {
            vec![package_dir(&modules[id].path)]
        };
        let mut wanted = Vec::new();
        collect_imports(&modules[id].suite, &mut wanted);
        for spec in wanted {
            let top = spec.split('.').next().unwrap_or("");
            if modules[id].links.contains_key(&spec) || PRELOADED.contains(&top) {
                continue;
            }
            let candidates = module_files(&spec, &absolute_roots, &relative_roots);
            let mut found = None;
            for candidate in candidates {
                if let Some(&known) = by_path.get(&candidate) {
                    found = Some(known);
                    break;
                }
                if modules.len() >= MAX_PROJECT_MODULES || unreadable.contains(&candidate) {
                    continue;
                }
                let parsed = read(&candidate).and_then(|text| {
                    let suite = ast::Suite::parse(&text, &candidate.to_string_lossy()).ok()?;
                    Some((text, suite))
                });
                match parsed {
                    Some((text, suite)) => {
                        let new_id = modules.len();
                        modules.push(LoadedModule::new(candidate.clone(), text, suite));
                        by_path.insert(candidate, new_id);
                        queue.push_back((new_id, depth + 1));
                        found = Some(new_id);
                        break;
                    }
                    None => {
                        unreadable.insert(candidate);
                    }
                }
            }
            if let Some(target) = found {
                modules[id].links.insert(spec, target);
            }
        }
    }
    modules
}

/// The directory a module's relative imports start from.
fn package_dir(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("")).to_path_buf()
}

/// Every module spec an import statement may load, as the module writes it: `import a.b`
/// loads `a` and `a.b`; `from .m import x` loads `.m` and maybe the submodule `.m.x`.
/// Function and class bodies are not walked: their imports run later, if ever.
fn collect_imports(block: &[Stmt], out: &mut Vec<String>) {
    for stmt in block {
        match stmt {
            Stmt::Import(import) => {
                for alias in &import.names {
                    let mut spec = String::new();
                    for part in alias.name.as_str().split('.') {
                        spec = join_spec(&spec, part);
                        out.push(spec.clone());
                    }
                }
            }
            Stmt::ImportFrom(import) => {
                let level = import.level.map_or(0, |l| l.to_u32()) as usize;
                let module = import.module.as_ref().map_or("", |m| m.as_str());
                if module == "__future__" {
                    continue;
                }
                let base = format!("{}{module}", ".".repeat(level));
                if base.is_empty() {
                    continue;
                }
                out.push(base.clone());
                for alias in &import.names {
                    if alias.name.as_str() != "*" {
                        out.push(join_spec(&base, alias.name.as_str()));
                    }
                }
            }
            Stmt::Try(t) => {
                collect_imports(&t.body, out);
                for handler in &t.handlers {
                    let ast::ExceptHandler::ExceptHandler(h) = handler;
                    collect_imports(&h.body, out);
                }
                collect_imports(&t.orelse, out);
                collect_imports(&t.finalbody, out);
            }
            Stmt::If(i) => {
                collect_imports(&i.body, out);
                collect_imports(&i.orelse, out);
            }
            Stmt::With(w) => collect_imports(&w.body, out),
            _ => {}
        }
    }
}

/// `a` + `b` → `a.b`; `..` + `b` → `..b`.
fn join_spec(base: &str, part: &str) -> String {
    if base.is_empty() || base.ends_with('.') {
        format!("{base}{part}")
    } else {
        format!("{base}.{part}")
    }
}

/// `.lib.x` → `[".", "lib", "x"]`; `a.b` → `["a", "b"]`.
fn split_spec(spec: &str) -> Vec<&str> {
    let dots = spec.len() - spec.trim_start_matches('.').len();
    let mut parts = Vec::new();
    if dots > 0 {
        parts.push(&spec[..dots]);
    }
    let rest = &spec[dots..];
    if !rest.is_empty() {
        parts.extend(rest.split('.'));
    }
    parts
}

/// Project files that may hold the module `spec`, in Python's order (`m.py` before
/// `m/__init__.py`, roots in `sys.path` order). Nothing above the project root.
fn module_files(
    spec: &str,
    absolute_roots: &[PathBuf],
    relative_roots: &[PathBuf],
) -> Vec<PathBuf> {
    let parts = split_spec(spec);
    let (bases, names): (Vec<PathBuf>, &[&str]) = match parts.first() {
        Some(dots) if dots.starts_with('.') => {
            let up = dots.len() - 1;
            let bases = relative_roots
                .iter()
                .filter_map(|root| {
                    let mut base = root.clone();
                    for _ in 0..up {
                        if !base.pop() {
                            return None;
                        }
                    }
                    Some(base)
                })
                .collect();
            (bases, &parts[1..])
        }
        _ => (absolute_roots.to_vec(), &parts[..]),
    };
    if names
        .iter()
        .any(|n| n.is_empty() || n.contains(['/', '\\']))
    {
        return Vec::new();
    }
    let mut files = Vec::new();
    for base in bases {
        let dir: PathBuf = names.iter().fold(base, |acc, name| acc.join(name));
        if names.is_empty() {
            files.push(dir.join("__init__.py"));
        } else {
            files.push(dir.with_extension("py"));
            files.push(dir.join("__init__.py"));
        }
    }
    files
}

/// Every module's names, with imports of project modules followed from file to file.
pub(super) struct Project<'a> {
    modules: Vec<ModuleIndex<'a>>,
    loaded: &'a [LoadedModule],
}

impl<'a> Project<'a> {
    pub(super) fn new(loaded: &'a [LoadedModule]) -> Self {
        let modules = loaded
            .iter()
            .enumerate()
            .map(|(id, module)| ModuleIndex::new(id, &module.suite))
            .collect();
        Self { modules, loaded }
    }

    pub(super) fn module(&self, id: ModuleId) -> &ModuleIndex<'a> {
        &self.modules[id]
    }

    /// The file a module was read from.
    pub(super) fn file(&self, id: ModuleId) -> &'a LoadedModule {
        &self.loaded[id]
    }

    /// What `expr` names in module `id`, following imports of project modules.
    pub(super) fn resolve(&self, id: ModuleId, expr: &ast::Expr) -> Resolved<'a> {
        self.follow(id, self.modules[id].resolve(expr), 0)
    }

    /// `resolved` (as module `id` sees it) with project imports replaced by what they name.
    fn follow(&self, id: ModuleId, resolved: Resolved<'a>, depth: usize) -> Resolved<'a> {
        if depth > MAX_REEXPORT_DEPTH {
            return Resolved::Unknown;
        }
        match resolved {
            Resolved::Qualified(path) => self.follow_path(id, &path, depth),
            Resolved::OneOf(paths) => Resolved::OneOf(
                paths
                    .iter()
                    .filter_map(|p| match self.follow_path(id, p, depth) {
                        Resolved::Qualified(q) => Some(q),
                        _ => None,
                    })
                    .collect(),
            ),
            // `alias = some.name`: what that name is (a decorator, a type, a constant).
            Resolved::Value(module, value @ (ast::Expr::Name(_) | ast::Expr::Attribute(_))) => {
                self.follow(module, self.modules[module].resolve(value), depth + 1)
            }
            other => other,
        }
    }

    fn follow_path(&self, id: ModuleId, path: &str, depth: usize) -> Resolved<'a> {
        let parts = split_spec(path);
        let links = &self.loaded[id].links;
        for k in (1..=parts.len()).rev() {
            let spec = parts[..k]
                .iter()
                .fold(String::new(), |acc, p| join_spec(&acc, p));
            let Some(&target) = links.get(&spec) else {
                continue;
            };
            let mut resolved = Resolved::ProjectModule(target);
            for attr in &parts[k..] {
                resolved = match resolved {
                    Resolved::ProjectModule(module) => {
                        match self.modules[module].resolve_name(attr) {
                            // Python's ImportError / AttributeError.
                            Resolved::Undefined => Resolved::Unknown,
                            name => self.follow(module, name, depth + 1),
                        }
                    }
                    Resolved::Qualified(p) => Resolved::Qualified(format!("{p}.{attr}")),
                    _ => Resolved::Unknown,
                };
            }
            return resolved;
        }
        if path.starts_with('.') {
            // A relative import of a module that is not in the project: Python would fail.
            Resolved::Unknown
        } else {
            Resolved::Qualified(path.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_files(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        move |path: &Path| files.get(path).cloned()
    }

    fn load(path: &str, is_script: bool, files: &[(&str, &str)]) -> Vec<LoadedModule> {
        let read = project_files(files);
        let text = read(Path::new(path)).unwrap();
        let suite = ast::Suite::parse(&text, path).unwrap();
        let location = FlowLocation {
            path: PathBuf::from(path),
            is_script,
        };
        load_project(
            LoadedModule::new(path.into(), text, suite),
            &location,
            &read,
        )
    }

    fn resolve_name(project: &Project<'_>, name: &str) -> String {
        let expr = ast::Expr::parse(name, "<test>").unwrap();
        match project.resolve(0, &expr) {
            Resolved::Qualified(p) => p,
            Resolved::Class(id, c) => {
                format!("class {} in {}", c.name, project.file(id).path.display())
            }
            Resolved::Value(id, _) => format!("value in {}", project.file(id).path.display()),
            Resolved::ProjectModule(id) => format!("module {}", project.file(id).path.display()),
            Resolved::OneOf(paths) => format!("one of {paths:?}"),
            Resolved::TypeAlias(..) => "type alias".into(),
            Resolved::Undefined => "undefined".into(),
            Resolved::Unknown => "unknown".into(),
        }
    }

    #[test]
    fn script_imports_follow_relative_and_absolute_project_modules() {
        let loaded = load(
            "flows/main.py",
            true,
            &[
                (
                    "flows/main.py",
                    "from .lib.imports import flow\nfrom shared import types\nimport shared.models as m\nfrom . import missing\nfrom .lib import imports\n",
                ),
                ("flows/lib/imports.py", "try:\n    from prefect import flow\nexcept ImportError:\n    flow = None\n"),
                ("shared/__init__.py", ""),
                ("shared/types.py", "from typing import Literal\nAction = Literal['a']\n"),
                ("shared/models.py", "from .types import Action as Act\nclass M: pass\n"),
            ],
        );
        let paths: Vec<_> = loaded
            .iter()
            .map(|m| m.path.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "flows/main.py",
                "flows/lib/imports.py",
                "shared/__init__.py",
                "shared/types.py",
                "shared/models.py"
            ]
        );
        let project = Project::new(&loaded);
        assert_eq!(resolve_name(&project, "flow"), "prefect.flow");
        assert_eq!(resolve_name(&project, "imports.flow"), "prefect.flow");
        assert_eq!(
            resolve_name(&project, "types.Action"),
            "value in shared/types.py"
        );
        assert_eq!(resolve_name(&project, "m.M"), "class M in shared/models.py");
        assert_eq!(resolve_name(&project, "m.Act"), "value in shared/types.py");
        assert_eq!(resolve_name(&project, "m.Literal"), "unknown");
        assert_eq!(resolve_name(&project, "missing"), "unknown");
        assert_eq!(resolve_name(&project, "types"), "module shared/types.py");
    }

    #[test]
    fn never_above_the_project_root_and_bounded() {
        // `..` from the root goes nowhere; the reader is never asked for such a path.
        let asked = std::sync::Mutex::new(Vec::new());
        let read = |path: &Path| {
            asked.lock().unwrap().push(path.to_path_buf());
            match path.to_str() {
                Some("main.py") => {
                    Some("from ...up import x\nfrom .. import y\nimport loop\n".to_string())
                }
                Some("loop.py") => Some("import loop\nimport loop2\n".to_string()),
                Some("loop2.py") => Some("import loop\n".to_string()),
                _ => None,
            }
        };
        let text = read(Path::new("main.py")).unwrap();
        let suite = ast::Suite::parse(&text, "main.py").unwrap();
        let location = FlowLocation {
            path: "main.py".into(),
            is_script: true,
        };
        let loaded = load_project(
            LoadedModule::new("main.py".into(), text, suite),
            &location,
            &read,
        );
        assert_eq!(loaded.len(), 3);
        for path in asked.lock().unwrap().iter() {
            assert!(
                !path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir)),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn preloaded_modules_are_never_project_files() {
        let loaded = load(
            "flows/prefect.py",
            true,
            &[
                (
                    "flows/prefect.py",
                    "from prefect import flow\nimport types\n",
                ),
                ("types.py", "x = 1\n"),
            ],
        );
        assert_eq!(loaded.len(), 1);
        let project = Project::new(&loaded);
        assert_eq!(resolve_name(&project, "flow"), "prefect.flow");
        assert_eq!(resolve_name(&project, "types.x"), "types.x");
    }

    #[test]
    fn conditional_imports_keep_each_branch() {
        let loaded = load(
            "f.py",
            true,
            &[
                ("f.py", "from lib import flow\n"),
                (
                    "lib.py",
                    "import os\nif os.environ.get('X'):\n    from prefect import flow\nelse:\n    def flow(f):\n        return f\n",
                ),
            ],
        );
        let project = Project::new(&loaded);
        assert_eq!(resolve_name(&project, "flow"), "one of [\"prefect.flow\"]");
    }
}
