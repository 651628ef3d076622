//! The partner-facing end of the stack: a pooled keep-alive HTTP/1.1 client per
//! partner (rustls for https, plain http for local tests), the outgoing request
//! with the partner's credential, and the [`Upstream`] service that makes one
//! call and classifies what came back.
//!
//! One call here is one try: retries, deadlines and fallbacks are layers above it.

mod credentials;
mod metrics;
pub mod pool;
mod refusals;
pub mod tls;

use crate::call::problem::Problem;
use std::sync::Arc;

use crate::call::clock;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;

use crate::call::error::{CallError, Cause, GatewayError, Refusal, UpstreamFailure};
use crate::call::headers::{self, X_REQUEST_ID};
use crate::call::meaning::{partner_answer, OfferResult};
use crate::call::request::{OfferServed, Outcome};
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::{PerRoute, Route, Target};
use crate::config::{BaseUrl, Config, Live, Secrets};
use crate::metrics::Metrics;
use crate::partners;
use crate::upstream::pool::PartnerClient;
use credentials::LiveCredentials;
use metrics::UpstreamMetrics;

/// The innermost service: one call to the partner of the request's route.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<UpstreamInner>,
}

struct UpstreamInner {
    /// A pool per partner.
    clients: PerRoute<PartnerClient>,
    /// A route's endpoint where its path never changes (Encore's), parsed
    /// once (cloning a `Uri` shares its bytes).
    fixed_uris: PerRoute<Option<Uri>>,
    credentials: LiveCredentials,
    public_base_url: BaseUrl,
    /// Where an offer's link must point (`[encore] offer_link_host`).
    link_host: String,
    user_agent: HeaderValue,
    metrics: UpstreamMetrics,
    /// Credentials the partner refuses now, logged once per change.
    refusals: refusals::Refusals,
}

impl Upstream {
    pub fn new(
        config: &Config,
        public_base_url: BaseUrl,
        metrics: &Metrics,
        secrets: Arc<Live<Secrets>>,
    ) -> Result<Upstream, Problem> {
        let tls = tls::tls_config(&config.tls.extra_ca_files)?;
        let clients = PerRoute::try_new(|route| {
            PartnerClient::new(config.upstream(route), tls.clone())
                .map_err(|e| Problem(format!("{}.{e}", route.partner())))
        })?;
        let fixed_uris = PerRoute::try_new(|route| match partners::fixed_path(route) {
            Some(path) => {
                let url = clients.get(route).base_url().join(path);
                url.parse().map(Some).map_err(|e| {
                    Problem(format!(
                        "{}.base_url: cannot build the partner URL: {e}",
                        route.partner()
                    ))
                })
            }
            None => Ok(None),
        })?;
        Ok(Upstream {
            inner: Arc::new(UpstreamInner {
                clients,
                fixed_uris,
                credentials: LiveCredentials::new(secrets)?,
                public_base_url,
                link_host: config.encore.offer_link_host.clone(),
                user_agent: HeaderValue::from_static(concat!(
                    "offergate/",
                    env!("CARGO_PKG_VERSION")
                )),
                metrics: UpstreamMetrics::register(metrics)?,
                refusals: Default::default(),
            }),
        })
    }
}

impl UpstreamInner {
    fn client(&self, route: Route) -> &PartnerClient {
        self.clients.get(route)
    }

    /// The partner request: the caller's forwardable headers, the credential
    /// chosen by route (and `partner_id`), the request id, the body as
    /// received but for Encore's `chatId`, which is sent as its pseudonym
    /// where one is configured (a body whose `chatId` cannot be replaced is
    /// not sent at all).
    fn build_request(&self, req: &ProxyRequest) -> Result<Request<Full<Bytes>>, GatewayError> {
        let route = req.target.route();
        let uri = match self.fixed_uris.get(route) {
            Some(uri) => uri.clone(),
            None => {
                let path = partners::path_and_query(&req.target);
                self.client(route)
                    .base_url()
                    .join(&path)
                    .parse()
                    .map_err(|e| {
                        GatewayError::Call(CallError::Upstream(UpstreamFailure::Connect(
                            Cause::from(format!("cannot build the partner URL: {e}")),
                        )))
                    })?
            }
        };
        let credentials = self.credentials.current();
        let body = match (&req.target, &credentials.chat_id_key) {
            (Target::Encore, Some(key)) => key
                .apply(&req.body, req.call.chat_id_at.clone())
                .map(Bytes::from)
                .ok_or_else(|| {
                    GatewayError::Call(CallError::Internal(
                        "the chatId could not be replaced by its pseudonym".into(),
                    ))
                })?,
            _ => req.body.clone(),
        };
        let length = headers::content_length(body.len());
        let mut out = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| {
                GatewayError::Call(CallError::Upstream(UpstreamFailure::Connect(Cause::from(
                    format!("cannot build the partner URL: {e}"),
                ))))
            })?;
        let h = out.headers_mut();
        *h = headers::to_partner(&req.call.headers);
        h.insert(X_REQUEST_ID.clone(), req.call.request_id.clone());
        if !h.contains_key(header::CONTENT_TYPE) && !req.body.is_empty() {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        h.insert(header::CONTENT_LENGTH, length);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(header::USER_AGENT, self.user_agent.clone());
        match credentials.of_target(&req.target) {
            (name, Some(value)) => {
                h.insert(name.clone(), value.clone());
            }
            (_, None) => {
                let id = req.target.partner_id().unwrap_or("").to_string();
                return Err(GatewayError::Refused(Refusal::UnknownPartner(id)));
            }
        }
        Ok(out)
    }

    async fn call(&self, req: ProxyRequest) -> Result<ProxyResponse, GatewayError> {
        let route = req.route();
        let client = self.client(route);
        let deadline = req.deadline;
        let call = req.call.clone();
        let trace = &call.trace;
        let mut outgoing = self.build_request(&req)?;
        // Traced: this try's span, named to the partner in its traceparent.
        let try_span = call.span.as_ref().map(|parent| {
            let uri = outgoing.uri().clone();
            parent.start_try(&uri, trace.tries() + 1, outgoing.headers_mut())
        });
        // The try gets its timeout, or what is left of the call's deadline if less.
        let started = clock::now();
        let left = deadline.map(|d| d.saturating_duration_since(started));
        let (timeout, cut_by_deadline) = match left {
            Some(left) if left < client.config().try_timeout => (left, true),
            _ => (client.config().try_timeout, false),
        };
        if timeout.is_zero() {
            return Err(GatewayError::Call(CallError::DeadlineExceeded));
        }
        let result = client.send(outgoing, started, timeout).await;
        let elapsed = started.elapsed().as_secs_f64();
        let (parts, body) = match result {
            Ok(ok) => ok,
            Err(failure) => {
                trace.tried(0);
                let timed_out = failure == UpstreamFailure::Timeout;
                let label = if timed_out { "timeout" } else { "error" };
                if let Some(span) = try_span {
                    span.end(Err(label.into()));
                }
                self.metrics.upstream_call(route, label, elapsed);
                return Err(if timed_out && cut_by_deadline {
                    GatewayError::Call(CallError::DeadlineExceeded)
                } else {
                    GatewayError::Call(CallError::Upstream(failure))
                });
            }
        };
        trace.tried(parts.status.as_u16());
        if let Some(span) = try_span {
            span.end(Ok(parts.status.as_u16()));
        }
        self.refusals.saw(&req.target, parts.status);
        self.metrics
            .upstream_call(route, parts.status.as_str(), elapsed);
        headers::check_partner_headers(&parts.headers).map_err(|e| {
            GatewayError::Call(CallError::Upstream(UpstreamFailure::InvalidBody(e)))
        })?;
        let mut served = None;
        let mut composed = None;
        let body = if parts.status == StatusCode::OK {
            // Read once: checked, counted, and composed when asked.
            let reading = partners::Reading {
                link_host: &self.link_host,
                compose: call.compose.as_ref(),
                public: &self.public_base_url,
                partner_prefix: &client.base_url().path_prefix,
            };
            let read = partners::read_ok(route, body, &reading).map_err(|e| {
                GatewayError::Call(CallError::Upstream(UpstreamFailure::InvalidBody(e)))
            })?;
            if let Some(link) = read.offer {
                self.metrics.offer(if link.is_some() {
                    OfferResult::Offer
                } else {
                    OfferResult::NoOffer
                });
                served = link;
            }
            composed = read.composed;
            read.body
        } else {
            body
        };
        let mut headers = parts.headers;
        headers::to_caller(&mut headers, parts.status);
        let answer = ProxyResponse {
            status: parts.status,
            headers,
            body,
            outcome: Outcome::Forwarded,
            offer: served.map(|link| OfferServed { link }),
            composed: composed.map(Box::new),
            keep_slot: None,
        };
        partner_answer(answer)
    }
}

impl crate::call::service::ProxyService for Upstream {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl std::future::Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        // Not boxed: the layers nest in one future, which the edge boxes; a
        // box here saved no instructions and cost an allocation per try
        // (docs/architecture.md).
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::request::CallInfo;
    use crate::call::route::Target;
    use crate::config::MapEnv;
    use crate::partners::encore;
    use http::HeaderMap;

    fn upstream() -> Upstream {
        let toml = r#"
[encore]
base_url = "http://127.0.0.1:9/enc"
api_key_env = "KEY"
chat_id = "as_sent"
[besitos]
base_url = "http://127.0.0.1:9"
[[besitos.partners]]
id = "p1"
token_env = "T1"
[[besitos.partners]]
id = "p2"
token_env = "T2"
"#;
        let env = MapEnv::from([
            ("KEY", "pk_test_injected"),
            ("T1", "tok-1"),
            ("T2", "tok-2"),
        ]);
        let config = Config::from_toml(toml, &env).unwrap();
        let public = BaseUrl::parse("http://127.0.0.1:8787").unwrap();
        Upstream::new(
            &config,
            public,
            &Metrics::new(),
            Arc::new(Live::new(Secrets::of(&config))),
        )
        .unwrap()
    }

    fn request(route: Route, partner: Option<&str>, caller: &[(&str, &str)]) -> ProxyRequest {
        let mut headers = HeaderMap::new();
        for (k, v) in caller {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        ProxyRequest {
            ahead: Default::default(),
            target: match (route, partner) {
                (Route::BesitosGoals, Some(id)) => Target::Besitos {
                    partner_id: id.to_string(),
                    page: Some(2),
                },
                _ => Target::Encore,
            },
            body: Bytes::from_static(b"{}"),
            deadline: None,
            call: Arc::new(CallInfo::new(HeaderValue::from_static("req-1"), headers)),
        }
    }

    #[test]
    fn the_partner_credential_replaces_the_callers() {
        let up = upstream();
        let caller = [
            ("x-api-key", "pk_live_callers_own"),
            ("authorization", "Bearer callers"),
            ("x-request-id", "spoofed"),
        ];
        let out = up
            .inner
            .build_request(&request(Route::EncoreOffers, None, &caller))
            .unwrap();
        assert_eq!(
            out.uri(),
            "http://127.0.0.1:9/enc/encore/publisher/sdk/v1/offers/message"
        );
        let h = out.headers();
        assert_eq!(
            h.get_all(&encore::API_KEY_HEADER)
                .iter()
                .collect::<Vec<_>>(),
            ["pk_test_injected"]
        );
        assert!(
            h.get(&encore::API_KEY_HEADER).unwrap().is_sensitive(),
            "kept out of debug output"
        );
        assert!(h.get(header::AUTHORIZATION).is_none());
        assert_eq!(h.get(&X_REQUEST_ID).unwrap(), "req-1");
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), "application/json");
    }

    #[test]
    fn besitos_gets_the_token_of_its_partner_id() {
        let up = upstream();
        for (id, token) in [("p1", "Bearer tok-1"), ("p2", "Bearer tok-2")] {
            let out = up
                .inner
                .build_request(&request(
                    Route::BesitosGoals,
                    Some(id),
                    &[("x-api-key", "x")],
                ))
                .unwrap();
            assert_eq!(
                out.uri().to_string(),
                format!("http://127.0.0.1:9/data/messages/{id}/upcoming-goals?page=2")
            );
            assert_eq!(out.headers().get(header::AUTHORIZATION).unwrap(), token);
            assert!(out.headers().get(&encore::API_KEY_HEADER).is_none());
        }
        let unknown = up
            .inner
            .build_request(&request(Route::BesitosGoals, Some("p3"), &[]));
        assert!(matches!(
            unknown,
            Err(GatewayError::Refused(Refusal::UnknownPartner(_)))
        ));
    }
}
