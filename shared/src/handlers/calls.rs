//! Calls: being written.

use async_trait::async_trait;

/// Schedules the check that turns an unanswered call into a missed one.
#[async_trait]
pub trait CallTimer: Send + Sync + 'static {
    async fn schedule_missed_check(&self, call_id: &str, after_seconds: u64) -> Result<(), crate::store::BoxError>;
}
