//! Default values: a literal, `...` (required), or a `pydantic.Field(...)` call with its
//! description, title, alias, constraints and extra schema keys.

use rustpython_parser::ast::{self, Expr};
use serde_json::{Map, Value};

use super::python_value::{encode, Py};
use super::SchemaContext;
use crate::prefect::flow::module_index::Resolved;

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
    /// `default_factory=<builtin>`: pydantic emits no default for the field.
    pub(super) default_factory: Option<String>,
    pub(super) notes: Vec<String>,
}

impl SchemaContext<'_, '_> {
    /// A parameter's default expression, with `pydantic.Field(...)` and `...` recognised.
    pub(super) fn eval_default(&self, expr: &Expr) -> Result<DefaultExpr, String> {
        if let Expr::Call(call) = expr {
            if matches!(self.resolve(&call.func), Resolved::Qualified(p) if p == "pydantic.Field" || p == "pydantic.fields.Field")
            {
                return self
                    .eval_field(call)
                    .map(|field| DefaultExpr::Field(Box::new(field)));
            }
        }
        match self.eval(expr, 0)? {
            Py::Ellipsis => Ok(DefaultExpr::Ellipsis),
            py => Ok(DefaultExpr::Value(encode(&py)?)),
        }
    }

    fn eval_field(&self, call: &ast::ExprCall) -> Result<FieldSpec, String> {
        let mut spec = FieldSpec {
            default: FieldDefault::Required,
            description: None,
            title: None,
            json_schema_extra: Map::new(),
            constraints: Vec::new(),
            alias: None,
            default_factory: None,
            notes: Vec::new(),
        };
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
                    let factory = match self.resolve(&keyword.value) {
                        Resolved::Qualified(p) => p,
                        _ => return Err("has a default_factory this reader cannot evaluate".into()),
                    };
                    spec.default_factory = Some(factory);
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
        if spec.default_factory.is_some() {
            // Prefect reads `FieldInfo.default`, which is undefined here: the parameter
            // becomes required.
            spec.notes
                .push("Field(default_factory=...) makes the parameter required".into());
        }
        Ok(spec)
    }
}
