//! `SendMessage`: sequence an application message and queue it for every
//! other member device, or for the devices of the users it names.

use cascade_protocol::frames::{Bytes, ItemKind, Response};
use cascade_protocol::limits::{MAX_MESSAGE_EPOCH_LAG, MAX_TARGET_USERS};
use cascade_protocol::mls_header::{framing_header, ContentType, WireFormat};
use cascade_protocol::{DeviceId, GroupId, UserId};

use super::{
    check_mls_size, deliver_live, deliver_notices, durable_turn, start_sequencing,
    write_past_laggers, Handling, Session, Written,
};
use crate::error::DsError;
use crate::store::{ApplicationWrite, StoreError};
use crate::AppState;

/// Accepts an MLS `PrivateMessage` with application content for the group
/// from a member device, encrypted in the group's current epoch or at most
/// [`MAX_MESSAGE_EPOCH_LAG`] before it but not before the latest epoch that
/// added devices (else `WrongEpoch`: every recipient must be able to read
/// it), under the group's writer lock; answers
/// `MessageAccepted { seq }` only once the message is durably in every
/// recipient's queue, after delivering it live in the group's order.
pub async fn start(
    state: &AppState,
    session: &Session,
    group_id: GroupId,
    message: Bytes,
    to: Vec<UserId>,
) -> Handling {
    let (epoch, proposal) = match check(&message, group_id, &to) {
        Ok(checked) => checked,
        Err(e) => return Handling::Answered(Err(e)),
    };
    let state = state.clone();
    let session = session.clone();
    start_sequencing(move |written| async move {
        let message = Outgoing {
            epoch,
            proposal,
            message: &message,
            to: &to,
        };
        sequence(&state, &session, group_id, message, written).await
    })
    .await
}

/// A message that passed [`check`].
struct Outgoing<'a> {
    epoch: u64,
    proposal: bool,
    message: &'a Bytes,
    to: &'a [UserId],
}

/// Checks that need no state; returns the message's epoch and whether it
/// is a proposal.
fn check(message: &Bytes, group_id: GroupId, to: &[UserId]) -> Result<(u64, bool), DsError> {
    check_mls_size(message)?;
    if to.len() > MAX_TARGET_USERS {
        return Err(DsError::TooLarge {
            limit: MAX_TARGET_USERS as u64,
        });
    }
    let header = framing_header(message)
        .map_err(|_| DsError::Malformed("the message is not an MLS private message"))?;
    // Proposals travel like application messages: a member's request to
    // leave is a self-remove proposal that another member then commits.
    // Commits never do; they must go through `Commit` to be sequenced.
    if header.wire_format != WireFormat::PrivateMessage
        || !matches!(
            header.content_type,
            ContentType::Application | ContentType::Proposal
        )
    {
        return Err(DsError::Malformed(
            "the message is not an MLS private message with application or proposal content",
        ));
    }
    if header.group_id != group_id.as_bytes() {
        return Err(DsError::Malformed("the message is for another group"));
    }
    let proposal = header.content_type == ContentType::Proposal;
    // A request to leave is for every member: whoever is online commits it.
    if proposal && !to.is_empty() {
        return Err(DsError::Malformed("a proposal is for every member"));
    }
    Ok((header.epoch, proposal))
}

/// The roster devices of `users` (their revoked devices included while
/// still in the roster: the group removes them, not the relay).
fn devices_of(
    state: &AppState,
    roster: &[DeviceId],
    users: &[UserId],
) -> Result<Vec<DeviceId>, DsError> {
    let mut devices = Vec::new();
    for user in users {
        for d in state.store().devices_of_user(user)? {
            if roster.contains(&d.device_id) && !devices.contains(&d.device_id) {
                devices.push(d.device_id);
            }
        }
    }
    Ok(devices)
}

async fn sequence(
    state: &AppState,
    session: &Session,
    group_id: GroupId,
    out: Outgoing<'_>,
    written: Written,
) -> Result<Response, DsError> {
    let Outgoing {
        epoch,
        proposal,
        message,
        to,
    } = out;
    let writer = state.groups().lock(group_id).await;
    let store = state.store();
    let group = store.get_group(&group_id)?.ok_or(DsError::UnknownGroup)?;
    // A device whose delivery is stopped reads nothing of the group: it
    // rejoins before it writes again.
    if !group.roster.contains(&session.device_id) || group.stopped.contains(&session.device_id) {
        return Err(DsError::NotMember);
    }
    // Readable by every member (from an epoch they all have the secrets
    // of), and not from an epoch that does not exist.
    if epoch > group.epoch
        || epoch + MAX_MESSAGE_EPOCH_LAG < group.epoch
        || epoch < group.readable_from
    {
        return Err(DsError::WrongEpoch {
            current: group.epoch,
        });
    }
    // Addressed to some users: the devices of theirs that are members (a
    // user not in the group gets nothing; none at all is still sequenced).
    let targets = match to.is_empty() {
        true => None,
        false => Some(devices_of(state, &group.roster, to)?),
    };
    let write = ApplicationWrite {
        group_id,
        sender: session.device_id,
        message,
        leave_request: proposal,
        to: targets.as_deref(),
    };
    let (notices, outcome) =
        write_past_laggers(state, &group_id, &session.device_id, false, || {
            store.append_application(&write)
        });
    let outcome = outcome.map_err(|e| match e {
        DsError::Store(StoreError::NotFound) => DsError::UnknownGroup,
        e => e,
    });
    let outcome = match outcome {
        Err(e) if notices.is_empty() => return Err(e),
        outcome => outcome,
    };
    // Notices are written: they are flushed and delivered whatever the
    // message's outcome.
    let _turn = durable_turn(state, writer, written).await?;
    deliver_notices(state, group_id, &notices);
    let sequenced = outcome?;
    deliver_live(
        state,
        group_id,
        session.device_id,
        &sequenced,
        &[(ItemKind::Application, message)],
    );
    Ok(Response::MessageAccepted { seq: sequenced.seq })
}
