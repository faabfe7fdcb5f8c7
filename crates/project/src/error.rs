//! The one error type of this crate.
//!
//! A [`ProjectError`] says what is wrong (`kind`, with a stable [`code`](ErrorKind::code)), where
//! (`file`, 1-based `line` and `column` when known), which function it concerns when there is one,
//! and how to fix it (`hint`). Its `Display` is the compiler-style `path:line:col: message`,
//! followed by `\n  hint: …` when there is a hint.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of problem a [`ProjectError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No project (no `config.jsonc`) at or above the starting folder.
    NotFound,
    /// A JSONC file is not valid JSONC, or its content has the wrong shape.
    Parse,
    /// A file parses but breaks a rule (empty name, dot in a name, entry in the functions root…).
    Invalid,
    /// A function's entry file does not exist.
    EntryNotFound,
    /// Two things claim the same name (functions, entities, entry files, config files).
    Duplicate,
    /// More functions than [`MAX_FUNCTIONS`](crate::MAX_FUNCTIONS).
    TooMany,
    /// An automation in `function.jsonc` breaks the automation schema.
    InvalidAutomation,
    /// The file system refused a read or a write.
    Io,
}

impl ErrorKind {
    /// A stable, machine-readable code for this kind.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "project_not_found",
            ErrorKind::Parse => "parse_error",
            ErrorKind::Invalid => "invalid_config",
            ErrorKind::EntryNotFound => "entry_not_found",
            ErrorKind::Duplicate => "duplicate_name",
            ErrorKind::TooMany => "too_many_functions",
            ErrorKind::InvalidAutomation => "invalid_automation",
            ErrorKind::Io => "io_error",
        }
    }

    /// The HTTP status a server should answer with when this error reaches a client
    /// (for example when a deploy payload is validated server-side).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Parse => 400,
            ErrorKind::Invalid
            | ErrorKind::EntryNotFound
            | ErrorKind::Duplicate
            | ErrorKind::TooMany
            | ErrorKind::InvalidAutomation => 422,
            ErrorKind::Io => 500,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A problem found while reading a project folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ProjectError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The file the problem is in, when there is one.
    pub file: Option<PathBuf>,
    /// 1-based line in `file`, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) in `file`, when known.
    pub column: Option<usize>,
    /// The function the problem concerns, when known (`as_deref()` gives an `Option<&str>`).
    pub function: Option<Box<str>>,
    /// What is wrong, as a sentence.
    pub message: String,
    /// How to fix it (`as_deref()` gives an `Option<&str>`).
    ///
    /// `function` and `hint` are boxed `str`s to keep the error under clippy's
    /// `result_large_err` threshold (128 bytes), here and in every crate that returns it.
    pub hint: Option<Box<str>>,
}

impl ProjectError {
    /// A new error with only a kind and a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProjectError { kind, file: None, line: None, column: None, function: None, message: message.into(), hint: None }
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, action: &str, err: &std::io::Error) -> Self {
        ProjectError::new(ErrorKind::Io, format!("Could not {action} {}: {err}", path.display())).with_file(path)
    }

    /// Sets the file.
    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Sets the 1-based line and column.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Sets the position from an optional `(line, column)`.
    pub(crate) fn at_opt(mut self, pos: Option<(usize, usize)>) -> Self {
        if let Some((line, column)) = pos {
            self.line = Some(line);
            self.column = Some(column);
        }
        self
    }

    /// Sets the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into().into_boxed_str());
        self
    }

    /// Sets the function this error concerns.
    pub fn for_function(mut self, name: impl Into<String>) -> Self {
        self.function = Some(name.into().into_boxed_str());
        self
    }

    /// The stable code of this error's kind.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let Some(file) = &self.file {
            out.push_str(&file.display().to_string());
            if let Some(line) = self.line {
                out.push_str(&format!(":{line}"));
                if let Some(column) = self.column {
                    out.push_str(&format!(":{column}"));
                }
            }
            out.push_str(": ");
        }
        out.push_str(&self.message);
        if let Some(hint) = &self.hint {
            out.push_str("\n  hint: ");
            out.push_str(hint);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_path_line_column_message_and_hint() {
        let err = ProjectError::new(ErrorKind::Parse, "Invalid JSONC: expected `,` or `}`")
            .with_file("base44/config.jsonc")
            .at(3, 7)
            .with_hint("Add the missing comma");
        assert_eq!(
            err.to_string(),
            "base44/config.jsonc:3:7: Invalid JSONC: expected `,` or `}`\n  hint: Add the missing comma"
        );
    }

    #[test]
    fn display_without_position_or_file() {
        let err = ProjectError::new(ErrorKind::Invalid, "Bad name").with_file("f.jsonc");
        assert_eq!(err.to_string(), "f.jsonc: Bad name");
        let err = ProjectError::new(ErrorKind::TooMany, "Too many");
        assert_eq!(err.to_string(), "Too many");
    }

    #[test]
    fn stays_below_the_result_large_err_threshold() {
        assert!(std::mem::size_of::<ProjectError>() < 128);
    }

    #[test]
    fn codes_are_stable_and_distinct() {
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::Parse,
            ErrorKind::Invalid,
            ErrorKind::EntryNotFound,
            ErrorKind::Duplicate,
            ErrorKind::TooMany,
            ErrorKind::InvalidAutomation,
            ErrorKind::Io,
        ];
        let codes: std::collections::BTreeSet<_> = kinds.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), kinds.len());
        assert_eq!(ErrorKind::NotFound.code(), "project_not_found");
        assert_eq!(ErrorKind::NotFound.http_status(), 404);
        assert_eq!(ErrorKind::Io.http_status(), 500);
        assert_eq!(ErrorKind::Duplicate.http_status(), 422);
        let err = ProjectError::new(ErrorKind::TooMany, "x");
        assert_eq!(err.code(), "too_many_functions");
    }
}
