//! A flow function's signature as `inspect.signature` lists it: each parameter's name, kind,
//! annotation and default expression, straight from the AST.

use rustpython_parser::ast::{self, Expr};

/// How a parameter is declared (inspect.Parameter.kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParamKind {
    Positional,
    VarPositional,
    KeywordOnly,
    VarKeyword,
}

/// One parameter of the flow function, straight from the AST.
pub(super) struct Param<'a> {
    pub(super) name: &'a str,
    pub(super) kind: ParamKind,
    pub(super) annotation: Option<&'a Expr>,
    pub(super) default: Option<&'a Expr>,
}

/// The parameters in `inspect.signature` order: positional-only, positional, `*args`,
/// keyword-only, `**kwargs`.
pub(super) fn parameters(args: &ast::Arguments) -> Vec<Param<'_>> {
    let mut params = Vec::new();
    fn with_default(arg: &ast::ArgWithDefault, kind: ParamKind) -> Param<'_> {
        Param {
            name: arg.def.arg.as_str(),
            kind,
            annotation: arg.def.annotation.as_deref(),
            default: arg.default.as_deref(),
        }
    }
    for arg in args.posonlyargs.iter().chain(&args.args) {
        params.push(with_default(arg, ParamKind::Positional));
    }
    if let Some(arg) = &args.vararg {
        params.push(Param {
            name: arg.arg.as_str(),
            kind: ParamKind::VarPositional,
            annotation: arg.annotation.as_deref(),
            default: None,
        });
    }
    for arg in &args.kwonlyargs {
        params.push(with_default(arg, ParamKind::KeywordOnly));
    }
    if let Some(arg) = &args.kwarg {
        params.push(Param {
            name: arg.arg.as_str(),
            kind: ParamKind::VarKeyword,
            annotation: arg.annotation.as_deref(),
            default: None,
        });
    }
    params
}
