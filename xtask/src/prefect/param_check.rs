//! The server's check of a deployment's `parameters` against its `parameter_openapi_schema` when
//! `enforce_parameter_schema` is on, done before any write so a bad value fails validation instead
//! of a half-applied run. Mirrors Prefect's `validate(..., ignore_required=True)`: JSON Schema
//! 2020-12 for what pydantic emits (type, enum, const, anyOf/allOf/oneOf, $ref to `definitions`,
//! items/prefixItems, properties/additionalProperties, numeric and size bounds), `required`
//! ignored everywhere, a non-required property without a default also accepting null, and no
//! `format` checks (Prefect's server does not assert formats).

use serde_json::{Map, Value};

use crate::prefect::json::python_eq;
use crate::prefect::python_text::{str_repr, value_repr};

/// `Err` names the first failing field and why, in Prefect's words.
pub(crate) fn validate(parameters: &Value, schema: &Value) -> Result<(), String> {
    let checker = Checker {
        root: schema,
        depth: 0,
    };
    match checker.check(parameters, schema, &mut Vec::new()) {
        Ok(()) => Ok(()),
        Err((path, reason)) if path.is_empty() => {
            Err(format!("Validation failed. Failure reason: {reason}"))
        }
        Err((path, reason)) => Err(format!(
            "Validation failed for field {}. Failure reason: {reason}",
            str_repr(&path.join("."))
        )),
    }
}

type Failure = (Vec<String>, String);

struct Checker<'a> {
    root: &'a Value,
    depth: usize,
}

/// Deeper than this is a circular `$ref`; the server refuses those too.
const MAX_DEPTH: usize = 64;

impl Checker<'_> {
    fn check(&self, value: &Value, schema: &Value, path: &mut Vec<String>) -> Result<(), Failure> {
        let fail = |path: &Vec<String>, reason: String| Err((path.clone(), reason));
        if self.depth > MAX_DEPTH {
            return fail(path, "the schema's references are circular".into());
        }
        let schema = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => {
                return fail(path, format!("{} is not allowed", value_repr(value)))
            }
            Value::Object(map) => map,
            _ => return Ok(()),
        };
        let deeper = Checker {
            root: self.root,
            depth: self.depth + 1,
        };
        if let Some(Value::String(reference)) = schema.get("$ref") {
            let target = resolve_ref(self.root, reference)
                .ok_or_else(|| (path.clone(), format!("unresolvable reference {reference}")))?;
            deeper.check(value, target, path)?;
        }
        if let Some(expected) = schema.get("type") {
            let ok = match expected {
                Value::String(t) => has_type(value, t),
                Value::Array(types) => types
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|t| has_type(value, t)),
                _ => true,
            };
            if !ok {
                let expected = match expected {
                    Value::String(t) => value_repr(&Value::String(t.clone())),
                    other => value_repr(other),
                };
                return fail(
                    path,
                    format!("{} is not of type {expected}", value_repr(value)),
                );
            }
        }
        if let Some(Value::Array(options)) = schema.get("enum") {
            if !options.iter().any(|o| python_eq(o, value)) {
                return fail(
                    path,
                    format!(
                        "{} is not one of {}",
                        value_repr(value),
                        value_repr(&Value::Array(options.clone()))
                    ),
                );
            }
        }
        if let Some(constant) = schema.get("const") {
            if !python_eq(constant, value) {
                return fail(path, format!("{} was expected", value_repr(constant)));
            }
        }
        if let Some(Value::Array(options)) = schema.get("anyOf") {
            if !options.iter().any(|o| deeper.check(value, o, path).is_ok()) {
                return fail(
                    path,
                    format!(
                        "{} is not valid under any of the given schemas",
                        value_repr(value)
                    ),
                );
            }
        }
        if let Some(Value::Array(options)) = schema.get("oneOf") {
            let matching = options
                .iter()
                .filter(|o| deeper.check(value, o, path).is_ok())
                .count();
            if matching != 1 {
                return fail(
                    path,
                    format!(
                        "{} is not valid under exactly one of the given schemas",
                        value_repr(value)
                    ),
                );
            }
        }
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for sub in all {
                deeper.check(value, sub, path)?;
            }
        }
        if let Some(number) = value.as_f64().filter(|_| value.is_number()) {
            for (key, ok, word) in [
                (
                    "minimum",
                    number_bound(schema, "minimum").map(|b| number >= b),
                    "less than the minimum of",
                ),
                (
                    "maximum",
                    number_bound(schema, "maximum").map(|b| number <= b),
                    "greater than the maximum of",
                ),
                (
                    "exclusiveMinimum",
                    number_bound(schema, "exclusiveMinimum").map(|b| number > b),
                    "less than or equal to the minimum of",
                ),
                (
                    "exclusiveMaximum",
                    number_bound(schema, "exclusiveMaximum").map(|b| number < b),
                    "greater than or equal to the maximum of",
                ),
            ] {
                if ok == Some(false) {
                    return fail(
                        path,
                        format!(
                            "{} is {word} {}",
                            value_repr(value),
                            value_repr(&schema[key])
                        ),
                    );
                }
            }
        }
        if let Value::String(text) = value {
            let len = text.chars().count() as f64;
            if number_bound(schema, "minLength").is_some_and(|b| len < b) {
                return fail(path, format!("{} is too short", value_repr(value)));
            }
            if number_bound(schema, "maxLength").is_some_and(|b| len > b) {
                return fail(path, format!("{} is too long", value_repr(value)));
            }
        }
        if let Value::Array(items) = value {
            self.check_array(items, schema, &deeper, path)?;
        }
        if let Value::Object(object) = value {
            self.check_object(object, schema, &deeper, path)?;
        }
        Ok(())
    }

    fn check_array(
        &self,
        items: &[Value],
        schema: &Map<String, Value>,
        deeper: &Checker,
        path: &mut Vec<String>,
    ) -> Result<(), Failure> {
        let prefix = match schema.get("prefixItems") {
            Some(Value::Array(prefix)) => prefix.as_slice(),
            _ => &[],
        };
        for (i, item) in items.iter().enumerate() {
            let sub = match prefix.get(i) {
                Some(sub) => Some(sub),
                None => schema.get("items"),
            };
            if let Some(sub) = sub {
                path.push(i.to_string());
                let result = deeper.check(item, sub, path);
                path.pop();
                result?;
            }
        }
        let len = items.len() as f64;
        if number_bound(schema, "minItems").is_some_and(|b| len < b) {
            return Err((
                path.clone(),
                format!(
                    "{} should be non-empty or is too short",
                    value_repr(&Value::Array(items.to_vec()))
                ),
            ));
        }
        if number_bound(schema, "maxItems").is_some_and(|b| len > b) {
            return Err((
                path.clone(),
                format!("{} is too long", value_repr(&Value::Array(items.to_vec()))),
            ));
        }
        if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, a) in items.iter().enumerate() {
                if items[..i].iter().any(|b| python_eq(a, b)) {
                    return Err((
                        path.clone(),
                        format!(
                            "{} has non-unique elements",
                            value_repr(&Value::Array(items.to_vec()))
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        object: &Map<String, Value>,
        schema: &Map<String, Value>,
        deeper: &Checker,
        path: &mut Vec<String>,
    ) -> Result<(), Failure> {
        let properties = schema.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (key, item) in object {
            path.push(key.clone());
            let result = match properties.and_then(|p| p.get(key)) {
                Some(sub)
                    if item.is_null() && accepts_null_by_prefect_rule(key, sub, &required) =>
                {
                    Ok(())
                }
                Some(sub) => deeper.check(item, sub, path),
                None => match schema.get("additionalProperties") {
                    Some(extra) => deeper.check(item, extra, path),
                    None => Ok(()),
                },
            };
            path.pop();
            result?;
        }
        Ok(())
    }
}

/// Prefect's `_fix_null_typing`: a typed, non-required property without a default accepts null.
fn accepts_null_by_prefect_rule(key: &str, schema: &Value, required: &[&str]) -> bool {
    !required.contains(&key)
        && schema.get("type").is_some_and(|t| t != "null")
        && schema.get("default").is_none()
}

fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

fn has_type(value: &Value, expected: &str) -> bool {
    match expected {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        // JSON Schema: 1.0 is an integer too.
        "integer" => {
            value.as_i64().is_some()
                || value.as_u64().is_some()
                || value
                    .as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        _ => true,
    }
}

fn number_bound(schema: &Map<String, Value>, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"title": "Parameters", "type": "object", "properties": {
            "count": {"default": 3, "position": 0, "title": "count", "type": "integer"},
            "ratio": {"default": 0.5, "position": 1, "title": "ratio", "type": "number"},
            "items": {"default": [], "items": {"type": "string"}, "position": 2, "title": "items", "type": "array"},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null, "position": 3, "title": "maybe"},
            "level": {"default": "low", "enum": ["low", "high"], "position": 4, "title": "level", "type": "string"},
            "mode": {"$ref": "#/definitions/Mode", "default": "fast", "position": 5, "title": "mode"},
            "pair": {"maxItems": 2, "minItems": 2, "prefixItems": [{"type": "integer"}, {"type": "string"}], "position": 6, "title": "pair", "type": "array"},
            "mapping": {"additionalProperties": {"type": "integer"}, "position": 7, "title": "mapping", "type": "object"},
            "required_one": {"position": 8, "title": "required_one", "type": "string"},
            "cfg": {"$ref": "#/definitions/Cfg", "position": 9, "title": "cfg"}},
          "required": ["required_one"],
          "definitions": {
            "Mode": {"enum": ["fast", "safe"], "title": "Mode", "type": "string"},
            "Cfg": {"properties": {"host": {"title": "Host", "type": "string"}, "port": {"default": 80, "minimum": 1, "title": "Port", "type": "integer"}},
                    "required": ["host"], "title": "Cfg", "type": "object"}}})
    }

    #[test]
    fn accepts_valid_and_partial_parameters() {
        for params in [
            json!({}),
            json!({"count": 5, "ratio": 1, "items": ["a"], "maybe": null, "level": "high", "mode": "safe"}),
            json!({"pair": [1, "x"], "mapping": {"a": 1}, "extra_key": "ignored like Prefect"}),
            json!({"count": 2.0}),
            // `required` is ignored (ignore_required=True), also inside models.
            json!({"cfg": {"port": 8080}}),
            // A typed, non-required parameter without a default accepts null (Prefect's null rule).
            json!({"pair": null, "mapping": null}),
        ] {
            assert_eq!(validate(&params, &schema()), Ok(()), "{params}");
        }
    }

    #[test]
    fn rejects_like_the_server() {
        for (params, message) in [
            (json!({"count": "not-a-number"}), "Validation failed for field 'count'. Failure reason: 'not-a-number' is not of type 'integer'"),
            (json!({"ratio": "x"}), "'x' is not of type 'number'"),
            (json!({"items": ["a", 2]}), "field 'items.1'. Failure reason: 2 is not of type 'string'"),
            (json!({"maybe": "x"}), "'x' is not valid under any of the given schemas"),
            (json!({"level": "mid"}), "'mid' is not one of ['low', 'high']"),
            (json!({"mode": "slow"}), "'slow' is not one of ['fast', 'safe']"),
            (json!({"pair": [1, 2]}), "field 'pair.1'. Failure reason: 2 is not of type 'string'"),
            (json!({"pair": [1]}), "is too short"),
            (json!({"mapping": {"a": "b"}}), "field 'mapping.a'"),
            (json!({"cfg": {"port": 0}}), "0 is less than the minimum of 1"),
            (json!({"count": true}), "True is not of type 'integer'"),
            // The null rule does not cover required parameters nor ones with a default.
            (json!({"required_one": null}), "None is not of type 'string'"),
            (json!({"count": null}), "None is not of type 'integer'"),
        ] {
            let err = validate(&params, &schema()).unwrap_err();
            assert!(err.contains(message), "{params}: {err}");
        }
    }

    #[test]
    fn enum_and_const_compare_numbers_like_python() {
        let schema = json!({"type": "object", "properties": {
            "n": {"enum": [1, 9007199254740992_i64]},
            "c": {"const": 2}}});
        assert_eq!(validate(&json!({"n": 1.0, "c": 2.0}), &schema), Ok(()));
        // 2^53 + 1 is not 2^53, although both round to the same float.
        let err = validate(&json!({"n": 9007199254740993_i64}), &schema).unwrap_err();
        assert!(err.contains("is not one of"), "{err}");
    }

    #[test]
    fn circular_references_do_not_overflow() {
        let schema = json!({"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}},
                            "definitions": {"A": {"$ref": "#/definitions/A"}}});
        assert!(validate(&json!({"a": 1}), &schema)
            .unwrap_err()
            .contains("circular"));
    }
}
