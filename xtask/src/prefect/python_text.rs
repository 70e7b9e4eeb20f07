//! How Python writes values as text: `repr` and `str` of floats, strings and JSON-decoded values,
//! and `json.dumps`. Prefect's messages and documents are written by Python, so the YAML loader,
//! the templating engine, the parameter check and the flow reader all write through these.

use serde_json::Value;

/// Python's `repr(float)` (also `str(float)`): shortest round-trip digits, scientific notation
/// when the decimal exponent is below -4 or at least 16 (`1e-05`, `1e+16`), else fixed with
/// `.0`; `nan`, `inf`, `-inf`.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{f:e}"); // e.g. "-1.5e-7", shortest round-trip digits
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    let point = exponent + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat((-point) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if (point as usize) >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        format!("{sign}{whole}.{fraction}")
    }
}

/// A float as `json.dumps` writes it: [`float_repr`] for finite values, but JSON's spellings
/// `NaN`, `Infinity`, `-Infinity` where `repr` says `nan`, `inf`, `-inf`.
pub(crate) fn float_json(f: f64) -> String {
    match f {
        f if f.is_nan() => "NaN".into(),
        f if f == f64::INFINITY => "Infinity".into(),
        f if f == f64::NEG_INFINITY => "-Infinity".into(),
        f => float_repr(f),
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` but no `"`.
pub(crate) fn str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr` of a JSON-decoded value: `None`, `True`, `1.0`, `'text'`, `[1, 2]`,
/// `{'k': 'v'}` (jsonschema's messages and templated containers are written this way).
pub(crate) fn value_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) if n.is_f64() => {
            n.as_f64().map(float_repr).unwrap_or_else(|| n.to_string())
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => str_repr(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(value_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", str_repr(k), value_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `str` of a JSON-decoded value: a string as itself, anything else as its `repr`.
pub(crate) fn value_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => value_repr(other),
    }
}

/// `json.dumps(value)`: `", "`/`": "` separators, ASCII-only output, Python float repr.
pub fn to_python_json(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, None, 0, &mut out);
    out
}

/// `json.dumps(value, indent=indent)`.
pub fn to_python_json_pretty(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_json(value, Some(indent), 0, &mut out);
    out
}

fn write_json(value: &Value, indent: Option<usize>, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
    };
    let item_separator = if indent.is_some() { "," } else { ", " };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) if !n.is_f64() => out.push_str(&i.to_string()),
            (_, Some(u), _) if !n.is_f64() => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&float_json(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_separator);
                }
                newline(out, level + 1);
                write_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_separator);
                }
                newline(out, level + 1);
                write_json_string(key, out);
                out.push_str(": ");
                write_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (value, expected) in [
            (0.5, "0.5"),
            (1.1, "1.1"),
            (1.0, "1.0"),
            (600.0, "600.0"),
            (1e-05, "1e-05"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-2.5, "-2.5"),
            (1.5e-7, "1.5e-07"),
            (2.5e20, "2.5e+20"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123456.789, "123456.789"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(float_repr(value), expected, "{value}");
        }
    }

    #[test]
    fn str_repr_matches_python() {
        assert_eq!(str_repr("x"), "'x'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(str_repr("tab\there\n\u{1}"), "'tab\\there\\n\\x01'");
    }

    #[test]
    fn json_floats_use_json_spellings_for_non_finite() {
        assert_eq!(float_json(1e-05), "1e-05");
        assert_eq!(float_json(f64::NAN), "NaN");
        assert_eq!(float_json(f64::INFINITY), "Infinity");
        assert_eq!(float_json(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn values_repr_like_python() {
        let value =
            serde_json::json!({"n": null, "b": [true, false], "f": 2.0, "i": 3, "s": "it's"});
        assert_eq!(
            value_repr(&value),
            "{'n': None, 'b': [True, False], 'f': 2.0, 'i': 3, 's': \"it's\"}"
        );
        assert_eq!(value_str(&serde_json::json!("plain")), "plain");
        assert_eq!(value_str(&serde_json::json!(1.5)), "1.5");
    }

    #[test]
    fn json_dumps_escapes_like_python() {
        let value = serde_json::json!({"a": "caf\u{e9} \u{1f680} \"q\" \\ \n\u{7f}", "b": [], "c": {}, "d": [1, 2.0]});
        assert_eq!(
            to_python_json(&value),
            r#"{"a": "caf\u00e9 \ud83d\ude80 \"q\" \\ \n\u007f", "b": [], "c": {}, "d": [1, 2.0]}"#
        );
        assert_eq!(
            to_python_json_pretty(&serde_json::json!({"x": [1, {"y": null}], "z": []}), 2),
            "{\n  \"x\": [\n    1,\n    {\n      \"y\": null\n    }\n  ],\n  \"z\": []\n}"
        );
    }
}
