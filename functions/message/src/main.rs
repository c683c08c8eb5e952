use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::config::Config;
use shared::handlers::message;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init_lambda();
    let deps = shared::cloud::deps(Config::from_env()?).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
        message::handle(deps, event.payload).await
    }))
    .await
}
