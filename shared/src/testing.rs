//! Support for tests that need an external service (DynamoDB Local, the SQS emulator), shared by the unit tests
//! here and the end-to-end suite. Only built for tests and with the `test-util` feature.

/// The value of `name`, which a test that needs `what` reads the service's location from. When it is not set the
/// test is skipped, saying so on the process's stderr (`eprintln!` is captured for passing tests, and a skip must
/// be visible); with `TEST_INTEGRATION=1`, as `scripts/test.sh` sets, a missing service fails the test instead, so
/// CI cannot pass by silently testing nothing.
pub fn integration_var(name: &str, what: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
        _ if std::env::var("TEST_INTEGRATION").as_deref() == Ok("1") => {
            panic!("TEST_INTEGRATION=1 but {name} is not set: {what} is required; run scripts/test.sh")
        }
        _ => {
            let line = format!("SKIPPED: {what} is not configured (set {name} or run scripts/test.sh)\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            None
        }
    }
}
