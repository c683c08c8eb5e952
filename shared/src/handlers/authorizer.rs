//! authorizer: being written.
