//! The listener around [`super::handle`]: optional TLS and basic auth from the web config,
//! and the limits that keep slow or hostile clients from starving the endpoints.
//!
//! - At most `http.max_connections` connections are served at once; more wait in the
//!   kernel's listen backlog until one closes.
//! - A connection that has not sent a whole request header (or finished its TLS handshake)
//!   within `http.header_read_timeout` is closed; so is a keep-alive connection idle that
//!   long, and any connection older than [`MAX_CONNECTION_AGE`] (a client that stops reading
//!   a response would otherwise hold its slot for ever).
//! - A failed `accept` (EMFILE, ENFILE, ENOBUFS) backs off from 5 ms to 1 s instead of
//!   retrying at once: the error persists until some connection closes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::auth::{BasicAuth, OPEN_PATHS};
use super::tls::{self, TlsError};
use super::{handle, text, AppState, Resp};
use crate::config::{web::WebConfig, HttpConfig};

/// Longest life of one connection.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How the endpoints are served: TLS, auth and limits.
#[derive(Clone)]
pub struct Server {
    tls: Option<TlsAcceptor>,
    auth: Option<BasicAuth>,
    max_connections: usize,
    header_read_timeout: Duration,
}

impl Server {
    /// Reads the certificate and key the web config names.
    pub fn new(http: &HttpConfig, web: &WebConfig) -> Result<Server, TlsError> {
        let tls = web
            .tls_server_config
            .as_ref()
            .map(tls::acceptor)
            .transpose()?;
        Ok(Server {
            tls,
            auth: BasicAuth::new(web.basic_auth_users.clone()),
            max_connections: http.max_connections,
            header_read_timeout: http.header_read_timeout,
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

fn unauthorized() -> Resp {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "unauthorized\n",
        "text/plain; charset=utf-8",
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"losswatch\""),
    );
    r
}

async fn guarded(
    state: AppState,
    auth: Option<BasicAuth>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    if let Some(auth) = &auth {
        if !OPEN_PATHS.contains(&req.uri().path()) && !auth.allows(req.headers()).await {
            return Ok(unauthorized());
        }
    }
    handle(state, req).await
}

/// Serves until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    server: Server,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(server.max_connections));
    let mut backoff = Duration::ZERO;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    backoff = Duration::ZERO;
                    stream
                }
                Err(error) => {
                    backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            },
        };
        let (state, server, stop) = (state.clone(), server.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = permit;
            let served = async {
                match &server.tls {
                    None => connection(stream, state, &server).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(
                            server.header_read_timeout,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(tls)) => connection(tls, state, &server).await,
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::timeout(MAX_CONNECTION_AGE, served) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn connection<T>(io: T, state: AppState, server: &Server)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let auth = server.auth.clone();
    let svc = service_fn(move |req| guarded(state.clone(), auth.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(error) = conn.await {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
