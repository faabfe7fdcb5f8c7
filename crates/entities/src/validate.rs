//! Records checked against their entity's schema, as the Base44 dev server does (reference
//! §3.3): built-in fields in the body are ignored (the platform sets them), undeclared fields
//! are dropped (unless the schema declares no properties at all), defaults fill missing fields
//! on create, and then `required`, types, `enum`, formats, lengths and ranges are checked, in
//! nested objects and array items too. `null` clears a field that is not required. The first
//! problem fails the write, naming the field ([`ValidationError`]).

use serde_json::{Map, Value};

use crate::error::ValidationError;
use crate::record::BUILT_IN_FIELDS;
use crate::schema::{EntitySchema, FieldType, Property};

/// The data of a new record: `input` (a JSON object) checked, with defaults applied.
pub fn create(schema: &EntitySchema, input: &Value) -> Result<Map<String, Value>, ValidationError> {
    let mut data = declared(schema, input)?;
    for (name, property) in &schema.properties {
        if !data.contains_key(name)
            && let Some(default) = &property.default
        {
            data.insert(name.clone(), default.clone());
        }
    }
    for name in &schema.required {
        if data.get(name).is_none_or(Value::is_null) {
            return Err(ValidationError::new(name, "is required"));
        }
    }
    for (name, value) in &data {
        if let Some(property) = schema.properties.get(name) {
            check(property, value, name)?;
        }
    }
    Ok(data)
}

/// The data of a record after a partial update (a merge of the top-level fields of `patch`
/// into `current`), checked.
pub fn update(
    schema: &EntitySchema,
    current: &Map<String, Value>,
    patch: &Value,
) -> Result<Map<String, Value>, ValidationError> {
    let changes = declared(schema, patch)?;
    for (name, value) in &changes {
        if value.is_null() && schema.required.contains(name) {
            return Err(ValidationError::new(name, "is required and cannot be set to null"));
        }
        if let Some(property) = schema.properties.get(name) {
            check(property, value, name)?;
        }
    }
    let mut data = current.clone();
    data.extend(changes);
    Ok(data)
}

/// A record's whole new data (after update operators) checked: undeclared fields dropped (unless
/// the schema declares none), `required` and every declared field.
pub fn replace(schema: &EntitySchema, data: Map<String, Value>) -> Result<Map<String, Value>, ValidationError> {
    let data = declared(schema, &Value::Object(data))?;
    for name in &schema.required {
        if data.get(name).is_none_or(Value::is_null) {
            return Err(ValidationError::new(name, "is required"));
        }
    }
    for (name, value) in &data {
        if let Some(property) = schema.properties.get(name) {
            check(property, value, name)?;
        }
    }
    Ok(data)
}

/// The `is_sample` flag a create asks for (default false).
pub fn is_sample(input: &Value) -> bool {
    input.get("is_sample").and_then(Value::as_bool).unwrap_or(false)
}

/// The fields of `input` a record keeps: no built-ins, only declared ones (all of them when
/// the schema declares none).
fn declared(schema: &EntitySchema, input: &Value) -> Result<Map<String, Value>, ValidationError> {
    let Value::Object(map) = input else {
        return Err(ValidationError::new("(record)", "a record must be a JSON object"));
    };
    let open = schema.properties.is_empty();
    Ok(map
        .iter()
        .filter(|(k, _)| !BUILT_IN_FIELDS.contains(&k.as_str()) && k.as_str() != "_id")
        .filter(|(k, _)| open || schema.properties.contains_key(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn has_type(t: FieldType, value: &Value) -> bool {
    match t {
        FieldType::String => value.is_string(),
        FieldType::Number => value.is_number(),
        FieldType::Integer => {
            value.as_i64().is_some() || value.as_u64().is_some() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        FieldType::Boolean => value.is_boolean(),
        FieldType::Array => value.is_array(),
        FieldType::Object => value.is_object(),
        FieldType::Null => value.is_null(),
    }
}

/// Checks `value` (at `at`) against `property`. `null` passes (it clears the field).
pub fn check(property: &Property, value: &Value, at: &str) -> Result<(), ValidationError> {
    if value.is_null() {
        return Ok(());
    }
    if !property.types.is_empty() && !property.types.iter().any(|t| has_type(*t, value)) {
        let wanted: Vec<&str> = property.types.iter().filter(|t| **t != FieldType::Null).map(|t| t.as_str()).collect();
        return Err(ValidationError::new(
            at,
            format!("must be of type {}, not {}", wanted.join(" or "), type_name(value)),
        ));
    }
    if let Some(allowed) = &property.allowed
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(ValidationError::new(at, format!("must be one of {}", list.join(", "))));
    }
    match value {
        Value::String(text) => {
            let chars = text.chars().count() as u64;
            if property.min_length.is_some_and(|min| chars < min) {
                return Err(ValidationError::new(
                    at,
                    format!("must be at least {} characters long", property.min_length.unwrap_or(0)),
                ));
            }
            if property.max_length.is_some_and(|max| chars > max) {
                return Err(ValidationError::new(
                    at,
                    format!("must be at most {} characters long", property.max_length.unwrap_or(0)),
                ));
            }
            if let Some(format) = &property.format
                && let Some(problem) = format_problem(format, text)
            {
                return Err(ValidationError::new(at, problem));
            }
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if let Some(min) = property.minimum.filter(|min| f < *min) {
                return Err(ValidationError::new(at, format!("must be at least {min}")));
            }
            if let Some(max) = property.maximum.filter(|max| f > *max) {
                return Err(ValidationError::new(at, format!("must be at most {max}")));
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = &property.items {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{at}[{i}]"))?;
                }
            }
        }
        Value::Object(map) => {
            for name in &property.required {
                if map.get(name).is_none_or(Value::is_null) {
                    return Err(ValidationError::new(format!("{at}.{name}"), "is required"));
                }
            }
            if let Some(properties) = &property.properties {
                for (name, value) in map {
                    if let Some(nested) = properties.get(name) {
                        check(nested, value, &format!("{at}.{name}"))?;
                    }
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
    Ok(())
}

fn digits(text: &str, n: usize) -> Option<u32> {
    (text.len() == n && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

fn is_date(text: &str) -> bool {
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    digits(y, 4).is_some()
        && digits(m, 2).is_some_and(|m| (1..=12).contains(&m))
        && digits(d, 2).is_some_and(|d| (1..=31).contains(&d))
}

fn is_time(text: &str) -> bool {
    let clock = text.split(['.', 'Z', 'z', '+']).next().unwrap_or("");
    let clock = clock.split('-').next().unwrap_or("");
    let mut parts = clock.split(':');
    let (Some(h), Some(m)) = (parts.next(), parts.next()) else { return false };
    let seconds_ok = parts.next().is_none_or(|s| digits(s, 2).is_some_and(|s| s <= 60));
    digits(h, 2).is_some_and(|h| h < 24) && digits(m, 2).is_some_and(|m| m < 60) && seconds_ok && parts.next().is_none()
}

/// What is wrong with `text` for `format`; `None` when it fits or the format is not checked.
fn format_problem(format: &str, text: &str) -> Option<String> {
    let ok = match format {
        "date" => is_date(text),
        // Lenient, as browsers send dates: a date alone, or a date and a time with any zone.
        "date-time" => {
            let (date, time) = match text.find(['T', 't', ' ']) {
                Some(i) => (&text[..i], Some(&text[i + 1..])),
                None => (text, None),
            };
            is_date(date) && time.is_none_or(is_time)
        }
        "time" => is_time(text),
        "email" => {
            let mut parts = text.split('@');
            let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
                return Some("must be an e-mail address".into());
            };
            !local.is_empty() && !domain.is_empty() && !text.chars().any(char::is_whitespace)
        }
        "uri" | "url" => text.split_once(':').is_some_and(|(scheme, rest)| {
            !rest.is_empty()
                && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        }),
        _ => true,
    };
    (!ok).then(|| match format {
        "date" => "must be a date like 2024-05-31".to_string(),
        "date-time" => "must be a date and time like 2024-05-31T12:00:00.000Z".to_string(),
        "time" => "must be a time like 12:30:00".to_string(),
        "email" => "must be an e-mail address".to_string(),
        other => format!("must be a {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> EntitySchema {
        EntitySchema::parse(
            "Task",
            &json!({
                "properties": {
                    "title": {"type": "string", "maxLength": 5},
                    "status": {"type": "string", "enum": ["open", "done"], "default": "open"},
                    "due": {"type": "string", "format": "date"},
                    "at": {"type": "string", "format": "date-time"},
                    "mail": {"type": "string", "format": "email"},
                    "count": {"type": "integer", "minimum": 0},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "items": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "number"}}, "required": ["qty"]}},
                    "address": {"type": "object", "properties": {"city": {"type": "string"}}}
                },
                "required": ["title"]
            }),
        )
        .unwrap()
    }

    #[test]
    fn create_applies_defaults_drops_undeclared_and_built_ins() {
        let data = create(&schema(), &json!({"title": "a", "id": "x", "created_by": "me", "extra": 1})).unwrap();
        assert_eq!(Value::Object(data), json!({"title": "a", "status": "open"}));
        let open = EntitySchema::open("Any");
        assert_eq!(Value::Object(create(&open, &json!({"x": 1, "id": "y"})).unwrap()), json!({"x": 1}));
    }

    #[test]
    fn problems_name_the_field() {
        let cases = [
            (json!({}), "title", "is required"),
            (json!({"title": null}), "title", "is required"),
            (json!({"title": 5}), "title", "must be of type string, not a number"),
            (json!({"title": "toolong"}), "title", "at most 5"),
            (json!({"title": "a", "status": "x"}), "status", "must be one of"),
            (json!({"title": "a", "due": "2024-13-01"}), "due", "date"),
            (json!({"title": "a", "at": "yesterday"}), "at", "date and time"),
            (json!({"title": "a", "mail": "nope"}), "mail", "e-mail"),
            (json!({"title": "a", "count": 1.5}), "count", "integer"),
            (json!({"title": "a", "count": -1}), "count", "at least 0"),
            (json!({"title": "a", "tags": ["a", 1]}), "tags[1]", "string"),
            (json!({"title": "a", "items": [{"qty": 1}, {}]}), "items[1].qty", "is required"),
            (json!({"title": "a", "address": {"city": 1}}), "address.city", "string"),
        ];
        for (input, field, problem) in cases {
            let e = create(&schema(), &input).unwrap_err();
            assert_eq!(e.field, field, "{input}");
            assert!(e.problem.contains(problem), "{input}: {e}");
            assert!(e.to_string().starts_with(&format!("Error in field {field}: ")));
        }
        let ok =
            json!({"title": "a", "at": "2024-05-31T12:00:00.000Z", "due": "2024-05-31", "count": 2.0, "mail": "a@b"});
        create(&schema(), &ok).unwrap();
        assert!(create(&schema(), &json!([1])).is_err());
    }

    #[test]
    fn update_merges_and_checks_only_what_changes() {
        let current = create(&schema(), &json!({"title": "a", "count": 1})).unwrap();
        let merged = update(&schema(), &current, &json!({"count": 2, "id": "no", "extra": 1})).unwrap();
        assert_eq!(Value::Object(merged), json!({"title": "a", "status": "open", "count": 2}));
        assert_eq!(update(&schema(), &current, &json!({"title": null})).unwrap_err().field, "title");
        assert_eq!(update(&schema(), &current, &json!({"count": "x"})).unwrap_err().field, "count");
        let cleared = update(&schema(), &current, &json!({"count": null})).unwrap();
        assert_eq!(cleared["count"], Value::Null);
    }
}
