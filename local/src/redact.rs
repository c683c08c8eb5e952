//! Keeps tokens out of logs: the harness logs request URIs, and browsers put the JWT in `?token=`.

use std::borrow::Cow;

/// Query parameters whose values are replaced before a URI is logged.
const SECRET_PARAMS: [&str; 3] = ["token", "access_token", "jwt"];

/// The URI with secret query values replaced by `REDACTED`; the path and other parameters are kept.
pub fn uri(uri: &http::Uri) -> Cow<'_, str> {
    let Some(query) = uri.query() else {
        return Cow::Borrowed(uri.path());
    };
    Cow::Owned(format!("{}?{}", uri.path(), query_string(query)))
}

/// A raw query string with secret values replaced.
pub fn query_string(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s)) => format!("{name}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_query_strings_are_redacted_and_the_rest_is_kept() {
        let parsed: http::Uri = "/local?room=a&token=eyJhbGciOi.x.y&TOKEN=z".parse().expect("uri");
        assert_eq!(uri(&parsed), "/local?room=a&token=REDACTED&TOKEN=REDACTED");
    }

    #[test]
    fn uris_without_query_are_unchanged() {
        let parsed: http::Uri = "/local/@connections/abc".parse().expect("uri");
        assert_eq!(uri(&parsed), "/local/@connections/abc");
    }
}
