//! End-to-end tests: real `tokio-tungstenite` clients and HTTP clients against the local harness, spawned on
//! `127.0.0.1:0` with fresh state for every test. Set `TEST_LOG=1` to see the harness's logs.

mod helpers;

mod cli;
mod console;
mod dynamo_costs;
mod emit;
mod emulation;
mod gateway_fidelity;
mod harness_safety;
mod http_api;
mod protocol;
mod sdk_pusher;
mod seed_000_grooming_appointments;
mod seed_001_booking_chat;
mod seed_002_marketplace_events;
mod seed_003_telehealth;
mod seed_004_clinic_roles;
mod store_outage;
mod trust;
