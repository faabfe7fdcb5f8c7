//! The HTTP face of Homebase and its composition roots.
//!
//! It owns the axum routers (the function routes of reference §1 and the management API of
//! §5.2–5.3 in [`manage`], the logs API and live stream in [`logs_api`]), the headers a function
//! receives and the service tokens minted for it, the mapping of every failure to a JSON body
//! with `message` and `detail`, the layered [`config::Config`], the HTTP side of app users (the
//! §4 routes in [`users_api`], their management routes in [`auth_manage`]), the `501
//! not_implemented` answers of the Base44 routes Homebase lacks ([`unsupported`]), app data (entities, [`entities_api`]), the accept
//! loops of the TCP port and of the functions' API socket ([`connections`], [`serve_workers`]),
//! and the two composition roots: [`serve::start`] and [`dev::start`], which turn a config and a
//! shutdown token into a running server whose `drain()` finishes every task it started. The
//! `homebase` commands and the testkit both start servers there. Business rules live below:
//! tokens, bearer checks, login limits, sign-in states and mail in `homebase-identity`, project
//! reading in `homebase-project`, persistence in `homebase-store`, processes in
//! `homebase-runtime`.

pub mod auth_manage;
pub mod backup;
pub mod config;
pub mod connections;
pub mod cors;
pub mod dev;
pub mod entities_api;
mod error;
pub mod files;
pub mod headers;
mod lifecycle;
pub mod logs_api;
pub mod manage;
pub mod proxies;
mod routes;
pub mod sdk;
pub mod serve;
pub mod unsupported;
pub mod users_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ConnectInfo;
use homebase_identity::{TokenMinter, UserStates};
use homebase_runtime::Runtime;
use homebase_store::Store;
use http::Extensions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use connections::ConnectionLimits;
pub use error::ApiError;
pub use homebase_catalog::{AppFunctions, Catalog};
pub use routes::unknown_route;

/// Shared state of the routers: a cheap clone over `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<dyn Catalog>,
    pub runtime: Runtime,
    pub tokens: Arc<TokenMinter>,
    /// `Base44-Api-Url` for functions; `None` uses the URL the caller reached us at.
    pub public_url: Option<Arc<str>>,
    /// The CORS policy of the SDK routes ([`sdk::router`]); allows nothing until
    /// [`with_cors`](AppState::with_cors).
    pub cors: Arc<cors::CorsPolicy>,
    /// Users' sign-in states, for user tokens on the function routes; set by [`sdk::router`].
    pub users: Option<Arc<UserStates>>,
    /// Who may learn the names of an app's functions.
    pub listing: FunctionListing,
    /// The most records one entity list call answers (`entity-page-cap`).
    pub entity_page_cap: usize,
    request_ids: Arc<RequestIds>,
}

/// Who may learn the names of an app's functions, which the `404` for an unknown function
/// lists: to anyone else they are a map of what to attack.
#[derive(Clone)]
pub enum FunctionListing {
    /// `dev`: anyone; it is the developer's own machine.
    Anyone,
    /// `serve`: a holder of a key of the app or of an admin key, sent as the management API
    /// takes it (`api_key`, or `Authorization: Bearer b44k_…`).
    KeyHolders(Store),
}

struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl AppState {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        runtime: Runtime,
        tokens: TokenMinter,
        public_url: Option<String>,
        listing: FunctionListing,
    ) -> Self {
        AppState {
            listing,
            catalog,
            runtime,
            tokens: Arc::new(tokens),
            public_url: public_url.map(Arc::from),
            cors: Arc::new(cors::CorsPolicy::default()),
            users: None,
            entity_page_cap: entities_api::DEFAULT_PAGE_CAP,
            request_ids: Arc::new(RequestIds { prefix: rand::random(), next: AtomicU64::new(1) }),
        }
    }

    pub fn with_cors(mut self, cors: cors::CorsPolicy) -> Self {
        self.cors = Arc::new(cors);
        self
    }

    pub fn with_entity_page_cap(mut self, cap: usize) -> Self {
        self.entity_page_cap = cap.max(1);
        self
    }

    /// Whether the sender of `headers` may learn the names of `app_id`'s functions.
    pub async fn may_list_functions(&self, app_id: &str, headers: &http::HeaderMap) -> bool {
        match &self.listing {
            FunctionListing::Anyone => true,
            FunctionListing::KeyHolders(store) => match manage::Caller::authenticate(store, headers).await {
                Ok(caller) => caller.require_app(app_id).is_ok(),
                Err(_) => false,
            },
        }
    }

    /// A new request id, unique within this process and unlikely to repeat across restarts.
    pub fn next_request_id(&self) -> String {
        let n = self.request_ids.next.fetch_add(1, Ordering::Relaxed);
        format!("req_{:08x}{n:08x}", self.request_ids.prefix)
    }

    /// The URL a function should call back: the configured public URL, else this server's own
    /// address on the connection the request came in on. Never the `Host` header: a caller who
    /// forged it would have the function send its service token to the caller's server.
    pub fn api_url(&self, extensions: &Extensions) -> String {
        if let Some(url) = &self.public_url {
            return url.to_string();
        }
        match extensions.get::<ConnectInfo<Peer>>() {
            Some(ConnectInfo(peer)) => format!("http://{}", peer.local),
            None => "http://127.0.0.1".to_string(),
        }
    }
}

/// Both ends of a client's connection, in every request's extensions as `ConnectInfo<Peer>`
/// (added by [`connections`]):
/// `remote` for the login limiter, `local` (the address the client reached) for the URL
/// functions call back.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Serves `router` to the function workers on the runtime's API socket until `stop` is
/// cancelled, and has the runtime send restricted workers' requests for Homebase's origins there
/// (see `homebase_runtime::netpolicy`): such a worker may not connect to `addr`, the TCP address
/// the server listens on, nor to any other address of this host. The socket is the same API with
/// the same authentication; a request on it counts as arriving at `addr`, with `0.0.0.0` or `[::]`
/// read as loopback, so nested calls get `public_url` or `http://<addr>` as `Base44-Api-Url`.
/// It is served by the accept loop of the TCP port ([`connections::serve_workers`]): the
/// header-read and keep-alive timeouts of `limits`, and its own cap, a quarter of
/// `limits.max_connections` ([`connections::worker_max_connections`]), so that functions
/// opening connections by the thousand get a JSON `503` instead of the server's descriptors.
/// It also holds the runtime's connections to workers to the same descriptor budget
/// ([`connections::worker_socket_budget`]): function requests past it are answered `503`.
/// `stop` should outlive the workers: their requests in flight during a drain still call the API.
/// The accept loop is spawned on `tasks`.
pub fn serve_workers(
    tasks: &TaskTracker,
    runtime: &Runtime,
    router: axum::Router,
    addr: SocketAddr,
    public_url: Option<&str>,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let addr = advertised(addr);
    let mut origins = vec![format!("http://{addr}")];
    if let Some(origin) = public_url.and_then(origin_of) {
        origins.push(origin);
    }
    let listener = runtime.bind_api_socket(&origins)?;
    runtime.limit_worker_connections(connections::worker_socket_budget(limits.max_connections));
    let router = router.layer(axum::middleware::map_request(restore_host));
    let socket = connections::UnixSocket { listener, addr };
    Ok(tasks.spawn(connections::serve_workers(socket, router, limits, stop)))
}

/// The address to name for a listener on `addr`: loopback for an unspecified address.
fn advertised(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// `https://example.com:8443` of `https://example.com:8443/base`, as a browser writes an origin.
fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    Some(match uri.port_u16() {
        Some(port) if port != default => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// A worker's request through the socket names a stand-in host (its `fetch` cannot keep the
/// real one); the host it meant comes in `x-homebase-host`.
async fn restore_host(mut request: axum::extract::Request) -> axum::extract::Request {
    if let Some(host) = request.headers_mut().remove("x-homebase-host") {
        request.headers_mut().insert(http::header::HOST, host);
    }
    request
}

/// Binds `host:port`; when `fallback` is set and the port is taken, tries the next ports.
/// Returns the listener and the address it got.
pub async fn bind(addr: SocketAddr, fallback: bool) -> std::io::Result<(TcpListener, SocketAddr)> {
    let tries = if fallback && addr.port() != 0 { 100 } else { 1 };
    let mut last = None;
    for offset in 0..tries {
        let port = addr.port().saturating_add(offset);
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(listener) => {
                let local = listener.local_addr()?;
                return Ok((listener, local));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port available")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_told_the_origins_browsers_would_write() {
        assert_eq!(origin_of("https://Example.com/base/"), Some("https://example.com".into()));
        assert_eq!(origin_of("https://example.com:443"), Some("https://example.com".into()));
        assert_eq!(origin_of("http://example.com:80/x"), Some("http://example.com".into()));
        assert_eq!(origin_of("http://10.0.0.5:8080"), Some("http://10.0.0.5:8080".into()));
        assert_eq!(origin_of("https://[fd00::5]:8443/"), Some("https://[fd00::5]:8443".into()));
        assert_eq!(origin_of("not a url"), None);
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(advertised(addr("0.0.0.0:8080")), addr("127.0.0.1:8080"));
        assert_eq!(advertised(addr("[::]:8080")), addr("[::1]:8080"));
        assert_eq!(advertised(addr("192.168.1.5:8080")), addr("192.168.1.5:8080"));
    }
}
