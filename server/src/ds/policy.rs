//! The conversation's policy as the relay sees it (protocol §14.8).
//!
//! Every commit bundle carries the new epoch's GroupInfo, which is public
//! to the relay anyway (it serves it for external joins) and holds the
//! room: the conversation's admins and which role may do what. The relay
//! judges each commit as every client does ([`room::check_commit`]) on what
//! it can see: a change of the room (admins, policy, URI), adding people
//! who are not in the conversation, and removing others. It refuses such a
//! commit from a user the room before it does not allow, with `Forbidden`,
//! so a forbidden change is neither sequenced nor applied to the roster
//! (which would cut the removed off from delivery although every client
//! refuses it), and the conversation does not stall on it.
//!
//! A removal needs no role when the device asked to leave (it sent a
//! proposal, recorded in [`Group::leaving`]), is the committer's own, is
//! revoked, or is of an organisation the committer's does not trust both
//! ways: the cases in which clients remove members on their own.

use std::collections::{BTreeSet, HashSet};

use cascade_protocol::frames::CommitBundle;
use cascade_protocol::mls_header::group_info_extension;
use cascade_protocol::room::{self, Room, ROOM_EXTENSION};
use cascade_protocol::{DeviceId, UserId};

use crate::error::DsError;
use crate::store::{Group, Store};

/// The room in a GroupInfo message; `None` without one (a conversation from
/// before rooms) or one that does not decode (clients read it the same).
fn room_in(group_info: &[u8]) -> Option<Room> {
    group_info_extension(group_info, ROOM_EXTENSION)
        .ok()
        .flatten()
        .and_then(Room::decode)
}

/// Whether `user` has a device in the roster.
fn in_roster(
    store: &dyn Store,
    roster: &HashSet<&DeviceId>,
    user: &UserId,
) -> Result<bool, DsError> {
    Ok(store
        .devices_of_user(user)?
        .iter()
        .any(|d| roster.contains(&d.device_id)))
}

/// Refuses a commit the room before it does not let `committer` make.
/// Only reads what it needs: nothing for a commit that neither changes the
/// room nor adds a device (the common one).
pub(super) fn check(
    store: &dyn Store,
    group: &Group,
    committer: &UserId,
    bundle: &CommitBundle,
    external: bool,
) -> Result<(), DsError> {
    let after = room_in(&bundle.group_info);
    let before = store
        .group_info(&bundle.group_id)?
        .and_then(|(_, info)| room_in(&info));
    if external {
        // A device joining on its own changes nothing of the room.
        return if after == before {
            Ok(())
        } else {
            Err(DsError::Forbidden(
                "an external join may not change the conversation's room".into(),
            ))
        };
    }
    if after == before && bundle.added.is_empty() && bundle.removed.is_empty() {
        return Ok(());
    }
    let Some(before_room) = &before else {
        return room::check_commit(None, after.as_ref(), &no_changes(committer))
            .map_err(|e| DsError::Forbidden(e.to_string()));
    };
    let roster: HashSet<&DeviceId> = group.roster.iter().collect();
    // The users the judgement turns on: the committer and the admins.
    let mut members = BTreeSet::from([committer.clone()]);
    for admin in &before_room.admins {
        if in_roster(store, &roster, admin)? {
            members.insert(admin.clone());
        }
    }
    let mut added = BTreeSet::new();
    for device in &bundle.added {
        if let Some(d) = store.get_device(device)? {
            if !in_roster(store, &roster, &d.user_id)? {
                added.insert(d.user_id);
            }
        }
    }
    // Users whose every device this commit removes: they leave the admins
    // with it, whoever commits it. Those removed against their will need
    // the role.
    let removed: HashSet<&DeviceId> = bundle.removed.iter().collect();
    let mut gone = BTreeSet::new();
    let mut against_will = BTreeSet::new();
    for device in &bundle.removed {
        if let Some(d) = store.get_device(device)? {
            let on_their_own = group.leaving.contains(device)
                || d.user_id == *committer
                || d.revoked
                || !crate::trust::mutually_trusted(store, &committer.org(), &d.user_id.org())?;
            if !on_their_own {
                against_will.insert(d.user_id.clone());
            }
            let all_go = store
                .devices_of_user(&d.user_id)?
                .iter()
                .filter(|o| roster.contains(&o.device_id))
                .all(|o| removed.contains(&o.device_id));
            if all_go {
                gone.insert(d.user_id);
            }
        }
    }
    room::check_commit(
        Some(before_room),
        after.as_ref(),
        &room::CommitChanges {
            committer,
            added: &added,
            removed: &against_will,
            gone: &gone,
            members: &members,
        },
    )
    .map_err(|e| DsError::Forbidden(e.to_string()))
}

fn no_changes(committer: &UserId) -> room::CommitChanges<'_> {
    static EMPTY: BTreeSet<UserId> = BTreeSet::new();
    room::CommitChanges {
        committer,
        added: &EMPTY,
        removed: &EMPTY,
        gone: &EMPTY,
        members: &EMPTY,
    }
}
