//! Bellhop's hub logic, shared by every Lambda function and by the local harness.
//!
//! Layers, each importing only the ones before it:
//! - domain, no I/O: [`ids`], [`protocol`], [`auth`], [`rooms`], [`config`], and [`gateway`], the limits API Gateway
//!   enforces;
//! - ports with their adapters beside them: [`store`], [`push`], [`timer`], and [`aws`], the SDK configuration the
//!   AWS adapters share;
//! - [`handlers`]: Lambda events ↔ domain calls, through the ports only;
//! - edges: [`http`], the HTTP API as an axum `Router`, and [`cloud`], the Lambda functions' composition root.

pub mod auth;
pub mod aws;
pub mod cloud;
pub mod config;
pub mod gateway;
pub mod handlers;
pub mod http;
pub mod ids;
pub mod protocol;
pub mod push;
pub mod rooms;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod timer;
