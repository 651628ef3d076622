//! [`Problem`]: a value offergate cannot use (a setting, a file, a secret,
//! a partner's answer), in words that say what to fix. Carried up, counted
//! and printed; never matched on, so one type serves every such check.

/// What is wrong with a value, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{0}")]
#[serde(transparent)]
pub struct Problem(pub String);

impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem(message)
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Problem {
        Problem(message.to_string())
    }
}

/// Read as the words it holds.
impl std::ops::Deref for Problem {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Problem {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}
