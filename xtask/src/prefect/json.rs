//! JSON values as Prefect's Python sees them: equality after decoding, pydantic's lax booleans.

use serde_json::{Number, Value};

/// `a == b` as Python's `==` sees the decoded values, which is also the equality of the JSON
/// Schema `enum`/`const`/`uniqueItems` checks Prefect's server runs (jsonschema's `equal`):
/// object member order is irrelevant, `1 == 1.0` (a Python float that holds an integer equals
/// that integer, so `600` in the yaml equals the `600.0` the server returns), and integers compare
/// exactly, also beyond 2^53 where a float no longer holds every integer. Booleans never equal
/// numbers here (serde keeps them apart; jsonschema does the same).
pub(crate) fn python_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_eq(x, y),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| python_eq(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| python_eq(v, w))
        }
        _ => a == b,
    }
}

/// Python's exact numeric comparison: int with int exactly, float with float as IEEE doubles,
/// int with float by value (no rounding of the int to a float first).
fn numbers_eq(x: &Number, y: &Number) -> bool {
    match (integer_of(x), integer_of(y)) {
        (Some(i), Some(j)) => i == j,
        (Some(i), None) => float_equals_integer(y.as_f64(), i),
        (None, Some(j)) => float_equals_integer(x.as_f64(), j),
        (None, None) => x.as_f64() == y.as_f64(),
    }
}

fn integer_of(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn float_equals_integer(f: Option<f64>, i: i128) -> bool {
    // Every i64/u64 is below 2^64 in magnitude; `as` saturates, so bound the float first.
    f.is_some_and(|f| f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 && f as i128 == i)
}

/// pydantic's lax `bool`: a boolean, the integers 0 and 1, or a string [`pydantic_bool_str`]
/// accepts; `None` for anything else.
pub(crate) fn pydantic_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => pydantic_bool_str(s),
        _ => None,
    }
}

/// The strings pydantic's lax `bool` accepts, in any case.
pub(crate) fn pydantic_bool_str(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_equal_integral_floats() {
        assert!(python_eq(&json!(600), &json!(600.0)));
        assert!(python_eq(&json!(600.0), &json!(600)));
        assert!(python_eq(&json!(-3), &json!(-3.0)));
        assert!(!python_eq(&json!(1), &json!(1.5)));
        assert!(python_eq(&json!(0.5), &json!(0.5)));
        assert!(python_eq(
            &json!({"ratio": 1.0, "b": 2}),
            &json!({"b": 2.0, "ratio": 1})
        ));
        assert!(python_eq(&json!([1, 2.0]), &json!([1.0, 2])));
    }

    #[test]
    fn integers_compare_exactly_beyond_float_precision() {
        // 2^53 + 1 has no f64: rounding both sides to floats would call these equal.
        let big = 9_007_199_254_740_993_i64;
        assert!(!python_eq(&json!(big), &json!(big - 1)));
        assert!(!python_eq(&json!(big), &json!(9_007_199_254_740_992.0)));
        assert!(python_eq(&json!(big - 1), &json!(9_007_199_254_740_992.0)));
        assert!(python_eq(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!python_eq(&json!(u64::MAX), &json!(1.8446744073709552e19)));
        assert!(!python_eq(&json!(i64::MIN), &json!(u64::MAX)));
    }

    #[test]
    fn booleans_are_not_numbers() {
        assert!(!python_eq(&json!(true), &json!(1)));
        assert!(!python_eq(&json!(false), &json!(0.0)));
        assert!(!python_eq(&json!(null), &json!(0)));
        assert!(!python_eq(&json!("1"), &json!(1)));
    }

    #[test]
    fn lax_booleans_like_pydantic() {
        for (v, want) in [
            (json!(true), Some(true)),
            (json!(0), Some(false)),
            (json!(1), Some(true)),
            (json!(2), None),
            (json!(1.0), None),
            (json!("YES"), Some(true)),
            (json!("off"), Some(false)),
            (json!("maybe"), None),
            (json!(null), None),
        ] {
            assert_eq!(pydantic_bool(&v), want, "{v}");
        }
    }
}
