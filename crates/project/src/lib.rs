//! Reading a Base44 project folder.
//!
//! This crate owns reading a project folder; it does no network or process work. It finds the
//! project ([`Project::find`]: the nearest `base44/config.jsonc`), parses its JSONC files with
//! file/line/column errors ([`parse_jsonc`]), discovers the backend functions
//! ([`Project::discover_functions`]: `function.jsonc`, zero-config `entry.ts`/`entry.js`, nested
//! names, `shared/`), validates their automations ([`Automation`]), loads the entity schemas
//! ([`Project::load_entities`]), lists the files a deploy uploads
//! ([`FunctionDef::source_files`], [`FunctionDef::deploy_payload`]), reads the local secrets of
//! `.env` and `.env.local` ([`load_dotenv`]) and writes the TypeScript declarations of
//! `types generate` ([`generate_types`]).
//!
//! Discovery never fails as a whole: healthy functions and entities come back together with a
//! list of [`ProjectError`]s, each naming its file, position, function and a fix.

mod automation;
mod dotenv;
mod entities;
mod error;
mod fsutil;
mod functions;
mod jsonc;
mod project;
mod types;

pub use automation::{
    Automation, AutomationCommon, AutomationError, Condition, CronExpr, Ends, EntityEvent, IsoDateTime, Logic,
    MIN_INTERVAL_MINUTES, RepeatUnit, TriggerConditions, parse_automations,
};
pub use dotenv::{DOTENV_FILES, load_dotenv, parse_dotenv};
pub use entities::{EntityDiscovery, EntitySchema, is_valid_entity_name};
pub use error::{ErrorKind, ProjectError};
pub use functions::{DeployFile, DeployPayload, Discovery, FunctionDef, NAME_RULE, SourceFile, name_problem};
pub use jsonc::parse_jsonc;
pub use project::{PluginConfig, PluginSource, Project, ProjectConfig, SiteConfig, Visibility};
pub use types::{TypesOutput, add_tsconfig_include, generate_types, render_types, types_include_pattern};

/// The most functions a project may have (the documented Base44 limit).
pub const MAX_FUNCTIONS: usize = 50;
