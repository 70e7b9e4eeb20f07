//! Entrypoints (`path/to/file.py:func`, `pkg.mod:func`): how Prefect splits them, which project
//! files they may name, and finding that file (the flow reader's only file-system access).

use std::path::{Component, Path, PathBuf};

use crate::prefect::python_text::str_repr;

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
    pub(crate) fn function(&self) -> &str {
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
}
