//! App data rules, without I/O: entity schemas as types, record validation, the query language
//! of reference §3.2 parsed to an AST and compiled to SQL per dialect, and the access rules of
//! §3.4 compiled into the same SQL. This crate compiles; `homebase-store` executes.
//!
//! * **Schemas** ([`schema`]): an entity's JSON schema (from `base44/entities/*.json(c)`, or
//!   pushed) becomes an [`EntitySchema`] of typed [`Property`]s with their formats, enums,
//!   defaults, nested objects and arrays, and its access rules.
//! * **Records** ([`record`], [`validate`]): a stored record is its built-in fields (`id`,
//!   `created_date`, `updated_date`, `created_by`, `created_by_id`, `is_sample`) and its data.
//!   Validation applies defaults, drops undeclared fields, and names the failing field
//!   ([`ValidationError`], answered 422 in the body shape of §3.3).
//! * **Queries** ([`query`]): `q` (a Mongo-style filter), `sort`, `limit`, `skip` and `fields`
//!   parse to a [`Filter`] and a [`Sort`]. What the language cannot express is a
//!   [`QueryError`] naming the operator (400), never a silent wrong answer. The semantics are
//!   written down in [`query`]; [`Filter::matches`] evaluates them in memory (for realtime and
//!   for rules about the caller), and [`sql`] compiles them for SQLite (JSON1 functions over a
//!   JSON text column) and PostgreSQL (`jsonb`), every value a bound parameter.
//! * **Access rules** ([`rules`]): an entity's `rls` and its properties' field rules, resolved
//!   for a caller ([`Principal`]) into [`Filter`]s that are ANDed into the query, so limits and
//!   counts are right.

pub mod error;
pub mod query;
pub mod record;
pub mod regex;
pub mod rules;
pub mod schema;
pub mod sql;
pub mod update;
pub mod validate;

pub use error::{EntityError, QueryError, ValidationError};
pub use query::{Cmp, FieldPath, Filter, ListQuery, Pattern, Scalar, Sort, SortKey, Test};
pub use record::{BUILT_IN_FIELDS, BuiltIn, Record};
pub use rules::{Access, Principal, Rule};
pub use schema::{EntitySchema, FieldType, Property, Schemas};
pub use sql::{Dialect, Fragment, SqlParam};
pub use update::Update;
