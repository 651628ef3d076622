//! A call's spans, when traces are on (`[tracing] otlp_endpoint`): one span
//! per call, its parent the caller's `traceparent`, and a child per partner
//! try whose own id travels to the partner as the try's `traceparent`. The
//! attributes follow OpenTelemetry's HTTP conventions (`http.request.method`,
//! `url.path`, `http.response.status_code`, `server.address`, ...) and add
//! offergate's own (`offergate.route`, `offergate.fallback_reason`,
//! `offergate.idempotency`, `offergate.tries`).
//!
//! A call that is not sampled records nothing and changes nothing: the
//! caller's trace context goes to the partner as it came. Exporting is the
//! app's (`app/traces.rs`), in the background.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue, Method, Uri};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};

use crate::call::headers::{valid_traceparent, TRACEPARENT, TRACESTATE};

/// What makes spans: a tracer of the gateway's provider. A clone is a
/// reference count.
#[derive(Clone, Debug)]
pub struct Tracing {
    tracer: SdkTracer,
}

impl Tracing {
    pub fn new(tracer: SdkTracer) -> Tracing {
        Tracing { tracer }
    }

    /// The span of a call received with `headers`, child of the caller's
    /// trace when it sent a valid `traceparent` (and follows its sampling).
    pub fn start_call(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        host: Option<&str>,
    ) -> CallSpan {
        let parent = caller_context(headers);
        // Named and started bare: a call the sampler drops costs no
        // attribute (each a string) at all.
        let mut span = self
            .tracer
            .span_builder(method_name(method))
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        if span.is_recording() {
            let mut attributes = vec![
                KeyValue::new("http.request.method", method_name(method)),
                KeyValue::new("url.path", path.chars().take(200).collect::<String>()),
                KeyValue::new("url.scheme", "http"),
            ];
            if let Some(host) = host {
                let (name, port) = split_host(host);
                attributes.push(KeyValue::new("server.address", name.to_string()));
                if let Some(port) = port {
                    attributes.push(KeyValue::new("server.port", i64::from(port)));
                }
            }
            if let Some(agent) = headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
            {
                attributes.push(KeyValue::new(
                    "user_agent.original",
                    agent.chars().take(200).collect::<String>(),
                ));
            }
            span.set_attributes(attributes);
        }
        CallSpan {
            span,
            method: method.clone(),
            tracer: self.tracer.clone(),
        }
    }
}

/// The caller's trace context, when its one `traceparent` is valid.
fn caller_context(headers: &HeaderMap) -> Context {
    let mut parents = headers.get_all(&TRACEPARENT).iter();
    let (Some(parent), None) = (parents.next(), parents.next()) else {
        return Context::new();
    };
    let bytes = parent.as_bytes();
    if !valid_traceparent(bytes) {
        return Context::new();
    }
    let text = String::from_utf8_lossy(bytes);
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        opentelemetry::trace::TraceId::from_hex(&text[3..35]),
        opentelemetry::trace::SpanId::from_hex(&text[36..52]),
        u8::from_str_radix(&text[53..55], 16),
    ) else {
        return Context::new();
    };
    let state = headers
        .get_all(&TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let state = state.parse::<TraceState>().unwrap_or_default();
    let context = SpanContext::new(
        trace_id,
        span_id,
        opentelemetry::trace::TraceFlags::new(flags & 1),
        true,
        state,
    );
    Context::new().with_remote_span_context(context)
}

/// A method's name without an allocation for the ones offergate serves.
fn method_name(method: &Method) -> Cow<'static, str> {
    match *method {
        Method::POST => Cow::Borrowed("POST"),
        Method::GET => Cow::Borrowed("GET"),
        Method::PUT => Cow::Borrowed("PUT"),
        Method::HEAD => Cow::Borrowed("HEAD"),
        _ => Cow::Owned(method.as_str().to_string()),
    }
}

/// `host[:port]` apart.
fn split_host(host: &str) -> (&str, Option<u16>) {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && !port.contains(']') => {
            (name.trim_matches(['[', ']']), port.parse().ok())
        }
        _ => (host.trim_matches(['[', ']']), None),
    }
}

/// A call's span, held by the edge until the call is answered.
pub struct CallSpan {
    span: Span,
    method: Method,
    tracer: SdkTracer,
}

/// How a call ended, for its span.
pub struct Ended<'a> {
    pub status: u16,
    pub outcome: &'static str,
    pub fallback: Option<&'a str>,
    /// `replayed`, `coalesced`, or `new` for a first call with a key.
    pub idempotency: Option<&'static str>,
    pub tries: u32,
}

impl CallSpan {
    /// What the partner tries hang under; `None` when this call is not
    /// sampled (its tries then record nothing).
    pub fn parent(&self) -> Option<SpanParent> {
        let context = self.span.span_context();
        context.is_sampled().then(|| SpanParent {
            tracer: self.tracer.clone(),
            context: context.clone(),
        })
    }

    /// The route is known: the span is named for it (`POST encore_offers`).
    pub fn routed(&mut self, route: &'static str) {
        if self.span.is_recording() {
            self.span
                .update_name(format!("{} {route}", self.method.as_str()));
            self.span
                .set_attribute(KeyValue::new("offergate.route", route));
        }
    }

    pub fn end(mut self, e: Ended<'_>) {
        if !self.span.is_recording() {
            return;
        }
        let mut attributes = vec![
            KeyValue::new("http.response.status_code", i64::from(e.status)),
            KeyValue::new("offergate.outcome", e.outcome),
            KeyValue::new("offergate.tries", i64::from(e.tries)),
        ];
        if let Some(reason) = e.fallback {
            attributes.push(KeyValue::new(
                "offergate.fallback_reason",
                reason.to_string(),
            ));
        }
        if let Some(idempotency) = e.idempotency {
            attributes.push(KeyValue::new("offergate.idempotency", idempotency));
        }
        self.span.set_attributes(attributes);
        // Server spans: a 5xx is the server's error, a 4xx the caller's.
        if e.status >= 500 {
            self.span
                .set_attribute(KeyValue::new("error.type", e.status.to_string()));
            self.span.set_status(Status::error(""));
        }
        self.span.end();
    }
}

/// A sampled call's span, as its tries need it: shared by every try.
#[derive(Clone, Debug)]
pub struct SpanParent {
    tracer: SdkTracer,
    context: SpanContext,
}

impl SpanParent {
    /// A try's span, child of the call's; `headers` (the partner request's)
    /// get its `traceparent`, so the partner's own spans hang under the try.
    pub fn start_try(&self, uri: &Uri, attempt: u32, headers: &mut HeaderMap) -> TrySpan {
        let parent = Context::new().with_remote_span_context(self.context.clone());
        let mut attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.full", uri.to_string()),
        ];
        if let Some(host) = uri.host() {
            attributes.push(KeyValue::new("server.address", host.to_string()));
        }
        if let Some(port) = uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        }) {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if attempt > 1 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(attempt - 1),
            ));
        }
        let span = self
            .tracer
            .span_builder("POST")
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        let own = span.span_context();
        let value = format!(
            "00-{}-{}-{:02x}",
            own.trace_id(),
            own.span_id(),
            own.trace_flags().to_u8()
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(TRACEPARENT.clone(), value);
        }
        TrySpan { span }
    }
}

/// One partner try's span.
pub struct TrySpan {
    span: Span,
}

impl TrySpan {
    /// The partner's status, or why there was none (`timeout`, `error`).
    pub fn end(mut self, status: Result<u16, Cow<'static, str>>) {
        match status {
            Ok(code) => {
                self.span
                    .set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 400 {
                    self.span
                        .set_attribute(KeyValue::new("error.type", code.to_string()));
                    self.span.set_status(Status::error(""));
                }
            }
            Err(why) => {
                self.span.set_attribute(KeyValue::new("error.type", why));
                self.span.set_status(Status::error(""));
            }
        }
        self.span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(split_host("localhost:8787"), ("localhost", Some(8787)));
        assert_eq!(split_host("offergate"), ("offergate", None));
        assert_eq!(split_host("[::1]:9"), ("::1", Some(9)));
        assert_eq!(split_host("[::1]"), ("::1", None));
    }

    #[test]
    fn a_valid_traceparent_is_the_parent_and_anything_else_is_not() {
        let mut h = HeaderMap::new();
        h.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        h.insert(&TRACESTATE, HeaderValue::from_static("vendor=x"));
        let cx = caller_context(&h);
        let parent = cx.span().span_context().clone();
        assert_eq!(
            parent.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(parent.span_id().to_string(), "b7ad6b7169203331");
        assert!(parent.is_sampled() && parent.is_remote());
        assert_eq!(parent.trace_state().get("vendor"), Some("x"));
        h.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-zz-b7ad6b7169203331-01"),
        );
        assert!(!caller_context(&h).span().span_context().is_valid());
    }
}
