//! Disconnect: being written.

use super::Deps;
use crate::ids::ConnectionId;

/// Removes a connection that the Management API reported gone.
pub async fn prune(_deps: &Deps, _connection: &ConnectionId) {}
