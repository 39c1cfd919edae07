//! The OpenAI embeddings API on the wire: the request, the answer (vectors
//! as float arrays or base64 of little-endian f32), and error bodies.

use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub struct Request<'a> {
    pub model: &'a str,
    pub input: Vec<std::borrow::Cow<'a, str>>,
    pub encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_type: Option<&'static str>,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Embedding,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Embedding {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// The vectors of an answer, in the order of the request's texts, each of
/// `dimensions` finite numbers; else what is wrong (its kind before `:`).
pub fn vectors(body: &[u8], count: usize, dimensions: usize) -> Result<Vec<Vec<f32>>, String> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("not an embeddings answer: {e}"))?;
    if answer.data.len() != count {
        return Err(format!(
            "wrong number of vectors: {} for {count} texts",
            answer.data.len()
        ));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; count];
    for item in answer.data {
        let v = match item.embedding {
            Embedding::Floats(v) => v,
            Embedding::Base64(s) => decode_base64(&s)?,
        };
        if v.len() != dimensions {
            return Err(format!(
                "wrong dimension: {} numbers instead of {dimensions}",
                v.len()
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err("numbers that are not finite: NaN or infinity in a vector".into());
        }
        match out.get_mut(item.index) {
            Some(slot @ None) => *slot = Some(v),
            _ => return Err(format!("wrong index: {} twice or out of range", item.index)),
        }
    }
    out.into_iter()
        .map(|v| v.ok_or_else(|| "wrong index: a text without its vector".to_string()))
        .collect()
}

fn decode_base64(s: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("undecodable base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err("undecodable base64: not a whole number of f32".into());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The message and code of an OpenAI-style error body, else the body's
/// beginning; never longer than a log line should be.
pub fn error_of(body: &[u8]) -> (String, Option<String>) {
    let (message, code) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => {
            let code = match error.code {
                Some(serde_json::Value::String(s)) => Some(s),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => error.kind,
            };
            (error.message, code)
        }
        Err(_) => (String::from_utf8_lossy(body).into_owned(), None),
    };
    let mut message: String = message.chars().take(300).collect();
    if message.trim().is_empty() {
        message = "(no message)".into();
    }
    (message, code.filter(|c| !c.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_and_base64_answers_give_the_same_vectors_in_request_order() {
        let v = [0.5f32, -1.25, 3.0];
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        let body = format!(
            r#"{{"data":[{{"index":1,"embedding":"{b64}"}},{{"index":0,"embedding":[1,2,3]}}]}}"#
        );
        let got = vectors(body.as_bytes(), 2, 3).unwrap();
        assert_eq!(got, vec![vec![1.0, 2.0, 3.0], v.to_vec()]);
    }

    #[test]
    fn a_wrong_count_dimension_or_index_is_named() {
        let one = br#"{"data":[{"index":0,"embedding":[1,2]}]}"#;
        assert!(vectors(one, 2, 2).unwrap_err().starts_with("wrong number"));
        assert!(vectors(one, 1, 3)
            .unwrap_err()
            .starts_with("wrong dimension"));
        let twice = br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#;
        assert!(vectors(twice, 2, 1).unwrap_err().starts_with("wrong index"));
        assert!(vectors(b"<html>", 1, 1).unwrap_err().starts_with("not an"));
    }

    #[test]
    fn an_openai_error_body_gives_its_message_and_code() {
        let body = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(
            error_of(body),
            (
                "Incorrect API key provided".to_string(),
                Some("invalid_api_key".to_string())
            )
        );
        assert_eq!(error_of(b"").0, "(no message)");
    }
}
