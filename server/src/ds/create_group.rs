//! `CreateGroup`: register a new group with the caller as its only member;
//! `CloseGroup`: the only member leaves, and the group goes.

use cascade_protocol::frames::{Bytes, Response};
use cascade_protocol::mls_header::WireFormat;
use cascade_protocol::GroupId;

use super::{check_mls_size, expect_wire_format, Session};
use crate::error::DsError;
use crate::store::StoreError;
use crate::AppState;

/// Creates the group at epoch 0 with roster `[caller]` and its GroupInfo,
/// durably. `GroupExists` if the id is taken; `UnknownDevice` if the caller
/// has no certificate from its organisation's CA yet (only certified
/// devices take part in groups).
pub async fn handle(
    state: &AppState,
    session: &Session,
    group_id: GroupId,
    group_info: Bytes,
) -> Result<Response, DsError> {
    check_mls_size(&group_info)?;
    expect_wire_format(
        &group_info,
        WireFormat::GroupInfo,
        "group_info is not an MLS GroupInfo message",
    )?;
    let certified = state
        .store()
        .get_device(&session.device_id)?
        .is_some_and(|d| d.certificate.is_some() && !d.revoked);
    if !certified {
        return Err(DsError::UnknownDevice);
    }
    match state
        .store()
        .create_group(&group_id, &session.device_id, &group_info)
    {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => return Err(DsError::GroupExists),
        Err(e) => return Err(e.into()),
    }
    state.flush().await?;
    tracing::debug!(group = %group_id, device = %session.device_id, "group created");
    Ok(Response::GroupCreated)
}

/// The caller, the group's only roster device, leaves: the group is
/// deleted, durably, under its writer lock. `NotMember` if the caller is
/// not in the roster; `Malformed` while others are.
pub async fn close(
    state: &AppState,
    session: &Session,
    group_id: GroupId,
) -> Result<Response, DsError> {
    let writer = state.groups().lock(group_id).await;
    let store = state.store();
    let group = store.get_group(&group_id)?.ok_or(DsError::UnknownGroup)?;
    if !group.roster.contains(&session.device_id) {
        return Err(DsError::NotMember);
    }
    if group.roster.len() > 1 {
        return Err(DsError::Malformed(
            "other devices are in the group: leave with a self-remove proposal",
        ));
    }
    match store.close_group(&group_id, &session.device_id) {
        Ok(true) => {}
        Ok(false) => {
            return Err(DsError::Malformed(
                "other devices are in the group: leave with a self-remove proposal",
            ))
        }
        Err(StoreError::NotFound) => return Err(DsError::UnknownGroup),
        Err(e) => return Err(e.into()),
    }
    drop(writer);
    state.flush().await?;
    tracing::debug!(group = %group_id, "group closed by its last member");
    Ok(Response::GroupClosed)
}
