//! `PostBlob` and `GetBlob`: tickets for an attachment's ciphertext at the
//! relay's blob endpoints ([`crate::blobs`]), for member devices only.

use cascade_protocol::frames::{Bytes, Response};
use cascade_protocol::GroupId;

use super::Session;
use crate::blobs::{Access, Blobs, Scope};
use crate::error::DsError;
use crate::AppState;

fn blobs(state: &AppState) -> Result<&Blobs, DsError> {
    state
        .blobs()
        .map(|b| &**b)
        .ok_or(DsError::Malformed("this relay keeps no attachments"))
}

fn digest(bytes: &Bytes) -> Result<[u8; 32], DsError> {
    <[u8; 32]>::try_from(bytes.as_ref())
        .map_err(|_| DsError::Malformed("a blob's digest is 32 octets (SHA-256)"))
}

/// Whether the caller is in the group's roster, reading it.
fn member(state: &AppState, session: &Session, group_id: &GroupId) -> Result<bool, DsError> {
    Ok(state.store().get_group(group_id)?.is_some_and(|g| {
        g.roster.contains(&session.device_id) && !g.stopped.contains(&session.device_id)
    }))
}

/// Records a blob posted to a group the caller is in, and gives a ticket
/// to upload what the relay does not have yet.
pub fn post(
    state: &AppState,
    session: &Session,
    group_id: GroupId,
    digest_bytes: &Bytes,
    size: u64,
) -> Result<Response, DsError> {
    let blobs = blobs(state)?;
    let digest = digest(digest_bytes)?;
    if !member(state, session, &group_id)? {
        return Err(DsError::NotMember);
    }
    upload(blobs, session, Scope::Group(group_id), digest, size)
}

/// Records a blob posted for the caller's user's own devices (a linked
/// device's history), and gives a ticket to upload it.
pub fn post_own(
    state: &AppState,
    session: &Session,
    digest_bytes: &Bytes,
    size: u64,
) -> Result<Response, DsError> {
    let blobs = blobs(state)?;
    let digest = digest(digest_bytes)?;
    upload(blobs, session, Scope::Own, digest, size)
}

fn upload(
    blobs: &Blobs,
    session: &Session,
    scope: Scope,
    digest: [u8; 32],
    size: u64,
) -> Result<Response, DsError> {
    let offset = blobs.post(&session.user_id, scope, digest, size)?;
    let token = blobs.ticket(session.device_id, digest, Access::Upload);
    Ok(Response::BlobTicket {
        token: Bytes::from(token.to_vec()),
        offset,
        size,
    })
}

/// Deletes a blob for a device of the user who first posted it; a blob
/// that is not there is deleted already.
pub fn delete(
    state: &AppState,
    session: &Session,
    digest_bytes: &Bytes,
) -> Result<Response, DsError> {
    let blobs = blobs(state)?;
    let digest = digest(digest_bytes)?;
    match blobs.meta(&digest) {
        None => Ok(Response::BlobDeleted),
        Some(meta) if meta.poster.as_ref() == Some(&session.user_id) => {
            blobs.delete(&digest);
            Ok(Response::BlobDeleted)
        }
        Some(_) => Err(DsError::NotMember),
    }
}

/// A ticket to fetch a whole blob, for a member of a group it was posted
/// to. Anyone else learns nothing of it, not even whether it exists.
pub fn get(state: &AppState, session: &Session, digest_bytes: &Bytes) -> Result<Response, DsError> {
    let blobs = blobs(state)?;
    let digest = digest(digest_bytes)?;
    let meta = blobs.meta(&digest).ok_or(DsError::NotMember)?;
    let mut allowed = meta.own && meta.poster.as_ref() == Some(&session.user_id);
    for g in &meta.groups {
        if allowed {
            break;
        }
        if member(state, session, g)? {
            allowed = true;
            break;
        }
    }
    if !allowed {
        return Err(DsError::NotMember);
    }
    if !meta.complete {
        // Its sender is still uploading it.
        return Err(DsError::Unavailable {
            retry_after_ms: 2_000,
        });
    }
    let token = blobs.ticket(session.device_id, digest, Access::Download);
    Ok(Response::BlobTicket {
        token: Bytes::from(token.to_vec()),
        offset: meta.size,
        size: meta.size,
    })
}
