use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::config::Config;
use shared::handlers::{Deps, authorizer};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init_lambda();
    let deps = Deps::for_lambda(Config::from_env()?).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            authorizer::handle(deps, event.payload).await
        },
    ))
    .await
}
