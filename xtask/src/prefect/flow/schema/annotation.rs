//! Annotation → [`Ty`]: string and `__future__` annotations, `X | Y`, `typing` generics,
//! `Literal`, `Annotated`, builtins and the standard types pydantic knows, and local classes.

use rustpython_parser::ast::{self, Constant, Expr};
use serde_json::Value;

use super::classes::LocalClass;
use super::python_value::{encode, same_python_value};
use super::type_model::Ty;
use super::{SchemaContext, MAX_EVAL_DEPTH};
use crate::prefect::flow::module_index::Resolved;
use crate::prefect::flow::unparse::unparse;

impl<'a> SchemaContext<'_, 'a> {
    /// The first name in `expr` that is bound nowhere (not a builtin, import, class or value).
    pub(super) fn find_undefined_name(&self, expr: &Expr) -> Option<String> {
        if let Some(inner) = string_annotation(expr) {
            return match inner {
                Ok(parsed) => self.find_undefined_name(&parsed),
                Err(_) => Some(unparse(expr)),
            };
        }
        match expr {
            Expr::Name(name) => match self.module.resolve(expr) {
                Resolved::Undefined => Some(name.id.to_string()),
                _ => None,
            },
            Expr::Attribute(attr) => self.find_undefined_name(&attr.value),
            Expr::Subscript(sub) => {
                if let Some(name) = self.find_undefined_name(&sub.value) {
                    return Some(name);
                }
                let origin = match self.module.resolve(&sub.value) {
                    Resolved::Qualified(path) => path,
                    _ => String::new(),
                };
                match (origin.as_str(), sub.slice.as_ref()) {
                    // Literal values are not forward references.
                    ("typing.Literal" | "typing_extensions.Literal", _) => None,
                    ("typing.Annotated" | "typing_extensions.Annotated", Expr::Tuple(t)) => {
                        t.elts.first().and_then(|e| self.find_undefined_name(e))
                    }
                    _ => self.find_undefined_name(&sub.slice),
                }
            }
            Expr::Tuple(t) => t.elts.iter().find_map(|e| self.find_undefined_name(e)),
            Expr::List(l) => l.elts.iter().find_map(|e| self.find_undefined_name(e)),
            Expr::BinOp(b) => self
                .find_undefined_name(&b.left)
                .or_else(|| self.find_undefined_name(&b.right)),
            _ => None,
        }
    }

    /// Annotation → type. `Err` means "unresolvable": the caller treats it as untyped.
    /// The notes are approximations worth a warning.
    pub(super) fn resolve_annotation(
        &mut self,
        expr: &Expr,
        builtins_only: bool,
    ) -> Result<(Ty, Vec<String>), String> {
        let mut notes = Vec::new();
        let ty = self.resolve_type(expr, builtins_only, &mut notes, 0)?;
        Ok((ty, notes))
    }

    pub(super) fn resolve_type(
        &mut self,
        expr: &Expr,
        builtins_only: bool,
        notes: &mut Vec<String>,
        depth: usize,
    ) -> Result<Ty, String> {
        if depth > MAX_EVAL_DEPTH {
            return Err("is nested too deeply".into());
        }
        if let Some(inner) = string_annotation(expr) {
            let parsed = inner.map_err(|e| format!("is not a valid expression ({e})"))?;
            return self.resolve_type(&parsed, builtins_only, notes, depth + 1);
        }
        match expr {
            Expr::Constant(c) if matches!(c.value, Constant::None) => Ok(Ty::Null),
            Expr::BinOp(b) if matches!(b.op, ast::Operator::BitOr) => {
                let left = self.resolve_type(&b.left, builtins_only, notes, depth + 1)?;
                let right = self.resolve_type(&b.right, builtins_only, notes, depth + 1)?;
                Ok(Ty::Union(vec![left, right]))
            }
            Expr::Subscript(sub) => {
                let origin = self.type_name(&sub.value, builtins_only)?;
                let args: Vec<&Expr> = match sub.slice.as_ref() {
                    Expr::Tuple(t) => t.elts.iter().collect(),
                    other => vec![other],
                };
                self.resolve_generic(&origin, &args, builtins_only, notes, depth)
            }
            Expr::Name(_) | Expr::Attribute(_) => {
                let name = self.type_name(expr, builtins_only)?;
                self.resolve_bare(&name, notes)
            }
            _ => Err("is not a type expression this reader understands".into()),
        }
    }

    /// The qualified name a type expression refers to (`typing.List`, `local:Color`, ...).
    fn type_name(&self, expr: &Expr, builtins_only: bool) -> Result<TypeName<'a>, String> {
        if builtins_only {
            // Prefect's fallback resolves string annotations in a namespace holding builtins
            // and the `typing` module only.
            return match expr {
                Expr::Name(n) if is_builtin_type(n.id.as_str()) => {
                    Ok(TypeName::Qualified(format!("builtins.{}", n.id)))
                }
                Expr::Attribute(a) if matches!(a.value.as_ref(), Expr::Name(n) if n.id.as_str() == "typing") => {
                    Ok(TypeName::Qualified(format!("typing.{}", a.attr)))
                }
                _ => Err("cannot be resolved without the module's namespace".into()),
            };
        }
        match self.module.resolve(expr) {
            Resolved::Qualified(path) => Ok(TypeName::Qualified(path)),
            Resolved::Class(class) => Ok(TypeName::Local(class)),
            Resolved::Undefined => Err("names something that is not defined".into()),
            Resolved::Value(_) => Err("refers to a module-level value, not a type".into()),
            Resolved::Unknown => Err("cannot be resolved statically".into()),
        }
    }

    fn resolve_bare(&mut self, name: &TypeName<'a>, notes: &mut Vec<String>) -> Result<Ty, String> {
        let path = match name {
            TypeName::Local(class) => {
                return match self.classify(class) {
                    LocalClass::Enum(def) => {
                        self.define_enum(def)?;
                        Ok(Ty::Enum(def.name.to_string()))
                    }
                    LocalClass::Model(def) => {
                        self.define_model(def)?;
                        Ok(Ty::Model(def.name.to_string()))
                    }
                    LocalClass::Plain => Ok(Ty::Any),
                    LocalClass::Unsupported(why) => Err(format!("is {why}, not supported")),
                }
            }
            TypeName::Qualified(path) => path.as_str(),
        };
        if let Some(container) = container(path) {
            let any = Box::new(Ty::Any);
            return Ok(match container {
                Container::List => Ty::List(any),
                Container::Set => Ty::Set(any),
                Container::Dict => Ty::Dict(any),
                Container::Tuple => Ty::TupleVar(any),
            });
        }
        let ty = match path {
            "builtins.int" => Ty::Int,
            "builtins.float" => Ty::Float,
            "builtins.str" => Ty::Str,
            "builtins.bool" => Ty::Bool,
            "builtins.bytes" => Ty::Bytes,
            "builtins.object" | "typing.Any" | "typing_extensions.Any" => Ty::Any,
            "datetime.datetime" => Ty::DateTime,
            "datetime.date" => Ty::Date,
            "datetime.time" => Ty::Time,
            "datetime.timedelta" => Ty::TimeDelta,
            "uuid.UUID" => Ty::Uuid,
            "pathlib.Path" | "pathlib.PurePath" | "pathlib.PosixPath" | "pathlib.PurePosixPath" => {
                Ty::Path
            }
            "decimal.Decimal" => Ty::Decimal,
            // pydantic cannot build a JSON schema for these; Prefect swaps in Any.
            other if is_schemaless(other) => Ty::Any,
            other if is_stdlib_path(other) => {
                return Err(format!(
                    "uses `{other}`, which this reader does not support"
                ));
            }
            other => {
                notes.push(format!(
                    "type `{other}` is defined outside this file; assuming a plain class \
                     (schema {{}}, as Prefect renders arbitrary classes); if it is a pydantic \
                     model, Enum or dataclass, Prefect's schema differs"
                ));
                Ty::Any
            }
        };
        Ok(ty)
    }

    fn resolve_generic(
        &mut self,
        origin: &TypeName<'a>,
        args: &[&Expr],
        builtins_only: bool,
        notes: &mut Vec<String>,
        depth: usize,
    ) -> Result<Ty, String> {
        let path = match origin {
            TypeName::Qualified(path) => path.as_str(),
            TypeName::Local(_) => return Err("subscripts a local class".into()),
        };
        let path = path
            .strip_prefix("typing_extensions.")
            .map_or(path.to_string(), |rest| format!("typing.{rest}"));
        let arg = |i: usize, this: &mut Self, notes: &mut Vec<String>| -> Result<Ty, String> {
            match args.get(i) {
                Some(expr) => this.resolve_type(expr, builtins_only, notes, depth + 1),
                None => Ok(Ty::Any),
            }
        };
        if let Some(container) = container(&path) {
            return Ok(match container {
                Container::List => Ty::List(Box::new(arg(0, self, notes)?)),
                Container::Set => Ty::Set(Box::new(arg(0, self, notes)?)),
                Container::Dict => {
                    let _keys = arg(0, self, notes)?;
                    Ty::Dict(Box::new(arg(1, self, notes)?))
                }
                Container::Tuple => {
                    let is_ellipsis = |e: &Expr| matches!(e, Expr::Constant(c) if matches!(c.value, Constant::Ellipsis));
                    if args.len() == 2 && is_ellipsis(args[1]) {
                        Ty::TupleVar(Box::new(arg(0, self, notes)?))
                    } else if args.len() == 1
                        && matches!(args[0], Expr::Tuple(t) if t.elts.is_empty())
                    {
                        Ty::Tuple(Vec::new()) // Tuple[()]
                    } else {
                        let mut items = Vec::new();
                        for i in 0..args.len() {
                            items.push(arg(i, self, notes)?);
                        }
                        Ty::Tuple(items)
                    }
                }
            });
        }
        let ty = match path.as_str() {
            "typing.Optional" => Ty::Union(vec![arg(0, self, notes)?, Ty::Null]),
            "typing.Union" => {
                let mut members = Vec::new();
                for i in 0..args.len() {
                    members.push(arg(i, self, notes)?);
                }
                Ty::Union(members)
            }
            "typing.Literal" => {
                let mut values = Vec::new();
                for expr in args {
                    self.literal_values(expr, &mut values, depth + 1)?;
                }
                Ty::Literal(values)
            }
            "typing.Annotated" => {
                let Some((_, metadata)) = args.split_first() else {
                    return Err("is `Annotated` without a type".into());
                };
                if metadata
                    .iter()
                    .any(|meta| !matches!(meta, Expr::Constant(_)))
                {
                    notes.push(
                        "Annotated metadata is ignored; pydantic may add constraints from it"
                            .into(),
                    );
                }
                arg(0, self, notes)?
            }
            other if is_schemaless(other) => Ty::Any,
            other if is_stdlib_path(other) => {
                return Err(format!(
                    "uses `{other}[...]`, which this reader does not support"
                ));
            }
            other => {
                notes.push(format!(
                    "generic `{other}[...]` is defined outside this file; assuming a plain \
                     class (schema {{}})"
                ));
                Ty::Any
            }
        };
        Ok(ty)
    }

    /// Values of one `Literal[...]` argument (nested Literals are flattened, like typing does).
    fn literal_values(
        &mut self,
        expr: &Expr,
        out: &mut Vec<Value>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_EVAL_DEPTH {
            return Err("is nested too deeply".into());
        }
        if let Expr::Subscript(sub) = expr {
            if let Ok(TypeName::Qualified(path)) = self.type_name(&sub.value, false) {
                if path == "typing.Literal" || path == "typing_extensions.Literal" {
                    let inner: Vec<&Expr> = match sub.slice.as_ref() {
                        Expr::Tuple(t) => t.elts.iter().collect(),
                        other => vec![other],
                    };
                    for e in inner {
                        self.literal_values(e, out, depth + 1)?;
                    }
                    return Ok(());
                }
            }
        }
        let value = self.eval(expr, 0).and_then(|py| encode(&py))?;
        // typing.Literal de-duplicates its arguments (1 and True stay distinct).
        if !out.iter().any(|v| same_python_value(v, &value)) {
            out.push(value);
        }
        Ok(())
    }
}

/// What a type expression names: a qualified path or a class of this file.
enum TypeName<'a> {
    Qualified(String),
    Local(&'a ast::StmtClassDef),
}

/// The containers `builtins`, `typing` and `collections.abc` spell several ways.
enum Container {
    List,
    Set,
    Dict,
    Tuple,
}

fn container(path: &str) -> Option<Container> {
    Some(match path {
        "builtins.list"
        | "typing.List"
        | "typing.Sequence"
        | "typing.MutableSequence"
        | "collections.abc.Sequence"
        | "collections.abc.MutableSequence" => Container::List,
        "builtins.set"
        | "builtins.frozenset"
        | "typing.Set"
        | "typing.FrozenSet"
        | "typing.AbstractSet"
        | "collections.abc.Set" => Container::Set,
        "builtins.dict"
        | "typing.Dict"
        | "typing.Mapping"
        | "typing.MutableMapping"
        | "collections.abc.Mapping"
        | "collections.abc.MutableMapping" => Container::Dict,
        "builtins.tuple" | "typing.Tuple" => Container::Tuple,
        _ => return None,
    })
}

/// Types pydantic cannot build a JSON schema for (Prefect swaps in Any).
fn is_schemaless(path: &str) -> bool {
    matches!(
        path,
        "builtins.type" | "typing.Type" | "typing.Callable" | "collections.abc.Callable"
    )
}

pub(super) fn is_string_constant(expr: &Expr) -> bool {
    matches!(expr, Expr::Constant(c) if matches!(c.value, Constant::Str(_)))
}

/// A string annotation (`"int"`), parsed as an expression.
fn string_annotation(expr: &Expr) -> Option<Result<Expr, String>> {
    match expr {
        Expr::Constant(c) => match &c.value {
            Constant::Str(text) => {
                use rustpython_parser::Parse;
                Some(Expr::parse(text.trim(), "<annotation>").map_err(|e| e.error.to_string()))
            }
            _ => None,
        },
        _ => None,
    }
}

fn is_builtin_type(name: &str) -> bool {
    matches!(
        name,
        "int"
            | "float"
            | "str"
            | "bool"
            | "bytes"
            | "list"
            | "dict"
            | "tuple"
            | "set"
            | "frozenset"
            | "object"
            | "type"
    )
}

/// Modules whose types we know precisely; anything else from them is "unsupported" rather
/// than "a class defined elsewhere".
fn is_stdlib_path(path: &str) -> bool {
    let module = path.split('.').next().unwrap_or("");
    matches!(
        module,
        "builtins"
            | "typing"
            | "typing_extensions"
            | "collections"
            | "datetime"
            | "uuid"
            | "pathlib"
            | "decimal"
            | "enum"
            | "pydantic"
            | "ipaddress"
            | "re"
            | "dataclasses"
    )
}
