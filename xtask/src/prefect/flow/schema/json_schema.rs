//! [`Ty`] → JSON schema, in pydantic's construction order (sorting comes later, in
//! `key_order`): scalars and formats, containers, unions flattened into `anyOf`, literals,
//! `$ref`s to local Enums and models, and `Annotated[..., Field(...)]` constraints.

use serde_json::{Map, Value};

use super::type_model::{flatten_union, Ty};

/// pydantic's JSON schema of a type, keys in pydantic's construction order.
pub(super) fn schema_of(ty: &Ty) -> Map<String, Value> {
    let mut m = Map::new();
    let s = |v: &str| Value::String(v.to_string());
    match ty {
        Ty::Any => {}
        Ty::Int => {
            m.insert("type".into(), s("integer"));
        }
        Ty::Float => {
            m.insert("type".into(), s("number"));
        }
        Ty::Str => {
            m.insert("type".into(), s("string"));
        }
        Ty::Bool => {
            m.insert("type".into(), s("boolean"));
        }
        Ty::Null => {
            m.insert("type".into(), s("null"));
        }
        Ty::Bytes => {
            m.insert("type".into(), s("string"));
            m.insert("format".into(), s("binary"));
        }
        Ty::List(item) | Ty::TupleVar(item) => {
            m.insert("type".into(), s("array"));
            m.insert("items".into(), Value::Object(schema_of(item)));
        }
        Ty::Set(item) => {
            m.insert("type".into(), s("array"));
            m.insert("uniqueItems".into(), Value::Bool(true));
            m.insert("items".into(), Value::Object(schema_of(item)));
        }
        Ty::Dict(value) => {
            m.insert("type".into(), s("object"));
            let values = schema_of(value);
            let values = if values.is_empty() {
                Value::Bool(true)
            } else {
                Value::Object(values)
            };
            m.insert("additionalProperties".into(), values);
        }
        Ty::Tuple(items) => {
            m.insert("type".into(), s("array"));
            if !items.is_empty() {
                let mut prefix = Vec::new();
                for item in items {
                    prefix.push(Value::Object(schema_of(item)));
                }
                m.insert("prefixItems".into(), Value::Array(prefix));
            }
            m.insert("minItems".into(), Value::from(items.len()));
            m.insert("maxItems".into(), Value::from(items.len()));
        }
        Ty::Union(members) => return union_schema(members),
        Ty::Literal(values) => {
            if let [only] = values.as_slice() {
                m.insert("const".into(), only.clone());
            } else {
                m.insert("enum".into(), Value::Array(values.clone()));
            }
            if let Some(kind) = value_kinds(values) {
                m.insert("type".into(), s(kind));
            }
        }
        Ty::Annotated(annotated) => {
            m = schema_of(&annotated.inner);
            for (name, value) in &annotated.constraints {
                if let Some(keyword) = constraint_keyword(name, &annotated.inner) {
                    m.insert(keyword.into(), value.clone());
                }
            }
            if let Some(title) = &annotated.title {
                m.insert("title".into(), Value::String(title.clone()));
            }
            if let Some(description) = &annotated.description {
                m.insert("description".into(), Value::String(description.clone()));
            }
        }
        Ty::Enum(name) | Ty::Model(name) | Ty::Alias(name) => {
            m.insert(
                "$ref".into(),
                Value::String(format!("#/definitions/{name}")),
            );
        }
        Ty::DateTime | Ty::Date | Ty::Time | Ty::TimeDelta | Ty::Uuid | Ty::Path => {
            let format = match ty {
                Ty::DateTime => "date-time",
                Ty::Date => "date",
                Ty::Time => "time",
                Ty::TimeDelta => "duration",
                Ty::Uuid => "uuid",
                _ => "path",
            };
            m.insert("type".into(), s("string"));
            m.insert("format".into(), s(format));
        }
        Ty::Decimal => {
            let number = Value::Object(Map::from_iter([("type".to_string(), s("number"))]));
            let string = Value::Object(Map::from_iter([("type".to_string(), s("string"))]));
            m.insert("anyOf".into(), Value::Array(vec![number, string]));
        }
    }
    m
}

/// `Union[...]`: typing flattens and de-duplicates members; pydantic turns a `None` member
/// into a trailing `{"type": "null"}` and flattens/de-duplicates the anyOf.
fn union_schema(members: &[Ty]) -> Map<String, Value> {
    let mut flat: Vec<Ty> = Vec::new();
    flatten_union(members, &mut flat);
    let nullable = flat.contains(&Ty::Null);
    let rest: Vec<Ty> = flat.into_iter().filter(|t| *t != Ty::Null).collect();
    let null = Map::from_iter([("type".to_string(), Value::String("null".into()))]);
    if rest.is_empty() {
        return null;
    }
    let inner = if rest.len() == 1 {
        schema_of(&rest[0])
    } else {
        flattened_any_of(rest.iter().map(schema_of).collect())
    };
    if !nullable {
        return inner;
    }
    if inner == null {
        return null;
    }
    flattened_any_of(vec![inner, null])
}

/// pydantic's `get_flattened_anyof`.
fn flattened_any_of(schemas: Vec<Map<String, Value>>) -> Map<String, Value> {
    let mut members: Vec<Value> = Vec::new();
    for schema in schemas {
        match schema.get("anyOf") {
            Some(Value::Array(inner)) if schema.len() == 1 => {
                for item in inner {
                    if !members.contains(item) {
                        members.push(item.clone());
                    }
                }
            }
            _ => {
                let value = Value::Object(schema);
                if !members.contains(&value) {
                    members.push(value);
                }
            }
        }
    }
    if members.len() == 1 {
        if let Some(Value::Object(only)) = members.pop() {
            return only;
        }
    }
    Map::from_iter([("anyOf".to_string(), Value::Array(members))])
}

/// The JSON type shared by all values (pydantic's literal/enum `type`), if there is one.
pub(super) fn value_kinds(values: &[Value]) -> Option<&'static str> {
    let kind = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "array",
        Value::Null => "null",
        Value::Object(_) => "object",
    };
    let first = kind(values.first()?);
    (first != "object" && values.iter().all(|v| kind(v) == first)).then_some(first)
}

/// The JSON-schema keyword of a `Field(...)` constraint (lengths depend on the type).
pub(super) fn constraint_keyword(name: &str, ty: &Ty) -> Option<&'static str> {
    Some(match (name, ty) {
        ("min_length", Ty::Str) => "minLength",
        ("max_length", Ty::Str) => "maxLength",
        ("min_length", _) => "minItems",
        ("max_length", _) => "maxItems",
        ("ge", _) => "minimum",
        ("gt", _) => "exclusiveMinimum",
        ("le", _) => "maximum",
        ("lt", _) => "exclusiveMaximum",
        ("multiple_of", _) => "multipleOf",
        ("pattern", _) => "pattern",
        ("examples", _) => "examples",
        _ => return None,
    })
}
