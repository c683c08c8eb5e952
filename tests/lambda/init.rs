//! The init phase of every function: each starts with the template's environment and polls for work, and taking
//! away a variable the template sets fails the init, naming the variable, before any invocation.

use tests::runtime_api::StartError;

use crate::Stack;

/// The seven functions: every folder of `functions/`, each declared in the template.
const FUNCTIONS: [&str; 7] = ["api", "authorizer", "call-timeout", "connect", "disconnect", "emit", "message"];

#[tokio::test]
async fn every_function_in_the_template_finishes_its_init_with_the_template_environment() {
    let Some(stack) = Stack::new().await else { return };
    let mut folders: Vec<String> = std::fs::read_dir(tests::function_binaries::workspace_root().join("functions"))
        .expect("read functions/")
        .filter_map(|entry| entry.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    folders.sort();
    assert_eq!(folders, FUNCTIONS, "a new function needs its own test here");

    for package in FUNCTIONS {
        let spec = stack.spec(package);
        let function = stack.start(package).await;

        let init = function.init_duration().expect("the first poll was seen");
        eprintln!("{package}: init {init:?} (from process start to the first /next poll)");
        for variable in &spec.template_variables {
            assert!(spec.env.contains_key(variable), "{package}: {variable} was not resolved");
        }
        function.stop().await;
    }
}

#[tokio::test]
async fn a_function_without_a_variable_the_template_sets_fails_its_init_naming_it() {
    let Some(stack) = Stack::new().await else { return };
    // One secret, the Management API endpoint, and the key only the HTTP API checks.
    let cases = [("connect", "JWT_SECRET"), ("message", "WS_ENDPOINT"), ("api", "INTERNAL_API_KEY")];

    for (package, variable) in cases {
        let started = stack
            .start_with_env(package, |env| {
                env.remove(variable);
            })
            .await;

        match started {
            Err(StartError::InitFailed { status, logs, .. }) => {
                assert!(status.is_some_and(|s| !s.success()), "{package} without {variable}: {status:?}");
                assert!(logs.contains(variable), "{package} without {variable} must name it:\n{logs}");
            }
            Err(other) => panic!("{package} without {variable}: expected an init failure, got {other}"),
            Ok(function) => panic!("{package} started without {variable}:\n{}", function.logs()),
        }
    }
}
