//! Entity schemas: `*.{json,jsonc}` directly in the entities folder.
//!
//! Each file holds one schema `{name, type: "object", properties, required?, …}`. `name` must
//! match `^\w+$` (ASCII letters, digits, `_`). A missing `type` is taken as `"object"`; any
//! other `type` is an error. Names are unique ignoring case (the API matches entity names
//! case-insensitively): the first file by name is kept and later ones are reported.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::error::{ErrorKind, ProjectError};
use crate::jsonc::Doc;
use crate::project::Project;

/// One entity schema.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySchema {
    pub name: String,
    pub file: PathBuf,
    /// The whole schema object, as written.
    pub schema: Value,
}

impl EntitySchema {
    /// The schema's `properties` (empty when absent).
    pub fn properties(&self) -> Option<&serde_json::Map<String, Value>> {
        self.schema.get("properties").and_then(Value::as_object)
    }
}

/// The result of [`Project::load_entities`]: valid schemas (sorted by name) and problems.
#[derive(Debug, Clone, Default)]
pub struct EntityDiscovery {
    pub entities: Vec<EntitySchema>,
    pub problems: Vec<ProjectError>,
}

/// Whether `name` matches `^\w+$` (ASCII).
pub fn is_valid_entity_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn load_one(path: &std::path::Path) -> Result<EntitySchema, ProjectError> {
    let text = fs::read_to_string(path).map_err(|e| ProjectError::io(path, "read", &e))?;
    let doc = Doc::parse(path, &text)?;
    let invalid = |segs: &[&str], message: String, hint: &str| {
        ProjectError::new(ErrorKind::Invalid, message).with_file(path).at_opt(Some(doc.position(segs))).with_hint(hint)
    };
    let Value::Object(map) = &doc.value else {
        return Err(invalid(
            &[],
            "An entity schema must be an object".into(),
            "Write {\"name\": \"Task\", \"type\": \"object\", \"properties\": {…}}",
        ));
    };
    let name = match map.get("name") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => {
            return Err(invalid(&["name"], "The entity `name` must be a string".into(), "Use a name like \"Task\""));
        }
        None => {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(invalid(
                &[],
                "The entity schema has no `name`".into(),
                &format!("Add \"name\": \"{stem}\" (letters, digits and '_')"),
            ));
        }
    };
    if !is_valid_entity_name(&name) {
        return Err(invalid(
            &["name"],
            format!("Entity name '{name}' may only contain letters, digits and '_'"),
            "Rename it, e.g. 'OrderItem'",
        ));
    }
    match map.get("type") {
        None => {}
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => {
            return Err(invalid(
                &["type"],
                format!("Entity '{name}' has `type` {other}; it must be \"object\""),
                "Set \"type\": \"object\"",
            ));
        }
    }
    match map.get("properties") {
        None => {}
        Some(Value::Object(props)) => {
            for (key, prop) in props {
                if !prop.is_object() {
                    return Err(invalid(
                        &["properties", key],
                        format!(
                            "Property '{key}' of entity '{name}' must be an object schema like {{\"type\": \"string\"}}"
                        ),
                        "Describe each property with at least a `type`",
                    ));
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                &["properties"],
                format!("`properties` of entity '{name}' must be an object"),
                "Map each field name to its schema",
            ));
        }
    }
    if let Some(required) = map.get("required") {
        let ok = required.as_array().is_some_and(|items| items.iter().all(Value::is_string));
        if !ok {
            return Err(invalid(
                &["required"],
                format!("`required` of entity '{name}' must be a list of property names"),
                "Write e.g. \"required\": [\"title\"]",
            ));
        }
    }
    Ok(EntitySchema { name, file: path.to_path_buf(), schema: doc.value.clone() })
}

impl Project {
    /// Reads every entity schema. Never fails as a whole: a missing entities folder means no
    /// entities, and each broken file is reported in [`EntityDiscovery::problems`].
    pub fn load_entities(&self) -> EntityDiscovery {
        let dir = self.entities_dir();
        let mut out = EntityDiscovery::default();
        if !dir.exists() {
            return out;
        }
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                out.problems.push(ProjectError::io(&dir, "read", &err));
                return out;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                !name.starts_with('.') && (ext == "json" || ext == "jsonc") && p.is_file()
            })
            .collect();
        files.sort();
        for file in files {
            match load_one(&file) {
                Ok(schema) => {
                    let lower = schema.name.to_ascii_lowercase();
                    if let Some(first) = out.entities.iter().find(|e| e.name.to_ascii_lowercase() == lower) {
                        out.problems.push(
                            ProjectError::new(
                                ErrorKind::Duplicate,
                                format!(
                                    "Entity name '{}' is declared twice: by {} and by {}; the second is ignored",
                                    schema.name,
                                    first.file.display(),
                                    file.display()
                                ),
                            )
                            .with_file(&file)
                            .with_hint("Entity names are unique ignoring case; rename or delete one"),
                        );
                    } else {
                        out.entities.push(schema);
                    }
                }
                Err(err) => out.problems.push(err),
            }
        }
        out.entities.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn project(config: &str) -> (tempfile::TempDir, Project) {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "base44/config.jsonc", config);
        let p = Project::find(tmp.path()).unwrap();
        (tmp, p)
    }

    #[test]
    fn missing_entities_folder_is_empty() {
        let (_tmp, p) = project("{\"name\": \"a\"}");
        let d = p.load_entities();
        assert!(d.entities.is_empty() && d.problems.is_empty());
    }

    #[test]
    fn loads_sorted_schemas_not_recursively() {
        let (tmp, p) = project("{\"name\": \"a\", \"entitiesDir\": \"models\"}");
        write(
            tmp.path(),
            "base44/models/task.jsonc",
            "// tasks\n{\"name\": \"Task\", \"type\": \"object\", \"properties\": {\"title\": {\"type\": \"string\"}},}",
        );
        write(tmp.path(), "base44/models/a-order.json", "{\"name\": \"Order\", \"properties\": {}}");
        write(tmp.path(), "base44/models/sub/x.json", "{\"name\": \"Nested\"}");
        write(tmp.path(), "base44/models/.draft.json", "{\"name\": \"Draft\"}");
        write(tmp.path(), "base44/models/notes.md", "");
        let d = p.load_entities();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let names: Vec<&str> = d.entities.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["Order", "Task"]);
        assert_eq!(d.entities[1].file, tmp.path().join("base44/models/task.jsonc"));
        assert_eq!(d.entities[1].properties().unwrap().len(), 1);
        assert_eq!(d.entities[1].schema["type"], "object");
    }

    #[test]
    fn invalid_schemas_are_problems_with_positions() {
        let (tmp, p) = project("{\"name\": \"a\"}");
        let e = "base44/entities";
        write(tmp.path(), &format!("{e}/a.json"), "{\"name\": \"Bad Name\"}");
        write(tmp.path(), &format!("{e}/b.json"), "{\"type\": \"object\"}");
        write(tmp.path(), &format!("{e}/c.json"), "{\"name\": \"C\",\n \"type\": \"array\"}");
        write(tmp.path(), &format!("{e}/d.json"), "{\"name\": \"D\", \"properties\": {\"x\": 1}}");
        write(tmp.path(), &format!("{e}/e.json"), "{\"name\": \"E\", \"required\": \"x\"}");
        write(tmp.path(), &format!("{e}/f.json"), "{\"name\": \"F\",");
        write(tmp.path(), &format!("{e}/g.json"), "[]");
        write(tmp.path(), &format!("{e}/h.json"), "{\"name\": \"Good\"}");
        let d = p.load_entities();
        assert_eq!(d.entities.len(), 1);
        let msgs: Vec<&str> = d.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(msgs.len(), 7, "{msgs:?}");
        assert!(msgs[0].contains("may only contain letters"));
        assert_eq!(msgs[1], "The entity schema has no `name`");
        assert!(d.problems[1].hint.as_deref().unwrap().contains("\"name\": \"b\""));
        assert!(msgs[2].contains("must be \"object\""));
        assert_eq!(d.problems[2].line, Some(2));
        assert!(msgs[3].contains("Property 'x'"));
        assert!(msgs[4].contains("`required`"));
        assert_eq!(d.problems[5].kind, ErrorKind::Parse);
        assert!(msgs[6].contains("must be an object"));
    }

    #[test]
    fn duplicate_entity_names_ignore_case() {
        let (tmp, p) = project("{\"name\": \"a\"}");
        write(tmp.path(), "base44/entities/a.json", "{\"name\": \"Task\"}");
        write(tmp.path(), "base44/entities/b.json", "{\"name\": \"task\"}");
        let d = p.load_entities();
        assert_eq!(d.entities.len(), 1);
        assert_eq!(d.entities[0].file, tmp.path().join("base44/entities/a.json"));
        assert_eq!(d.problems[0].kind, ErrorKind::Duplicate);
        assert!(d.problems[0].message.contains("a.json") && d.problems[0].message.contains("b.json"));
    }

    #[test]
    fn entity_name_rule() {
        assert!(is_valid_entity_name("Order_Item2"));
        assert!(!is_valid_entity_name("order-item"));
        assert!(!is_valid_entity_name(""));
    }
}
