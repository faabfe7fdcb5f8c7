//! Isolation of the Deno processes `serve` runs: workers and deploy checks.
//!
//! `dev` runs the developer's own code on the developer's own machine and keeps the plain setup.
//! `serve` runs code uploaded by whoever holds an app's API key, so with [`Isolation`] set:
//!
//! - **Environment.** A worker's environment is built from an allow-list ([`worker_env`]): what
//!   Deno needs, the server's proxy and CA settings ([`PASSTHROUGH`]), `BASE44_APP_ID` and the
//!   app's secrets. Nothing else of the server's environment. Secret names that the loader, the
//!   C library, Deno or Homebase read are refused ([`secret_name_problem`]) and never passed.
//! - **Deno caches.** Each app has its own `DENO_DIR` (`<cache>/apps/<hash of app id>/`) for
//!   transpiled code, V8's code cache and `localStorage`. Downloaded packages are shared:
//!   `<cache>/shared/npm` and `<cache>/shared/remote`, linked into every app's `DENO_DIR`.
//!   Only deploy checks write them; workers read them and run with `--cached-only`.
//! - **Landlock.** Every worker and deploy check is confined by a Landlock ruleset ([`Rules`])
//!   built before the spawn and applied in the child between fork and exec: it may read the Deno
//!   executable, the system files Deno needs, and its own code and caches, and write only its
//!   socket, temp folder and own cache. No TCP port may be bound; signals and abstract Unix
//!   sockets are scoped to the process's own domain (kernel permitting). This is what isolates
//!   files: Deno's `--allow-read` does not apply to module loading (`import "/etc/passwd"`).
//!
//! When the kernel has no Landlock, [`SandboxMode::Required`] (the default) refuses to start
//! and [`SandboxMode::BestEffort`] runs with everything above except Landlock.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How `serve` treats a kernel without Landlock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SandboxMode {
    /// Refuse to start: functions could read every file the server's user can.
    #[default]
    Required,
    /// Start anyway, loudly, with the environment and cache isolation only.
    BestEffort,
}

impl std::str::FromStr for SandboxMode {
    type Err = String;
    fn from_str(text: &str) -> Result<SandboxMode, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "required" => Ok(SandboxMode::Required),
            "best-effort" => Ok(SandboxMode::BestEffort),
            _ => Err(format!("'{text}' is not a sandbox mode; use \"required\" or \"best-effort\"")),
        }
    }
}

impl std::fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SandboxMode::Required => "required",
            SandboxMode::BestEffort => "best-effort",
        })
    }
}

/// `serve`'s isolation of workers and deploy checks (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// Deno's caches: `shared/` (packages) and `apps/<app>/` (each app's `DENO_DIR`).
    pub cache_dir: PathBuf,
    pub mode: SandboxMode,
}

/// What the running kernel offers for confining processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Landlock works. `net`: TCP bind rules (ABI 4, Linux 6.7); `scopes`: signal and abstract
    /// Unix socket scoping (ABI 6, Linux 6.12).
    Landlock { net: bool, scopes: bool },
    /// No Landlock, with the reason.
    Unavailable(String),
}

impl Support {
    /// What this kernel offers; probed once per process (a few `landlock_create_ruleset` calls,
    /// nothing is restricted).
    pub fn probe() -> Support {
        static SUPPORT: OnceLock<Support> = OnceLock::new();
        SUPPORT.get_or_init(probe).clone()
    }

    pub fn available(&self) -> bool {
        matches!(self, Support::Landlock { .. })
    }

    /// One sentence for the start-up banner.
    pub fn describe(&self) -> String {
        match self {
            Support::Landlock { net, scopes } => {
                let mut parts = vec!["files"];
                let mut missing = Vec::new();
                if *net {
                    parts.push("TCP bind");
                } else {
                    missing.push("TCP bind (Linux 6.7)");
                }
                if *scopes {
                    parts.push("signals and abstract Unix sockets");
                } else {
                    missing.push("signal and abstract socket scoping (Linux 6.12)");
                }
                let mut text = format!("functions run confined by Landlock ({})", parts.join(", "));
                if !missing.is_empty() {
                    text.push_str(&format!("; this kernel lacks {}", missing.join(" and ")));
                }
                text
            }
            Support::Unavailable(reason) => format!("Landlock is not available: {reason}"),
        }
    }
}

#[cfg(target_os = "linux")]
fn probe() -> Support {
    use landlock::{ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope};
    let works = |abi: ABI, net: bool, scopes: bool| {
        let ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
        let mut ruleset = match ruleset.handle_access(AccessFs::from_all(abi)) {
            Ok(ruleset) => ruleset,
            Err(_) => return false,
        };
        if net {
            ruleset = match ruleset.handle_access(AccessNet::BindTcp) {
                Ok(ruleset) => ruleset,
                Err(_) => return false,
            };
        }
        if scopes {
            ruleset = match ruleset.scope(Scope::from_all(abi)) {
                Ok(ruleset) => ruleset,
                Err(_) => return false,
            };
        }
        ruleset.create().is_ok()
    };
    if !works(ABI::V1, false, false) {
        return Support::Unavailable(
            "the kernel does not offer it (Linux 5.13 or newer with Landlock among its security modules is needed; \
             see `dmesg | grep landlock`)"
                .into(),
        );
    }
    Support::Landlock { net: works(ABI::V4, true, false), scopes: works(ABI::V6, false, true) }
}

#[cfg(not(target_os = "linux"))]
fn probe() -> Support {
    Support::Unavailable("Landlock exists only on Linux".into())
}

/// Why `name` may not be a secret, or `None` when it may. Secrets become a worker's environment,
/// so names that the dynamic loader, the C library, Deno, Node-compatible code or Homebase read
/// would let an app's key holder change how the worker process itself runs (`LD_PRELOAD` runs
/// any shared object). Compared case-insensitively: the proxy variables count in both cases.
pub fn secret_name_problem(name: &str) -> Option<String> {
    let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Some(format!(
            "'{name}' is not a valid secret name: use letters, digits and '_', not starting with a digit"
        ));
    }
    let upper = name.to_ascii_uppercase();
    let reason = reserved_reason(&upper)?;
    Some(format!("'{name}' cannot be a secret name: {reason}"))
}

const LOADER: &str = "the system's dynamic loader and C library read it when a worker starts";
const DENO: &str = "Deno reads it to configure the worker process";
const NETWORK: &str = "it decides where the worker's network and TLS traffic goes, which the server sets";
const HOMEBASE: &str = "Homebase sets it for every worker";

fn reserved_reason(upper: &str) -> Option<&'static str> {
    // The one NODE_* name that is an app setting, read by packages and no runtime.
    if upper == "NODE_ENV" {
        return None;
    }
    const PREFIXES: [(&str, &str); 9] = [
        ("LD_", LOADER),
        ("MALLOC_", LOADER),
        ("GLIBC_", LOADER),
        ("DENO_", DENO),
        ("RUST_", DENO),
        ("NPM_CONFIG_", DENO),
        ("NODE_", "Deno's Node compatibility and npm packages read it to configure the process"),
        ("HOMEBASE_", HOMEBASE),
        ("BASE44_", HOMEBASE),
    ];
    const EXACT: [(&str, &str); 26] = [
        ("PATH", HOMEBASE),
        ("HOME", HOMEBASE),
        ("TMPDIR", HOMEBASE),
        ("TMP", HOMEBASE),
        ("TEMP", HOMEBASE),
        ("NO_COLOR", HOMEBASE),
        ("FORCE_COLOR", DENO),
        ("JSR_URL", DENO),
        ("HTTP_PROXY", NETWORK),
        ("HTTPS_PROXY", NETWORK),
        ("NO_PROXY", NETWORK),
        ("ALL_PROXY", NETWORK),
        ("FTP_PROXY", NETWORK),
        ("SSL_CERT_FILE", NETWORK),
        ("SSL_CERT_DIR", NETWORK),
        ("SSLKEYLOGFILE", NETWORK),
        ("GCONV_PATH", LOADER),
        ("GETCONF_DIR", LOADER),
        ("HOSTALIASES", LOADER),
        ("LOCALDOMAIN", LOADER),
        ("LOCPATH", LOADER),
        ("NIS_PATH", LOADER),
        ("NLSPATH", LOADER),
        ("RES_OPTIONS", LOADER),
        ("RESOLV_HOST_CONF", LOADER),
        ("TZDIR", LOADER),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| upper.starts_with(prefix))
        .or_else(|| EXACT.iter().find(|(exact, _)| upper == *exact))
        .map(|(_, reason)| *reason)
}

/// Settings of the server's environment that reach workers and deploy checks in `serve`, so that
/// `npm:` and `https:` imports work behind a proxy or a private CA: the proxies (both cases),
/// the CA files and store (Deno also reads `NODE_EXTRA_CA_CERTS`), and npm's registry.
pub const PASSTHROUGH: [&str; 13] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "DENO_CERT",
    "DENO_TLS_CA_STORE",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NPM_CONFIG_REGISTRY",
    "npm_config_registry",
];

/// Harmless settings of the server kept for workers (time zone and language of dates).
const KEPT: [&str; 2] = ["TZ", "LANG"];

/// The `PATH` of a confined process: Deno needs none; this is for code that looks.
const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment of a confined process, from nothing: `PATH`, `HOME` and `TMPDIR` (its temp
/// folder), `DENO_DIR`, Deno's quiet switches, `TZ` and `LANG`, and [`PASSTHROUGH`].
pub(crate) fn base_env(tmp: &Path, deno_dir: &Path) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), SAFE_PATH.into()),
        ("HOME".into(), tmp.into()),
        ("TMPDIR".into(), tmp.into()),
        ("DENO_DIR".into(), deno_dir.into()),
        ("DENO_NO_PACKAGE_JSON".into(), "1".into()),
        ("DENO_NO_UPDATE_CHECK".into(), "1".into()),
        ("NO_COLOR".into(), "1".into()),
    ];
    for key in KEPT.iter().chain(PASSTHROUGH.iter()) {
        if let Some(value) = std::env::var_os(key).filter(|v| !v.is_empty()) {
            env.push((key.into(), value));
        }
    }
    env
}

/// The files named by the CA settings of [`PASSTHROUGH`], which a confined Deno must read.
fn ca_files() -> Vec<PathBuf> {
    ["DENO_CERT", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .filter_map(std::env::var_os)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .collect()
}

/// The secrets a worker gets: every pair whose name passes [`secret_name_problem`].
pub(crate) fn allowed_secrets(env: &[(String, String)]) -> impl Iterator<Item = &(String, String)> {
    env.iter().filter(|(name, _)| secret_name_problem(name).is_none())
}

/// Deno's cache folders under [`Isolation::cache_dir`].
#[derive(Debug, Clone)]
pub(crate) struct Caches {
    root: PathBuf,
}

/// The package caches inside a `DENO_DIR` that are shared between apps.
const SHARED: [&str; 2] = ["npm", "remote"];

impl Caches {
    /// Creates `<root>/shared/{npm,remote}` and `<root>/apps`.
    pub fn open(root: &Path) -> std::io::Result<Caches> {
        let root = absolute(root)?;
        for dir in SHARED {
            create_private_dir(&root.join("shared").join(dir))?;
        }
        create_private_dir(&root.join("apps"))?;
        create_private_dir(&root.join("shared").join("warm"))?;
        Ok(Caches { root })
    }

    /// The package caches: `npm` and `remote`.
    pub fn packages(&self) -> Vec<PathBuf> {
        SHARED.iter().map(|dir| self.root.join("shared").join(dir)).collect()
    }

    /// Where [`crate::check`] notes which entries have their packages cached.
    pub fn warm_dir(&self) -> PathBuf {
        self.root.join("shared").join("warm")
    }

    /// The `DENO_DIR` of `app_id` (created, with links to the shared package caches).
    pub fn app_dir(&self, app_id: &str) -> std::io::Result<PathBuf> {
        use sha2::{Digest, Sha256};
        let hash: String = Sha256::digest(app_id.as_bytes())[..12].iter().map(|b| format!("{b:02x}")).collect();
        let dir = self.root.join("apps").join(hash);
        self.deno_dir_at(&dir)?;
        Ok(dir)
    }

    /// Makes `dir` a `DENO_DIR` whose package caches are the shared ones.
    pub fn deno_dir_at(&self, dir: &Path) -> std::io::Result<()> {
        create_private_dir(dir)?;
        for (name, target) in SHARED.iter().zip(self.packages()) {
            let link = dir.join(name);
            if std::fs::read_link(&link).is_ok_and(|t| t == target) {
                continue;
            }
            // Something else (an older layout, or a folder a process left): replace it.
            let _ = std::fs::remove_file(&link).or_else(|_| std::fs::remove_dir_all(&link));
            match std::os::unix::fs::symlink(&target, &link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(path)?;
    path.canonicalize()
}

pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// How workers are isolated in `serve`: their caches, and whether Landlock confines them.
#[derive(Debug, Clone)]
pub(crate) struct WorkerIsolation {
    pub caches: Caches,
    pub confine: bool,
}

impl WorkerIsolation {
    /// Gives `cmd` a clean environment ([`base_env`]) and its temp folder as working folder, and
    /// confines it to reading `read` and writing `write` (besides what Deno itself needs).
    pub fn apply(
        &self,
        cmd: &mut tokio::process::Command,
        deno: &Path,
        read: &[PathBuf],
        write: &[PathBuf],
        tmp: &Path,
        deno_dir: &Path,
    ) -> std::io::Result<()> {
        cmd.env_clear().envs(base_env(tmp, deno_dir)).current_dir(tmp);
        if self.confine {
            let mut rules = Rules::for_deno(deno);
            for path in read {
                rules.read(path);
            }
            for path in write {
                rules.write(path);
            }
            rules.apply(cmd)?;
        }
        Ok(())
    }
}

/// What a confined process may touch: `read` (and execute) only, or `write` (everything).
/// Paths that do not exist are left out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
}

/// System files a Deno process reads: its libraries, the loader's cache, DNS configuration, CA
/// certificates ([`CA_CERTIFICATES`]), time zones, and the few `/proc` and `/sys` files V8 and Deno
/// ask about (memory, CPUs, the kernel release). No process's own `/proc/<pid>` folder: Deno runs
/// without it.
const SYSTEM_READ: [&str; 30] = [
    "/lib",
    "/lib64",
    "/lib32",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/share/zoneinfo",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/timezone",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/sys/kernel/osrelease",
    "/sys/devices/system/cpu",
];

/// Where the systems Deno runs on keep CA certificates, for `npm:` and `https:` imports and
/// `fetch` over TLS (Deno's own roots need none; `DENO_TLS_CA_STORE=system` and
/// `NODE_EXTRA_CA_CERTS` read these): the certificate folders and bundle files of Debian and
/// Ubuntu, Fedora and RHEL, SUSE, Arch and Alpine, and where their links lead. Never their parents:
/// `/etc/ssl/private` and `/etc/pki/tls/private` hold the host's TLS private keys.
pub(crate) const CA_CERTIFICATES: [&str; 12] = [
    "/etc/ssl/certs",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/certs",
    "/etc/pki/tls/cert.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/var/lib/ca-certificates",
];

impl Rules {
    /// The Deno executable and the system files it needs, and `/dev/null` to write.
    pub fn for_deno(deno: &Path) -> Rules {
        let mut rules = Rules::default();
        rules.read(deno.canonicalize().unwrap_or_else(|_| deno.to_path_buf()));
        for path in SYSTEM_READ.iter().chain(CA_CERTIFICATES.iter()) {
            rules.read(PathBuf::from(path));
        }
        for file in ca_files() {
            rules.read(file);
        }
        rules.write(PathBuf::from("/dev/null"));
        rules
    }

    pub fn read(&mut self, path: impl Into<PathBuf>) -> &mut Rules {
        self.read.push(path.into());
        self
    }

    pub fn write(&mut self, path: impl Into<PathBuf>) -> &mut Rules {
        self.write.push(path.into());
        self
    }

    /// Builds the ruleset now and has the child of `cmd` restrict itself with it between fork
    /// and exec, so Deno starts confined. An error here means the process must not be spawned.
    #[cfg(target_os = "linux")]
    pub fn apply(&self, cmd: &mut tokio::process::Command) -> std::io::Result<()> {
        use landlock::{
            ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
            RulesetStatus, Scope,
        };
        // The newest ABI whose rights we use; older kernels enforce what they know (best effort,
        // checked at start by `Support::probe`).
        let abi = ABI::V6;
        let error = |e: landlock::RulesetError| std::io::Error::other(format!("Landlock: {e}"));
        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(abi))
            .map_err(error)?
            .handle_access(AccessNet::BindTcp)
            .map_err(error)?
            .scope(Scope::from_all(abi))
            .map_err(error)?
            .create()
            .map_err(error)?;
        let grants = [(&self.read, AccessFs::from_read(abi)), (&self.write, AccessFs::from_all(abi))];
        for (paths, access) in grants {
            for path in paths {
                let Ok(metadata) = std::fs::metadata(path) else { continue };
                let Ok(fd) = PathFd::new(path) else { continue };
                let access = if metadata.is_dir() { access } else { access & AccessFs::from_file(abi) };
                ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(error)?;
            }
        }
        let mut ruleset = Some(ruleset);
        // SAFETY: between fork and exec only async-signal-safe work may run. `restrict_self`
        // makes two system calls (prctl(PR_SET_NO_NEW_PRIVS) and landlock_restrict_self on the
        // ruleset's file descriptor, inherited from the parent) and builds plain values; its
        // errors carry an OS error code, not an allocation, and so does ours.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || match ruleset.take().map(|r| r.restrict_self()) {
                Some(Ok(status)) if status.ruleset != RulesetStatus::NotEnforced => Ok(()),
                _ => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
            });
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub fn apply(&self, _: &mut tokio::process::Command) -> std::io::Result<()> {
        Err(std::io::Error::other("Landlock exists only on Linux"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_loader_deno_or_homebase_read_are_refused() {
        for name in [
            "LD_PRELOAD",
            "ld_preload",
            "LD_LIBRARY_PATH",
            "DENO_DIR",
            "DENO_V8_FLAGS",
            "DENO_AUTH_TOKENS",
            "NODE_OPTIONS",
            "SSLKEYLOGFILE",
            "HOME",
            "PATH",
            "TMPDIR",
            "http_proxy",
            "HTTPS_PROXY",
            "NO_PROXY",
            "SSL_CERT_FILE",
            "HOMEBASE_ENTRY",
            "BASE44_APP_ID",
            "GLIBC_TUNABLES",
            "MALLOC_ARENA_MAX",
            "GCONV_PATH",
            "NPM_CONFIG_REGISTRY",
            "RUST_LOG",
        ] {
            let problem = secret_name_problem(name).unwrap_or_else(|| panic!("{name} must be refused"));
            assert!(problem.starts_with(&format!("'{name}' cannot be a secret name: ")), "{problem}");
        }
        for name in
            ["STRIPE_KEY", "OPENAI_API_KEY", "DATABASE_URL", "TZ", "LANG", "MY_LD_PRELOAD", "_X", "PATHS", "NODE_ENV"]
        {
            assert_eq!(secret_name_problem(name), None, "{name}");
        }
        for name in ["", "1X", "A-B", "A B", "A=B", "é"] {
            assert!(secret_name_problem(name).unwrap().contains("not a valid secret name"), "{name:?}");
        }
    }

    #[test]
    fn the_base_environment_is_an_allow_list() {
        let env = base_env(Path::new("/t"), Path::new("/d"));
        let names: Vec<String> = env.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        for name in &names {
            let known =
                ["PATH", "HOME", "TMPDIR", "DENO_DIR", "DENO_NO_PACKAGE_JSON", "DENO_NO_UPDATE_CHECK", "NO_COLOR"]
                    .contains(&name.as_str())
                    || KEPT.contains(&name.as_str())
                    || PASSTHROUGH.contains(&name.as_str());
            assert!(known, "{name} is not on the allow-list");
        }
        assert!(env.contains(&("HOME".into(), "/t".into())));
        assert!(env.contains(&("DENO_DIR".into(), "/d".into())));
    }

    /// Workers and deploy checks read CA certificates, never the host's TLS private keys: no
    /// rule grants `/etc/ssl/private`, `/etc/pki/tls/private` or a folder above them.
    #[test]
    fn tls_private_keys_are_not_among_the_readable_files() {
        let rules = Rules::for_deno(Path::new("/nonexistent/deno"));
        for private in
            ["/etc/ssl/private/ssl-cert-snakeoil.key", "/etc/pki/tls/private/localhost.key", "/etc/ssl/x.key"]
        {
            for granted in rules.read.iter().chain(&rules.write) {
                assert!(!Path::new(private).starts_with(granted), "{} opens {private}", granted.display());
            }
        }
        for certificates in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"] {
            assert!(rules.read.iter().any(|granted| Path::new(certificates).starts_with(granted)), "{certificates}");
        }
    }

    /// The rules at work: a Deno with every permission of its own (`deno eval`), confined as
    /// workers and deploy checks are, reads the CA bundle and not a TLS private key. The key is
    /// made for the test in `/etc/ssl/private` (the tests run as root) and removed after; without
    /// root, the host's snakeoil key is tried if it exists.
    #[tokio::test]
    async fn a_confined_deno_reads_ca_certificates_but_never_tls_private_keys() {
        if !Support::probe().available() {
            eprintln!("skipped: this kernel has no Landlock");
            return;
        }
        struct Made(PathBuf);
        impl Drop for Made {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let made = PathBuf::from(format!("/etc/ssl/private/homebase-runtime-test-{}.key", std::process::id()));
        let made = std::fs::write(&made, "-----BEGIN PRIVATE KEY-----\nmade-by-a-test\n").ok().map(|()| Made(made));
        let key = match &made {
            Some(made) => made.0.clone(),
            None => PathBuf::from("/etc/ssl/private/ssl-cert-snakeoil.key"),
        };
        let bundle = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(bundle) = bundle.filter(|_| key.exists()) else {
            eprintln!("skipped: no TLS private key or CA bundle to try on this machine");
            return;
        };
        let deno = crate::deno::locate_or_install(&|line| eprintln!("{line}")).await.unwrap().path;
        let home = tempfile::tempdir().unwrap();
        let code = format!(
            "for (const path of [{:?}, {bundle:?}]) {{ try {{ console.log(path, 'read', Deno.readTextFileSync(path).length); }} \
             catch (e) {{ console.log(path, 'refused', e.name); }} }}",
            key.display().to_string(),
        );
        let mut cmd = tokio::process::Command::new(&deno);
        cmd.args(["eval", "--no-config", &code]).env_clear().envs(base_env(home.path(), home.path()));
        let mut rules = Rules::for_deno(&deno);
        rules.write(home.path());
        rules.apply(&mut cmd).unwrap();
        let output = cmd.output().await.unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
        assert!(text.contains(&format!("{} refused PermissionDenied", key.display())), "{text}");
        assert!(text.contains(&format!("{bundle} read ")), "{text}");
    }

    #[test]
    fn sandbox_modes_parse() {
        assert_eq!("required".parse(), Ok(SandboxMode::Required));
        assert_eq!("Best-Effort".parse(), Ok(SandboxMode::BestEffort));
        assert!("off".parse::<SandboxMode>().unwrap_err().contains("required"));
    }

    #[test]
    fn app_caches_link_the_shared_packages() {
        let temp = tempfile::tempdir().unwrap();
        let caches = Caches::open(temp.path()).unwrap();
        let a = caches.app_dir("app-a").unwrap();
        let b = caches.app_dir("../b").unwrap();
        assert_ne!(a, b);
        assert_eq!(b.parent(), a.parent(), "an app id never climbs out of apps/");
        for dir in [&a, &b] {
            assert_eq!(std::fs::read_link(dir.join("npm")).unwrap(), caches.packages()[0]);
            assert_eq!(std::fs::read_link(dir.join("remote")).unwrap(), caches.packages()[1]);
        }
        assert_eq!(caches.app_dir("app-a").unwrap(), a, "stable across calls");
    }
}
