//! `GetUser`: the directory.

use cascade_protocol::frames::{Response, UserEntry};
use cascade_protocol::UserId;

use super::Session;
use crate::error::DsError;
use crate::store::{Store, StoreError, User};
use crate::trust::mutually_trusted;
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

/// Looks up a user; `UnknownUser` if there is none, or if the caller's
/// organisation and theirs do not pin each other ([`mutually_trusted`]):
/// an organisation nobody trusts learns nothing of others' staff.
pub fn handle_get_user(
    state: &AppState,
    session: &Session,
    user_id: &UserId,
) -> Result<Response, DsError> {
    let store = &**state.store();
    if !mutually_trusted(store, &session.user_id.org(), &user_id.org())? {
        return Err(DsError::UnknownUser);
    }
    let user = store.get_user(user_id)?.ok_or(DsError::UnknownUser)?;
    Ok(Response::User(user_entry(store, user)?))
}

/// `SearchDirectory`: people of the given organisations whose name, role or
/// user id contains `query` (case-insensitive), with their devices'
/// certificates. Only users with at least one certified, unrevoked device
/// are listed; clients verify the certificates before showing anyone.
/// Organisations that do not pin the caller's, or that it does not pin
/// ([`mutually_trusted`]), are left out.
pub fn handle_search(
    state: &AppState,
    session: &Session,
    orgs: &[cascade_protocol::OrgId],
    query: &str,
) -> Result<Response, DsError> {
    use cascade_protocol::frames::{Bytes, DirectoryEntry};
    use cascade_protocol::limits::{MAX_DIRECTORY_ORGS, MAX_DIRECTORY_RESULTS, MAX_NAME_BYTES};
    if orgs.len() > MAX_DIRECTORY_ORGS {
        return Err(DsError::TooLarge {
            limit: MAX_DIRECTORY_ORGS as u64,
        });
    }
    if query.len() > MAX_NAME_BYTES {
        return Err(DsError::TooLarge {
            limit: MAX_NAME_BYTES as u64,
        });
    }
    let needle = query.to_lowercase();
    // Each organisation once, whatever the request repeats.
    let mut orgs = orgs.to_vec();
    orgs.sort();
    orgs.dedup();
    let store = &**state.store();
    let mut entries = Vec::new();
    let own = session.user_id.org();
    'orgs: for org in &orgs {
        if !mutually_trusted(store, &own, org)? {
            continue;
        }
        for user in store.list_users(org)? {
            let matches = needle.is_empty()
                || user.display_name.to_lowercase().contains(&needle)
                || user.role.to_lowercase().contains(&needle)
                || user.user_id.as_str().contains(&needle);
            if !matches {
                continue;
            }
            let certificates: Vec<Bytes> = store
                .devices_of_user(&user.user_id)?
                .into_iter()
                .filter(|d| !d.revoked)
                .filter_map(|d| d.certificate)
                .collect();
            if certificates.is_empty() {
                continue;
            }
            entries.push(DirectoryEntry {
                user_id: user.user_id,
                certificates,
            });
            if entries.len() == MAX_DIRECTORY_RESULTS {
                break 'orgs;
            }
        }
    }
    Ok(Response::Directory { entries })
}
