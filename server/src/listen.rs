//! Accepting connections, with limits on what a peer can hold before it
//! has authenticated (`docs/threat-model.md`, "Limits that hold").
//!
//! The relay accepts TCP connections itself (rather than through
//! `axum::serve`) so that it can:
//! - cap connections in total and per source address, counting a
//!   connection for as long as its socket is open, WebSockets included
//!   (the count travels with the socket, [`Counted`]);
//! - give every connection a deadline for its request header
//!   ([`ConnectionLimits::header_read_timeout`]; also between requests on a
//!   kept-alive connection), so silent and slowloris connections are closed;
//! - keep accepting at the file-descriptor limit: an `accept` that fails
//!   for lack of descriptors is retried shortly, and the total cap is kept
//!   below the limit ([`raise_open_files_limit`]) so that `/health` and
//!   devices can still connect while the cap is full of one attacker's
//!   connections from one address.
//!
//! HTTP/1.1 only: devices speak it (the WebSocket upgrade is HTTP/1.1), and
//! an HTTP/2 connection could hold streams open without the header
//! deadline. (hyper-util's automatic version detection is not used either:
//! it waits for a connection's first bytes without a deadline.)

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Descriptors kept free below the open-files limit for the store, the
/// log and accepting (and answering) while the connection cap is full.
pub const RESERVED_FILES: u64 = 256;

/// Limits on connections, before and after authentication. Safe defaults;
/// `cascade-server serve` can change each (`docs/admin-guide.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections in all (HTTP and WebSocket). Kept below the
    /// process's open-files limit minus [`RESERVED_FILES`].
    pub max_connections: usize,
    /// Open connections from one source address.
    pub max_per_address: usize,
    /// How long a connection may take to send a request's header (and how
    /// long a kept-alive connection may sit idle between requests).
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_per_address: 1_000,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// These limits with the total cap lowered to fit `open_files` (the
    /// process's open-files limit), and the cap per address to half the
    /// total, so that one address can never hold every connection.
    pub fn within_open_files(mut self, open_files: u64) -> Self {
        let fit = open_files.saturating_sub(RESERVED_FILES).max(2);
        self.max_connections = self.max_connections.min(fit as usize).max(2);
        self.max_per_address = self.max_per_address.min(self.max_connections / 2);
        self
    }
}

/// Raises the process's soft open-files limit to its hard limit and
/// returns the limit now in force. A relay holds a descriptor per
/// connection, and the common soft limit of 1,024 would let about a
/// thousand idle connections lock everyone out.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return u64::MAX;
    };
    if limit.current == limit.maximum {
        return current;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum.unwrap_or(u64::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            current
        }
    }
}

/// The connections open now, in all and per source address.
#[derive(Clone, Default)]
pub struct Admission {
    inner: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    refused: u64,
}

impl Admission {
    /// Counts a new connection from `address`, or refuses it when a cap is
    /// reached.
    pub fn admit(&self, address: IpAddr, limits: &ConnectionLimits) -> Option<Admitted> {
        let mut open = self.lock();
        let from_address = open.per_address.get(&address).copied().unwrap_or(0);
        if open.total >= limits.max_connections || from_address >= limits.max_per_address {
            open.refused += 1;
            return None;
        }
        open.total += 1;
        *open.per_address.entry(address).or_insert(0) += 1;
        Some(Admitted {
            admission: self.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Connections refused by a cap since the relay started.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // The counts stay consistent even if a holder panicked: every
        // change is one statement.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One counted connection; uncounted when dropped.
pub struct Admitted {
    admission: Admission,
    address: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.total -= 1;
        if let Some(n) = open.per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&self.address);
            }
        }
    }
}

/// A connection's byte stream: the TCP stream itself, or TLS over it.
pub enum Stream {
    /// Plain TCP (no TLS configured).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection that stays counted while it is open, through the
/// WebSocket upgrade (which takes the stream out of the HTTP connection).
pub struct Counted {
    stream: Stream,
    _admitted: Admitted,
}

/// Forwards an I/O call to whichever stream the connection has.
macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {
        match &mut $self.stream {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        forward!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        forward!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        forward!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Whether an `accept` error concerns only the connection being accepted
/// (the next accept can succeed at once).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then stops accepting and asks open HTTP connections to finish, waiting
/// at most `grace`. (Upgraded WebSockets are the caller's to close.) With
/// `tls`, every connection first completes a TLS handshake, within the
/// header deadline.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    admission: Admission,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Every connection task holds a clone of `open`; once the accept loop
    // drops its own, `closed` ends when the last task has.
    let (open, mut closed) = mpsc::channel::<()>(1);
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (or memory): the connections that
                // hold them end by their deadlines; try again shortly.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = admission.admit(peer.ip(), &limits) else {
            tracing::debug!("connection refused: a connection cap is reached");
            drop(stream);
            continue;
        };
        // Small frames go out at once: without TCP_NODELAY, Nagle's
        // algorithm and the peer's delayed ACK add ~40 ms to a response that
        // follows a push (measured with `cargo xtask bench`).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let builder = builder.clone();
        let tls = tls.clone();
        let handshake_deadline = limits.header_read_timeout;
        let open = open.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _open = open;
            let stream = match tls {
                None => Stream::Plain(stream),
                // A handshake gets the header deadline, so that silent or
                // slow TLS clients cannot hold connections either.
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let io = TokioIo::new(Counted {
                stream,
                _admitted: admitted,
            });
            let connection = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                    // Finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(open);
    stop.send_replace(true);
    if tokio::time::timeout(grace, closed.recv()).await.is_err() {
        tracing::warn!("HTTP connections still open after the grace period");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_fit_the_open_files_limit_and_no_address_takes_all() {
        let limits = ConnectionLimits::default().within_open_files(1024);
        assert_eq!(limits.max_connections, 1024 - RESERVED_FILES as usize);
        assert_eq!(limits.max_per_address, limits.max_connections / 2);
        let limits = ConnectionLimits::default().within_open_files(1_000_000);
        assert_eq!(limits, ConnectionLimits::default(), "room for the defaults");
        let tiny = ConnectionLimits::default().within_open_files(10);
        assert!(tiny.max_connections >= 2 && tiny.max_per_address >= 1);
    }
}
