//! An expression back as (approximate) Python source text, for messages.

use rustpython_parser::ast::{self, Constant, Expr};

// Floats as the schema's JSON writes them (`Infinity` for a `1e999` literal), as messages always did.
use crate::prefect::python_text::float_json;

/// Best-effort source text of an expression, for messages.
pub(super) fn unparse(expr: &Expr) -> String {
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
            Constant::Float(f) => float_json(*f),
            Constant::Ellipsis => "...".into(),
            _ => "<constant>".into(),
        },
        Expr::Call(c) => format!("{}(...)", unparse(&c.func)),
        _ => "<expression>".into(),
    }
}
