//! `GetUser`: the directory.

use cascade_protocol::frames::{Response, UserEntry};
use cascade_protocol::UserId;

use crate::error::DsError;
use crate::store::{Store, StoreError, User};
use crate::AppState;

/// A user's directory entry: their current (unrevoked) devices.
pub fn user_entry(store: &dyn Store, user: User) -> Result<UserEntry, StoreError> {
    let devices = store
        .devices_of_user(&user.user_id)?
        .into_iter()
        .filter(|d| !d.revoked)
        .map(|d| d.device_id)
        .collect();
    Ok(UserEntry {
        org_id: user.user_id.org(),
        user_id: user.user_id,
        display_name: user.display_name,
        role: user.role,
        devices,
    })
}

/// Looks up a user; `UnknownUser` if there is none.
pub fn handle_get_user(state: &AppState, user_id: &UserId) -> Result<Response, DsError> {
    let store = &**state.store();
    let user = store.get_user(user_id)?.ok_or(DsError::UnknownUser)?;
    Ok(Response::User(user_entry(store, user)?))
}
