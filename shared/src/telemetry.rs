//! Tracing set-up shared by the function binaries.
//!
//! Lambdas use the runtime's default subscriber so that the log format and level follow Lambda's log controls
//! (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`, `RUST_LOG`).

/// Initialises tracing for a Lambda function.
pub fn init_lambda() {
    lambda_runtime::tracing::init_default_subscriber();
}
