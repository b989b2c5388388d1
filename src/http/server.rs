//! The HTTP server: accepts connections under the cap ([`connections`]),
//! performs the TLS handshake when the web configuration asks for TLS, serves
//! HTTP/1.1 with hyper, and closes connections that are idle or slow to send
//! their request. On `stop` it accepts no more, lets requests in flight
//! finish, and returns once every connection has ended.
//!
//! [`connections`]: super::connections

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::body::TrackedBody;
use super::connections::{Connection, Connections, LogThrottle};
use crate::app::AppState;
use crate::config::HttpLimits;
use crate::web::Web;

/// Largest request head (line and headers) a client may send.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a failed `accept` (out of descriptors) waits before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `stop`, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    web: Arc<Web>,
    connections: Arc<Connections>,
    stop: CancellationToken,
) {
    let server = Arc::new(Server {
        routes: super::routes(state.clone(), web.clone()),
        limits: state.config.http.clone(),
        state,
        web,
        connections,
        stop: stop.clone(),
        evictions_logged: LogThrottle::new(Duration::from_secs(60)),
        handshakes_logged: LogThrottle::new(Duration::from_secs(60)),
        accept_errors_logged: LogThrottle::new(Duration::from_secs(60)),
    });
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, most likely: keep serving those open.
                if server.accept_errors_logged.due() {
                    tracing::warn!(error = %e, "cannot accept HTTP connections");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (connection, evicted) = tokio::select! {
            _ = stop.cancelled() => break,
            admitted = server.connections.admit() => admitted,
        };
        if evicted > 0 {
            server
                .state
                .telemetry
                .http_connections_closed
                .with_label_values(&["evicted"])
                .inc_by(evicted as u64);
            if server.evictions_logged.due() {
                tracing::warn!(
                    cap = server.connections.cap(),
                    "HTTP connection cap reached: the longest-idle connection was closed for a new one (PROMSNMP_MAX_CONNECTIONS; promsnmp_http_connections_closed_total{{reason=\"evicted\"}} counts them)"
                );
            }
        }
        let server = server.clone();
        tasks.spawn(async move {
            server.state.telemetry.http_connections.inc();
            server.accept(stream, peer, &connection).await;
            server.connections.remove(&connection);
            server.state.telemetry.http_connections.dec();
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

struct Server {
    routes: super::Routes,
    limits: HttpLimits,
    state: Arc<AppState>,
    web: Arc<Web>,
    connections: Arc<Connections>,
    stop: CancellationToken,
    evictions_logged: LogThrottle,
    handshakes_logged: LogThrottle,
    accept_errors_logged: LogThrottle,
}

impl Server {
    fn note_closed(&self, reason: &str) {
        self.state
            .telemetry
            .http_connections_closed
            .with_label_values(&[reason])
            .inc();
    }

    /// TLS handshake (bounded by the header timeout) when configured, then HTTP.
    async fn accept(&self, stream: TcpStream, peer: SocketAddr, connection: &Arc<Connection>) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = self.web.tls_acceptor() else {
            return self.serve_http(stream, connection).await;
        };
        let handshake = tokio::select! {
            _ = connection.evicted() => return,
            done = tokio::time::timeout(self.limits.header_timeout, acceptor.accept(stream)) => done,
        };
        match handshake {
            Ok(Ok(tls)) => self.serve_http(tls, connection).await,
            Ok(Err(e)) => self.handshake_failed(peer, &e.to_string()),
            Err(_) => self.handshake_failed(peer, "timed out"),
        }
    }

    fn handshake_failed(&self, peer: SocketAddr, error: &str) {
        self.note_closed("tls_handshake");
        tracing::debug!(%peer, error, "TLS handshake failed");
        if self.handshakes_logged.due() {
            tracing::warn!(%peer, error, "TLS handshake failed (logged once a minute; promsnmp_http_connections_closed_total{{reason=\"tls_handshake\"}} counts them)");
        }
    }

    async fn serve_http<I>(&self, io: I, connection: &Arc<Connection>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let routes = self.routes.clone();
        let tracked = connection.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            let guard = tracked.begin_request();
            // The handler says when the body has arrived (then the request is busy).
            request.extensions_mut().insert(guard.phase());
            let response = warp::service(routes.clone()).call(request);
            async move {
                let response = match response.await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, guard)))
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        // hyper's header timeout would also run while a kept-alive connection
        // waits for its next request; the idle deadline below covers both.
        http.timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES);
        let served = http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(served);
        let mut draining = false;
        let closed_by_us = loop {
            // Busy: look again after the idle timeout (the request may end sooner).
            let deadline = connection
                .idle_deadline(self.limits.header_timeout, self.limits.idle_timeout)
                .unwrap_or_else(|| std::time::Instant::now() + self.limits.idle_timeout);
            tokio::select! {
                result = served.as_mut() => break match result {
                    Ok(()) => None,
                    Err(e) => {
                        // Mostly clients that went away; not the server's doing.
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                        None
                    }
                },
                _ = connection.evicted() => break None, // counted when evicted
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = std::time::Instant::now();
                    let due = connection
                        .idle_deadline(self.limits.header_timeout, self.limits.idle_timeout)
                        .is_some_and(|d| d <= now);
                    if due {
                        break Some(if connection.has_served() { "idle" } else { "header_timeout" });
                    }
                }
                _ = self.stop.cancelled(), if !draining => {
                    // Shutting down: a connection between requests (or still
                    // sending one's head) closes now; one busy finishes first.
                    if connection.idle_deadline(self.limits.header_timeout, self.limits.idle_timeout).is_some() {
                        break None;
                    }
                    served.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        };
        if let Some(reason) = closed_by_us {
            self.note_closed(reason);
        }
    }
}
