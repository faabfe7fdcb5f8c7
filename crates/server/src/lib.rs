//! The HTTP face of Homebase and the wiring of its services.
//!
//! It owns the axum routers (the function routes of reference §1 and the management API of
//! §5.2–5.3 in [`manage`], the logs API and live stream in [`logs_api`]), the headers a function receives and the service tokens minted for
//! it, the mapping of every failure to a JSON body with `message` and `detail`, the layered
//! [`config::Config`], the wiring of `dev` (a project folder, [`dev::DevApp`]) and of `serve`
//! (apps and deployments from the store, [`platform::Platform`]), app users and their tokens
//! (the §4 routes in [`users_api`], bearer checks in [`auth`], the signing key in [`token`],
//! mail in [`mail`], their management routes in [`auth_manage`]), and [`serve`], which runs a
//! router until shutdown and drains it. Business rules live below: project reading in
//! `homebase-project`, persistence in `homebase-store`, processes in `homebase-runtime`.

pub mod auth;
pub mod auth_manage;
pub mod catalog;
pub mod config;
pub mod connections;
pub mod cors;
pub mod dev;
mod error;
pub mod headers;
pub mod logs;
pub mod logs_api;
pub mod mail;
pub mod manage;
pub mod platform;
mod routes;
pub mod token;
pub mod users_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use homebase_runtime::Runtime;
use http::Extensions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use catalog::{AppFunctions, Catalog};
pub use connections::ConnectionLimits;
pub use error::ApiError;
pub use routes::{function_routes, router, unknown_route};
pub use token::TokenMinter;

/// Shared state of the routers: a cheap clone over `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<dyn Catalog>,
    pub runtime: Runtime,
    pub tokens: Arc<TokenMinter>,
    /// `Base44-Api-Url` for functions; `None` uses the URL the caller reached us at.
    pub public_url: Option<Arc<str>>,
    pub cors: Arc<cors::CorsPolicy>,
    request_ids: Arc<RequestIds>,
}

struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl AppState {
    pub fn new(catalog: Arc<dyn Catalog>, runtime: Runtime, tokens: TokenMinter, public_url: Option<String>) -> Self {
        AppState {
            catalog,
            runtime,
            tokens: Arc::new(tokens),
            public_url: public_url.map(Arc::from),
            cors: Arc::new(cors::CorsPolicy::default()),
            request_ids: Arc::new(RequestIds { prefix: rand::random(), next: AtomicU64::new(1) }),
        }
    }

    pub fn with_cors(mut self, cors: cors::CorsPolicy) -> Self {
        self.cors = Arc::new(cors);
        self
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

/// Serves `router` on `listener` with the default [`ConnectionLimits`] until `shutdown` is
/// cancelled, then stops accepting and gives in-flight requests up to `grace` to finish. Returns
/// once the server has stopped.
pub async fn serve(listener: TcpListener, router: axum::Router, shutdown: CancellationToken, grace: Duration) {
    connections::serve(listener, router, ConnectionLimits::default(), shutdown, grace).await
}

/// [`serve`] with the limits on connections given (see [`connections`]).
pub async fn serve_with(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    connections::serve(listener, router, limits, shutdown, grace).await
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
