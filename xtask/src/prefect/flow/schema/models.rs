//! pydantic models, dataclasses and TypedDicts defined in the project: their `$defs` entry
//! (fields parents first, `Field(...)` titles, aliases, constraints and `json_schema_extra`,
//! `Annotated[..., Field(...)]`) and an instance used as a default. Prefect describes a model in full when it can import it, so a field this reader
//! cannot describe refuses the flow (naming the field's file and line) rather than dropping the
//! model.

use rustpython_parser::ast::{self, Expr, Stmt};
use serde_json::{Map, Value};

use super::classes::Shape;
use super::defaults::{DefaultExpr, Factory, FieldDefault};
use super::json_schema::{constraint_keyword, schema_of};
use super::python_value::{encode, Py};
use super::type_model::{flatten_union, Ty};
use super::{SchemaContext, MAX_EVAL_DEPTH};
use crate::prefect::flow::docstring::{cleandoc, docstring_of};
use crate::prefect::flow::module_index::{ModuleId, Resolved};
use crate::prefect::flow::unparse::unparse;

impl<'a> SchemaContext<'_, 'a> {
    /// Add a model's `$defs` entry (once; a recursive reference to it is left as a `$ref`).
    /// Runs in the class's module.
    pub(super) fn define_model(
        &mut self,
        class: &'a ast::StmtClassDef,
        shape: Shape,
    ) -> Result<(), String> {
        let name = class.name.to_string();
        self.claim_def_name(&name, class as *const ast::StmtClassDef as usize)
            .map_err(|e| self.refuse(class, format!("model {name}: {e}")))?;
        if self.defs.contains_key(&name) || self.in_progress.contains(&name) {
            return Ok(());
        }
        self.in_progress.push(name.clone());
        let result = self.model_schema(class, shape);
        self.in_progress.retain(|n| n != &name);
        // A field's own refusal (recorded first) names the precise line; this one the class.
        let def = result.map_err(|e| self.refuse(class, e))?;
        self.defs.insert(name, Value::Object(def));
        Ok(())
    }

    /// A model's `$defs` entry: its fields as properties (keyed by alias), then `required`,
    /// `title`, `type` and the docstring.
    fn model_schema(
        &mut self,
        class: &'a ast::StmtClassDef,
        shape: Shape,
    ) -> Result<Map<String, Value>, String> {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in self.model_fields(class)? {
            let (key, schema, is_required) = self.model_property(class, shape, &field)?;
            if is_required {
                required.push(Value::String(key.clone()));
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
        if let Some(doc) = docstring_of(&class.body) {
            let doc = cleandoc(&doc);
            if !doc.is_empty() {
                def.insert("description".into(), Value::String(doc));
            }
        }
        Ok(def)
    }

    /// One model field as pydantic describes it: (key, schema, required), read in the module
    /// that declares the field. Unlike flow parameters, anything approximate is refused here.
    fn model_property(
        &mut self,
        class: &'a ast::StmtClassDef,
        shape: Shape,
        field: &ModelField<'a>,
    ) -> Result<(String, Map<String, Value>, bool), String> {
        self.within_mut(field.module, |this| {
            this.model_property_here(class, shape, field).map_err(|e| {
                let node: &Expr = field.default.unwrap_or(field.annotation);
                let at = if e.contains("default") {
                    node
                } else {
                    field.annotation
                };
                this.refuse(at, e)
            })
        })
    }

    fn model_property_here(
        &mut self,
        class: &'a ast::StmtClassDef,
        shape: Shape,
        field: &ModelField<'a>,
    ) -> Result<(String, Map<String, Value>, bool), String> {
        let at = |what: String| format!("model {}.{}: {what}", class.name, field.name);
        // A TypedDict key is required per `total`, unless marked `Required`/`NotRequired`.
        let (annotation, typed_dict_required) = match shape {
            Shape::TypedDict { total } => match self.requiredness_wrapper(field.annotation) {
                Some((inner, required)) => (inner, Some(required)),
                None => (field.annotation, Some(total)),
            },
            _ => (field.annotation, None),
        };
        let mut notes = Vec::new();
        let ty = self
            .resolve_type(annotation, false, &mut notes, 0)
            .map_err(|e| at(format!("annotation {e}")))?;
        if let Some(note) = notes.first() {
            return Err(at(note.clone()));
        }
        let mut schema = schema_of(&ty);
        let spec = match field.default {
            None => None,
            Some(_) if typed_dict_required.is_some() => {
                return Err(at("a TypedDict key cannot have a default".into()))
            }
            Some(expr) if shape == Shape::Dataclass && self.is_field_call(expr) => {
                return Err(at(format!(
                    "`{}` is pydantic's Field in a dataclass, which this reader does not support",
                    unparse(expr)
                )))
            }
            Some(expr) => Some(
                self.eval_default(expr)
                    .map_err(|e| at(format!("default `{}` {e}", unparse(expr))))?,
            ),
        };
        // `Annotated[T, Field(...)]` contributes its title and description first.
        let (mut title, mut description) = match &ty {
            Ty::Annotated(annotated) => (annotated.title.clone(), annotated.description.clone()),
            _ => (None, None),
        };
        let mut has_default = None;
        let mut constraints = Vec::new();
        let mut extra = Map::new();
        let mut key = field.name.to_string();
        match spec {
            None | Some(DefaultExpr::Ellipsis) => {}
            Some(DefaultExpr::Value(v)) => has_default = Some(Some(v)),
            Some(DefaultExpr::Field(f)) => {
                if let Some(note) = f.notes.first() {
                    return Err(at(note.clone()));
                }
                match (f.default, f.default_factory) {
                    (_, Some(_)) => has_default = Some(None),
                    (FieldDefault::Value(v), None) => has_default = Some(Some(v)),
                    (FieldDefault::Required, None) => {}
                }
                title = f.title.or(title);
                description = f.description.or(description);
                constraints = f.constraints;
                extra = f.json_schema_extra;
                if let Some(alias) = f.alias {
                    key = alias;
                }
            }
        }
        let required = match has_default {
            Some(Some(value)) => {
                schema.insert("default".into(), value);
                false
            }
            Some(None) => false, // default_factory: pydantic emits no default
            None => typed_dict_required.unwrap_or(true),
        };
        let title = title.or_else(|| title_should_be_set(&ty).then(|| title_from_name(&key)));
        if let Some(title) = title {
            schema.insert("title".into(), Value::String(title));
        }
        if let Some(description) = description {
            schema.insert("description".into(), Value::String(description));
        }
        for (name, value) in constraints {
            let keyword = constraint_keyword(&name, &ty)
                .ok_or_else(|| at(format!("Field({name}=...) is not supported")))?;
            schema.insert(keyword.into(), value);
        }
        // pydantic updates the field's schema with the dict last.
        schema.extend(extra);
        Ok((key, schema, required))
    }

    /// `Required[T]` / `NotRequired[T]` (typing or typing_extensions): T and whether it is
    /// required.
    fn requiredness_wrapper<'e>(&self, annotation: &'e Expr) -> Option<(&'e Expr, bool)> {
        let Expr::Subscript(sub) = annotation else {
            return None;
        };
        let Resolved::Qualified(path) = self.resolve(&sub.value) else {
            return None;
        };
        let name = path
            .strip_prefix("typing.")
            .or_else(|| path.strip_prefix("typing_extensions."))?;
        match name {
            "Required" => Some((&sub.slice, true)),
            "NotRequired" => Some((&sub.slice, false)),
            _ => None,
        }
    }

    fn is_field_call(&self, expr: &Expr) -> bool {
        matches!(expr, Expr::Call(call) if self.is_pydantic_field(call))
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
            if let Resolved::Class(module, parent) = self.resolve(base) {
                fields.extend(self.within(module, || self.model_fields_at(parent, depth + 1))?);
            }
        }
        let module = self.current.get();
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
                        module,
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
        matches!(self.resolve(target), Resolved::Qualified(p) if p == "typing.ClassVar")
    }

    // -- schema generation -------------------------------------------------------------------

    /// `Model(field=...)` (or `Dataclass(value, field=...)`) as a default: pydantic's dump,
    /// fields in definition order. `module` is the class's; the call's arguments belong to the
    /// module being read.
    pub(super) fn eval_model_instance(
        &self,
        module: ModuleId,
        class: &'a ast::StmtClassDef,
        shape: Shape,
        call: &ast::ExprCall,
        depth: usize,
    ) -> Result<Py, String> {
        if matches!(shape, Shape::TypedDict { .. }) {
            return Err(format!("constructs the TypedDict {}", class.name));
        }
        if !call.args.is_empty() && shape != Shape::Dataclass {
            return Err(format!(
                "passes positional arguments to model {}",
                class.name
            ));
        }
        let fields = self.within(module, || self.model_fields(class))?;
        if call.args.len() > fields.len() {
            return Err(format!("passes too many arguments to {}", class.name));
        }
        let mut given: Vec<(String, Value)> = Vec::new();
        for (arg, field) in call.args.iter().zip(&fields) {
            given.push((field.name.to_string(), encode(&self.eval(arg, depth)?)?));
        }
        for keyword in &call.keywords {
            let Some(arg) = &keyword.arg else {
                return Err("uses ** unpacking".into());
            };
            given.push((arg.to_string(), encode(&self.eval(&keyword.value, depth)?)?));
        }
        let mut dump = Map::new();
        for field in fields {
            if let Some((_, value)) = given.iter().find(|(n, _)| n == field.name) {
                dump.insert(field.name.to_string(), value.clone());
                continue;
            }
            let default = match field.default {
                Some(expr) => self.within(field.module, || self.eval_default(expr))?,
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
                    (_, Some(Factory::Value(value))) => value,
                    (_, Some(Factory::Unknown(factory))) => {
                        return Err(format!("uses default_factory={factory}"))
                    }
                    (FieldDefault::Value(v), _) => v,
                    (FieldDefault::Required, _) => {
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

/// An annotated class-level field of a model.
struct ModelField<'a> {
    /// The module whose names the annotation and default use (a parent may live elsewhere).
    module: ModuleId,
    name: &'a str,
    annotation: &'a Expr,
    default: Option<&'a Expr>,
}

/// pydantic: fields whose schema is a reference (models, enums), possibly wrapped in
/// Optional, get no field-level title.
fn title_should_be_set(ty: &Ty) -> bool {
    match ty {
        Ty::Enum(_) | Ty::Model(_) | Ty::Alias(_) => false,
        Ty::Annotated(annotated) => title_should_be_set(&annotated.inner),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_follow_str_title() {
        assert_eq!(title_from_name("max_attempts"), "Max Attempts");
        assert_eq!(title_from_name("http2_port"), "Http2 Port");
        assert_eq!(title_from_name("_private_"), "Private");
        assert_eq!(title_from_name("dsn"), "Dsn");
        assert_eq!(title_from_name("URL"), "Url");
    }
}
