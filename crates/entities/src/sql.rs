//! Filters and sorts compiled to SQL, for SQLite (JSON1 functions over a JSON text column) and
//! PostgreSQL (`jsonb`). Every operand is a bound parameter; field names are never values and
//! only ever appear as checked path literals ([`crate::query::is_valid_field_name`]: letters,
//! digits, `_`, `-`).
//!
//! The SQL reads a record row under the alias [`ALIAS`] (`r`) with the columns `id`,
//! `created_date`, `updated_date` (text; ISO 8601 with milliseconds, so text order is time
//! order), `created_by`, `created_by_id` (text, nullable), `is_sample` (SQLite integer 0/1,
//! PostgreSQL boolean) and `data` (the declared fields: SQLite JSON text, PostgreSQL `jsonb`).
//! PostgreSQL's text columns must be `COLLATE "C"`, so that comparisons are bytewise as in
//! SQLite and in [`crate::Filter::matches`]. SQLite needs the function
//! `hb_regexp(pattern, ignore_case, text)` ([`crate::regex::is_match`]).
//!
//! * **Three-valued logic.** A missing field makes SQL comparisons NULL. Under AND and OR a
//!   NULL acts as false, which is the semantics wanted; only NOT differs, so every negation is
//!   compiled as `NOT COALESCE(x, FALSE)`.
//! * **Candidates.** Equality, comparisons and `$regex` also look at an array's elements
//!   (`EXISTS` over `json_each` / `jsonb_array_elements`), unless the schema declares the field
//!   a scalar: records are validated, so the element branch could never hold, and leaving it
//!   out lets the plain comparison use an index. The expressions for declared scalar fields are
//!   the ones [`index_expression`] gives, so an index on them serves such filters and sorts.

use std::fmt::Write;

use crate::query::{FieldPath, Filter, Scalar, Sort, Test};
use crate::record::BuiltIn;
use crate::schema::{EntitySchema, Kind};

/// The alias the record table is read under.
pub const ALIAS: &str = "r";

/// The SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound parameter. On PostgreSQL numbers and JSON travel as text and are cast in the SQL,
/// so that they keep their exact decimal value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

/// SQL text and the parameters its placeholders (`?N` or `$N`, numbered from the `first` the
/// compiler was given) refer to, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fragment {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

/// Compiles `filter` to a boolean SQL expression. `schema` (when known) lets declared scalar
/// fields compile to indexable comparisons. Placeholders are numbered from `first` (1 for the
/// first parameter of a statement).
pub fn where_clause(dialect: Dialect, filter: &Filter, schema: Option<&EntitySchema>, first: usize) -> Fragment {
    let mut compiler = Compiler { dialect, schema, params: Vec::new(), first, aliases: 0 };
    let sql = compiler.filter(filter, &Scope::Record);
    Fragment { sql, params: compiler.params }
}

/// Compiles `sort` to the list after `ORDER BY`, with the `id` tie-break. No parameters.
pub fn order_by(dialect: Dialect, sort: &Sort, schema: Option<&EntitySchema>) -> String {
    let mut keys = Vec::new();
    for key in &sort.keys {
        let dir = if key.descending { Dir::Desc } else { Dir::Asc };
        if let Some(built_in) = key.path.built_in() {
            let column = format!("{ALIAS}.{}", built_in.column());
            keys.push(if built_in.nullable() { dir.apply(dialect, &column) } else { dir.plain(&column) });
            continue;
        }
        if key.path.under_built_in() {
            continue; // always missing: every record ties
        }
        let kind = schema.map_or(Kind::Unknown, |s| s.kind(&key.path));
        let (path, x) = (sqlite_path(&key.path), pg_expr(&format!("{ALIAS}.data"), &key.path));
        match (dialect, kind) {
            (Dialect::Sqlite, Kind::Text | Kind::Number | Kind::Bool) => {
                keys.push(dir.apply(dialect, &format!("json_extract({ALIAS}.data, {path})")))
            }
            (Dialect::Postgres, Kind::Text | Kind::Number | Kind::Bool) => {
                keys.push(dir.apply(dialect, &pg_typed(&x, kind)))
            }
            (Dialect::Sqlite, _) => {
                let t = format!("json_type({ALIAS}.data, {path})");
                keys.push(dir.apply(
                    dialect,
                    &format!(
                        "CASE {t} WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 WHEN 'object' THEN 3 \
                         WHEN 'array' THEN 4 WHEN 'true' THEN 5 WHEN 'false' THEN 5 ELSE 0 END"
                    ),
                ));
                keys.push(dir.apply(
                    dialect,
                    &format!(
                        "CASE WHEN {t} IN ('object', 'array') THEN NULL ELSE json_extract({ALIAS}.data, {path}) END"
                    ),
                ));
            }
            (Dialect::Postgres, _) => {
                keys.push(dir.apply(
                    dialect,
                    &format!(
                        "CASE jsonb_typeof({x}) WHEN 'number' THEN 1 WHEN 'string' THEN 2 WHEN 'object' THEN 3 \
                         WHEN 'array' THEN 4 WHEN 'boolean' THEN 5 ELSE 0 END"
                    ),
                ));
                for kind in [Kind::Number, Kind::Text, Kind::Bool] {
                    keys.push(dir.apply(dialect, &pg_typed(&x, kind)));
                }
            }
        }
    }
    let last = if sort.last_descending() { Dir::Desc } else { Dir::Asc };
    keys.push(last.plain(&format!("{ALIAS}.id")));
    keys.join(", ")
}

/// The expression an index on the declared scalar field `path` should be built on (without
/// the alias), matching what [`where_clause`] and [`order_by`] emit for it: build it as
/// `(app_id, entity, <this>, id)` on SQLite and `(app_id, entity, (<this>) NULLS FIRST, id)` on
/// PostgreSQL, so that sorts by the field (with the `id` tie-break, in either direction) read
/// the index. `None` for fields that are not declared strings, numbers or booleans.
pub fn index_expression(dialect: Dialect, schema: &EntitySchema, path: &FieldPath) -> Option<String> {
    let kind = schema.kind(path);
    if !matches!(kind, Kind::Text | Kind::Number | Kind::Bool) || path.built_in().is_some() {
        return None;
    }
    Some(match dialect {
        Dialect::Sqlite => format!("json_extract(data, {})", sqlite_path(path)),
        Dialect::Postgres => pg_typed(&pg_expr("data", path), kind),
    })
}

#[derive(Clone, Copy)]
enum Dir {
    Asc,
    Desc,
}

impl Dir {
    /// `expr` (never NULL) in this direction. PostgreSQL can only read an index backwards for
    /// the order it was built in, reversed, so columns that are never NULL get no `NULLS` clause.
    fn plain(self, expr: &str) -> String {
        match self {
            Dir::Asc => format!("{expr} ASC"),
            Dir::Desc => format!("{expr} DESC"),
        }
    }

    /// `expr` in this direction, nulls (missing values) first when ascending, as SQLite does.
    fn apply(self, dialect: Dialect, expr: &str) -> String {
        match (self, dialect) {
            (Dir::Asc, Dialect::Sqlite) => format!("{expr} ASC"),
            (Dir::Desc, Dialect::Sqlite) => format!("{expr} DESC"),
            (Dir::Asc, Dialect::Postgres) => format!("{expr} ASC NULLS FIRST"),
            (Dir::Desc, Dialect::Postgres) => format!("{expr} DESC NULLS LAST"),
        }
    }
}

/// `'$."a"."b"'`: a SQLite JSON path literal (segments are checked field names).
fn sqlite_path(path: &FieldPath) -> String {
    format!("'{}'", sqlite_suffix("$", path))
}

fn sqlite_suffix(start: &str, path: &FieldPath) -> String {
    let mut out = start.to_string();
    for segment in path.segments() {
        let _ = write!(out, ".\"{segment}\"");
    }
    out
}

/// `base -> 'a'`, `base #> '{"a","b"}'`, or `base` for an empty path.
fn pg_expr(base: &str, path: &FieldPath) -> String {
    match path.segments() {
        [] => base.to_string(),
        [one] => format!("({base} -> '{one}')"),
        many => {
            let list: Vec<String> = many.iter().map(|s| format!("\"{s}\"")).collect();
            format!("({base} #> '{{{}}}')", list.join(","))
        }
    }
}

/// The typed value of the jsonb expression `x`: text (bytewise), numeric or boolean, NULL when
/// the value has another type or is missing.
fn pg_typed(x: &str, kind: Kind) -> String {
    match kind {
        Kind::Number => format!("(CASE WHEN jsonb_typeof({x}) = 'number' THEN ({x})::numeric END)"),
        Kind::Bool => format!("(CASE WHEN jsonb_typeof({x}) = 'boolean' THEN ({x})::boolean END)"),
        _ => format!("((CASE WHEN jsonb_typeof({x}) = 'string' THEN {x} #>> '{{}}' END) COLLATE \"C\")"),
    }
}

/// Where paths start: the record, or an element of an array (`$elemMatch`, the candidates).
enum Scope {
    Record,
    /// SQLite: the element's path expression (`e1.fullkey`); PostgreSQL: its value (`e1.v`).
    Element {
        sqlite: String,
        pg: String,
    },
}

/// A JSON location: its SQLite path expression (within `r.data`), its PostgreSQL `jsonb`
/// expression, and what the schema says it holds.
struct Loc {
    sqlite: String,
    pg: String,
    kind: Kind,
}

struct Compiler<'a> {
    dialect: Dialect,
    schema: Option<&'a EntitySchema>,
    params: Vec<SqlParam>,
    first: usize,
    aliases: usize,
}

impl Compiler<'_> {
    fn param(&mut self, param: SqlParam) -> String {
        self.params.push(param);
        let n = self.first + self.params.len() - 1;
        match self.dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("e{}", self.aliases)
    }

    fn filter(&mut self, filter: &Filter, scope: &Scope) -> String {
        match filter {
            Filter::True => "TRUE".into(),
            Filter::False => "FALSE".into(),
            Filter::And(all) if all.is_empty() => "TRUE".into(),
            Filter::Or(any) if any.is_empty() => "FALSE".into(),
            Filter::And(all) => {
                let parts: Vec<String> = all.iter().map(|f| self.filter(f, scope)).collect();
                format!("({})", parts.join(" AND "))
            }
            Filter::Or(any) => {
                let parts: Vec<String> = any.iter().map(|f| self.filter(f, scope)).collect();
                format!("({})", parts.join(" OR "))
            }
            Filter::Not(inner) => format!("(NOT COALESCE({}, FALSE))", self.filter(inner, scope)),
            Filter::Field(path, test) => self.leaf(path, test, scope),
        }
    }

    fn leaf(&mut self, path: &FieldPath, test: &Test, scope: &Scope) -> String {
        let loc = match scope {
            Scope::Record => {
                if let Some(built_in) = path.built_in() {
                    return self.built_in(built_in, test);
                }
                if path.under_built_in() {
                    return constant(test.holds(None));
                }
                Loc {
                    sqlite: sqlite_path(path),
                    pg: pg_expr(&format!("{ALIAS}.data"), path),
                    kind: self.schema.map_or(Kind::Unknown, |s| s.kind(path)),
                }
            }
            Scope::Element { sqlite, pg } => Loc {
                sqlite: if path.segments().is_empty() {
                    sqlite.clone()
                } else {
                    format!("({sqlite} || '{}')", sqlite_suffix("", path))
                },
                pg: pg_expr(pg, path),
                kind: Kind::Unknown,
            },
        };
        match self.dialect {
            Dialect::Sqlite => self.sqlite_leaf(&loc, test),
            Dialect::Postgres => self.pg_leaf(&loc, test),
        }
    }

    fn built_in(&mut self, column: BuiltIn, test: &Test) -> String {
        let col = format!("{ALIAS}.{}", column.column());
        let text = !column.is_bool();
        match test {
            Test::Eq(Scalar::Text(s)) if text => format!("{col} = {}", self.param(SqlParam::Text(s.clone()))),
            Test::Eq(Scalar::Bool(b)) if !text => {
                let p = match self.dialect {
                    Dialect::Sqlite => self.param(SqlParam::Int(i64::from(*b))),
                    Dialect::Postgres => format!("{}::boolean", self.param(SqlParam::Bool(*b))),
                };
                format!("{col} = {p}")
            }
            Test::IsNull if column.nullable() => format!("{col} IS NULL"),
            Test::Exists => "TRUE".into(),
            Test::Cmp(op, Scalar::Text(s)) if text => {
                format!("{col} {} {}", op.sql(), self.param(SqlParam::Text(s.clone())))
            }
            Test::Regex(pattern) if text => self.regex(&col, pattern),
            _ => "FALSE".into(),
        }
    }

    fn regex(&mut self, text_expr: &str, pattern: &crate::query::Pattern) -> String {
        let p = self.param(SqlParam::Text(pattern.source.clone()));
        match self.dialect {
            Dialect::Sqlite => {
                let ci = self.param(SqlParam::Int(i64::from(pattern.case_insensitive)));
                format!("hb_regexp({p}, {ci}, {text_expr})")
            }
            Dialect::Postgres => {
                let op = if pattern.case_insensitive { "~*" } else { "~" };
                format!("({text_expr} {op} {p})")
            }
        }
    }

    // ---- SQLite ----

    fn sqlite_leaf(&mut self, loc: &Loc, test: &Test) -> String {
        let (p, kind) = (&loc.sqlite, loc.kind);
        let t = format!("json_type({ALIAS}.data, {p})");
        let v = format!("json_extract({ALIAS}.data, {p})");
        match test {
            Test::IsNull => format!("({v} IS NULL)"),
            Test::Exists => format!("({t} IS NOT NULL)"),
            Test::Size(n) => {
                let n = self.param(SqlParam::Int(*n as i64));
                format!("({t} = 'array' AND json_array_length({ALIAS}.data, {p}) = {n})")
            }
            Test::ElemMatch(inner) => {
                let e = self.alias();
                let scope = Scope::Element { sqlite: format!("{e}.fullkey"), pg: String::new() };
                let cond = self.filter(inner, &scope);
                format!("EXISTS (SELECT 1 FROM json_each({ALIAS}.data, {p}) AS {e} WHERE {t} = 'array' AND {cond})")
            }
            Test::Eq(_) | Test::Cmp(..) | Test::Regex(_) => {
                let direct = match kind {
                    Kind::Array => None,
                    _ => Some(self.sqlite_scalar(test, &t, &v, kind)),
                };
                let elements = match kind {
                    Kind::Text | Kind::Number | Kind::Bool => None,
                    _ => {
                        let e = self.alias();
                        let cond = self.sqlite_scalar(test, &format!("{e}.type"), &format!("{e}.atom"), Kind::Unknown);
                        Some(format!(
                            "EXISTS (SELECT 1 FROM json_each({ALIAS}.data, {p}) AS {e} WHERE {t} = 'array' AND {cond})"
                        ))
                    }
                };
                either(direct, elements)
            }
        }
    }

    /// A scalar test on a value whose JSON type is `t` and SQL value `v`; with a declared
    /// `kind` the type check is left out.
    fn sqlite_scalar(&mut self, test: &Test, t: &str, v: &str, kind: Kind) -> String {
        let number = |n: &serde_json::Number| match n.as_i64() {
            Some(i) => SqlParam::Int(i),
            None => SqlParam::Real(n.as_f64().unwrap_or(f64::NAN)),
        };
        match test {
            Test::Eq(Scalar::Text(s)) => {
                let p = self.param(SqlParam::Text(s.clone()));
                typed(kind == Kind::Text, &format!("{t} = 'text'"), &format!("{v} = {p}"))
            }
            Test::Eq(Scalar::Number(n)) => {
                let p = self.param(number(n));
                typed(kind == Kind::Number, &format!("{t} IN ('integer', 'real')"), &format!("{v} = {p}"))
            }
            Test::Eq(Scalar::Bool(b)) => {
                if kind == Kind::Bool {
                    let p = self.param(SqlParam::Int(i64::from(*b)));
                    format!("{v} = {p}")
                } else {
                    format!("{t} = '{}'", if *b { "true" } else { "false" })
                }
            }
            Test::Cmp(op, Scalar::Text(s)) => {
                let p = self.param(SqlParam::Text(s.clone()));
                typed(kind == Kind::Text, &format!("{t} = 'text'"), &format!("{v} {} {p}", op.sql()))
            }
            Test::Cmp(op, Scalar::Number(n)) => {
                let p = self.param(number(n));
                typed(kind == Kind::Number, &format!("{t} IN ('integer', 'real')"), &format!("{v} {} {p}", op.sql()))
            }
            Test::Regex(pattern) => {
                let m = self.regex(v, pattern);
                typed(kind == Kind::Text, &format!("{t} = 'text'"), &m)
            }
            _ => "FALSE".into(),
        }
    }

    // ---- PostgreSQL ----

    fn pg_leaf(&mut self, loc: &Loc, test: &Test) -> String {
        let (x, kind) = (&loc.pg, loc.kind);
        match test {
            Test::IsNull => format!("(COALESCE(jsonb_typeof({x}), 'null') = 'null')"),
            Test::Exists => format!("({x} IS NOT NULL)"),
            Test::Size(n) => {
                let n = self.param(SqlParam::Int(*n as i64));
                format!("(jsonb_array_length(CASE WHEN jsonb_typeof({x}) = 'array' THEN {x} END) = {n}::bigint)")
            }
            Test::ElemMatch(inner) => {
                let e = self.alias();
                let scope = Scope::Element { sqlite: String::new(), pg: format!("{e}.v") };
                let cond = self.filter(inner, &scope);
                format!("EXISTS (SELECT 1 FROM {} WHERE {cond})", pg_elements(x, &e))
            }
            Test::Eq(_) | Test::Cmp(..) | Test::Regex(_) => {
                let direct = match kind {
                    Kind::Array => None,
                    _ => Some(self.pg_scalar(test, x, kind)),
                };
                let elements = match kind {
                    Kind::Text | Kind::Number | Kind::Bool => None,
                    _ => {
                        let e = self.alias();
                        let cond = self.pg_scalar(test, &format!("{e}.v"), Kind::Unknown);
                        Some(format!("EXISTS (SELECT 1 FROM {} WHERE {cond})", pg_elements(x, &e)))
                    }
                };
                either(direct, elements)
            }
        }
    }

    fn pg_scalar(&mut self, test: &Test, x: &str, kind: Kind) -> String {
        match test {
            Test::Eq(Scalar::Text(s)) if kind == Kind::Text => {
                let p = self.param(SqlParam::Text(s.clone()));
                format!("{} = {p}", pg_typed(x, Kind::Text))
            }
            Test::Eq(Scalar::Number(n)) if kind == Kind::Number => {
                let p = self.param(SqlParam::Text(n.to_string()));
                format!("{} = {p}::text::numeric", pg_typed(x, Kind::Number))
            }
            Test::Eq(scalar) => {
                let p = self.param(SqlParam::Text(scalar.to_value().to_string()));
                format!("({x} = {p}::text::jsonb)")
            }
            Test::Cmp(op, Scalar::Text(s)) => {
                let p = self.param(SqlParam::Text(s.clone()));
                format!("{} {} {p}", pg_typed(x, Kind::Text), op.sql())
            }
            Test::Cmp(op, Scalar::Number(n)) => {
                let p = self.param(SqlParam::Text(n.to_string()));
                format!("{} {} {p}::text::numeric", pg_typed(x, Kind::Number), op.sql())
            }
            Test::Regex(pattern) => {
                let text = format!("(CASE WHEN jsonb_typeof({x}) = 'string' THEN {x} #>> '{{}}' END)");
                self.regex(&text, pattern)
            }
            _ => "FALSE".into(),
        }
    }
}

/// `jsonb_array_elements` over `x` when it is an array (nothing otherwise), as `e(v)`.
fn pg_elements(x: &str, e: &str) -> String {
    format!("jsonb_array_elements(CASE WHEN jsonb_typeof({x}) = 'array' THEN {x} ELSE '[]'::jsonb END) AS {e}(v)")
}

/// `check AND cond`, or `cond` alone when the type is known.
fn typed(known: bool, check: &str, cond: &str) -> String {
    if known { format!("({cond})") } else { format!("({check} AND {cond})") }
}

fn either(a: Option<String>, b: Option<String>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("({a} OR {b})"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "FALSE".into(),
    }
}

fn constant(value: bool) -> String {
    if value { "TRUE".into() } else { "FALSE".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(dialect: Dialect, query: serde_json::Value, schema: Option<&EntitySchema>) -> Fragment {
        where_clause(dialect, &Filter::parse(&query).unwrap(), schema, 3)
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let evil = "x' OR 1=1 --";
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let f = compile(dialect, json!({"title": evil, "id": {"$in": [evil]}, "n": {"$regex": "^a"}}), None);
            assert!(!f.sql.contains("OR 1=1"), "{}", f.sql);
            assert!(
                f.params.contains(&SqlParam::Text(evil.to_string()))
                    || f.params.iter().any(|p| matches!(p, SqlParam::Text(t) if t.contains(evil)))
            );
        }
        let f = compile(Dialect::Sqlite, json!({"id": "a"}), None);
        assert_eq!(f.sql, "r.id = ?3");
        let f = compile(Dialect::Postgres, json!({"id": "a"}), None);
        assert_eq!(f.sql, "r.id = $3");
    }

    #[test]
    fn declared_scalars_compile_to_indexable_comparisons() {
        let schema = EntitySchema::parse(
            "T",
            &json!({"properties": {"status": {"type": "string"}, "n": {"type": "number"}, "tags": {"type": "array"}}}),
        )
        .unwrap();
        let f = compile(Dialect::Sqlite, json!({"status": "open"}), Some(&schema));
        assert_eq!(f.sql, "(json_extract(r.data, '$.\"status\"') = ?3)");
        let expr = index_expression(Dialect::Sqlite, &schema, &FieldPath::parse("status").unwrap()).unwrap();
        assert!(f.sql.contains(&expr.replace("data", "r.data")));
        let f = compile(Dialect::Postgres, json!({"n": {"$gt": 1}}), Some(&schema));
        let expr = index_expression(Dialect::Postgres, &schema, &FieldPath::parse("n").unwrap()).unwrap();
        assert!(f.sql.contains(&expr.replace("data", "r.data")), "{} / {expr}", f.sql);
        assert!(
            !compile(Dialect::Sqlite, json!({"tags": "a"}), Some(&schema))
                .sql
                .contains("json_extract(r.data, '$.\"tags\"') =")
        );
        assert!(index_expression(Dialect::Sqlite, &schema, &FieldPath::parse("tags").unwrap()).is_none());
    }

    #[test]
    fn negations_are_two_valued() {
        let f = compile(Dialect::Sqlite, json!({"a": {"$ne": 1}}), None);
        assert!(f.sql.starts_with("(NOT COALESCE("), "{}", f.sql);
    }

    #[test]
    fn sorts_end_with_the_id_in_the_last_direction() {
        let sort = Sort::parse("-created_date").unwrap();
        assert_eq!(order_by(Dialect::Sqlite, &sort, None), "r.created_date DESC, r.id DESC");
        assert_eq!(order_by(Dialect::Postgres, &sort, None), "r.created_date DESC, r.id DESC");
        let sort = Sort::parse("created_by").unwrap();
        assert_eq!(order_by(Dialect::Postgres, &sort, None), "r.created_by ASC NULLS FIRST, r.id ASC");
    }
}
