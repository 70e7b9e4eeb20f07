//! Enums defined in the project: their `$defs` entry (values in definition order, `auto()`
//! numbered as Python numbers it) and the value of a member used as a default.

use rustpython_parser::ast::{self, Expr, Stmt};
use serde_json::{Map, Value};

use super::json_schema::value_kinds;
use super::python_value::{encode, same_python_value, Py};
use super::SchemaContext;
use crate::prefect::flow::docstring::{cleandoc, docstring_of};
use crate::prefect::flow::module_index::Resolved;
use crate::prefect::flow::unparse::unparse;

impl<'a> SchemaContext<'_, 'a> {
    /// Add an Enum's `$defs` entry: its member values, and the type they share.
    pub(super) fn define_enum(&mut self, class: &'a ast::StmtClassDef) -> Result<(), String> {
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
        if let Some(doc) = docstring_of(&class.body) {
            let doc = cleandoc(&doc);
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
            matches!(self.resolve(b), Resolved::Qualified(p) if p == "enum.StrEnum" || p == "builtins.str")
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
                if call.args.is_empty() && matches!(self.resolve(&call.func), Resolved::Qualified(p) if p == "enum.auto"));
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

    /// The value of `Class.MEMBER`, as pydantic encodes it.
    pub(super) fn enum_member(
        &self,
        class: &'a ast::StmtClassDef,
        member: &str,
    ) -> Result<Py, String> {
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
}
