//! The simulator's control endpoints under `/__sim/`: call counts, fault plans,
//! reset, and the last request received (see the module docs of `simulator`).

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::faults::Fault;
use super::{json_response, SimBody, SimState};
use crate::call::route::Route;

pub(super) fn answer(
    state: &SimState,
    method: &Method,
    what: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response<SimBody> {
    let bad =
        |msg: String| json_response(StatusCode::BAD_REQUEST, json!({"error": msg}).to_string());
    match (method, what) {
        (&Method::GET, "calls") => {
            let mut m = serde_json::Map::new();
            for r in Route::ALL {
                m.insert(r.as_str().into(), state.calls(r).into());
            }
            json_response(StatusCode::OK, Value::Object(m).to_string())
        }
        (&Method::POST, "reset") => {
            state.reset();
            json_response(StatusCode::OK, r#"{"reset":true}"#)
        }
        (&Method::POST, "faults") => {
            let v: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return bad(format!("body is not JSON: {e}")),
            };
            let Some(route) = v
                .get("route")
                .and_then(Value::as_str)
                .and_then(Route::parse)
            else {
                return bad("route must be encore_offers or besitos_goals".into());
            };
            let Some(items) = v.get("plan").and_then(Value::as_array) else {
                return bad("plan must be an array of strings".into());
            };
            let mut plan = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(Fault::parse) {
                    Some(Ok(f)) => plan.push(f),
                    Some(Err(e)) => return bad(format!("plan[{i}]: {e}")),
                    None => return bad(format!("plan[{i}] must be a string")),
                }
            }
            let n = plan.len();
            state.set_plan(route, plan);
            json_response(
                StatusCode::OK,
                json!({"route": route.as_str(), "queued": n}).to_string(),
            )
        }
        (&Method::GET, "last") => {
            let route = query
                .and_then(|q| q.strip_prefix("route="))
                .and_then(Route::parse);
            let Some(route) = route else {
                return bad("query route=encore_offers or route=besitos_goals is required".into());
            };
            match state.last(route) {
                None => json_response(
                    StatusCode::NOT_FOUND,
                    r#"{"error":"no request received yet"}"#,
                ),
                Some(r) => {
                    let mut headers = serde_json::Map::new();
                    for name in r.headers.keys() {
                        let values: Vec<Value> = r
                            .headers
                            .get_all(name)
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into())
                            .collect();
                        headers.insert(name.as_str().into(), Value::Array(values));
                    }
                    let body = json!({
                        "method": r.method.as_str(),
                        "path": r.path_and_query,
                        "headers": headers,
                        "body": String::from_utf8_lossy(&r.body),
                        "answered": String::from_utf8_lossy(&r.answered),
                    });
                    json_response(StatusCode::OK, body.to_string())
                }
            }
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            r#"{"error":"control endpoints: GET /__sim/calls, POST /__sim/faults, POST /__sim/reset, GET /__sim/last?route=R"}"#,
        ),
    }
}
