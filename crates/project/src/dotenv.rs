//! `.env` files: the local secrets of `homebase dev`.
//!
//! The project root's `.env`, then `.env.local` (its values win), in the usual dotenv syntax:
//! `KEY=value` lines, an optional `export ` prefix, `#` comments on their own line or after an
//! unquoted value, `'single'` quotes taken literally, `"double"` quotes with `\n`, `\t`, `\"`
//! and `\\` escapes, and quoted values that span lines (PEM keys). A bad line is reported with
//! its file and line and skipped; the other lines still count.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{ErrorKind, ProjectError};

/// The files read, lowest precedence first.
pub const DOTENV_FILES: [&str; 2] = [".env", ".env.local"];

/// The values of `.env` and `.env.local` in `root` (missing files are fine), and the problems
/// found in them.
pub fn load_dotenv(root: &Path) -> (BTreeMap<String, String>, Vec<ProjectError>) {
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for name in DOTENV_FILES {
        let path = root.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                problems.push(ProjectError::io(&path, "read", &error));
                continue;
            }
        };
        let (parsed, errors) = parse_dotenv(&text);
        values.extend(parsed);
        problems.extend(errors.into_iter().map(|e| e.with_file(&path)));
    }
    (values, problems)
}

/// Parses dotenv text; later assignments of a name win. Errors carry their line, not a file.
pub fn parse_dotenv(text: &str) -> (Vec<(String, String)>, Vec<ProjectError>) {
    let mut values = Vec::new();
    let mut problems = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut index = 0;
    while index < lines.len() {
        let number = index + 1;
        let line = lines[index].trim_start();
        index += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            problems.push(invalid(number, format!("line `{}` has no `=`", shorten(line)), "write it as NAME=value"));
            continue;
        };
        let key = key.trim_end();
        if !is_env_name(key) {
            problems.push(invalid(
                number,
                format!("`{}` is not a valid variable name", shorten(key)),
                "names are letters, digits and underscores, not starting with a digit",
            ));
            continue;
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                // A quoted value may continue on the following lines until its closing quote.
                let mut raw = rest[1..].to_string();
                let close = loop {
                    if let Some(end) = closing_quote(&raw, quote) {
                        break Some(end);
                    }
                    if index >= lines.len() {
                        break None;
                    }
                    raw.push('\n');
                    raw.push_str(lines[index]);
                    index += 1;
                };
                let Some(end) = close else {
                    problems.push(invalid(
                        number,
                        format!("the value of {key} has no closing {quote}"),
                        "close the quote",
                    ));
                    continue;
                };
                let inner = &raw[..end];
                if quote == '"' { unescape(inner) } else { inner.to_string() }
            }
            _ => match rest.find(" #") {
                Some(comment) => rest[..comment].trim_end().to_string(),
                None => rest.trim_end().to_string(),
            },
        };
        values.push((key.to_string(), value));
    }
    (values, problems)
}

/// The byte offset of the first unescaped `quote` in `text`.
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            '\\' if quote == '"' && !escaped => escaped = true,
            c if c == quote && !escaped => return Some(at),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the names a shell and `Deno.env` accept.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn invalid(line: usize, message: String, hint: &str) -> ProjectError {
    ProjectError::new(ErrorKind::Parse, message).at(line, 1).with_hint(hint)
}

/// The start of a line for a message; never a whole secret.
fn shorten(text: &str) -> String {
    let head: String = text.chars().take(24).collect();
    if head.len() < text.len() { format!("{head}…") } else { head }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        let (values, problems) = parse_dotenv(text);
        assert!(problems.is_empty(), "{problems:?}");
        values
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn reads_plain_exported_quoted_and_commented_lines() {
        let text = "# comment\n\nA=1\nexport B = two words  # note\nC='$literal \\n'\nD=\"line\\nnext \\\"q\\\"\"\nE=\nF=a#b\n";
        assert_eq!(
            parse(text),
            vec![
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "$literal \\n"),
                pair("D", "line\nnext \"q\""),
                pair("E", ""),
                pair("F", "a#b"),
            ]
        );
    }

    #[test]
    fn quoted_values_span_lines() {
        let text = "KEY=\"-----BEGIN-----\nabc\n-----END-----\"\nAFTER=1\n";
        assert_eq!(parse(text), vec![pair("KEY", "-----BEGIN-----\nabc\n-----END-----"), pair("AFTER", "1")]);
    }

    #[test]
    fn bad_lines_are_reported_with_their_line_and_skipped() {
        let (values, problems) = parse_dotenv("GOOD=1\nno equals here\n1BAD=x\nOPEN=\"never closed\n");
        assert_eq!(values, vec![pair("GOOD", "1")]);
        let lines: Vec<_> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(2), Some(3), Some(4)]);
        assert!(problems[0].to_string().contains("has no `=`"), "{}", problems[0]);
        assert!(problems[1].to_string().contains("not a valid variable name"), "{}", problems[1]);
        assert!(problems[2].to_string().contains("no closing"), "{}", problems[2]);
    }

    #[test]
    fn local_file_wins_and_missing_files_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_dotenv(dir.path()).0.is_empty());
        std::fs::write(dir.path().join(".env"), "A=from-env\nB=only-env\n").unwrap();
        std::fs::write(dir.path().join(".env.local"), "A=from-local\nbroken\n").unwrap();
        let (values, problems) = load_dotenv(dir.path());
        assert_eq!(values.get("A").map(String::as_str), Some("from-local"));
        assert_eq!(values.get("B").map(String::as_str), Some("only-env"));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().contains(".env.local:2:1"), "{}", problems[0]);
    }
}
