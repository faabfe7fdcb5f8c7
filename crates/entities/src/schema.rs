//! Entity schemas as types.
//!
//! A schema is the JSON object of `base44/entities/<name>.json(c)` (or of a push):
//! `{name, type: "object", properties: {field: {type, format, enum, default, items, properties,
//! required, rls}}, required: [...], rls: {...}}`. [`EntitySchema::parse`] reads the parts
//! Homebase acts on and keeps the rest as written ([`EntitySchema::raw`]). Unknown keywords are
//! ignored, as JSON Schema does; a keyword Homebase acts on with a value it cannot use is an
//! error naming the entity and the property.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::EntityError;
use crate::query::FieldPath;
use crate::record::BuiltIn;
use crate::rules::{EntityRules, FieldRules};

/// A JSON type a property may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
    Null,
}

impl FieldType {
    fn parse(text: &str) -> Option<FieldType> {
        Some(match text {
            "string" => FieldType::String,
            "number" => FieldType::Number,
            "integer" => FieldType::Integer,
            "boolean" => FieldType::Boolean,
            "array" => FieldType::Array,
            "object" => FieldType::Object,
            "null" => FieldType::Null,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Array => "array",
            FieldType::Object => "object",
            FieldType::Null => "null",
        }
    }
}

/// One property's schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Property {
    /// The types it may have; empty: any.
    pub types: Vec<FieldType>,
    /// `date`, `date-time`, `email`, `uri`, `time`… (unknown formats are not checked).
    pub format: Option<String>,
    /// The values it may take (`enum`).
    pub allowed: Option<Vec<Value>>,
    pub default: Option<Value>,
    /// The schema of an array's items.
    pub items: Option<Box<Property>>,
    /// An object's declared properties (`None`: any object).
    pub properties: Option<BTreeMap<String, Property>>,
    /// An object's required properties.
    pub required: Vec<String>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    /// Field-level access rules (top-level properties only).
    pub rules: Option<FieldRules>,
}

/// What the compiler may assume about the values at a path, given valid records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string, or missing/null.
    Text,
    /// A number, or missing/null.
    Number,
    /// A boolean, or missing/null.
    Bool,
    /// An array, or missing/null.
    Array,
    /// Anything.
    Unknown,
}

impl Property {
    /// Reads a property schema; `at` names it in errors.
    pub fn parse(entity: &str, at: &str, value: &Value) -> Result<Property, EntityError> {
        let bad = |message: String| EntityError::Schema { entity: entity.to_string(), message };
        let Value::Object(map) = value else {
            return Err(bad(format!("property '{at}' must be an object schema like {{\"type\": \"string\"}}")));
        };
        let mut property = Property::default();
        match map.get("type") {
            None => {}
            Some(Value::String(t)) => property.types.push(FieldType::parse(t).ok_or_else(|| {
                bad(format!("property '{at}' has type '{t}'; use string, number, integer, boolean, array or object"))
            })?),
            Some(Value::Array(list)) => {
                for t in list {
                    let t = t.as_str().and_then(FieldType::parse).ok_or_else(|| {
                        bad(format!("property '{at}' lists a type {t} that is not one of string, number, integer, boolean, array, object, null"))
                    })?;
                    property.types.push(t);
                }
            }
            Some(other) => return Err(bad(format!("property '{at}' has `type` {other}; write a type name"))),
        }
        property.format = map.get("format").and_then(Value::as_str).map(str::to_string);
        match map.get("enum") {
            None | Some(Value::Null) => {}
            Some(Value::Array(values)) => property.allowed = Some(values.clone()),
            Some(_) => return Err(bad(format!("`enum` of property '{at}' must be a list of values"))),
        }
        property.default = map.get("default").cloned();
        if let Some(items) = map.get("items").filter(|items| items.is_object()) {
            property.items = Some(Box::new(Property::parse(entity, &format!("{at}[]"), items)?));
        }
        if let Some(props) = map.get("properties") {
            let Value::Object(props) = props else {
                return Err(bad(format!("`properties` of property '{at}' must be an object")));
            };
            let mut nested = BTreeMap::new();
            for (key, schema) in props {
                nested.insert(key.clone(), Property::parse(entity, &format!("{at}.{key}"), schema)?);
            }
            property.properties = Some(nested);
        }
        property.required = required_list(entity, at, map)?;
        let count = |key: &str| map.get(key).and_then(Value::as_u64);
        let float = |key: &str| map.get(key).and_then(Value::as_f64);
        (property.min_length, property.max_length) = (count("minLength"), count("maxLength"));
        (property.minimum, property.maximum) = (float("minimum"), float("maximum"));
        if let Some(rules) = map.get("rls") {
            property.rules =
                Some(FieldRules::parse(rules).map_err(|e| bad(format!("the rules of property '{at}': {e}")))?);
        }
        Ok(property)
    }

    /// The one non-null type, if the schema names exactly one.
    pub fn single_type(&self) -> Option<FieldType> {
        let mut types = self.types.iter().filter(|t| **t != FieldType::Null);
        match (types.next(), types.next()) {
            (Some(t), None) => Some(*t),
            _ => None,
        }
    }

    fn kind(&self) -> Kind {
        match self.single_type() {
            Some(FieldType::String) => Kind::Text,
            Some(FieldType::Number | FieldType::Integer) => Kind::Number,
            Some(FieldType::Boolean) => Kind::Bool,
            Some(FieldType::Array) => Kind::Array,
            _ => Kind::Unknown,
        }
    }
}

fn required_list(entity: &str, at: &str, map: &Map<String, Value>) -> Result<Vec<String>, EntityError> {
    match map.get("required") {
        None | Some(Value::Null) => Ok(Vec::new()),
        // `required: true` on a property is a common mistake of hand-written schemas; the
        // entity's list is what counts.
        Some(Value::Bool(_)) => Ok(Vec::new()),
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| {
                n.as_str().map(str::to_string).ok_or_else(|| EntityError::Schema {
                    entity: entity.to_string(),
                    message: format!("`required` of {at} must list property names"),
                })
            })
            .collect(),
        Some(_) => Err(EntityError::Schema {
            entity: entity.to_string(),
            message: format!("`required` of {at} must be a list of property names"),
        }),
    }
}

/// One entity's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySchema {
    pub name: String,
    /// The declared properties.
    pub properties: BTreeMap<String, Property>,
    pub required: Vec<String>,
    /// The entity's `rls`.
    pub rules: EntityRules,
    /// The schema as written.
    pub raw: Value,
}

impl EntitySchema {
    /// Reads the schema object `raw` of entity `name`.
    pub fn parse(name: &str, raw: &Value) -> Result<EntitySchema, EntityError> {
        let bad = |message: String| EntityError::Schema { entity: name.to_string(), message };
        if !homebase_project::is_valid_entity_name(name) {
            return Err(bad("an entity name may only contain letters, digits and '_'".into()));
        }
        let Value::Object(map) = raw else { return Err(bad("the schema must be a JSON object".into())) };
        let mut properties = BTreeMap::new();
        match map.get("properties") {
            None | Some(Value::Null) => {}
            Some(Value::Object(props)) => {
                for (key, schema) in props {
                    if BuiltIn::parse(key).is_some() {
                        // Built-in fields are the platform's; declaring them changes nothing.
                        continue;
                    }
                    if !crate::query::is_valid_field_name(key) {
                        return Err(bad(format!(
                            "property name '{key}' may only contain letters, digits, '_' and '-'"
                        )));
                    }
                    properties.insert(key.clone(), Property::parse(name, key, schema)?);
                }
            }
            Some(_) => return Err(bad("`properties` must be an object".into())),
        }
        let required = required_list(name, "the entity", map)?;
        let rules = match map.get("rls") {
            None => EntityRules::default(),
            Some(value) => EntityRules::parse(value).map_err(|e| bad(format!("its rls: {e}")))?,
        };
        Ok(EntitySchema { name: name.to_string(), properties, required, rules, raw: raw.clone() })
    }

    /// Reads a schema the project crate found in `base44/entities/`.
    pub fn from_project(schema: &homebase_project::EntitySchema) -> Result<EntitySchema, EntityError> {
        EntitySchema::parse(&schema.name, &schema.schema)
    }

    /// A schema with no properties and no rules (for tests and entities created by data).
    pub fn open(name: &str) -> EntitySchema {
        EntitySchema::parse(name, &serde_json::json!({"name": name, "type": "object"})).expect("a bare schema parses")
    }

    /// The property at `path` (descending into declared object properties).
    pub fn property(&self, path: &FieldPath) -> Option<&Property> {
        let mut segments = path.segments().iter();
        let mut property = self.properties.get(segments.next()?)?;
        for segment in segments {
            property = property.properties.as_ref()?.get(segment)?;
        }
        Some(property)
    }

    /// What valid records hold at `path`.
    pub fn kind(&self, path: &FieldPath) -> Kind {
        self.property(path).map_or(Kind::Unknown, Property::kind)
    }

    /// The top-level properties that have field-level rules.
    pub fn field_rules(&self) -> impl Iterator<Item = (&str, &FieldRules)> {
        self.properties.iter().filter_map(|(name, p)| p.rules.as_ref().map(|r| (name.as_str(), r)))
    }
}

/// An app's entity schemas, found by name ignoring case (as Base44 matches them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schemas {
    by_name: BTreeMap<String, EntitySchema>,
}

impl Schemas {
    /// Reads every `(name, schema)`; the first error fails the whole set. Names that differ
    /// only in case are an error.
    pub fn parse<'a>(schemas: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Result<Schemas, EntityError> {
        let mut out = Schemas::default();
        for (name, raw) in schemas {
            let schema = EntitySchema::parse(name, raw)?;
            let key = name.to_ascii_lowercase();
            if let Some(first) = out.by_name.get(&key) {
                return Err(EntityError::Schema {
                    entity: name.to_string(),
                    message: format!("'{}' is already declared; entity names are unique ignoring case", first.name),
                });
            }
            out.by_name.insert(key, schema);
        }
        Ok(out)
    }

    pub fn insert(&mut self, schema: EntitySchema) {
        self.by_name.insert(schema.name.to_ascii_lowercase(), schema);
    }

    /// The schema of `name`, ignoring case.
    pub fn get(&self, name: &str) -> Option<&EntitySchema> {
        self.by_name.get(&name.to_ascii_lowercase())
    }

    pub fn iter(&self) -> impl Iterator<Item = &EntitySchema> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_types_nested_objects_and_rules() {
        let schema = EntitySchema::parse(
            "Task",
            &json!({
                "name": "Task",
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 1},
                    "done": {"type": "boolean", "default": false},
                    "due": {"type": "string", "format": "date"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                    "salary": {"type": ["number", "null"], "rls": {"read": {"created_by": "{{user.email}}"}}},
                    "id": {"type": "string"}
                },
                "required": ["title"],
                "rls": {"read": true, "write": {"created_by": "{{user.email}}"}}
            }),
        )
        .unwrap();
        assert_eq!(schema.required, ["title"]);
        assert!(!schema.properties.contains_key("id"), "built-ins are the platform's");
        assert_eq!(schema.kind(&FieldPath::parse("title").unwrap()), Kind::Text);
        assert_eq!(schema.kind(&FieldPath::parse("salary").unwrap()), Kind::Number);
        assert_eq!(schema.kind(&FieldPath::parse("tags").unwrap()), Kind::Array);
        assert_eq!(schema.kind(&FieldPath::parse("address.city").unwrap()), Kind::Text);
        assert_eq!(schema.kind(&FieldPath::parse("nope").unwrap()), Kind::Unknown);
        assert_eq!(schema.properties["address"].required, ["city"]);
        assert_eq!(schema.field_rules().count(), 1);
    }

    #[test]
    fn bad_schemas_name_the_entity_and_property() {
        let e = EntitySchema::parse("T", &json!({"properties": {"x": {"type": "text"}}})).unwrap_err();
        assert!(e.to_string().contains("entity 'T'") && e.to_string().contains("'x'"), "{e}");
        let e = EntitySchema::parse("T", &json!({"properties": {"a b": {"type": "string"}}})).unwrap_err();
        assert!(e.to_string().contains("'a b'"), "{e}");
        assert!(EntitySchema::parse("Bad-Name", &json!({})).is_err());
        let dup = json!({});
        assert!(Schemas::parse([("Task", &dup), ("task", &dup)]).is_err());
        let set = Schemas::parse([("Task", &dup)]).unwrap();
        assert_eq!(set.get("TASK").unwrap().name, "Task");
    }
}
