//! `parameter_openapi_schema` of a flow function, as Prefect 3.9.1 builds it with pydantic 2
//! (`prefect.utilities.callables.parameter_schema` → `generate_parameter_schema` →
//! `process_v2_params` + `create_v2_schema`), computed from the Python AST alone.
//!
//! The pipeline mirrors pydantic: annotation → [`Ty`] ([`annotation`], [`classes`], [`enums`],
//! [`models`]) → JSON schema in pydantic's construction order ([`json_schema`]) → pydantic's
//! recursive key sort → Prefect's `ParameterSchema` top-level order ([`key_order`]).
//! Defaults ([`defaults`]) are evaluated from literal expressions ([`evaluate`],
//! [`python_value`], [`stdlib_calls`], [`temporal`]) and encoded the way pydantic encodes them
//! (by the default's own type, not the annotation).
//!
//! Every step is a method of [`SchemaContext`], which holds the project's names, the module
//! whose names are being read, and the `$defs` built so far; each submodule adds the methods of
//! one step. A class, alias or constant found in another project module is read in that
//! module ([`SchemaContext::within`]).
//!
//! What cannot be matched without running Python is either described the way Prefect's own
//! fallbacks describe it (with a warning) or, inside a pydantic model Prefect would describe
//! in full, refused ([`Refusal`]): a model is never silently dropped.

mod annotation;
mod classes;
mod defaults;
mod enums;
mod evaluate;
mod json_schema;
mod key_order;
mod models;
mod python_value;
mod stdlib_calls;
mod temporal;
mod type_model;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use rustpython_parser::ast::{Expr, Ranged};
use serde_json::{Map, Value};

use super::module_index::{ModuleId, Resolved};
use super::project::Project;
use super::signature::{Param, ParamKind};
use super::unparse::unparse;
use annotation::is_string_constant;
use defaults::{DefaultExpr, FieldDefault};
use json_schema::schema_of;
use python_value::Py;
use type_model::Ty;

/// Longest chain of constant references (`A = B`, `B = 1`) followed before giving up.
const MAX_EVAL_DEPTH: usize = 16;

/// Build the schema Prefect sends as `parameter_openapi_schema`.
///
/// `docstrings` maps parameter names to their `Args:` descriptions (griffe's Google parser).
/// Where the result may differ from Prefect's, a warning says so (the parameter is then
/// described as Prefect's fallbacks would describe it).
pub(super) fn parameter_schema<'a>(
    project: &Project<'a>,
    params: &[Param<'a>],
    docstrings: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Value, Refusal> {
    let mut ctx = SchemaContext::new(project);
    let degraded = ctx.annotations_degraded(params);
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
        let builtins_only = degraded && ctx.is_stringified(param);
        let (property, is_required) =
            ctx.parameter_property(param, position, builtins_only, docstrings, warnings);
        if is_required {
            required.push(Value::String(param.name.to_string()));
        }
        properties.insert(param.name.to_string(), Value::Object(property));
    }
    if let Some(refusal) = ctx.refusal.take() {
        return Err(refusal);
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
    Ok(key_order::parameter_schema_order(doc))
}

/// Something Prefect describes that this reader cannot: where (module, byte offset) and what.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) module: ModuleId,
    pub(super) offset: usize,
    pub(super) message: String,
}

/// Evaluate a decorator keyword (`name=`, `description=`, `version=`): a string literal,
/// an implicit or `+` concatenation, a module-level string constant, or None.
pub(super) fn eval_string(project: &Project<'_>, expr: &Expr) -> Result<Option<String>, String> {
    match SchemaContext::new(project).eval(expr, 0)? {
        Py::Str(text) => Ok(Some(text)),
        Py::None => Ok(None),
        _ => Err("is not a string".into()),
    }
}

/// The state of one schema build: the project's names, the module being read, and the
/// `$defs` generated so far.
struct SchemaContext<'m, 'a> {
    project: &'m Project<'a>,
    /// The module whose names the expression at hand uses.
    current: Cell<ModuleId>,
    /// `$defs`, by name.
    defs: BTreeMap<String, Value>,
    /// Which definition (class or alias, by address) owns each `$defs` name: pydantic would
    /// qualify a second one with its module, which this reader does not reproduce.
    def_owners: BTreeMap<String, usize>,
    /// Classes whose definition is being generated (recursive models).
    in_progress: Vec<String>,
    /// The first thing found that must be refused.
    refusal: RefCell<Option<Refusal>>,
    /// Inside a string annotation, whose parsed nodes have no file offsets: where the string
    /// is (module, offset), for refusals.
    string_anchor: Cell<Option<(ModuleId, usize)>>,
}

/// What a parameter's default contributes: the default itself and, from `Field(...)`, a
/// description and extra schema keys.
struct ParameterDefault {
    default: FieldDefault,
    description: Option<String>,
    extra: Map<String, Value>,
}

impl<'m, 'a> SchemaContext<'m, 'a> {
    fn new(project: &'m Project<'a>) -> Self {
        Self {
            project,
            current: Cell::new(0),
            defs: BTreeMap::new(),
            def_owners: BTreeMap::new(),
            in_progress: Vec::new(),
            refusal: RefCell::new(None),
            string_anchor: Cell::new(None),
        }
    }

    /// What `expr` names in the module being read (project imports followed).
    fn resolve(&self, expr: &Expr) -> Resolved<'a> {
        self.project.resolve(self.current.get(), expr)
    }

    /// Run `f` with the names of `module` (a class or value found there is read there).
    fn within<T>(&self, module: ModuleId, f: impl FnOnce() -> T) -> T {
        let saved = self.current.replace(module);
        let result = f();
        self.current.set(saved);
        result
    }

    /// [`Self::within`] for steps that add `$defs`.
    fn within_mut<T>(&mut self, module: ModuleId, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = self.current.replace(module);
        let result = f(self);
        self.current.set(saved);
        result
    }

    /// Claim `$defs[name]` for the definition at `owner`; a second, different definition
    /// with the same name is an error (pydantic would rename both).
    fn claim_def_name(&mut self, name: &str, owner: usize) -> Result<(), String> {
        match self.def_owners.get(name) {
            Some(existing) if *existing != owner => Err(format!(
                "two different types are named {name}; pydantic would qualify their \
                 definitions with their modules, which this reader does not reproduce"
            )),
            _ => {
                self.def_owners.insert(name.to_string(), owner);
                Ok(())
            }
        }
    }

    /// Record a refusal at `node` in the module being read (the first one wins) and return
    /// its message as the error that stops the current step.
    fn refuse(&self, node: &impl Ranged, message: String) -> String {
        let module = self.current.get();
        let offset = match self.string_anchor.get() {
            Some((anchor_module, offset)) if anchor_module == module => offset,
            _ => usize::from(node.start()),
        };
        let mut refusal = self.refusal.borrow_mut();
        if refusal.is_none() {
            *refusal = Some(Refusal {
                module,
                offset,
                message: message.clone(),
            });
        }
        message
    }

    /// Is the annotation a string to `inspect.signature` (quoted, or under
    /// `from __future__ import annotations`)?
    fn is_stringified(&self, param: &Param<'_>) -> bool {
        param
            .annotation
            .is_some_and(|a| self.project.module(0).future_annotations || is_string_constant(a))
    }

    /// `inspect.signature(fn, eval_str=True)` raises NameError when any stringified annotation
    /// names something undefined; Prefect then keeps every annotation as a plain string, which
    /// pydantic can only resolve against builtins.
    fn annotations_degraded(&self, params: &[Param<'_>]) -> bool {
        params.iter().any(|p| {
            self.is_stringified(p)
                && p.annotation
                    .is_some_and(|a| self.find_undefined_name(a).is_some())
        })
    }

    /// One parameter's property schema, and whether the parameter is required.
    fn parameter_property(
        &mut self,
        param: &Param<'_>,
        position: usize,
        builtins_only: bool,
        docstrings: &BTreeMap<String, String>,
        warnings: &mut Vec<String>,
    ) -> (Map<String, Value>, bool) {
        let mut ty = self.parameter_type(param, builtins_only, warnings);
        let mut description = docstrings.get(param.name).cloned();
        let ParameterDefault {
            mut default,
            description: field_description,
            mut extra,
        } = self.parameter_default(param, warnings);
        if let Some(d) = field_description {
            description = Some(d);
        }
        match param.kind {
            ParamKind::VarPositional => {
                ty = Ty::List(Box::new(ty));
                default = FieldDefault::Value(Value::Array(Vec::new()));
            }
            ParamKind::VarKeyword => {
                ty = Ty::Dict(Box::new(ty));
                default = FieldDefault::Value(Value::Object(Map::new()));
            }
            ParamKind::Positional | ParamKind::KeywordOnly => {}
        }

        let mut field = schema_of(&ty);
        if matches!(ty, Ty::Annotated(_)) {
            // Prefect's own Field for the parameter replaces the Annotated one's description.
            field.remove("description");
        }
        let required = match default {
            FieldDefault::Value(value) => {
                field.insert("default".into(), value);
                false
            }
            FieldDefault::Required => true,
        };
        field.insert("title".into(), Value::String(param.name.to_string()));
        if let Some(description) = description {
            field.insert("description".into(), Value::String(description));
        }
        if !extra.contains_key("position") {
            extra.insert("position".into(), Value::from(position));
        }
        field.extend(extra);
        (field, required)
    }

    /// The parameter's annotation as a type; an unresolvable one is untyped, like Prefect's
    /// fallback.
    fn parameter_type(
        &mut self,
        param: &Param<'_>,
        builtins_only: bool,
        warnings: &mut Vec<String>,
    ) -> Ty {
        let Some(annotation) = param.annotation else {
            return Ty::Any;
        };
        match self.resolve_annotation(annotation, builtins_only) {
            Ok((ty, notes)) => {
                for note in notes {
                    warnings.push(format!("parameter '{}': {note}", param.name));
                }
                ty
            }
            Err(reason) => {
                warnings.push(format!(
                    "parameter '{}': annotation `{}` {reason}; treated as untyped (what \
                     Prefect stores when it cannot import the module)",
                    param.name,
                    unparse(annotation)
                ));
                Ty::Any
            }
        }
    }

    /// The parameter's default (a value, `...`, or `pydantic.Field(...)`); one that cannot be
    /// evaluated is sent as null.
    fn parameter_default(&self, param: &Param<'_>, warnings: &mut Vec<String>) -> ParameterDefault {
        let mut out = ParameterDefault {
            default: FieldDefault::Required,
            description: None,
            extra: Map::new(),
        };
        let Some(expr) = param.default else {
            return out;
        };
        match self.eval_default(expr) {
            Ok(DefaultExpr::Value(value)) => out.default = FieldDefault::Value(value),
            Ok(DefaultExpr::Ellipsis) => {}
            Ok(DefaultExpr::Field(field)) => {
                if field.default_factory.is_some() {
                    // Prefect reads `FieldInfo.default`, which is undefined here: the parameter
                    // becomes required.
                    warnings.push(format!(
                        "parameter '{}': Field(default_factory=...) makes the parameter required",
                        param.name
                    ));
                }
                out.default = field.default;
                out.description = field.description.filter(|d| !d.is_empty());
                out.extra = field.json_schema_extra;
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
                out.default = FieldDefault::Value(Value::Null);
            }
        }
        out
    }
}
