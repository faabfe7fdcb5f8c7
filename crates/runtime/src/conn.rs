//! HTTP/1.1 connections to one worker's socket, driven by the request that uses them.
//!
//! A hyper client connection has two halves: a [`SendRequest`] handle and a [`Connection`] future
//! that does the I/O. The usual way spawns a task per connection (and hyper-util's pooled client
//! one more per request, to put the connection back): every request then wakes other tasks, often
//! on the other thread. Here the request's own task polls the `Connection` while it waits for the
//! response head, and the response body polls it while it streams, so serving a request wakes no
//! other task. Idle connections wait on a small stack; nothing polls them until they are reused.
//!
//! Every connection open to a worker, busy or idle, holds a descriptor of this process, so they
//! are counted ([`ConnBudget`]): at most [`ConnBudget::per_worker`] to one worker and
//! [`ConnBudget::max`] to all of them together. A request that would need one more is refused at
//! once ([`Full`]) instead of taking the descriptors the server needs for everything else. The
//! count costs two atomic additions per connection opened and nothing per request that reuses an
//! idle one. Idle connections are closed after [`IDLE_CONN_TIMEOUT`] ([`ConnPool::trim`]).

use std::fmt;
use std::future::{Future, poll_fn};
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::RequestBody;

/// More idle connections than this are closed instead of kept.
const MAX_IDLE: usize = 256;
/// An idle connection unused for this long is closed (by [`ConnPool::trim`]).
pub(crate) const IDLE_CONN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections to all workers until the server sets its budget ([`ConnBudget::set`]): the
/// default `max-connections`.
const DEFAULT_MAX: usize = 10_000;
/// One worker may hold at most `1 / WORKER_SHARE` of the connections to all workers, so that one
/// flooded function leaves room for the others.
pub const WORKER_SHARE: usize = 4;

/// How many connections to workers may be open: the same for every worker of a runtime.
#[derive(Debug)]
pub(crate) struct ConnBudget {
    /// Connections open to all workers, busy or idle.
    open: AtomicUsize,
    max: AtomicUsize,
    per_worker: AtomicUsize,
}

/// Why no connection could be opened: the worker's share, or the whole budget, is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Worker(usize),
    Server(usize),
}

impl ConnBudget {
    pub fn new() -> ConnBudget {
        let budget =
            ConnBudget { open: AtomicUsize::new(0), max: AtomicUsize::new(0), per_worker: AtomicUsize::new(0) };
        budget.set(DEFAULT_MAX);
        budget
    }

    /// At most `max` connections to all workers (at least 1), and a [`WORKER_SHARE`] of that to
    /// any one worker.
    pub fn set(&self, max: usize) {
        let max = max.max(1);
        self.max.store(max, Ordering::Relaxed);
        self.per_worker.store(per_worker(max), Ordering::Relaxed);
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub fn per_worker(&self) -> usize {
        self.per_worker.load(Ordering::Relaxed)
    }

    /// Connections open to all workers now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A worker's share of a budget of `max` connections.
pub fn per_worker(max: usize) -> usize {
    (max / WORKER_SHARE).max(1)
}

/// The counts one connection is part of: its worker's and the runtime's.
struct Counts {
    open: AtomicUsize,
    budget: Arc<ConnBudget>,
}

/// One open connection's place in the counts; given back when the connection is dropped.
struct Counted(Arc<Counts>);

impl Counts {
    /// Counts one more connection, or says which limit it would pass (then nothing is counted).
    fn try_open(self: &Arc<Self>) -> Result<Counted, Full> {
        let budget = &self.budget;
        let per_worker = budget.per_worker.load(Ordering::Relaxed);
        if self.open.fetch_add(1, Ordering::AcqRel) >= per_worker {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Worker(per_worker));
        }
        let max = budget.max.load(Ordering::Relaxed);
        if budget.open.fetch_add(1, Ordering::AcqRel) >= max {
            budget.open.fetch_sub(1, Ordering::AcqRel);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Server(max));
        }
        Ok(Counted(self.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.budget.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connections to one worker: the idle ones, and how many are open.
pub(crate) struct ConnPool {
    socket: PathBuf,
    idle: Mutex<Vec<WorkerConn>>,
    opened: AtomicU64,
    counts: Arc<Counts>,
}

/// One HTTP/1.1 connection to a worker.
pub(crate) struct WorkerConn {
    sender: SendRequest<RequestBody>,
    io: Pin<Box<Connection<TokioIo<UnixStream>, RequestBody>>>,
    ended: bool,
    /// When it was last put back idle.
    idle_since: Instant,
    _counted: Counted,
}

/// Why an exchange with a worker failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    Connect(std::io::Error),
    /// No connection may be opened: the worker or all workers hold as many as allowed.
    Full(Full),
    Http(hyper::Error),
    /// The worker closed the connection without answering.
    Closed,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect(e) => write!(f, "could not connect to the worker: {e}"),
            ConnError::Full(Full::Worker(max)) => write!(f, "the worker holds {max} connections, the most allowed"),
            ConnError::Full(Full::Server(max)) => {
                write!(f, "workers hold {max} connections together, the most allowed")
            }
            ConnError::Http(e) => write!(f, "{e}"),
            ConnError::Closed => f.write_str("the worker closed the connection without answering"),
        }
    }
}

impl ConnPool {
    pub fn new(socket: PathBuf, budget: Arc<ConnBudget>) -> ConnPool {
        ConnPool {
            socket,
            idle: Mutex::new(Vec::new()),
            opened: AtomicU64::new(0),
            counts: Arc::new(Counts { open: AtomicUsize::new(0), budget }),
        }
    }

    /// How many connections were opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// How many connections are open now, busy or idle.
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::Relaxed)
    }

    /// An idle connection that is still open, or a new one if the budget allows it.
    pub async fn checkout(&self) -> Result<WorkerConn, ConnError> {
        loop {
            let Some(mut conn) = self.idle.lock().unwrap().pop() else { break };
            if conn.is_open() {
                return Ok(conn);
            }
        }
        let counted = self.counts.try_open().map_err(ConnError::Full)?;
        let stream = UnixStream::connect(&self.socket).await.map_err(ConnError::Connect)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        let (sender, io) = http1::handshake(TokioIo::new(stream)).await.map_err(ConnError::Http)?;
        Ok(WorkerConn { sender, io: Box::pin(io), ended: false, idle_since: Instant::now(), _counted: counted })
    }

    /// Keeps a connection whose exchange is over, so that the next request skips the connect.
    /// One still busy (say, with the rest of a request body nobody reads) is closed instead.
    pub fn checkin(&self, mut conn: WorkerConn) {
        if conn.is_open() && conn.sender.is_ready() {
            let mut idle = self.idle.lock().unwrap();
            if idle.len() < MAX_IDLE {
                conn.idle_since = Instant::now();
                idle.push(conn);
            }
        }
    }

    /// Closes the idle connections unused for `max_idle` or more, so that they give their
    /// descriptors (and their place in the budget) back.
    pub fn trim(&self, max_idle: Duration) {
        let stale: Vec<WorkerConn> = {
            let mut idle = self.idle.lock().unwrap();
            // The stack's oldest are at the bottom.
            let keep = idle.iter().position(|c| c.idle_since.elapsed() < max_idle).unwrap_or(idle.len());
            idle.drain(..keep).collect()
        };
        drop(stale);
    }
}

impl WorkerConn {
    /// Polls the connection once with no task to wake; false once it has ended.
    fn is_open(&mut self) -> bool {
        let _ = self.poll_io(&mut Context::from_waker(Waker::noop()));
        !self.ended && !self.sender.is_closed()
    }

    /// Drives the connection's I/O. `Ready` once it has ended, and from then on.
    pub fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(self.io.as_mut().poll(cx));
        self.ended = true;
        Poll::Ready(result)
    }

    /// Sends `request` and waits for the response head, driving the connection meanwhile.
    pub async fn send(&mut self, request: Request<RequestBody>) -> Result<Response<Incoming>, ConnError> {
        poll_fn(|cx| {
            if let Poll::Ready(result) = self.poll_io(cx) {
                return Poll::Ready(Err(result.err().map_or(ConnError::Closed, ConnError::Http)));
            }
            self.sender.poll_ready(cx).map_err(ConnError::Http)
        })
        .await?;
        let mut response = pin!(self.sender.send_request(request));
        poll_fn(|cx| {
            let ended = self.poll_io(cx).is_ready();
            match response.as_mut().poll(cx) {
                Poll::Ready(result) => Poll::Ready(result.map_err(ConnError::Http)),
                Poll::Pending if ended => Poll::Ready(Err(ConnError::Closed)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_worker_and_in_all() {
        let budget = Arc::new(ConnBudget::new());
        assert_eq!((budget.max(), budget.per_worker()), (DEFAULT_MAX, DEFAULT_MAX / WORKER_SHARE));
        budget.set(10);
        assert_eq!((budget.max(), budget.per_worker()), (10, 2));
        let counts = |budget: &Arc<ConnBudget>| Arc::new(Counts { open: AtomicUsize::new(0), budget: budget.clone() });
        let workers: Vec<Arc<Counts>> = (0..6).map(|_| counts(&budget)).collect();
        let mut held = Vec::new();
        for worker in &workers[..5] {
            held.push(worker.try_open().unwrap());
            held.push(worker.try_open().unwrap());
            if budget.open() < 10 {
                assert_eq!(worker.try_open().err(), Some(Full::Worker(2)), "a worker's share");
            }
        }
        assert_eq!(budget.open(), 10);
        assert_eq!(workers[5].try_open().err(), Some(Full::Server(10)), "the whole budget");
        assert_eq!(workers[5].open.load(Ordering::Relaxed), 0, "a refusal counts nothing");
        held.pop();
        assert_eq!(budget.open(), 9, "a dropped connection gives its place back");
        assert!(workers[5].try_open().is_ok());
        budget.set(0);
        assert_eq!((budget.max(), budget.per_worker()), (1, 1));
    }
}
