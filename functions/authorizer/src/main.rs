use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::auth::TokenVerifier;
use shared::config::Config;
use shared::handlers::authorizer;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init_lambda();
    // The authorizer only verifies tokens: no store, pusher or queue client is built for it.
    let verifier = TokenVerifier::new(&Config::from_env()?.jwt);
    let verifier = &verifier;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            authorizer::handle(verifier, event.payload).await
        },
    ))
    .await
}
