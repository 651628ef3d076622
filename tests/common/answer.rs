//! An answer as a caller sees it, shared by the stack and e2e tiers.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error.code` of offergate's error shape.
    pub fn code(&self) -> String {
        let v = self.json();
        assert_eq!(v["success"], false, "{v}");
        v["error"]["code"].as_str().unwrap_or_default().to_string()
    }

    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The `x-offergate-fallback` reason, if the answer is a soft fallback.
    pub fn fallback(&self) -> Option<&str> {
        self.headers
            .get("x-offergate-fallback")
            .map(|v| v.to_str().unwrap())
    }

    /// Whether it was replayed or shared (`idempotent-replayed: true`).
    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }
}
