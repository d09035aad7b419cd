//! `Commit`: sequence a commit bundle (commit, Welcome, GroupInfo, roster
//! change) as one atomic, durable step.

use std::collections::HashSet;

use cascade_protocol::frames::{CommitBundle, ItemKind, Response};
use cascade_protocol::limits::MAX_GROUP_DEVICES;
use cascade_protocol::mls_header::{framing_header, ContentType, SenderType, WireFormat};

use super::{
    check_mls_size, deliver_live, deliver_notices, durable_turn, expect_wire_format,
    start_sequencing, write_past_laggers, Handling, Session, Written,
};
use crate::error::DsError;
use crate::store::{CommitWrite, StoreError};
use crate::AppState;

/// Checks that need no state: sizes, MLS framing and the bundle's shape.
/// Returns whether this is an external commit (sender `new_member_commit`).
fn check_bundle(session: &Session, bundle: &CommitBundle) -> Result<bool, DsError> {
    check_mls_size(&bundle.commit)?;
    check_mls_size(&bundle.group_info)?;
    if let Some(welcome) = &bundle.welcome {
        check_mls_size(welcome)?;
    }
    let header = framing_header(&bundle.commit)
        .map_err(|_| DsError::Malformed("the commit is not an MLS public or private message"))?;
    if header.content_type != ContentType::Commit {
        return Err(DsError::Malformed(
            "the commit message does not carry a commit",
        ));
    }
    if header.group_id != bundle.group_id.as_bytes() {
        return Err(DsError::Malformed("the commit is for another group"));
    }
    if header.epoch != bundle.epoch {
        return Err(DsError::Malformed(
            "the commit's epoch differs from the bundle's epoch",
        ));
    }
    expect_wire_format(
        &bundle.group_info,
        WireFormat::GroupInfo,
        "group_info is not an MLS GroupInfo message",
    )?;
    if let Some(welcome) = &bundle.welcome {
        expect_wire_format(
            welcome,
            WireFormat::Welcome,
            "welcome is not an MLS Welcome message",
        )?;
    }
    let added: HashSet<_> = bundle.added.iter().collect();
    let removed: HashSet<_> = bundle.removed.iter().collect();
    if added.len() != bundle.added.len() || removed.len() != bundle.removed.len() {
        return Err(DsError::Malformed("a device is listed twice"));
    }
    if !added.is_disjoint(&removed) {
        return Err(DsError::Malformed("a device is both added and removed"));
    }
    let external = header.sender == Some(SenderType::NewMemberCommit);
    if external {
        if bundle.added != [session.device_id] {
            return Err(DsError::Malformed(
                "an external commit adds exactly the committing device",
            ));
        }
        if bundle.welcome.is_some() {
            return Err(DsError::Malformed("an external commit has no Welcome"));
        }
    } else if bundle.welcome.is_some() == bundle.added.is_empty() {
        return Err(DsError::Malformed(
            "a Welcome is required exactly when devices are added",
        ));
    }
    Ok(external)
}

/// Accepts a commit for the group's current epoch from a member (or, for an
/// external commit, from a new device of a user who already has a device in
/// the group, or from a member device rejoining after it fell out of step),
/// under the group's writer lock: `WrongEpoch { current }` if
/// another commit got there first. The commit goes to every device of the old
/// roster (the committer's copy is the echo; removed devices learn of their
/// removal) and to an external committer, the Welcome to every added device,
/// all in one transaction, flushed before the answer and the live fan-out.
pub async fn start(state: &AppState, session: &Session, bundle: CommitBundle) -> Handling {
    let external = match check_bundle(session, &bundle) {
        Ok(external) => external,
        Err(e) => return Handling::Answered(Err(e)),
    };
    let state = state.clone();
    let session = session.clone();
    start_sequencing(move |written| async move {
        sequence(&state, &session, &bundle, external, written).await
    })
    .await
}

/// Every organisation of an added device and every organisation of the
/// group's devices after the commit pin each other
/// ([`crate::trust::mutually_trusted`]), as their clients require:
/// `UnknownDevice` otherwise, so that no organisation puts another's
/// devices in a group with an organisation they do not trust.
fn check_trust(
    store: &dyn crate::store::Store,
    roster: &[cascade_protocol::DeviceId],
    removed: &[cascade_protocol::DeviceId],
    added_orgs: &HashSet<cascade_protocol::OrgId>,
) -> Result<(), DsError> {
    let mut orgs = added_orgs.clone();
    for device_id in roster.iter().filter(|d| !removed.contains(d)) {
        if let Some(device) = store.get_device(device_id)? {
            orgs.insert(device.user_id.org());
        }
    }
    for added in added_orgs {
        for org in &orgs {
            if !crate::trust::mutually_trusted(store, added, org)? {
                return Err(DsError::UnknownDevice);
            }
        }
    }
    Ok(())
}

async fn sequence(
    state: &AppState,
    session: &Session,
    bundle: &CommitBundle,
    external: bool,
    written: Written,
) -> Result<Response, DsError> {
    let writer = state.groups().lock(bundle.group_id).await;
    let store = state.store();
    let group = store
        .get_group(&bundle.group_id)?
        .ok_or(DsError::UnknownGroup)?;
    let is_member = group.roster.contains(&session.device_id);
    // An external commit from a member is a resync: a device that fell out
    // of step rejoins, replacing its own leaf (the commit removes the old
    // one); its place in the roster stays as it is.
    let resync = external && is_member;
    if external && !resync {
        let own: HashSet<_> = super::live_devices(state, &session.user_id)?
            .into_iter()
            .collect();
        if !group.roster.iter().any(|d| own.contains(d)) {
            return Err(DsError::NotMember);
        }
        if !bundle.removed.iter().all(|d| own.contains(d)) {
            return Err(DsError::Malformed(
                "an external commit removes only the joiner's own devices",
            ));
        }
    } else if resync {
        if !bundle.removed.is_empty() {
            return Err(DsError::Malformed(
                "a rejoining member's external commit removes no device",
            ));
        }
    } else if !is_member || group.stopped.contains(&session.device_id) {
        // A device whose delivery is stopped comes back by resync first.
        return Err(DsError::NotMember);
    }
    if bundle.epoch != group.epoch {
        return Err(DsError::WrongEpoch {
            current: group.epoch,
        });
    }
    let mut added_orgs = HashSet::new();
    for device_id in &bundle.added {
        match store.get_device(device_id)? {
            // Only certified devices take part in groups.
            Some(device) if !device.revoked && device.certificate.is_some() => {
                added_orgs.insert(device.user_id.org());
            }
            _ => return Err(DsError::UnknownDevice),
        }
        if group.roster.contains(device_id) && !resync {
            return Err(DsError::Malformed("an added device is already a member"));
        }
    }
    if !added_orgs.is_empty() {
        check_trust(&**store, &group.roster, &bundle.removed, &added_orgs)?;
    }
    if !bundle.removed.iter().all(|d| group.roster.contains(d)) {
        return Err(DsError::Malformed("a removed device is not a member"));
    }
    if group.roster.len() - bundle.removed.len() + bundle.added.len() > MAX_GROUP_DEVICES {
        return Err(DsError::TooLarge {
            limit: MAX_GROUP_DEVICES as u64,
        });
    }
    super::policy::check(&**store, &group, &session.user_id, bundle, external)?;

    let write = CommitWrite {
        group_id: bundle.group_id,
        epoch: bundle.epoch,
        committer: session.device_id,
        commit: &bundle.commit,
        welcome: bundle.welcome.as_deref().map(|w| w.as_slice()),
        group_info: &bundle.group_info,
        added: &bundle.added,
        removed: &bundle.removed,
    };
    let (notices, outcome) =
        write_past_laggers(state, &bundle.group_id, &session.device_id, resync, || {
            store.apply_commit(&write)
        });
    let outcome = outcome.map_err(|e| match e {
        DsError::Store(StoreError::NotFound) => DsError::UnknownGroup,
        e => e,
    });
    let outcome = match outcome {
        Err(e) if notices.is_empty() => return Err(e),
        outcome => outcome,
    };
    let _turn = durable_turn(state, writer, written).await?;
    deliver_notices(state, bundle.group_id, &notices);
    let sequenced = outcome?;

    let mut payloads = vec![(ItemKind::Commit, &bundle.commit)];
    if let Some(welcome) = &bundle.welcome {
        payloads.push((ItemKind::Welcome, welcome));
    }
    deliver_live(
        state,
        bundle.group_id,
        session.device_id,
        &sequenced,
        &payloads,
    );
    tracing::debug!(
        group = %bundle.group_id,
        epoch = sequenced.epoch,
        seq = sequenced.seq,
        added = bundle.added.len(),
        removed = bundle.removed.len(),
        external,
        "commit accepted"
    );
    Ok(Response::CommitAccepted {
        epoch: sequenced.epoch,
        seq: sequenced.seq,
    })
}
