//! Offline checks of the deployment: `template.yaml` read as plain YAML (it uses long-form intrinsics only) and
//! checked against the workspace it deploys — every function folder declared, every route on the right function
//! (and the heartbeat's on a MOCK answering exactly the pong the harness sends),
//! every variable `Config` reads set, no IAM wildcard, the missed-call queue consumed with partial batch failures
//! and a visibility timeout of at least 6× its consumer's timeout — plus the API Gateway event fixtures in
//! `shared/tests/fixtures` deserialised into the `aws_lambda_events` types (see `fixtures`).
//!
//! What it does not check: anything AWS decides at deploy time. cfn-lint and `sam validate --lint`
//! (`scripts/deploy-checks.sh`) cover the resource schemas; this suite covers what only this repository knows.

mod fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde_yaml::Value;
use shared::gateway::{PING_ROUTE_KEY, PING_ROUTE_RESPONSE};

/// Variables `Config` reads that the cloud must not set: DynamoDB Local's endpoint override.
const LOCAL_ONLY_VARIABLES: &[&str] = &["DYNAMODB_ENDPOINT"];
/// Variables `Config` reads that the cloud sets by other means: Lambda sets the region itself, `BELLHOP_*` are the
/// harness's own settings, and `SSL_CERT_FILE` is an operator's opt-in, added to a function only where its egress
/// re-signs TLS (README, Configuration).
fn set_elsewhere(variable: &str) -> bool {
    variable.starts_with("BELLHOP_") || matches!(variable, "AWS_REGION" | "AWS_DEFAULT_REGION" | "SSL_CERT_FILE")
}

/// Route key → the function folder that must serve it.
const WEBSOCKET_ROUTES: &[(&str, &str)] =
    &[("$connect", "connect"), ("$disconnect", "disconnect"), ("$default", "message")];

#[test]
fn template_uses_long_form_intrinsics_only() {
    let mut tagged = Vec::new();
    walk(template(), "", &mut |path, value| {
        if let Value::Tagged(tag) = value {
            tagged.push(format!("{path}: {}", tag.tag));
        }
    });
    assert!(tagged.is_empty(), "write `Ref:` / `Fn::…:` instead of short tags: {tagged:?}");
}

#[test]
fn every_function_folder_is_a_cargo_lambda_function_of_the_template() {
    let folders = function_folders();
    assert!(folders.len() >= 7, "expected the seven functions, found {folders:?}");
    let declared = functions_by_folder();

    for folder in &folders {
        let (logical_id, function) =
            declared.get(folder).unwrap_or_else(|| panic!("functions/{folder} has no AWS::Serverless::Function"));
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{logical_id} must be built by cargo-lambda"
        );
        assert_eq!(setting(function, "Runtime").as_str(), Some("provided.al2023"), "{logical_id} runtime");
        assert_eq!(setting(function, "Handler").as_str(), Some("bootstrap"), "{logical_id} handler");
        let architectures: Vec<&str> =
            setting(function, "Architectures").as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(architectures, ["arm64"], "{logical_id} architectures");
        for key in ["MemorySize", "Timeout"] {
            assert!(setting(function, key).as_u64().is_some(), "{logical_id} needs an explicit {key}");
        }
        assert!(
            function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"].as_str().is_some(),
            "{logical_id} must log to a log group with a retention"
        );
    }
    let extra: Vec<&String> = declared.keys().filter(|folder| !folders.contains(*folder)).collect();
    assert!(extra.is_empty(), "functions declared without a folder under functions/: {extra:?}");
}

#[test]
fn websocket_api_selects_routes_on_the_action_field() {
    let (_, api) = single_resource("AWS::ApiGatewayV2::Api");
    assert_eq!(api["Properties"]["ProtocolType"].as_str(), Some("WEBSOCKET"));
    assert_eq!(api["Properties"]["RouteSelectionExpression"].as_str(), Some("$request.body.action"));
}

#[test]
fn every_websocket_route_integrates_the_right_function() {
    let routes = resources_of_type("AWS::ApiGatewayV2::Route");
    let keys: BTreeSet<&str> = routes.iter().filter_map(|(_, r)| r["Properties"]["RouteKey"].as_str()).collect();
    let mut expected: BTreeSet<&str> = WEBSOCKET_ROUTES.iter().map(|(key, _)| *key).collect();
    // The heartbeat's route invokes no function (see the ping route's own test).
    expected.insert(PING_ROUTE_KEY);
    assert_eq!(keys, expected, "the WebSocket API's routes");

    for (route_key, folder) in WEBSOCKET_ROUTES {
        let (route_id, route) = route(route_key);
        let target = sub_string(&route["Properties"]["Target"]).unwrap_or_else(|| panic!("{route_id} Target"));
        let integration_id = target
            .strip_prefix("integrations/${")
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{route_id} Target must be integrations/${{Integration}}, got {target}"));
        let integration = resource(integration_id);
        assert_eq!(integration["Type"].as_str(), Some("AWS::ApiGatewayV2::Integration"), "{integration_id}");
        assert_eq!(integration["Properties"]["IntegrationType"].as_str(), Some("AWS_PROXY"), "{integration_id}");
        assert_eq!(
            lambda_uri_folder(&integration["Properties"]["IntegrationUri"]),
            *folder,
            "{route_key} must invoke functions/{folder}"
        );
        if *route_key != "$connect" {
            let authorization = route["Properties"]["AuthorizationType"].as_str().unwrap_or("NONE");
            assert_eq!(authorization, "NONE", "only $connect can carry an authorizer ({route_id})");
        }
    }
}

#[test]
fn connect_is_guarded_by_the_authorizer_function_without_identity_sources() {
    let (route_id, route) = route("$connect");
    assert_eq!(route["Properties"]["AuthorizationType"].as_str(), Some("CUSTOM"), "{route_id}");
    let authorizer_id = route["Properties"]["AuthorizerId"]["Ref"].as_str().expect("$connect AuthorizerId is a Ref");
    let authorizer = resource(authorizer_id);
    assert_eq!(authorizer["Type"].as_str(), Some("AWS::ApiGatewayV2::Authorizer"));
    assert_eq!(authorizer["Properties"]["AuthorizerType"].as_str(), Some("REQUEST"));
    assert_eq!(lambda_uri_folder(&authorizer["Properties"]["AuthorizerUri"]), "authorizer");
    // Identity sources are all-required: any one of them would make API Gateway refuse, with 401, tokens sent by
    // the other paths (`?token=`, `bearer.<jwt>` subprotocol, `Authorization`). The authorizer itself refuses.
    assert!(
        authorizer["Properties"]["IdentitySource"].is_null(),
        "an IdentitySource would break the subprotocol token path"
    );
    assert!(authorizer["Properties"]["AuthorizerResultTtlInSeconds"].is_null(), "WebSocket authorizers never cache");
}

#[test]
fn default_route_answers_through_a_route_response() {
    let (route_id, route) = route("$default");
    assert_eq!(route["Properties"]["RouteResponseSelectionExpression"].as_str(), Some("$default"), "{route_id}");
    let responses: Vec<_> = resources_of_type("AWS::ApiGatewayV2::RouteResponse")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["RouteId"]["Ref"].as_str() == Some(route_id))
        .collect();
    assert_eq!(responses.len(), 1, "$default needs exactly one route response");
    assert_eq!(responses[0].1["Properties"]["RouteResponseKey"].as_str(), Some("$default"));
}

#[test]
fn the_ping_route_is_answered_by_api_gateway_with_the_pong_the_harness_sends() {
    let (route_id, route) = route(PING_ROUTE_KEY);
    assert_eq!(route["Properties"]["AuthorizationType"].as_str().unwrap_or("NONE"), "NONE", "{route_id}");
    assert_eq!(route["Properties"]["RouteResponseSelectionExpression"].as_str(), Some("$default"), "{route_id}");
    let route_responses = resources_of_type("AWS::ApiGatewayV2::RouteResponse")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["RouteId"]["Ref"].as_str() == Some(route_id))
        .collect::<Vec<_>>();
    assert_eq!(route_responses.len(), 1, "the ping route answers through exactly one route response");
    let (route_response_id, route_response) = route_responses[0];
    assert_eq!(route_response["Properties"]["RouteResponseKey"].as_str(), Some("$default"));

    // A MOCK integration: no function is invoked, so none is billed.
    let target = sub_string(&route["Properties"]["Target"]).unwrap_or_else(|| panic!("{route_id} Target"));
    let integration_id = target
        .strip_prefix("integrations/${")
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{route_id} Target must be integrations/${{Integration}}, got {target}"));
    let integration = &resource(integration_id)["Properties"];
    assert_eq!(integration["IntegrationType"].as_str(), Some("MOCK"), "{integration_id}");
    assert!(integration["IntegrationUri"].is_null(), "{integration_id} must reach no backend");
    let selection = integration["TemplateSelectionExpression"].as_str().expect("request template selection");
    assert_eq!(selection, "\\$default", "{integration_id}: always the `$default` request template");
    let request: serde_json::Value = serde_json::from_str(
        integration["RequestTemplates"]["$default"].as_str().expect("the mock's `$default` request template"),
    )
    .expect("the request template is JSON");
    assert_eq!(request, serde_json::json!({"statusCode": 200}), "the mock answers 200");

    let integration_responses = resources_of_type("AWS::ApiGatewayV2::IntegrationResponse")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["IntegrationId"]["Ref"].as_str() == Some(integration_id))
        .collect::<Vec<_>>();
    assert_eq!(integration_responses.len(), 1, "{integration_id} needs exactly one integration response");
    let (integration_response_id, integration_response) = integration_responses[0];
    let properties = &integration_response["Properties"];
    assert_eq!(properties["IntegrationResponseKey"].as_str(), Some("$default"), "{integration_response_id}");
    assert_eq!(properties["TemplateSelectionExpression"].as_str(), Some("\\$default"), "{integration_response_id}");
    // Byte for byte what the harness answers and what `ServerFrame::Pong` serialises to.
    assert_eq!(properties["ResponseTemplates"]["$default"].as_str(), Some(PING_ROUTE_RESPONSE));
    assert_eq!(properties["ResponseTemplates"].as_mapping().map(|m| m.len()), Some(1), "one static answer");

    // The stage is deployed after the route and its responses exist, as for the other routes.
    let (stage_id, stage) = single_resource("AWS::ApiGatewayV2::Stage");
    let depends_on = strings(&stage["DependsOn"]);
    for id in [route_id, route_response_id, integration_response_id] {
        assert!(depends_on.iter().any(|d| d == id), "{stage_id} must depend on {id}: {depends_on:?}");
    }
}

#[test]
fn api_gateway_may_invoke_each_websocket_function_from_this_api_only() {
    let (api_id, _) = single_resource("AWS::ApiGatewayV2::Api");
    let permissions = resources_of_type("AWS::Lambda::Permission");
    let by_folder = functions_by_folder();
    for folder in ["authorizer", "connect", "disconnect", "message"] {
        let (function_id, _) = &by_folder[folder];
        let permission = permissions
            .iter()
            .find(|(_, p)| p["Properties"]["FunctionName"]["Ref"].as_str() == Some(function_id.as_str()))
            .unwrap_or_else(|| panic!("no Lambda permission for {function_id}"));
        let properties = &permission.1["Properties"];
        assert_eq!(properties["Principal"].as_str(), Some("apigateway.amazonaws.com"), "{}", permission.0);
        assert_eq!(properties["Action"].as_str(), Some("lambda:InvokeFunction"), "{}", permission.0);
        let source = sub_string(&properties["SourceArn"]).unwrap_or_else(|| panic!("{} SourceArn", permission.0));
        assert!(source.contains(&format!(":${{{api_id}}}/")), "{} must be scoped to this API: {source}", permission.0);
    }
}

#[test]
fn api_function_serves_the_http_api() {
    let (http_api_id, http_api) = single_resource("AWS::Serverless::HttpApi");
    let (function_id, function) = &functions_by_folder()["api"];
    let events = function["Properties"]["Events"].as_mapping().expect("api function has Events");
    let served = events.values().any(|event| {
        event["Type"].as_str() == Some("HttpApi") && event["Properties"]["ApiId"]["Ref"].as_str() == Some(http_api_id)
    });
    assert!(served, "{function_id} must be the integration of {http_api_id}");
    let cors = &http_api["Properties"]["CorsConfiguration"]["AllowOrigins"];
    assert!(!cors.is_null(), "the HTTP API's CORS origins come from a parameter");
    let settings = &http_api["Properties"]["DefaultRouteSettings"];
    assert!(!settings["ThrottlingBurstLimit"].is_null() && !settings["ThrottlingRateLimit"].is_null());
}

#[test]
fn every_variable_config_reads_is_set_for_every_function() {
    let read = config_variables();
    for (folder, (function_id, function)) in functions_by_folder() {
        let set = environment(function);
        let missing: Vec<&String> = read
            .iter()
            .filter(|v| !set.contains_key(*v) && !LOCAL_ONLY_VARIABLES.contains(&v.as_str()) && !set_elsewhere(v))
            .collect();
        assert!(missing.is_empty(), "{function_id} (functions/{folder}) lacks {missing:?}");
        let unknown: Vec<&String> = set.keys().filter(|v| !read.contains(*v)).collect();
        assert!(unknown.is_empty(), "{function_id} sets variables Config never reads: {unknown:?}");
        for local in LOCAL_ONLY_VARIABLES {
            assert!(!set.contains_key(*local), "{function_id} must not set {local} in the cloud");
        }
    }
}

#[test]
fn secrets_come_from_secrets_manager_and_never_from_a_default() {
    for (_, (function_id, function)) in functions_by_folder() {
        let environment = environment(function);
        for name in ["JWT_SECRET", "INTERNAL_API_KEY"] {
            let value = sub_string(&environment[name]).unwrap_or_default();
            assert!(
                value.starts_with("{{resolve:secretsmanager:") && value.ends_with(&format!(":SecretString:{name}}}}}")),
                "{function_id} {name} must be a Secrets Manager dynamic reference, not {:?}",
                environment[name]
            );
            for parameter in sub_references(&value) {
                let declared = &template()["Parameters"][parameter.as_str()];
                assert!(!declared.is_null(), "{name} refers to an undeclared parameter {parameter}");
                assert!(declared["Default"].is_null(), "parameter {parameter} must have no default");
            }
        }
    }
}

#[test]
fn no_iam_statement_grants_every_action_or_every_resource() {
    let statements = iam_statements();
    assert!(!statements.is_empty(), "no IAM statements found");
    for (owner, statement) in &statements {
        assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{owner}");
        assert!(statement["NotAction"].is_null() && statement["NotResource"].is_null(), "{owner} uses Not*");
        for action in strings(&statement["Action"]) {
            assert!(action != "*" && !action.ends_with(":*"), "{owner} grants {action}");
        }
        let resources = as_list(&statement["Resource"]);
        assert!(!resources.is_empty(), "{owner} statement without Resource");
        for resource in resources {
            assert_ne!(resource.as_str(), Some("*"), "{owner} grants on every resource");
            assert!(resource.as_str().is_none(), "{owner} hard-codes a resource ARN: {resource:?}");
        }
    }
}

#[test]
fn each_permission_targets_only_what_it_is_for() {
    let (table_id, _) = single_resource("AWS::DynamoDB::Table");
    let (api_id, _) = single_resource("AWS::ApiGatewayV2::Api");
    for (owner, statement) in iam_statements() {
        let actions = strings(&statement["Action"]);
        let targets: Vec<String> = as_list(&statement["Resource"]).iter().map(|r| describe_reference(r)).collect();
        for action in &actions {
            let (service, _) = action.split_once(':').unwrap_or_else(|| panic!("{owner}: odd action {action}"));
            for target in &targets {
                let ok = match service {
                    "dynamodb" => {
                        target == &format!("{table_id}.Arn") || target.starts_with(&format!("{table_id}.Arn/index/"))
                    }
                    "execute-api" => target.contains(&format!(":${{{api_id}}}/")) && target.contains("/@connections/"),
                    "sqs" => target == "MissedCallQueue.Arn",
                    _ => false,
                };
                assert!(ok, "{owner}: {action} on {target}");
            }
            if target_is_index(&targets) {
                assert_eq!(action, "dynamodb:Query", "{owner}: only Query applies to an index");
            }
        }
    }
    let (authorizer_id, authorizer) = &functions_by_folder()["authorizer"];
    assert!(authorizer["Properties"]["Policies"].is_null(), "{authorizer_id} verifies JWTs and needs no permissions");
    let mut sqs_actions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (owner, statement) in iam_statements() {
        for action in strings(&statement["Action"]).into_iter().filter(|a| a.starts_with("sqs:")) {
            sqs_actions.entry(owner.clone()).or_default().insert(action);
        }
    }
    let (consumer_id, _) = &functions_by_folder()["call-timeout"];
    // Senders: call:initiate (message), the first token-expiry check (connect), and the checks that reschedule
    // themselves (the consumer). Only the consumer receives.
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("MessageFunction", &["sqs:SendMessage"][..]),
        ("ConnectFunction", &["sqs:SendMessage"][..]),
        (
            consumer_id.as_str(),
            &["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:SendMessage"][..],
        ),
    ]
    .into_iter()
    .map(|(owner, actions)| (owner.to_owned(), actions.iter().map(|a| (*a).to_owned()).collect()))
    .collect();
    assert_eq!(sqs_actions, expected, "only the timer's users send checks, only their consumer receives them");
}

#[test]
fn missed_call_queue_is_consumed_with_partial_batch_failures_and_a_long_enough_visibility_timeout() {
    let (function_id, function) = &functions_by_folder()["call-timeout"];
    let mappings: Vec<_> = resources_of_type("AWS::Lambda::EventSourceMapping")
        .into_iter()
        .filter(|(_, m)| m["Properties"]["FunctionName"]["Ref"].as_str() == Some(function_id.as_str()))
        .collect();
    assert_eq!(mappings.len(), 1, "{function_id} needs exactly one event source mapping");
    let (mapping_id, mapping) = mappings[0];
    let properties = &mapping["Properties"];
    let queue_id = describe_reference(&properties["EventSourceArn"])
        .strip_suffix(".Arn")
        .unwrap_or_else(|| panic!("{mapping_id} EventSourceArn must be a queue's Arn"))
        .to_owned();
    let queue = resource(&queue_id);
    assert_eq!(queue["Type"].as_str(), Some("AWS::SQS::Queue"), "{mapping_id} must read an SQS queue");
    for folder in ["message", "call-timeout"] {
        let (id, sender_or_consumer) = &functions_by_folder()[folder];
        let url = &environment(sender_or_consumer)["MISSED_CALL_QUEUE_URL"];
        assert_eq!(url["Ref"].as_str(), Some(queue_id.as_str()), "{id} MISSED_CALL_QUEUE_URL must name {queue_id}");
    }
    // Without it, one record that fails returns the whole batch to the queue, checked calls included.
    assert!(
        strings(&properties["FunctionResponseTypes"]).contains(&"ReportBatchItemFailures".to_owned()),
        "{mapping_id} must set FunctionResponseTypes: [ReportBatchItemFailures]"
    );

    // Lambda's advice for SQS sources: a visibility timeout under 6× the function timeout lets a second invocation
    // receive a batch the first may still be working on.
    let timeout = setting(function, "Timeout").as_u64().expect("function timeout");
    let visibility = queue["Properties"]["VisibilityTimeout"].as_u64().unwrap_or(30);
    assert!(
        visibility >= 6 * timeout,
        "{queue_id} VisibilityTimeout {visibility} < 6 × {function_id} Timeout {timeout}"
    );

    // Failing checks end in a dead-letter queue, and no check expires before its longest delay and every retry.
    let redrive = &queue["Properties"]["RedrivePolicy"];
    let dead_letter = describe_reference(&redrive["deadLetterTargetArn"]);
    let dead_letter_id = dead_letter.strip_suffix(".Arn").unwrap_or_else(|| panic!("{queue_id} needs a DLQ"));
    assert_eq!(resource(dead_letter_id)["Type"].as_str(), Some("AWS::SQS::Queue"));
    let receives = redrive["maxReceiveCount"].as_u64().expect("maxReceiveCount");
    let longest_delay = template()["Parameters"]["CallRingSeconds"]["MaxValue"].as_u64().expect("CallRingSeconds max");
    assert!(longest_delay <= 900, "SQS delays a message at most 900 s, so CALL_RING_SECONDS may not exceed it");
    let retention = queue["Properties"]["MessageRetentionPeriod"].as_u64().expect("MessageRetentionPeriod");
    assert!(
        retention >= longest_delay + receives * visibility,
        "{queue_id} retention {retention} s ends before a {longest_delay} s delay and {receives} receives"
    );

    // SAM's `Events: SQS` (and Kinesis, DynamoDB streams) attach an AWS managed policy granting on every resource.
    for (id, function) in resources_of_type("AWS::Serverless::Function") {
        if let Some(events) = function["Properties"]["Events"].as_mapping() {
            for event in events.values() {
                let kind = event["Type"].as_str().unwrap_or_default();
                assert!(
                    !matches!(kind, "SQS" | "Kinesis" | "DynamoDB"),
                    "{id}: use an AWS::Lambda::EventSourceMapping"
                );
            }
        }
    }
}

#[test]
fn table_expires_items_and_can_be_restored() {
    let (table_id, table) = single_resource("AWS::DynamoDB::Table");
    let properties = &table["Properties"];
    assert_eq!(properties["TimeToLiveSpecification"]["AttributeName"].as_str(), Some("ttl"), "{table_id}");
    assert_eq!(properties["TimeToLiveSpecification"]["Enabled"].as_bool(), Some(true), "{table_id}");
    assert_eq!(properties["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
    let key: Vec<&str> = as_list(&properties["KeySchema"]).iter().filter_map(|k| k["AttributeName"].as_str()).collect();
    assert_eq!(key, ["PK", "SK"]);
    let index_list = as_list(&properties["GlobalSecondaryIndexes"]);
    let indexes: Vec<&str> = index_list.iter().filter_map(|i| i["IndexName"].as_str()).collect();
    assert!(indexes.contains(&"GSI1"), "{indexes:?}");
    // The active-rooms index must stay keys-only: with any projected attribute, every member-count change (each
    // join, leave, connect and disconnect) would write the index too.
    let active_rooms =
        index_list.iter().find(|i| i["IndexName"].as_str() == Some("ActiveRooms")).expect("the ActiveRooms index");
    assert_eq!(active_rooms["Projection"]["ProjectionType"].as_str(), Some("KEYS_ONLY"), "{active_rooms:?}");
    let index_key: Vec<&str> =
        as_list(&active_rooms["KeySchema"]).iter().filter_map(|k| k["AttributeName"].as_str()).collect();
    assert_eq!(index_key, ["active_shard", "active_room"]);
}

#[test]
fn stage_is_throttled_and_its_access_log_never_records_tokens() {
    let (stage_id, stage) = single_resource("AWS::ApiGatewayV2::Stage");
    let settings = &stage["Properties"]["DefaultRouteSettings"];
    assert!(!settings["ThrottlingBurstLimit"].is_null() && !settings["ThrottlingRateLimit"].is_null(), "{stage_id}");
    assert_ne!(settings["DataTraceEnabled"].as_bool(), Some(true), "data traces log full messages");
    let format = stage["Properties"]["AccessLogSettings"]["Format"].as_str().expect("access log format");
    let fields = check_access_log_format(format);
    for key in ["requestId", "ip", "routeKey", "status", "connectionId", "eventType", "integrationError"] {
        assert!(fields.contains_key(key), "access log lacks {key}: {format}");
    }

    let (_, http_api) = single_resource("AWS::Serverless::HttpApi");
    let format = http_api["Properties"]["AccessLogSettings"]["Format"].as_str().expect("HTTP access log format");
    let fields = check_access_log_format(format);
    for key in ["requestId", "ip", "routeKey", "status"] {
        assert!(fields.contains_key(key), "HTTP access log lacks {key}: {format}");
    }
}

#[test]
fn outputs_name_every_endpoint_and_the_emit_function() {
    for output in ["WebSocketUrl", "ManagementEndpoint", "HttpApiUrl", "EmitFunctionArn"] {
        assert!(!template()["Outputs"][output]["Value"].is_null(), "missing output {output}");
    }
    let (emit_id, _) = &functions_by_folder()["emit"];
    let arn = &template()["Outputs"]["EmitFunctionArn"]["Value"]["Fn::GetAtt"];
    assert_eq!(as_list(arn).first().and_then(|v| v.as_str()), Some(emit_id.as_str()));
}

// ─────────────────────────────────────────── helpers ───────────────────────────────────────────

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

fn template() -> &'static Value {
    static TEMPLATE: LazyLock<Value> = LazyLock::new(|| {
        let text = std::fs::read_to_string(workspace().join("template.yaml")).expect("read template.yaml");
        serde_yaml::from_str(&text).expect("template.yaml is YAML")
    });
    &TEMPLATE
}

fn resources() -> &'static serde_yaml::Mapping {
    template()["Resources"].as_mapping().expect("Resources")
}

fn resource(logical_id: &str) -> &'static Value {
    let value = &template()["Resources"][logical_id];
    assert!(!value.is_null(), "no resource {logical_id}");
    value
}

fn resources_of_type(kind: &str) -> Vec<(&'static str, &'static Value)> {
    resources()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().expect("logical ids are strings"), r))
        .collect()
}

fn single_resource(kind: &str) -> (&'static str, &'static Value) {
    let mut found = resources_of_type(kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found.remove(0)
}

fn route(key: &str) -> (&'static str, &'static Value) {
    resources_of_type("AWS::ApiGatewayV2::Route")
        .into_iter()
        .find(|(_, r)| r["Properties"]["RouteKey"].as_str() == Some(key))
        .unwrap_or_else(|| panic!("no {key} route"))
}

/// Folder name under `functions/` → (logical id, resource).
fn functions_by_folder() -> BTreeMap<String, (String, &'static Value)> {
    let mut map = BTreeMap::new();
    for (id, function) in resources_of_type("AWS::Serverless::Function") {
        let code_uri = function["Properties"]["CodeUri"].as_str().unwrap_or_else(|| panic!("{id} CodeUri"));
        let folder = code_uri
            .strip_prefix("functions/")
            .filter(|f| !f.is_empty() && !f.contains('/'))
            .unwrap_or_else(|| panic!("{id} CodeUri must be functions/<name>, not {code_uri}"));
        let previous = map.insert(folder.to_owned(), (id.to_owned(), function));
        assert!(previous.is_none(), "two functions built from functions/{folder}");
    }
    map
}

fn function_folders() -> BTreeSet<String> {
    std::fs::read_dir(workspace().join("functions"))
        .expect("read functions/")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A function property, falling back to `Globals.Function`.
fn setting<'a>(function: &'a Value, key: &str) -> &'a Value {
    let own = &function["Properties"][key];
    if own.is_null() { &template()["Globals"]["Function"][key] } else { own }
}

/// The function's environment: `Globals` merged with its own variables, as SAM merges them.
fn environment(function: &Value) -> BTreeMap<String, Value> {
    let mut variables = BTreeMap::new();
    for source in [&template()["Globals"]["Function"], &function["Properties"]] {
        if let Some(map) = source["Environment"]["Variables"].as_mapping() {
            for (name, value) in map {
                variables.insert(name.as_str().expect("variable names are strings").to_owned(), value.clone());
            }
        }
    }
    variables
}

/// The names `Config::from_lookup` reads, parsed from its source: every `get("…")`, `secret("…"`, `number("…"`,
/// `small("…"` and `flag("…")` call. Parsing keeps this test in step with `config.rs` without a list to maintain.
fn config_variables() -> BTreeSet<String> {
    let source = std::fs::read_to_string(workspace().join("shared/src/config.rs")).expect("read config.rs");
    let mut names = BTreeSet::new();
    for reader in ["get(\"", "secret(\"", "number(\"", "small(\"", "flag(\""] {
        for (at, _) in source.match_indices(reader) {
            let preceded_by_ident = source[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
            if preceded_by_ident {
                continue;
            }
            let rest = &source[at + reader.len()..];
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            if !name.is_empty() && rest[name.len()..].starts_with('"') {
                names.insert(name);
            }
        }
    }
    for expected in ["JWT_SECRET", "INTERNAL_API_KEY", "TABLE_NAME", "WS_ENDPOINT"] {
        assert!(names.contains(expected), "parsing config.rs found no {expected}: {names:?}");
    }
    names
}

/// Every IAM statement in the template, with its owner: inline function policies and any IAM resource.
fn iam_statements() -> Vec<(String, Value)> {
    let mut statements = Vec::new();
    for (id, function) in resources_of_type("AWS::Serverless::Function") {
        for policy in as_list(&function["Properties"]["Policies"]) {
            assert!(
                policy["Statement"].is_sequence(),
                "{id}: use inline statements, not managed policies or SAM policy templates ({policy:?})"
            );
            statements.extend(as_list(&policy["Statement"]).into_iter().flat_map(branches).map(|s| (id.to_owned(), s)));
        }
    }
    for kind in ["AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for (id, resource) in resources_of_type(kind) {
            let mut found = Vec::new();
            walk(resource, "", &mut |_, value| {
                if let Some(list) = value["Statement"].as_sequence() {
                    found.extend(list.iter().cloned());
                }
            });
            statements.extend(found.into_iter().map(|s| (id.to_owned(), s)));
        }
    }
    statements
}

/// A statement, or both branches of a conditional one (`Fn::If: [condition, statement, Ref: AWS::NoValue]`): every
/// statement the template could produce is checked, whatever the parameters.
fn branches(statement: &Value) -> Vec<Value> {
    match statement["Fn::If"].as_sequence() {
        Some(parts) => parts
            .iter()
            .skip(1)
            .filter(|branch| branch["Ref"].as_str() != Some("AWS::NoValue"))
            .flat_map(branches)
            .collect(),
        None => vec![statement.clone()],
    }
}

/// `Fn::GetAtt: [X, Arn]` → `X.Arn`; `Fn::Sub: "…${X.Arn}…"` → the string.
fn describe_reference(value: &Value) -> String {
    if let Some(parts) = value["Fn::GetAtt"].as_sequence() {
        return parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(".");
    }
    if let Some(text) = sub_string(value) {
        return text.strip_prefix("${").map_or(text.clone(), |rest| rest.replacen('}', "", 1));
    }
    panic!("IAM resources must be references, got {value:?}")
}

fn target_is_index(targets: &[String]) -> bool {
    targets.iter().any(|t| t.contains("/index/"))
}

/// The folder of the function a Lambda integration or authorizer URI invokes.
fn lambda_uri_folder(uri: &Value) -> String {
    let text = sub_string(uri).unwrap_or_else(|| panic!("Lambda URI must be an Fn::Sub string: {uri:?}"));
    assert!(text.ends_with("/invocations") && text.contains(":lambda:path/2015-03-31/functions/"), "{text}");
    let function_id = sub_references(&text)
        .into_iter()
        .find_map(|r| r.strip_suffix(".Arn").map(str::to_owned))
        .unwrap_or_else(|| panic!("{text} names no function ARN"));
    let code_uri = resource(&function_id)["Properties"]["CodeUri"].as_str().expect("CodeUri").to_owned();
    code_uri.trim_start_matches("functions/").to_owned()
}

/// The string of an `Fn::Sub` (plain or with a variable map), or a literal string.
fn sub_string(value: &Value) -> Option<String> {
    match &value["Fn::Sub"] {
        Value::String(text) => Some(text.clone()),
        Value::Sequence(parts) => parts.first().and_then(Value::as_str).map(str::to_owned),
        _ => value.as_str().map(str::to_owned),
    }
}

/// The `${…}` names of an `Fn::Sub` string (`${!Literal}` escapes excluded).
fn sub_references(text: &str) -> Vec<String> {
    text.split("${")
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name))
        .filter(|name| !name.starts_with('!'))
        .map(str::to_owned)
        .collect()
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn strings(value: &Value) -> Vec<String> {
    as_list(value)
        .into_iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("expected a string: {v:?}")).to_owned())
        .collect()
}

/// Parses an access log format as JSON and checks it records no query string, header, body or token.
fn check_access_log_format(format: &str) -> serde_json::Map<String, serde_json::Value> {
    let lowered = format.to_ascii_lowercase();
    for leak in ["querystring", "request.header", "header.", "token", "authorization", "body", "x-api-key"] {
        assert!(!lowered.contains(leak), "access log format must not record `{leak}`: {format}");
    }
    match serde_json::from_str(format) {
        Ok(serde_json::Value::Object(fields)) => fields,
        other => panic!("access log format must be a JSON object: {other:?}"),
    }
}

fn walk(value: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    visit(path, value);
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                let key = key.as_str().map_or_else(|| format!("{key:?}"), str::to_owned);
                walk(child, &format!("{path}/{key}"), visit);
            }
        }
        Value::Sequence(items) => {
            for (index, child) in items.iter().enumerate() {
                walk(child, &format!("{path}/{index}"), visit);
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, path, visit),
        _ => {}
    }
}
