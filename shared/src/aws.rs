//! Loading the AWS SDK configuration the AWS adapters share: the Lambdas load it once at cold start for their
//! DynamoDB, Management API and SQS clients. Against DynamoDB Local the DynamoDB adapter has rules of its own (see
//! `store::dynamo`).

use std::path::Path;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Region used when none is configured: signing needs one even against a local emulator.
const FALLBACK_REGION: &str = crate::gateway::DEFAULT_REGION;

/// The SDK configuration from the usual AWS chain, the region falling back to `us-east-1`, for clients that talk to
/// `endpoint` instead of the service's default one when it is given.
///
/// A plain-HTTP endpoint can only be an emulator (AWS endpoints are HTTPS only), so requests to it are signed with
/// fixed dummy credentials: that works offline without any AWS set-up, and never spends real credentials'
/// signatures on a test server.
pub async fn load(endpoint: Option<&str>) -> SdkConfig {
    loader(endpoint).load().await
}

/// The SDK configuration a Lambda function starts with: [`load`] against AWS's own endpoints, with an HTTPS client
/// that trusts the roots of the system's CA bundle file only ([`bundle_https_client`]).
pub async fn load_for_lambda() -> SdkConfig {
    let loader = loader(None);
    match bundle_https_client() {
        Some(client) => loader.http_client(client).load().await,
        None => loader.load().await,
    }
}

fn loader(endpoint: Option<&str>) -> ConfigLoader {
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
    loader
}

/// The SDK's default HTTPS client (hyper 1, rustls on aws-lc), trusting the certificates of the system's CA bundle
/// file instead of every root `rustls-native-certs` finds.
///
/// The default loads the roots from the bundle file and then from every certificate file of the CA directory. On
/// Debian `/etc/ssl/certs` holds a hashed copy of each of the bundle's 146 certificates, and reading them took about
/// 2.7 ms of a function's 5.2 ms init against 1.5 ms for a hello-world `lambda_runtime` binary (`bench init`,
/// bench/RESULTS.md); the bundle alone has the same roots. The bundle is the one OpenSSL would use
/// (`openssl-probe`, which honours `SSL_CERT_FILE`). The SDK adds custom roots with `expect`, so only certificates
/// that rustls accepts as trust anchors are handed to it: a certificate it cannot parse must not abort a cold start.
/// `None` (keep the SDK's default) when there is no readable bundle or nothing usable in it. Unlike the default
/// client, this one does not read proxy settings from the environment: a function reaches AWS's endpoints directly.
pub fn bundle_https_client() -> Option<SharedHttpClient> {
    let bundle = openssl_probe::probe().cert_file?;
    let trust_store = trust_store_from_bundle(&bundle)?;
    let context = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()
        .map_err(|error| tracing::warn!(error = %error, "the CA bundle's trust store was refused; using the default"))
        .ok()?;
    Some(
        aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context)
            .build_https(),
    )
}

/// The usable roots of a PEM bundle, re-encoded as one PEM document, without the system's other roots.
fn trust_store_from_bundle(bundle: &Path) -> Option<TrustStore> {
    let pem = std::fs::read(bundle)
        .map_err(|error| tracing::warn!(bundle = %bundle.display(), error = %error, "cannot read the CA bundle"))
        .ok()?;
    let mut usable = String::new();
    let mut probe = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
        // The same check the SDK makes when it builds its root store from what we give it.
        if probe.add(certificate.clone()).is_ok() {
            usable.push_str(&pem_certificate(&certificate));
        }
    }
    if probe.is_empty() {
        tracing::warn!(bundle = %bundle.display(), "no usable root certificate in the CA bundle");
        return None;
    }
    Some(TrustStore::empty().with_native_roots(false).with_pem_certificate(usable.into_bytes()))
}

/// One certificate as a PEM block (RFC 7468: base64 in lines of 64 characters).
fn pem_certificate(der: &CertificateDer<'_>) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's own bundle: every certificate in it that rustls takes survives the round trip through PEM, so
    /// the trust store the functions get is the bundle's, not an empty one.
    #[test]
    fn the_bundle_trust_store_keeps_every_usable_root_of_the_system_bundle() {
        let Some(bundle) = openssl_probe::probe().cert_file else {
            eprintln!("no CA bundle on this machine: nothing to check");
            return;
        };
        let pem = std::fs::read(&bundle).expect("the probed bundle is readable");
        let mut expected = rustls::RootCertStore::empty();
        let (added, _) =
            expected.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        assert!(added > 0, "the system bundle has roots");

        assert!(trust_store_from_bundle(&bundle).is_some(), "a trust store is built from the bundle");
        // Rebuild what was handed to the SDK and compare it with what rustls parses from the bundle directly.
        let mut reencoded = String::new();
        for certificate in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
            reencoded.push_str(&pem_certificate(&certificate));
        }
        let mut roundtrip = rustls::RootCertStore::empty();
        let (roundtrip_added, _) = roundtrip
            .add_parsable_certificates(CertificateDer::pem_slice_iter(reencoded.as_bytes()).filter_map(Result::ok));
        assert_eq!(roundtrip_added, added);
        assert!(bundle_https_client().is_some(), "the client is built");
    }

    #[test]
    fn a_bundle_without_certificates_keeps_the_default() {
        let dir = std::env::temp_dir().join(format!("bellhop-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bundle = dir.join("empty.pem");
        std::fs::write(&bundle, "not a certificate\n").expect("write");
        assert!(trust_store_from_bundle(&bundle).is_none());
        assert!(trust_store_from_bundle(&dir.join("missing.pem")).is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
