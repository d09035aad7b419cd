//! `GetGroupInfo`: the latest GroupInfo, for members and for a member's new
//! device that joins by external commit; `ListGroups`: which groups those
//! are.

use cascade_protocol::frames::{Bytes, Response};
use cascade_protocol::GroupId;

use super::Session;
use crate::error::DsError;
use crate::AppState;

/// Answers the GroupInfo if the caller is in the roster or another device of
/// the caller's user is; `NotMember` otherwise.
pub fn handle(
    state: &AppState,
    session: &Session,
    group_id: &GroupId,
) -> Result<Response, DsError> {
    let store = state.store();
    let group = store.get_group(group_id)?.ok_or(DsError::UnknownGroup)?;
    if !group.roster.contains(&session.device_id) {
        let own = super::live_devices(state, &session.user_id)?;
        if !own.iter().any(|d| group.roster.contains(d)) {
            return Err(DsError::NotMember);
        }
    }
    let (epoch, group_info) = store.group_info(group_id)?.ok_or(DsError::UnknownGroup)?;
    Ok(Response::GroupInfo {
        epoch,
        group_info: Bytes::from(group_info),
    })
}

/// Lists the groups that hold an unrevoked device of the caller's user
/// (the caller's own included).
pub fn list(state: &AppState, session: &Session) -> Result<Response, DsError> {
    let devices = super::live_devices(state, &session.user_id)?;
    Ok(Response::Groups {
        group_ids: state.store().groups_with_devices(&devices)?,
    })
}
