//! The gate in front of everything: a caller's request becomes a [`ProxyRequest`]
//! only if it passes every local check, in this order (cheapest first, and
//! nothing is read from the body until the target, host and caller are known):
//!
//! 1. request target: a partner route, POST, origin-form (404 / 405 / 400;
//!    the router's, `router.rs`, before admission is asked)
//! 2. at most `server.max_headers` headers (431); `Transfer-Encoding`, if
//!    any, exactly `chunked` (400)
//! 3. `Host`: exactly one, well-formed with a valid port, in
//!    `server.allowed_hosts` if set (400)
//! 4. inbound token, when configured: exactly one, matching (401)
//! 5. Besitos `partner_id` configured (404 `unknown_partner`)
//! 6. `Content-Type` once and JSON (400 / 415), body within the limit and the
//!    read timeout (413 / 408)
//! 7. the route's JSON rules, no key twice in any object (400
//!    `invalid_request` naming the field or key)
//! 8. `Idempotency-Key`: at most one, 1 to 255 visible ASCII characters (400)

use crate::call::spans::SpanParent;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, request::Parts, HeaderValue, Request};
use http_body_util::Limited;
use hyper::body::Body;

use crate::call::error::{CallError, GatewayError, Refusal};
use crate::call::fingerprint;
use crate::call::headers::{self, X_OFFERGATE_TOKEN};
use crate::call::request::{CallInfo, CallTrace, Compose, ProxyRequest};
use crate::call::route::{PerRoute, Route, Target};
use crate::call::thread::thread_id;
use crate::config::{Config, Live, Secrets};
use crate::edge::host;
use crate::partners;
use crate::partners::encore::compose::asked as compose_asked;

/// Which Host names admission accepts.
enum Hosts {
    /// `server.allowed_hosts`, as configured.
    Listed(Vec<String>),
    /// None configured, on a loopback listener: `localhost` and loopback
    /// addresses only, so a web page the user opens cannot reach the proxy
    /// by pointing a name of its own at 127.0.0.1 (DNS rebinding).
    Loopback,
    /// None configured, beyond loopback: any (such a listener needs the
    /// inbound token, which a web page does not have).
    Any,
}

impl Hosts {
    fn of(config: &Config) -> Hosts {
        let configured = &config.server.allowed_hosts;
        if !configured.is_empty() {
            Hosts::Listed(configured.clone())
        } else if config.server.listen.ip().is_loopback() {
            Hosts::Loopback
        } else {
            Hosts::Any
        }
    }

    fn allow(&self, host: &str) -> Result<(), String> {
        match self {
            Hosts::Any => Ok(()),
            Hosts::Listed(names) if names.iter().any(|h| h.eq_ignore_ascii_case(host)) => Ok(()),
            Hosts::Listed(_) => Err(format!(
                "Host `{}` is not one of server.allowed_hosts",
                host.to_ascii_lowercase()
            )),
            Hosts::Loopback => {
                let ip = host.trim_start_matches('[').trim_end_matches(']');
                // The usual names first, by one comparison each.
                let loopback = host == "127.0.0.1"
                    || host.eq_ignore_ascii_case("localhost")
                    || ip
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if loopback {
                    Ok(())
                } else {
                    Err(format!(
                        "Host `{}` is not a loopback name; this listener answers localhost and loopback addresses unless server.allowed_hosts says more",
                        host.to_ascii_lowercase()
                    ))
                }
            }
        }
    }
}

pub struct Admission {
    body_limit: usize,
    body_read_timeout: Duration,
    max_headers: usize,
    hosts: Hosts,
    /// Whether a route's requests need a fingerprint (idempotency is on).
    fingerprints: PerRoute<bool>,
    /// Compose the message for every offer (`[encore.integrator] compose`).
    compose_always: bool,
    /// The inbound token and the Besitos partners, as the last reload left them.
    secrets: Arc<Live<Secrets>>,
    /// KiB of request bodies being read at once, over every connection.
    body_budget: tokio::sync::Semaphore,
    /// Calls shed because the budget was spent.
    over_budget: prometheus::IntCounter,
}

impl Admission {
    pub fn new(
        config: &Config,
        secrets: Arc<Live<Secrets>>,
        over_budget: prometheus::IntCounter,
    ) -> Admission {
        Admission {
            body_budget: tokio::sync::Semaphore::new(
                (config.server.body_budget_bytes / 1024).min(tokio::sync::Semaphore::MAX_PERMITS),
            ),
            over_budget,
            body_limit: config.server.body_limit_bytes,
            body_read_timeout: config.server.body_read_timeout,
            max_headers: config.server.max_headers,
            hosts: Hosts::of(config),
            fingerprints: PerRoute::new(|r| config.resilience(r).idempotency.enabled),
            compose_always: config.encore.integrator.compose,
            secrets,
        }
    }

    /// Admits `req` for `target` (the router's): the checks above, from 2 on.
    pub async fn admit<B>(
        &self,
        req: Request<B>,
        target: Target,
        request_id: HeaderValue,
        span: Option<SpanParent>,
    ) -> Result<ProxyRequest, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let route = target.route();
        self.check_framing(&parts)?;
        self.check_host(&parts)?;
        self.check_token(&parts)?;
        if let Some(id) = target.partner_id() {
            if !self.secrets.get().partners.contains_key(id) {
                return Err(GatewayError::Refused(Refusal::UnknownPartner(
                    id.to_string(),
                )));
            }
        }
        let declared_json = json_content_type(&parts)?;
        let body = self.read_body(&parts, body, self.body_limit).await?;
        // Besitos takes an optional body: no Content-Type is fine when there is none.
        let bodyless_besitos = route == Route::BesitosGoals && body.is_empty();
        if !(declared_json || bodyless_besitos) {
            return Err(GatewayError::Refused(Refusal::UnsupportedMediaType(
                "Content-Type is missing; send application/json".into(),
            )));
        }
        let checked = partners::check_body(&target, &body)?;
        let idempotency_key = idempotency_key(&parts)?;
        // Hashed only where a layer reads them.
        let fingerprint = (*self.fingerprints.get(route))
            .then(|| fingerprint::fingerprint_of(&target, checked.json.as_ref()));
        let thread = match (&checked.client_id, checked.chat_id()) {
            (Some(client), Some(chat)) => Some(thread_id(client, chat)),
            _ => None,
        };
        let compose = (target == Target::Encore
            && (self.compose_always
                || compose_asked(parts.headers.get(&headers::X_OFFERGATE_COMPOSE))))
        .then(|| Compose {
            language: checked.language().map(Arc::from),
        });
        let chat_id_at = checked.chat_id_at(&body);
        let client_id = checked.client_id;
        Ok(ProxyRequest {
            ahead: Default::default(),
            target,
            body,
            deadline: None,
            call: Arc::new(CallInfo {
                request_id,
                headers: parts.headers,
                idempotency_key,
                client_id,
                fingerprint,
                thread,
                chat_id_at,
                compose,
                trace: CallTrace::default(),
                span,
                via: None,
            }),
        })
    }

    /// Admission for offergate's own routes: POST, no query, framing, Host,
    /// token, JSON, and the body within `limit` (the server's when `None`).
    pub async fn admit_own<B>(
        &self,
        req: Request<B>,
        limit: Option<usize>,
    ) -> Result<Bytes, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        if parts.method != http::Method::POST {
            return Err(GatewayError::Refused(Refusal::MethodNotAllowed {
                allow: "POST",
            }));
        }
        if parts.uri.query().is_some_and(|q| !q.is_empty()) {
            return Err(GatewayError::invalid(
                "query",
                "this endpoint takes no query parameters",
            ));
        }
        self.check_framing(&parts)?;
        self.check_host(&parts)?;
        self.check_token(&parts)?;
        if !json_content_type(&parts)? {
            return Err(GatewayError::Refused(Refusal::UnsupportedMediaType(
                "send the body as application/json".into(),
            )));
        }
        self.read_body(&parts, body, limit.unwrap_or(self.body_limit))
            .await
    }

    /// The header count, and a `Transfer-Encoding` a partner could read
    /// differently (`gzip, chunked`, repeated, obfuscated).
    fn check_framing(&self, parts: &Parts) -> Result<(), GatewayError> {
        if parts.headers.len() > self.max_headers {
            return Err(GatewayError::Refused(Refusal::TooManyHeaders {
                limit: self.max_headers,
            }));
        }
        let mut te = parts.headers.get_all(header::TRANSFER_ENCODING).iter();
        match (te.next(), te.next()) {
            (None, _) => Ok(()),
            (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"chunked") => Ok(()),
            _ => Err(GatewayError::invalid(
                "Transfer-Encoding",
                "only a single `chunked` is accepted",
            )),
        }
    }

    fn check_host(&self, parts: &Parts) -> Result<(), GatewayError> {
        let mut hosts = parts.headers.get_all(header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(h), None) => h,
            (None, _) => {
                return Err(GatewayError::Refused(Refusal::InvalidHost(
                    "the Host header is required".into(),
                )))
            }
            (Some(_), Some(_)) => {
                return Err(GatewayError::Refused(Refusal::InvalidHost(
                    "more than one Host header".into(),
                )))
            }
        };
        let host = host::host_of(host.as_bytes()).ok_or_else(|| {
            GatewayError::Refused(Refusal::InvalidHost(
                "the Host header is not a host[:port]".into(),
            ))
        })?;
        self.hosts
            .allow(host)
            .map_err(|e| GatewayError::Refused(Refusal::InvalidHost(e)))
    }

    fn check_token(&self, parts: &Parts) -> Result<(), GatewayError> {
        let secrets = self.secrets.get();
        let Some(token) = &secrets.inbound_token else {
            return Ok(());
        };
        // Exactly one: with two, which one a check and a log read would differ.
        let mut sent = parts.headers.get_all(&X_OFFERGATE_TOKEN).iter();
        match (sent.next(), sent.next()) {
            (Some(v), None) if token.matches(v.as_bytes()) => Ok(()),
            _ => Err(GatewayError::Refused(Refusal::Unauthorized)),
        }
    }

    async fn read_body<B>(
        &self,
        parts: &Parts,
        body: B,
        limit: usize,
    ) -> Result<Bytes, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let too_large = GatewayError::Refused(Refusal::PayloadTooLarge { limit });
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large);
        }
        // What this body may hold while it is read, out of the budget every
        // connection shares: slow bodies cannot take memory past it.
        let may_hold = declared.map_or(limit, |n| n as usize);
        let kib = u32::try_from(may_hold.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let Ok(_reading) = self.body_budget.try_acquire_many(kib) else {
            self.over_budget.inc();
            return Err(GatewayError::Call(CallError::Overloaded));
        };
        let read = crate::call::body::read_whole(Limited::new(body, limit));
        // tokio polls the read first and starts the timer only if the body is
        // not there yet (a small body usually came in with the headers).
        match tokio::time::timeout(self.body_read_timeout, read).await {
            Err(_) => Err(GatewayError::Refused(Refusal::BodyTimeout)),
            Ok(Ok(whole)) => Ok(whole),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(too_large)
            }
            Ok(Err(e)) => Err(GatewayError::invalid(
                "body",
                format!("could not be read: {e}"),
            )),
        }
    }
}

/// The caller's `Idempotency-Key`, if it sent a well-formed one.
fn idempotency_key(parts: &Parts) -> Result<Option<Arc<str>>, GatewayError> {
    let mut values = parts.headers.get_all(&headers::IDEMPOTENCY_KEY).iter();
    let v = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(v), None) => v,
        (Some(_), Some(_)) => {
            return Err(GatewayError::invalid(
                "Idempotency-Key",
                "send the header once",
            ))
        }
    };
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 255 || !b.iter().all(|c| (0x21..=0x7e).contains(c)) {
        return Err(GatewayError::invalid(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters (no spaces), e.g. a UUID",
        ));
    }
    Ok(Some(String::from_utf8_lossy(b).into()))
}

/// Whether the request declares a JSON body, once, in UTF-8 (the only
/// encoding offergate validates and a partner is sent): `false` when it
/// declares none; a refusal for two, another type, or another charset.
fn json_content_type(parts: &Parts) -> Result<bool, GatewayError> {
    let mut content_types = parts.headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = content_types.next();
    if content_types.next().is_some() {
        return Err(GatewayError::invalid(
            "Content-Type",
            "send the header once",
        ));
    }
    let Some(ct) = content_type else {
        return Ok(false);
    };
    let shown = || ct.to_str().unwrap_or("<non-ASCII>").to_string();
    if !headers::is_json_content_type(ct) {
        return Err(GatewayError::Refused(Refusal::UnsupportedMediaType(
            format!(
                "Content-Type `{}` is not JSON; send application/json",
                shown()
            ),
        )));
    }
    if !headers::utf8_charset(ct) {
        return Err(GatewayError::Refused(Refusal::UnsupportedMediaType(
            format!(
                "Content-Type `{}` names a charset other than UTF-8; send the body as UTF-8",
                shown()
            ),
        )));
    }
    Ok(true)
}
