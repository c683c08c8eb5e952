//! A hello-world Lambda function on `lambda_runtime`, as small as one can be written: no configuration, no SDK
//! client, no logging set-up. It answers every event with `{"hello": "world"}`. The benchmark (`bench init`)
//! compares each function's init time with this one's, both built with the same profile, so the ratio is what the
//! functions' own start-up adds to the runtime's.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, lambda_runtime::Error>(json!({"hello": "world"}))
    }))
    .await
}
