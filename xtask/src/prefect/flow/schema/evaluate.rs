//! Evaluating the literal-ish expressions defaults are made of: constants, operators,
//! containers, module-level constants, enum members, `timezone.utc` and constructor calls.

use rustpython_parser::ast::{self, Expr};

use super::classes::LocalClass;
use super::python_value::{binop, constant, dedupe, insert_dict, truthy, Py};
use super::stdlib_calls::call_builtin;
use super::{SchemaContext, MAX_EVAL_DEPTH};
use crate::prefect::flow::module_index::Resolved;

impl SchemaContext<'_, '_> {
    /// Evaluate a literal-ish expression to a Python value.
    pub(super) fn eval(&self, expr: &Expr, depth: usize) -> Result<Py, String> {
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
            if let Resolved::Class(module, class) = self.resolve(&attr.value) {
                if let Some(member) = self.within(module, || self.enum_member_of(class, &attr.attr))
                {
                    return member;
                }
            }
            if attr.attr.as_str() == "value" {
                if let Expr::Attribute(member) = attr.value.as_ref() {
                    if let Resolved::Class(module, class) = self.resolve(&member.value) {
                        if let Some(member) =
                            self.within(module, || self.enum_member_of(class, &member.attr))
                        {
                            return member;
                        }
                    }
                }
            }
        }
        match self.resolve(expr) {
            Resolved::Value(module, value) => self.within(module, || self.eval(value, depth)),
            Resolved::Qualified(path) if path == "datetime.timezone.utc" => {
                Ok(Py::TimeZone("Z".into()))
            }
            Resolved::Qualified(path) => Err(format!("refers to `{path}`, whose value is unknown")),
            Resolved::Class(..) => Err("is a class, not a value".into()),
            Resolved::TypeAlias(..) => Err("is a type alias, not a value".into()),
            Resolved::ProjectModule(_) => Err("is a module, not a value".into()),
            Resolved::Undefined => Err("names something that is not defined".into()),
            Resolved::OneOf(_) | Resolved::Unknown => Err("cannot be evaluated statically".into()),
        }
    }

    /// `Class.member` when the class is an Enum (read in the class's module).
    fn enum_member_of(
        &self,
        class: &ast::StmtClassDef,
        member: &str,
    ) -> Option<Result<Py, String>> {
        match self.classify(class) {
            LocalClass::Enum(def) => Some(self.enum_member(def, member)),
            _ => None,
        }
    }

    /// A call: a local model's constructor, or a standard constructor ([`call_builtin`]).
    fn eval_call(&self, call: &ast::ExprCall, depth: usize) -> Result<Py, String> {
        let func = match self.resolve(&call.func) {
            Resolved::Qualified(path) => path,
            Resolved::Class(module, class) => {
                return match self.within(module, || self.classify(class)) {
                    LocalClass::Model(def, shape) => {
                        self.eval_model_instance(module, def, shape, call, depth)
                    }
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
        call_builtin(&func, args, kwargs)
    }
}
