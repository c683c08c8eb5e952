//! Bellhop's hub logic, shared by every Lambda function and by the local harness.
//!
//! Pure domain modules ([`protocol`], [`auth`], [`rooms`], [`ids`]) do no I/O. Ports ([`store`], [`push`]) are
//! traits with real adapters beside them; [`schedule`] is the SQS adapter of the missed-call timer. [`handlers`]
//! maps Lambda events to domain calls and back; [`http`] is the HTTP API as an axum `Router`; [`aws`] loads the
//! SDK configuration the AWS adapters share. [`config`] reads the
//! environment once; [`gateway`] holds the limits API Gateway enforces.

pub mod auth;
pub mod aws;
pub mod config;
pub mod gateway;
pub mod handlers;
pub mod http;
pub mod ids;
pub mod protocol;
pub mod push;
pub mod rooms;
pub mod schedule;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
