//! The Python types whose pydantic JSON schema the reader reproduces: what an annotation
//! resolves to before it is written as JSON schema.

use serde_json::Value;

/// The subset of Python types whose pydantic JSON schema we reproduce.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ty {
    /// `Any`, untyped, `object`, and classes pydantic only checks with isinstance (`{}`).
    Any,
    Int,
    Float,
    Str,
    Bool,
    Bytes,
    Null,
    List(Box<Ty>),
    Set(Box<Ty>),
    /// Value type; keys only matter to pydantic for non-string key constraints.
    Dict(Box<Ty>),
    Tuple(Vec<Ty>),
    TupleVar(Box<Ty>),
    Union(Vec<Ty>),
    Literal(Vec<Value>),
    Enum(String),
    Model(String),
    /// A `TypeAliasType` (`type X = ...`): a `$ref` to its own `$defs` entry.
    Alias(String),
    /// `Annotated[T, Field(...)]`.
    Annotated(Box<AnnotatedTy>),
    DateTime,
    Date,
    Time,
    TimeDelta,
    Uuid,
    Path,
    Decimal,
}

/// `Annotated[T, Field(...)]`: T with the constraints, title and description of the Field.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AnnotatedTy {
    pub(super) inner: Ty,
    /// `(keyword argument, value)`, e.g. `("ge", 1)`.
    pub(super) constraints: Vec<(String, Value)>,
    pub(super) title: Option<String>,
    pub(super) description: Option<String>,
}

/// The members of a (nested) union, flattened and de-duplicated as `typing.Union` does.
pub(super) fn flatten_union(members: &[Ty], out: &mut Vec<Ty>) {
    for member in members {
        match member {
            Ty::Union(inner) => flatten_union(inner, out),
            other => {
                if !out.contains(other) {
                    out.push(other.clone());
                }
            }
        }
    }
}
