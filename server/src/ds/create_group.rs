//! `CreateGroup`: register a new group with the caller as its only member.

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
