//! HTTP/1.1 connections to one worker's socket, driven by the request that uses them.
//!
//! A hyper client connection has two halves: a [`SendRequest`] handle and a [`Connection`] future
//! that does the I/O. The usual way spawns a task per connection (and hyper-util's pooled client
//! one more per request, to put the connection back): every request then wakes other tasks, often
//! on the other thread. Here the request's own task polls the `Connection` while it waits for the
//! response head, and the response body polls it while it streams, so serving a request wakes no
//! other task. Idle connections wait on a small stack; nothing polls them until they are reused.

use std::fmt;
use std::future::{Future, poll_fn};
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::RequestBody;

/// More idle connections than this are closed instead of kept.
const MAX_IDLE: usize = 256;

/// The idle connections to one worker.
pub(crate) struct ConnPool {
    socket: PathBuf,
    idle: Mutex<Vec<WorkerConn>>,
    opened: AtomicU64,
}

/// One HTTP/1.1 connection to a worker.
pub(crate) struct WorkerConn {
    sender: SendRequest<RequestBody>,
    io: Pin<Box<Connection<TokioIo<UnixStream>, RequestBody>>>,
    ended: bool,
}

/// Why an exchange with a worker failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    Connect(std::io::Error),
    Http(hyper::Error),
    /// The worker closed the connection without answering.
    Closed,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect(e) => write!(f, "could not connect to the worker: {e}"),
            ConnError::Http(e) => write!(f, "{e}"),
            ConnError::Closed => f.write_str("the worker closed the connection without answering"),
        }
    }
}

impl ConnPool {
    pub fn new(socket: PathBuf) -> ConnPool {
        ConnPool { socket, idle: Mutex::new(Vec::new()), opened: AtomicU64::new(0) }
    }

    /// How many connections were opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// An idle connection that is still open, or a new one.
    pub async fn checkout(&self) -> Result<WorkerConn, ConnError> {
        loop {
            let Some(mut conn) = self.idle.lock().unwrap().pop() else { break };
            if conn.is_open() {
                return Ok(conn);
            }
        }
        let stream = UnixStream::connect(&self.socket).await.map_err(ConnError::Connect)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        let (sender, io) = http1::handshake(TokioIo::new(stream)).await.map_err(ConnError::Http)?;
        Ok(WorkerConn { sender, io: Box::pin(io), ended: false })
    }

    /// Keeps a connection whose exchange is over, so that the next request skips the connect.
    /// One still busy (say, with the rest of a request body nobody reads) is closed instead.
    pub fn checkin(&self, mut conn: WorkerConn) {
        if conn.is_open() && conn.sender.is_ready() {
            let mut idle = self.idle.lock().unwrap();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
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
