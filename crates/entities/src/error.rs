//! What can be wrong with a schema, a record or a query, and whose fault it is (always the
//! caller's: these are 4xx answers).

/// A query (`q`, `sort`, a rule's condition) this crate cannot express or that is malformed:
/// answered `400`. `operator` names the operator or field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// The operator (`$where`, `$gt`) or part (`sort`) the message is about.
    pub operator: Option<String>,
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl QueryError {
    pub fn new(operator: Option<&str>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        QueryError { operator: operator.map(str::to_string), message: message.into(), hint: hint.into() }
    }

    /// An operator the language does not have.
    pub fn unsupported(operator: &str) -> Self {
        QueryError::new(
            Some(operator),
            format!("The query operator {operator} is not supported"),
            "Use $eq $ne $gt $gte $lt $lte $in $nin $exists $regex $all $size $elemMatch $not, and $and $or $nor \
             at the top of a condition.",
        )
    }

    /// An operator given an operand of the wrong kind.
    pub fn operand(operator: &str, wants: &str) -> Self {
        QueryError::new(
            Some(operator),
            format!("{operator} needs {wants}"),
            format!("Write e.g. {}", example(operator)),
        )
    }
}

fn example(operator: &str) -> &'static str {
    match operator {
        "$in" | "$nin" => "{\"status\": {\"$in\": [\"open\", \"done\"]}}",
        "$all" => "{\"tags\": {\"$all\": [\"a\", \"b\"]}}",
        "$size" => "{\"tags\": {\"$size\": 2}}",
        "$exists" => "{\"email\": {\"$exists\": true}}",
        "$regex" => "{\"title\": {\"$regex\": \"^draft\", \"$options\": \"i\"}}",
        "$elemMatch" => "{\"items\": {\"$elemMatch\": {\"qty\": {\"$gt\": 1}}}}",
        "$not" => "{\"price\": {\"$not\": {\"$gt\": 10}}}",
        "$and" | "$or" | "$nor" => "{\"$or\": [{\"a\": 1}, {\"b\": 2}]}",
        "$gt" | "$gte" | "$lt" | "$lte" => "{\"price\": {\"$gte\": 10}}",
        _ => "{\"field\": {\"$eq\": \"value\"}}",
    }
}

/// A record that does not fit its entity's schema: answered `422` with the body of reference
/// §3.3, `message` = `Error in field <field>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Error in field {field}: {problem}")]
pub struct ValidationError {
    /// The field, as a path: `title`, `address.city`, `items[2].qty`.
    pub field: String,
    /// What is wrong, a sentence without the field.
    pub problem: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ValidationError { field: field.into(), problem: problem.into() }
    }
}

/// Any failure of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// An entity schema that cannot be used; `entity` names it.
    #[error("The schema of entity '{entity}' is not valid: {message}")]
    Schema { entity: String, message: String },
}

impl EntityError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            EntityError::Query(_) | EntityError::Schema { .. } => 400,
            EntityError::Validation(_) => 422,
        }
    }
}
