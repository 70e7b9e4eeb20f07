//! Python values as the evaluator produces them ([`Py`]), Python's operators and equality on
//! them, and pydantic's encoding of a value as JSON.

use rustpython_parser::ast::{self, Constant};
use serde_json::{Map, Number, Value};

use crate::prefect::python_text::float_json;

/// A Python value produced by evaluating a literal expression.
#[derive(Debug, Clone)]
pub(super) enum Py {
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

pub(super) fn constant(value: &Constant) -> Result<Py, String> {
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

pub(super) fn truthy(value: &Py) -> Result<bool, String> {
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

pub(super) fn as_number(value: &Py) -> Option<Result<i64, f64>> {
    match value {
        Py::Bool(b) => Some(Ok(*b as i64)),
        Py::Int(i) => Some(Ok(*i)),
        Py::Float(f) => Some(Err(*f)),
        _ => None,
    }
}

/// `+ - * / // %` on numbers, `+` on strings/bytes/lists/tuples, `*` repeating a string.
pub(super) fn binop(op: ast::Operator, left: Py, right: Py) -> Result<Py, String> {
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
            Op::Mod if y != 0 => Ok(Py::Int(python_mod(x, y))),
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

/// Python's `%` on ints: the result takes the divisor's sign. In i128, so `i64::MIN % -1`
/// (which overflows i64 division) is simply 0.
fn python_mod(x: i64, y: i64) -> i64 {
    let (x, y) = (i128::from(x), i128::from(y));
    let r = x % y;
    let r = if r != 0 && ((r < 0) != (y < 0)) {
        r + y
    } else {
        r
    };
    r as i64 // |r| < |y|, so it fits
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

pub(super) fn dedupe(items: Vec<Py>) -> Vec<Py> {
    let mut out: Vec<Py> = Vec::new();
    for item in items {
        if !out.iter().any(|existing| py_eq(existing, &item)) {
            out.push(item);
        }
    }
    out
}

/// Dict insertion: a repeated key keeps its first position and takes the last value.
pub(super) fn insert_dict(items: &mut Vec<(Py, Py)>, key: Py, value: Py) {
    match items.iter_mut().find(|(k, _)| py_eq(k, &key)) {
        Some(slot) => slot.1 = value,
        None => items.push((key, value)),
    }
}

/// Python equality of two encoded values as typing/enum de-duplication sees them
/// (`1 == 1.0`, but a bool and an int literal stay distinct in `Literal`).
pub(super) fn same_python_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// pydantic's `to_jsonable_python` of a default value.
pub(super) fn encode(value: &Py) -> Result<Value, String> {
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
                    Py::Float(f) => float_json(*f),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulo_follows_python_without_overflow() {
        let modulo = |x: i64, y: i64| match binop(ast::Operator::Mod, Py::Int(x), Py::Int(y)) {
            Ok(Py::Int(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(modulo(-7, 3), 2);
        assert_eq!(modulo(7, -3), -2);
        assert_eq!(modulo(-7, -3), -1);
        assert_eq!(modulo(6, 3), 0);
        assert_eq!(modulo(i64::MIN, -1), 0);
        assert_eq!(modulo(i64::MIN, i64::MAX), i64::MAX - 1);
    }
}
