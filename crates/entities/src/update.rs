//! The update operators of `updateMany` (reference §3.2): `$set $unset $inc $mul $min $max
//! $currentDate $addToSet $push $pull $rename`, parsed once ([`Update::parse`]) and applied to
//! each record's data ([`Update::apply`]). A body without operators is a `$set`. One field may
//! appear in one operator only; built-in fields cannot be changed. Paths may be dotted
//! (`address.city`), reaching into objects (missing ones are made).

use serde_json::{Map, Number, Value};

use crate::error::{QueryError, ValidationError};
use crate::query::{FieldPath, Filter, number_cmp};
use crate::record::BuiltIn;

/// One operator applied to one field.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Set(Value),
    Unset,
    Inc(Number),
    Mul(Number),
    Min(Value),
    Max(Value),
    CurrentDate,
    AddToSet(Vec<Value>),
    Push(Vec<Value>),
    /// Elements equal to the value or passing the operators (a filter on `{"v": element}`), or
    /// objects passing a query (`Doc`).
    Pull(Pull),
    Rename(FieldPath),
}

/// What `$pull` removes.
#[derive(Debug, Clone, PartialEq)]
enum Pull {
    Values(Filter),
    Doc(Filter),
}

impl Pull {
    fn removes(&self, item: &Value) -> bool {
        match self {
            Pull::Values(filter) => filter.matches(&serde_json::json!({ "v": item })),
            Pull::Doc(filter) => item.is_object() && filter.matches(item),
        }
    }
}

/// A parsed update.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    ops: Vec<(FieldPath, Op)>,
}

fn bad(op: &str, message: String) -> QueryError {
    QueryError::new(
        Some(op),
        message,
        "Write e.g. {\"$set\": {\"status\": \"done\"}, \"$inc\": {\"count\": 1}}; each field in one operator.",
    )
}

/// `{$each: [...]}`'s items, or the one value.
fn each(value: &Value) -> Vec<Value> {
    match value.as_object().and_then(|m| m.get("$each")).and_then(Value::as_array) {
        Some(items) => items.clone(),
        None => vec![value.clone()],
    }
}

impl Update {
    /// Parses the `data` of `updateMany`.
    pub fn parse(data: &Value) -> Result<Update, QueryError> {
        let Value::Object(map) = data else { return Err(bad("$set", "The update must be a JSON object".into())) };
        let operators = map.keys().any(|k| k.starts_with('$'));
        if operators && map.keys().any(|k| !k.starts_with('$')) {
            return Err(bad("$set", "The update mixes operators and plain fields".into()));
        }
        let mut ops: Vec<(FieldPath, Op)> = Vec::new();
        let groups: Vec<(&str, &Map<String, Value>)> = if operators {
            let mut out = Vec::new();
            for (op, fields) in map {
                let fields = fields.as_object().ok_or_else(|| bad(op, format!("{op} needs an object of fields")))?;
                out.push((op.as_str(), fields));
            }
            out
        } else {
            vec![("$set", map)]
        };
        for (op, fields) in groups {
            for (field, value) in fields {
                let path = FieldPath::parse(field)?;
                if BuiltIn::parse(&path.segments()[0]).is_some() {
                    return Err(bad(op, format!("'{field}' is a built-in field; it cannot be updated")));
                }
                if ops.iter().any(|(p, _)| p == &path) {
                    return Err(bad(op, format!("'{field}' appears in more than one operator")));
                }
                let number = || match value {
                    Value::Number(n) => Ok(n.clone()),
                    _ => Err(bad(op, format!("{op} needs a number for '{field}'"))),
                };
                let parsed = match op {
                    "$set" => Op::Set(value.clone()),
                    "$unset" => Op::Unset,
                    "$inc" => Op::Inc(number()?),
                    "$mul" => Op::Mul(number()?),
                    "$min" => Op::Min(value.clone()),
                    "$max" => Op::Max(value.clone()),
                    "$currentDate" => Op::CurrentDate,
                    "$addToSet" => Op::AddToSet(each(value)),
                    "$push" => Op::Push(each(value)),
                    "$pull" => Op::Pull(match value {
                        Value::Object(inner) if !inner.is_empty() && inner.keys().all(|k| k.starts_with('$')) => {
                            Pull::Values(Filter::parse(&serde_json::json!({ "v": value }))?)
                        }
                        Value::Object(_) => Pull::Doc(Filter::parse(value)?),
                        other => Pull::Values(Filter::parse(&serde_json::json!({ "v": { "$eq": other } }))?),
                    }),
                    "$rename" => {
                        let to =
                            value.as_str().ok_or_else(|| bad(op, format!("$rename needs a new name for '{field}'")))?;
                        let to = FieldPath::parse(to)?;
                        if BuiltIn::parse(&to.segments()[0]).is_some() {
                            return Err(bad(op, format!("'{to}' is a built-in field")));
                        }
                        Op::Rename(to)
                    }
                    other => {
                        return Err(QueryError::new(
                            Some(other),
                            format!("The update operator {other} is not supported"),
                            "Use $set $unset $inc $mul $min $max $currentDate $addToSet $push $pull $rename.",
                        ));
                    }
                };
                ops.push((path, parsed));
            }
        }
        Ok(Update { ops })
    }

    /// The top-level fields this update may change.
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (path, op) in &self.ops {
            out.push(path.segments()[0].clone());
            if let Op::Rename(to) = op {
                out.push(to.segments()[0].clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// `data` with the update applied; `now` is the time `$currentDate` sets.
    pub fn apply(&self, data: &Map<String, Value>, now: &str) -> Result<Map<String, Value>, ValidationError> {
        let mut root = Value::Object(data.clone());
        for (path, op) in &self.ops {
            let field = path.to_string();
            let current = path.resolve(&root).cloned();
            let new = match op {
                Op::Set(v) => Some(v.clone()),
                Op::Unset => None,
                Op::CurrentDate => Some(Value::String(now.to_string())),
                Op::Inc(n) | Op::Mul(n) => {
                    let by = n.as_f64().unwrap_or(0.0);
                    let base = match &current {
                        None | Some(Value::Null) => None,
                        Some(Value::Number(c)) => Some(c.clone()),
                        Some(_) => {
                            return Err(ValidationError::new(
                                &field,
                                "is not a number, so it cannot be incremented or multiplied",
                            ));
                        }
                    };
                    let increment = matches!(op, Op::Inc(_));
                    let result = match (increment, base) {
                        (true, None) => Value::Number(n.clone()),
                        (false, None) => serde_json::json!(0),
                        (true, Some(c)) => match (c.as_i64(), n.as_i64()) {
                            (Some(a), Some(b)) if a.checked_add(b).is_some() => serde_json::json!(a + b),
                            _ => serde_json::json!(c.as_f64().unwrap_or(0.0) + by),
                        },
                        (false, Some(c)) => match (c.as_i64(), n.as_i64()) {
                            (Some(a), Some(b)) if a.checked_mul(b).is_some() => serde_json::json!(a * b),
                            _ => serde_json::json!(c.as_f64().unwrap_or(0.0) * by),
                        },
                    };
                    Some(result)
                }
                Op::Min(v) | Op::Max(v) => {
                    let wants_min = matches!(op, Op::Min(_));
                    match &current {
                        None | Some(Value::Null) => Some(v.clone()),
                        Some(c) => {
                            let order = match (c, v) {
                                (Value::Number(a), Value::Number(b)) => number_cmp(b, a),
                                (Value::String(a), Value::String(b)) => Some(b.as_bytes().cmp(a.as_bytes())),
                                _ => None,
                            };
                            match order {
                                Some(std::cmp::Ordering::Less) if wants_min => Some(v.clone()),
                                Some(std::cmp::Ordering::Greater) if !wants_min => Some(v.clone()),
                                Some(_) => Some(c.clone()),
                                None => {
                                    return Err(ValidationError::new(
                                        &field,
                                        "cannot be compared with the value given",
                                    ));
                                }
                            }
                        }
                    }
                }
                Op::AddToSet(items) | Op::Push(items) => {
                    let mut list = match current {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(list)) => list,
                        Some(_) => return Err(ValidationError::new(&field, "is not an array")),
                    };
                    for item in items {
                        if matches!(op, Op::Push(_)) || !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                    Some(Value::Array(list))
                }
                Op::Pull(pull) => match current {
                    None | Some(Value::Null) => current,
                    Some(Value::Array(list)) => {
                        Some(Value::Array(list.into_iter().filter(|item| !pull.removes(item)).collect()))
                    }
                    Some(_) => return Err(ValidationError::new(&field, "is not an array")),
                },
                Op::Rename(to) => {
                    if let Some(value) = current {
                        remove(&mut root, path);
                        set(&mut root, to, value);
                    }
                    continue;
                }
            };
            match new {
                Some(value) => set(&mut root, path, value),
                None => remove(&mut root, path),
            }
        }
        match root {
            Value::Object(map) => Ok(map),
            _ => Ok(Map::new()),
        }
    }
}

fn set(root: &mut Value, path: &FieldPath, value: Value) {
    let mut node = root;
    let (last, parents) = path.segments().split_last().expect("a path has a segment");
    for segment in parents {
        let Value::Object(map) = node else { return };
        let child = map.entry(segment.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        node = child;
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
    }
}

fn remove(root: &mut Value, path: &FieldPath) {
    let mut node = root;
    let (last, parents) = path.segments().split_last().expect("a path has a segment");
    for segment in parents {
        match node.as_object_mut().and_then(|m| m.get_mut(segment)) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(update: Value, data: Value) -> Result<Value, ValidationError> {
        Update::parse(&update).unwrap().apply(data.as_object().unwrap(), "2024-01-01T00:00:00.000Z").map(Value::Object)
    }

    #[test]
    fn every_operator() {
        let data =
            json!({"a": 1, "b": 2.5, "s": "m", "tags": ["x", "y"], "nums": [1, 5, 9], "old": true, "o": {"k": 1}});
        let out = apply(
            json!({
                "$set": {"o.k": 2, "new.deep": "z"}, "$unset": {"b": ""}, "$inc": {"a": 2, "c": 1}, "$mul": {"m": 3},
                "$min": {"s": "a"}, "$max": {"mx": 4}, "$currentDate": {"at": true},
                "$addToSet": {"tags": {"$each": ["x", "z"]}}, "$pull": {"nums": {"$gte": 5}}, "$rename": {"old": "renamed"}
            }),
            data,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"a": 3, "c": 1, "m": 0, "s": "a", "mx": 4, "at": "2024-01-01T00:00:00.000Z", "tags": ["x", "y", "z"],
                   "nums": [1], "renamed": true, "o": {"k": 2}, "new": {"deep": "z"}})
        );
        assert_eq!(
            apply(json!({"$push": {"tags": "x"}, "$pull": {"nums": 5}}), json!({"tags": ["x"], "nums": [5, 6]}))
                .unwrap(),
            json!({"tags": ["x", "x"], "nums": [6]})
        );
        assert_eq!(
            apply(json!({"title": "plain"}), json!({"n": 1})).unwrap(),
            json!({"n": 1, "title": "plain"}),
            "no operators: $set"
        );
        assert_eq!(
            apply(json!({"$pull": {"items": {"q": 1}}}), json!({"items": [{"q": 1}, {"q": 2}]})).unwrap(),
            json!({"items": [{"q": 2}]})
        );
        assert_eq!(apply(json!({"$inc": {"s": 1}}), json!({"s": "x"})).unwrap_err().field, "s");
    }

    #[test]
    fn bad_updates_name_the_operator() {
        for (update, op) in [
            (json!({"$set": {"a": 1}, "$inc": {"a": 1}}), "$set"),
            (json!({"$set": {"id": "x"}}), "$set"),
            (json!({"$inc": {"a": "1"}}), "$inc"),
            (json!({"$where": {"a": 1}}), "$where"),
            (json!({"$set": {"a": 1}, "b": 2}), "$set"),
        ] {
            let e = Update::parse(&update).unwrap_err();
            assert_eq!(e.operator.as_deref(), Some(op), "{update}: {e}");
        }
    }
}
