//! The function binaries, started the way Lambda starts them and driven through a local Lambda Runtime API.
//!
//! Each test builds a small deployment: a fresh DynamoDB Local table, a fresh queue on the SQS emulator, and the
//! harness (on that same table, stage `live`) playing the WebSocket API and its `@connections`. Every function
//! runs as its own process, with exactly the environment `template.yaml` gives it (`tests::sam_env`: parameters
//! filled with the test values below, the secret reference resolved to a test secret, the Management API endpoint
//! and the AWS services mapped to the local ones) and nothing inherited from the test's own environment. The
//! functions receive the AWS-shaped fixtures of `shared/tests/fixtures` (and an HTTP API v2 request from
//! `fixtures/`), and the tests check their answers, what they leave in DynamoDB, what they send to SQS and what
//! reaches a real WebSocket client connected to the harness through `@connections`.
//!
//! The functions reach DynamoDB, SQS and `@connections` only through recording proxies (`tests::aws_calls`), and
//! each scenario ends by checking every request they made against that function's policy in the template.
//!
//! So a variable the template does not set, a secret key misspelt, a `main.rs` that wires a handler to the wrong
//! event type, a client that ignores the endpoint it is given, or a permission the template does not grant fails
//! here, offline.
//!
//! The binaries come from `scripts/build-functions.sh` (built once per run; a no-op when up to date) or from
//! `BELLHOP_FUNCTION_BIN_DIR`. Needs `DYNAMODB_ENDPOINT` and `SQS_ENDPOINT`: skipped loudly without them, failing
//! instead when `TEST_INTEGRATION=1` (as `scripts/test.sh` runs it). `TEST_LOG=1` echoes the functions' output.

mod api;
mod calls;
mod client;
mod init;
mod websocket;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_credential_types::Credentials;
use local::{HarnessOptions, PusherChoice, RunningHarness, StoreChoice};
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::auth::{Claims, mint_token};
use shared::config::Config;
use shared::store::dynamo::DynamoStore;
use tests::aws_calls::{RecordingProxy, Service};
use tests::function_binaries;
use tests::runtime_api::{FunctionProcess, INIT_TIMEOUT, LaunchSpec, Outcome, StartError};
use tests::sam_env::{self, FunctionSpec, Resolver};

use crate::client::WsClient;

/// The test values of the deployment's secret (`SecretArn` and its two keys). Not the harness's development
/// defaults, so that a function reading its secrets from anywhere but the template's variables fails.
const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bellhop/test-AbCdEf";
// At least 32 bytes, as Config requires of a Lambda's JWT_SECRET.
const JWT_SECRET: &str = "bellhop-lambda-test-jwt-secret-of-32-bytes";
const INTERNAL_API_KEY: &str = "bellhop-lambda-test-internal-key";
/// The fixtures' WebSocket API id, stage and origin.
const WEBSOCKET_API_ID: &str = "x5dq2mb9qi";
const STAGE: &str = "live";
const ORIGIN: &str = "https://app.example.com";
/// The connection of the connect, message and disconnect fixtures, and its user.
const CONNECTION: &str = "gbf_-C9vMQAYKEiZoA==";
const USER: &str = "u-42";

/// The deployment every function of one test runs against.
pub(crate) struct Stack {
    resolver: Resolver,
    pub(crate) store: Arc<DynamoStore>,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) queue_url: String,
    pub(crate) harness: RunningHarness,
    /// The functions' only way to DynamoDB, SQS and `@connections`: each records what IAM would be asked.
    proxies: [RecordingProxy; 3],
}

impl Stack {
    /// A fresh deployment, or `None` (after saying so) when DynamoDB Local or the SQS emulator is not configured.
    pub(crate) async fn new() -> Option<Self> {
        let dynamodb = shared::testing::integration_var("DYNAMODB_ENDPOINT", "DynamoDB Local")?;
        let sqs_endpoint = shared::testing::integration_var("SQS_ENDPOINT", "the SQS emulator")?;
        let suffix = uuid::Uuid::now_v7().simple().to_string();

        // The test's own clients sign as the functions do: DynamoDB Local keeps one database per access key.
        let credentials = Credentials::new(
            sam_env::ACCESS_KEY_ID,
            sam_env::SECRET_ACCESS_KEY,
            Some("bellhop-lambda-test".to_owned()),
            None,
            "bellhop-lambda-test",
        );
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(sam_env::REGION))
            .credentials_provider(credentials)
            .load()
            .await;
        let dynamo_config = aws_sdk_dynamodb::config::Builder::from(&sdk).endpoint_url(&dynamodb).build();
        let table = format!("bellhop-lambda-{suffix}");
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(dynamo_config), &table);
        store.create_table_if_missing().await.expect("create the table on DynamoDB Local");
        let store = Arc::new(store);
        let sqs_config = aws_sdk_sqs::config::Builder::from(&sdk).endpoint_url(&sqs_endpoint).build();
        let sqs = aws_sdk_sqs::Client::from_conf(sqs_config);
        let created = sqs.create_queue().queue_name(format!("bellhop-missed-{suffix}")).send().await;
        let queue_url = created.expect("create the queue").queue_url().expect("queue url").to_owned();

        let secrets = [("JWT_SECRET", JWT_SECRET), ("INTERNAL_API_KEY", INTERNAL_API_KEY)];
        let config = Config::from_lookup(
            |name| secrets.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned()),
            false,
        )
        .expect("harness config");
        let mut options = HarnessOptions::new(config);
        options.stage = STAGE.to_owned();
        options.store = StoreChoice::Custom(store.clone());
        options.pusher = PusherChoice::InProcess;
        let harness = local::spawn(options).await.expect("spawn the harness");

        let proxies = [
            RecordingProxy::start(&dynamodb, Service::DynamoDb).await.expect("DynamoDB proxy"),
            RecordingProxy::start(&sqs_endpoint, Service::Sqs).await.expect("SQS proxy"),
            RecordingProxy::start(
                &harness.http_url,
                Service::ManageConnections { api_id: WEBSOCKET_API_ID.to_owned() },
            )
            .await
            .expect("@connections proxy"),
        ];
        let queue_name = queue_url.rsplit('/').next().unwrap_or_default().to_owned();

        let template = function_binaries::workspace_root().join("template.yaml");
        let resolver = Resolver::from_file(&template)
            .expect("read template.yaml")
            .parameter("SecretArn", SECRET_ARN)
            .parameter("StageName", STAGE)
            .parameter("CorsOrigins", ORIGIN)
            .parameter("LogLevel", "DEBUG")
            .secret(SECRET_ARN, &secrets)
            .resource("Table", &table)
            .resource(
                "Table.Arn",
                format!("arn:aws:dynamodb:{}:{}:table/{table}", sam_env::REGION, sam_env::ACCOUNT_ID),
            )
            .resource("MissedCallQueue", &queue_url)
            .resource(
                "MissedCallQueue.Arn",
                format!("arn:aws:sqs:{}:{}:{queue_name}", sam_env::REGION, sam_env::ACCOUNT_ID),
            )
            .resource("WebSocketApi", WEBSOCKET_API_ID)
            .endpoint(
                format!("https://{WEBSOCKET_API_ID}.execute-api.{}.amazonaws.com/{STAGE}", sam_env::REGION),
                format!("{}/{STAGE}", proxies[2].url()),
            )
            .service_endpoint("DYNAMODB", proxies[0].url())
            .service_endpoint("SQS", proxies[1].url());
        Some(Self { resolver, store, sqs, queue_url, harness, proxies })
    }

    /// The resolved deployment of `functions/{package}`.
    pub(crate) fn spec(&self, package: &str) -> FunctionSpec {
        self.resolver.function(package).unwrap_or_else(|e| panic!("{package}: {e}"))
    }

    /// Starts `functions/{package}` with its template environment and waits for the end of its init.
    pub(crate) async fn start(&self, package: &str) -> FunctionProcess {
        self.start_with_env(package, |_| {}).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Stack::start`], after `adjust` changed the environment; answers the start's failure instead of failing.
    pub(crate) async fn start_with_env(
        &self,
        package: &str,
        adjust: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<FunctionProcess, StartError> {
        let spec = self.spec(package);
        let binary = function_binaries::binary(package).unwrap_or_else(|e| panic!("{e}"));
        let mut env = spec.env;
        adjust(&mut env);
        FunctionProcess::start(LaunchSpec {
            name: package.to_owned(),
            binary,
            env,
            timeout: spec.timeout,
            init_timeout: INIT_TIMEOUT,
            echo_output: std::env::var_os("TEST_LOG").is_some(),
        })
        .await
    }

    /// Fails the test unless every request the functions made to DynamoDB, SQS and `@connections` is allowed by
    /// that function's policy in the template, as IAM would have decided on AWS.
    pub(crate) fn assert_permissions(&self) {
        let mut denied = Vec::new();
        let mut seen = 0;
        for call in self.proxies.iter().flat_map(RecordingProxy::calls) {
            seen += 1;
            let Some(package) = call.session.strip_prefix(sam_env::SESSION_TOKEN_PREFIX) else {
                denied.push(format!("a request without a function's role session: {call:?}"));
                continue;
            };
            if !self.spec(package).allows(&call.action, &call.resource) {
                denied.push(format!("{package}: {} on {}", call.action, call.resource));
            }
        }
        denied.sort();
        denied.dedup();
        assert!(seen > 0, "no request went through the recording proxies");
        assert!(denied.is_empty(), "not allowed by template.yaml:\n{}", denied.join("\n"));
    }

    /// A real WebSocket client of the harness, authenticated as `user` (a customer) with the test secret.
    pub(crate) async fn client(&self, user: &str) -> WsClient {
        let token = token(JWT_SECRET, user, "customer");
        WsClient::connect(&format!("{}?token={token}", self.harness.ws_url)).await
    }
}

/// A token for `sub` with `role`, signed with `secret`, valid for ten minutes.
pub(crate) fn token(secret: &str, sub: &str, role: &str) -> String {
    let mut claims = Claims::for_subject(sub, 600, &Config::for_tests().jwt);
    claims.role = Some(role.to_owned());
    claims.name = Some("Dr Lee".to_owned());
    mint_token(&SecretString::from(secret.to_owned()), &claims).expect("sign a token")
}

/// A fixture of `shared/tests/fixtures`, as JSON.
pub(crate) fn fixture(name: &str) -> Value {
    let path = function_binaries::workspace_root().join(format!("shared/tests/fixtures/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// A fixture of this test target's `fixtures/`, as JSON.
pub(crate) fn own_fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("lambda/fixtures/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// Invokes `function` and answers its JSON response, failing the test on any other outcome.
pub(crate) async fn invoke(function: &mut FunctionProcess, payload: &Value) -> Value {
    let outcome = function.invoke(payload).await.unwrap_or_else(|e| panic!("{}: {e}", function.name()));
    outcome.json().unwrap_or_else(|e| panic!("{}: {e}\n--- function output ---\n{}", function.name(), function.logs()))
}

/// Invokes `function` and answers the error it reported, failing the test on any other outcome.
pub(crate) async fn invoke_error(function: &mut FunctionProcess, payload: &Value) -> (Option<String>, Value) {
    match function.invoke(payload).await.unwrap_or_else(|e| panic!("{}: {e}", function.name())) {
        Outcome::Error { header_error_type, body } => (header_error_type, body),
        other => panic!("{}: expected an error, got {other:?}", function.name()),
    }
}

/// A `$default` route event of the fixture connection carrying `body`.
pub(crate) fn message_event(body: &Value) -> Value {
    let mut event = fixture("apigw-message");
    event["body"] = json!(body.to_string());
    event
}

/// The JSON body of an API Gateway proxy response.
pub(crate) fn body_of(response: &Value) -> Value {
    let body = response["body"].as_str().unwrap_or_else(|| panic!("no body in {response}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}"))
}
