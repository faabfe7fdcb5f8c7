//! The two servers under test, started alike: a free port chosen up front, one process spawned,
//! and the time from the spawn to the first answer taken with a raw HTTP/1.1 request, so that no
//! client library's start-up is counted.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The path requested from both servers: the fixture's function on Homebase; plain Deno answers
/// every path, and requesting the same one keeps the bytes on the wire identical.
pub const PATH: &str = "/functions/hello";

/// How often a starting server is polled for its first answer.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How long a server may take to give its first answer (or print its `listening` line).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Which server is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `deno run fixture/plain.ts`: the handler behind plain `Deno.serve`.
    Deno,
    /// `homebase dev fixture`: the same handler as a Base44 function, proxied by Homebase.
    Homebase,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Deno => "deno",
            Kind::Homebase => "homebase",
        })
    }
}

/// Everything needed to start either server.
#[derive(Debug)]
pub struct Setup {
    /// The Deno both servers run: plain directly, Homebase through `HOMEBASE_DENO`.
    pub deno: PathBuf,
    /// The `homebase` binary.
    pub homebase: PathBuf,
    /// `bench/fixture`: the Base44 project and `plain.ts`.
    pub fixture: PathBuf,
}

/// Times from the spawn of a server to its first answer.
#[derive(Debug, Clone, Copy)]
pub struct FirstAnswer {
    /// The first TCP connect that succeeded.
    pub connected: Duration,
    /// The end of the first answer, a 200.
    pub answered: Duration,
}

/// A running server. Dropping it stops the process (SIGTERM, then SIGKILL after a grace period),
/// on success and error paths alike.
pub struct Server {
    kind: Kind,
    child: Child,
    addr: SocketAddr,
    started: Instant,
    /// When Homebase printed its `listening` line; `None` for plain Deno.
    listening: Option<mpsc::Receiver<Instant>>,
}

impl Server {
    /// Spawns the server on a free port; it is not ready yet (see [`Server::first_answer`]).
    pub fn start(kind: Kind, setup: &Setup) -> anyhow::Result<Server> {
        let addr = free_addr()?;
        let port = addr.port().to_string();
        let mut command = match kind {
            Kind::Deno => {
                let mut command = Command::new(&setup.deno);
                command
                    .args(["run", "--allow-net", "--allow-env"])
                    .arg(setup.fixture.join("plain.ts"))
                    .env("PORT", &port)
                    .env("DENO_NO_UPDATE_CHECK", "1")
                    .stdout(Stdio::null());
                command
            }
            Kind::Homebase => {
                let mut command = Command::new(&setup.homebase);
                command
                    .args(["--json", "dev"])
                    .arg(&setup.fixture)
                    .args(["--port", &port])
                    .env("HOMEBASE_DENO", &setup.deno)
                    .stdout(Stdio::piped());
                command
            }
        };
        command.current_dir(&setup.fixture).stdin(Stdio::null()).stderr(Stdio::inherit());

        let started = Instant::now();
        let mut child = command.spawn().with_context(|| format!("could not start {kind} ({command:?})"))?;
        let listening = child.stdout.take().map(watch_for_listening);
        Ok(Server { kind, child, addr, started, listening })
    }

    /// The URL load tools request.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// Polls the server until it answers, and fails unless the answer is a 200.
    pub fn first_answer(&mut self) -> anyhow::Result<FirstAnswer> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) before answering", self.kind);
            }
            match TcpStream::connect(self.addr) {
                Ok(stream) => {
                    let connected = self.started.elapsed();
                    let (status, body) = get(stream).with_context(|| format!("requesting {}", self.url()))?;
                    let answered = self.started.elapsed();
                    if status != 200 {
                        bail!("{} answered {status} instead of 200: {body}", self.kind);
                    }
                    return Ok(FirstAnswer { connected, answered });
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e).with_context(|| format!("connecting to {}", self.addr)),
            }
            if self.started.elapsed() > START_TIMEOUT {
                bail!("{} did not answer within {START_TIMEOUT:?}", self.kind);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Time from the spawn to Homebase's `listening` line.
    pub fn listening_line(&self) -> anyhow::Result<Duration> {
        let lines = self.listening.as_ref().with_context(|| format!("{} prints no listening line", self.kind))?;
        let at =
            lines.recv_timeout(START_TIMEOUT).with_context(|| format!("{} printed no listening line", self.kind))?;
        Ok(at - self.started)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SIGTERM first: Homebase then stops its workers and removes its temporary folder.
        terminate(self.child.id());
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago. Knowing the port before the spawn lets the
/// first connect be timed from the spawn, without waiting for the server to say where it is.
fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// Reads Homebase's JSON stdout on a thread, sends the instant its `listening` line arrives, and
/// keeps draining the pipe so that Homebase never blocks on a full one.
fn watch_for_listening(stdout: ChildStdout) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let event = serde_json::from_str::<serde_json::Value>(&line).ok();
            if event.is_some_and(|event| event["event"] == "listening") {
                let _ = tx.send(Instant::now());
            }
        }
    });
    rx
}

/// One `GET` on a fresh connection, read to its end: the status and the body.
fn get(mut stream: TcpStream) -> io::Result<(u16, String)> {
    stream.set_read_timeout(Some(START_TIMEOUT))?;
    let host = stream.peer_addr()?;
    write!(stream, "GET {PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP response: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_string()))
}

#[allow(unsafe_code)]
fn terminate(pid: u32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped yet; no memory is shared.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}
