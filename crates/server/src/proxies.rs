//! The client's address behind a reverse proxy (`trusted-proxies`).
//!
//! The login and mail limits count per client address ([`homebase_identity::Limiter`]). Behind a
//! proxy every request comes from the proxy's address, so one bucket would hold every client.
//! When the connection comes from a [`TrustedProxies`] address, the client's address is read
//! from the headers the proxy adds:
//!
//! - `X-Forwarded-For` (every such header, in order): each proxy appends the address it received
//!   the request from, so the client is the rightmost address that is not itself a trusted proxy.
//!   Addresses further left were written by the client and are never believed.
//! - `Forwarded` (RFC 7239), when the request has no `X-Forwarded-For`: its `for=` values, read
//!   the same way.
//!
//! An entry that is not an address (`unknown`, an obfuscated `_name`, garbage) ends the walk: the
//! address is then the last trusted hop's, which is where the entry came from. A connection from
//! any other address is that address, whatever its headers say: a client cannot choose the
//! address it is counted under. The list is empty by default.
//!
//! Only the server's TCP port reads the headers (see `Lifecycle::serve`): requests of functions on
//! the API socket count under the server's own address, and a function cannot name another.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The addresses and networks whose `X-Forwarded-For` / `Forwarded` headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses `entries`: addresses (`10.0.0.5`, `::1`) and CIDR blocks (`10.0.0.0/8`,
    /// `fd00::/8`; host bits are cleared). Host names, ports and `*` are refused with a sentence
    /// that says what to write instead.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            let net = parse_entry(entry.trim())?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok(TrustedProxies { nets })
    }

    /// The entries in canonical form (`10.0.0.5`, `10.0.0.0/8`), as the configuration prints them.
    pub fn entries(&self) -> Vec<String> {
        self.nets
            .iter()
            .map(|net| if net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `address` is a trusted proxy.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.nets.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` with `headers` (see the module docs).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_for(headers).into_iter().rev() {
            match hop {
                Some(address) => {
                    client = address.to_canonical();
                    if !self.trusts(client) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

fn parse_entry(text: &str) -> Result<IpNet, String> {
    let hint = "write an IP address or a CIDR block, e.g. 10.0.0.5 or 10.0.0.0/8";
    if text == "*" {
        return Err(format!(
            "'*' is not accepted: {hint}; 0.0.0.0/0 and ::/0 trust every address, which is right only when nothing \
             but your proxies can reach Homebase"
        ));
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address.to_canonical()));
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if text.parse::<SocketAddr>().is_ok() {
        return Err(format!("'{text}' names a port; {hint} (the proxy's address, without a port)"));
    }
    Err(format!("'{text}' is not an IP address or a CIDR block (host names are not accepted); {hint}"))
}

/// The hops the proxies reported, left (furthest) to right (nearest): `X-Forwarded-For` when
/// the request has one, else the `for=` of `Forwarded`. `None` for an entry that is no address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &HeaderName| {
        // Lossily: a byte that is not text spoils only the entry it is in, so a client cannot
        // make the whole header (with the address its proxy appended) unreadable.
        headers.get_all(name).iter().map(|value| String::from_utf8_lossy(value.as_bytes())).collect::<Vec<_>>()
    };
    let x_forwarded_for = values(&X_FORWARDED_FOR);
    if !x_forwarded_for.is_empty() {
        return x_forwarded_for.iter().flat_map(|value| value.split(',')).map(parse_node).collect();
    }
    values(&FORWARDED)
        .iter()
        .flat_map(|value| split_outside_quotes(value, ','))
        .map(|element| {
            split_outside_quotes(element, ';')
                .find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then_some(value)
                })
                .and_then(parse_node)
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, possibly in double quotes (`Forwarded`).
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// `text` split at `separator`s that are not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn entries_are_addresses_or_blocks() {
        let proxies = trusted(&["10.0.0.5", "192.168.1.7/24", "::1", "fd00::/8", " 10.0.0.5 "]);
        assert_eq!(proxies.entries(), ["10.0.0.5", "192.168.1.0/24", "::1", "fd00::/8"]);
        assert!(proxies.trusts(ip("192.168.1.200")) && proxies.trusts(ip("::ffff:10.0.0.5")));
        assert!(!proxies.trusts(ip("10.0.0.6")));
        assert_eq!(trusted(&["::ffff:127.0.0.1"]).entries(), ["127.0.0.1"]);
        for (bad, says) in [
            ("proxy.internal", "host names are not accepted"),
            ("10.0.0.5:8080", "names a port"),
            ("*", "0.0.0.0/0"),
            ("10.0.0.0/40", "not an IP address or a CIDR block"),
        ] {
            let err = TrustedProxies::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(says) && err.contains("10.0.0.0/8"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.7"), ("forwarded", "for=203.0.113.8")]);
        assert_eq!(proxies.client(ip("198.51.100.1"), &spoofed), ip("198.51.100.1"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"));
    }

    #[test]
    fn through_trusted_proxies_the_rightmost_untrusted_address_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        let client = |pairs: &[(&str, &str)]| proxies.client(ip("127.0.0.1"), &headers(pairs));
        assert_eq!(client(&[("x-forwarded-for", "203.0.113.7")]), ip("203.0.113.7"));
        // What the client wrote itself is left of what the proxies appended.
        assert_eq!(client(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.1.2.3")]), ip("203.0.113.7"));
        assert_eq!(client(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "203.0.113.7")]), ip("203.0.113.7"));
        assert_eq!(client(&[("x-forwarded-for", "[2001:db8::7]:4711, 203.0.113.7:80")]), ip("203.0.113.7"));
        assert_eq!(client(&[("x-forwarded-for", "2001:db8::7, [::ffff:10.0.0.9]")]), ip("2001:db8::7"));
        // Every hop trusted: the furthest one.
        assert_eq!(client(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(client(&[]), ip("127.0.0.1"));
        // Garbage next to a trusted hop ends the walk there.
        assert_eq!(client(&[("x-forwarded-for", "203.0.113.7, unknown, 10.0.0.2")]), ip("10.0.0.2"));
        assert_eq!(client(&[("x-forwarded-for", "")]), ip("127.0.0.1"));
        // A byte that is not text in what the client wrote does not hide what the proxy
        // appended: the client is not counted under the proxy's address.
        let mut raw = HeaderMap::new();
        raw.append(X_FORWARDED_FOR, http::HeaderValue::from_bytes(b"\xff, 203.0.113.7").unwrap());
        assert_eq!(proxies.client(ip("127.0.0.1"), &raw), ip("203.0.113.7"));
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let proxies = trusted(&["127.0.0.1"]);
        let client = |pairs: &[(&str, &str)]| proxies.client(ip("127.0.0.1"), &headers(pairs));
        assert_eq!(client(&[("forwarded", "for=203.0.113.7;proto=https;by=10.0.0.1")]), ip("203.0.113.7"));
        assert_eq!(
            client(&[("forwarded", "for=1.2.3.4, For=\"[2001:db8:cafe::17]:4711\";host=\"a,b\"")]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(client(&[("forwarded", "for=1.2.3.4, for=_hidden")]), ip("127.0.0.1"));
        assert_eq!(client(&[("forwarded", "proto=https")]), ip("127.0.0.1"));
        let both = [("forwarded", "for=1.2.3.4"), ("x-forwarded-for", "203.0.113.7")];
        assert_eq!(client(&both), ip("203.0.113.7"), "X-Forwarded-For wins");
    }
}
