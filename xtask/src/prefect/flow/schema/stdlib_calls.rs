//! Calls to standard constructors in a default (`list(...)`, `dict(...)`, `UUID(...)`,
//! `Path(...)`, `Decimal(...)`, and the `datetime` family in [`temporal`]), evaluated to the
//! value pydantic would encode.

use serde_json::Value;

use super::python_value::{dedupe, insert_dict, Py};
use super::temporal;

/// Calls to standard constructors whose result pydantic encodes as JSON.
pub(super) fn call_builtin(
    func: &str,
    args: Vec<Py>,
    kwargs: Vec<(String, Py)>,
) -> Result<Py, String> {
    let no_kwargs = |what: &str| -> Result<(), String> {
        if kwargs.is_empty() {
            Ok(())
        } else {
            Err(format!("passes keyword arguments to {what}"))
        }
    };
    match func {
        "builtins.list" | "builtins.tuple" | "builtins.set" | "builtins.frozenset" => {
            no_kwargs(func)?;
            let items = match args.into_iter().next() {
                None => Vec::new(),
                Some(Py::List(v) | Py::Tuple(v) | Py::Set(v)) => v,
                Some(Py::Str(s)) => s.chars().map(|c| Py::Str(c.to_string())).collect(),
                Some(Py::Dict(d)) => d.into_iter().map(|(k, _)| k).collect(),
                Some(_) => return Err(format!("passes a non-iterable to {func}")),
            };
            Ok(match func {
                "builtins.list" => Py::List(items),
                "builtins.tuple" => Py::Tuple(items),
                _ => Py::Set(dedupe(items)),
            })
        }
        "builtins.dict" => {
            let mut items = match args.into_iter().next() {
                None => Vec::new(),
                Some(Py::Dict(d)) => d,
                Some(_) => return Err("passes a non-dict to dict()".into()),
            };
            for (k, v) in kwargs {
                insert_dict(&mut items, Py::Str(k), v);
            }
            Ok(Py::Dict(items))
        }
        "datetime.datetime" | "datetime.date" | "datetime.time" => {
            temporal::date_or_time(func, args, kwargs)
        }
        "datetime.timedelta" => temporal::timedelta(args, kwargs),
        "uuid.UUID" => {
            no_kwargs("UUID()")?;
            match args.as_slice() {
                [Py::Str(text)] => parse_uuid(text).map(|u| Py::Json(Value::String(u))),
                _ => Err("passes something other than one string to UUID()".into()),
            }
        }
        "pathlib.Path" | "pathlib.PurePath" | "pathlib.PosixPath" | "pathlib.PurePosixPath" => {
            no_kwargs("Path()")?;
            let mut parts = Vec::new();
            for arg in args {
                match arg {
                    Py::Str(s) => parts.push(s),
                    _ => return Err("passes a non-string to Path()".into()),
                }
            }
            Ok(Py::Json(Value::String(normalize_posix_path(&parts))))
        }
        "decimal.Decimal" => {
            no_kwargs("Decimal()")?;
            match args.as_slice() {
                [Py::Str(s)] if is_plain_decimal(s.trim()) => {
                    Ok(Py::Json(Value::String(s.trim().to_string())))
                }
                [Py::Int(i)] => Ok(Py::Json(Value::String(i.to_string()))),
                _ => Err(
                    "passes something other than a plain decimal string or int to Decimal()".into(),
                ),
            }
        }
        "datetime.timezone" => temporal::timezone(args, kwargs),
        other => Err(format!(
            "calls `{other}`, which this reader does not evaluate"
        )),
    }
}

fn parse_uuid(text: &str) -> Result<String, String> {
    let mut hex: String = text.trim().to_string();
    if let Some(rest) = hex.strip_prefix("urn:uuid:") {
        hex = rest.to_string();
    }
    let hex: String = hex
        .chars()
        .filter(|c| !matches!(c, '{' | '}' | '-'))
        .collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("is not a valid UUID string ({text:?})"));
    }
    let h = hex.to_ascii_lowercase();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// `str(PurePosixPath(*parts))`.
fn normalize_posix_path(parts: &[String]) -> String {
    let mut root = String::new();
    let mut segments: Vec<&str> = Vec::new();
    for part in parts {
        if part.starts_with('/') {
            // An absolute component resets the path; exactly two leading slashes are kept.
            root = if part.starts_with("//") && !part.starts_with("///") {
                "//".into()
            } else {
                "/".into()
            };
            segments.clear();
        }
        segments.extend(part.split('/').filter(|s| !s.is_empty() && *s != "."));
    }
    let joined = segments.join("/");
    if root.is_empty() && joined.is_empty() {
        ".".into()
    } else {
        format!("{root}{joined}")
    }
}

fn is_plain_decimal(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next().unwrap_or("");
    (!whole.is_empty() || !frac.is_empty())
        && whole.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_like_pathlib() {
        let p = |parts: &[&str]| {
            normalize_posix_path(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(p(&["/data/"]), "/data");
        assert_eq!(p(&["a//b/./c"]), "a/b/c");
        assert_eq!(p(&[""]), ".");
        assert_eq!(p(&["a", "/b"]), "/b");
        assert_eq!(p(&["//x"]), "//x");
    }
}
