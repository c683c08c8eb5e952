//! The HTTP API as an axum Router: placeholder until it lands.
