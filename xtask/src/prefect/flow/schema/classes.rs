//! Classes defined in the project: is each an Enum, a class pydantic describes field by field (a
//! pydantic model, a standard dataclass, a TypedDict), a plain class (schema `{}`), or
//! something the reader does not support (NamedTuple, ...)? A class is classified in its own
//! module (the caller enters it).

use rustpython_parser::ast::{self, Expr};

use super::{SchemaContext, MAX_EVAL_DEPTH};
use crate::prefect::flow::module_index::Resolved;

/// A class defined in the project that pydantic describes with a `$ref`.
pub(super) enum LocalClass<'a> {
    Enum(&'a ast::StmtClassDef),
    /// Described by its annotated fields.
    Model(&'a ast::StmtClassDef, Shape),
    /// A plain class: pydantic's is-instance schema, which Prefect renders as `{}`.
    Plain,
    Unsupported(&'static str),
}

/// The kinds of classes pydantic describes by their fields; they differ in defaults and in
/// which fields are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `pydantic.BaseModel`.
    Model,
    /// `@dataclasses.dataclass`: defaults from `= value` or `field(...)`.
    Dataclass,
    /// A TypedDict: no defaults; `total=False`, `Required[...]`, `NotRequired[...]`.
    TypedDict { total: bool },
}

impl<'a> SchemaContext<'_, 'a> {
    /// What kind of class a project class is, following base classes defined in the project.
    pub(super) fn classify(&self, class: &'a ast::StmtClassDef) -> LocalClass<'a> {
        self.classify_at(class, 0)
    }

    fn classify_at(&self, class: &'a ast::StmtClassDef, depth: usize) -> LocalClass<'a> {
        if depth > MAX_EVAL_DEPTH {
            return LocalClass::Unsupported("part of a class hierarchy too deep to follow");
        }
        for decorator in &class.decorator_list {
            let target = match decorator {
                Expr::Call(c) => c.func.as_ref(),
                other => other,
            };
            match self.resolve(target) {
                Resolved::Qualified(p) if p == "dataclasses.dataclass" => {
                    return LocalClass::Model(class, Shape::Dataclass)
                }
                Resolved::Qualified(p) if p == "pydantic.dataclasses.dataclass" => {
                    return LocalClass::Unsupported("a pydantic dataclass")
                }
                _ => {}
            }
        }
        for base in &class.bases {
            match self.resolve(base) {
                Resolved::Qualified(path) => match path.as_str() {
                    "enum.Enum" | "enum.IntEnum" | "enum.StrEnum" => {
                        return LocalClass::Enum(class)
                    }
                    "pydantic.BaseModel" | "pydantic.main.BaseModel" => {
                        return LocalClass::Model(class, Shape::Model);
                    }
                    "typing.TypedDict" | "typing_extensions.TypedDict" => {
                        let total = !class.keywords.iter().any(|k| {
                            k.arg.as_ref().is_some_and(|a| a.as_str() == "total")
                                && matches!(&k.value, Expr::Constant(c) if matches!(c.value, ast::Constant::Bool(false)))
                        });
                        if class
                            .keywords
                            .iter()
                            .any(|k| !k.arg.as_ref().is_some_and(|a| a.as_str() == "total"))
                        {
                            return LocalClass::Unsupported("a TypedDict with class keywords");
                        }
                        return LocalClass::Model(class, Shape::TypedDict { total });
                    }
                    "typing.NamedTuple" => return LocalClass::Unsupported("a NamedTuple"),
                    "builtins.str" | "builtins.int" | "builtins.float" | "builtins.object" => {}
                    _ => return LocalClass::Unsupported("derived from a class defined elsewhere"),
                },
                Resolved::Class(module, parent) => {
                    match self.within(module, || self.classify_at(parent, depth + 1)) {
                        LocalClass::Model(_, Shape::Model) => {
                            return LocalClass::Model(class, Shape::Model)
                        }
                        LocalClass::Model(..) => {
                            return LocalClass::Unsupported("derived from a dataclass or TypedDict")
                        }
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
