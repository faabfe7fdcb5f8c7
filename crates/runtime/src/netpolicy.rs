//! The network policy of function workers: what a function may connect to.
//!
//! A worker runs with Deno's `--allow-net`, which alone lets a function reach anything the host
//! can: the databases and caches on `127.0.0.1`, the private network, the cloud's metadata
//! service. A *restricted* worker gets `--deny-net` too, listing
//!
//! - the IPv4 ranges of [`DENIED_IPV4`] (loopback, "this network", RFC 1918, CGNAT, link-local
//!   with the metadata service at 169.254.169.254, and other special-purpose ranges), minus the
//!   allowed ones, cut out with CIDR arithmetic ([`subtract`]): in Deno a deny rule beats every
//!   allow rule, so an exception has to be a hole in the deny list;
//! - `[::]` and `[::1]`, and every address of the host's own interfaces, IPv4 and IPv6;
//!
//! Deno checks deny rules against the addresses a name resolves to as well, and connects only
//! to the addresses it checked, so `localhost`, `2130706433` or a name pointing at `10.0.0.5`
//! are refused like the literal. Listening is refused too: `0.0.0.0`, `[::]` and every local
//! address are denied, and binding any other address fails.
//!
//! Deno's `--deny-net` cannot express an IPv6 range (`fc00::/7` does not parse), so on Linux a
//! restricted worker cannot open IPv6 sockets at all (a seccomp filter fails `socket(AF_INET6)`
//! with `EAFNOSUPPORT`; names with both kinds of address fall back to IPv4). An allow entry that
//! is IPv6 turns IPv6 sockets back on; then only the exact IPv6 addresses above are denied.
//!
//! Exceptions come from `function-net-allow` ([`NetAllow`]): addresses and CIDR blocks, for the
//! whole server and per app; `*` means no restriction (what `homebase dev` uses).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::RwLock;

use ipnet::{IpNet, Ipv4Net};

/// The IPv4 ranges a restricted worker may not reach unless `function-net-allow` opens them,
/// with what they are.
pub const DENIED_IPV4: [(&str, &str); 11] = [
    ("10.0.0.0/8", "private network (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback: this host"),
    ("169.254.0.0/16", "link-local, including cloud metadata at 169.254.169.254"),
    ("172.16.0.0/12", "private network (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.168.0.0/16", "private network (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking networks"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, and the broadcast address"),
    ("0.0.0.0/8", "\"this network\": 0.0.0.0 reaches this host"),
];

/// Denied whatever `function-net-allow` says (short of `*`), like `[::]`: the unspecified
/// addresses, which reach this host when connected to and are what `Deno.listen()` binds by
/// default.
const ALWAYS_DENIED: &str = "0.0.0.0/8";

/// A `function-net-allow` list: the addresses and CIDR blocks a restricted worker may reach
/// after all, or any address (`*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NetAllow {
    any: bool,
    nets: Vec<IpNet>,
}

impl NetAllow {
    /// No restriction at all (`*`).
    pub fn any() -> NetAllow {
        NetAllow { any: true, nets: Vec::new() }
    }

    /// Nothing beyond the public internet.
    pub fn none() -> NetAllow {
        NetAllow::default()
    }

    /// Parses the entries of a list; the error names the first bad one and says what to write.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<NetAllow, String> {
        let mut allow = NetAllow::none();
        for entry in entries {
            match parse_entry(entry.as_ref())? {
                None => allow.any = true,
                Some(net) => {
                    if !allow.nets.contains(&net) {
                        allow.nets.push(net);
                    }
                }
            }
        }
        Ok(allow)
    }

    /// Whether every address is allowed.
    pub fn is_any(&self) -> bool {
        self.any
    }

    pub fn is_empty(&self) -> bool {
        !self.any && self.nets.is_empty()
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Everything either list allows.
    pub fn union(&self, other: &NetAllow) -> NetAllow {
        let mut nets = self.nets.clone();
        nets.extend(other.nets.iter().filter(|n| !self.nets.contains(n)));
        NetAllow { any: self.any || other.any, nets }
    }

    /// The entries in canonical form (`*`, `10.0.0.5`, `10.0.0.0/24`, `fd00::/8`), for storing
    /// and showing.
    pub fn entries(&self) -> Vec<String> {
        let nets = self.nets.iter().map(|net| match net.prefix_len() == net.max_prefix_len() {
            true => net.addr().to_string(),
            false => net.to_string(),
        });
        self.any.then(|| "*".to_string()).into_iter().chain(nets).collect()
    }

    fn allows(&self, addr: IpAddr) -> bool {
        self.any || self.nets.iter().any(|net| net.contains(&addr))
    }
}

/// One entry: `*` (`None`), an IP address (`10.0.0.5`, `::1`, `[fd00::5]`) or a CIDR block
/// (`10.0.0.0/24`, `fd00::/8`). Host bits of a block are dropped (`10.0.0.5/24` is
/// `10.0.0.0/24`); an IPv4-mapped IPv6 address is its IPv4 address, as in Deno.
pub fn parse_entry(text: &str) -> Result<Option<IpNet>, String> {
    let entry = text.trim();
    if entry == "*" {
        return Ok(None);
    }
    if entry.is_empty() {
        return Err("an entry is empty; write an IP address, a CIDR block like 10.0.0.0/24, or *".into());
    }
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let bare = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return Err(entry_problem(entry));
    };
    let ip = canonical(ip);
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(text) => match text.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("'{entry}': the prefix length must be a number from 0 to {max}")),
        },
    };
    let net = IpNet::new(ip, prefix).expect("the prefix length was checked");
    Ok(Some(net.trunc()))
}

/// Why `entry` is neither an address nor a block, with what to write instead.
fn entry_problem(entry: &str) -> String {
    let (host, port) = match entry.strip_prefix('[').and_then(|rest| rest.split_once("]:")) {
        Some((host, port)) => (host, Some(port)),
        None => match entry.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (entry, None),
        },
    };
    if port.is_some_and(|p| p.parse::<u16>().is_ok()) && host.parse::<IpAddr>().is_ok() {
        return format!(
            "'{entry}' names a port; entries are addresses or CIDR blocks, and allowing one opens all its \
             ports: write {host}"
        );
    }
    if entry.contains("://") {
        return format!("'{entry}' is a URL; write the IP address of its host, e.g. 10.0.0.5");
    }
    format!(
        "'{entry}' is not an IP address or CIDR block; host names are not accepted (a name can point \
         anywhere): write the address, e.g. 10.0.0.5, or its network, e.g. 10.0.0.0/24"
    )
}

/// IPv4-mapped IPv6 addresses are their IPv4 address (Deno treats them so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// How one worker reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkerNet {
    /// `--allow-net` and nothing else.
    Open,
    Restricted {
        /// The `--deny-net` entries, in Deno's syntax.
        deny: Vec<String>,
        /// Whether the worker may open IPv6 sockets (an allow entry is IPv6).
        ipv6: bool,
    },
}

impl WorkerNet {
    /// The policy for a worker allowed `allow`, on a host whose interfaces have `own`.
    pub fn new(allow: &NetAllow, own: &[IpAddr]) -> WorkerNet {
        if allow.is_any() {
            return WorkerNet::Open;
        }
        let (v4, v6) = denied(allow, own);
        let deny = v4
            .iter()
            .map(|net| if net.prefix_len() == 32 { net.addr().to_string() } else { net.to_string() })
            .chain(v6.iter().map(|ip| format!("[{ip}]")))
            .collect();
        WorkerNet::Restricted { deny, ipv6: allow.nets.iter().any(|net| matches!(net, IpNet::V6(_))) }
    }

    pub fn is_restricted(&self) -> bool {
        matches!(self, WorkerNet::Restricted { .. })
    }

    /// Deno's network flags.
    pub fn deno_args(&self) -> Vec<String> {
        match self {
            WorkerNet::Open => vec!["--allow-net".into()],
            WorkerNet::Restricted { deny, .. } => vec!["--allow-net".into(), format!("--deny-net={}", deny.join(","))],
        }
    }

    /// Adds what Deno's flags cannot say to the worker's process: on Linux, a restricted worker
    /// without IPv6 gets a seccomp filter that fails `socket(AF_INET6)` and `socket(AF_VSOCK)`.
    pub fn confine(&self, cmd: &mut tokio::process::Command) -> std::io::Result<()> {
        match self {
            WorkerNet::Restricted { ipv6: false, .. } => no_ipv6_sockets(cmd),
            _ => Ok(()),
        }
    }
}

/// The IPv4 blocks and IPv6 addresses denied to a worker allowed `allow`.
fn denied(allow: &NetAllow, own: &[IpAddr]) -> (Vec<Ipv4Net>, Vec<Ipv6Addr>) {
    let allowed_v4: Vec<Ipv4Net> =
        allow.nets.iter().filter_map(|net| if let IpNet::V4(v4) = net { Some(*v4) } else { None }).collect();
    let mut v4: Vec<Ipv4Net> = Vec::new();
    for (range, _) in DENIED_IPV4 {
        let range: Ipv4Net = range.parse().expect("a valid block");
        if range.to_string() == ALWAYS_DENIED {
            v4.push(range);
        } else {
            v4.extend(subtract_all(range, &allowed_v4));
        }
    }
    let mut v6 = vec![Ipv6Addr::UNSPECIFIED];
    for ip in own.iter().copied().map(canonical).chain([IpAddr::V6(Ipv6Addr::LOCALHOST)]) {
        if allow.allows(ip) {
            continue;
        }
        match ip {
            IpAddr::V4(ip) if !v4.iter().any(|net| net.contains(&ip)) => v4.push(Ipv4Net::from(ip)),
            IpAddr::V6(ip) if !v6.contains(&ip) => v6.push(ip),
            _ => {}
        }
    }
    (v4, v6)
}

/// `range` without every block of `holes`.
fn subtract_all(range: Ipv4Net, holes: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let mut left = vec![range];
    for hole in holes {
        left = left.into_iter().flat_map(|net| subtract(net, *hole)).collect();
    }
    left.sort();
    left
}

/// `range` without `hole`, as the fewest CIDR blocks. Two blocks are either disjoint or one holds
/// the other; when `range` holds `hole`, what is left is, for each prefix length between theirs,
/// the sibling of the block on the way down to `hole`.
pub fn subtract(range: Ipv4Net, hole: Ipv4Net) -> Vec<Ipv4Net> {
    if hole.contains(&range) {
        return Vec::new();
    }
    if !range.contains(&hole) {
        return vec![range];
    }
    let target = u32::from(hole.network());
    (range.prefix_len() + 1..=hole.prefix_len())
        .map(|len| {
            let bit = 1u32 << (32 - len);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let sibling = (target & mask) ^ bit;
            Ipv4Net::new(Ipv4Addr::from(sibling), len).expect("a valid prefix length")
        })
        .collect()
}

/// Homebase's own API as workers reach it: a Unix socket in the runtime's private work folder,
/// on which the server serves the same router as on TCP. A restricted worker cannot connect to
/// loopback or this host's addresses, so its host (`host.js`) sends requests for these origins
/// there instead: every `Base44-Api-Url` it receives, and the ones named here.
#[derive(Debug)]
pub(crate) struct ApiRoute {
    pub socket: PathBuf,
    /// The origins, comma-separated; `None` until the server serves the socket.
    origins: RwLock<Option<String>>,
}

impl ApiRoute {
    pub fn new(socket: PathBuf) -> ApiRoute {
        ApiRoute { socket, origins: RwLock::new(None) }
    }

    pub fn set_origins(&self, origins: &[String]) {
        *self.origins.write().unwrap() = Some(origins.join(","));
    }

    /// The origins, once the socket is served.
    pub fn origins(&self) -> Option<String> {
        self.origins.read().unwrap().clone()
    }
}

/// Whether a function's code mentions `npm:` or `node:http` (which `node:https` starts with): its
/// workers then route `node:http`/`node:https` requests (axios, the official SDK) to the API
/// socket from the start. Loading `node:http` costs a cold start 10 to 30 ms, so functions that
/// show no sign of Node's world do not pay it; they reach the API with `fetch`. Files under
/// `paths` are read up to [`SCAN_LIMIT`] bytes in all, skipping `node_modules` and dot-folders.
pub(crate) fn mentions_node(paths: &[PathBuf]) -> bool {
    let mut budget = SCAN_LIMIT;
    let mut pending: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else { continue };
            for entry in entries.flatten() {
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
        if let Ok(text) = std::fs::read(&path)
            && [&b"npm:"[..], b"node:http"].iter().any(|needle| text.windows(needle.len()).any(|w| w == *needle))
        {
            return true;
        }
    }
    false
}

/// How much code [`mentions_node`] reads at most.
const SCAN_LIMIT: u64 = 8 * 1024 * 1024;
const SCRIPTS: [&str; 8] = ["ts", "tsx", "mts", "cts", "js", "jsx", "mjs", "cjs"];

/// Every address of this host's interfaces (loopback included). A failure to list them is
/// logged and leaves only the fixed ranges, which cover loopback and the private networks.
pub(crate) fn own_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.into_iter().map(|i| i.ip()).collect(),
        Err(error) => {
            tracing::warn!(%error, "could not list this host's addresses; functions may reach its public ones");
            Vec::new()
        }
    }
}

#[cfg(target_os = "linux")]
fn no_ipv6_sockets(cmd: &mut tokio::process::Command) -> std::io::Result<()> {
    use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
    let family = |af: libc::c_int| {
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, af as u64)
            .and_then(|condition| SeccompRule::new(vec![condition]))
    };
    let arch = std::env::consts::ARCH;
    let program: seccompiler::BpfProgram = (|| {
        let rules = [(libc::SYS_socket, vec![family(libc::AF_INET6)?, family(libc::AF_VSOCK)?])].into_iter().collect();
        let target = arch.try_into()?;
        let filter =
            SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EAFNOSUPPORT as u32), target)?;
        filter.try_into()
    })()
    .map_err(|error: seccompiler::BackendError| {
        std::io::Error::other(format!(
            "could not build the filter that keeps functions off IPv6 on {arch}: {error}; allow IPv6 \
             with an IPv6 entry in function-net-allow (e.g. ::/0), or allow everything with *"
        ))
    })?;
    install_filter(cmd, program);
    Ok(())
}

/// Installs `program` in the worker between fork and exec.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn install_filter(cmd: &mut tokio::process::Command, program: seccompiler::BpfProgram) {
    // SAFETY: the program is built before the fork; the closure only calls prctl(NO_NEW_PRIVS)
    // and seccomp(SET_MODE_FILTER) (`apply_filter`), which are async-signal-safe, and allocates
    // nothing, on success or failure (the errors carry only an errno).
    unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&program).map_err(|error| match error {
                seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
                _ => std::io::Error::from_raw_os_error(libc::EINVAL),
            })
        });
    }
}

/// Without seccomp, IPv6 ranges cannot be denied: only the exact addresses in `--deny-net` are.
#[cfg(not(target_os = "linux"))]
fn no_ipv6_sockets(_: &mut tokio::process::Command) -> std::io::Result<()> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!("on this system functions can reach private IPv6 networks: only Linux can keep them off IPv6")
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn size(nets: &[Ipv4Net]) -> u64 {
        nets.iter().map(|n| 1u64 << (32 - n.prefix_len())).sum()
    }

    /// Whether the deny entries (Deno's syntax) cover `addr`.
    fn covered(deny: &[String], addr: IpAddr) -> bool {
        deny.iter().any(|entry| match entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
            Some(v6) => v6.parse::<IpAddr>().unwrap() == addr,
            None => entry.parse::<IpNet>().map(|n| n.contains(&addr)).unwrap_or_else(|_| ip(entry) == addr),
        })
    }

    fn restricted(allow: &[&str], own: &[&str]) -> (Vec<String>, bool) {
        let own: Vec<IpAddr> = own.iter().map(|a| ip(a)).collect();
        match WorkerNet::new(&NetAllow::parse(allow).unwrap(), &own) {
            WorkerNet::Restricted { deny, ipv6 } => (deny, ipv6),
            WorkerNet::Open => panic!("{allow:?} is not restricted"),
        }
    }

    #[test]
    fn subtracting_a_block_leaves_exactly_the_rest() {
        let left = subtract(net("127.0.0.0/8"), net("127.0.0.1/32"));
        assert_eq!(left.len(), 24, "one block per prefix length between /8 and /32");
        assert_eq!(size(&left), (1 << 24) - 1);
        assert!(!left.iter().any(|n| n.contains(&"127.0.0.1".parse::<Ipv4Addr>().unwrap())));
        for addr in ["127.0.0.0", "127.0.0.2", "127.0.1.1", "127.255.255.255", "127.128.0.1"] {
            assert!(left.iter().any(|n| n.contains(&addr.parse::<Ipv4Addr>().unwrap())), "{addr}");
        }
        for (i, a) in left.iter().enumerate() {
            for b in &left[i + 1..] {
                assert!(!a.contains(b) && !b.contains(a), "{a} and {b} overlap");
            }
        }
        assert_eq!(subtract(net("10.0.0.0/8"), net("192.168.0.0/16")), vec![net("10.0.0.0/8")], "disjoint");
        assert_eq!(subtract(net("10.1.0.0/16"), net("10.0.0.0/8")), vec![], "the hole holds the range");
        assert_eq!(subtract(net("10.0.0.0/8"), net("10.0.0.0/8")), vec![]);
        assert_eq!(subtract(net("10.0.0.0/8"), net("10.0.0.0/9")), vec![net("10.128.0.0/9")]);
        assert_eq!(subtract(net("0.0.0.0/0"), net("128.0.0.0/1")), vec![net("0.0.0.0/1")]);
        let two = subtract_all(net("192.168.0.0/16"), &[net("192.168.1.0/24"), net("192.168.2.7/32")]);
        assert_eq!(size(&two), (1 << 16) - 256 - 1);
        assert!(two.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn entries_are_addresses_blocks_or_a_star() {
        let parsed =
            NetAllow::parse(&["10.0.0.5", " 10.1.2.3/16 ", "::1", "[fd00::5]", "fd00::/8", "::ffff:192.168.1.9"])
                .unwrap();
        assert_eq!(parsed.entries(), ["10.0.0.5", "10.1.0.0/16", "::1", "fd00::5", "fd00::/8", "192.168.1.9"]);
        assert!(!parsed.is_any());
        assert!(NetAllow::parse(&["*"]).unwrap().is_any());
        assert_eq!(NetAllow::parse(&["*", "10.0.0.1"]).unwrap().entries(), ["*", "10.0.0.1"]);
        assert!(NetAllow::parse::<&str>(&[]).unwrap().is_empty());
        assert_eq!(NetAllow::parse(&["10.0.0.1", "10.0.0.1/32"]).unwrap().nets().len(), 1, "duplicates merge");

        let problem = |entry: &str| NetAllow::parse(&[entry]).unwrap_err();
        assert!(
            problem("127.0.0.1:5432").contains("names a port") && problem("127.0.0.1:5432").contains("write 127.0.0.1")
        );
        assert!(problem("[::1]:5432").contains("write ::1"), "{}", problem("[::1]:5432"));
        assert!(problem("db.internal").contains("host names are not accepted"));
        assert!(problem("localhost").contains("host names are not accepted"));
        assert!(problem("http://10.0.0.5").contains("is a URL"));
        assert!(problem("10.0.0.0/33").contains("from 0 to 32"));
        assert!(problem("fd00::/129").contains("from 0 to 128"));
        assert!(problem("").contains("empty"));
    }

    #[test]
    fn unions_keep_every_entry_once() {
        let server = NetAllow::parse(&["10.0.0.5"]).unwrap();
        let app = NetAllow::parse(&["10.0.0.5", "192.168.1.0/24"]).unwrap();
        assert_eq!(server.union(&app).entries(), ["10.0.0.5", "192.168.1.0/24"]);
        assert!(server.union(&NetAllow::any()).is_any());
    }

    #[test]
    fn by_default_every_special_range_and_own_address_is_denied() {
        let (deny, ipv6) = restricted(&[], &["127.0.0.1", "192.0.2.2", "::1", "fd00::2", "fe80::fc:ff:fe00:1"]);
        assert!(!ipv6, "no IPv6 sockets");
        for (range, _) in DENIED_IPV4 {
            assert!(deny.contains(&range.to_string()), "{range} in {deny:?}");
        }
        for own in ["192.0.2.2", "[::1]", "[::]", "[fd00::2]", "[fe80::fc:ff:fe00:1]"] {
            assert!(deny.contains(&own.to_string()), "{own} in {deny:?}");
        }
        assert!(!deny.contains(&"127.0.0.1".to_string()), "inside 127.0.0.0/8 already");
        for addr in [
            "127.0.0.1",
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(covered(&deny, ip(addr)), "{addr}");
        }
        for public in ["93.184.215.14", "1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1"] {
            assert!(!covered(&deny, ip(public)), "{public} stays reachable");
        }
        // Every entry is in a syntax Deno's --deny-net takes: a v4 address or block, or [v6].
        for entry in &deny {
            let ok = match entry.strip_prefix('[') {
                Some(v6) => v6.strip_suffix(']').is_some_and(|a| a.parse::<Ipv6Addr>().is_ok()),
                None => entry.parse::<Ipv4Net>().is_ok() || entry.parse::<Ipv4Addr>().is_ok(),
            };
            assert!(ok, "{entry}");
        }
    }

    #[test]
    fn allowed_addresses_are_cut_out_of_the_deny_list() {
        let (deny, ipv6) = restricted(&["127.0.0.1", "10.0.0.0/24", "192.0.2.2"], &["127.0.0.1", "192.0.2.2", "::1"]);
        assert!(!ipv6);
        for open in ["127.0.0.1", "10.0.0.0", "10.0.0.77", "10.0.0.255", "192.0.2.2"] {
            assert!(!covered(&deny, ip(open)), "{open} is allowed: {deny:?}");
        }
        for closed in ["127.0.0.2", "127.1.0.1", "10.0.1.0", "10.255.0.1", "169.254.169.254", "0.0.0.0", "::1", "::"] {
            assert!(covered(&deny, ip(closed)), "{closed} stays denied: {deny:?}");
        }
        // The unspecified addresses stay denied even when a block holding them is allowed.
        let (deny, _) = restricted(&["0.0.0.0/0"], &[]);
        assert!(covered(&deny, ip("0.0.0.0")) && !covered(&deny, ip("127.0.0.1")), "{deny:?}");
    }

    #[test]
    fn an_ipv6_entry_turns_ipv6_on() {
        let (deny, ipv6) = restricted(&["fd00::/8"], &["::1", "fd00::2", "2001:db8::7"]);
        assert!(ipv6);
        assert!(!covered(&deny, ip("fd00::2")), "allowed");
        assert!(covered(&deny, ip("::1")) && covered(&deny, ip("2001:db8::7")) && covered(&deny, ip("::")));
        let (deny, ipv6) = restricted(&["::1"], &["::1"]);
        assert!(ipv6 && !covered(&deny, ip("::1")));
    }

    #[test]
    fn a_star_means_open() {
        assert_eq!(WorkerNet::new(&NetAllow::any(), &[ip("127.0.0.1")]), WorkerNet::Open);
        assert_eq!(WorkerNet::Open.deno_args(), ["--allow-net"]);
        let restricted = WorkerNet::new(&NetAllow::none(), &[]);
        let args = restricted.deno_args();
        assert_eq!(args[0], "--allow-net");
        assert!(args[1].starts_with("--deny-net=10.0.0.0/8,"), "{args:?}");
    }

    #[test]
    fn code_that_mentions_npm_or_node_http_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("f/entry.ts", "import { x } from \"./lib/x.ts\";\nDeno.serve(() => new Response(x));\n");
        write("f/lib/x.ts", "export const x = \"plain\";\n");
        write("f/node_modules/p/index.js", "import \"npm:left-pad\";");
        write("f/.cache/y.ts", "import \"node:http\";");
        write("f/notes.md", "uses npm: nothing");
        let paths = vec![dir.path().join("f")];
        assert!(!mentions_node(&paths), "node_modules, dot-folders and other files are not code");
        write("f/lib/client.ts", "import axios from \"npm:axios@1\";");
        assert!(mentions_node(&paths));
        std::fs::remove_file(dir.path().join("f/lib/client.ts")).unwrap();
        write("shared/h.mjs", "import https from 'node:https';");
        assert!(mentions_node(&[dir.path().join("f"), dir.path().join("shared")]), "node:https");
        assert!(!mentions_node(&[dir.path().join("missing")]));
    }

    #[test]
    fn this_hosts_addresses_are_listed() {
        let own = own_addresses();
        assert!(own.contains(&ip("127.0.0.1")), "{own:?}");
    }
}
