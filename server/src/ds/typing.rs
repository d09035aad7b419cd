//! `Typing`: a member device's typing indicator, relayed live to the
//! group's other connected roster devices and forgotten. Nothing is
//! stored, queued or sequenced, so the relay's disk never sees it and a
//! device that is offline never gets it; a full live channel loses it
//! rather than the connection.

use cascade_protocol::encode_server_frame;
use cascade_protocol::frames::{Bytes, Push, Response, ServerFrame};
use cascade_protocol::limits::MAX_TYPING_BYTES;
use cascade_protocol::{GroupId, RateScope};

use super::Session;
use crate::error::DsError;
use crate::fanout::Live;
use crate::AppState;

/// Relays the indicator from a roster device of the group, in the group's
/// current epoch, within the device's rate for the group.
pub fn handle(
    state: &AppState,
    session: &Session,
    group_id: GroupId,
    epoch: u64,
    payload: Bytes,
) -> Result<Response, DsError> {
    if payload.len() > MAX_TYPING_BYTES {
        return Err(DsError::TooLarge {
            limit: MAX_TYPING_BYTES as u64,
        });
    }
    let group = state
        .store()
        .get_group(&group_id)?
        .ok_or(DsError::UnknownGroup)?;
    if !group.roster.contains(&session.device_id) || group.stopped.contains(&session.device_id) {
        return Err(DsError::NotMember);
    }
    if epoch != group.epoch {
        return Err(DsError::WrongEpoch {
            current: group.epoch,
        });
    }
    state
        .limits()
        .typing
        .attempt(&(session.device_id, group_id))
        .map_err(|wait| {
            state.metrics().limited("typing");
            DsError::RateLimited {
                retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                scope: RateScope::Typing,
            }
        })?;
    let frame = encode_server_frame(&ServerFrame::Push(Push::Typing {
        group_id,
        sender: session.device_id,
        epoch,
        payload,
    }));
    let to: Vec<_> = group
        .roster
        .iter()
        .filter(|d| **d != session.device_id && !group.stopped.contains(d))
        .copied()
        .collect();
    state
        .registry()
        .offer_lossy(&to, &Live::Typing(frame.into()));
    Ok(Response::TypingRelayed)
}
