//! The `$connect` REQUEST authorizer: verifies the platform JWT and answers API Gateway with an IAM policy and the
//! caller's identity as `context`, which API Gateway then attaches to every CONNECT, MESSAGE and DISCONNECT event of
//! the connection. No later handler needs a lookup to know who is talking.
//!
//! Outcomes, as API Gateway turns them into handshake statuses: no token → `Err(Unauthorized)` → 401; a token that
//! fails verification → `Deny` → 403; a valid token → `Allow`.

use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde_json::Value;

use crate::auth::{TokenVerifier, extract_token};

/// The authorizer refuses without a policy: API Gateway answers 401 and never calls `$connect`.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// No token was presented. The Lambda runtime reports this as the error message `Unauthorized`, which API
    /// Gateway turns into HTTP 401.
    #[error("Unauthorized")]
    Unauthorized,
}

#[tracing::instrument(name = "authorizer", skip_all)]
pub async fn handle(
    verifier: &TokenVerifier,
    request: ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, AuthorizerError> {
    let query: HashMap<String, String> = request
        .query_string_parameters
        .first("token")
        .map(|t| ("token".to_owned(), t.to_owned()))
        .into_iter()
        .collect();
    let Some((token, source)) = extract_token(&query, &request.headers) else {
        tracing::info!("connect refused: no token");
        return Err(AuthorizerError::Unauthorized);
    };
    let resource = request.method_arn.clone().unwrap_or_default();
    match verifier.verify(&token) {
        Ok(identity) => {
            tracing::info!(user_id = %identity.user_id, role = ?identity.role, ?source, "connect allowed");
            let context = identity.to_authorizer_context().into_iter().collect::<serde_json::Map<String, Value>>();
            Ok(policy(identity.user_id.to_string(), IamPolicyEffect::Allow, resource, Value::Object(context)))
        }
        Err(error) => {
            tracing::info!(reason = error.code().as_str(), "connect denied");
            Ok(policy("anonymous".to_owned(), IamPolicyEffect::Deny, resource, Value::Object(Default::default())))
        }
    }
}

fn policy(
    principal: String,
    effect: IamPolicyEffect,
    resource: String,
    context: Value,
) -> ApiGatewayCustomAuthorizerResponse {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = effect;
    statement.resource = vec![resource];
    let mut document = ApiGatewayCustomAuthorizerPolicy::default();
    document.version = Some("2012-10-17".to_owned());
    document.statement = vec![statement];
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(principal);
    response.policy_document = document;
    response.context = context;
    response
}

/// Whether a policy returned by [`handle`] allows the connection; the harness and tests read it this way.
pub fn is_allowed(response: &ApiGatewayCustomAuthorizerResponse) -> bool {
    !response.policy_document.statement.is_empty()
        && response.policy_document.statement.iter().all(|s| s.effect == IamPolicyEffect::Allow)
}
