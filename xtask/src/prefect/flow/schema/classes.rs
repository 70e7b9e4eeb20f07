//! Classes defined in the project: is each an Enum, a pydantic model, a plain class (schema
//! `{}`), or something the reader does not support (dataclass, TypedDict, ...)? A class is
//! classified in its own module (the caller enters it).

use rustpython_parser::ast::{self, Expr};

use super::{SchemaContext, MAX_EVAL_DEPTH};
use crate::prefect::flow::module_index::Resolved;

/// A class defined in the flow's module that pydantic describes with a `$ref`.
pub(super) enum LocalClass<'a> {
    Enum(&'a ast::StmtClassDef),
    Model(&'a ast::StmtClassDef),
    /// A plain class: pydantic's is-instance schema, which Prefect renders as `{}`.
    Plain,
    Unsupported(&'static str),
}

impl<'a> SchemaContext<'_, 'a> {
    /// What kind of class a local class is, following local base classes.
    pub(super) fn classify(&self, class: &'a ast::StmtClassDef) -> LocalClass<'a> {
        self.classify_at(class, 0)
    }

    fn classify_at(&self, class: &'a ast::StmtClassDef, depth: usize) -> LocalClass<'a> {
        if depth > MAX_EVAL_DEPTH {
            return LocalClass::Unsupported("part of a class hierarchy too deep to follow");
        }
        if class.decorator_list.iter().any(|d| {
            let target = match d {
                Expr::Call(c) => c.func.as_ref(),
                other => other,
            };
            matches!(self.resolve(target), Resolved::Qualified(p) if p == "dataclasses.dataclass" || p == "pydantic.dataclasses.dataclass")
        }) {
            return LocalClass::Unsupported("a dataclass");
        }
        for base in &class.bases {
            match self.resolve(base) {
                Resolved::Qualified(path) => match path.as_str() {
                    "enum.Enum" | "enum.IntEnum" | "enum.StrEnum" => {
                        return LocalClass::Enum(class)
                    }
                    "pydantic.BaseModel" | "pydantic.main.BaseModel" => {
                        return LocalClass::Model(class);
                    }
                    "typing.TypedDict" | "typing_extensions.TypedDict" => {
                        return LocalClass::Unsupported("a TypedDict");
                    }
                    "typing.NamedTuple" => return LocalClass::Unsupported("a NamedTuple"),
                    "builtins.str" | "builtins.int" | "builtins.float" | "builtins.object" => {}
                    _ => return LocalClass::Unsupported("derived from a class defined elsewhere"),
                },
                Resolved::Class(module, parent) => {
                    match self.within(module, || self.classify_at(parent, depth + 1)) {
                        LocalClass::Model(_) => return LocalClass::Model(class),
                        LocalClass::Enum(_) => return LocalClass::Unsupported("an Enum subclass"),
                        LocalClass::Plain => {}
                        unsupported => return unsupported,
                    }
                }
                _ => return LocalClass::Unsupported("derived from an unresolvable base"),
            }
        }
        LocalClass::Plain
    }
}
