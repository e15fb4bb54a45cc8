//! The HTTP endpoints (hyper, HTTP/1.1):
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text format |
//! | `GET /livez` | 200 while the agent loop turns (heartbeat younger than 30 s), else 503 |
//! | `GET /readyz` | 200 once canary metadata is loaded and the state file is open, else 503 and why |
//! | `GET /api/losses?limit=N` | loss events, newest first (JSON; default 100, at most 10 000) |
//! | `GET /api/status` | per-partition summary with lifetime totals (JSON) |
//! | `GET /api/audit` | the durability audit's findings (JSON; only the auditing agent has them) |
//!
//! TLS, basic auth and connection limits are around the routes, in [`server`]; `/livez` and
//! `/readyz` stay open to the kubelet when basic auth is on.

mod auth;
mod server;
mod tls;

pub use server::{serve, Server, MAX_CONNECTION_AGE};
pub use tls::TlsError;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::Registry;
use tokio::sync::watch;

use crate::agent::{now_us, Health, Status};

/// A heartbeat older than this makes `/livez` fail.
const LIVENESS_MS: i64 = 30_000;

#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    /// The lag poller's per-group series, appended to every scrape and read by `/api/lag`.
    pub lag: crate::lag::LagMetrics,
    pub scrape_lock: crate::metrics::ScrapeLock,
    /// The agent's per-partition series, written into every scrape.
    pub partitions: crate::metrics::PartitionSeries,
    pub health: Arc<Health>,
    pub status: watch::Receiver<Arc<Status>>,
    pub state_path: PathBuf,
    pub audit: crate::audit::Shared,
    /// The last Kafka client error, shown by `/readyz` while the agent is not ready.
    pub kafka_errors: crate::kafka::KafkaErrors,
}

type Resp = Response<Full<Bytes>>;

fn text(code: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(code: StatusCode, value: &impl serde::Serialize) -> Resp {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => text(code, body, "application/json"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}\n"),
            "text/plain; charset=utf-8",
        ),
    }
}

fn limit_param(query: Option<&str>) -> Result<usize, String> {
    let Some(q) = query else { return Ok(100) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("limit=") {
            return v
                .parse::<usize>()
                .map(|n| n.min(10_000))
                .map_err(|_| format!("limit must be a non-negative integer, got {v:?}"));
        }
    }
    Ok(100)
}

async fn handle(state: AppState, req: Request<Incoming>) -> Result<Resp, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n", PLAIN));
    }
    let resp = match req.uri().path() {
        "/" => text(
            StatusCode::OK,
            crate::page::HTML,
            "text/html; charset=utf-8",
        ),
        "/api/lag" => json(
            StatusCode::OK,
            &crate::page::lag(state.lag.series_registry()),
        ),
        "/metrics" => {
            // About 2 ms of CPU at 1 000 canary partitions (`benches/scrape.rs`), and a wait
            // for the scrape lock: on a blocking thread, so a scrape never holds a runtime
            // worker the agent loop could run on.
            let res = tokio::task::spawn_blocking(move || {
                let s = &state;
                crate::metrics::render_scrape(&s.registry, &s.scrape_lock, &s.partitions, &s.lag)
            })
            .await;
            match res {
                Ok(body) => text(
                    StatusCode::OK,
                    body,
                    "text/plain; version=0.0.4; charset=utf-8",
                ),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"), PLAIN),
            }
        }
        "/livez" => match state.health.since_beat_ms(now_us() / 1000) {
            Some(age) if age <= LIVENESS_MS => text(StatusCode::OK, "ok\n", PLAIN),
            Some(age) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("agent loop stalled for {age} ms\n"),
                PLAIN,
            ),
            // Before the first turn the process is starting, which is alive.
            None => text(StatusCode::OK, "starting\n", PLAIN),
        },
        "/readyz" => match state.health.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n", PLAIN),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                match state.kafka_errors.last() {
                    Some(e) => format!(
                        "not ready: {why}; last Kafka error: {} ({} client): {}\n",
                        e.kind.as_label(),
                        e.client,
                        e.reason
                    ),
                    None => format!("not ready: {why}\n"),
                },
                PLAIN,
            ),
        },
        "/api/status" => {
            let status = state.status.borrow().clone();
            json(StatusCode::OK, &*status)
        }
        "/api/audit" => {
            let audit = state.audit.borrow().clone();
            json(StatusCode::OK, &audit.response())
        }
        "/api/losses" => match limit_param(req.uri().query()) {
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n"), PLAIN),
            Ok(limit) => {
                let path = state.state_path.clone();
                let res =
                    tokio::task::spawn_blocking(move || crate::ledger::read_events(&path, limit))
                        .await;
                match res {
                    Ok(Ok(events)) => json(StatusCode::OK, &events),
                    Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"), PLAIN),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"), PLAIN),
                }
            }
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n", PLAIN),
    };
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::limit_param;

    #[test]
    fn limit_is_parsed_and_capped() {
        assert_eq!(limit_param(None), Ok(100));
        assert_eq!(limit_param(Some("limit=5")), Ok(5));
        assert_eq!(limit_param(Some("x=1&limit=99999")), Ok(10_000));
        assert!(limit_param(Some("limit=-1")).is_err());
    }
}
