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

/// A query text of at least this many words is a document ("more like
/// this"): it is embedded as a passage, like the stored texts it is
/// compared with. e5's authors prefix both sides alike for symmetric tasks;
/// on the search benchmark's human judgments (BENCHMARKS.md) whole
/// documents ranked better that way.
pub const DOCUMENT_QUERY_WORDS: usize = 40;

/// How a query text is embedded: as a query, or as a passage when it is
/// as long as a document.
pub fn query_modality(text: &str) -> Modality {
    if text.split_whitespace().count() >= DOCUMENT_QUERY_WORDS {
        Modality::Passage
    } else {
        Modality::Query
    }
}

impl Modality {
    pub fn as_str(self) -> &'static str {
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
