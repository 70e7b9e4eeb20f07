//! `parameter_openapi_schema` of a flow function, as Prefect 3.9.1 builds it with pydantic 2
//! (`prefect.utilities.callables.parameter_schema` → `generate_parameter_schema` →
//! `process_v2_params` + `create_v2_schema`), computed from the Python AST alone.
//!
//! The pipeline mirrors pydantic: annotation → [`Ty`] → JSON schema in pydantic's construction
//! order → pydantic's recursive key sort → Prefect's `ParameterSchema` top-level order.
//! Defaults are evaluated from literal expressions and encoded the way pydantic encodes them
//! (by the default's own type, not the annotation). [`to_python_json`] serialises values
//! exactly like Python's `json.dumps`, so golden files can be compared byte for byte.

use std::collections::BTreeMap;

use rustpython_parser::ast::{self, Constant, Expr, Stmt};
use serde_json::{Map, Number, Value};

use crate::prefect::flow_source::{ModuleIndex, Resolved};

/// Longest chain of constant references (`A = B`, `B = 1`) followed before giving up.
const MAX_EVAL_DEPTH: usize = 16;

// ---------------------------------------------------------------------------------------------
// Signature → schema
// ---------------------------------------------------------------------------------------------

/// How a parameter is declared (inspect.Parameter.kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamKind {
    Positional,
    VarPositional,
    KeywordOnly,
    VarKeyword,
}

/// One parameter of the flow function, straight from the AST.
pub(crate) struct Param<'a> {
    pub name: &'a str,
    pub kind: ParamKind,
    pub annotation: Option<&'a Expr>,
    pub default: Option<&'a Expr>,
}

/// Build the schema Prefect sends as `parameter_openapi_schema`.
///
/// `docstrings` maps parameter names to their `Args:` descriptions (griffe's Google parser).
/// Non-fatal approximations are appended to `warnings`; an `Err` means the flow cannot be
/// described faithfully at all.
pub(crate) fn parameter_schema<'a>(
    module: &ModuleIndex<'a>,
    params: &[Param<'a>],
    docstrings: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    let mut ctx = SchemaContext::new(module);

    // `inspect.signature(fn, eval_str=True)` raises NameError when any stringified annotation
    // names something undefined; Prefect then keeps every annotation as a plain string, which
    // pydantic can only resolve against builtins.
    let stringified = |p: &Param<'_>| {
        p.annotation
            .is_some_and(|a| module.future_annotations || is_string_constant(a))
    };
    let degraded = params.iter().any(|p| {
        stringified(p)
            && p.annotation
                .is_some_and(|a| ctx.find_undefined_name(a).is_some())
    });
    if degraded {
        warnings.push(
            "some annotations name undefined types (e.g. imports under TYPE_CHECKING); like \
             Prefect, every string annotation is then resolved against builtins only"
                .to_string(),
        );
    }

    let mut properties = Map::new();
    let mut required = Vec::new();
    for (position, param) in params.iter().enumerate() {
        if param.name == "self" || param.name == "cls" {
            continue; // implicit; still counts for `position`
        }
        let mut ty = match param.annotation {
            None => Ty::Any,
            Some(annotation) => {
                let builtins_only = degraded && stringified(param);
                match ctx.resolve_annotation(annotation, builtins_only) {
                    Ok((ty, notes)) => {
                        for note in notes {
                            warnings.push(format!("parameter '{}': {note}", param.name));
                        }
                        ty
                    }
                    Err(reason) => {
                        warnings.push(format!(
                            "parameter '{}': annotation `{}` {reason}; treated as untyped, like \
                             Prefect's fallback",
                            param.name,
                            unparse(annotation)
                        ));
                        Ty::Any
                    }
                }
            }
        };

        let mut default = Default_::Required;
        let mut description = docstrings.get(param.name).cloned();
        let mut extra = Map::new();
        if let Some(expr) = param.default {
            match ctx.eval_default(expr) {
                Ok(DefaultExpr::Value(value)) => default = Default_::Value(value),
                Ok(DefaultExpr::Ellipsis) => {}
                Ok(DefaultExpr::Field(field)) => {
                    default = field.default;
                    if let Some(d) = field.description.filter(|d| !d.is_empty()) {
                        description = Some(d);
                    }
                    extra = field.json_schema_extra;
                    for note in field.notes {
                        warnings.push(format!("parameter '{}': {note}", param.name));
                    }
                }
                Err(reason) => {
                    warnings.push(format!(
                        "parameter '{}': default `{}` {reason}; sent as null",
                        param.name,
                        unparse(expr)
                    ));
                    default = Default_::Value(Value::Null);
                }
            }
        }
        match param.kind {
            ParamKind::VarPositional => {
                ty = Ty::List(Box::new(ty));
                default = Default_::Value(Value::Array(Vec::new()));
            }
            ParamKind::VarKeyword => {
                ty = Ty::Dict(Box::new(ty));
                default = Default_::Value(Value::Object(Map::new()));
            }
            ParamKind::Positional | ParamKind::KeywordOnly => {}
        }

        let mut field = match ctx.schema_of(&ty) {
            Ok(schema) => schema,
            Err(reason) => {
                warnings.push(format!(
                    "parameter '{}': {reason}; treated as Any",
                    param.name
                ));
                Map::new()
            }
        };
        match default {
            Default_::Value(value) => {
                field.insert("default".into(), value);
            }
            Default_::Required => required.push(Value::String(param.name.to_string())),
        }
        field.insert("title".into(), Value::String(param.name.to_string()));
        if let Some(description) = description {
            field.insert("description".into(), Value::String(description));
        }
        if !extra.contains_key("position") {
            extra.insert("position".into(), Value::from(position));
        }
        field.extend(extra);
        properties.insert(param.name.to_string(), Value::Object(field));
    }

    // The document pydantic produces, then sorted the way pydantic sorts it.
    let mut doc = Map::new();
    let defs = std::mem::take(&mut ctx.defs);
    if !defs.is_empty() {
        doc.insert("$defs".into(), Value::Object(defs.into_iter().collect()));
    }
    doc.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        doc.insert("required".into(), Value::Array(required));
    }
    doc.insert("title".into(), Value::String("Parameters".into()));
    doc.insert("type".into(), Value::String("object".into()));
    let mut sorted = match pydantic_sort(Value::Object(doc), None) {
        Value::Object(map) => map,
        _ => Map::new(),
    };

    // ParameterSchema(**schema).model_dump(exclude_unset=True): its own field order, `$defs`
    // copied to `definitions` and otherwise dropped.
    let mut out = Map::new();
    for key in ["title", "type", "properties", "required"] {
        if let Some(value) = sorted.remove(key) {
            out.insert(key.to_string(), value);
        }
    }
    if let Some(defs) = sorted.remove("$defs") {
        out.insert("definitions".into(), defs);
    }
    Ok(Value::Object(out))
}

/// Evaluate a decorator keyword (`name=`, `description=`, `version=`): a string literal,
/// an implicit or `+` concatenation, a module-level string constant, or None.
pub(crate) fn eval_string(module: &ModuleIndex<'_>, expr: &Expr) -> Result<Option<String>, String> {
    match SchemaContext::new(module).eval(expr, 0)? {
        Py::Str(text) => Ok(Some(text)),
        Py::None => Ok(None),
        _ => Err("is not a string".into()),
    }
}

/// `GenerateJsonSchema.sort`: keys sorted recursively, except directly under `properties` and
/// `default` (whose order is meaningful). Lists pass their parent key down to their items.
pub(crate) fn pydantic_sort(value: Value, parent_key: Option<&str>) -> Value {
    match value {
        Value::Object(map) => {
            let keep_order = matches!(parent_key, Some("properties") | Some("default"));
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            if !keep_order {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let mut out = Map::new();
            for (key, child) in entries {
                let sorted = pydantic_sort(child, Some(&key));
                out.insert(key, sorted);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| pydantic_sort(item, parent_key))
                .collect(),
        ),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// The subset of Python types whose pydantic JSON schema we reproduce.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ty {
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
    DateTime,
    Date,
    Time,
    TimeDelta,
    Uuid,
    Path,
    Decimal,
}

enum Default_ {
    Required,
    Value(Value),
}

enum DefaultExpr {
    Value(Value),
    /// `= ...`: pydantic treats an Ellipsis default as "required".
    Ellipsis,
    Field(FieldSpec),
}

/// A `pydantic.Field(...)` call used as a default.
struct FieldSpec {
    default: Default_,
    description: Option<String>,
    title: Option<String>,
    json_schema_extra: Map<String, Value>,
    /// Constraints, for model fields (Prefect drops them for flow parameters).
    constraints: Vec<(String, Value)>,
    alias: Option<String>,
    /// `default_factory=<builtin>`: pydantic emits no default for the field.
    default_factory: Option<String>,
    notes: Vec<String>,
}

/// A Python value produced by evaluating a literal expression.
#[derive(Debug, Clone)]
enum Py {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Py>),
    Tuple(Vec<Py>),
    Set(Vec<Py>),
    Dict(Vec<(Py, Py)>),
    /// Already in pydantic's JSON form (datetime strings, enum values, model dumps, ...).
    Json(Value),
    /// A `tzinfo`, as the suffix it gives an ISO timestamp (`Z`, `+05:30`).
    TimeZone(String),
    Ellipsis,
}

/// A class defined in the flow's module that pydantic describes with a `$ref`.
enum LocalClass<'a> {
    Enum(&'a ast::StmtClassDef),
    Model(&'a ast::StmtClassDef),
    /// A plain class: pydantic's is-instance schema, which Prefect renders as `{}`.
    Plain,
    Unsupported(&'static str),
}

struct SchemaContext<'m, 'a> {
    module: &'m ModuleIndex<'a>,
    /// `$defs`, by class name.
    defs: BTreeMap<String, Value>,
    /// Classes whose definition is being generated (recursive models).
    in_progress: Vec<String>,
}

impl<'m, 'a> SchemaContext<'m, 'a> {
    fn new(module: &'m ModuleIndex<'a>) -> Self {
        Self {
            module,
            defs: BTreeMap::new(),
            in_progress: Vec::new(),
        }
    }

    // -- annotations ---------------------------------------------------------------------

    /// The first name in `expr` that is bound nowhere (not a builtin, import, class or value).
    fn find_undefined_name(&self, expr: &Expr) -> Option<String> {
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
    fn resolve_annotation(
        &mut self,
        expr: &Expr,
        builtins_only: bool,
    ) -> Result<(Ty, Vec<String>), String> {
        let mut notes = Vec::new();
        let ty = self.resolve_type(expr, builtins_only, &mut notes, 0)?;
        Ok((ty, notes))
    }

    fn resolve_type(
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
        let ty = match path {
            "builtins.int" => Ty::Int,
            "builtins.float" => Ty::Float,
            "builtins.str" => Ty::Str,
            "builtins.bool" => Ty::Bool,
            "builtins.bytes" => Ty::Bytes,
            "builtins.object" | "typing.Any" | "typing_extensions.Any" => Ty::Any,
            "builtins.list"
            | "typing.List"
            | "typing.Sequence"
            | "typing.MutableSequence"
            | "collections.abc.Sequence"
            | "collections.abc.MutableSequence" => Ty::List(Box::new(Ty::Any)),
            "builtins.dict"
            | "typing.Dict"
            | "typing.Mapping"
            | "typing.MutableMapping"
            | "collections.abc.Mapping"
            | "collections.abc.MutableMapping" => Ty::Dict(Box::new(Ty::Any)),
            "builtins.tuple" | "typing.Tuple" => Ty::TupleVar(Box::new(Ty::Any)),
            "builtins.set"
            | "builtins.frozenset"
            | "typing.Set"
            | "typing.FrozenSet"
            | "typing.AbstractSet"
            | "collections.abc.Set" => Ty::Set(Box::new(Ty::Any)),
            "datetime.datetime" => Ty::DateTime,
            "datetime.date" => Ty::Date,
            "datetime.time" => Ty::Time,
            "datetime.timedelta" => Ty::TimeDelta,
            "uuid.UUID" => Ty::Uuid,
            "pathlib.Path" | "pathlib.PurePath" | "pathlib.PosixPath" | "pathlib.PurePosixPath" => {
                Ty::Path
            }
            "decimal.Decimal" => Ty::Decimal,
            "builtins.type" | "typing.Type" | "typing.Callable" | "collections.abc.Callable" => {
                // pydantic cannot build a JSON schema for these; Prefect swaps in Any.
                Ty::Any
            }
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
        let ty = match path.as_str() {
            "typing.Optional" => Ty::Union(vec![arg(0, self, notes)?, Ty::Null]),
            "typing.Union" => {
                let mut members = Vec::new();
                for i in 0..args.len() {
                    members.push(arg(i, self, notes)?);
                }
                Ty::Union(members)
            }
            "builtins.list"
            | "typing.List"
            | "typing.Sequence"
            | "typing.MutableSequence"
            | "collections.abc.Sequence"
            | "collections.abc.MutableSequence" => Ty::List(Box::new(arg(0, self, notes)?)),
            "builtins.set"
            | "builtins.frozenset"
            | "typing.Set"
            | "typing.FrozenSet"
            | "typing.AbstractSet"
            | "collections.abc.Set" => Ty::Set(Box::new(arg(0, self, notes)?)),
            "builtins.dict"
            | "typing.Dict"
            | "typing.Mapping"
            | "typing.MutableMapping"
            | "collections.abc.Mapping"
            | "collections.abc.MutableMapping" => {
                let _keys = arg(0, self, notes)?;
                Ty::Dict(Box::new(arg(1, self, notes)?))
            }
            "builtins.tuple" | "typing.Tuple" => {
                let is_ellipsis = |e: &Expr| matches!(e, Expr::Constant(c) if matches!(c.value, Constant::Ellipsis));
                if args.len() == 2 && is_ellipsis(args[1]) {
                    Ty::TupleVar(Box::new(arg(0, self, notes)?))
                } else if args.len() == 1 && matches!(args[0], Expr::Tuple(t) if t.elts.is_empty())
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
            "typing.Literal" => {
                let mut values = Vec::new();
                for expr in args {
                    self.literal_values(expr, &mut values, depth + 1)?;
                }
                Ty::Literal(values)
            }
            "typing.Annotated" => {
                if args[1..]
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
            "builtins.type" | "typing.Type" | "typing.Callable" | "collections.abc.Callable" => {
                Ty::Any
            }
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

    fn classify(&self, class: &'a ast::StmtClassDef) -> LocalClass<'a> {
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
            matches!(self.module.resolve(target), Resolved::Qualified(p) if p == "dataclasses.dataclass" || p == "pydantic.dataclasses.dataclass")
        }) {
            return LocalClass::Unsupported("a dataclass");
        }
        for base in &class.bases {
            match self.module.resolve(base) {
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
                Resolved::Class(parent) => match self.classify_at(parent, depth + 1) {
                    LocalClass::Model(_) => return LocalClass::Model(class),
                    LocalClass::Enum(_) => return LocalClass::Unsupported("an Enum subclass"),
                    LocalClass::Plain => {}
                    unsupported => return unsupported,
                },
                _ => return LocalClass::Unsupported("derived from an unresolvable base"),
            }
        }
        LocalClass::Plain
    }

    // -- definitions -----------------------------------------------------------------------

    fn define_enum(&mut self, class: &'a ast::StmtClassDef) -> Result<(), String> {
        let name = class.name.to_string();
        if self.defs.contains_key(&name) {
            return Ok(());
        }
        let values = self
            .enum_members(class)?
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>();
        let mut def = Map::new();
        def.insert("title".into(), Value::String(name.clone()));
        if let Some(doc) = crate::prefect::flow_source::docstring_of(&class.body) {
            let doc = crate::prefect::flow_source::cleandoc(&doc);
            if !doc.is_empty() && doc != "An enumeration." {
                def.insert("description".into(), Value::String(doc));
            }
        }
        let kind = value_kinds(&values);
        def.insert("enum".into(), Value::Array(values));
        if let Some(kind) = kind {
            def.insert("type".into(), Value::String(kind.into()));
        }
        self.defs.insert(name, Value::Object(def));
        Ok(())
    }

    /// Members of an Enum class in definition order: (name, JSON value). Aliases (repeated
    /// values) are not members.
    fn enum_members(&self, class: &'a ast::StmtClassDef) -> Result<Vec<(String, Value)>, String> {
        let is_str_enum = class.bases.iter().any(|b| {
            matches!(self.module.resolve(b), Resolved::Qualified(p) if p == "enum.StrEnum" || p == "builtins.str")
        });
        let mut members: Vec<(String, Value)> = Vec::new();
        let mut last_auto: i64 = 0;
        for stmt in &class.body {
            let Stmt::Assign(assign) = stmt else { continue };
            let [Expr::Name(target)] = assign.targets.as_slice() else {
                continue;
            };
            let member = target.id.to_string();
            if member.starts_with('_') {
                continue;
            }
            let is_auto = matches!(assign.value.as_ref(), Expr::Call(call)
                if call.args.is_empty() && matches!(self.module.resolve(&call.func), Resolved::Qualified(p) if p == "enum.auto"));
            let value = if is_auto {
                if is_str_enum {
                    Value::String(member.to_lowercase())
                } else {
                    last_auto += 1;
                    Value::from(last_auto)
                }
            } else {
                let py = self.eval(&assign.value, 0).map_err(|e| {
                    format!(
                        "enum {}.{member}: value `{}` {e}",
                        class.name,
                        unparse(&assign.value)
                    )
                })?;
                let mut value = encode(&py)?;
                if is_str_enum {
                    if let Value::Number(n) = &value {
                        value = Value::String(n.to_string());
                    }
                }
                if let Some(i) = value.as_i64() {
                    last_auto = i;
                }
                value
            };
            if !members.iter().any(|(_, v)| same_python_value(v, &value)) {
                members.push((member, value));
            }
        }
        if members.is_empty() {
            return Err(format!(
                "enum {} has no members this reader can evaluate",
                class.name
            ));
        }
        Ok(members)
    }

    fn define_model(&mut self, class: &'a ast::StmtClassDef) -> Result<(), String> {
        let name = class.name.to_string();
        if self.defs.contains_key(&name) || self.in_progress.contains(&name) {
            return Ok(());
        }
        self.in_progress.push(name.clone());
        let result = self.model_schema(class);
        self.in_progress.retain(|n| n != &name);
        let def = result?;
        self.defs.insert(name, Value::Object(def));
        Ok(())
    }

    fn model_schema(&mut self, class: &'a ast::StmtClassDef) -> Result<Map<String, Value>, String> {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in self.model_fields(class)? {
            let mut notes = Vec::new();
            let ty = self
                .resolve_type(field.annotation, false, &mut notes, 0)
                .map_err(|e| format!("model {}.{}: annotation {e}", class.name, field.name))?;
            if let Some(note) = notes.first() {
                return Err(format!("model {}.{}: {note}", class.name, field.name));
            }
            let mut schema = self.schema_of(&ty)?;
            let mut spec = match field.default {
                None => None,
                Some(expr) => Some(self.eval_default(expr).map_err(|e| {
                    format!(
                        "model {}.{}: default `{}` {e}",
                        class.name,
                        field.name,
                        unparse(expr)
                    )
                })?),
            };
            let mut title = None;
            let mut description = None;
            let mut has_default = None;
            let mut constraints = Vec::new();
            let mut key = field.name.to_string();
            match spec.take() {
                None | Some(DefaultExpr::Ellipsis) => {}
                Some(DefaultExpr::Value(v)) => has_default = Some(Some(v)),
                Some(DefaultExpr::Field(f)) => {
                    if let Some(note) = f.notes.first() {
                        return Err(format!("model {}.{}: {note}", class.name, field.name));
                    }
                    match (f.default, f.default_factory) {
                        (_, Some(_)) => has_default = Some(None),
                        (Default_::Value(v), None) => has_default = Some(Some(v)),
                        (Default_::Required, None) => {}
                    }
                    title = f.title;
                    description = f.description;
                    constraints = f.constraints;
                    if let Some(alias) = f.alias {
                        key = alias;
                    }
                }
            }
            match has_default {
                Some(Some(value)) => {
                    schema.insert("default".into(), value);
                }
                Some(None) => {} // default_factory: pydantic emits no default
                None => required.push(Value::String(key.clone())),
            }
            let title = title.or_else(|| title_should_be_set(&ty).then(|| title_from_name(&key)));
            if let Some(title) = title {
                schema.insert("title".into(), Value::String(title));
            }
            if let Some(description) = description {
                schema.insert("description".into(), Value::String(description));
            }
            for (k, v) in constraints {
                let k = match (k.as_str(), &ty) {
                    ("min_length", Ty::Str) => "minLength",
                    ("max_length", Ty::Str) => "maxLength",
                    ("min_length", _) => "minItems",
                    ("max_length", _) => "maxItems",
                    ("ge", _) => "minimum",
                    ("gt", _) => "exclusiveMinimum",
                    ("le", _) => "maximum",
                    ("lt", _) => "exclusiveMaximum",
                    ("multiple_of", _) => "multipleOf",
                    ("pattern", _) => "pattern",
                    ("examples", _) => "examples",
                    (other, _) => {
                        return Err(format!(
                            "model {}.{}: Field({other}=...) is not supported",
                            class.name, field.name
                        ))
                    }
                };
                schema.insert(k.into(), v);
            }
            properties.insert(key, Value::Object(schema));
        }
        let mut def = Map::new();
        def.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            def.insert("required".into(), Value::Array(required));
        }
        def.insert("title".into(), Value::String(class.name.to_string()));
        def.insert("type".into(), Value::String("object".into()));
        if let Some(doc) = crate::prefect::flow_source::docstring_of(&class.body) {
            let doc = crate::prefect::flow_source::cleandoc(&doc);
            if !doc.is_empty() {
                def.insert("description".into(), Value::String(doc));
            }
        }
        Ok(def)
    }

    /// Annotated class-level fields of a model, parents first (pydantic's order).
    fn model_fields(&self, class: &'a ast::StmtClassDef) -> Result<Vec<ModelField<'a>>, String> {
        self.model_fields_at(class, 0)
    }

    fn model_fields_at(
        &self,
        class: &'a ast::StmtClassDef,
        depth: usize,
    ) -> Result<Vec<ModelField<'a>>, String> {
        if depth > MAX_EVAL_DEPTH {
            return Err(format!(
                "model {}: class hierarchy too deep to follow",
                class.name
            ));
        }
        let mut fields: Vec<ModelField<'a>> = Vec::new();
        for base in &class.bases {
            if let Resolved::Class(parent) = self.module.resolve(base) {
                fields.extend(self.model_fields_at(parent, depth + 1)?);
            }
        }
        for stmt in &class.body {
            match stmt {
                Stmt::AnnAssign(assign) => {
                    let Expr::Name(target) = assign.target.as_ref() else {
                        continue;
                    };
                    let name = target.id.as_str();
                    if name.starts_with('_') || self.is_classvar(&assign.annotation) {
                        continue;
                    }
                    let field = ModelField {
                        name,
                        annotation: &assign.annotation,
                        default: assign.value.as_deref(),
                    };
                    match fields.iter_mut().find(|f| f.name == name) {
                        Some(existing) => *existing = field,
                        None => fields.push(field),
                    }
                }
                Stmt::Assign(assign) => {
                    if let [Expr::Name(target)] = assign.targets.as_slice() {
                        if target.id.as_str() == "model_config" {
                            return Err(format!(
                                "model {}: model_config is not supported",
                                class.name
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(fields)
    }

    fn is_classvar(&self, annotation: &Expr) -> bool {
        let target = match annotation {
            Expr::Subscript(s) => s.value.as_ref(),
            other => other,
        };
        matches!(self.module.resolve(target), Resolved::Qualified(p) if p == "typing.ClassVar")
    }

    // -- schema generation -------------------------------------------------------------------

    /// pydantic's JSON schema of a type, keys in pydantic's construction order.
    fn schema_of(&mut self, ty: &Ty) -> Result<Map<String, Value>, String> {
        let mut m = Map::new();
        let s = |v: &str| Value::String(v.to_string());
        match ty {
            Ty::Any => {}
            Ty::Int => {
                m.insert("type".into(), s("integer"));
            }
            Ty::Float => {
                m.insert("type".into(), s("number"));
            }
            Ty::Str => {
                m.insert("type".into(), s("string"));
            }
            Ty::Bool => {
                m.insert("type".into(), s("boolean"));
            }
            Ty::Null => {
                m.insert("type".into(), s("null"));
            }
            Ty::Bytes => {
                m.insert("type".into(), s("string"));
                m.insert("format".into(), s("binary"));
            }
            Ty::List(item) | Ty::TupleVar(item) => {
                m.insert("type".into(), s("array"));
                m.insert("items".into(), Value::Object(self.schema_of(item)?));
            }
            Ty::Set(item) => {
                m.insert("type".into(), s("array"));
                m.insert("uniqueItems".into(), Value::Bool(true));
                m.insert("items".into(), Value::Object(self.schema_of(item)?));
            }
            Ty::Dict(value) => {
                m.insert("type".into(), s("object"));
                let values = self.schema_of(value)?;
                let values = if values.is_empty() {
                    Value::Bool(true)
                } else {
                    Value::Object(values)
                };
                m.insert("additionalProperties".into(), values);
            }
            Ty::Tuple(items) => {
                m.insert("type".into(), s("array"));
                if !items.is_empty() {
                    let mut prefix = Vec::new();
                    for item in items {
                        prefix.push(Value::Object(self.schema_of(item)?));
                    }
                    m.insert("prefixItems".into(), Value::Array(prefix));
                }
                m.insert("minItems".into(), Value::from(items.len()));
                m.insert("maxItems".into(), Value::from(items.len()));
            }
            Ty::Union(members) => return self.union_schema(members),
            Ty::Literal(values) => {
                if let [only] = values.as_slice() {
                    m.insert("const".into(), only.clone());
                } else {
                    m.insert("enum".into(), Value::Array(values.clone()));
                }
                if let Some(kind) = value_kinds(values) {
                    m.insert("type".into(), s(kind));
                }
            }
            Ty::Enum(name) | Ty::Model(name) => {
                m.insert(
                    "$ref".into(),
                    Value::String(format!("#/definitions/{name}")),
                );
            }
            Ty::DateTime | Ty::Date | Ty::Time | Ty::TimeDelta | Ty::Uuid | Ty::Path => {
                let format = match ty {
                    Ty::DateTime => "date-time",
                    Ty::Date => "date",
                    Ty::Time => "time",
                    Ty::TimeDelta => "duration",
                    Ty::Uuid => "uuid",
                    _ => "path",
                };
                m.insert("type".into(), s("string"));
                m.insert("format".into(), s(format));
            }
            Ty::Decimal => {
                let number = Value::Object(Map::from_iter([("type".to_string(), s("number"))]));
                let string = Value::Object(Map::from_iter([("type".to_string(), s("string"))]));
                m.insert("anyOf".into(), Value::Array(vec![number, string]));
            }
        }
        Ok(m)
    }

    /// `Union[...]`: typing flattens and de-duplicates members; pydantic turns a `None` member
    /// into a trailing `{"type": "null"}` and flattens/de-duplicates the anyOf.
    fn union_schema(&mut self, members: &[Ty]) -> Result<Map<String, Value>, String> {
        let mut flat: Vec<Ty> = Vec::new();
        flatten_union(members, &mut flat);
        let nullable = flat.contains(&Ty::Null);
        let rest: Vec<Ty> = flat.into_iter().filter(|t| *t != Ty::Null).collect();
        let null = Map::from_iter([("type".to_string(), Value::String("null".into()))]);
        if rest.is_empty() {
            return Ok(null);
        }
        let inner = if rest.len() == 1 {
            self.schema_of(&rest[0])?
        } else {
            let mut schemas = Vec::new();
            for member in &rest {
                schemas.push(self.schema_of(member)?);
            }
            flattened_any_of(schemas)
        };
        if !nullable {
            return Ok(inner);
        }
        if inner == null {
            return Ok(null);
        }
        Ok(flattened_any_of(vec![inner, null]))
    }

    // -- values --------------------------------------------------------------------------------

    /// A parameter's default expression, with `pydantic.Field(...)` and `...` recognised.
    fn eval_default(&self, expr: &Expr) -> Result<DefaultExpr, String> {
        if let Expr::Call(call) = expr {
            if matches!(self.module.resolve(&call.func), Resolved::Qualified(p) if p == "pydantic.Field" || p == "pydantic.fields.Field")
            {
                return self.eval_field(call).map(DefaultExpr::Field);
            }
        }
        match self.eval(expr, 0)? {
            Py::Ellipsis => Ok(DefaultExpr::Ellipsis),
            py => Ok(DefaultExpr::Value(encode(&py)?)),
        }
    }

    fn eval_field(&self, call: &ast::ExprCall) -> Result<FieldSpec, String> {
        let mut spec = FieldSpec {
            default: Default_::Required,
            description: None,
            title: None,
            json_schema_extra: Map::new(),
            constraints: Vec::new(),
            alias: None,
            default_factory: None,
            notes: Vec::new(),
        };
        let set_default = |py: Py| -> Result<Default_, String> {
            Ok(match py {
                Py::Ellipsis => Default_::Required,
                other => Default_::Value(encode(&other)?),
            })
        };
        if let Some(first) = call.args.first() {
            spec.default = set_default(self.eval(first, 0)?)?;
        }
        for keyword in &call.keywords {
            let Some(arg) = keyword.arg.as_ref().map(|a| a.as_str()) else {
                return Err("uses **kwargs in Field(...)".into());
            };
            match arg {
                "default" => spec.default = set_default(self.eval(&keyword.value, 0)?)?,
                "default_factory" => {
                    let factory = match self.module.resolve(&keyword.value) {
                        Resolved::Qualified(p) => p,
                        _ => return Err("has a default_factory this reader cannot evaluate".into()),
                    };
                    spec.default_factory = Some(factory);
                    spec.default = Default_::Required;
                }
                "description" | "title" | "alias" => {
                    let text = match self.eval(&keyword.value, 0)? {
                        Py::Str(s) => Some(s),
                        Py::None => None,
                        _ => return Err(format!("has a non-string {arg}=")),
                    };
                    match arg {
                        "description" => spec.description = text,
                        "title" => spec.title = text,
                        _ => spec.alias = text,
                    }
                }
                "json_schema_extra" => match encode(&self.eval(&keyword.value, 0)?)? {
                    Value::Object(extra) => spec.json_schema_extra.extend(extra),
                    _ => return Err("has a json_schema_extra that is not a dict".into()),
                },
                "ge" | "gt" | "le" | "lt" | "min_length" | "max_length" | "multiple_of"
                | "pattern" | "examples" => {
                    spec.constraints
                        .push((arg.to_string(), encode(&self.eval(&keyword.value, 0)?)?));
                }
                other => spec.notes.push(format!("Field({other}=...) is ignored")),
            }
        }
        if spec.default_factory.is_some() {
            // Prefect reads `FieldInfo.default`, which is undefined here: the parameter
            // becomes required.
            spec.notes
                .push("Field(default_factory=...) makes the parameter required".into());
        }
        Ok(spec)
    }

    /// Evaluate a literal-ish expression to a Python value.
    fn eval(&self, expr: &Expr, depth: usize) -> Result<Py, String> {
        if depth > MAX_EVAL_DEPTH {
            return Err("is nested too deeply".into());
        }
        let next = depth + 1;
        match expr {
            Expr::Constant(c) => constant(&c.value),
            Expr::UnaryOp(u) => match (u.op, self.eval(&u.operand, next)?) {
                (ast::UnaryOp::USub, Py::Int(i)) => i
                    .checked_neg()
                    .map(Py::Int)
                    .ok_or_else(|| "overflows".to_string()),
                (ast::UnaryOp::USub, Py::Float(f)) => Ok(Py::Float(-f)),
                (ast::UnaryOp::USub, Py::Bool(b)) => Ok(Py::Int(-(b as i64))),
                (ast::UnaryOp::UAdd, Py::Int(i)) => Ok(Py::Int(i)),
                (ast::UnaryOp::UAdd, Py::Float(f)) => Ok(Py::Float(f)),
                (ast::UnaryOp::Not, value) => Ok(Py::Bool(!truthy(&value)?)),
                _ => Err("uses an unsupported unary operator".into()),
            },
            Expr::BinOp(b) => {
                let left = self.eval(&b.left, next)?;
                let right = self.eval(&b.right, next)?;
                binop(b.op, left, right)
            }
            Expr::List(l) => Ok(Py::List(self.eval_all(&l.elts, next)?)),
            Expr::Tuple(t) => Ok(Py::Tuple(self.eval_all(&t.elts, next)?)),
            Expr::Set(s) => Ok(Py::Set(dedupe(self.eval_all(&s.elts, next)?))),
            Expr::Dict(d) => {
                let mut items: Vec<(Py, Py)> = Vec::new();
                for (key, value) in d.keys.iter().zip(&d.values) {
                    let Some(key) = key else {
                        return Err("uses ** unpacking".into());
                    };
                    let key = self.eval(key, next)?;
                    let value = self.eval(value, next)?;
                    insert_dict(&mut items, key, value);
                }
                Ok(Py::Dict(items))
            }
            Expr::JoinedStr(_) => Err("is an f-string, which is not evaluated".into()),
            Expr::Name(_) | Expr::Attribute(_) => self.eval_reference(expr, next),
            Expr::Call(call) => self.eval_call(call, next),
            _ => Err("is not a literal this reader evaluates".into()),
        }
    }

    fn eval_all(&self, exprs: &[Expr], depth: usize) -> Result<Vec<Py>, String> {
        exprs.iter().map(|e| self.eval(e, depth)).collect()
    }

    /// A name or attribute used as a value: module constants, enum members, `timezone.utc`.
    fn eval_reference(&self, expr: &Expr, depth: usize) -> Result<Py, String> {
        if let Expr::Attribute(attr) = expr {
            // Color.RED / Color.RED.value
            if let Resolved::Class(class) = self.module.resolve(&attr.value) {
                if let LocalClass::Enum(def) = self.classify(class) {
                    return self.enum_member(def, attr.attr.as_str());
                }
            }
            if attr.attr.as_str() == "value" {
                if let Expr::Attribute(member) = attr.value.as_ref() {
                    if let Resolved::Class(class) = self.module.resolve(&member.value) {
                        if let LocalClass::Enum(def) = self.classify(class) {
                            return self.enum_member(def, member.attr.as_str());
                        }
                    }
                }
            }
        }
        match self.module.resolve(expr) {
            Resolved::Value(value) => self.eval(value, depth),
            Resolved::Qualified(path) if path == "datetime.timezone.utc" => {
                Ok(Py::TimeZone("Z".into()))
            }
            Resolved::Qualified(path) => Err(format!("refers to `{path}`, whose value is unknown")),
            Resolved::Class(_) => Err("is a class, not a value".into()),
            Resolved::Undefined => Err("names something that is not defined".into()),
            Resolved::Unknown => Err("cannot be evaluated statically".into()),
        }
    }

    fn enum_member(&self, class: &'a ast::StmtClassDef, member: &str) -> Result<Py, String> {
        let members = self.enum_members(class)?;
        // Aliases resolve to the canonical member's value, which is the same value.
        for stmt in &class.body {
            if let Stmt::Assign(assign) = stmt {
                if let [Expr::Name(target)] = assign.targets.as_slice() {
                    if target.id.as_str() == member {
                        if let Some((_, value)) = members.iter().find(|(n, _)| n == member) {
                            return Ok(Py::Json(value.clone()));
                        }
                        let py = self.eval(&assign.value, 0)?;
                        return Ok(Py::Json(encode(&py)?));
                    }
                }
            }
        }
        Err(format!("names no member of enum {}", class.name))
    }

    fn eval_call(&self, call: &ast::ExprCall, depth: usize) -> Result<Py, String> {
        let func = match self.module.resolve(&call.func) {
            Resolved::Qualified(path) => path,
            Resolved::Class(class) => {
                return match self.classify(class) {
                    LocalClass::Model(def) => self.eval_model_instance(def, call, depth),
                    _ => Err(format!(
                        "constructs {}, which this reader cannot evaluate",
                        class.name
                    )),
                };
            }
            _ => return Err("calls something this reader cannot evaluate".into()),
        };
        let args = self.eval_all(&call.args, depth)?;
        let mut kwargs: Vec<(String, Py)> = Vec::new();
        for keyword in &call.keywords {
            let Some(arg) = &keyword.arg else {
                return Err("uses ** unpacking".into());
            };
            kwargs.push((arg.to_string(), self.eval(&keyword.value, depth)?));
        }
        crate::prefect::param_schema::call_builtin(&func, args, kwargs)
    }

    fn eval_model_instance(
        &self,
        class: &'a ast::StmtClassDef,
        call: &ast::ExprCall,
        depth: usize,
    ) -> Result<Py, String> {
        if !call.args.is_empty() {
            return Err(format!(
                "passes positional arguments to model {}",
                class.name
            ));
        }
        let mut given: Vec<(String, Value)> = Vec::new();
        for keyword in &call.keywords {
            let Some(arg) = &keyword.arg else {
                return Err("uses ** unpacking".into());
            };
            given.push((arg.to_string(), encode(&self.eval(&keyword.value, depth)?)?));
        }
        let mut dump = Map::new();
        for field in self.model_fields(class)? {
            if let Some((_, value)) = given.iter().find(|(n, _)| n == field.name) {
                dump.insert(field.name.to_string(), value.clone());
                continue;
            }
            let default = match field.default {
                Some(expr) => self.eval_default(expr)?,
                None => {
                    return Err(format!(
                        "omits required field {}.{}",
                        class.name, field.name
                    ))
                }
            };
            let value = match default {
                DefaultExpr::Value(v) => v,
                DefaultExpr::Field(f) => match (f.default, f.default_factory) {
                    (_, Some(factory)) => match factory.as_str() {
                        "builtins.list" | "builtins.set" | "builtins.tuple" => Value::Array(vec![]),
                        "builtins.dict" => Value::Object(Map::new()),
                        other => return Err(format!("uses default_factory={other}")),
                    },
                    (Default_::Value(v), _) => v,
                    (Default_::Required, _) => {
                        return Err(format!(
                            "omits required field {}.{}",
                            class.name, field.name
                        ))
                    }
                },
                DefaultExpr::Ellipsis => {
                    return Err(format!(
                        "omits required field {}.{}",
                        class.name, field.name
                    ))
                }
            };
            dump.insert(field.name.to_string(), value);
        }
        Ok(Py::Json(Value::Object(dump)))
    }
}

struct ModelField<'a> {
    name: &'a str,
    annotation: &'a Expr,
    default: Option<&'a Expr>,
}

enum TypeName<'a> {
    Qualified(String),
    Local(&'a ast::StmtClassDef),
}

/// pydantic: fields whose schema is a reference (models, enums), possibly wrapped in
/// Optional, get no field-level title.
fn title_should_be_set(ty: &Ty) -> bool {
    match ty {
        Ty::Enum(_) | Ty::Model(_) => false,
        Ty::Union(members) => {
            let mut flat = Vec::new();
            flatten_union(members, &mut flat);
            let rest: Vec<&Ty> = flat.iter().filter(|t| **t != Ty::Null).collect();
            !(flat.contains(&Ty::Null) && rest.len() == 1 && !title_should_be_set(rest[0]))
        }
        _ => true,
    }
}

/// pydantic's `get_title_from_name`: `name.title().replace('_', ' ').strip()`.
fn title_from_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut previous_cased = false;
    for c in name.chars() {
        let cased = c.is_uppercase() || c.is_lowercase();
        if cased {
            if previous_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
        } else {
            out.push(c);
        }
        previous_cased = cased;
    }
    out.replace('_', " ").trim().to_string()
}

fn flatten_union(members: &[Ty], out: &mut Vec<Ty>) {
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

/// pydantic's `get_flattened_anyof`.
fn flattened_any_of(schemas: Vec<Map<String, Value>>) -> Map<String, Value> {
    let mut members: Vec<Value> = Vec::new();
    for schema in schemas {
        match schema.get("anyOf") {
            Some(Value::Array(inner)) if schema.len() == 1 => {
                for item in inner {
                    if !members.contains(item) {
                        members.push(item.clone());
                    }
                }
            }
            _ => {
                let value = Value::Object(schema);
                if !members.contains(&value) {
                    members.push(value);
                }
            }
        }
    }
    if members.len() == 1 {
        if let Some(Value::Object(only)) = members.pop() {
            return only;
        }
    }
    Map::from_iter([("anyOf".to_string(), Value::Array(members))])
}

/// The JSON type shared by all values (pydantic's literal/enum `type`), if there is one.
fn value_kinds(values: &[Value]) -> Option<&'static str> {
    let kind = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "array",
        Value::Null => "null",
        Value::Object(_) => "object",
    };
    let first = kind(values.first()?);
    (first != "object" && values.iter().all(|v| kind(v) == first)).then_some(first)
}

/// Python equality of two encoded values as typing/enum de-duplication sees them
/// (`1 == 1.0`, but a bool and an int literal stay distinct in `Literal`).
fn same_python_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn is_string_constant(expr: &Expr) -> bool {
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

/// Best-effort source text of an expression, for messages.
pub(crate) fn unparse(expr: &Expr) -> String {
    unparse_at(expr, 0)
}

/// Nesting shown by [`unparse`] before `...`: messages stay short and a hostile annotation
/// (`list[list[...]]` thousands deep) cannot overflow the stack.
const MAX_UNPARSE_DEPTH: usize = 32;

fn unparse_at(expr: &Expr, depth: usize) -> String {
    if depth > MAX_UNPARSE_DEPTH {
        return "...".into();
    }
    let unparse = |e: &Expr| unparse_at(e, depth + 1);
    match expr {
        Expr::Name(n) => n.id.to_string(),
        Expr::Attribute(a) => format!("{}.{}", unparse(&a.value), a.attr),
        Expr::Subscript(s) => format!("{}[{}]", unparse(&s.value), unparse(&s.slice)),
        Expr::Tuple(t) => t.elts.iter().map(unparse).collect::<Vec<_>>().join(", "),
        Expr::List(l) => format!(
            "[{}]",
            l.elts.iter().map(unparse).collect::<Vec<_>>().join(", ")
        ),
        Expr::BinOp(b) if matches!(b.op, ast::Operator::BitOr) => {
            format!("{} | {}", unparse(&b.left), unparse(&b.right))
        }
        Expr::Constant(c) => match &c.value {
            Constant::Str(s) => format!("{s:?}"),
            Constant::None => "None".into(),
            Constant::Bool(b) => if *b { "True" } else { "False" }.into(),
            Constant::Int(i) => i.to_string(),
            Constant::Float(f) => float_repr(*f),
            Constant::Ellipsis => "...".into(),
            _ => "<constant>".into(),
        },
        Expr::Call(c) => format!("{}(...)", unparse(&c.func)),
        _ => "<expression>".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Python values
// ---------------------------------------------------------------------------------------------

fn constant(value: &Constant) -> Result<Py, String> {
    Ok(match value {
        Constant::None => Py::None,
        Constant::Bool(b) => Py::Bool(*b),
        Constant::Str(s) => Py::Str(s.clone()),
        Constant::Bytes(b) => Py::Bytes(b.clone()),
        Constant::Int(i) => Py::Int(i64::try_from(i).map_err(|_| {
            "is an integer beyond 64 bits, which this reader does not encode".to_string()
        })?),
        Constant::Float(f) => Py::Float(*f),
        Constant::Tuple(items) => Py::Tuple(items.iter().map(constant).collect::<Result<_, _>>()?),
        Constant::Ellipsis => Py::Ellipsis,
        Constant::Complex { .. } => return Err("is a complex number".into()),
    })
}

fn truthy(value: &Py) -> Result<bool, String> {
    Ok(match value {
        Py::None => false,
        Py::Bool(b) => *b,
        Py::Int(i) => *i != 0,
        Py::Float(f) => *f != 0.0,
        Py::Str(s) => !s.is_empty(),
        Py::Bytes(b) => !b.is_empty(),
        Py::List(v) | Py::Tuple(v) | Py::Set(v) => !v.is_empty(),
        Py::Dict(d) => !d.is_empty(),
        Py::Json(_) | Py::TimeZone(_) | Py::Ellipsis => {
            return Err("has no known truth value".into())
        }
    })
}

fn as_number(value: &Py) -> Option<Result<i64, f64>> {
    match value {
        Py::Bool(b) => Some(Ok(*b as i64)),
        Py::Int(i) => Some(Ok(*i)),
        Py::Float(f) => Some(Err(*f)),
        _ => None,
    }
}

/// `+ - * / // %` on numbers, `+` on strings/bytes/lists/tuples, `*` repeating a string.
fn binop(op: ast::Operator, left: Py, right: Py) -> Result<Py, String> {
    use ast::Operator as Op;
    let overflow = || "overflows 64-bit integers".to_string();
    match (op, &left, &right) {
        (Op::Add, Py::Str(a), Py::Str(b)) => return Ok(Py::Str(format!("{a}{b}"))),
        (Op::Add, Py::Bytes(a), Py::Bytes(b)) => {
            return Ok(Py::Bytes([a.clone(), b.clone()].concat()))
        }
        (Op::Add, Py::List(a), Py::List(b)) => {
            return Ok(Py::List([a.clone(), b.clone()].concat()))
        }
        (Op::Add, Py::Tuple(a), Py::Tuple(b)) => {
            return Ok(Py::Tuple([a.clone(), b.clone()].concat()))
        }
        (Op::Mult, Py::Str(s), Py::Int(n)) | (Op::Mult, Py::Int(n), Py::Str(s)) => {
            let n = usize::try_from(*n).unwrap_or(0);
            if s.len().saturating_mul(n) > 1 << 20 {
                return Err("builds a string that is too long".into());
            }
            return Ok(Py::Str(s.repeat(n)));
        }
        _ => {}
    }
    let (Some(a), Some(b)) = (as_number(&left), as_number(&right)) else {
        return Err("uses an operator on values this reader does not combine".into());
    };
    match (a, b) {
        (Ok(x), Ok(y)) => match op {
            Op::Add => x.checked_add(y).map(Py::Int).ok_or_else(overflow),
            Op::Sub => x.checked_sub(y).map(Py::Int).ok_or_else(overflow),
            Op::Mult => x.checked_mul(y).map(Py::Int).ok_or_else(overflow),
            Op::Div if y != 0 => Ok(Py::Float(x as f64 / y as f64)),
            Op::FloorDiv if y != 0 => x
                .checked_div_euclid(y)
                .map(|_| Py::Int(floor_div(x, y)))
                .ok_or_else(overflow),
            Op::Mod if y != 0 => Ok(Py::Int(x - y * floor_div(x, y))),
            Op::Pow if (0..=63).contains(&y) => {
                x.checked_pow(y as u32).map(Py::Int).ok_or_else(overflow)
            }
            _ => Err("uses an unsupported arithmetic operation".into()),
        },
        (a, b) => {
            let x = a.map_or_else(|f| f, |i| i as f64);
            let y = b.map_or_else(|f| f, |i| i as f64);
            match op {
                Op::Add => Ok(Py::Float(x + y)),
                Op::Sub => Ok(Py::Float(x - y)),
                Op::Mult => Ok(Py::Float(x * y)),
                Op::Div if y != 0.0 => Ok(Py::Float(x / y)),
                _ => Err("uses an unsupported arithmetic operation".into()),
            }
        }
    }
}

fn floor_div(x: i64, y: i64) -> i64 {
    let q = x / y;
    if (x % y != 0) && ((x < 0) != (y < 0)) {
        q - 1
    } else {
        q
    }
}

/// Python equality for set/dict keys: `1 == 1.0 == True`.
fn py_eq(a: &Py, b: &Py) -> bool {
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => {
            x.map_or_else(|f| f, |i| i as f64) == y.map_or_else(|f| f, |i| i as f64)
        }
        _ => match (encode(a), encode(b)) {
            (Ok(x), Ok(y)) => x == y && std::mem::discriminant(a) == std::mem::discriminant(b),
            _ => false,
        },
    }
}

fn dedupe(items: Vec<Py>) -> Vec<Py> {
    let mut out: Vec<Py> = Vec::new();
    for item in items {
        if !out.iter().any(|existing| py_eq(existing, &item)) {
            out.push(item);
        }
    }
    out
}

/// Dict insertion: a repeated key keeps its first position and takes the last value.
fn insert_dict(items: &mut Vec<(Py, Py)>, key: Py, value: Py) {
    match items.iter_mut().find(|(k, _)| py_eq(k, &key)) {
        Some(slot) => slot.1 = value,
        None => items.push((key, value)),
    }
}

/// Calls to standard constructors whose result pydantic encodes as JSON.
fn call_builtin(func: &str, args: Vec<Py>, kwargs: Vec<(String, Py)>) -> Result<Py, String> {
    let no_kwargs = |what: &str| -> Result<(), String> {
        if kwargs.is_empty() {
            Ok(())
        } else {
            Err(format!("passes keyword arguments to {what}"))
        }
    };
    match func {
        "builtins.list" | "builtins.tuple" | "builtins.set" | "builtins.frozenset" => {
            no_kwargs(func)?;
            let items = match args.into_iter().next() {
                None => Vec::new(),
                Some(Py::List(v) | Py::Tuple(v) | Py::Set(v)) => v,
                Some(Py::Str(s)) => s.chars().map(|c| Py::Str(c.to_string())).collect(),
                Some(Py::Dict(d)) => d.into_iter().map(|(k, _)| k).collect(),
                Some(_) => return Err(format!("passes a non-iterable to {func}")),
            };
            Ok(match func {
                "builtins.list" => Py::List(items),
                "builtins.tuple" => Py::Tuple(items),
                _ => Py::Set(dedupe(items)),
            })
        }
        "builtins.dict" => {
            let mut items = match args.into_iter().next() {
                None => Vec::new(),
                Some(Py::Dict(d)) => d,
                Some(_) => return Err("passes a non-dict to dict()".into()),
            };
            for (k, v) in kwargs {
                insert_dict(&mut items, Py::Str(k), v);
            }
            Ok(Py::Dict(items))
        }
        "datetime.datetime" | "datetime.date" | "datetime.time" => {
            crate::prefect::param_schema::temporal(func, args, kwargs)
        }
        "datetime.timedelta" => {
            let names = [
                "days",
                "seconds",
                "microseconds",
                "milliseconds",
                "minutes",
                "hours",
                "weeks",
            ];
            let scale = [86_400e6, 1e6, 1.0, 1e3, 60e6, 3_600e6, 604_800e6];
            if args.len() > names.len() {
                return Err("passes too many arguments to timedelta()".into());
            }
            let mut total = 0f64;
            let mut exact: i128 = 0;
            let mut all_int = true;
            let mut add = |value: &Py, factor: f64| -> Result<(), String> {
                match as_number(value) {
                    Some(Ok(i)) => {
                        exact += i as i128 * factor as i128;
                        total += i as f64 * factor;
                    }
                    Some(Err(f)) => {
                        all_int = false;
                        total += f * factor;
                    }
                    None => return Err("passes a non-number to timedelta()".into()),
                }
                Ok(())
            };
            for (i, value) in args.iter().enumerate() {
                add(value, scale[i])?;
            }
            for (name, value) in &kwargs {
                let i = names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| format!("passes unknown argument {name}= to timedelta()"))?;
                add(value, scale[i])?;
            }
            let micros = if all_int {
                exact
            } else {
                round_half_even(total) as i128
            };
            Ok(Py::Json(Value::String(iso_duration(micros))))
        }
        "uuid.UUID" => {
            no_kwargs("UUID()")?;
            match args.as_slice() {
                [Py::Str(text)] => parse_uuid(text).map(|u| Py::Json(Value::String(u))),
                _ => Err("passes something other than one string to UUID()".into()),
            }
        }
        "pathlib.Path" | "pathlib.PurePath" | "pathlib.PosixPath" | "pathlib.PurePosixPath" => {
            no_kwargs("Path()")?;
            let mut parts = Vec::new();
            for arg in args {
                match arg {
                    Py::Str(s) => parts.push(s),
                    _ => return Err("passes a non-string to Path()".into()),
                }
            }
            Ok(Py::Json(Value::String(normalize_posix_path(&parts))))
        }
        "decimal.Decimal" => {
            no_kwargs("Decimal()")?;
            match args.as_slice() {
                [Py::Str(s)] if is_plain_decimal(s.trim()) => {
                    Ok(Py::Json(Value::String(s.trim().to_string())))
                }
                [Py::Int(i)] => Ok(Py::Json(Value::String(i.to_string()))),
                _ => Err(
                    "passes something other than a plain decimal string or int to Decimal()".into(),
                ),
            }
        }
        "datetime.timezone" => match (args.as_slice(), kwargs.is_empty()) {
            ([Py::Json(Value::String(duration))], true) => {
                let micros = parse_iso_duration_micros(duration)
                    .ok_or_else(|| "passes an unsupported offset to timezone()".to_string())?;
                Ok(Py::TimeZone(utc_offset(micros)))
            }
            _ => Err("passes unsupported arguments to timezone()".into()),
        },
        other => Err(format!(
            "calls `{other}`, which this reader does not evaluate"
        )),
    }
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// `datetime(...)`, `date(...)`, `time(...)` → pydantic's ISO strings.
fn temporal(func: &str, args: Vec<Py>, kwargs: Vec<(String, Py)>) -> Result<Py, String> {
    let names: &[&str] = match func {
        "datetime.datetime" => &[
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "microsecond",
            "tzinfo",
        ],
        "datetime.date" => &["year", "month", "day"],
        _ => &["hour", "minute", "second", "microsecond", "tzinfo"],
    };
    let mut values: Vec<Option<Py>> = vec![None; names.len()];
    if args.len() > names.len() {
        return Err(format!("passes too many arguments to {func}()"));
    }
    for (i, arg) in args.into_iter().enumerate() {
        values[i] = Some(arg);
    }
    for (name, value) in kwargs {
        let i = names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| format!("passes unknown argument {name}= to {func}()"))?;
        values[i] = Some(value);
    }
    let int = |name: &str, default: Option<i64>| -> Result<i64, String> {
        let i = names.iter().position(|n| *n == name).unwrap_or(0);
        match (&values[i], default) {
            (Some(Py::Int(v)), _) => Ok(*v),
            (None, Some(d)) => Ok(d),
            _ => Err(format!("needs an integer {name} for {func}()")),
        }
    };
    let tz = match names
        .iter()
        .position(|n| *n == "tzinfo")
        .and_then(|i| values[i].clone())
    {
        None | Some(Py::None) => String::new(),
        Some(Py::TimeZone(suffix)) => suffix,
        Some(_) => {
            return Err(format!(
                "passes a tzinfo this reader cannot evaluate to {func}()"
            ))
        }
    };
    let check = |v: i64, lo: i64, hi: i64, what: &str| -> Result<i64, String> {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(format!("has {what} {v} out of range"))
        }
    };
    let date =
        |this_int: &dyn Fn(&str, Option<i64>) -> Result<i64, String>| -> Result<String, String> {
            let year = check(this_int("year", None)?, 1, 9999, "year")?;
            let month = check(this_int("month", None)?, 1, 12, "month")?;
            let day = this_int("day", None)?;
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let days_in_month = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            check(day, 1, days_in_month[(month - 1) as usize], "day")?;
            Ok(format!("{year:04}-{month:02}-{day:02}"))
        };
    let time =
        |this_int: &dyn Fn(&str, Option<i64>) -> Result<i64, String>| -> Result<String, String> {
            let h = check(this_int("hour", Some(0))?, 0, 23, "hour")?;
            let m = check(this_int("minute", Some(0))?, 0, 59, "minute")?;
            let s = check(this_int("second", Some(0))?, 0, 59, "second")?;
            let us = check(this_int("microsecond", Some(0))?, 0, 999_999, "microsecond")?;
            let frac = if us > 0 {
                format!(".{us:06}")
            } else {
                String::new()
            };
            Ok(format!("{h:02}:{m:02}:{s:02}{frac}"))
        };
    let text = match func {
        "datetime.date" => date(&int)?,
        "datetime.datetime" => format!("{}T{}{tz}", date(&int)?, time(&int)?),
        _ => format!("{}{tz}", time(&int)?),
    };
    Ok(Py::Json(Value::String(text)))
}

fn utc_offset(micros: i128) -> String {
    if micros == 0 {
        return "Z".into();
    }
    let sign = if micros < 0 { '-' } else { '+' };
    let total_minutes = micros.abs() / 60_000_000;
    format!("{sign}{:02}:{:02}", total_minutes / 60, total_minutes % 60)
}

/// pydantic (speedate) ISO-8601 duration: `P1Y35DT1H2M3.5S`, `-PT30S`, `PT0S`.
fn iso_duration(micros: i128) -> String {
    let mut out = String::new();
    if micros < 0 {
        out.push('-');
    }
    let micros = micros.abs();
    let total_seconds = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = total_seconds / 86_400;
    let secs_of_day = total_seconds % 86_400;
    out.push('P');
    let (years, days) = (days / 365, days % 365);
    if years > 0 {
        out.push_str(&format!("{years}Y"));
    }
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if secs_of_day > 0 || frac > 0 || (years == 0 && days == 0) {
        out.push('T');
        let (h, m, s) = (
            secs_of_day / 3600,
            (secs_of_day % 3600) / 60,
            secs_of_day % 60,
        );
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 || frac > 0 || (h == 0 && m == 0) {
            if frac > 0 {
                let digits = format!("{frac:06}");
                out.push_str(&format!("{s}.{}S", digits.trim_end_matches('0')));
            } else {
                out.push_str(&format!("{s}S"));
            }
        }
    }
    out
}

/// Inverse of [`iso_duration`] for the forms it produces (used for `timezone(timedelta(..))`).
fn parse_iso_duration_micros(text: &str) -> Option<i128> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let rest = rest.strip_prefix('P')?;
    let (date_part, time_part) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut micros: i128 = 0;
    let mut number = String::new();
    for c in date_part.chars() {
        match c {
            'Y' => micros += number.parse::<i128>().ok()? * 365 * 86_400_000_000,
            'D' => micros += number.parse::<i128>().ok()? * 86_400_000_000,
            c if c.is_ascii_digit() => {
                number.push(c);
                continue;
            }
            _ => return None,
        }
        number.clear();
    }
    for c in time_part.chars() {
        match c {
            'H' => micros += number.parse::<i128>().ok()? * 3_600_000_000,
            'M' => micros += number.parse::<i128>().ok()? * 60_000_000,
            'S' => micros += (number.parse::<f64>().ok()? * 1e6).round() as i128,
            c if c.is_ascii_digit() || c == '.' => {
                number.push(c);
                continue;
            }
            _ => return None,
        }
        number.clear();
    }
    Some(if negative { -micros } else { micros })
}

fn parse_uuid(text: &str) -> Result<String, String> {
    let mut hex: String = text.trim().to_string();
    if let Some(rest) = hex.strip_prefix("urn:uuid:") {
        hex = rest.to_string();
    }
    let hex: String = hex
        .chars()
        .filter(|c| !matches!(c, '{' | '}' | '-'))
        .collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("is not a valid UUID string ({text:?})"));
    }
    let h = hex.to_ascii_lowercase();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// `str(PurePosixPath(*parts))`.
fn normalize_posix_path(parts: &[String]) -> String {
    let mut root = String::new();
    let mut segments: Vec<&str> = Vec::new();
    for part in parts {
        if part.starts_with('/') {
            // An absolute component resets the path; exactly two leading slashes are kept.
            root = if part.starts_with("//") && !part.starts_with("///") {
                "//".into()
            } else {
                "/".into()
            };
            segments.clear();
        }
        segments.extend(part.split('/').filter(|s| !s.is_empty() && *s != "."));
    }
    let joined = segments.join("/");
    if root.is_empty() && joined.is_empty() {
        ".".into()
    } else {
        format!("{root}{joined}")
    }
}

fn is_plain_decimal(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next().unwrap_or("");
    (!whole.is_empty() || !frac.is_empty())
        && whole.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit())
}

/// pydantic's `to_jsonable_python` of a default value.
fn encode(value: &Py) -> Result<Value, String> {
    Ok(match value {
        Py::None => Value::Null,
        Py::Bool(b) => Value::Bool(*b),
        Py::Int(i) => Value::from(*i),
        Py::Float(f) => {
            Value::Number(Number::from_f64(*f).ok_or_else(|| "is not a finite number".to_string())?)
        }
        Py::Str(s) => Value::String(s.clone()),
        Py::Bytes(b) => Value::String(
            String::from_utf8(b.clone()).map_err(|_| "is bytes that are not UTF-8".to_string())?,
        ),
        Py::List(items) | Py::Tuple(items) | Py::Set(items) => {
            Value::Array(items.iter().map(encode).collect::<Result<_, _>>()?)
        }
        Py::Dict(items) => {
            let mut map = Map::new();
            for (key, value) in items {
                let key = match key {
                    Py::Str(s) => s.clone(),
                    Py::Int(i) => i.to_string(),
                    Py::Float(f) => float_repr(*f),
                    Py::Json(Value::String(s)) => s.clone(),
                    _ => return Err("has a dict key this reader does not encode".into()),
                };
                map.insert(key, encode(value)?);
            }
            Value::Object(map)
        }
        Py::TimeZone(_) => return Err("is a timezone, not a JSON value".into()),
        Py::Json(v) => v.clone(),
        Py::Ellipsis => return Err("is Ellipsis, which pydantic cannot encode here".into()),
    })
}

// ---------------------------------------------------------------------------------------------
// Python's json.dumps
// ---------------------------------------------------------------------------------------------

/// `json.dumps(value)`: `", "`/`": "` separators, ASCII-only output, Python float repr.
pub fn to_python_json(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, None, 0, &mut out);
    out
}

/// `json.dumps(value, indent=indent)`.
pub fn to_python_json_pretty(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_json(value, Some(indent), 0, &mut out);
    out
}

fn write_json(value: &Value, indent: Option<usize>, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
    };
    let item_separator = if indent.is_some() { "," } else { ", " };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) if !n.is_f64() => out.push_str(&i.to_string()),
            (_, Some(u), _) if !n.is_f64() => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&float_repr(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_separator);
                }
                newline(out, level + 1);
                write_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_separator);
                }
                newline(out, level + 1);
                write_json_string(key, out);
                out.push_str(": ");
                write_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `json.dumps` writes it: `repr(float)`, with JSON's NaN/Infinity spellings.
pub fn float_repr(f: f64) -> String {
    match f {
        f if f.is_nan() => "NaN".into(),
        f if f == f64::INFINITY => "Infinity".into(),
        f if f == f64::NEG_INFINITY => "-Infinity".into(),
        f => crate::prefect::python_text::float_repr(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_floats_use_json_spellings_for_non_finite() {
        assert_eq!(float_repr(1e-05), "1e-05");
        assert_eq!(float_repr(f64::NAN), "NaN");
        assert_eq!(float_repr(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn json_dumps_escapes_like_python() {
        let value = serde_json::json!({"a": "caf\u{e9} \u{1f680} \"q\" \\ \n\u{7f}", "b": [], "c": {}, "d": [1, 2.0]});
        assert_eq!(
            to_python_json(&value),
            r#"{"a": "caf\u00e9 \ud83d\ude80 \"q\" \\ \n\u007f", "b": [], "c": {}, "d": [1, 2.0]}"#
        );
        assert_eq!(
            to_python_json_pretty(&serde_json::json!({"x": [1, {"y": null}], "z": []}), 2),
            "{\n  \"x\": [\n    1,\n    {\n      \"y\": null\n    }\n  ],\n  \"z\": []\n}"
        );
    }

    #[test]
    fn durations_match_pydantic() {
        let day = 86_400_000_000i128;
        assert_eq!(iso_duration(7 * day), "P7D");
        assert_eq!(iso_duration(400 * day), "P1Y35D");
        assert_eq!(iso_duration(0), "PT0S");
        assert_eq!(iso_duration(1), "PT0.000001S");
        assert_eq!(iso_duration(-30_000_000), "-PT30S");
        assert_eq!(iso_duration(day + 3_600_000_000), "P1DT1H");
        assert_eq!(iso_duration(731 * day + 1_000_000), "P2Y1DT1S");
        assert_eq!(parse_iso_duration_micros("-PT1H30M"), Some(-5_400_000_000));
    }

    #[test]
    fn titles_follow_str_title() {
        assert_eq!(title_from_name("max_attempts"), "Max Attempts");
        assert_eq!(title_from_name("http2_port"), "Http2 Port");
        assert_eq!(title_from_name("_private_"), "Private");
        assert_eq!(title_from_name("dsn"), "Dsn");
        assert_eq!(title_from_name("URL"), "Url");
    }

    #[test]
    fn paths_normalise_like_pathlib() {
        let p = |parts: &[&str]| {
            normalize_posix_path(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(p(&["/data/"]), "/data");
        assert_eq!(p(&["a//b/./c"]), "a/b/c");
        assert_eq!(p(&[""]), ".");
        assert_eq!(p(&["a", "/b"]), "/b");
        assert_eq!(p(&["//x"]), "//x");
    }

    #[test]
    fn pydantic_sort_keeps_properties_and_default_order() {
        let value = serde_json::json!({"b": 1, "properties": {"z": {"y": 1, "x": 2}, "a": {}},
            "default": {"z": 1, "a": {"d": 1, "c": 2}, "l": [{"k": 1, "j": 2}]}});
        let sorted = pydantic_sort(value, None);
        assert_eq!(
            to_python_json(&sorted),
            r#"{"b": 1, "default": {"z": 1, "a": {"c": 2, "d": 1}, "l": [{"j": 2, "k": 1}]}, "properties": {"z": {"x": 2, "y": 1}, "a": {}}}"#
        );
    }
}
