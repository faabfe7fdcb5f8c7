//! What `dist/` ships for production (docs/serve.md, "Running in production") stays usable: the
//! example settings resolve, the unit keeps what the sandbox needs, and the proxy
//! configurations in the docs are the files themselves.

use std::path::PathBuf;

use homebase_server::config::{Config, ConfigLayer};

fn repo_file(path: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

#[test]
fn the_example_settings_resolve_as_serve_reads_them() {
    let (path, _) = repo_file("dist/homebase.toml");
    let layer = ConfigLayer::from_file(&path, true).unwrap();
    let config = Config::resolve(&[("dist/homebase.toml", layer)]).unwrap();
    assert_eq!((config.host.to_string(), config.port), ("127.0.0.1".to_string(), 8080));
    assert!(config.public_url.as_deref().is_some_and(|url| url.starts_with("https://")));
    assert!(config.trusted_proxies().trusts("127.0.0.1".parse().unwrap()));
}

/// The settings of the unit the sandbox depends on: without them Landlock or the workers'
/// seccomp filter cannot be applied, and `serve` refuses to start (or V8 cannot run).
#[test]
fn the_unit_leaves_the_sandbox_working() {
    let (_, unit) = repo_file("dist/homebase.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .collect();
    let get = |key: &str| settings.iter().filter(|(k, _)| *k == key).map(|(_, v)| *v).collect::<Vec<_>>();
    assert_eq!(get("NoNewPrivileges"), ["yes"]);
    let filter = get("SystemCallFilter").join(" ");
    for call in ["@system-service", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "seccomp"]
    {
        assert!(filter.split_whitespace().any(|c| c == call), "SystemCallFilter lacks {call}: {filter}");
    }
    assert_eq!(get("SystemCallErrorNumber"), ["EPERM"], "a refused call fails, it does not kill the server");
    assert!(get("MemoryDenyWriteExecute").is_empty(), "V8 needs writable executable memory");
    for family in ["AF_UNIX", "AF_INET", "AF_NETLINK"] {
        assert!(get("RestrictAddressFamilies").join(" ").contains(family), "{family}");
    }
    assert_eq!(get("KillMode"), ["mixed"], "SIGTERM to homebase alone, which stops its workers itself");
    assert_eq!(get("User"), ["homebase"]);
    let (_, sysusers) = repo_file("dist/homebase.sysusers");
    assert!(sysusers.lines().any(|line| line.starts_with("u homebase ")), "{sysusers}");
}

#[test]
fn the_proxy_configurations_in_the_docs_are_the_shipped_files() {
    let (_, docs) = repo_file("docs/serve.md");
    for (file, fence) in [("dist/nginx.conf", "```nginx\n"), ("dist/Caddyfile", "```caddy\n")] {
        let (_, text) = repo_file(file);
        assert!(docs.contains(&format!("{fence}{text}```")), "docs/serve.md must show {file} as it is");
    }
    let (_, nginx) = repo_file("dist/nginx.conf");
    for directive in [
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "underscores_in_headers on;",
        "proxy_read_timeout 1h;",
    ] {
        assert!(nginx.contains(directive), "{directive}");
    }
}
