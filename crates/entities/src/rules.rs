//! Access rules (reference §3.4): an entity's `rls` and its properties' field-level rules,
//! resolved for a caller into [`Filter`]s.
//!
//! A rule is `true`/`false`; `null`, `""` or `{}` (allow); or a condition object whose keys
//! all must hold:
//!
//! * `user_condition`: a query about the caller (`{"role": "admin"}`,
//!   `{"role": {"$in": ["owner", "admin"]}}`, `{"data.team": "red"}`), decided before the query
//!   runs: it becomes `TRUE` or `FALSE`. Anonymous callers fail it.
//! * `created_by`, `created_by_id`, `data.<field>` (the record's field) or a plain field name:
//!   a condition on the record in the query language (a value, a list, operators), which is
//!   ANDed into the SQL of the query, so limits and counts are right.
//! * `$and`, `$or`, `$nor`: lists of conditions.
//!
//! Strings may hold templates: `{{user.email}}`, `{{user.id}}`, `{{user.role}}`,
//! `{{user.<custom field>}}`, `{{user.data.<custom field>}}`. A string that is exactly one
//! template takes the user's value as it is (a number stays a number); otherwise it is spliced
//! in as text. A template that cannot be filled (an anonymous caller, a user without that
//! field) makes its condition false: a missing value never widens access.
//!
//! The service role and admin users bypass every rule ([`Principal::bypass`]). Entity rules:
//! `read` for reading, `create`/`update`/`delete` for writing, each falling back to `write`,
//! everything allowed when absent; updating or deleting a record needs its `read` rule too. Field rules: `read` hides the field (and a query on it sees
//! it as missing), `create`/`update` (falling back to `write`) guard setting it.

use serde_json::{Map, Value};

use crate::error::QueryError;
use crate::query::{FieldPath, Filter};
use crate::schema::EntitySchema;

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Allow,
    Deny,
    When(Cond),
}

/// A rule's condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    NoneOf(Vec<Cond>),
    /// A query about the caller.
    User(Map<String, Value>),
    /// A query about the record: `{key: value}` in the query language, templates unfilled.
    Record(String, Value),
}

impl Rule {
    /// Reads a rule.
    pub fn parse(value: &Value) -> Result<Rule, String> {
        match value {
            Value::Bool(true) | Value::Null => Ok(Rule::Allow),
            Value::Bool(false) => Ok(Rule::Deny),
            Value::String(s) if s.is_empty() => Ok(Rule::Allow),
            Value::Object(map) if map.is_empty() => Ok(Rule::Allow),
            Value::Object(map) => Ok(Rule::When(Cond::parse(map)?)),
            other => Err(format!("a rule must be true, false or a condition object, not {other}")),
        }
    }

    /// The filter a record must pass for `who`.
    pub fn resolve(&self, who: &Principal) -> Result<Filter, QueryError> {
        if who.bypass {
            return Ok(Filter::True);
        }
        match self {
            Rule::Allow => Ok(Filter::True),
            Rule::Deny => Ok(Filter::False),
            Rule::When(cond) => cond.resolve(who),
        }
    }
}

impl Cond {
    fn parse(map: &Map<String, Value>) -> Result<Cond, String> {
        let mut all = Vec::new();
        for (key, value) in map {
            let cond = match key.as_str() {
                "$and" | "$or" | "$nor" => {
                    let items = value
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or(format!("{key} needs a list of conditions"))?;
                    let mut parts = Vec::new();
                    for item in items {
                        let map = item.as_object().ok_or(format!("{key} needs a list of condition objects"))?;
                        parts.push(Cond::parse(map)?);
                    }
                    match key.as_str() {
                        "$and" => Cond::All(parts),
                        "$or" => Cond::Any(parts),
                        _ => Cond::NoneOf(parts),
                    }
                }
                "user_condition" => match value {
                    Value::Object(map) => Cond::User(map.clone()),
                    _ => return Err("user_condition must be an object".into()),
                },
                other if other.starts_with('$') => return Err(format!("{other} is not a rule combinator")),
                field => {
                    let name = field.strip_prefix("data.").unwrap_or(field);
                    FieldPath::parse(name).map_err(|e| e.message)?;
                    Cond::Record(name.to_string(), value.clone())
                }
            };
            all.push(cond);
        }
        Ok(if all.len() == 1 { all.pop().expect("one") } else { Cond::All(all) })
    }

    fn resolve(&self, who: &Principal) -> Result<Filter, QueryError> {
        Ok(match self {
            Cond::All(parts) => {
                let mut out = Filter::True;
                for part in parts {
                    out = out.and(part.resolve(who)?);
                }
                out
            }
            Cond::Any(parts) => {
                let mut out = Filter::False;
                for part in parts {
                    out = out.or(part.resolve(who)?);
                }
                out
            }
            Cond::NoneOf(parts) => Cond::Any(parts.clone()).resolve(who)?.not(),
            Cond::User(query) => {
                let Some(user) = &who.user else { return Ok(Filter::False) };
                let Some(query) = fill(&Value::Object(query.clone()), Some(user)) else { return Ok(Filter::False) };
                if Filter::parse(&query)?.matches(user) { Filter::True } else { Filter::False }
            }
            Cond::Record(field, value) => match fill(value, who.user.as_ref()) {
                None => Filter::False,
                Some(value) => {
                    let mut doc = Map::new();
                    doc.insert(field.clone(), value);
                    Filter::parse(&Value::Object(doc))?
                }
            },
        })
    }
}

/// `value` with its templates filled from `user`; `None` when one cannot be.
fn fill(value: &Value, user: Option<&Value>) -> Option<Value> {
    match value {
        Value::String(text) => fill_text(text, user),
        Value::Array(items) => items.iter().map(|v| fill(v, user)).collect::<Option<Vec<_>>>().map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), fill(v, user)?);
            }
            Some(Value::Object(out))
        }
        other => Some(other.clone()),
    }
}

fn fill_text(text: &str, user: Option<&Value>) -> Option<Value> {
    if !text.contains("{{") {
        return Some(Value::String(text.to_string()));
    }
    let lookup = |name: &str| -> Option<Value> {
        let path = name.trim().strip_prefix("user.")?;
        let value = FieldPath::parse(path).ok()?.resolve(user?)?;
        (!value.is_null()).then(|| value.clone())
    };
    let trimmed = text.trim();
    if let Some(inner) = trimmed.strip_prefix("{{").and_then(|t| t.strip_suffix("}}"))
        && !inner.contains("{{")
    {
        return lookup(inner);
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}")? + start;
        match lookup(&rest[start + 2..end])? {
            Value::String(s) => out.push_str(&s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Some(Value::String(out))
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The user (its JSON as the API shows it, custom fields also under `data`), or `None`.
    pub user: Option<Value>,
    /// The service role and admin users: no rule applies.
    pub bypass: bool,
}

impl Principal {
    /// The service role (a function's `asServiceRole`).
    pub fn service() -> Principal {
        Principal { user: None, bypass: true }
    }

    pub fn anonymous() -> Principal {
        Principal { user: None, bypass: false }
    }

    /// A user, from its JSON (`id`, `email`, `role`, custom fields). Admins bypass the rules.
    /// Custom fields are also put under `data` (unless the JSON has one), for
    /// `{{user.data.x}}`.
    pub fn user(mut json: Value) -> Principal {
        let admin = json.get("role").and_then(Value::as_str) == Some("admin");
        if let Value::Object(map) = &mut json
            && !map.contains_key("data")
        {
            const OWN: [&str; 13] = [
                "id",
                "email",
                "full_name",
                "role",
                "_app_role",
                "is_verified",
                "disabled",
                "app_id",
                "is_service",
                "created_date",
                "updated_date",
                "created_by",
                "collaborator_role",
            ];
            let custom: Map<String, Value> =
                map.iter().filter(|(k, _)| !OWN.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
            map.insert("data".into(), Value::Object(custom));
        }
        Principal { user: Some(json), bypass: admin }
    }
}

/// An entity's `rls`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityRules {
    pub create: Option<Rule>,
    pub read: Option<Rule>,
    pub update: Option<Rule>,
    pub delete: Option<Rule>,
    pub write: Option<Rule>,
}

/// A property's field-level `rls`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldRules {
    pub read: Option<Rule>,
    pub create: Option<Rule>,
    pub update: Option<Rule>,
    pub write: Option<Rule>,
}

fn rule_of(map: &Map<String, Value>, key: &str) -> Result<Option<Rule>, String> {
    map.get(key).map(|v| Rule::parse(v).map_err(|e| format!("{key}: {e}"))).transpose()
}

impl EntityRules {
    pub fn parse(value: &Value) -> Result<EntityRules, String> {
        let Value::Object(map) = value else {
            return if value.is_null() { Ok(EntityRules::default()) } else { Err("rls must be an object".into()) };
        };
        Ok(EntityRules {
            create: rule_of(map, "create")?,
            read: rule_of(map, "read")?,
            update: rule_of(map, "update")?,
            delete: rule_of(map, "delete")?,
            write: rule_of(map, "write")?,
        })
    }
}

impl FieldRules {
    pub fn parse(value: &Value) -> Result<FieldRules, String> {
        let Value::Object(map) = value else { return Err("rls must be an object".into()) };
        Ok(FieldRules {
            read: rule_of(map, "read")?,
            create: rule_of(map, "create")?,
            update: rule_of(map, "update")?,
            write: rule_of(map, "write")?,
        })
    }
}

/// A write's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Create,
    Update,
    Delete,
}

/// The rules of one entity for one caller.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub schema: &'a EntitySchema,
    pub who: &'a Principal,
}

impl<'a> Access<'a> {
    pub fn new(schema: &'a EntitySchema, who: &'a Principal) -> Access<'a> {
        Access { schema, who }
    }

    fn entity_rule(&self, write: Option<Write>) -> Option<&'a Rule> {
        let rules = &self.schema.rules;
        match write {
            None => rules.read.as_ref(),
            Some(Write::Create) => rules.create.as_ref().or(rules.write.as_ref()),
            Some(Write::Update) => rules.update.as_ref().or(rules.write.as_ref()),
            Some(Write::Delete) => rules.delete.as_ref().or(rules.write.as_ref()),
        }
    }

    /// What a record must pass to be read (`None`) or written by this caller. Updating or
    /// deleting a record also needs reading it: a caller cannot change what it cannot see.
    pub fn records(&self, write: Option<Write>) -> Result<Filter, QueryError> {
        let own = self.entity_rule(write).map_or(Ok(Filter::True), |rule| rule.resolve(self.who))?;
        match write {
            Some(Write::Update | Write::Delete) => Ok(self.records(None)?.and(own)),
            _ => Ok(own),
        }
    }

    /// `query` as this caller may run it: every test of a field it may not read sees the field
    /// as missing, and the read rule is ANDed in.
    pub fn readable(&self, query: Filter) -> Result<Filter, QueryError> {
        Ok(self.guard_fields(query)?.and(self.records(None)?))
    }

    /// `query` with tests of fields this caller may not read (for some records) made to see
    /// those fields as missing there.
    pub fn guard_fields(&self, query: Filter) -> Result<Filter, QueryError> {
        if self.who.bypass {
            return Ok(query);
        }
        let mut guards = Vec::new();
        for (name, rules) in self.schema.field_rules() {
            if let Some(rule) = &rules.read {
                guards.push((name.to_string(), rule.resolve(self.who)?));
            }
        }
        if guards.is_empty() {
            return Ok(query);
        }
        Ok(query.map_leaves(&mut |path, leaf| {
            let guard = path.segments().first().and_then(|first| guards.iter().find(|(n, _)| n == first));
            match (guard, &leaf) {
                (Some((_, readable)), Filter::Field(_, test)) => {
                    if test.holds(None) {
                        readable.clone().not().or(leaf)
                    } else {
                        readable.clone().and(leaf)
                    }
                }
                _ => leaf,
            }
        }))
    }

    /// Removes from `record` (its JSON) the fields this caller may not read.
    pub fn hide_fields(&self, record: &mut Value) -> Result<(), QueryError> {
        if self.who.bypass {
            return Ok(());
        }
        let mut hidden = Vec::new();
        for (name, rules) in self.schema.field_rules() {
            if let Some(rule) = &rules.read
                && !rule.resolve(self.who)?.matches(record)
            {
                hidden.push(name.to_string());
            }
        }
        if let Value::Object(map) = record {
            for name in hidden {
                map.remove(&name);
            }
        }
        Ok(())
    }

    /// Whether this caller may create `record` (its JSON, as it would be stored).
    pub fn may_create(&self, record: &Value) -> Result<bool, QueryError> {
        Ok(self.records(Some(Write::Create))?.matches(record))
    }

    /// The first of `fields` this caller may not set on `record` (the new record for a
    /// create, the stored one for an update).
    pub fn forbidden_field<'f>(
        &self,
        write: Write,
        fields: impl IntoIterator<Item = &'f str>,
        record: &Value,
    ) -> Result<Option<&'f str>, QueryError> {
        if self.who.bypass {
            return Ok(None);
        }
        for field in fields {
            let Some(rules) = self.schema.properties.get(field).and_then(|p| p.rules.as_ref()) else { continue };
            let rule = match write {
                Write::Create => rules.create.as_ref().or(rules.write.as_ref()),
                _ => rules.update.as_ref().or(rules.write.as_ref()),
            };
            if let Some(rule) = rule
                && !rule.resolve(self.who)?.matches(record)
            {
                return Ok(Some(field));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ann() -> Principal {
        Principal::user(json!({"id": "u1", "email": "ann@x.test", "role": "user", "team_id": "red", "level": 3}))
    }

    fn rule(value: Value) -> Rule {
        Rule::parse(&value).unwrap()
    }

    #[test]
    fn templates_user_conditions_and_combinators() {
        let mine = json!({"created_by": "ann@x.test", "team_id": "red", "created_by_id": "u1"});
        let other = json!({"created_by": "bob@x.test", "team_id": "blue", "created_by_id": "u2"});
        let cases = [
            (json!({"created_by": "{{user.email}}"}), true, false),
            (json!({"created_by_id": "{{user.id}}"}), true, false),
            (json!({"data.team_id": "{{user.data.team_id}}"}), true, false),
            (json!({"team_id": "{{user.team_id}}"}), true, false),
            (json!({"user_condition": {"role": "user"}}), true, true),
            (json!({"user_condition": {"role": {"$in": ["owner", "admin"]}}}), false, false),
            (json!({"user_condition": {"data.level": {"$gte": 3}}}), true, true),
            (json!({"$or": [{"created_by": "{{user.email}}"}, {"team_id": "blue"}]}), true, true),
            (json!({"$nor": [{"team_id": "blue"}]}), true, false),
            (json!({"created_by": "{{user.email}}", "user_condition": {"role": "user"}}), true, false),
            (json!({"team_id": "{{user.data.missing}}"}), false, false),
            (json!({"created_by": "x-{{user.id}}"}), false, false),
            (json!(true), true, true),
            (json!({}), true, true),
            (json!(false), false, false),
        ];
        for (value, sees_mine, sees_other) in cases {
            let filter = rule(value.clone()).resolve(&ann()).unwrap();
            assert_eq!((filter.matches(&mine), filter.matches(&other)), (sees_mine, sees_other), "{value}");
        }
        let anonymous = rule(json!({"created_by": "{{user.email}}"})).resolve(&Principal::anonymous()).unwrap();
        assert_eq!(anonymous, Filter::False);
        assert_eq!(rule(json!(false)).resolve(&Principal::service()).unwrap(), Filter::True);
        let admin = Principal::user(json!({"id": "a", "role": "admin"}));
        assert_eq!(rule(json!(false)).resolve(&admin).unwrap(), Filter::True);
        assert!(Rule::parse(&json!("admins")).is_err());
        assert!(Rule::parse(&json!({"$where": []})).is_err());
    }

    #[test]
    fn field_rules_hide_fields_and_guard_queries() {
        let schema = EntitySchema::parse(
            "Pay",
            &json!({"properties": {
                "salary": {"type": "number", "rls": {"read": {"created_by": "{{user.email}}"}, "write": false}},
                "title": {"type": "string"}
            }, "rls": {"create": {"user_condition": {"role": "user"}}, "read": true}}),
        )
        .unwrap();
        let who = ann();
        let access = Access::new(&schema, &who);
        let mine = json!({"created_by": "ann@x.test", "salary": 10, "title": "a"});
        let other = json!({"created_by": "bob@x.test", "salary": 10, "title": "b"});
        let query = access.readable(Filter::parse(&json!({"salary": 10})).unwrap()).unwrap();
        assert!(query.matches(&mine) && !query.matches(&other), "a hidden field is missing to queries");
        let query = access.readable(Filter::parse(&json!({"salary": {"$exists": false}})).unwrap()).unwrap();
        assert!(!query.matches(&mine) && query.matches(&other));
        let mut shown = other.clone();
        access.hide_fields(&mut shown).unwrap();
        assert!(shown.get("salary").is_none() && shown["title"] == "b");
        assert!(access.may_create(&mine).unwrap());
        assert!(!Access::new(&schema, &Principal::anonymous()).may_create(&mine).unwrap());
        assert_eq!(access.forbidden_field(Write::Update, ["title", "salary"], &mine).unwrap(), Some("salary"));
        assert_eq!(
            Access::new(&schema, &Principal::service()).forbidden_field(Write::Update, ["salary"], &mine).unwrap(),
            None
        );
    }
}
