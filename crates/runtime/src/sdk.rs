//! Which `@base44/sdk` a function gets.
//!
//! Base44's runtime provides the SDK itself, so real functions pin versions that were never
//! published on npm (`npm:@base44/sdk@0.7.1`, `@0.8.21`) or whose package Deno cannot load
//! (`@0.8.11` imports its own files without extensions). On Homebase every SDK specifier a
//! function writes resolves to a version that exists and loads under Deno ([`resolve`]): the one
//! named when it is one of them, else the nearest newer one.
//!
//! The mechanism is an import map. Before a worker starts and before a deploy check, [`plan`]
//! reads the function's code (the files of its `read_paths`, as [`crate::netpolicy`] does) for
//! the SDK specifiers it writes: `npm:@base44/sdk`, with or without a version or range, with or
//! without a subpath, and the bare `@base44/sdk` (whose version comes from a `deno.json` or
//! `package.json` beside the code, else the newest). Each one that resolves to something else
//! becomes an entry of the import map the worker and the check are given, next to
//! `base44:runtime`. The deploy check downloads what the map names, so `serve`'s workers, which
//! run `--cached-only`, find it in the package cache. The worker's log says once, when it starts,
//! which version was asked and which is used.
//!
//! The table of versions is [`LOADABLE`] (and [`DOES_NOT_LOAD`]), taken from the npm registry
//! (`npm view @base44/sdk versions --json`) and checked by loading each listed version under
//! Deno (`every_listed_version_loads_under_deno`). A version newer than the table knows is used
//! as written.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::logs::Level;

/// `major.minor.patch` of an SDK release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl std::str::FromStr for Version {
    type Err = ();
    fn from_str(text: &str) -> Result<Version, ()> {
        let mut parts = text.trim().trim_start_matches(['v', '=']).split('.');
        let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok()).ok_or(());
        let version = Version(next()?, next()?, next()?);
        if parts.next().is_some() { Err(()) } else { Ok(version) }
    }
}

/// The published versions of `@base44/sdk` that load under Deno, as runs of consecutive patch
/// releases `(major, minor, first patch, last patch)`: every patch in a run is on the registry.
/// Published and left out: [`DOES_NOT_LOAD`]. Never published: 0.2–0.4, 0.7.0–0.7.7, 0.7.9,
/// 0.8.1–0.8.2, 0.8.7–0.8.8, 0.8.14–0.8.15, 0.8.21. As published on the npm registry up to
/// 0.8.50 (checked in December 2026); add a run (and its versions are loaded by the test) when Base44 publishes more.
pub const LOADABLE: [(u32, u32, u32, u32); 9] = [
    (0, 5, 0, 0),
    (0, 6, 0, 0),
    (0, 7, 8, 8),
    (0, 7, 10, 10),
    (0, 8, 0, 0),
    (0, 8, 3, 6),
    (0, 8, 12, 13),
    (0, 8, 16, 20),
    (0, 8, 22, 50),
];

/// Published versions Deno cannot load: 0.1.2 is CommonJS (`require is not defined`); 0.8.9 to
/// 0.8.11 import their own modules without file extensions (`Cannot find module
/// '…/dist/utils/sharedInstance'`), which Deno's ES module loader refuses.
pub const DOES_NOT_LOAD: [Version; 4] = [Version(0, 1, 2), Version(0, 8, 9), Version(0, 8, 10), Version(0, 8, 11)];

/// Every version of [`LOADABLE`], oldest first.
pub fn loadable() -> impl Iterator<Item = Version> {
    LOADABLE.iter().flat_map(|&(major, minor, first, last)| (first..=last).map(move |p| Version(major, minor, p)))
}

/// The newest version Homebase knows.
pub fn newest() -> Version {
    let (major, minor, _, last) = LOADABLE[LOADABLE.len() - 1];
    Version(major, minor, last)
}

fn is_loadable(version: Version) -> bool {
    loadable().any(|v| v == version)
}

/// The oldest loadable version at or after `version`, if it is not past the table.
fn at_or_after(version: Version) -> Option<Version> {
    loadable().find(|v| *v >= version)
}

/// Why a specifier gets another version than the one it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The exact version named was never published on npm.
    Unpublished,
    /// The exact version named is on npm, but its package does not load under Deno.
    DoesNotLoad,
    /// A range, a tag or no version: the newest listed version it allows (npm would pick the
    /// newest published one, which the deploy check could not pin).
    Range,
}

/// What a written version requirement resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Used as written: a listed version, or one newer than the table (or a tag it cannot judge).
    AsWritten,
    Use(Version, Why),
}

/// Resolves the version part of `npm:@base44/sdk@<requirement>` (`None`: no version).
pub fn resolve(requirement: Option<&str>) -> Resolution {
    let text = requirement.unwrap_or("").trim();
    if text.is_empty() || text == "latest" {
        return Resolution::Use(newest(), Why::Range);
    }
    if let Ok(exact) = text.parse::<Version>() {
        if is_loadable(exact) || exact > newest() {
            return Resolution::AsWritten;
        }
        let why = if DOES_NOT_LOAD.contains(&exact) { Why::DoesNotLoad } else { Why::Unpublished };
        return match at_or_after(exact) {
            Some(version) => Resolution::Use(version, why),
            None => Resolution::AsWritten,
        };
    }
    let Some(range) = Range::parse(text) else { return Resolution::AsWritten };
    if let Some(best) = loadable().filter(|v| range.allows(*v)).max() {
        return Resolution::Use(best, Why::Range);
    }
    match range.lowest().and_then(at_or_after) {
        Some(version) => Resolution::Use(version, Why::Range),
        None => Resolution::AsWritten,
    }
}

/// An npm version range: alternatives (`||`) of comparator sets (all must hold).
#[derive(Debug)]
struct Range(Vec<Vec<(Op, Version)>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

impl Range {
    /// `^0.8.0`, `~0.8.3`, `0.8`, `0.8.x`, `*`, `>=0.8.0 <0.9.0`, `0.7 || 0.8`, `0.8.0 - 0.8.20`.
    /// `None` for what this does not understand (tags, prereleases, URLs).
    fn parse(text: &str) -> Option<Range> {
        let mut alternatives = Vec::new();
        for alternative in text.split("||") {
            let mut set = Vec::new();
            let words: Vec<&str> = alternative.split_whitespace().collect();
            if let [low, "-", high] = words[..] {
                set.push((Op::Ge, partial(low)?.0));
                let (high, precision) = partial(high)?;
                set.extend(match (precision, past(high, precision)) {
                    (3, _) => Some((Op::Le, high)),
                    (_, end) => end.map(|end| (Op::Lt, end)),
                });
                alternatives.push(set);
                continue;
            }
            let mut pending_op: Option<&str> = None;
            for word in words {
                let (op, rest) = match pending_op.take() {
                    Some(op) => (op, word),
                    None => {
                        let split =
                            word.find(|c: char| !matches!(c, '<' | '>' | '=' | '^' | '~')).unwrap_or(word.len());
                        let (op, rest) = word.split_at(split);
                        if rest.is_empty() {
                            pending_op = Some(op); // `>= 0.8.0`
                            continue;
                        }
                        (op, rest)
                    }
                };
                set.extend(comparators(op, rest)?);
            }
            if pending_op.is_some() {
                return None;
            }
            alternatives.push(set);
        }
        Some(Range(alternatives))
    }

    fn allows(&self, v: Version) -> bool {
        self.0.iter().any(|set| {
            set.iter().all(|&(op, bound)| match op {
                Op::Ge => v >= bound,
                Op::Gt => v > bound,
                Op::Le => v <= bound,
                Op::Lt => v < bound,
                Op::Eq => v == bound,
            })
        })
    }

    /// The lowest version any alternative starts from (`None`: unbounded below).
    fn lowest(&self) -> Option<Version> {
        self.0
            .iter()
            .map(|set| {
                set.iter()
                    .filter(|(op, _)| matches!(op, Op::Ge | Op::Gt | Op::Eq))
                    .map(|&(op, v)| if op == Op::Gt { Version(v.0, v.1, v.2 + 1) } else { v })
                    .max()
                    .unwrap_or(Version(0, 0, 0))
            })
            .min()
    }
}

/// A version as a range may write it: `0.8.3`, `0.8`, `0.8.x`, `0`, `*`. Returns the version
/// with missing parts as 0, and how many parts were numbers (0 to 3).
fn partial(text: &str) -> Option<(Version, usize)> {
    let text = text.trim_start_matches(['v', '=']);
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    let mut numbers = Vec::new();
    for part in &parts {
        match *part {
            "x" | "X" | "*" => break,
            number => numbers.push(number.parse::<u32>().ok()?),
        }
    }
    // A number after a wildcard (`0.x.3`) is not a version.
    if parts[numbers.len()..].iter().any(|p| !matches!(*p, "x" | "X" | "*")) {
        return None;
    }
    let at = |i: usize| numbers.get(i).copied().unwrap_or(0);
    Some((Version(at(0), at(1), at(2)), numbers.len()))
}

/// The first version past a partial one: `0.8` → `0.9.0`, `0` → `1.0.0`; `None` for `*`.
fn past(v: Version, precision: usize) -> Option<Version> {
    match precision {
        0 => None,
        1 => Some(Version(v.0 + 1, 0, 0)),
        2 => Some(Version(v.0, v.1 + 1, 0)),
        _ => Some(Version(v.0, v.1, v.2 + 1)),
    }
}

/// The comparators of one `op version` word, in npm's meaning.
fn comparators(op: &str, text: &str) -> Option<Vec<(Op, Version)>> {
    let (low, precision) = partial(text)?;
    let end = past(low, precision);
    let from = |end: Option<Version>| {
        let mut set = vec![(Op::Ge, low)];
        set.extend(end.map(|end| (Op::Lt, end)));
        set
    };
    Some(match op {
        "" | "=" if precision == 3 => vec![(Op::Eq, low)],
        "" | "=" => from(end),
        // The first non-zero part of those written may not change.
        "^" => from(match (low, precision) {
            (_, 0) => None,
            (Version(0, 0, _), 3) => end,
            (Version(0, 0, _), 2) => Some(Version(0, 1, 0)),
            (Version(0, minor, _), p) if p >= 2 => Some(Version(0, minor + 1, 0)),
            (Version(major, _, _), _) => Some(Version(major + 1, 0, 0)),
        }),
        // Patch changes when a minor is written, minor changes when only a major is.
        "~" => from(match precision {
            0 => None,
            1 => end,
            _ => Some(Version(low.0, low.1 + 1, 0)),
        }),
        ">=" => vec![(Op::Ge, low)],
        ">" => vec![match end {
            Some(end) if precision < 3 => (Op::Ge, end),
            _ if precision == 0 => return Some(vec![(Op::Lt, Version(0, 0, 0))]), // `>*`: nothing
            _ => (Op::Gt, low),
        }],
        "<" => vec![(Op::Lt, low)],
        "<=" => vec![match end {
            Some(end) if precision < 3 => (Op::Lt, end),
            _ if precision == 0 => (Op::Ge, low), // `<=*`: anything
            _ => (Op::Le, low),
        }],
        _ => return None,
    })
}

/// One SDK specifier a function writes that resolves to another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    /// As written in the code: `npm:@base44/sdk@0.7.1`, `@base44/sdk/dist/x.js`.
    pub written: String,
    /// What the import map sends it to: `npm:@base44/sdk@0.7.8`.
    pub target: String,
    /// The version asked for, as written (empty for none); for a bare import, the requirement
    /// of the `deno.json`/`package.json` beside the code, if any.
    pub asked: String,
    /// The version used (or, for a bare import whose manifest names a tag, that tag).
    pub used: String,
    pub why: Why,
}

impl Substitution {
    /// The line the worker's log gets when it starts: a warning when a pinned version is
    /// replaced, information when a range, a tag or a bare import is pinned down.
    pub fn note(&self) -> (Level, String) {
        let version = &self.used;
        if !self.written.starts_with("npm:") && self.why == Why::Range {
            let from = if self.asked.is_empty() {
                String::new()
            } else {
                format!(" (the deno.json or package.json beside the code asks for {})", self.asked)
            };
            return (
                Level::Info,
                format!("{} is imported without npm:; using @base44/sdk {version}{from}", self.written),
            );
        }
        match self.why {
            Why::Unpublished => (
                Level::Warning,
                format!(
                    "{} asks for @base44/sdk {}, which is not on the npm registry; using {version}, the nearest newer \
                     version that is",
                    self.written, self.asked
                ),
            ),
            Why::DoesNotLoad => (
                Level::Warning,
                format!(
                    "{} asks for @base44/sdk {}, whose package does not load under Deno; using {version}, the nearest \
                     newer version that does",
                    self.written, self.asked
                ),
            ),
            Why::Range if self.asked.is_empty() => {
                (Level::Info, format!("{} names no version of @base44/sdk; using {version}", self.written))
            }
            Why::Range => {
                (Level::Info, format!("{} asks for @base44/sdk {}; using {version}", self.written, self.asked))
            }
        }
    }
}

/// The SDK specifiers the code under `read_paths` writes that resolve to another one, each once,
/// in a stable order. `entry` is where a bare `@base44/sdk` looks for its version (a `deno.json`
/// or `package.json` in its folder or a parent within `read_paths`).
pub fn plan(entry: &Path, read_paths: &[PathBuf]) -> Vec<Substitution> {
    let mut written = Vec::new();
    scan(read_paths, &mut |text| collect_specifiers(text, &mut written));
    written.sort();
    written.dedup();
    let mut bare_requirement = None;
    let mut out = Vec::new();
    for specifier in written {
        let (bare, rest) = match specifier.strip_prefix("npm:") {
            Some(rest) => (false, rest),
            None => (true, specifier.as_str()),
        };
        let Some(after) = rest.strip_prefix(PACKAGE) else { continue };
        let (requirement, subpath) = if bare {
            let asked = bare_requirement.get_or_insert_with(|| manifest_requirement(entry, read_paths)).clone();
            (asked, after)
        } else {
            match after.strip_prefix('@') {
                Some(versioned) => match versioned.find('/') {
                    Some(slash) => (Some(versioned[..slash].to_string()), &versioned[slash..]),
                    None => (Some(versioned.to_string()), ""),
                },
                None => (None, after),
            }
        };
        let (used, why) = match resolve(requirement.as_deref()) {
            Resolution::Use(version, why) => (version.to_string(), why),
            // A bare import is never right as written: it gets what its manifest names.
            Resolution::AsWritten if bare => (requirement.clone().unwrap_or_default(), Why::Range),
            Resolution::AsWritten => continue,
        };
        out.push(Substitution {
            target: format!("npm:{PACKAGE}@{used}{subpath}"),
            written: specifier.clone(),
            asked: requirement.unwrap_or_default(),
            used,
            why,
        });
    }
    out
}

const PACKAGE: &str = "@base44/sdk";

/// Adds every string literal of `text` that is an SDK specifier (`"npm:@base44/sdk…"`,
/// `'@base44/sdk…'`) to `out`.
fn collect_specifiers(text: &str, out: &mut Vec<String>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find(PACKAGE) {
        let at = from + found;
        from = at + PACKAGE.len();
        let start = if at >= 4 && &text[at - 4..at] == "npm:" { at - 4 } else { at };
        let Some(&quote) = start.checked_sub(1).and_then(|i| bytes.get(i)) else { continue };
        if !matches!(quote, b'"' | b'\'' | b'`') {
            continue;
        }
        // The package itself, not `@base44/sdk-utils`: a version, a subpath or the end follows.
        if !matches!(bytes.get(from), Some(&b) if b == b'@' || b == b'/' || b == quote) {
            continue;
        }
        let Some(len) = text[from..].find(quote as char) else { continue };
        let literal = &text[start..from + len];
        if literal.len() <= 200 && !literal.contains(['\n', '$', '\\']) {
            out.push(literal.to_string());
        }
    }
}

/// The version a `deno.json` (its `imports`) or `package.json` (its dependencies) next to the
/// entry, or in a parent within `read_paths`, gives `@base44/sdk`.
fn manifest_requirement(entry: &Path, read_paths: &[PathBuf]) -> Option<String> {
    for dir in entry.ancestors().skip(1) {
        if !read_paths.iter().any(|root| dir.starts_with(root)) {
            break;
        }
        for name in ["deno.json", "deno.jsonc", "package.json"] {
            let Ok(text) = std::fs::read_to_string(dir.join(name)) else { continue };
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let found = if name == "package.json" {
                ["dependencies", "devDependencies", "peerDependencies"]
                    .iter()
                    .find_map(|key| json[key][PACKAGE].as_str())
                    .map(|r| r.strip_prefix(&format!("npm:{PACKAGE}@")).unwrap_or(r).to_string())
            } else {
                json["imports"][PACKAGE]
                    .as_str()
                    .and_then(|target| target.strip_prefix(&format!("npm:{PACKAGE}")))
                    .map(|rest| rest.trim_start_matches('@').trim_end_matches('/').to_string())
            };
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// Calls `visit` with the text of every script under `paths` (skipping `node_modules` and
/// dot-folders), up to [`SCAN_LIMIT`] bytes in all.
fn scan(paths: &[PathBuf], visit: &mut dyn FnMut(&str)) {
    let mut budget = SCAN_LIMIT;
    let mut pending: Vec<PathBuf> = paths.to_vec();
    let mut seen = std::collections::HashSet::new();
    while let Some(path) = pending.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else { continue };
            let mut children: Vec<_> = entries.flatten().collect();
            children.sort_by_key(|e| e.file_name());
            for entry in children {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !(is_dir && (name.starts_with('.') || name == "node_modules")) {
                    pending.push(entry.path());
                }
            }
            continue;
        }
        let script = path.extension().and_then(|e| e.to_str()).is_some_and(|e| SCRIPTS.contains(&e));
        if !script || meta.len() > budget {
            continue;
        }
        budget -= meta.len();
        if let Ok(bytes) = std::fs::read(&path) {
            visit(&String::from_utf8_lossy(&bytes));
        }
    }
}

/// How much code [`plan`] reads at most.
const SCAN_LIMIT: u64 = 8 * 1024 * 1024;
const SCRIPTS: [&str; 8] = ["ts", "tsx", "mts", "cts", "js", "jsx", "mjs", "cjs"];

/// The import map of a worker or a deploy check: `base44:runtime` and the substitutions.
pub(crate) fn import_map(runtime_url: &str, substitutions: &[Substitution]) -> String {
    let mut imports = serde_json::Map::new();
    imports.insert("base44:runtime".into(), runtime_url.into());
    for s in substitutions {
        imports.insert(s.written.clone(), s.target.clone().into());
    }
    serde_json::json!({ "imports": imports }).to_string()
}

/// Writes `map` as `<dir>/<hash of it>.json` unless it is there, and returns the path: workers of
/// the same code share one file, which nothing rewrites while a worker may read it.
pub(crate) fn write_import_map(dir: &Path, map: &str) -> std::io::Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let hash: String = Sha256::digest(map.as_bytes())[..12].iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{hash}.json"));
    if std::fs::read_to_string(&path).is_ok_and(|text| text == map) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".{hash}.{}.{}.tmp", std::process::id(), rand::random::<u32>()));
    std::fs::write(&temp, map)?;
    std::fs::rename(&temp, &path)?;
    Ok(path)
}

/// A short fingerprint of the table, for the markers that say a deployment's packages are cached
/// (a new table may send its SDK imports to other versions).
pub(crate) fn table_stamp() -> String {
    format!("{LOADABLE:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    fn resolved(requirement: Option<&str>) -> Option<(String, Why)> {
        match resolve(requirement) {
            Resolution::AsWritten => None,
            Resolution::Use(version, why) => Some((version.to_string(), why)),
        }
    }

    #[test]
    fn the_table_is_ordered_and_disjoint_from_the_versions_that_do_not_load() {
        let all: Vec<Version> = loadable().collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
        assert_eq!(all.len(), 45);
        assert!(DOES_NOT_LOAD.iter().all(|v| !all.contains(v)));
        assert_eq!(newest(), v("0.8.50"));
    }

    #[test]
    fn exact_versions_resolve_to_themselves_or_the_nearest_newer_that_loads() {
        assert_eq!(resolved(Some("0.8.25")), None, "listed: as written");
        assert_eq!(resolved(Some("0.8.50")), None);
        assert_eq!(resolved(Some("0.7.1")), Some(("0.7.8".into(), Why::Unpublished)));
        assert_eq!(resolved(Some("0.8.21")), Some(("0.8.22".into(), Why::Unpublished)));
        assert_eq!(resolved(Some("0.8.11")), Some(("0.8.12".into(), Why::DoesNotLoad)));
        assert_eq!(resolved(Some("0.8.9")), Some(("0.8.12".into(), Why::DoesNotLoad)));
        assert_eq!(resolved(Some("0.7.9")), Some(("0.7.10".into(), Why::Unpublished)));
        assert_eq!(resolved(Some("0.1.2")), Some(("0.5.0".into(), Why::DoesNotLoad)));
        assert_eq!(resolved(Some("0.0.1")), Some(("0.5.0".into(), Why::Unpublished)));
        assert_eq!(resolved(Some("=0.8.14")), Some(("0.8.16".into(), Why::Unpublished)));
        assert_eq!(resolved(Some("0.8.51")), None, "newer than the table: as written");
        assert_eq!(resolved(Some("1.0.0")), None);
    }

    #[test]
    fn ranges_tags_and_no_version_resolve_to_the_newest_they_allow() {
        let newest = Some(("0.8.50".to_string(), Why::Range));
        assert_eq!(resolved(None), newest);
        assert_eq!(resolved(Some("latest")), newest);
        assert_eq!(resolved(Some("^0.8.0")), newest);
        assert_eq!(resolved(Some("0.8")), newest);
        assert_eq!(resolved(Some("0.8.x")), newest);
        assert_eq!(resolved(Some("*")), newest);
        assert_eq!(resolved(Some("~0.8.9")), newest);
        assert_eq!(resolved(Some("^0.7.1")), Some(("0.7.10".into(), Why::Range)));
        assert_eq!(resolved(Some("~0.7")), Some(("0.7.10".into(), Why::Range)));
        assert_eq!(resolved(Some(">=0.8.0 <0.8.11")), Some(("0.8.6".into(), Why::Range)));
        assert_eq!(resolved(Some(">= 0.8.0 < 0.8.11")), Some(("0.8.6".into(), Why::Range)));
        assert_eq!(resolved(Some("0.8.0 - 0.8.20")), Some(("0.8.20".into(), Why::Range)));
        assert_eq!(resolved(Some("0.6 || 0.7")), Some(("0.7.10".into(), Why::Range)));
        assert_eq!(resolved(Some("<0.8.4")), Some(("0.8.3".into(), Why::Range)));
        assert_eq!(resolved(Some("~0.8.7 <0.8.9")), Some(("0.8.12".into(), Why::Range)), "none allowed: nearest newer");
        assert_eq!(resolved(Some("^0.9.0")), None, "past the table: as written");
        assert_eq!(resolved(Some("beta")), None, "a tag it does not know");
        assert_eq!(resolved(Some("0.8.50-beta.1")), None);
    }

    #[test]
    fn specifiers_are_found_in_string_literals_only() {
        let code = r#"
import { createClientFromRequest } from "npm:@base44/sdk@0.7.1";
import x from 'npm:@base44/sdk';
import type { T } from "npm:@base44/sdk@^0.8.0/dist/types.d.ts";
const y = await import(`@base44/sdk`);
import z from "npm:@base44/sdk-utils@1";
// see https://www.npmjs.com/package/@base44/sdk for the docs
const url = "https://esm.sh/@base44/sdk@0.7.1";
const templ = `npm:@base44/sdk@${v}`;
"#;
        let mut found = Vec::new();
        collect_specifiers(code, &mut found);
        assert_eq!(
            found,
            ["npm:@base44/sdk@0.7.1", "npm:@base44/sdk", "npm:@base44/sdk@^0.8.0/dist/types.d.ts", "@base44/sdk"]
        );
    }

    #[test]
    fn a_plan_maps_each_specifier_once_and_bare_imports_follow_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let function = dir.path().join("f");
        std::fs::create_dir_all(function.join("lib")).unwrap();
        std::fs::create_dir_all(function.join("node_modules/x")).unwrap();
        std::fs::write(
            function.join("entry.ts"),
            "import a from \"npm:@base44/sdk@0.7.1\";\nimport b from \"npm:@base44/sdk@0.8.25\";\nimport c from \"@base44/sdk\";\n",
        )
        .unwrap();
        std::fs::write(function.join("lib/x.ts"), "import a from 'npm:@base44/sdk@0.7.1/dist/index.js';\n").unwrap();
        std::fs::write(function.join("node_modules/x/y.js"), "import 'npm:@base44/sdk@0.8.9';\n").unwrap();
        let entry = function.join("entry.ts");
        let plan = plan(&entry, std::slice::from_ref(&function));
        let pairs: Vec<(&str, &str)> = plan.iter().map(|s| (s.written.as_str(), s.target.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("@base44/sdk", "npm:@base44/sdk@0.8.50"),
                ("npm:@base44/sdk@0.7.1", "npm:@base44/sdk@0.7.8"),
                ("npm:@base44/sdk@0.7.1/dist/index.js", "npm:@base44/sdk@0.7.8/dist/index.js"),
            ]
        );
        let (level, line) = plan[1].note();
        assert_eq!(level, Level::Warning);
        assert!(
            line.contains("0.7.1") && line.contains("using 0.7.8") && line.contains("not on the npm registry"),
            "{line}"
        );

        std::fs::write(function.join("package.json"), r#"{"dependencies": {"@base44/sdk": "0.8.21"}}"#).unwrap();
        let bare = &plan_of(&entry, &function)[0];
        assert_eq!((bare.target.as_str(), bare.asked.as_str()), ("npm:@base44/sdk@0.8.22", "0.8.21"));
        std::fs::write(function.join("deno.json"), r#"{"imports": {"@base44/sdk": "npm:@base44/sdk@0.8.20"}}"#)
            .unwrap();
        assert_eq!(plan_of(&entry, &function)[0].target, "npm:@base44/sdk@0.8.20", "deno.json first; a listed pin");
        assert!(plan_of(&entry, &dir.path().join("missing")).is_empty());
    }

    fn plan_of(entry: &Path, root: &Path) -> Vec<Substitution> {
        plan(entry, &[root.to_path_buf()])
    }

    #[test]
    fn import_maps_are_written_once_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let plan = vec![Substitution {
            written: "npm:@base44/sdk@0.7.1".into(),
            target: "npm:@base44/sdk@0.7.8".into(),
            asked: "0.7.1".into(),
            used: "0.7.8".into(),
            why: Why::Unpublished,
        }];
        let map = import_map("file:///host/runtime.js", &plan);
        let json: serde_json::Value = serde_json::from_str(&map).unwrap();
        assert_eq!(json["imports"]["npm:@base44/sdk@0.7.1"], "npm:@base44/sdk@0.7.8");
        assert_eq!(json["imports"]["base44:runtime"], "file:///host/runtime.js");
        let first = write_import_map(dir.path(), &map).unwrap();
        assert_eq!(write_import_map(dir.path(), &map).unwrap(), first);
        assert_eq!(std::fs::read_to_string(&first).unwrap(), map);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp files left");
    }

    /// Loads every listed version under the Deno Homebase uses, in one process, from the npm
    /// registry (cached in the user's Deno cache after the first run). Fails when a version of
    /// the table does not load, so the table cannot list one that Homebase cannot run.
    #[tokio::test]
    async fn every_listed_version_loads_under_deno() {
        let deno = crate::deno::locate_or_install(&|line| eprintln!("{line}")).await.expect("tests need Deno").path;
        let dir = tempfile::tempdir().unwrap();
        let versions: Vec<String> = loadable().map(|v| v.to_string()).collect();
        let imports: String = versions
            .iter()
            .map(|v| format!("  import(\"npm:@base44/sdk@{v}\").then((m) => [\"{v}\", typeof m.createClientFromRequest], (e) => [\"{v}\", String(e)]),\n"))
            .collect();
        let script =
            format!("const results = await Promise.all([\n{imports}]);\nconsole.log(JSON.stringify(results));\n");
        std::fs::write(dir.path().join("load.js"), script).unwrap();
        let output = tokio::process::Command::new(&deno)
            .args(["run", "--quiet", "--no-config", "--allow-env", "--allow-read", "--allow-net", "load.js"])
            .current_dir(dir.path())
            .env("DENO_NO_PACKAGE_JSON", "1")
            .env("NO_COLOR", "1")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let results: Vec<(String, String)> = serde_json::from_str(stdout.trim()).unwrap();
        let failed: Vec<_> = results.iter().filter(|(_, outcome)| outcome != "function").collect();
        assert!(failed.is_empty(), "listed versions that do not load under Deno: {failed:?}");
        assert_eq!(results.len(), versions.len());
    }
}
