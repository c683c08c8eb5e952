//! Test support shared by the test targets of this package (`e2e/`, `template/`, `lambda/`) and by benchmarks:
//! a local Lambda Runtime API with a function process driven through it ([`runtime_api`]), the environment
//! `template.yaml` gives each function resolved for a local run ([`sam_env`]), and the function binaries
//! themselves ([`function_binaries`]).

pub mod function_binaries;
pub mod runtime_api;
pub mod sam_env;
