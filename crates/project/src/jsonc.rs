//! JSONC: JSON with `//` and `/* */` comments and trailing commas.
//!
//! The approach keeps every byte offset of the original text: comments and trailing commas are
//! overwritten with spaces (newlines are kept), and the result is plain JSON for `serde_json`.
//! Because offsets do not move, `serde_json`'s error positions and our own span index
//! ([`Doc`]) point at the user's text, and a tool can edit the original text at those offsets
//! without losing comments (see the tsconfig update in `types`).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ErrorKind, ProjectError};

const BOM: char = '\u{feff}';

/// Parses JSONC text (comments and trailing commas allowed) into `T`.
///
/// Errors are [`ErrorKind::Parse`] and carry `path` and the 1-based line and column of the
/// problem in `text`.
pub fn parse_jsonc<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ProjectError> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let clean = sanitize(path, text)?;
    serde_json::from_str(&clean).map_err(|err| json_error(path, text, &err))
}

/// Overwrites comments and trailing commas with spaces, keeping offsets and newlines.
pub(crate) fn sanitize(path: &Path, text: &str) -> Result<String, ProjectError> {
    let src = text.as_bytes();
    let mut out = src.to_vec();
    let mut i = 0;
    let mut in_string = false;
    // Offset of the last comma seen outside strings, until the next significant byte.
    let mut pending_comma: Option<usize> = None;
    while i < src.len() {
        let b = src[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match b {
            b'/' if src.get(i + 1) == Some(&b'/') => {
                while i < src.len() && src[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            b'/' if src.get(i + 1) == Some(&b'*') => {
                let start = i;
                out[i] = b' ';
                out[i + 1] = b' ';
                i += 2;
                loop {
                    if i >= src.len() {
                        let (line, column) = line_col(text, start);
                        return Err(ProjectError::new(
                            ErrorKind::Parse,
                            "Invalid JSONC: this /* comment is never closed",
                        )
                        .with_file(path)
                        .at(line, column)
                        .with_hint("End the comment with */"));
                    }
                    if src[i] == b'*' && src.get(i + 1) == Some(&b'/') {
                        out[i] = b' ';
                        out[i + 1] = b' ';
                        i += 2;
                        break;
                    }
                    if src[i] != b'\n' && src[i] != b'\r' {
                        out[i] = b' ';
                    }
                    i += 1;
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ => {
                if let Some(comma) = pending_comma.take()
                    && (b == b']' || b == b'}')
                {
                    out[comma] = b' ';
                }
                if b == b',' {
                    pending_comma = Some(i);
                } else if b == b'"' {
                    in_string = true;
                }
                i += 1;
            }
        }
    }
    // Only whole characters were replaced by ASCII spaces, so this is still UTF-8.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// 1-based line and character column of a byte offset in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Converts `serde_json`'s (line, byte column) into our (line, character column).
fn serde_position(text: &str, line: usize, byte_column: usize) -> (usize, usize) {
    let mut line_start = 0;
    for _ in 1..line {
        match text[line_start..].find('\n') {
            Some(p) => line_start += p + 1,
            None => break,
        }
    }
    let offset = line_start + byte_column.saturating_sub(1);
    line_col(text, offset)
}

/// Maps a `serde_json` error on the sanitized form of `text` to a [`ProjectError`].
pub(crate) fn json_error(path: &Path, text: &str, err: &serde_json::Error) -> ProjectError {
    let mut detail = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    if let Some(stripped) = detail.strip_suffix(&suffix) {
        detail = stripped.to_string();
    }
    let (message, hint) = match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => (
            format!("Invalid JSONC: {detail}"),
            Some("Check for a missing comma, quote or bracket near here; comments and trailing commas are allowed"),
        ),
        serde_json::error::Category::Data => (format!("Unexpected content: {detail}"), None),
        serde_json::error::Category::Io => (format!("Could not read: {detail}"), None),
    };
    let mut out = ProjectError::new(ErrorKind::Parse, message).with_file(path);
    if err.line() > 0 {
        let (line, column) = serde_position(text, err.line(), err.column());
        out = out.at(line, column);
    }
    if let Some(hint) = hint {
        out = out.with_hint(hint);
    }
    out
}

/// A parsed JSONC document that remembers where every value starts and ends.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    /// The original text, without a leading byte-order mark.
    pub text: String,
    /// The same text with comments and trailing commas blanked out (plain JSON).
    pub clean: String,
    pub value: Value,
    pub root: Node,
}

/// Where a JSON value sits in a [`Doc`] (byte offsets, end exclusive).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub start: usize,
    pub end: usize,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Object(Vec<Member>),
    Array(Vec<Node>),
    Scalar,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub key: String,
    pub key_start: usize,
    pub value: Node,
}

impl Node {
    /// The value of the last member named `key`, when this is an object.
    pub fn member(&self, key: &str) -> Option<&Member> {
        match &self.kind {
            NodeKind::Object(members) => members.iter().rev().find(|m| m.key == key),
            _ => None,
        }
    }
}

impl Doc {
    pub fn parse(path: &Path, text: &str) -> Result<Doc, ProjectError> {
        let text = text.strip_prefix(BOM).unwrap_or(text);
        let clean = sanitize(path, text)?;
        let value: Value = serde_json::from_str(&clean).map_err(|err| json_error(path, text, &err))?;
        let mut scanner = Scanner { b: clean.as_bytes(), i: 0 };
        let root = scanner.value().ok_or_else(|| {
            ProjectError::new(ErrorKind::Parse, "Invalid JSONC: could not index this file").with_file(path)
        })?;
        Ok(Doc { text: text.to_string(), clean, value, root })
    }

    /// Deserializes the document into `T`, with positions on errors.
    pub fn deserialize<T: DeserializeOwned>(&self, path: &Path) -> Result<T, ProjectError> {
        serde_json::from_str(&self.clean).map_err(|err| json_error(path, &self.text, &err))
    }

    /// The deepest node along `segments` (object keys, or array indexes as decimal strings).
    pub fn node(&self, segments: &[&str]) -> &Node {
        let mut node = &self.root;
        for seg in segments {
            let next = match &node.kind {
                NodeKind::Object(_) => node.member(seg).map(|m| &m.value),
                NodeKind::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
                NodeKind::Scalar => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// 1-based line and column of the deepest existing node along `segments`.
    pub fn position(&self, segments: &[&str]) -> (usize, usize) {
        line_col(&self.text, self.node(segments).start)
    }
}

/// Indexes already-valid JSON (the sanitized text); returns `None` on anything unexpected.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self) -> Option<Node> {
        self.ws();
        let start = self.i;
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        let key_start = self.i;
                        let key = self.string()?;
                        self.ws();
                        if self.peek()? != b':' {
                            return None;
                        }
                        self.i += 1;
                        let value = self.value()?;
                        members.push(Member { key, key_start, value });
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Some(Node { start, end: self.i, kind: NodeKind::Object(members) })
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Some(Node { start, end: self.i, kind: NodeKind::Array(items) })
            }
            b'"' => {
                self.string()?;
                Some(Node { start, end: self.i, kind: NodeKind::Scalar })
            }
            _ => {
                while self.i < self.b.len()
                    && !matches!(self.b[self.i], b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    self.i += 1;
                }
                (self.i > start).then_some(Node { start, end: self.i, kind: NodeKind::Scalar })
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    break;
                }
                _ => self.i += 1,
            }
        }
        let raw = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
        serde_json::from_str(raw).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn p() -> &'static Path {
        Path::new("x.jsonc")
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Cfg {
        name: String,
        list: Vec<u32>,
    }

    #[test]
    fn comments_and_trailing_commas_are_accepted() {
        let text = r#"
// leading comment
{
  /* block
     comment */ "name": "a // not a comment /* nor this */", // trailing
  "list": [1, 2, 3,], /* inline */
}
"#;
        let cfg: Cfg = parse_jsonc(p(), text).unwrap();
        assert_eq!(cfg, Cfg { name: "a // not a comment /* nor this */".into(), list: vec![1, 2, 3] });
    }

    #[test]
    fn trailing_comma_before_comment_then_bracket() {
        let v: Value = parse_jsonc(p(), "[1, 2, // two\n /* x */ ]").unwrap();
        assert_eq!(v, serde_json::json!([1, 2]));
    }

    #[test]
    fn escaped_quotes_in_strings_do_not_confuse_the_scanner() {
        let v: Value = parse_jsonc(p(), r#"{"a": "say \"hi\" // there", "b": "\\",}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a": "say \"hi\" // there", "b": "\\"}));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let v: Value = parse_jsonc(p(), "\u{feff}{\"a\": 1}").unwrap();
        assert_eq!(v, serde_json::json!({"a": 1}));
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let text = "{\n  // comment\n  \"name\": \"x\"\n  \"list\": []\n}";
        let err = parse_jsonc::<Cfg>(p(), text).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Parse);
        assert_eq!(err.file.as_deref(), Some(p()));
        assert_eq!((err.line, err.column), (Some(4), Some(3)));
        assert!(err.message.starts_with("Invalid JSONC: expected `,` or `}`"), "{}", err.message);
        assert!(err.to_string().starts_with("x.jsonc:4:3: Invalid JSONC"));
        assert!(err.hint.is_some());
    }

    #[test]
    fn column_counts_characters_not_bytes() {
        let text = "{\"é\": \"ü\" x}";
        let err = parse_jsonc::<Value>(p(), text).unwrap_err();
        // `x` is the 11th character on line 1.
        assert_eq!((err.line, err.column), (Some(1), Some(11)));
    }

    #[test]
    fn shape_error_has_position_and_no_suffix() {
        let text = "{\n  \"name\": 5,\n  \"list\": []\n}";
        let err = parse_jsonc::<Cfg>(p(), text).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.starts_with("Unexpected content: invalid type: integer `5`"));
        assert!(!err.message.contains("at line"), "{}", err.message);
    }

    #[test]
    fn unterminated_block_comment_is_reported_at_its_start() {
        let err = parse_jsonc::<Value>(p(), "{\n  /* open\n}").unwrap_err();
        assert_eq!((err.line, err.column), (Some(2), Some(3)));
        assert!(err.message.contains("never closed"));
    }

    #[test]
    fn empty_file_is_a_parse_error() {
        let err = parse_jsonc::<Value>(p(), "  // nothing\n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Parse);
        assert!(err.message.contains("EOF"), "{}", err.message);
        assert!(err.line.is_some());
    }

    #[test]
    fn doc_indexes_positions_of_nested_values() {
        let text = "{\n  // c\n  \"a\": [\n    {\"b\": 1},\n    {\"b\": 2, \"c\": true},\n  ],\n}";
        let doc = Doc::parse(p(), text).unwrap();
        assert_eq!(doc.position(&["a", "1", "c"]), (5, 19));
        assert_eq!(doc.position(&["a", "1"]), (5, 5));
        // A missing leaf falls back to its deepest existing ancestor.
        assert_eq!(doc.position(&["a", "0", "zzz"]), (4, 5));
        assert_eq!(doc.position(&["a", "9"]), (3, 8));
        let a = doc.root.member("a").unwrap();
        assert_eq!(&doc.text[a.key_start..a.key_start + 3], "\"a\"");
        assert_eq!(&doc.text[a.value.end - 1..a.value.end], "]");
    }
}
