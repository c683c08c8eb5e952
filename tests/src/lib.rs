//! Test support shared by the test targets of this package (`e2e/`, `template/`, `lambda/`) and by benchmarks:
//! a local Lambda Runtime API with a function process driven through it ([`runtime_api`]), the environment
//! `template.yaml` gives each function resolved for a local run, with its policy ([`sam_env`]), a proxy recording the
//! IAM permissions each function's AWS requests need ([`aws_calls`]), and the function binaries themselves
//! ([`function_binaries`]).

pub mod aws_calls;
pub mod function_binaries;
pub mod runtime_api;
pub mod sam_env;
