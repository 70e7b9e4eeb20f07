//! The key order of the finished document: pydantic's recursive sort, then the top-level field
//! order of Prefect's `ParameterSchema`. Byte-identical output depends on both.

use serde_json::{Map, Value};

/// The document pydantic generated, sorted the way pydantic sorts it, then passed through
/// `ParameterSchema(**schema).model_dump(exclude_unset=True)`: its own field order, `$defs`
/// copied to `definitions` and otherwise dropped.
pub(super) fn parameter_schema_order(doc: Map<String, Value>) -> Value {
    let mut sorted = match pydantic_sort(Value::Object(doc), None) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut out = Map::new();
    for key in ["title", "type", "properties", "required"] {
        if let Some(value) = sorted.remove(key) {
            out.insert(key.to_string(), value);
        }
    }
    if let Some(defs) = sorted.remove("$defs") {
        out.insert("definitions".into(), defs);
    }
    Value::Object(out)
}

/// `GenerateJsonSchema.sort`: keys sorted recursively, except directly under `properties` and
/// `default` (whose order is meaningful). Lists pass their parent key down to their items.
fn pydantic_sort(value: Value, parent_key: Option<&str>) -> Value {
    match value {
        Value::Object(map) => {
            let keep_order = matches!(parent_key, Some("properties") | Some("default"));
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            if !keep_order {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let mut out = Map::new();
            for (key, child) in entries {
                let sorted = pydantic_sort(child, Some(&key));
                out.insert(key, sorted);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| pydantic_sort(item, parent_key))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefect::python_text::to_python_json;

    #[test]
    fn pydantic_sort_keeps_properties_and_default_order() {
        let value = serde_json::json!({"b": 1, "properties": {"z": {"y": 1, "x": 2}, "a": {}},
            "default": {"z": 1, "a": {"d": 1, "c": 2}, "l": [{"k": 1, "j": 2}]}});
        let sorted = pydantic_sort(value, None);
        assert_eq!(
            to_python_json(&sorted),
            r#"{"b": 1, "default": {"z": 1, "a": {"c": 2, "d": 1}, "l": [{"j": 2, "k": 1}]}, "properties": {"z": {"x": 2, "y": 1}, "a": {}}}"#
        );
    }
}
