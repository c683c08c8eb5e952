use std::sync::Arc;

use shared::config::Config;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init_lambda();
    let deps = shared::cloud::deps(Config::from_env()?).await?;
    lambda_http::run(shared::http::router(Arc::new(deps))).await
}
