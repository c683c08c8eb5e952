//! Tracing set-up shared by the function binaries, and the redaction every logged URI goes through.
//!
//! Lambdas use the runtime's default subscriber so that the log format and level follow Lambda's log controls
//! (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`, `RUST_LOG`).
//!
//! Browsers put the JWT in the query string (`?token=`), so any URI that reaches a log line (the HTTP API's trace
//! spans, the harness's request spans) passes through [`redacted_uri`] first. Names are compared after
//! percent-decoding, so `?tok%65n=` is redacted like `?token=`.

use std::borrow::Cow;

/// Initialises tracing for a Lambda function.
pub fn init_lambda() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// Query parameter names (decoded, lowercase) whose values never reach a log line.
const SECRET_PARAMS: [&str; 8] =
    ["jwt", "auth", "authorization", "api_key", "apikey", "x-api-key", "password", "secret"];

/// The path and query of `uri` with secret query values replaced by `REDACTED`; everything else is kept as sent.
pub fn redacted_uri(uri: &http::Uri) -> Cow<'_, str> {
    match uri.query() {
        None => Cow::Borrowed(uri.path()),
        Some(query) => Cow::Owned(format!("{}?{}", uri.path(), redacted_query(query))),
    }
}

/// A raw query string with the values of secret parameters replaced by `REDACTED`.
pub fn redacted_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let raw_name = pair.split_once('=').map_or(pair, |(name, _)| name);
            if is_secret_name(raw_name) { format!("{raw_name}=REDACTED") } else { pair.to_owned() }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a raw (still encoded) parameter name names a secret: any name containing `token`, or one of
/// [`SECRET_PARAMS`], once percent- and form-decoded.
fn is_secret_name(raw_name: &str) -> bool {
    let decoded: String = form_urlencoded::parse(raw_name.as_bytes()).map(|(name, _)| name.into_owned()).collect();
    let name = decoded.trim().to_ascii_lowercase();
    name.contains("token") || SECRET_PARAMS.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, expected: &str) {
        let parsed: http::Uri = uri.parse().expect("uri");
        assert_eq!(redacted_uri(&parsed), expected, "{uri}");
    }

    #[test]
    fn tokens_in_query_strings_are_redacted_and_the_rest_is_kept() {
        check("/local?room=a&token=eyJhbGciOi.x.y&TOKEN=z", "/local?room=a&token=REDACTED&TOKEN=REDACTED");
        check(
            "/me?access_token=a&id_token=b&jwt=c&x-api-key=d",
            "/me?access_token=REDACTED&id_token=REDACTED&jwt=REDACTED&x-api-key=REDACTED",
        );
    }

    #[test]
    fn percent_encoded_and_form_encoded_names_are_redacted_too() {
        check("/local?tok%65n=secret", "/local?tok%65n=REDACTED");
        check("/local?%74%6F%6B%65%6E=secret&a=b", "/local?%74%6F%6B%65%6E=REDACTED&a=b");
        check("/local?+token=secret", "/local?+token=REDACTED");
        check("/local?token", "/local?token=REDACTED");
    }

    #[test]
    fn uris_without_query_are_unchanged() {
        check("/local/@connections/abc", "/local/@connections/abc");
    }
}
