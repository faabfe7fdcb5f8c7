//! Accepting connections: a cap on open connections, a header-read timeout and a keep-alive idle
//! timeout, HTTP/1.1 and HTTP/2 (hyper-util's `auto` builder).
//!
//! - **Cap.** At most [`ConnectionLimits::max_connections`] connections are served at once. One
//!   past the cap is answered `503` with a JSON body (`too_many_connections`) and closed; while
//!   [`REJECTING`] such answers are already being written, further ones are closed at once.
//! - **Header-read timeout.** A new connection must deliver a complete request head within
//!   [`ConnectionLimits::header_read_timeout`], and so must an idle HTTP/1.1 connection from the
//!   first byte of its next request. Otherwise it is closed without an answer (slowloris).
//! - **Keep-alive timeout.** A connection with no request in flight and no bytes of a new one is
//!   closed after [`ConnectionLimits::keep_alive_timeout`] (HTTP/2: GOAWAY first).
//! - **HTTP/2 streams.** One HTTP/2 connection carries at most [`MAX_STREAMS`] requests at once
//!   (hyper's default is 200); a client opens more only as earlier ones end.
//! - **File descriptors.** [`raise_open_file_limit`] lifts the soft `RLIMIT_NOFILE` to the hard
//!   limit, and the cap is lowered to leave half the descriptors (and at least
//!   [`FD_RESERVE`]) for workers, their sockets and pipes, and the databases, so that a flood of
//!   connections cannot make a worker start or a deploy fail. The connections to workers are
//!   held to the same number ([`worker_socket_budget`], enforced by the runtime): a client
//!   connection may carry many requests in flight (HTTP/2), but all of them together hold no more
//!   worker sockets than the budget counts. An accept error such as `EMFILE` pauses the accept
//!   loop briefly (growing to one second) instead of spinning or ending it.
//!
//! The same loop serves two kinds of [`Listener`]: the server's TCP port ([`serve`]) and the Unix
//! socket on which functions reach the API ([`serve_workers`], see [`crate::serve_workers`]).
//! The socket has its own cap, [`worker_max_connections`]: a quarter of the TCP cap (at least
//! [`MIN_WORKER_CONNECTIONS`]), which the file-descriptor budget above includes. Functions that
//! open connections to the socket by the thousand are refused past it with the same JSON `503`
//! (naming the functions' cap), and are held to the same header-read and keep-alive timeouts;
//! they cannot take the descriptors of the server or the connections of its TCP clients.
//!
//! Every request carries `ConnectInfo<Peer>` (both addresses of its connection), as it did under
//! `axum::serve`, and every error response Homebase itself writes leaves with a JSON body
//! ([`crate::error::json_error_body`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Peer;
use crate::error::{ApiError, ErrorCode};

/// How many connections over the cap may be answered `503` at the same time (on each listener);
/// any more are closed without an answer.
pub const REJECTING: usize = 64;
/// The functions' API socket serves at most `1 / WORKER_SHARE` of the TCP cap.
pub const WORKER_SHARE: usize = 4;
/// The fewest connections the functions' API socket serves, however low the TCP cap.
pub const MIN_WORKER_CONNECTIONS: usize = 4;
/// How long connections on the functions' API socket get to finish once it stops (the workers
/// are stopped by then, so their connections are closing already).
const WORKERS_GRACE: Duration = Duration::from_secs(5);
/// The fewest file descriptors kept free of client connections.
pub const FD_RESERVE: u64 = 512;
/// How long answering a connection over the cap may take (reading its request head included).
const REJECT_TIME: Duration = Duration::from_secs(2);
/// How long an idle connection asked to close (HTTP/2 GOAWAY) gets before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The most requests one HTTP/2 connection carries at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_STREAMS: u32 = 32;

/// The limits on client connections. `Default` is what `serve` and `dev` use unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once (lowered to fit the file-descriptor limit, see
    /// [`effective_max_connections`]).
    pub max_connections: usize,
    /// How long a request head may take to arrive: from the connection's opening, or on an
    /// idle HTTP/1.1 connection from the first byte of the next request.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub keep_alive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` of this process to its hard limit and returns the soft limit
/// then in force (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
        }
    }
    // `None` is "unlimited".
    Some(limit.current.unwrap_or(u64::MAX))
}

/// The cap that fits `open_files` (the soft `RLIMIT_NOFILE`): a connection that calls a function
/// holds two descriptors (the client's and the worker's socket; the sockets to workers are held
/// to the cap as well, see [`worker_socket_budget`]), the functions' API socket may hold a quarter
/// as many again ([`worker_max_connections`]), and [`FD_RESERVE`] more stay free for workers, the
/// databases and the [`REJECTING`] answers of both listeners. At least 1.
pub fn effective_max_connections(configured: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else { return configured.max(1) };
    let share = WORKER_SHARE as u128;
    let spare = u128::from(open_files.saturating_sub(FD_RESERVE + 2 * REJECTING as u64));
    let fits = spare * share / (2 * share + 1);
    configured.min(usize::try_from(fits).unwrap_or(usize::MAX)).max(1)
}

/// The cap of the functions' API socket for a TCP cap of `tcp_max` (after
/// [`effective_max_connections`]): a quarter of it, at least [`MIN_WORKER_CONNECTIONS`]. Legitimate
/// use holds about one connection per request a function makes to the API while it runs (plus
/// the idle ones of each worker's pool, closed after the keep-alive timeout), far fewer than the
/// clients a server serves at once.
pub fn worker_max_connections(tcp_max: usize) -> usize {
    (tcp_max / WORKER_SHARE).max(MIN_WORKER_CONNECTIONS)
}

/// How many connections to function workers the server may hold at once, all workers together,
/// for `max_connections` (configured): the TCP cap as [`effective_max_connections`] fits it to the
/// open-file limit, which counts one worker socket per client connection. The runtime enforces
/// it (`Runtime::limit_worker_connections`), and a quarter of it per worker: requests past it get
/// `503` at once, however many HTTP/2 streams the clients open.
pub fn worker_socket_budget(max_connections: usize) -> usize {
    effective_max_connections(max_connections, raise_open_file_limit())
}

/// Where connections come from: the server's TCP port, or the functions' API socket.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection and the addresses its requests carry as `ConnectInfo<Peer>`.
    /// Cancel-safe: dropped before it resolves, no connection is lost.
    fn accept_connection(&mut self) -> impl Future<Output = io::Result<(Self::Stream, Peer)>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept_connection(&mut self) -> io::Result<(TcpStream, Peer)> {
        let (stream, remote) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(remote);
        Ok((stream, Peer { local, remote }))
    }
}

/// A Unix socket whose connections all count as arriving at (and coming from) `addr`.
pub struct UnixSocket {
    pub listener: UnixListener,
    pub addr: SocketAddr,
}

impl Listener for UnixSocket {
    type Stream = UnixStream;

    async fn accept_connection(&mut self) -> io::Result<(UnixStream, Peer)> {
        let (stream, _) = self.listener.accept().await?;
        Ok((stream, Peer { local: self.addr, remote: self.addr }))
    }
}

/// Who a listener serves: what a refusal says and what the log says.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// The server's TCP port.
    Clients,
    /// The functions' API socket.
    Workers,
}

impl Side {
    fn refusal(self, max: usize) -> ApiError {
        let (message, detail) = match self {
            Side::Clients => (
                "The server has too many open connections",
                format!("It serves at most {max} connections at once (max-connections); retry shortly."),
            ),
            Side::Workers => (
                "Functions have too many open connections to Homebase's API",
                format!(
                    "Functions may hold at most {max} connections to the API at once (a quarter of \
                     max-connections); close the ones you do not use, or retry shortly."
                ),
            ),
        };
        ApiError::new(ErrorCode::TooManyConnections, message, detail)
    }

    fn note_refused(self, refused: u64, max: usize) {
        match self {
            Side::Clients => {
                tracing::warn!("{refused} connection(s) refused: {max} are open, the most allowed (max-connections)")
            }
            Side::Workers => tracing::warn!(
                "{refused} connection(s) of functions to the API socket refused: {max} are open, the most \
                 allowed (a quarter of max-connections)"
            ),
        }
    }

    fn note_accept_error(self, error: &io::Error) {
        match self {
            Side::Clients => tracing::error!(%error, "could not accept a connection; pausing the accept loop"),
            Side::Workers => tracing::error!(
                %error,
                "could not accept a connection on the functions' API socket; pausing its accept loop"
            ),
        }
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` is cancelled; then stops
/// accepting, asks every connection to close once its requests are done, and gives them up to
/// `grace`. Returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let open_files = raise_open_file_limit();
    let max = effective_max_connections(limits.max_connections, open_files);
    if max < limits.max_connections {
        tracing::warn!(
            "max-connections is {} but the open-file limit is {}; serving at most {max} connections",
            limits.max_connections,
            open_files.unwrap_or_default()
        );
    }
    let limits = ConnectionLimits { max_connections: max, ..limits };
    accept_loop(listener, router, limits, Side::Clients, shutdown, grace).await
}

/// Serves `router` to the function workers on `listener` (the runtime's API socket) until `stop`
/// is cancelled, with the header-read and keep-alive timeouts of `limits` and the cap
/// [`worker_max_connections`] of its `max_connections` (fitted to the open-file limit).
pub async fn serve_workers(
    listener: impl Listener,
    router: axum::Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let tcp_max = effective_max_connections(limits.max_connections, raise_open_file_limit());
    let limits = ConnectionLimits { max_connections: worker_max_connections(tcp_max), ..limits };
    accept_loop(listener, router, limits, Side::Workers, stop, WORKERS_GRACE).await
}

/// The accept loop of [`serve`] and [`serve_workers`]: `limits.max_connections` is the cap.
async fn accept_loop<L: Listener>(
    mut listener: L,
    router: axum::Router,
    limits: ConnectionLimits,
    side: Side,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let max = limits.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let rejecting = Arc::new(Semaphore::new(REJECTING));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None); // ours, below, also covers HTTP/2
    builder.http2().max_concurrent_streams(MAX_STREAMS);
    let builder = Arc::new(builder);
    let mut refuser = auto::Builder::new(TokioExecutor::new());
    refuser.http1().keep_alive(false).timer(TokioTimer::new()).header_read_timeout(REJECT_TIME);
    let refuser = Arc::new(refuser);
    let stop_now = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut pause = Duration::ZERO;
    let mut refused_since_note = 0u64;
    let mut last_note: Option<Instant> = None;

    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept_connection() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                pause = Duration::ZERO;
                pair
            }
            Err(error) if per_connection(&error) => continue,
            Err(error) => {
                // Out of descriptors or memory: the connection stays in the backlog. Pausing
                // keeps the loop from spinning; it resumes once something is closed.
                if pause.is_zero() {
                    side.note_accept_error(&error);
                }
                pause = (pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let connection = Connection {
                    builder: builder.clone(),
                    router: router.clone(),
                    limits,
                    shutdown: shutdown.clone(),
                    stop_now: stop_now.clone(),
                };
                tasks.spawn(connection.run(stream, peer, permit));
            }
            Err(_) => {
                refused_since_note += 1;
                if last_note.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    side.note_refused(refused_since_note, max);
                    refused_since_note = 0;
                    last_note = Some(Instant::now());
                }
                if let Ok(permit) = rejecting.clone().try_acquire_owned() {
                    tasks.spawn(refuse(refuser.clone(), stream, side.refusal(max), permit));
                }
            }
        }
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {}s; stopping anyway", grace.as_secs_f64());
        stop_now.cancel();
        tasks.wait().await;
    }
}

/// Accept errors that concern one connection only (it was reset before it was accepted).
fn per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(code) if code == rustix::io::Errno::PROTO.raw_os_error()
        || code == rustix::io::Errno::PERM.raw_os_error())
}

/// Answers a connection over the cap with `refusal` (`503 too_many_connections`), then closes it.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: S,
    refusal: ApiError,
    _permit: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
        let refusal = refusal.clone();
        async move {
            let mut response = axum::response::IntoResponse::into_response(refusal);
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REJECT_TIME + Duration::from_millis(500), connection).await;
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    stop_now: CancellationToken,
}

/// Why the watchdog ends a connection.
enum Expired {
    /// No complete request head in time: dropped without an answer.
    HeaderTimeout,
    /// Idle too long: closed gracefully.
    Idle,
}

impl Connection {
    async fn run<S>(self, stream: S, peer: Peer, _permit: OwnedSemaphorePermit)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState::new());
        let io = TokioIo::new(Watched { inner: stream, state: state.clone() });
        let service = ConnService { router: self.router, peer, state: state.clone() };
        let connection = self.builder.serve_connection_with_upgrades(io, service);
        let mut connection = std::pin::pin!(connection);
        let mut closing = false;
        let close_by = tokio::time::sleep(Duration::MAX);
        let mut close_by = std::pin::pin!(close_by);
        loop {
            tokio::select! {
                _ = connection.as_mut() => return,
                expired = state.watchdog(&self.limits), if !closing => match expired {
                    Expired::HeaderTimeout => return,
                    Expired::Idle => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        close_by.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                },
                () = self.shutdown.cancelled(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = &mut close_by => return,
                () = self.stop_now.cancelled() => return,
            }
        }
    }
}

/// What the watchdog of one connection knows: maintained by its I/O ([`Watched`]) and its
/// requests ([`InFlight`]). Times are milliseconds since `opened`.
struct ConnState {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the last request ended.
    idle_since: AtomicU64,
    /// 1 + when the first byte arrived while no request was in flight; 0 when none did.
    head_since: AtomicU64,
    /// Whether a request head ever arrived.
    served: AtomicBool,
    /// 0 before the first byte, 1 HTTP/1, 2 HTTP/2.
    protocol: AtomicU8,
}

/// The 24 bytes an HTTP/2 client starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
            protocol: AtomicU8::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// Bytes arrived.
    fn on_read(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.protocol.load(Ordering::Relaxed) == 0 {
            let n = bytes.len().min(H2_PREFACE.len());
            let h2 = bytes[..n] == H2_PREFACE[..n];
            self.protocol.store(if h2 { 2 } else { 1 }, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(self.now() + 1, Ordering::Relaxed);
        }
    }

    /// When the connection expires unless something happens, and why; `None` while a request
    /// is in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(u64, bool)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let header = limits.header_read_timeout.as_millis() as u64;
        if !self.served.load(Ordering::Acquire) {
            return Some((header, true));
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != 0 && self.protocol.load(Ordering::Relaxed) == 1 {
            return Some((head - 1 + header, true));
        }
        Some((self.idle_since.load(Ordering::Acquire) + limits.keep_alive_timeout.as_millis() as u64, false))
    }

    /// Resolves when the connection has gone past a deadline. Checks at least every
    /// `min(header-read, keep-alive timeout)`, so a deadline that an event brought forward
    /// is noticed within that.
    async fn watchdog(&self, limits: &ConnectionLimits) -> Expired {
        let tick = limits.header_read_timeout.min(limits.keep_alive_timeout).max(Duration::from_millis(10));
        loop {
            let now = self.now();
            let wait = match self.deadline(limits) {
                Some((at, header)) if at <= now => {
                    return if header { Expired::HeaderTimeout } else { Expired::Idle };
                }
                Some((at, _)) => Duration::from_millis(at - now).min(tick),
                None => tick,
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        InFlight(self.clone())
    }
}

/// One request in flight on a connection, until its response body is done or dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.0;
        state.idle_since.store(state.now(), Ordering::Release);
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client's stream, reporting the bytes it reads to the connection's state.
struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.state.on_read(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router, for one connection: adds `ConnectInfo<Peer>` and counts the requests in flight.
#[derive(Clone)]
struct ConnService {
    router: axum::Router,
    peer: Peer,
    state: Arc<ConnState>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Tracked>, Infallible>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = self.state.begin();
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let method = request.method().clone();
        let mut router = self.router.clone();
        let response = tower_service::Service::call(&mut router, request);
        Box::pin(async move {
            let response = crate::error::json_error_body(&method, response.await?).await;
            Ok(response.map(|body| Tracked { inner: body, _in_flight: in_flight }))
        })
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Tracked {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(effective_max_connections(10_000, Some(1 << 20)), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(20_000)), (20_000 - 640) * 4 / 9);
        let (tcp, workers) = (8604, worker_max_connections(8604));
        assert!(2 * tcp + workers + 512 + 2 * 64 <= 20_000, "both listeners fit the descriptors");
        assert_eq!(effective_max_connections(10_000, Some(100)), 1);
        assert_eq!(effective_max_connections(300, None), 300);
        assert_eq!(effective_max_connections(10_000, Some(u64::MAX)), 10_000, "unlimited");
        assert_eq!(worker_max_connections(10_000), 2_500);
        assert_eq!(worker_max_connections(1), MIN_WORKER_CONNECTIONS);
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let limits = ConnectionLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
        };
        let state = Arc::new(ConnState::new());
        assert_eq!(state.deadline(&limits), Some((10_000, true)), "a new connection must send a head");
        let request = state.begin();
        assert_eq!(state.deadline(&limits), None, "a request in flight has no deadline");
        drop(request);
        let idle = state.idle_since.load(Ordering::Relaxed);
        assert_eq!(state.deadline(&limits), Some((idle + 60_000, false)), "then it may idle");
        state.on_read(b"GET / HT");
        let head = state.head_since.load(Ordering::Relaxed) - 1;
        assert_eq!(state.deadline(&limits), Some((head + 10_000, true)), "a started head must finish");
        let h2 = Arc::new(ConnState::new());
        h2.on_read(b"PRI * HTTP/2.0\r\n");
        drop(h2.begin());
        h2.on_read(b"\0\0\x04\x08");
        assert!(!h2.deadline(&limits).unwrap().1, "HTTP/2 frames between requests do not start a head");
    }
}
