//! Building the SDK client: retries, timeouts, and the dummy identity DynamoDB Local needs.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::ProvideRegion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Region;

use super::counter::RequestCounter;

/// Retries and timeouts for every DynamoDB call. Throttling and transient errors (5xx, dropped connections) are
/// retried by the SDK's standard strategy with jittered exponential backoff from 50 ms; after the last attempt the
/// error reaches the handler, which answers `INTERNAL`. The bounds keep a store that stays down well inside a
/// Lambda's timeout, so the client gets an answer instead of a timed-out invocation.
pub(super) const MAX_ATTEMPTS: u32 = 4;
pub(super) const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);

pub(super) async fn client_from_config(endpoint: Option<&str>, counter: Option<&RequestCounter>) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    let mut local_region = None;
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        // DynamoDB Local needs some signature but no real identity. Only the environment is consulted here: the full
        // chain would probe the EC2 metadata service and stall start-up for seconds on a laptop.
        if aws_config::environment::EnvironmentVariableCredentialsProvider::new().provide_credentials().await.is_err() {
            loader = loader.credentials_provider(Credentials::new(
                LOCAL_ACCESS_KEY,
                LOCAL_SECRET_KEY,
                None,
                None,
                "bellhop-local",
            ));
        }
        if aws_config::environment::EnvironmentVariableRegionProvider::new().region().await.is_none() {
            local_region = Some(Region::new(LOCAL_REGION));
            loader = loader.region(Region::new(LOCAL_REGION));
        }
    }
    let sdk_config = loader.load().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk_config);
    if let Some(region) = local_region {
        builder = builder.region(region);
    }
    client_from_sdk_config(builder, counter)
}

/// The client for `builder` with this adapter's retries and timeouts, and `counter` attached when given.
pub(super) fn client_from_sdk_config(
    builder: aws_sdk_dynamodb::config::Builder,
    counter: Option<&RequestCounter>,
) -> Client {
    let mut builder = builder
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(counter) = counter {
        builder = counter.attach(builder);
    }
    Client::from_conf(builder.build())
}

pub(super) const LOCAL_ACCESS_KEY: &str = "bellhoplocal";
pub(super) const LOCAL_SECRET_KEY: &str = "bellhoplocal";
pub(super) const LOCAL_REGION: &str = "us-east-1";
