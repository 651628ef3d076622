//! One small parser per kind of value in the config file. Each returns the
//! typed value or a message saying what is wrong and what would be right;
//! [`Problems`] collects those messages with their keys, so a file with five
//! mistakes gets five lines, not one at a time.

use crate::call::problem::Problem;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::Authority;

use super::OnLimit;

/// Collects problems instead of stopping at the first.
#[derive(Default)]
pub(super) struct Problems(pub Vec<String>);

impl Problems {
    /// The value, or `None` with the problem recorded under `key`.
    pub fn check<T>(&mut self, key: &str, r: Result<T, Problem>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(format!("{key}: {e}"));
                None
            }
        }
    }

    /// The value, or `None` with the problem recorded as it is (it names
    /// its own key, as a secret's does).
    pub fn keep<T>(&mut self, r: Result<T, Problem>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e.to_string());
                None
            }
        }
    }

    pub fn push(&mut self, msg: String) {
        self.0.push(msg);
    }
}

/// `IP:port`.
pub(super) fn socket(s: &str) -> Result<SocketAddr, Problem> {
    s.parse().map_err(|_| {
        Problem(format!(
            "`{s}` is not an IP:port address (e.g. 127.0.0.1:8787)"
        ))
    })
}

/// Milliseconds within `min..=max`.
pub(super) fn millis(v: u64, min: u64, max: u64) -> Result<Duration, Problem> {
    if v < min || v > max {
        return Err(format!("{v} is outside {min}..={max} ms").into());
    }
    Ok(Duration::from_millis(v))
}

/// A count or size within `min..=max`.
pub(super) fn bounded(v: u64, min: u64, max: u64) -> Result<usize, Problem> {
    if v < min || v > max {
        return Err(format!("{v} is outside {min}..={max}").into());
    }
    usize::try_from(v).map_err(|_| Problem(format!("{v} is too large for this machine")))
}

/// A token bucket's refill rate per second (fractions allowed).
pub(super) fn per_second(v: f64) -> Result<f64, Problem> {
    if !(v.is_finite() && v > 0.0 && v <= 1_000_000.0) {
        return Err(format!(
            "{v} must be a rate above 0 (fractions allowed, e.g. 0.5) and at most 1000000"
        )
        .into());
    }
    Ok(v)
}

/// A bare host name (no port, no scheme), lower-cased.
pub(super) fn host_name(s: &str) -> Result<String, Problem> {
    let h = s.trim().to_ascii_lowercase();
    let bare = !h.is_empty()
        && Authority::try_from(h.as_str())
            .map(|a| a.as_str() == a.host())
            .unwrap_or(false);
    if !bare {
        return Err(format!("`{h}` is not a bare host name (no port, no scheme)").into());
    }
    Ok(h)
}

/// A log level or filter directive. A bare word must be a level: the filter
/// syntax would read `warning` as a target name and silence everything else.
pub fn log_filter(s: &str) -> Result<String, Problem> {
    let level = s.trim().to_string();
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for part in level.split(',').map(str::trim) {
        let bare = !part.contains(['=', '[', ':']);
        if bare && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(part)) {
            return Err(format!(
                "`{part}` is not a level; use one of trace, debug, info, warn, error, off \
                 (or target=level, e.g. offergate=debug)"
            )
            .into());
        }
    }
    tracing_subscriber::EnvFilter::try_new(&level)
        .map(|_| level.clone())
        .map_err(|_| {
            Problem(format!(
                "`{level}` is not a level or filter (e.g. info, debug, offergate=debug)"
            ))
        })
}

/// One word of a closed set (`log.format`, `on_limit`, `state.backend`, ...).
pub(super) fn choice<T: Copy>(s: &str, options: &[(&str, T)]) -> Result<T, Problem> {
    match options.iter().find(|(word, _)| *word == s) {
        Some((_, value)) => Ok(*value),
        None => {
            let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
            Err(format!("`{s}` is not {}", words.join(" or ")).into())
        }
    }
}

/// What to answer when a limit trips.
pub(super) fn on_limit(s: &str) -> Result<OnLimit, Problem> {
    choice(
        s,
        &[("fallback", OnLimit::Fallback), ("reject", OnLimit::Reject)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets() {
        assert_eq!(socket("127.0.0.1:8787").unwrap().port(), 8787);
        assert!(socket("[::1]:1").is_ok());
        for bad in ["localhost:1", "127.0.0.1", ":80", ""] {
            assert!(socket(bad).unwrap_err().contains("IP:port"), "{bad}");
        }
    }

    #[test]
    fn ranges_include_both_ends() {
        assert_eq!(millis(10, 10, 20), Ok(Duration::from_millis(10)));
        assert_eq!(millis(20, 10, 20), Ok(Duration::from_millis(20)));
        assert_eq!(millis(21, 10, 20).unwrap_err(), "21 is outside 10..=20 ms");
        assert_eq!(bounded(0, 1, 5).unwrap_err(), "0 is outside 1..=5");
        assert_eq!(bounded(5, 1, 5), Ok(5));
    }

    #[test]
    fn rates() {
        assert_eq!(per_second(0.5), Ok(0.5));
        assert_eq!(per_second(1_000_000.0), Ok(1_000_000.0));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            assert!(per_second(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name(" Example.COM ").unwrap(), "example.com");
        for bad in ["", "a:80", "http://a", "a/b", "u@a"] {
            assert!(host_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn levels_and_choices() {
        assert_eq!(log_filter(" info ").unwrap(), "info");
        assert!(log_filter("offergate=debug,info").is_ok());
        assert!(log_filter("offergate=loudest").is_err());
        for bad in ["warning", "info,verbose", "INFOS"] {
            assert!(
                log_filter(bad).unwrap_err().contains("is not a level"),
                "{bad}"
            );
        }
        assert!(log_filter("WARN").is_ok());
        assert_eq!(on_limit("reject"), Ok(OnLimit::Reject));
        assert_eq!(
            on_limit("drop").unwrap_err(),
            "`drop` is not fallback or reject"
        );
    }
}
