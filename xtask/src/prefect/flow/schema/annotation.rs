//! Annotation → [`Ty`]: string and `__future__` annotations, `X | Y`, `typing` generics,
//! `Literal`, `Annotated`, builtins and the standard types pydantic knows, the project's own
//! classes, and type aliases (`X = ...`, `X: TypeAlias = ...`, `type X = ...`,
//! `TypeAliasType("X", ...)`), wherever in the project they are defined.

use rustpython_parser::ast::{self, Constant, Expr, Ranged};
use serde_json::Value;

use super::classes::LocalClass;
use super::defaults::FieldDefault;
use super::json_schema::constraint_keyword;
use super::python_value::{encode, same_python_value};
use super::type_model::{AnnotatedTy, Ty};
use super::{SchemaContext, MAX_EVAL_DEPTH};
use crate::prefect::flow::module_index::{ModuleId, Resolved};
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
            Expr::Name(name) => match self.resolve(expr) {
                Resolved::Undefined => Some(name.id.to_string()),
                _ => None,
            },
            Expr::Attribute(attr) => self.find_undefined_name(&attr.value),
            Expr::Subscript(sub) => {
                if let Some(name) = self.find_undefined_name(&sub.value) {
                    return Some(name);
                }
                let origin = match self.resolve(&sub.value) {
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
            let outer = self.string_anchor.get();
            if outer.is_none() {
                let here = (self.current.get(), usize::from(expr.start()));
                self.string_anchor.set(Some(here));
            }
            let ty = self.resolve_type(&parsed, builtins_only, notes, depth + 1);
            self.string_anchor.set(outer);
            return ty;
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
            Expr::Name(_) | Expr::Attribute(_) => match self.type_name(expr, builtins_only)? {
                TypeName::Alias(module, value) => self.within_mut(module, |this| {
                    this.resolve_type(value, false, notes, depth + 1)
                }),
                TypeName::NamedAlias(module, name, value) => {
                    self.define_alias(module, name, value, notes, depth)
                }
                name => self.resolve_bare(&name, notes),
            },
            _ => Err("is not a type expression this reader understands".into()),
        }
    }

    /// `$defs[name]` for a `TypeAliasType` (pydantic references it instead of inlining it).
    fn define_alias(
        &mut self,
        module: ModuleId,
        name: &'a str,
        value: &'a Expr,
        notes: &mut Vec<String>,
        depth: usize,
    ) -> Result<Ty, String> {
        self.claim_def_name(name, value as *const Expr as usize)?;
        if !self.defs.contains_key(name) && !self.in_progress.iter().any(|n| n == name) {
            self.in_progress.push(name.to_string());
            let ty = self.within_mut(module, |this| {
                this.resolve_type(value, false, notes, depth + 1)
            });
            self.in_progress.retain(|n| n != name);
            let schema = super::json_schema::schema_of(&ty?);
            self.defs
                .insert(name.to_string(), serde_json::Value::Object(schema));
        }
        Ok(Ty::Alias(name.to_string()))
    }

    /// The qualified name a type expression refers to (`typing.List`, `local:Color`, ...).
    fn type_name(&self, expr: &Expr, builtins_only: bool) -> Result<TypeName<'a>, String> {
        self.type_name_at(expr, builtins_only, 0)
    }

    fn type_name_at(
        &self,
        expr: &Expr,
        builtins_only: bool,
        depth: usize,
    ) -> Result<TypeName<'a>, String> {
        if depth > MAX_EVAL_DEPTH {
            return Err("is an alias chain too long to follow".into());
        }
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
        match self.resolve(expr) {
            Resolved::Qualified(path) => Ok(TypeName::Qualified(path)),
            Resolved::Class(module, class) => Ok(TypeName::Local(module, class)),
            Resolved::Value(module, value) => self.within(module, || {
                if let Some((name, aliased)) = self.type_alias_type(value) {
                    return Ok(TypeName::NamedAlias(module, name, aliased));
                }
                match value {
                    // `Alias = typing.List`: the alias is that name.
                    Expr::Name(_) | Expr::Attribute(_) => {
                        match self.type_name_at(value, false, depth + 1)? {
                            TypeName::Alias(..) => Ok(TypeName::Alias(module, value)),
                            name => Ok(name),
                        }
                    }
                    _ => Ok(TypeName::Alias(module, value)),
                }
            }),
            Resolved::TypeAlias(module, alias) => {
                if !alias.type_params.is_empty() {
                    return Err(
                        "is a generic `type` alias, which this reader does not support".into(),
                    );
                }
                match alias.name.as_ref() {
                    Expr::Name(name) => {
                        Ok(TypeName::NamedAlias(module, name.id.as_str(), &alias.value))
                    }
                    _ => Err("is a `type` alias this reader does not understand".into()),
                }
            }
            Resolved::Undefined => Err("names something that is not defined".into()),
            Resolved::ProjectModule(_) => Err("names a module, not a type".into()),
            Resolved::OneOf(_) | Resolved::Unknown => Err("cannot be resolved statically".into()),
        }
    }

    /// `TypeAliasType("Name", value)` (typing or typing_extensions): the name and the value.
    fn type_alias_type(&self, value: &'a Expr) -> Option<(&'a str, &'a Expr)> {
        let Expr::Call(call) = value else { return None };
        let Resolved::Qualified(path) = self.resolve(&call.func) else {
            return None;
        };
        if path != "typing.TypeAliasType" && path != "typing_extensions.TypeAliasType" {
            return None;
        }
        let keyword = |name: &str| {
            call.keywords
                .iter()
                .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == name))
                .map(|k| &k.value)
        };
        let name = call.args.first().or_else(|| keyword("name"))?;
        let aliased = call.args.get(1).or_else(|| keyword("value"))?;
        match name {
            Expr::Constant(c) => match &c.value {
                Constant::Str(text) => Some((text.as_str(), aliased)),
                _ => None,
            },
            _ => None,
        }
    }

    fn resolve_bare(&mut self, name: &TypeName<'a>, notes: &mut Vec<String>) -> Result<Ty, String> {
        let path = match name {
            TypeName::Local(module, class) => {
                return self.within_mut(*module, |this| match this.classify(class) {
                    LocalClass::Enum(def) => {
                        this.define_enum(def)?;
                        Ok(Ty::Enum(def.name.to_string()))
                    }
                    LocalClass::Model(def, shape) => {
                        this.define_model(def, shape)?;
                        Ok(Ty::Model(def.name.to_string()))
                    }
                    LocalClass::Plain => Ok(Ty::Any),
                    // Prefect describes it (it is not a plain class): refuse rather than guess.
                    LocalClass::Unsupported(why) => Err(this.refuse(
                        *class,
                        format!(
                            "class {} is {why}, whose schema this reader does not reproduce",
                            class.name
                        ),
                    )),
                });
            }
            TypeName::Alias(..) | TypeName::NamedAlias(..) => {
                return Err("is a type alias used where a class is expected".into())
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
                    "type `{other}` is defined outside the project; assuming a plain class \
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
            TypeName::Local(..) => return Err("subscripts a project class".into()),
            TypeName::Alias(..) | TypeName::NamedAlias(..) => {
                return Err("subscripts a type alias, which this reader does not support".into())
            }
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
                let inner = arg(0, self, notes)?;
                self.annotated(inner, metadata)?
            }
            other if is_schemaless(other) => Ty::Any,
            other if is_stdlib_path(other) => {
                return Err(format!(
                    "uses `{other}[...]`, which this reader does not support"
                ));
            }
            other => {
                notes.push(format!(
                    "generic `{other}[...]` is defined outside the project; assuming a plain \
                     class (schema {{}})"
                ));
                Ty::Any
            }
        };
        Ok(ty)
    }

    /// `Annotated[inner, *metadata]`: `Field(...)` metadata adds constraints, a title and a
    /// description; plain values are ignored, as pydantic ignores them; anything else is
    /// refused.
    fn annotated(&self, inner: Ty, metadata: &[&Expr]) -> Result<Ty, String> {
        let mut annotated = AnnotatedTy {
            inner,
            constraints: Vec::new(),
            title: None,
            description: None,
        };
        for meta in metadata {
            match meta {
                Expr::Constant(_) => {}
                Expr::Call(call) if self.is_pydantic_field(call) => {
                    let field = self.eval_field(call)?;
                    if let Some(note) = field.notes.first() {
                        return Err(self.refuse(*meta, format!("Annotated {note}")));
                    }
                    if !matches!(field.default, FieldDefault::Required)
                        || field.default_factory.is_some()
                        || field.alias.is_some()
                        || !field.json_schema_extra.is_empty()
                    {
                        return Err(format!(
                            "puts a default, alias or json_schema_extra in `{}`, which this \
                             reader does not support",
                            unparse(meta)
                        ));
                    }
                    for (name, _) in &field.constraints {
                        let scalar = !matches!(
                            annotated.inner,
                            Ty::Union(_) | Ty::Model(_) | Ty::Enum(_) | Ty::Alias(_) | Ty::Any
                        );
                        if !scalar || constraint_keyword(name, &annotated.inner).is_none() {
                            return Err(format!(
                                "constrains a type with `{name}` in `{}`, which this reader \
                                 does not support",
                                unparse(meta)
                            ));
                        }
                    }
                    annotated.constraints.extend(field.constraints);
                    annotated.title = field.title.or(annotated.title);
                    annotated.description = field.description.or(annotated.description);
                }
                // pydantic may turn it into constraints: refuse rather than drop them.
                other => {
                    return Err(self.refuse(
                        *other,
                        format!(
                            "Annotated metadata `{}` may add constraints this reader does not \
                             reproduce",
                            unparse(other)
                        ),
                    ))
                }
            }
        }
        if annotated.constraints.is_empty()
            && annotated.title.is_none()
            && annotated.description.is_none()
        {
            return Ok(annotated.inner);
        }
        Ok(Ty::Annotated(Box::new(annotated)))
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

/// What a type expression names: a qualified path, a class of the project, or an alias.
enum TypeName<'a> {
    Qualified(String),
    Local(ModuleId, &'a ast::StmtClassDef),
    /// `Alias = <type expression>` (or `Alias: TypeAlias = ...`), read in its module.
    Alias(ModuleId, &'a Expr),
    /// `type Name = ...` or `Name = TypeAliasType("Name", ...)`: a `$defs` entry of its own.
    NamedAlias(ModuleId, &'a str, &'a Expr),
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
