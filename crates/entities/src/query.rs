//! The query language of reference §3.2, parsed to a [`Filter`], and its semantics.
//!
//! A query is a JSON object. Each key is a field path (`status`, `address.city`) or a
//! combinator (`$and`, `$or`, `$nor`: a non-empty list of queries); all keys must hold. A
//! field's value is
//!
//! * a scalar (string, number, boolean): equality; `null`: the field is missing or null;
//! * a list: "any of" (as `$in`; this is Base44's meaning, not MongoDB's exact-array match);
//! * an object of operators: `$eq $ne $gt $gte $lt $lte $in $nin $exists $regex` (with
//!   `$options: "i"`), `$all $size $elemMatch`, and `$not` around an object of operators.
//!
//! Semantics, which the SQL of both dialects and [`Filter::matches`] implement alike:
//!
//! * A path descends through objects only (a segment never indexes an array); where it ends
//!   nowhere the field is *missing*. The built-in fields are top-level fields of every record
//!   (`created_by` and `created_by_id` may be null).
//! * The *candidates* of a value are its elements when it is an array, else the value itself.
//!   Equality, comparisons and `$regex` hold when some candidate has the operand's JSON type
//!   and passes (so `{tags: "a"}` finds records whose `tags` contain `"a"`). Numbers compare
//!   numerically, strings bytewise (UTF-8), `false < true` is not offered (`$gt` takes a number
//!   or a string).
//! * `null` (and `$eq: null`) holds for a missing or null field; `$exists: true` for any
//!   present value, null included.
//! * `$ne`, `$nin` and `$not` are the negations of `$eq`, `$in` and their operand, so they hold
//!   for missing fields.
//! * `$all: [a, b]` holds when each of `a`, `b` is equal as above; an empty `$all` holds for no
//!   record. `$size: n` holds for arrays of `n` elements. `$elemMatch` holds when some element
//!   of an array passes its operand: operators (`{$gt: 5}`, about the element itself) or a
//!   query whose paths start at the element.
//! * Not expressible, and a [`QueryError`] naming the operator: any other operator (`$where`,
//!   `$expr`, `$text`…), equality with an object or with a list inside an operator, `$gt` and
//!   friends on booleans, null, lists or objects, regular expressions with look-around, back
//!   references or escapes that the dialects read differently.

use serde_json::{Map, Number, Value};

use crate::error::QueryError;
use crate::record::BuiltIn;

/// The longest field name a query or schema may use.
pub const MAX_FIELD_NAME: usize = 100;
/// How deep queries may nest (combinators, `$not`, `$elemMatch`).
pub const MAX_DEPTH: usize = 32;

/// Whether `name` can be a field name: 1 to 100 ASCII letters, digits, `_` and `-`.
pub fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FIELD_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A dotted path into a record (or, inside `$elemMatch`, into an element; empty: the element
/// itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// Parses `a.b.c`; every segment must be a valid field name.
    pub fn parse(text: &str) -> Result<FieldPath, QueryError> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if let Some(bad) = segments.iter().find(|s| !is_valid_field_name(s)) {
            return Err(QueryError::new(
                Some(text),
                format!("'{text}' is not a field path Homebase can query (the part '{bad}')"),
                "Field names are 1 to 100 letters, digits, '_' or '-'; nested fields are joined with '.'.",
            ));
        }
        Ok(FieldPath(segments))
    }

    /// The element itself (inside `$elemMatch`).
    pub fn empty() -> FieldPath {
        FieldPath(Vec::new())
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The built-in field this path names, when it is one segment naming one.
    pub fn built_in(&self) -> Option<BuiltIn> {
        match self.0.as_slice() {
            [one] => BuiltIn::parse(one),
            _ => None,
        }
    }

    /// Whether the path starts at a built-in field and goes deeper (`id.x`): always missing.
    pub fn under_built_in(&self) -> bool {
        self.0.len() > 1 && BuiltIn::parse(&self.0[0]).is_some()
    }

    /// The value at this path in `value`.
    pub fn resolve<'a>(&self, mut value: &'a Value) -> Option<&'a Value> {
        for segment in &self.0 {
            value = value.as_object()?.get(segment)?;
        }
        Some(value)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A scalar operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Number(Number),
    Text(String),
}

impl Scalar {
    fn from_value(value: &Value) -> Option<Scalar> {
        match value {
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => Some(Scalar::Number(n.clone())),
            Value::String(s) => Some(Scalar::Text(s.clone())),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Number(n) => Value::Number(n.clone()),
            Scalar::Text(s) => Value::String(s.clone()),
        }
    }

    /// Whether the JSON value `value` is this scalar (same type; numbers numerically).
    pub fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            (Scalar::Number(a), Value::Number(b)) => number_cmp(a, b) == Some(std::cmp::Ordering::Equal),
            (Scalar::Text(a), Value::String(b)) => a == b,
            _ => false,
        }
    }

    /// `value` compared with this scalar, when both have the same type (numbers, strings).
    fn compare(&self, value: &Value) -> Option<std::cmp::Ordering> {
        match (self, value) {
            (Scalar::Number(a), Value::Number(b)) => number_cmp(b, a),
            (Scalar::Text(a), Value::String(b)) => Some(b.as_bytes().cmp(a.as_bytes())),
            _ => None,
        }
    }
}

/// Numbers compared exactly when both are integers, else as doubles.
pub fn number_cmp(a: &Number, b: &Number) -> Option<std::cmp::Ordering> {
    match (a.as_i64(), b.as_i64()) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    pub fn sql(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }

    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Cmp::Gt => ordering == Greater,
            Cmp::Gte => ordering != Less,
            Cmp::Lt => ordering == Less,
            Cmp::Lte => ordering != Greater,
        }
    }
}

/// A checked regular expression (see [`crate::regex`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern as given.
    pub source: String,
    pub case_insensitive: bool,
}

/// What a leaf of a filter tests about the value at its path.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Some candidate equals the scalar.
    Eq(Scalar),
    /// Missing or null.
    IsNull,
    /// Some candidate of the bound's type compares so (bound: a number or a string).
    Cmp(Cmp, Scalar),
    /// Present (null included).
    Exists,
    /// Some candidate is a string the pattern matches.
    Regex(Pattern),
    /// An array of this many elements.
    Size(u64),
    /// An array with an element the filter holds for (paths start at the element).
    ElemMatch(Box<Filter>),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    True,
    False,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Field(FieldPath, Test),
}

/// Which combinator a list of conditions is under.
#[derive(Clone, Copy)]
enum Combine {
    And,
    Or,
    Nor,
}

impl Filter {
    /// Parses a query (`q`). `null` is the empty query.
    pub fn parse(query: &Value) -> Result<Filter, QueryError> {
        match query {
            Value::Null => Ok(Filter::True),
            Value::Object(map) => parse_document(map, 0),
            _ => Err(QueryError::new(
                None,
                "A query must be a JSON object",
                "Send e.g. {\"status\": \"open\"}; an empty object matches every record.",
            )),
        }
    }

    /// Parses the text of `q`.
    pub fn parse_text(text: &str) -> Result<Filter, QueryError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            QueryError::new(None, format!("The query is not JSON: {e}"), "Send q as a JSON object, URL-encoded.")
        })?;
        Filter::parse(&value)
    }

    /// Both, simplified.
    pub fn and(self, other: Filter) -> Filter {
        match (self, other) {
            (Filter::True, f) | (f, Filter::True) => f,
            (Filter::False, _) | (_, Filter::False) => Filter::False,
            (Filter::And(mut a), Filter::And(b)) => {
                a.extend(b);
                Filter::And(a)
            }
            (Filter::And(mut a), f) | (f, Filter::And(mut a)) => {
                a.push(f);
                Filter::And(a)
            }
            (a, b) => Filter::And(vec![a, b]),
        }
    }

    /// Either, simplified.
    pub fn or(self, other: Filter) -> Filter {
        match (self, other) {
            (Filter::False, f) | (f, Filter::False) => f,
            (Filter::True, _) | (_, Filter::True) => Filter::True,
            (a, b) => Filter::Or(vec![a, b]),
        }
    }

    /// The negation, simplified.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Filter {
        match self {
            Filter::True => Filter::False,
            Filter::False => Filter::True,
            Filter::Not(inner) => *inner,
            f => Filter::Not(Box::new(f)),
        }
    }

    /// Whether the record (its JSON form: data and built-in fields together) matches.
    pub fn matches(&self, record: &Value) -> bool {
        match self {
            Filter::True => true,
            Filter::False => false,
            Filter::And(all) => all.iter().all(|f| f.matches(record)),
            Filter::Or(any) => any.iter().any(|f| f.matches(record)),
            Filter::Not(inner) => !inner.matches(record),
            Filter::Field(path, test) => test.holds(path.resolve(record)),
        }
    }

    /// Every path this filter tests at its top level (not inside `$elemMatch`).
    pub fn paths(&self) -> Vec<&FieldPath> {
        let mut out = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a FieldPath>) {
        match self {
            Filter::And(list) | Filter::Or(list) => list.iter().for_each(|f| f.collect_paths(out)),
            Filter::Not(inner) => inner.collect_paths(out),
            Filter::Field(path, _) => out.push(path),
            Filter::True | Filter::False => {}
        }
    }

    /// This filter with each top-level leaf replaced by `f(path, leaf)`.
    pub fn map_leaves(self, f: &mut impl FnMut(&FieldPath, Filter) -> Filter) -> Filter {
        match self {
            Filter::And(list) => Filter::And(list.into_iter().map(|x| x.map_leaves(f)).collect()),
            Filter::Or(list) => Filter::Or(list.into_iter().map(|x| x.map_leaves(f)).collect()),
            Filter::Not(inner) => Filter::Not(Box::new(inner.map_leaves(f))),
            Filter::Field(path, test) => {
                let leaf_path = path.clone();
                f(&leaf_path, Filter::Field(path, test))
            }
            other => other,
        }
    }
}

impl Test {
    /// Whether the test holds for `value` (`None`: missing).
    pub fn holds(&self, value: Option<&Value>) -> bool {
        match self {
            Test::IsNull => matches!(value, None | Some(Value::Null)),
            Test::Exists => value.is_some(),
            Test::Size(n) => matches!(value, Some(Value::Array(items)) if items.len() as u64 == *n),
            Test::ElemMatch(filter) => {
                matches!(value, Some(Value::Array(items)) if items.iter().any(|item| filter.matches(item)))
            }
            Test::Eq(scalar) => candidates(value).any(|c| scalar.equals(c)),
            Test::Cmp(op, bound) => candidates(value).any(|c| bound.compare(c).is_some_and(|o| op.holds(o))),
            Test::Regex(pattern) => candidates(value).any(|c| {
                c.as_str().is_some_and(|s| crate::regex::is_match(&pattern.source, pattern.case_insensitive, s))
            }),
        }
    }
}

/// The elements of an array, or the value itself; nothing when missing.
fn candidates(value: Option<&Value>) -> Box<dyn Iterator<Item = &Value> + '_> {
    match value {
        None => Box::new(std::iter::empty()),
        Some(Value::Array(items)) => Box::new(items.iter()),
        Some(other) => Box::new(std::iter::once(other)),
    }
}

fn too_deep() -> QueryError {
    QueryError::new(None, format!("The query nests deeper than {MAX_DEPTH} levels"), "Flatten the query.")
}

fn parse_document(map: &Map<String, Value>, depth: usize) -> Result<Filter, QueryError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    let mut all = Vec::with_capacity(map.len());
    for (key, value) in map {
        let filter = match key.as_str() {
            "$and" => parse_list(key, value, Combine::And, depth)?,
            "$or" => parse_list(key, value, Combine::Or, depth)?,
            "$nor" => parse_list(key, value, Combine::Nor, depth)?,
            op if op.starts_with('$') => return Err(QueryError::unsupported(op)),
            field => parse_field(&FieldPath::parse(field)?, value, depth)?,
        };
        all.push(filter);
    }
    Ok(and_all(all))
}

fn and_all(all: Vec<Filter>) -> Filter {
    all.into_iter().fold(Filter::True, Filter::and)
}

fn parse_list(op: &str, value: &Value, combine: Combine, depth: usize) -> Result<Filter, QueryError> {
    let Value::Array(items) = value else { return Err(QueryError::operand(op, "a list of queries")) };
    if items.is_empty() {
        return Err(QueryError::operand(op, "a non-empty list of queries"));
    }
    let mut parts = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(map) = item else { return Err(QueryError::operand(op, "a list of query objects")) };
        parts.push(parse_document(map, depth + 1)?);
    }
    Ok(match combine {
        Combine::And => and_all(parts),
        Combine::Or => parts.into_iter().fold(Filter::False, Filter::or),
        Combine::Nor => parts.into_iter().fold(Filter::False, Filter::or).not(),
    })
}

fn is_operator_object(map: &Map<String, Value>) -> bool {
    !map.is_empty() && map.keys().all(|k| k.starts_with('$'))
}

fn parse_field(path: &FieldPath, value: &Value, depth: usize) -> Result<Filter, QueryError> {
    match value {
        Value::Object(map) if is_operator_object(map) => parse_operators(path, map, depth),
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => Err(QueryError::new(
            Some(map.keys().find(|k| k.starts_with('$')).map(String::as_str).unwrap_or("$eq")),
            format!("The condition on '{path}' mixes operators and field names"),
            "Use only operators ({\"$gt\": 1}) or a dotted path for nested fields (\"a.b\": 1).",
        )),
        Value::Object(_) => Err(QueryError::new(
            Some("$eq"),
            format!("Equality with an object (on '{path}') is not supported"),
            "Compare nested fields one by one with dotted paths, e.g. {\"address.city\": \"Paris\"}.",
        )),
        Value::Array(items) => any_of(path, "$in", items),
        other => equal(path, "$eq", other),
    }
}

fn equal(path: &FieldPath, op: &str, value: &Value) -> Result<Filter, QueryError> {
    match value {
        Value::Null => Ok(Filter::Field(path.clone(), Test::IsNull)),
        Value::Array(_) | Value::Object(_) => Err(QueryError::new(
            Some(op),
            format!("{op} with a list or an object (on '{path}') is not supported"),
            "Compare with a string, a number, a boolean or null; for any of several values use $in.",
        )),
        scalar => Ok(Filter::Field(path.clone(), Test::Eq(Scalar::from_value(scalar).expect("a scalar")))),
    }
}

fn any_of(path: &FieldPath, op: &str, items: &[Value]) -> Result<Filter, QueryError> {
    let mut any = Filter::False;
    for item in items {
        any = any.or(equal(path, op, item)?);
    }
    Ok(any)
}

fn parse_operators(path: &FieldPath, map: &Map<String, Value>, depth: usize) -> Result<Filter, QueryError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    let mut all = Vec::with_capacity(map.len());
    if map.contains_key("$options") && !map.contains_key("$regex") {
        return Err(QueryError::new(Some("$options"), "$options goes with $regex", "Add $regex or drop $options."));
    }
    for (op, operand) in map {
        let field = |test| Filter::Field(path.clone(), test);
        let filter = match op.as_str() {
            "$eq" => equal(path, op, operand)?,
            "$ne" => equal(path, op, operand)?.not(),
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let cmp = match op.as_str() {
                    "$gt" => Cmp::Gt,
                    "$gte" => Cmp::Gte,
                    "$lt" => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                match operand {
                    Value::Number(_) | Value::String(_) => {
                        field(Test::Cmp(cmp, Scalar::from_value(operand).expect("scalar")))
                    }
                    _ => return Err(QueryError::operand(op, "a number or a string")),
                }
            }
            "$in" | "$nin" => {
                let Value::Array(items) = operand else { return Err(QueryError::operand(op, "a list of values")) };
                let any = any_of(path, op, items)?;
                if op == "$in" { any } else { any.not() }
            }
            "$all" => {
                let Value::Array(items) = operand else { return Err(QueryError::operand(op, "a list of values")) };
                if items.is_empty() {
                    Filter::False
                } else {
                    let mut every = Vec::new();
                    for item in items {
                        every.push(equal(path, op, item)?);
                    }
                    and_all(every)
                }
            }
            "$exists" => match operand {
                Value::Bool(true) => field(Test::Exists),
                Value::Bool(false) => field(Test::Exists).not(),
                Value::Number(n) => {
                    if n.as_f64() != Some(0.0) {
                        field(Test::Exists)
                    } else {
                        field(Test::Exists).not()
                    }
                }
                _ => return Err(QueryError::operand(op, "true or false")),
            },
            "$regex" => {
                let Value::String(source) = operand else { return Err(QueryError::operand(op, "a pattern string")) };
                let case_insensitive = match map.get("$options") {
                    None => false,
                    Some(Value::String(o)) if o.is_empty() || o == "i" => o == "i",
                    Some(_) => {
                        return Err(QueryError::new(
                            Some("$options"),
                            "Only the option \"i\" (ignore case) is supported with $regex",
                            "Write \"$options\": \"i\", or leave it out.",
                        ));
                    }
                };
                crate::regex::check(source)?;
                field(Test::Regex(Pattern { source: source.clone(), case_insensitive }))
            }
            "$options" => continue,
            "$size" => match operand.as_u64() {
                Some(n) => field(Test::Size(n)),
                None => return Err(QueryError::operand(op, "a whole number, 0 or more")),
            },
            "$elemMatch" => {
                let Value::Object(inner) = operand else { return Err(QueryError::operand(op, "an object")) };
                if inner.is_empty() {
                    return Err(QueryError::operand(op, "a non-empty object"));
                }
                let element = if is_operator_object(inner) {
                    parse_operators(&FieldPath::empty(), inner, depth + 1)?
                } else {
                    parse_document(inner, depth + 1)?
                };
                field(Test::ElemMatch(Box::new(element)))
            }
            "$not" => match operand {
                Value::Object(inner) if is_operator_object(inner) => parse_operators(path, inner, depth + 1)?.not(),
                _ => return Err(QueryError::operand(op, "an object of operators")),
            },
            other => return Err(QueryError::unsupported(other)),
        };
        all.push(filter);
    }
    Ok(and_all(all))
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub path: FieldPath,
    pub descending: bool,
}

/// The order of a listing: keys, then `id` in the direction of the last key, so that the order
/// is total. Values of different types order as null or missing, numbers, strings, objects,
/// arrays, booleans (objects among themselves, and arrays, are equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    pub keys: Vec<SortKey>,
}

impl Sort {
    /// Newest first: `-created_date`, the SDK's documented default.
    pub fn newest_first() -> Sort {
        Sort { keys: vec![SortKey { path: FieldPath::parse("created_date").expect("a path"), descending: true }] }
    }

    /// Parses `-created_date`, `+title`, `title`, or several joined with commas.
    pub fn parse(text: &str) -> Result<Sort, QueryError> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (descending, name) = match part.as_bytes()[0] {
                b'-' => (true, &part[1..]),
                b'+' => (false, &part[1..]),
                _ => (false, part),
            };
            let path = FieldPath::parse(name).map_err(|_| {
                QueryError::new(
                    Some("sort"),
                    format!("'{part}' is not a sort key"),
                    "Write a field name, '-' before it for descending order: sort=-created_date.",
                )
            })?;
            keys.push(SortKey { path, descending });
        }
        if keys.len() > 8 {
            return Err(QueryError::new(Some("sort"), "At most 8 sort keys are supported", "Sort by fewer fields."));
        }
        Ok(if keys.is_empty() { Sort::newest_first() } else { Sort { keys } })
    }

    /// Whether the last key (and so the `id` tie-break) is descending.
    pub fn last_descending(&self) -> bool {
        self.keys.last().is_some_and(|k| k.descending)
    }
}

/// A listing: the filter (with access rules already ANDed in), the order and the page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub filter: Filter,
    pub sort: Sort,
    /// `None`: no limit (the caller caps pages).
    pub limit: Option<u64>,
    pub skip: u64,
}

/// The rank of a JSON value's type in the sort order.
pub fn type_rank(value: Option<&Value>) -> u8 {
    match value {
        None | Some(Value::Null) => 0,
        Some(Value::Number(_)) => 1,
        Some(Value::String(_)) => 2,
        Some(Value::Object(_)) => 3,
        Some(Value::Array(_)) => 4,
        Some(Value::Bool(_)) => 5,
    }
}

/// How two values compare in the sort order (see [`Sort`]).
pub fn sort_cmp(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    type_rank(a).cmp(&type_rank(b)).then_with(|| match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => number_cmp(x, y).unwrap_or(Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.as_bytes().cmp(y.as_bytes()),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => Equal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(value: Value) -> Filter {
        Filter::parse(&value).unwrap()
    }

    fn err(value: Value) -> QueryError {
        Filter::parse(&value).unwrap_err()
    }

    #[test]
    fn equality_lists_and_null() {
        let record = json!({"status": "open", "tags": ["a", "b"], "n": 5, "none": null, "nested": {"x": 1}});
        assert!(q(json!({"status": "open"})).matches(&record));
        assert!(!q(json!({"status": "done"})).matches(&record));
        assert!(q(json!({"status": ["done", "open"]})).matches(&record), "a list is any of");
        assert!(q(json!({"tags": "a"})).matches(&record), "arrays match by element");
        assert!(q(json!({"missing": null, "none": null})).matches(&record));
        assert!(!q(json!({"status": null})).matches(&record));
        assert!(q(json!({"n": 5.0})).matches(&record));
        assert!(!q(json!({"n": "5"})).matches(&record), "types are strict");
        assert!(q(json!({"nested.x": 1})).matches(&record));
        assert!(q(json!({})).matches(&record));
    }

    #[test]
    fn operators() {
        let record = json!({"n": 5, "s": "beta", "tags": ["a", "b"], "items": [{"q": 1}, {"q": 7}]});
        let yes = [
            json!({"n": {"$gt": 4, "$lte": 5}}),
            json!({"s": {"$gt": "alpha"}}),
            json!({"n": {"$ne": 4}}),
            json!({"missing": {"$ne": 4}}),
            json!({"n": {"$in": [1, 5]}}),
            json!({"n": {"$nin": [1, 2]}}),
            json!({"n": {"$exists": true}, "x": {"$exists": false}}),
            json!({"s": {"$regex": "^BE", "$options": "i"}}),
            json!({"tags": {"$all": ["b", "a"]}}),
            json!({"tags": {"$size": 2}}),
            json!({"items": {"$elemMatch": {"q": {"$gt": 5}}}}),
            json!({"tags": {"$elemMatch": {"$eq": "b"}}}),
            json!({"n": {"$not": {"$gt": 10}}}),
            json!({"$or": [{"n": 1}, {"s": "beta"}]}),
            json!({"$nor": [{"n": 1}, {"s": "x"}]}),
            json!({"$and": [{"n": 5}, {"s": "beta"}]}),
        ];
        for query in yes {
            assert!(q(query.clone()).matches(&record), "{query}");
        }
        let no = [
            json!({"n": {"$gt": "4"}}),
            json!({"tags": {"$all": []}}),
            json!({"tags": {"$all": ["a", "c"]}}),
            json!({"s": {"$regex": "^BE"}}),
            json!({"items": {"$elemMatch": {"q": {"$gt": 7}}}}),
        ];
        for query in no {
            assert!(!q(query.clone()).matches(&record), "{query}");
        }
    }

    #[test]
    fn what_cannot_be_expressed_names_the_operator() {
        assert_eq!(err(json!({"$where": "1"})).operator.as_deref(), Some("$where"));
        assert_eq!(err(json!({"a": {"$near": [1, 2]}})).operator.as_deref(), Some("$near"));
        assert_eq!(err(json!({"a": {"x": 1}})).operator.as_deref(), Some("$eq"));
        assert_eq!(err(json!({"a": {"$gt": true}})).operator.as_deref(), Some("$gt"));
        assert_eq!(err(json!({"a": {"$in": 1}})).operator.as_deref(), Some("$in"));
        assert_eq!(err(json!({"a": {"$eq": [1]}})).operator.as_deref(), Some("$eq"));
        assert_eq!(err(json!({"$or": []})).operator.as_deref(), Some("$or"));
        assert_eq!(err(json!({"a": {"$regex": "(?=x)"}})).operator.as_deref(), Some("$regex"));
        assert_eq!(err(json!({"a": {"$regex": "x", "$options": "m"}})).operator.as_deref(), Some("$options"));
        assert_eq!(err(json!({"a b": 1})).operator.as_deref(), Some("a b"));
        assert!(Filter::parse(&json!([1])).is_err());
        assert!(Filter::parse_text("{nope").is_err());
    }

    #[test]
    fn sorts() {
        assert_eq!(Sort::parse("").unwrap(), Sort::newest_first());
        let sort = Sort::parse("-a, +b.c,d").unwrap();
        assert_eq!(sort.keys.len(), 3);
        assert!(sort.keys[0].descending && !sort.keys[1].descending && !sort.last_descending());
        assert_eq!(Sort::parse("-").unwrap_err().operator.as_deref(), Some("sort"));
        let values = [json!(true), json!([1]), json!({}), json!("b"), json!("a"), json!(2), json!(1.5), json!(null)];
        let mut sorted: Vec<&Value> = values.iter().collect();
        sorted.sort_by(|a, b| sort_cmp(Some(a), Some(b)));
        assert_eq!(
            sorted,
            [&json!(null), &json!(1.5), &json!(2), &json!("a"), &json!("b"), &json!({}), &json!([1]), &json!(true)]
        );
    }
}
