//! `Ack`: remove delivered items from the caller's queue.

use cascade_protocol::frames::Response;
use cascade_protocol::limits::MAX_ACK_BATCH;

use super::Session;
use crate::error::DsError;
use crate::AppState;

/// Removes the items (unknown ids are ignored). Not flushed at once: after a
/// crash an acked item may be delivered again, which clients tolerate.
pub fn handle(state: &AppState, session: &Session, queue_ids: &[u64]) -> Result<Response, DsError> {
    if queue_ids.len() > MAX_ACK_BATCH {
        return Err(DsError::TooLarge {
            limit: MAX_ACK_BATCH as u64,
        });
    }
    state.store().ack(&session.device_id, queue_ids)?;
    Ok(Response::Acked)
}
