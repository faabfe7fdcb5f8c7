//! What can go wrong in the store, and who is to blame.

/// Failures of the store. Each maps to an HTTP status ([`status`](StoreError::status)) and a
/// stable snake_case code ([`code`](StoreError::code)); the message is a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist. `what` names it, e.g. `App 'abc'`.
    #[error("{what} was not found")]
    NotFound { what: String },
    /// The request is well-formed but contradicts the stored state (a key imported twice with
    /// different scopes, a rollback with nothing to roll back to).
    #[error("{message}")]
    Conflict { message: String },
    /// The input is malformed (an empty name, an escaping path, automations that are not an array).
    #[error("{message}")]
    Invalid { message: String },
    /// The database was written by a newer Homebase than this one.
    #[error(
        "The database {location} has schema version {found}, but this Homebase only knows versions up to \
         {supported}; upgrade Homebase or point it at another data folder"
    )]
    SchemaTooNew { location: String, found: i64, supported: i64 },
    /// A deploy would add a function to an app that already has `limit` of them.
    #[error("The app has {count} functions; at most {limit} are allowed")]
    TooManyFunctions { count: u64, limit: u64 },
    /// The database stayed locked by another writer for longer than the busy timeout.
    #[error("The database is busy; retry the request")]
    Busy,
    /// The database server cannot be reached, or the connection to it was lost (PostgreSQL).
    /// The pool reconnects by itself once the server is back; a write that failed this way
    /// was not committed unless the message says its outcome is unknown.
    #[error("The database is unavailable: {0}")]
    Unavailable(String),
    /// The database failed (corruption, disk full, a bug in a query).
    #[error("Database error: {0}")]
    Database(String),
    /// A file-system operation failed (opening the database, materialising a deployment).
    #[error("I/O error: {0}")]
    Io(String),
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StoreError::Invalid { message: message.into() }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        StoreError::Conflict { message: message.into() }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::NotFound { .. } => 404,
            StoreError::Conflict { .. } => 409,
            StoreError::Invalid { .. } => 400,
            StoreError::TooManyFunctions { .. } => 422,
            StoreError::Busy | StoreError::Unavailable(_) => 503,
            StoreError::SchemaTooNew { .. } | StoreError::Database(_) | StoreError::Io(_) => 500,
        }
    }

    /// A stable snake_case code for clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Invalid { .. } => "invalid",
            StoreError::SchemaTooNew { .. } => "schema_too_new",
            StoreError::TooManyFunctions { .. } => "too_many_functions",
            StoreError::Busy => "database_busy",
            StoreError::Unavailable(_) => "database_unavailable",
            StoreError::Database(_) => "database",
            StoreError::Io(_) => "io",
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> Self {
        StoreError::Io(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_stable_and_distinct() {
        let all = [
            StoreError::not_found("App 'x'"),
            StoreError::conflict("c"),
            StoreError::invalid("i"),
            StoreError::SchemaTooNew { location: "db".into(), found: 9, supported: 1 },
            StoreError::Busy,
            StoreError::Database("d".into()),
            StoreError::Io("o".into()),
            StoreError::TooManyFunctions { count: 50, limit: 50 },
            StoreError::Unavailable("u".into()),
        ];
        let codes: Vec<_> = all.iter().map(StoreError::code).collect();
        assert_eq!(
            codes,
            [
                "not_found",
                "conflict",
                "invalid",
                "schema_too_new",
                "database_busy",
                "database",
                "io",
                "too_many_functions",
                "database_unavailable"
            ]
        );
        let statuses: Vec<_> = all.iter().map(StoreError::status).collect();
        assert_eq!(statuses, [404, 409, 400, 500, 503, 500, 500, 422, 503]);
        assert_eq!(all[0].to_string(), "App 'x' was not found");
        assert!(all[3].to_string().contains("schema version 9"), "{}", all[3]);
    }
}
