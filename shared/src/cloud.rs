//! The Lambda functions' composition root: which adapters stand behind the ports in the cloud. Every function but
//! the authorizer builds its [`Deps`] here; the authorizer only verifies tokens and builds nothing else, so it does
//! no I/O at all.
//!
//! This is the one place in the library that knows both the handlers and the AWS adapters; handlers see only the
//! ports.

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::handlers::Deps;
use crate::push::apigw::ApiGatewayPusher;
use crate::store::dynamo::DynamoStore;
use crate::timer::sqs::SqsTimer;
use crate::timer::{OnTouchTimer, Timer};

/// The cloud wiring every function but the authorizer shares: DynamoDB store, Management API pusher at
/// `WS_ENDPOINT`, and the call timer: delayed SQS messages when `MISSED_CALL_QUEUE_URL` is set, otherwise only the
/// on-touch expiry. The AWS configuration (region and credentials from Lambda's environment, the Amazon Trust
/// Services roots) is loaded once at cold start and shared by the three clients.
pub async fn deps(config: Config) -> Result<Deps, ConfigError> {
    let endpoint = config.management_endpoint.clone().ok_or(ConfigError::Missing("WS_ENDPOINT"))?;
    let sdk_config = crate::aws::load_in_lambda(config.ssl_cert_file.as_deref()).await;
    let store = match config.dynamodb_endpoint.as_deref() {
        // An endpoint override is DynamoDB Local, which has credential rules of its own.
        Some(dynamodb_endpoint) => DynamoStore::from_config(&config.table_name, Some(dynamodb_endpoint)).await,
        None => DynamoStore::from_sdk_config(&sdk_config, &config.table_name),
    };
    let pusher = ApiGatewayPusher::from_sdk_config(&sdk_config, &endpoint);
    // Building the SQS client sends nothing, so functions that never start a call pay only for its set-up.
    let timer: Arc<dyn Timer> = match &config.missed_call_queue_url {
        Some(queue_url) => Arc::new(SqsTimer::from_sdk_config(&sdk_config, queue_url.as_str())),
        None => Arc::new(OnTouchTimer),
    };
    Ok(Deps::new(config, Arc::new(store), Arc::new(pusher), timer))
}
