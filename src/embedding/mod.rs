//! The text model: an OpenAI-compatible embeddings endpoint (`client`), and
//! what can go wrong with it, classified for the vectorizer and the logs.

mod client;
mod wire;

pub use client::EmbeddingClient;

/// Whether a text is a query or a stored passage (e5 embeds them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    Query,
    Passage,
}

impl Modality {
    fn as_str(self) -> &'static str {
        match self {
            Modality::Query => "query",
            Modality::Passage => "passage",
        }
    }
}

/// Why a request to the endpoint gave no vectors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// Unreachable, timing out, overloaded (429) or failing (5xx) until the
    /// retries ran out: the endpoint's trouble, not the texts'.
    #[error("the embedding endpoint is unavailable: {0}")]
    Unavailable(String),
    /// A 4xx answer other than 429: a wrong key, an unknown model, a text
    /// the endpoint will not take.
    #[error("the embedding endpoint refused the request (HTTP {status}{}): {message}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// An answer that does not fit: the wrong number of vectors, the wrong
    /// dimension, numbers that are not finite, or not the API's JSON.
    #[error("the embedding endpoint's answer is unusable: {0}")]
    BadAnswer(String),
}

impl EmbedError {
    /// The kind of failure, the same for every item it hits: logs say each
    /// cause once, not once per item.
    pub fn cause(&self) -> String {
        match self {
            EmbedError::Unavailable(_) => "endpoint unavailable".into(),
            EmbedError::Refused { status, code, .. } => match code {
                Some(code) => format!("refused: HTTP {status} {code}"),
                None => format!("refused: HTTP {status}"),
            },
            EmbedError::BadAnswer(why) => {
                format!("unusable answer: {}", why.split(':').next().unwrap_or(why))
            }
        }
    }

    /// Whether the texts themselves may be at fault (one bad text refuses a
    /// whole batch): worth trying them one by one.
    pub fn may_be_one_text(&self) -> bool {
        matches!(
            self,
            EmbedError::Refused {
                status: 400 | 413 | 422,
                ..
            }
        )
    }
}
