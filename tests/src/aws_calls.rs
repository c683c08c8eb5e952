//! A recording proxy in front of a local AWS endpoint (DynamoDB Local, the SQS emulator, the harness's
//! `@connections`): it forwards every request unchanged and records which IAM action on which resource the request
//! needs, and which function made it. The function is told apart by its role session: each function runs with its
//! own `AWS_SESSION_TOKEN` ([`crate::sam_env::session_token`]), which the SDK sends as `X-Amz-Security-Token`.
//!
//! Together with the policies `template.yaml` grants ([`crate::sam_env::FunctionSpec::policy`]) this shows a
//! missing permission offline: every recorded call must be allowed by its function's statements.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::sam_env::{ACCOUNT_ID, REGION};

/// The largest request the proxy forwards (DynamoDB's own limit is 16 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What the proxy stands in front of, which decides how a request maps to IAM actions and resources.
#[derive(Debug, Clone)]
pub enum Service {
    /// The DynamoDB JSON protocol (`X-Amz-Target: DynamoDB_20120810.{Operation}`).
    DynamoDb,
    /// The SQS JSON protocol (`X-Amz-Target: AmazonSQS.{Operation}`); the queue is the last part of `QueueUrl`.
    Sqs,
    /// The Management API of the WebSocket API `api_id`: `{METHOD} /{stage}/@connections/{id}`.
    ManageConnections { api_id: String },
}

/// One permission a request needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The caller's `X-Amz-Security-Token` (its role session), or empty for an unsigned request.
    pub session: String,
    /// The IAM action, e.g. `dynamodb:PutItem`.
    pub action: String,
    /// The resource ARN the action is on.
    pub resource: String,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    service: Service,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<RecordedCall>>>,
}

/// The proxy, on a free loopback port.
pub struct RecordingProxy {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<RecordedCall>>>,
    server: JoinHandle<()>,
}

impl RecordingProxy {
    /// Starts a proxy forwarding to `upstream` (`http://host:port`, with an optional path prefix kept as is).
    pub async fn start(upstream: &str, service: Service) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            service,
            http: reqwest::Client::new(),
            calls: calls.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let server = tokio::spawn(async move {
            // Serves until the proxy is dropped, which aborts this task.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, calls, server })
    }

    /// `http://127.0.0.1:P`: the endpoint to give a function instead of the upstream's.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every permission recorded so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large for the recording proxy").into_response();
    };
    let session = header(&parts.headers, "x-amz-security-token").unwrap_or_default();
    let needed = permissions(&state.service, parts.method.as_str(), parts.uri.path(), &parts.headers, &body);
    {
        let mut calls = state.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (action, resource) in needed {
            calls.push(RecordedCall { session: session.clone(), action, resource });
        }
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = state.http.request(parts.method.clone(), format!("{}{path_and_query}", state.upstream));
    // Every header is forwarded as sent, `Host` included, so that a signature stays what the client computed.
    for (name, value) in &parts.headers {
        upstream = upstream.header(name, value);
    }
    match upstream.body(body).send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            for (name, value) in &headers {
                // The body is re-framed here, so the upstream's framing headers do not apply.
                if name != "transfer-encoding" && name != "content-length" && name != "connection" {
                    response.headers_mut().append(name, value.clone());
                }
            }
            response
        }
        Err(error) => (StatusCode::BAD_GATEWAY, format!("recording proxy: upstream failed: {error}")).into_response(),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The IAM actions and resources one request needs. A request the proxy cannot read is recorded as the action
/// `unknown:{what}`, which no policy allows, so it is reported rather than passed over.
pub fn permissions(
    service: &Service,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<(String, String)> {
    match service {
        Service::DynamoDb => {
            let target = header(headers, "x-amz-target").unwrap_or_default();
            let operation = target.strip_prefix("DynamoDB_20120810.").unwrap_or(&target).to_owned();
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            dynamodb_permissions(&operation, &body)
        }
        Service::Sqs => {
            let target = header(headers, "x-amz-target").unwrap_or_default();
            let operation = target.strip_prefix("AmazonSQS.").unwrap_or(&target);
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let queue = body["QueueUrl"].as_str().and_then(|url| url.rsplit('/').next()).unwrap_or("*");
            vec![(format!("sqs:{operation}"), format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}"))]
        }
        Service::ManageConnections { api_id } => {
            // `/{stage}/@connections/{id}`; the id is percent-encoded by the SDK and kept as sent.
            let trimmed = path.trim_start_matches('/');
            let resource = format!("arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{api_id}/{}", {
                let (stage, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
                format!("{stage}/{method}/{rest}")
            });
            vec![("execute-api:ManageConnections".to_owned(), resource)]
        }
    }
}

fn table_arn(table: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table}")
}

fn dynamodb_permissions(operation: &str, body: &Value) -> Vec<(String, String)> {
    let on_table = |body: &Value| {
        let table = body["TableName"].as_str().unwrap_or("*");
        match body["IndexName"].as_str() {
            Some(index) => format!("{}/index/{index}", table_arn(table)),
            None => table_arn(table),
        }
    };
    match operation {
        // Transactions are authorised item by item, as the operation each item performs.
        "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, inner) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    other => return Some((format!("unknown:TransactItems.{other}"), on_table(inner))),
                };
                Some((format!("dynamodb:{action}"), on_table(inner)))
            })
            .collect(),
        "BatchWriteItem" | "BatchGetItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(table, _)| (format!("dynamodb:{operation}"), table_arn(table)))
            .collect(),
        "" => vec![("unknown:dynamodb-request-without-target".to_owned(), "*".to_owned())],
        operation => vec![(format!("dynamodb:{operation}"), on_table(body))],
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::sam_env::wildcard_match;

    fn dynamodb(operation: &str, body: Value) -> Vec<(String, String)> {
        let mut headers = HeaderMap::new();
        let target = format!("DynamoDB_20120810.{operation}");
        headers.insert("x-amz-target", HeaderValue::from_str(&target).expect("header"));
        permissions(&Service::DynamoDb, "POST", "/", &headers, body.to_string().as_bytes())
    }

    #[test]
    fn dynamodb_requests_need_the_action_of_each_item_on_its_table_or_index() {
        let table = "arn:aws:dynamodb:us-east-1:123456789012:table/t";

        let query = dynamodb("Query", json!({"TableName": "t", "IndexName": "GSI1"}));
        let transaction = dynamodb(
            "TransactWriteItems",
            json!({"TransactItems": [{"Put": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "t"}}]}),
        );
        let batch = dynamodb("BatchWriteItem", json!({"RequestItems": {"t": []}}));

        assert_eq!(query, [("dynamodb:Query".to_owned(), format!("{table}/index/GSI1"))]);
        assert_eq!(
            transaction,
            [
                ("dynamodb:PutItem".to_owned(), table.to_owned()),
                ("dynamodb:ConditionCheckItem".to_owned(), table.to_owned())
            ]
        );
        assert_eq!(batch, [("dynamodb:BatchWriteItem".to_owned(), table.to_owned())]);
    }

    #[test]
    fn a_management_api_call_needs_manage_connections_on_its_stage_method_and_path() {
        let service = Service::ManageConnections { api_id: "abc".to_owned() };

        let needed = permissions(&service, "DELETE", "/live/@connections/Xy%3D", &HeaderMap::new(), b"");

        let expected = "arn:aws:execute-api:us-east-1:123456789012:abc/live/DELETE/@connections/Xy%3D";
        assert_eq!(needed, [("execute-api:ManageConnections".to_owned(), expected.to_owned())]);
        assert!(wildcard_match("arn:aws:execute-api:us-east-1:123456789012:abc/live/DELETE/@connections/*", expected));
        assert!(!wildcard_match("arn:aws:execute-api:us-east-1:123456789012:abc/live/POST/@connections/*", expected));
    }
}
