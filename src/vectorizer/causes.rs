//! Each cause of failure once in the log, not once per item or batch: a
//! cause is logged when it first appears, and again only after embedding
//! has worked in between.

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct Causes {
    seen: Mutex<HashSet<String>>,
}

impl Causes {
    /// Whether `cause` is new since the last success (and so to be logged).
    pub fn first(&self, cause: &str) -> bool {
        match self.seen.lock() {
            Ok(mut seen) => seen.insert(cause.to_string()),
            Err(_) => true,
        }
    }

    /// After a success: whether any cause had been logged (then say that it
    /// works again).
    pub fn recovered(&self) -> bool {
        match self.seen.lock() {
            Ok(mut seen) if !seen.is_empty() => {
                seen.clear();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_new_once_until_a_success() {
        let c = Causes::default();
        assert!(c.first("refused: HTTP 401"));
        assert!(!c.first("refused: HTTP 401"));
        assert!(c.first("endpoint unavailable"));
        assert!(c.recovered());
        assert!(!c.recovered());
        assert!(c.first("refused: HTTP 401"));
    }
}
