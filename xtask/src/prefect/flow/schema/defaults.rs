//! Default values: a literal, `...` (required), a `pydantic.Field(...)` call with its
//! description, title, alias, constraints and extra schema keys, or a dataclass
//! `dataclasses.field(...)`.

use rustpython_parser::ast::{self, Expr};
use serde_json::{Map, Value};

use super::python_value::{encode, Py};
use super::SchemaContext;
use crate::prefect::flow::module_index::Resolved;
use crate::prefect::flow::unparse::unparse;

/// A field's default: none (required) or a JSON value.
pub(super) enum FieldDefault {
    Required,
    Value(Value),
}

/// A default expression as pydantic sees it.
pub(super) enum DefaultExpr {
    Value(Value),
    /// `= ...`: pydantic treats an Ellipsis default as "required".
    Ellipsis,
    Field(Box<FieldSpec>),
}

/// A `pydantic.Field(...)` call used as a default.
pub(super) struct FieldSpec {
    pub(super) default: FieldDefault,
    pub(super) description: Option<String>,
    pub(super) title: Option<String>,
    pub(super) json_schema_extra: Map<String, Value>,
    /// Constraints, for model fields (Prefect drops them for flow parameters).
    pub(super) constraints: Vec<(String, Value)>,
    pub(super) alias: Option<String>,
    /// `default_factory=...`: pydantic emits no default for the field.
    pub(super) default_factory: Option<Factory>,
    pub(super) notes: Vec<String>,
}

/// A `default_factory`: what it returns, when the reader can tell.
pub(super) enum Factory {
    /// `list`, `dict`, `lambda: [0]`, ...
    Value(Value),
    /// Something else (named, for messages).
    Unknown(String),
}

impl FieldSpec {
    fn new() -> Self {
        Self {
            default: FieldDefault::Required,
            description: None,
            title: None,
            json_schema_extra: Map::new(),
            constraints: Vec::new(),
            alias: None,
            default_factory: None,
            notes: Vec::new(),
        }
    }
}

impl SchemaContext<'_, '_> {
    /// A parameter's default expression, with `pydantic.Field(...)` and `...` recognised.
    pub(super) fn eval_default(&self, expr: &Expr) -> Result<DefaultExpr, String> {
        if let Expr::Call(call) = expr {
            if self.is_pydantic_field(call) {
                return self
                    .eval_field(call)
                    .map(|field| DefaultExpr::Field(Box::new(field)));
            }
            if matches!(self.resolve(&call.func), Resolved::Qualified(p) if p == "dataclasses.field")
            {
                return self
                    .eval_dataclass_field(call)
                    .map(|field| DefaultExpr::Field(Box::new(field)));
            }
        }
        match self.eval(expr, 0)? {
            Py::Ellipsis => Ok(DefaultExpr::Ellipsis),
            py => Ok(DefaultExpr::Value(encode(&py)?)),
        }
    }

    /// Is this call `pydantic.Field(...)`?
    pub(super) fn is_pydantic_field(&self, call: &ast::ExprCall) -> bool {
        matches!(self.resolve(&call.func), Resolved::Qualified(p) if p == "pydantic.Field" || p == "pydantic.fields.Field")
    }

    /// `dataclasses.field(default=..., default_factory=...)`; keywords that do not change the
    /// schema are accepted, `init=False` is not.
    fn eval_dataclass_field(&self, call: &ast::ExprCall) -> Result<FieldSpec, String> {
        let mut spec = FieldSpec::new();
        if !call.args.is_empty() {
            return Err("passes positional arguments to field(...)".into());
        }
        for keyword in &call.keywords {
            match keyword.arg.as_ref().map(|a| a.as_str()) {
                Some("default") => {
                    spec.default = FieldDefault::Value(encode(&self.eval(&keyword.value, 0)?)?)
                }
                Some("default_factory") => {
                    spec.default_factory = Some(self.factory(&keyword.value));
                }
                Some("repr" | "hash" | "compare" | "metadata" | "kw_only") => {}
                Some(other) => return Err(format!("uses field({other}=...)")),
                None => return Err("uses **kwargs in field(...)".into()),
            }
        }
        Ok(spec)
    }

    /// What a `default_factory` returns: builtin containers, or a lambda returning a literal.
    fn factory(&self, expr: &Expr) -> Factory {
        if let Expr::Lambda(lambda) = expr {
            let no_args = lambda.args.args.is_empty()
                && lambda.args.posonlyargs.is_empty()
                && lambda.args.kwonlyargs.is_empty()
                && lambda.args.vararg.is_none()
                && lambda.args.kwarg.is_none();
            if no_args {
                if let Ok(value) = self.eval(&lambda.body, 0).and_then(|py| encode(&py)) {
                    return Factory::Value(value);
                }
            }
            return Factory::Unknown(unparse(expr));
        }
        match self.resolve(expr) {
            Resolved::Qualified(p) => match p.as_str() {
                "builtins.list" | "builtins.set" | "builtins.tuple" => {
                    Factory::Value(Value::Array(Vec::new()))
                }
                "builtins.dict" => Factory::Value(Value::Object(Map::new())),
                _ => Factory::Unknown(p),
            },
            _ => Factory::Unknown(unparse(expr)),
        }
    }

    pub(super) fn eval_field(&self, call: &ast::ExprCall) -> Result<FieldSpec, String> {
        let mut spec = FieldSpec::new();
        let set_default = |py: Py| -> Result<FieldDefault, String> {
            Ok(match py {
                Py::Ellipsis => FieldDefault::Required,
                other => FieldDefault::Value(encode(&other)?),
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
                    spec.default_factory = Some(self.factory(&keyword.value));
                    spec.default = FieldDefault::Required;
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
        Ok(spec)
    }
}
