//! Route selection for MESSAGE events: `$request.body.action`, as API Gateway evaluates it (§2.1).
//!
//! Bellhop deploys `$default` (the message function) and `ping` (the heartbeat, a MOCK integration answered by the
//! gateway itself); the selection is evaluated faithfully so a frame lands on the route AWS would pick and the
//! `routeKey` in the event is what AWS would put there. Pure; no I/O.

use serde_json::Value;

/// The route key API Gateway falls back to.
pub(crate) const DEFAULT_ROUTE: &str = "$default";

/// Evaluates `$request.body.action` over `body` and picks the matching key from `routes`, or `$default`.
///
/// The expression result is stringified (AWS turns `{"action": 1}` into the key `"1"`); non-JSON text, a missing
/// action and an unmatched key all select `$default`. Matching is exact and case-sensitive.
pub(crate) fn select_route<'a>(body: &str, routes: &[&'a str]) -> &'a str {
    let selected = serde_json::from_str::<Value>(body).ok().and_then(|value| match value.get("action") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(stringify(other)),
    });
    selected.and_then(|key| routes.iter().copied().find(|route| *route == key)).unwrap_or(DEFAULT_ROUTE)
}

/// AWS's stringification of a JSONPath result: scalars as text, arrays as `[a, b]`.
fn stringify(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(stringify).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, routes: &[&'static str], expected: &str) {
        assert_eq!(select_route(body, routes), expected, "body {body}");
    }

    #[test]
    fn a_matching_action_selects_its_route() {
        check(r#"{"action":"echo"}"#, &["echo", "$default"], "echo");
    }

    #[test]
    fn unmatched_missing_and_non_json_select_default() {
        check(r#"{"action":"unknown"}"#, &["echo", "$default"], "$default");
        check(r#"{"marker":"x"}"#, &["echo", "$default"], "$default");
        check("plain|text", &["echo", "$default"], "$default");
        check(r#"{"action":null}"#, &["echo", "$default"], "$default");
    }

    #[test]
    fn an_explicit_default_action_selects_default() {
        check(r#"{"action":"$default"}"#, &["$default"], "$default");
    }

    #[test]
    fn a_number_action_is_stringified_before_matching() {
        check(r#"{"action":1}"#, &["1", "$default"], "1");
        check(r#"{"action":[1,"a"]}"#, &["[1, a]", "$default"], "[1, a]");
    }

    #[test]
    fn matching_is_case_sensitive() {
        check(r#"{"action":"Echo"}"#, &["echo", "$default"], "$default");
    }

    #[test]
    fn bellhop_routes_ping_to_its_own_route_and_everything_else_to_default() {
        let routes = [DEFAULT_ROUTE, "ping"];
        check(r#"{"action":"hello","id":"1"}"#, &routes, "$default");
        check(r#"{"action":"ping"}"#, &routes, "ping");
        check(r#"{"action":"ping","id":"p1","data":{"x":1}}"#, &routes, "ping");
        check(r#"{"action":"Ping"}"#, &routes, "$default");
    }
}
