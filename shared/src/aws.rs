//! Loading the AWS SDK configuration the AWS adapters share: the Lambdas load it once at cold start for their
//! DynamoDB, Management API and SQS clients. Against DynamoDB Local the DynamoDB adapter has rules of its own (see
//! `store::dynamo`).

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Region used when none is configured: signing needs one even against a local emulator.
const FALLBACK_REGION: &str = crate::gateway::DEFAULT_REGION;

/// The SDK configuration from the usual AWS chain, the region falling back to `us-east-1`, for clients that talk to
/// `endpoint` instead of the service's default one when it is given.
///
/// A plain-HTTP endpoint can only be an emulator (AWS endpoints are HTTPS only), so requests to it are signed with
/// fixed dummy credentials: that works offline without any AWS set-up, and never spends real credentials'
/// signatures on a test server.
pub async fn load(endpoint: Option<&str>) -> SdkConfig {
    let region = RegionProviderChain::default_provider().or_else(Region::new(FALLBACK_REGION));
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint.trim_end_matches('/'));
    }
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        loader = loader.credentials_provider(Credentials::new(
            crate::gateway::LOCAL_ACCESS_KEY_ID,
            crate::gateway::LOCAL_SECRET_ACCESS_KEY,
            None,
            None,
            "bellhop-local",
        ));
    }
    loader.load().await
}
