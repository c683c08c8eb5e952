use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::Config;
use shared::handlers::emit;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init_lambda();
    let deps = shared::cloud::deps(Config::from_env()?).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        emit::handle_value(deps, event.payload).await.map_err(lambda_runtime::Error::from)
    }))
    .await
}
