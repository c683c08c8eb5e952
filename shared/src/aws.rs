//! Loading the AWS SDK configuration the AWS adapters share: the Lambdas load it once at cold start for their
//! DynamoDB, Management API and SQS clients. Against DynamoDB Local the DynamoDB adapter has rules of its own (see
//! `store::dynamo`).

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Region used when none is configured: signing needs one even against a local emulator.
const FALLBACK_REGION: &str = crate::gateway::DEFAULT_REGION;

/// The roots of Amazon Trust Services (Amazon Root CA 1–4 and Starfield Services Root G2), in PEM.
pub const AMAZON_TRUST_SERVICES_ROOTS: &str = include_str!("../certs/amazon-trust-services.pem");

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

/// The SDK configuration of a Lambda function, built for a short cold start.
///
/// The default loader costs about 3 ms of a function's 5 ms init, measured with `bench init` (bench/RESULTS.md), for
/// two things a function does not need:
/// - The default credentials chain builds a client for every source it might ask (web identity, ECS, IMDS, ...).
///   Lambda gives a function its role's credentials and its Region in environment variables
///   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`), so only those are read.
/// - The default HTTPS client trusts the platform's roots: it reads the whole CA bundle (146 certificates on
///   `provided.al2023`) and parses it into a root store for every client it builds. Every endpoint a function calls
///   (DynamoDB, SQS, and the Management API at `execute-api`, or at a custom domain whose certificate comes from
///   ACM) presents a chain to Amazon Trust Services, so the functions trust those five roots, compiled in, and
///   nothing else.
///
/// `ssl_cert_file` (`SSL_CERT_FILE`) puts the platform's way back: the functions then trust that bundle instead,
/// for egress that re-signs TLS. The SDK reads it and skips a certificate it cannot parse.
pub async fn load_in_lambda(ssl_cert_file: Option<&str>) -> SdkConfig {
    let trust_store = match ssl_cert_file {
        Some(_) => TrustStore::default(),
        None => TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS),
    };
    aws_config::defaults(BehaviorVersion::latest())
        .region(EnvironmentVariableRegionProvider::new())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .http_client(https_client(trust_store))
        .load()
        .await
}

/// The SDK's own HTTPS client (hyper 1, rustls, aws-lc) with the given trust store.
fn https_client(trust_store: TrustStore) -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        // `build` cannot fail today; should it ever, the platform's roots are a safe, slower fallback.
        .tls_context(TlsContext::builder().with_trust_store(trust_store).build().unwrap_or_default())
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_store_is_the_five_amazon_trust_services_roots() {
        assert_eq!(AMAZON_TRUST_SERVICES_ROOTS.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        assert_eq!(AMAZON_TRUST_SERVICES_ROOTS.matches("-----END CERTIFICATE-----").count(), 5);
    }

    /// Building a client makes the SDK parse the trust store into rustls roots, with `expect`: a certificate it could
    /// not parse would abort every function's init, so this test must not panic.
    #[tokio::test]
    async fn sdk_clients_build_on_the_amazon_trust_store() {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(FALLBACK_REGION))
            .credentials_provider(Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"))
            .http_client(https_client(TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS)))
            .load()
            .await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        assert_eq!(client.config().region().map(Region::as_ref), Some(FALLBACK_REGION));
    }
}
