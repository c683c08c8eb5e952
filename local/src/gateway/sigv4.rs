//! SigV4 verification of `@connections` requests against the harness's configured credentials, so an unsigned or
//! wrongly signed management call fails offline with 403 `ForbiddenException`, as it does on AWS.
//!
//! The signature is recomputed with the `aws-sigv4` crate (the signer the AWS SDK itself uses) over exactly the
//! headers the client says it signed, with AWS's rules for non-S3 services (double-encoded canonical URI,
//! normalised path, payload hash), and compared in constant time. What is checked: the algorithm, the access key,
//! the credential scope (date, region, `execute-api`), the clock skew of `X-Amz-Date`, that `host` is signed, and
//! the signature. Not checked: IAM policies (any request signed with the configured key is allowed). No I/O.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::http::{HeaderMap, Method, Uri};
use chrono::{NaiveDateTime, TimeZone, Utc};
use subtle::ConstantTimeEq;

/// The credentials the emulated management API accepts, and the region it lives in.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: secrecy::SecretString,
    pub region: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Why a request's signature was refused. The messages are AWS's, which clients show to developers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters")]
    Malformed,
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    #[error("Credential should be scoped to a valid region, '{expected}'")]
    WrongRegion { expected: String },
    #[error("Credential should be scoped to correct service: '{}'", shared::gateway::MANAGEMENT_SIGNING_NAME)]
    WrongService,
    #[error("Signature expired: X-Amz-Date is more than 5 minutes from the server's time")]
    Expired,
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
         Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SignatureError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256").ok_or(SignatureError::Malformed)?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err(SignatureError::Malformed);
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(SignatureError::Malformed);
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    })
}

/// Verifies the SigV4 signature of one management API request.
pub(crate) fn verify(
    credentials: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), SignatureError> {
    use secrecy::ExposeSecret;

    let authorization = headers.get(axum::http::header::AUTHORIZATION).ok_or(SignatureError::Missing)?;
    let authorization = parse_authorization(authorization.to_str().map_err(|_| SignatureError::Malformed)?)?;
    if !bool::from(authorization.access_key_id.as_bytes().ct_eq(credentials.access_key_id.as_bytes())) {
        return Err(SignatureError::UnknownAccessKey);
    }
    if authorization.region != credentials.region {
        return Err(SignatureError::WrongRegion { expected: credentials.region.clone() });
    }
    if authorization.service != shared::gateway::MANAGEMENT_SIGNING_NAME {
        return Err(SignatureError::WrongService);
    }
    if !authorization.signed_headers.contains(&"host") {
        return Err(SignatureError::Mismatch);
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or(SignatureError::Malformed)?;
    let signed_at = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map(|naive| SystemTime::from(Utc.from_utc_datetime(&naive)))
        .map_err(|_| SignatureError::Malformed)?;
    let skew = now.duration_since(signed_at).or_else(|e| Ok::<Duration, ()>(e.duration())).unwrap_or_default();
    if skew > shared::gateway::MAX_SIGNATURE_SKEW {
        return Err(SignatureError::Expired);
    }
    if !amz_date.starts_with(authorization.date) {
        return Err(SignatureError::Mismatch);
    }

    // Exactly the headers the client signed, in its order; a signed header that is missing cannot verify.
    let mut signed = Vec::with_capacity(authorization.signed_headers.len());
    for name in &authorization.signed_headers {
        let values: Vec<&str> = headers.get_all(*name).iter().filter_map(|v| v.to_str().ok()).collect();
        if values.is_empty() {
            return Err(SignatureError::Mismatch);
        }
        signed.extend(values.into_iter().map(|value| (*name, value)));
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = SignableRequest::new(method.as_str(), path_and_query, signed.into_iter(), SignableBody::Bytes(body))
        .map_err(|_| SignatureError::Malformed)?;

    // The client decides which headers it signs; none is excluded when recomputing.
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    let identity: Identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        credentials.secret_access_key.expose_secret(),
        None,
        None,
        "bellhop-harness",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&credentials.region)
        .name(shared::gateway::MANAGEMENT_SIGNING_NAME)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| SignatureError::Malformed)?
        .into();
    let expected = sign(request, &params).map_err(|_| SignatureError::Mismatch)?;
    if bool::from(expected.signature().as_bytes().ct_eq(authorization.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use aws_sigv4::http_request::SignableBody;

    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "secret".to_owned().into(),
            region: "us-east-1".into(),
        }
    }

    /// Signs a request the way the AWS SDK does, with `secret` and `region`.
    fn signed(secret: &str, region: &str, body: &[u8], at: SystemTime) -> (Uri, HeaderMap) {
        let uri: Uri = "/local/%40connections/gbf_-C9vMQAYKEiZoA%3D%3D".parse().expect("uri");
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:3001".parse().expect("host"));
        headers.insert("content-type", "application/octet-stream".parse().expect("type"));
        let identity: Identity = aws_credential_types::Credentials::new("AKIDTEST", secret, None, None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("execute-api")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.to_str().expect("ascii"))).collect();
        let request = SignableRequest::new("POST", uri.to_string(), pairs.into_iter(), SignableBody::Bytes(body))
            .expect("signable");
        let (instructions, _) = sign(request, &params).expect("sign").into_parts();
        for (name, value) in instructions.headers() {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        (uri, headers)
    }

    #[test]
    fn a_request_signed_with_the_configured_key_verifies() {
        let now = SystemTime::now();
        let (uri, headers) = signed("secret", "us-east-1", b"hi", now);
        assert_eq!(verify(&credentials(), &Method::POST, &uri, &headers, b"hi", now), Ok(()));
    }

    #[test]
    fn a_changed_body_a_wrong_secret_or_region_or_an_old_date_is_refused() {
        let now = SystemTime::now();
        let (uri, headers) = signed("secret", "us-east-1", b"hi", now);
        assert_eq!(verify(&credentials(), &Method::POST, &uri, &headers, b"ho", now), Err(SignatureError::Mismatch));
        let (uri, headers) = signed("other", "us-east-1", b"hi", now);
        assert_eq!(verify(&credentials(), &Method::POST, &uri, &headers, b"hi", now), Err(SignatureError::Mismatch));
        let (uri, headers) = signed("secret", "eu-west-1", b"hi", now);
        assert!(matches!(
            verify(&credentials(), &Method::POST, &uri, &headers, b"hi", now),
            Err(SignatureError::WrongRegion { .. })
        ));
        let old = now - Duration::from_secs(600);
        let (uri, headers) = signed("secret", "us-east-1", b"hi", old);
        assert_eq!(verify(&credentials(), &Method::POST, &uri, &headers, b"hi", now), Err(SignatureError::Expired));
    }

    #[test]
    fn an_unsigned_request_is_missing_its_token() {
        let uri: Uri = "/local/@connections/x".parse().expect("uri");
        let result = verify(&credentials(), &Method::GET, &uri, &HeaderMap::new(), b"", SystemTime::now());
        assert_eq!(result, Err(SignatureError::Missing));
    }

    #[test]
    fn authorization_headers_are_parsed_into_their_scope() {
        let parsed = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20260924/us-east-1/execute-api/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .expect("parsed");
        assert_eq!(parsed.access_key_id, "AKID");
        assert_eq!(parsed.region, "us-east-1");
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(parse_authorization("Bearer x"), Err(SignatureError::Malformed));
    }
}
