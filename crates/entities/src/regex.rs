//! `$regex`: the patterns both dialects and the in-memory matcher read alike.
//!
//! PostgreSQL matches with its own engine (`~`, `~*`); SQLite, which has none, calls
//! [`is_match`] (registered by the store as `hb_regexp(pattern, ignore_case, text)`), which
//! uses Rust's `regex` crate with `.` matching newlines as PostgreSQL's does. The two engines
//! agree on literals, `.`, anchors, classes `[...]` and `[[:alpha:]]`, `\d \w \s` and their
//! negations, groups, alternation and repetition; [`check`] refuses what they read differently
//! or only one of them has: look-around, back references, inline flags, and other escapes
//! (`\b` is a word boundary in one and a backspace in the other).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::error::QueryError;

/// The longest pattern accepted.
pub const MAX_PATTERN: usize = 1000;

/// Escapes both engines read the same way.
const SAFE_ESCAPES: &str = "dDwWsS.\\/-()[]{}*+?|^$";

fn refused(why: &str) -> QueryError {
    QueryError::new(
        Some("$regex"),
        format!("The $regex pattern uses {why}, which Homebase does not support"),
        "Use literals, '.', '^', '$', classes like [a-z] or \\d \\w \\s, groups, '|' and repetition; for case \
         use \"$options\": \"i\".",
    )
}

/// Checks that `pattern` is one both engines read alike (see the module docs).
pub fn check(pattern: &str) -> Result<(), QueryError> {
    if pattern.len() > MAX_PATTERN {
        return Err(refused(&format!("more than {MAX_PATTERN} bytes")));
    }
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if SAFE_ESCAPES.contains(e) => {}
                Some(e) => return Err(refused(&format!("the escape \\{e}"))),
                None => return Err(refused("a trailing backslash")),
            },
            '(' if chars.peek() == Some(&'?') => {
                chars.next();
                if chars.next() != Some(':') {
                    return Err(refused("look-around or inline flags ((?...)"));
                }
            }
            _ => {}
        }
    }
    build(pattern, false).map(|_| ()).map_err(|e| {
        QueryError::new(Some("$regex"), format!("The $regex pattern is not valid: {e}"), "Fix the pattern.")
    })
}

fn build(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .build()
}

thread_local! {
    static CACHE: RefCell<HashMap<(String, bool), Option<regex::Regex>>> = RefCell::new(HashMap::new());
}

/// Whether `pattern` (checked with [`check`]) matches somewhere in `text`. A pattern that does
/// not compile matches nothing. Compiled patterns are kept per thread (up to 256).
pub fn is_match(pattern: &str, case_insensitive: bool, text: &str) -> bool {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let key = (pattern.to_string(), case_insensitive);
        if !cache.contains_key(&key) {
            if cache.len() >= 256 {
                cache.clear();
            }
            cache.insert(key.clone(), build(pattern, case_insensitive).ok());
        }
        cache.get(&key).and_then(Option::as_ref).is_some_and(|re| re.is_match(text))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_patterns_pass_and_others_are_refused() {
        for ok in ["^ab.c$", "a|b", "[a-z]+\\d{2,3}", "(?:x)y", "\\.", "[[:alpha:]]"] {
            check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["\\bword", "(?=x)", "(?i)x", "(a)\\1", "x\\", "[", "\\p{L}"] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert!(is_match("^A.B$", true, "a\nb"));
        assert!(!is_match("^A", false, "a"));
    }
}
