//! Locating a project and reading `config.jsonc` and `.app.jsonc`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, ProjectError};
use crate::fsutil::normalize;
use crate::jsonc::Doc;

/// Config file names looked for in each folder, in order of preference.
const CONFIG_CANDIDATES: [&str; 4] = ["base44/config.jsonc", "base44/config.json", "config.jsonc", "config.json"];

/// A located Base44 project.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// The project root: the folder that contains `base44/` (or that contains the config file
    /// directly).
    pub root: PathBuf,
    /// The folder holding the config file (normally `<root>/base44`); the `*Dir` settings are
    /// relative to it.
    pub base_dir: PathBuf,
    /// The config file that was read.
    pub config_path: PathBuf,
    pub config: ProjectConfig,
    /// `id` of `<base_dir>/.app.jsonc` (or `.app.json`) when present.
    pub app_id: Option<String>,
}

/// `config.jsonc`. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteConfig>,
    #[serde(default = "default_entities_dir")]
    pub entities_dir: String,
    #[serde(default = "default_functions_dir")]
    pub functions_dir: String,
    #[serde(default = "default_actors_dir")]
    pub actors_dir: String,
    #[serde(default = "default_agents_dir")]
    pub agents_dir: String,
    #[serde(default = "default_agent_skills_dir")]
    pub agent_skills_dir: String,
    #[serde(default = "default_connectors_dir")]
    pub connectors_dir: String,
    #[serde(default = "default_auth_dir")]
    pub auth_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginConfig>,
    #[serde(default)]
    pub plugins: Vec<PluginSource>,
}

fn default_entities_dir() -> String {
    "entities".into()
}
fn default_functions_dir() -> String {
    "functions".into()
}
fn default_actors_dir() -> String {
    "actors".into()
}
fn default_agents_dir() -> String {
    "agents".into()
}
fn default_agent_skills_dir() -> String {
    "agent-skills".into()
}
fn default_connectors_dir() -> String {
    "connectors".into()
}
fn default_auth_dir() -> String {
    "auth".into()
}
fn default_build_command() -> String {
    "npm run build".into()
}
fn default_install_command() -> String {
    "npm install".into()
}

impl ProjectConfig {
    /// A config with this name and every default.
    pub fn new(name: impl Into<String>) -> Self {
        ProjectConfig {
            name: name.into(),
            description: None,
            visibility: None,
            site: None,
            entities_dir: default_entities_dir(),
            functions_dir: default_functions_dir(),
            actors_dir: default_actors_dir(),
            agents_dir: default_agents_dir(),
            agent_skills_dir: default_agent_skills_dir(),
            connectors_dir: default_connectors_dir(),
            auth_dir: default_auth_dir(),
            plugin: None,
            plugins: Vec::new(),
        }
    }
}

/// Who can see the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
    Workspace,
}

/// `site` of `config.jsonc` (the front end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteConfig {
    #[serde(default = "default_build_command")]
    pub build_command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_directory: Option<String>,
    #[serde(default = "default_install_command")]
    pub install_command: String,
}

/// `plugin` of `config.jsonc`: this project is a plugin with this namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginConfig {
    pub namespace: String,
}

/// One entry of `plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSource {
    pub source: String,
}

#[derive(Deserialize)]
struct AppFile {
    #[serde(default)]
    id: Option<String>,
}

impl Project {
    /// Walks up from `start` (a file or a folder) to the nearest folder that has
    /// `base44/config.{jsonc,json}` (preferred) or `config.{jsonc,json}`, and loads it.
    pub fn find(start: &Path) -> Result<Project, ProjectError> {
        let abs = std::path::absolute(start).map_err(|e| ProjectError::io(start, "resolve", &e))?;
        let abs = normalize(&abs);
        let first = if abs.is_file() { abs.parent().map(Path::to_path_buf).unwrap_or_default() } else { abs.clone() };
        for dir in first.ancestors() {
            for candidate in CONFIG_CANDIDATES {
                let path = dir.join(candidate);
                if path.is_file() {
                    return Project::load(&path);
                }
            }
        }
        Err(ProjectError::new(
            ErrorKind::NotFound,
            format!("No Base44 project found in {} or any folder above it", first.display()),
        )
        .with_hint(
            "Run this inside a project: a folder with base44/config.jsonc containing at least {\"name\": \"my-app\"}",
        ))
    }

    /// Loads the project whose config file is `config_path`.
    ///
    /// The root is the config's folder, except when that folder is named `base44`: then the
    /// root is its parent (the usual `<root>/base44/config.jsonc` layout).
    pub fn load(config_path: &Path) -> Result<Project, ProjectError> {
        let config_path =
            normalize(&std::path::absolute(config_path).map_err(|e| ProjectError::io(config_path, "resolve", &e))?);
        let base_dir = config_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = match (base_dir.file_name(), base_dir.parent()) {
            (Some(name), Some(parent)) if name == "base44" => parent.to_path_buf(),
            _ => base_dir.clone(),
        };
        let text = fs::read_to_string(&config_path).map_err(|e| ProjectError::io(&config_path, "read", &e))?;
        let doc = Doc::parse(&config_path, &text)?;
        let mut config: ProjectConfig = doc.deserialize(&config_path)?;
        validate_config(&mut config, &doc, &config_path)?;
        let app_id = read_app_id(&base_dir)?;
        Ok(Project { root, base_dir, config_path, config, app_id })
    }

    /// `<base_dir>/<functionsDir>`.
    pub fn functions_dir(&self) -> PathBuf {
        normalize(&self.base_dir.join(&self.config.functions_dir))
    }

    /// `<base_dir>/<entitiesDir>`.
    pub fn entities_dir(&self) -> PathBuf {
        normalize(&self.base_dir.join(&self.config.entities_dir))
    }

    /// The `shared` folder next to the functions folder (normally `base44/shared`).
    pub fn shared_dir(&self) -> PathBuf {
        let functions = self.functions_dir();
        match functions.parent() {
            Some(parent) => parent.join("shared"),
            None => functions.join("..").join("shared"),
        }
    }

    /// Where `types generate` writes: `<base_dir>/.types/types.d.ts`.
    pub fn types_path(&self) -> PathBuf {
        self.base_dir.join(".types").join("types.d.ts")
    }
}

fn validate_config(config: &mut ProjectConfig, doc: &Doc, path: &Path) -> Result<(), ProjectError> {
    let invalid = |field: &str, message: String, hint: &str| {
        ProjectError::new(ErrorKind::Invalid, message)
            .with_file(path)
            .at_opt(Some(doc.position(&[field])))
            .with_hint(hint)
    };
    config.name = config.name.trim().to_string();
    if config.name.is_empty() {
        return Err(invalid("name", "The project `name` is empty".into(), "Set \"name\" to your app's name"));
    }
    for (field, value) in [("functionsDir", &config.functions_dir), ("entitiesDir", &config.entities_dir)] {
        if value.trim().is_empty() {
            return Err(invalid(
                field,
                format!("`{field}` is empty"),
                "Remove it to use the default, or name a folder relative to the config file",
            ));
        }
    }
    if let Some(plugin) = &config.plugin {
        let ok = !plugin.namespace.is_empty()
            && plugin.namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(invalid(
                "plugin",
                format!("The plugin namespace '{}' may only contain letters, digits, '_' and '-'", plugin.namespace),
                "Rename `plugin.namespace`",
            ));
        }
    }
    Ok(())
}

fn read_app_id(base_dir: &Path) -> Result<Option<String>, ProjectError> {
    for name in [".app.jsonc", ".app.json"] {
        let path = base_dir.join(name);
        if !path.is_file() {
            continue;
        }
        let text = fs::read_to_string(&path).map_err(|e| ProjectError::io(&path, "read", &e))?;
        let app: AppFile = crate::jsonc::parse_jsonc(&path, &text)?;
        return Ok(app.id.map(|id| id.trim().to_string()).filter(|id| !id.is_empty()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn finds_config_in_base44_from_a_nested_folder_and_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "base44/config.jsonc", "{\n  // my app\n  \"name\": \"  shop \",\n  \"description\": \"d\",\n}\n");
        write(root, "src/deep/x.ts", "");
        let p = Project::find(&root.join("src/deep")).unwrap();
        assert_eq!(p.root, root);
        assert_eq!(p.base_dir, root.join("base44"));
        assert_eq!(p.config_path, root.join("base44/config.jsonc"));
        assert_eq!(p.config.name, "shop");
        assert_eq!(p.config.description.as_deref(), Some("d"));
        assert_eq!(p.functions_dir(), root.join("base44/functions"));
        assert_eq!(p.entities_dir(), root.join("base44/entities"));
        assert_eq!(p.shared_dir(), root.join("base44/shared"));
        assert_eq!(p.types_path(), root.join("base44/.types/types.d.ts"));
        assert_eq!(p.app_id, None);
        let from_file = Project::find(&root.join("src/deep/x.ts")).unwrap();
        assert_eq!(from_file, p);
    }

    #[test]
    fn from_inside_base44_the_root_is_still_the_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "base44/config.json", "{\"name\": \"a\"}");
        fs::create_dir_all(root.join("base44/functions/x")).unwrap();
        let p = Project::find(&root.join("base44/functions/x")).unwrap();
        assert_eq!(p.root, root);
        assert_eq!(p.base_dir, root.join("base44"));
        assert_eq!(p.config_path, root.join("base44/config.json"));
    }

    #[test]
    fn config_at_root_and_preference_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("app");
        write(&root, "config.json", "{\"name\": \"json\"}");
        let p = Project::find(&root).unwrap();
        assert_eq!((p.root.clone(), p.base_dir.clone()), (root.clone(), root.clone()));
        assert_eq!(p.functions_dir(), root.join("functions"));
        assert_eq!(p.shared_dir(), root.join("shared"));
        write(&root, "config.jsonc", "{\"name\": \"jsonc\"}");
        assert_eq!(Project::find(&root).unwrap().config.name, "jsonc");
        write(&root, "base44/config.json", "{\"name\": \"nested\"}");
        let p = Project::find(&root).unwrap();
        assert_eq!(p.config.name, "nested");
        assert_eq!(p.base_dir, root.join("base44"));
    }

    #[test]
    fn nearest_ancestor_wins() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "base44/config.jsonc", "{\"name\": \"outer\"}");
        write(tmp.path(), "inner/base44/config.jsonc", "{\"name\": \"inner\"}");
        let p = Project::find(&tmp.path().join("inner")).unwrap();
        assert_eq!(p.config.name, "inner");
    }

    #[test]
    fn not_found_is_an_error_with_a_hint() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        // A folder named config.json is not a config file.
        fs::create_dir_all(tmp.path().join("a/config.json")).unwrap();
        let err = Project::find(&tmp.path().join("a/b")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(err.code(), "project_not_found");
        assert!(err.message.starts_with("No Base44 project found in"));
        assert!(err.message.contains("a/b"));
        assert!(err.hint.as_deref().unwrap().contains("base44/config.jsonc"));
    }

    #[test]
    fn custom_dirs_defaults_and_unknown_fields() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "base44/config.jsonc",
            r#"{"name": "a", "functionsDir": "./backend/fns", "entitiesDir": "models",
                "visibility": "private", "site": {"outputDirectory": "dist"},
                "plugins": [{"source": "x"}], "somethingNew": {"a": 1}}"#,
        );
        let p = Project::find(tmp.path()).unwrap();
        assert_eq!(p.functions_dir(), tmp.path().join("base44/backend/fns"));
        assert_eq!(p.shared_dir(), tmp.path().join("base44/backend/shared"));
        assert_eq!(p.entities_dir(), tmp.path().join("base44/models"));
        assert_eq!(p.config.visibility, Some(Visibility::Private));
        let site = p.config.site.as_ref().unwrap();
        assert_eq!(site.build_command, "npm run build");
        assert_eq!(site.install_command, "npm install");
        assert_eq!(site.output_directory.as_deref(), Some("dist"));
        assert_eq!(p.config.agent_skills_dir, "agent-skills");
        assert_eq!(p.config.plugins, vec![PluginSource { source: "x".into() }]);
        let json = serde_json::to_value(&p.config).unwrap();
        assert_eq!(json["functionsDir"], "./backend/fns");
        assert_eq!(json["entitiesDir"], "models");
    }

    #[test]
    fn broken_config_reports_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "base44/config.jsonc", "{\n  \"name\": \"a\"\n  \"x\": 1\n}");
        let err = Project::find(tmp.path()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Parse);
        assert_eq!(err.file, Some(tmp.path().join("base44/config.jsonc")));
        assert_eq!((err.line, err.column), (Some(3), Some(3)));
    }

    #[test]
    fn config_rules() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "base44/config.jsonc", "{\n  \"name\": \"  \"\n}");
        let err = Project::find(tmp.path()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert_eq!((err.line, err.column), (Some(2), Some(11)));
        write(tmp.path(), "base44/config.jsonc", "{\"description\": \"no name\"}");
        let err = Project::find(tmp.path()).unwrap_err();
        assert!(err.message.contains("missing field `name`"), "{}", err.message);
        write(tmp.path(), "base44/config.jsonc", "{\"name\": \"a\", \"visibility\": \"everyone\"}");
        assert_eq!(Project::find(tmp.path()).unwrap_err().kind, ErrorKind::Parse);
        write(tmp.path(), "base44/config.jsonc", "{\"name\": \"a\", \"functionsDir\": \"\"}");
        let err = Project::find(tmp.path()).unwrap_err();
        assert!(err.message.contains("`functionsDir` is empty"));
        write(tmp.path(), "base44/config.jsonc", "{\"name\": \"a\", \"plugin\": {\"namespace\": \"a b\"}}");
        assert!(Project::find(tmp.path()).unwrap_err().message.contains("namespace"));
    }

    #[test]
    fn app_id_from_app_jsonc_or_json() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "base44/config.jsonc", "{\"name\": \"a\"}");
        write(tmp.path(), "base44/.app.json", "{\"id\": \"from-json\"}");
        assert_eq!(Project::find(tmp.path()).unwrap().app_id.as_deref(), Some("from-json"));
        write(tmp.path(), "base44/.app.jsonc", "// app\n{\"id\": \"abc123\",}");
        assert_eq!(Project::find(tmp.path()).unwrap().app_id.as_deref(), Some("abc123"));
        write(tmp.path(), "base44/.app.jsonc", "{\"id\": \"\"}");
        assert_eq!(Project::find(tmp.path()).unwrap().app_id, None);
        write(tmp.path(), "base44/.app.jsonc", "{\"id\": ");
        let err = Project::find(tmp.path()).unwrap_err();
        assert_eq!(err.file, Some(tmp.path().join("base44/.app.jsonc")));
    }
}
