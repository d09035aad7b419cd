//! Queue items from the relay: Welcomes, commits and application messages,
//! each processed in one SQLite transaction together with the group's
//! sequence cursor, so a crash never applies an item twice or loses one;
//! duplicates are dropped by sequence number and by message id.
//!
//! Every member entering this device's view is verified: all members of a
//! group joined by Welcome, every leaf a commit adds or changes. A commit
//! that does not verify is refused (its transaction rolls back). A commit
//! or message this device cannot follow because its own state is behind or
//! wrong (not because of what the item claims) makes it rejoin the
//! conversation ([`super::outbox::begin_rejoin`]).

use cascade_protocol::mls_header::framing_header;
use std::collections::BTreeSet;

use cascade_protocol::{ItemKind, Notice, QueueItem, StopReason, UserId};
use openmls::prelude::*;

use super::commit::{merge_own, prepared_bundle};
use super::effects::Effects;
use super::features;
use super::groups::{self, join_config, mls_in};
use super::mentions;
use super::outbox::{ask_again_to_leave, begin_rejoin, own_echo, stopped_key, Op};
use super::reads;
use super::receipts;
use super::room::{self, Room};
use super::{Ctx, Event};
use crate::content::{mapping, Body, Content, MessageId};
use crate::credential::{member_identity, MemberIdentity};
use crate::error::{CoreError, CredentialError, Result};
use crate::store::Transactions;
use crate::store::{ConversationState, DeliveryState, Message, Quote};

/// How far ahead of this device's clock a sender's timestamp may be.
const MAX_CLOCK_SKEW_MS: u64 = 24 * 3600 * 1000;

/// What processing an item gave.
#[derive(Default)]
pub(crate) struct Processed {
    /// Others' text messages, to confirm with a delivery receipt.
    pub received: Vec<(cascade_protocol::GroupId, MessageId)>,
    /// Who sent them (they are no longer typing).
    pub spoke: Vec<(cascade_protocol::GroupId, UserId)>,
}

/// Processes one queue item. Storage errors are returned (the item is not
/// acknowledged and comes again); anything wrong with the item itself is
/// reported and the item skipped.
pub(crate) fn handle_item(cx: &Ctx<'_>, item: &QueueItem, fx: &mut Effects) -> Result<Processed> {
    let store = cx.store;
    let cursor = store.conversation_cursor(&item.group_id)?;
    match (item.kind, cursor) {
        (ItemKind::Welcome, Some((_, state))) if state != ConversationState::Left => {
            return Ok(Processed::default()); // already a member: a duplicate Welcome
        }
        (ItemKind::Welcome, Some((last_seq, _))) if item.seq <= last_seq => {
            return Ok(Processed::default()); // the one that brought us in before
        }
        (ItemKind::Welcome, _) => {}
        (_, None) => {
            tracing::warn!(group = %item.group_id, "item for an unknown group dropped");
            return Ok(Processed::default());
        }
        (_, Some((last_seq, _))) if item.seq <= last_seq => return Ok(Processed::default()),
        (_, Some((_, ConversationState::Left))) => {
            store.set_last_seq(&item.group_id, item.seq)?;
            return Ok(Processed::default());
        }
        (_, Some((_, state @ (ConversationState::Joining | ConversationState::Rejoining)))) => {
            if item.kind == ItemKind::Commit {
                if let Some(events) = own_echo(cx, item)? {
                    fx.events(events);
                    return Ok(Processed::default());
                }
            }
            if state == ConversationState::Joining {
                // Nothing comes before our own external commit's echo.
                store.set_last_seq(&item.group_id, item.seq)?;
                return Ok(Processed::default());
            }
            // Rejoining: what the old state can still read is read (the
            // device may prove in step after all); what it cannot is lost
            // to it, as its history will say.
        }
        _ => {}
    }
    if item.kind == ItemKind::Notice {
        return process_notice(cx, item, fx);
    }
    let rejoining = matches!(cursor, Some((_, ConversationState::Rejoining)));
    let tx = store.transaction()?;
    let outcome = match item.kind {
        ItemKind::Welcome => process_welcome(cx, item),
        ItemKind::Commit => process_commit(cx, item),
        ItemKind::Application => process_application(cx, item),
        ItemKind::Notice => unreachable!("handled above"),
    };
    match outcome {
        Ok(events) => {
            store.set_last_seq(&item.group_id, item.seq)?;
            tx.commit()?;
            let mut processed = Processed::default();
            for e in &events {
                if let Event::Message(m) = e {
                    if m.kind == "text" && m.sender != cx.me.identity.user_id {
                        processed.received.push((m.group_id, m.id));
                        processed.spoke.push((m.group_id, m.sender.clone()));
                    }
                }
            }
            fx.events(events);
            Ok(processed)
        }
        Err(e @ CoreError::Storage(_)) => {
            // Local storage failed: nothing is wrong with the item. Do not
            // skip or ack it; it comes again on the next connection.
            drop(tx);
            Err(e)
        }
        Err(_) if rejoining => {
            drop(tx);
            store.set_last_seq(&item.group_id, item.seq)?;
            Ok(Processed::default())
        }
        Err(CoreError::OutOfStep) => {
            drop(tx);
            store.set_last_seq(&item.group_id, item.seq)?;
            let why = format!("a {:?} at seq {} it cannot follow", item.kind, item.seq);
            begin_rejoin(cx, &item.group_id, &why, fx)?;
            Ok(Processed::default())
        }
        Err(CoreError::Refused { by, why }) => {
            drop(tx); // roll back whatever the item did
            tracing::warn!(group = %item.group_id, seq = item.seq, %by, %why, "a change the policy forbids refused");
            let line = refused_line(cx, item, &by, &why)?;
            fx.events(vec![
                Event::Message(line),
                Event::ConversationUpdated(item.group_id),
            ]);
            fx.failed(
                Some(item.group_id),
                CoreError::Refused { by, why }.to_string(),
            );
            Ok(Processed::default())
        }
        Err(e) => {
            drop(tx); // roll back whatever the item did
            tracing::warn!(group = %item.group_id, seq = item.seq, error = %e, "queue item could not be processed; skipped");
            if item.kind != ItemKind::Welcome {
                store.set_last_seq(&item.group_id, item.seq)?;
            }
            fx.failed(
                Some(item.group_id),
                format!("a {:?} could not be processed: {e}", item.kind),
            );
            Ok(Processed::default())
        }
    }
}

/// Records, after the item's own transaction rolled back, that a change the
/// policy forbids was refused, with who made it and why (hazard H-036): a
/// line in the conversation, in one transaction with the sequence cursor.
fn refused_line(
    cx: &Ctx<'_>,
    item: &QueueItem,
    by: &UserId,
    why: &room::CommitRefusal,
) -> Result<Message> {
    let store = cx.store;
    let line = crate::store::Message::system_line(
        item.group_id,
        &cx.me.identity.user_id,
        cx.me.identity.device_id,
        cx.now,
        Some(item.seq),
        format!(
            "{REFUSED_TEXT} by {}: {why}. It was not applied on this device.",
            groups::read(store, &item.group_id)
                .ok()
                .and_then(|g| groups::member_certs(&g).ok())
                .and_then(|certs| certs.into_iter().find(|c| &c.user == by))
                .map_or_else(|| by.to_string(), |c| format!("{} ({by})", c.display_name))
        ),
    );
    let tx = store.transaction()?;
    store.insert_message(&line, cx.now, false)?;
    store.set_last_seq(&item.group_id, item.seq)?;
    tx.commit()?;
    Ok(line)
}

/// What a conversation shows when a member's change that its policy forbids
/// was refused, before who and why.
pub const REFUSED_TEXT: &str = "Refused a change";

/// What a conversation shows when the relay stopped delivering it to one of
/// its member devices (protocol §12.2; hazard H-017), after who and before why.
pub const STOPPED_TEXT: &str = "no longer receives this conversation";

/// What a conversation shows when the relay stopped delivering it to this
/// device, before why.
pub const STOPPED_HERE_TEXT: &str = "This device stopped receiving this conversation";

/// A notice from the relay. `DeliveryStopped` about this device: it says so
/// and rejoins (what was written meanwhile is lost to it). About another
/// device: the conversation says whose, why, and that it misses what is
/// written until it comes back. A notice this version does not know is
/// skipped.
fn process_notice(cx: &Ctx<'_>, item: &QueueItem, fx: &mut Effects) -> Result<Processed> {
    let store = cx.store;
    let why = match Notice::decode(&item.payload) {
        Some(Notice::DeliveryStopped { reason }) => stop_reason(reason),
        // A stop for a reason a later relay added is still a stop.
        None if is_delivery_stopped(&item.payload) => {
            "for a reason this version does not know".into()
        }
        None => {
            tracing::info!(group = %item.group_id, seq = item.seq, "a relay notice this version does not know; skipped");
            store.set_last_seq(&item.group_id, item.seq)?;
            return Ok(Processed::default());
        }
    };
    let mine = item.sender == cx.me.identity.device_id;
    let text = if mine {
        format!(
            "{STOPPED_HERE_TEXT}: {why}. It is rejoining; messages sent meanwhile cannot be shown here."
        )
    } else {
        let who = groups::device_owner(store, &item.group_id, &item.sender);
        format!(
            "{who} {STOPPED_TEXT} on one device: {why}. That device misses what is written here until it comes back online and rejoins."
        )
    };
    let line = crate::store::Message::system_line(
        item.group_id,
        &cx.me.identity.user_id,
        cx.me.identity.device_id,
        cx.now,
        Some(item.seq),
        text,
    );
    let tx = store.transaction()?;
    store.insert_message(&line, cx.now, false)?;
    store.set_last_seq(&item.group_id, item.seq)?;
    let mut events = Effects::default();
    if mine {
        // With the notice, in one transaction: a crash in between would
        // leave the conversation waiting for items that never come.
        store.kv_set(&stopped_key(&item.group_id), &item.seq.to_be_bytes())?;
        begin_rejoin(
            cx,
            &item.group_id,
            "the relay stopped delivering it",
            &mut events,
        )?;
    }
    tx.commit()?;
    fx.events(vec![Event::Message(line)]);
    fx.events(events.events);
    Ok(Processed::default())
}

/// Whether a notice this version cannot decode is still a
/// `DeliveryStopped` (with a reason it does not know).
fn is_delivery_stopped(payload: &[u8]) -> bool {
    match ciborium::from_reader::<ciborium::Value, _>(payload) {
        Ok(ciborium::Value::Map(entries)) => entries
            .iter()
            .any(|(k, _)| k.as_text() == Some("DeliveryStopped")),
        _ => false,
    }
}

/// Why the relay stopped a delivery, in words.
fn stop_reason(reason: StopReason) -> String {
    match reason {
        StopReason::QueueFull { limit } => {
            format!("more than {limit} messages were waiting for it")
        }
        StopReason::Expired { idle_secs } => {
            let (n, unit) = match idle_secs {
                s if s >= 2 * 86_400 => (s / 86_400, "days"),
                s if s >= 2 * 3_600 => (s / 3_600, "hours"),
                s if s >= 120 => (s / 60, "minutes"),
                s => (s, "seconds"),
            };
            format!("it had not connected for {n} {unit}")
        }
    }
}

fn process_welcome(cx: &Ctx<'_>, item: &QueueItem) -> Result<Vec<Event>> {
    let store = cx.store;
    let provider = store.mls();
    let welcome = match mls_in(&item.payload)?.extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => return Err(CoreError::Decode("a Welcome")),
    };
    // Re-added after leaving: the old state is dead (and so is a stop).
    groups::delete(store, &item.group_id)?;
    store.kv_set(&stopped_key(&item.group_id), b"")?;
    let group = StagedWelcome::new_from_welcome(&provider, &join_config(), welcome, None)
        .map_err(CoreError::mls)?
        .into_group(&provider)
        .map_err(CoreError::mls)?;
    if group.group_id().as_slice() != item.group_id.as_bytes() {
        return Err(CoreError::Decode("a Welcome for another group"));
    }
    // Every member must verify against our anchors, or we do not join.
    let mut users = Vec::new();
    for m in group.members() {
        users.push(
            cx.trust
                .verify(&m.credential, &m.signature_key, cx.now)?
                .user,
        );
    }
    store.insert_conversation(&item.group_id, "New conversation", item.seq, cx.now)?;
    store.set_conversation_state(&item.group_id, ConversationState::Active)?;
    store.set_last_seq(&item.group_id, item.seq)?;
    groups::record_members(store, &item.group_id, &group)?;
    users.sort();
    users.dedup();
    Ok(vec![
        Event::ConversationUpdated(item.group_id),
        Event::MembershipChanged {
            group_id: item.group_id,
            added: users,
            removed: vec![],
        },
    ])
}

/// The operation at the head of the group's lane if it is a group change
/// whose commit bundle was sent and not yet answered: its id, the
/// operation, and the commit's bytes.
fn sent_commit(
    cx: &Ctx<'_>,
    group: &cascade_protocol::GroupId,
) -> Result<Option<(i64, Op, Vec<u8>)>> {
    let Some(entry) = cx.store.ops(group, None, 1)?.pop() else {
        return Ok(None);
    };
    let op = match Op::decode(&entry.op) {
        Ok(Op::Send { .. }) | Err(_) => return Ok(None),
        Ok(op) => op,
    };
    Ok(prepared_bundle(cx.store, entry.op_id)?.map(|b| (entry.op_id, op, b.commit.into_vec())))
}

fn process_commit(cx: &Ctx<'_>, item: &QueueItem) -> Result<Vec<Event>> {
    let store = cx.store;
    let me = &cx.me.identity;
    let provider = store.mls();
    let mut group = groups::load(store, &item.group_id)?;
    let header =
        framing_header(&item.payload).map_err(|_| CoreError::Decode("a commit's header"))?;
    let ours = group.epoch().as_u64();
    if item.sender == me.device_id {
        // The echo of our own commit.
        if header.epoch != ours {
            return Ok(vec![]); // merged already, on the relay's answer
        }
        let sent = sent_commit(cx, &item.group_id)?;
        let ours = group.pending_commit().is_some()
            && sent
                .as_ref()
                .is_none_or(|(_, _, bytes)| bytes == item.payload.as_slice());
        if ours {
            let events = merge_own(store, cx.me, &mut group, &item.group_id, cx.now)?;
            // The operation is done: its commit landed (its answer may never
            // come). It must not run again: an add would bring back, with
            // KeyPackages already used, someone who has since left.
            if let Some((op_id, op, _)) = sent {
                store.delete_op(op_id)?;
                if matches!(op, Op::AddMembers { .. }) {
                    send_name(cx, &item.group_id)?;
                }
            }
            return Ok(events);
        }
        // A commit of ours the relay applied but whose state we no longer
        // hold: this device cannot follow the group any more.
        return Err(CoreError::OutOfStep);
    }
    if header.epoch < ours {
        return Ok(vec![]); // an old epoch's commit: nothing to apply
    }
    if header.epoch > ours {
        return Err(CoreError::OutOfStep); // we missed the commits before it
    }
    if group.pending_commit().is_some() {
        // Another member's commit won this epoch; ours will be refused.
        group.clear_pending_commit(provider.storage())?;
    }
    let msg = mls_in(&item.payload)?
        .try_into_protocol_message()
        .map_err(|_| CoreError::Decode("a commit"))?;
    groups::upgrade_config(store, &mut group)?;
    let processed = match group.process_message(&provider, msg) {
        Ok(p) => p,
        // The relay sequenced it for this epoch and we cannot process it:
        // our state of the group is not the group's.
        Err(e) => {
            tracing::warn!(error = ?e, "a commit at our epoch does not process");
            return Err(CoreError::OutOfStep);
        }
    };
    // An external commit: a device joining on its own. Only a user who is
    // already in the conversation may add a device this way (their new
    // device, or one rejoining); anyone else must be added by a member.
    let joiner = if matches!(processed.sender(), Sender::NewMemberCommit) {
        let joiner = member_identity(processed.credential())?;
        let known = group
            .members()
            .any(|m| member_identity(&m.credential).is_ok_and(|id| id.user == joiner.user));
        if !known {
            return Err(CredentialError::StrangerJoined.into());
        }
        Some(joiner)
    } else {
        None
    };
    let committer = match processed.sender() {
        Sender::Member(leaf) => Some(*leaf),
        _ => None,
    };
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        return Err(CoreError::Decode("a commit"));
    };
    let room_before = room::of(&group);
    // A commit that removes this device is applied whoever made it: the
    // relay judged it, and refusing it would keep nothing but a state the
    // group has left.
    let committer = match committer {
        Some(leaf) if !staged.self_removed() => Some(check_policy(cx, &group, leaf, &staged)?),
        Some(leaf) => Some(
            member_identity(
                &group
                    .member_at(leaf)
                    .ok_or(CoreError::Decode("a commit from no member"))?
                    .credential,
            )?
            .user,
        ),
        None => None,
    };
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for add in staged.add_proposals() {
        let leaf = add.add_proposal().key_package().leaf_node();
        let id = cx
            .trust
            .verify(leaf.credential(), leaf.signature_key().as_slice(), cx.now)?;
        added.push(id.user);
    }
    let mut removed_devices = Vec::new();
    for rem in staged.remove_proposals() {
        if let Some(m) = group.member_at(rem.remove_proposal().removed()) {
            let id = member_identity(&m.credential)?;
            removed_devices.push(id.device);
            removed.push(id.user);
        }
    }
    // An external commit may remove only the joiner's own old leaf (a
    // device rejoining after it fell out of step): anything else is a
    // stranger's doing. A rejoining device is neither added nor removed for
    // the others.
    if let Some(j) = &joiner {
        if removed_devices.iter().any(|d| d != &j.device) {
            return Err(CredentialError::JoinerRemovedOthers.into());
        }
    }
    let rejoined = joiner
        .as_ref()
        .is_some_and(|j| removed_devices.contains(&j.device));
    if let Some(j) = &joiner {
        if !rejoined {
            added.push(j.user.clone());
        }
    }
    if rejoined {
        removed.clear();
    }
    // Credentials before the commit, to tell which leaves it changes.
    let leaf = |m: &openmls::group::Member| {
        (
            m.index.u32(),
            m.signature_key.clone(),
            m.credential.serialized_content().to_vec(),
        )
    };
    let before: std::collections::HashSet<_> = group.members().map(|m| leaf(&m)).collect();
    group
        .merge_staged_commit(&provider, *staged)
        .map_err(CoreError::mls)?;
    // A commit may add members or change credentials (update paths): every
    // leaf it introduces or changes must verify, or the commit is refused
    // (the transaction rolls back). Members it leaves as they were are not
    // judged again here: a member who has since become unacceptable is
    // removed by its own commit, not by refusing others'.
    if group.is_active() {
        for m in group.members() {
            if !before.contains(&leaf(&m)) {
                cx.trust.verify(&m.credential, &m.signature_key, cx.now)?;
            }
        }
    }
    let mut events = vec![];
    if !group.is_active() {
        store.set_conversation_state(&item.group_id, ConversationState::Left)?;
        events.push(Event::ConversationUpdated(item.group_id));
    } else {
        groups::record_members(store, &item.group_id, &group)?;
        ask_again_to_leave(store, &item.group_id)?;
        if let Some(by) = &committer {
            events.extend(super::roles::record_room_change(
                store,
                cx.me,
                &item.group_id,
                room_before.as_ref(),
                &group,
                by,
                cx.now,
            )?);
        }
    }
    added.sort();
    added.dedup();
    removed.sort();
    removed.dedup();
    if group.is_active() {
        events.extend(receipts::forget_departed(
            store,
            cx.me,
            &item.group_id,
            &removed,
        )?);
    }
    if joiner
        .as_ref()
        .is_some_and(|j| j.user == me.user_id && !rejoined)
        && group.is_active()
    {
        // Our user's new device joined: it cannot read earlier messages, so
        // tell it the conversation's name.
        send_name(cx, &item.group_id)?;
    }
    if !added.is_empty() || !removed.is_empty() {
        events.push(Event::MembershipChanged {
            group_id: item.group_id,
            added,
            removed,
        });
    }
    Ok(events)
}

/// A conversation's name from a member. The same name again (sent to new
/// members and devices, who cannot read the first) changes nothing and is
/// anyone's to send; a new one needs the role the room's policy asks for
/// renaming, or is refused, except on a device that has no name yet.
fn rename(
    cx: &Ctx<'_>,
    item: &QueueItem,
    sender: &UserId,
    room: Option<(&Room, &BTreeSet<UserId>)>,
    name: &str,
) -> Result<Vec<Event>> {
    let current = cx
        .store
        .conversations(&|_| 0)?
        .into_iter()
        .find(|c| c.group_id == item.group_id)
        .map(|c| c.name)
        .unwrap_or_default();
    if current == name {
        return Ok(vec![]);
    }
    if let Some((room, members)) = room {
        if !current.is_empty() {
            room.may(sender, room::Action::Rename, members)
                .map_err(|f| CoreError::Refused {
                    by: sender.clone(),
                    why: f.into(),
                })?;
        }
    }
    cx.store.set_conversation_name(&item.group_id, name)?;
    Ok(vec![Event::ConversationUpdated(item.group_id)])
}

/// Refuses a member's commit that the room's policy, as it stood before
/// the commit, forbids its committer (protocol §14.8): every device judges
/// it the same way, from the same authenticated state.
fn check_policy(
    cx: &Ctx<'_>,
    group: &MlsGroup,
    committer: LeafNodeIndex,
    staged: &StagedCommit,
) -> Result<UserId> {
    let before = room::of(group);
    let after = room::in_extensions(staged.group_context().extensions());
    let committer = group
        .member_at(committer)
        .ok_or(CoreError::Decode("a commit from no member"))?;
    let committer = member_identity(&committer.credential)?.user;
    if before.is_none() && after.is_none() {
        return Ok(committer);
    }
    let mut devices: std::collections::BTreeMap<UserId, usize> = Default::default();
    for m in group.members() {
        *devices
            .entry(member_identity(&m.credential)?.user)
            .or_default() += 1;
    }
    let members: BTreeSet<UserId> = devices.keys().cloned().collect();
    let mut added = BTreeSet::new();
    for add in staged.add_proposals() {
        let leaf = add.add_proposal().key_package().leaf_node();
        let user = member_identity(leaf.credential())?.user;
        if !members.contains(&user) {
            added.insert(user);
        }
    }
    let mut removed = BTreeSet::new();
    let mut gone_devices: std::collections::BTreeMap<UserId, usize> = Default::default();
    for rem in staged.remove_proposals() {
        let leaf = rem.remove_proposal().removed();
        let Some(m) = group.member_at(leaf) else {
            continue;
        };
        let user = member_identity(&m.credential)?.user;
        *gone_devices.entry(user.clone()).or_default() += 1;
        let asked_to_leave = matches!(rem.sender(), Sender::Member(s) if *s == leaf);
        let own = user == committer;
        let unacceptable = cx
            .trust
            .verify(&m.credential, &m.signature_key, cx.now)
            .is_err();
        if !asked_to_leave && !own && !unacceptable {
            removed.insert(user);
        }
    }
    let gone: BTreeSet<UserId> = gone_devices
        .into_iter()
        .filter(|(u, n)| devices.get(u) == Some(n))
        .map(|(u, _)| u)
        .collect();
    room::check_commit(
        before.as_ref(),
        after.as_ref(),
        &room::CommitChanges {
            committer: &committer,
            added: &added,
            removed: &removed,
            gone: &gone,
            members: &members,
        },
    )
    .map_err(|why| CoreError::Refused {
        by: committer.clone(),
        why,
    })?;
    Ok(committer)
}

/// Queues the conversation's name as a message (for members who cannot
/// read the one sent when it was created).
fn send_name(cx: &Ctx<'_>, group_id: &cascade_protocol::GroupId) -> Result<()> {
    let name = cx
        .store
        .conversations(&|_| 0)?
        .into_iter()
        .find(|c| &c.group_id == group_id)
        .map(|c| c.name)
        .unwrap_or_default();
    if !name.is_empty() {
        let content = Content {
            id: MessageId::random(),
            sent_at: cx.now,
            body: Body::GroupMeta { name },
        };
        Op::send(*group_id, &content).queue(cx.store)?;
    }
    Ok(())
}

/// Whether processing failed only because this exact ciphertext was already
/// decrypted (its ratchet secret is consumed and deleted).
///
/// openmls 0.9 keeps the inner error types crate-private, so the reason is
/// recognised by its message; the replay test in `cascade-tests` pins it.
fn is_replay<E>(e: &ProcessMessageError<E>) -> bool {
    match e {
        ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(inner)) => inner
            .to_string()
            .contains("deleted to preserve forward secrecy"),
        _ => false,
    }
}

fn process_application(cx: &Ctx<'_>, item: &QueueItem) -> Result<Vec<Event>> {
    let store = cx.store;
    let provider = store.mls();
    let mut group = groups::load(store, &item.group_id)?;
    let header =
        framing_header(&item.payload).map_err(|_| CoreError::Decode("a message's header"))?;
    let msg = mls_in(&item.payload)?
        .try_into_protocol_message()
        .map_err(|_| CoreError::Decode("a message"))?;
    groups::upgrade_config(store, &mut group)?;
    let processed = match group.process_message(&provider, msg) {
        Ok(p) => p,
        Err(e) if is_replay(&e) => {
            // The same ciphertext again (a sender's retransmission after a
            // crash, or a replay): its key is already used and deleted.
            tracing::debug!(group = %item.group_id, seq = item.seq, "replayed ciphertext dropped");
            return Ok(vec![]);
        }
        // A message of an epoch this device never reached: it missed a
        // commit.
        Err(_) if header.epoch > group.epoch().as_u64() => return Err(CoreError::OutOfStep),
        Err(e) => return Err(CoreError::mls(e)),
    };
    let sender = member_identity(processed.credential())?;
    if sender.device != item.sender {
        tracing::warn!("relay-claimed sender differs from the MLS sender; using MLS");
    }
    match processed.into_content() {
        ProcessedMessageContent::ApplicationMessage(app) => {
            let room = room::of(&group);
            let members: BTreeSet<UserId> = groups::users(&group).into_iter().collect();
            drop(group);
            store_application(
                cx,
                item,
                &sender,
                room.as_ref().map(|r| (r, &members)),
                &app.into_bytes(),
            )
        }
        ProcessedMessageContent::ProposalMessage(proposal) => {
            // Only a member's request to leave is acted on: store it and
            // queue a commit. Other proposals are ignored.
            let is_self_remove = match (proposal.proposal(), proposal.sender()) {
                (Proposal::Remove(r), Sender::Member(leaf)) => r.removed() == *leaf,
                _ => false,
            };
            let mut events = vec![];
            if is_self_remove {
                group.store_pending_proposal(provider.storage(), *proposal)?;
                Op::CommitProposals {
                    group_id: item.group_id,
                }
                .queue(store)?;
                // Another device of this user leaves: the user leaves, so
                // this device follows.
                let me = &cx.me.identity;
                if sender.user == me.user_id
                    && sender.device != me.device_id
                    && store.conversation_cursor(&item.group_id)?.map(|c| c.1)
                        == Some(ConversationState::Active)
                {
                    Op::Leave {
                        group_id: item.group_id,
                    }
                    .queue(store)?;
                    store.set_conversation_state(&item.group_id, ConversationState::Leaving)?;
                    events.push(Event::ConversationUpdated(item.group_id));
                }
            }
            Ok(events)
        }
        _ => Err(CoreError::Decode("an application item")),
    }
}

fn store_application(
    cx: &Ctx<'_>,
    item: &QueueItem,
    sender: &MemberIdentity,
    room: Option<(&Room, &BTreeSet<UserId>)>,
    plaintext: &[u8],
) -> Result<Vec<Event>> {
    let store = cx.store;
    let (room, members) = match room {
        Some((room, members)) => (Some(room), Some(members)),
        None => (None, None),
    };
    let mut content = if mapping::is_mimi(plaintext) {
        // The room names the URI every message id is derived from; a
        // conversation without one never carries MIMI content.
        let room = room.ok_or(CoreError::Decode(
            "MIMI content in a conversation without a room",
        ))?;
        mapping::read(
            plaintext,
            &mapping::sender_uri(&sender.user),
            &room.uri,
            cx.now,
        )?
    } else {
        Content::decode(plaintext)?
    };
    // The sender's clock is theirs to set: a time far in the future (or
    // beyond what front ends can show as a date) is replaced by the time it
    // arrived.
    if content.sent_at > cx.now.saturating_add(MAX_CLOCK_SKEW_MS) {
        content.sent_at = cx.now;
    }
    // Only a read report may be addressed to some members: anything else
    // so would show them what the others never see, as if said to all
    // (rule 27).
    if item.addressed && !matches!(content.body, Body::Status { .. }) {
        tracing::warn!(group = %item.group_id, "a message addressed to some members only was not a read report; dropped");
        return Ok(vec![]);
    }
    let mut attachment = None;
    let (kind, text, in_reply_to, mentions) = match content.body {
        Body::GroupMeta { name } => {
            return rename(cx, item, &sender.user, room.zip(members), &name);
        }
        Body::Text {
            text,
            in_reply_to,
            mentions,
        } => {
            let (text, mentions) = mentions::verified(store, &item.group_id, text, mentions)?;
            ("text".to_owned(), Some(text), in_reply_to, mentions)
        }
        Body::Receipt { delivered } => {
            return receipts::handle_receipt(
                store,
                cx.me,
                &item.group_id,
                &sender.user,
                &delivered,
                cx.now,
            )
        }
        Body::Status { entries } => {
            if room.is_none() {
                return Ok(vec![]);
            }
            return reads::handle_report(cx, &item.group_id, &sender.user, &entries);
        }

        Body::Edit { .. } | Body::Delete { .. } | Body::Reaction { .. } => {
            return features::apply(
                cx,
                &item.group_id,
                &sender.user,
                room.zip(members),
                &content,
            );
        }
        Body::Attachment(a) => {
            let text = Some(a.caption.clone());
            attachment = Some(*a);
            ("attachment".to_owned(), text, None, Vec::new())
        }
        Body::Unsupported { kind } => (kind, None, None, Vec::new()),
    };
    // Sent while the conversation's timer was set (as this device holds
    // the room when it reads the message, in seq order): it disappears
    // that long after it was sent, by the sender's clock but never later
    // than that long after it arrived. One that arrives after its time is
    // not kept at all.
    let expires_at = room.and_then(|r| r.disappear_after).map(|secs| {
        content
            .sent_at
            .min(cx.now)
            .saturating_add(secs.saturating_mul(1000))
    });
    if expires_at.is_some_and(|at| at <= cx.now) {
        return Ok(vec![]);
    }
    let message = Message {
        id: content.id,
        group_id: item.group_id,
        sender: sender.user.clone(),
        sender_device: sender.device,
        sent_at: content.sent_at,
        seq: Some(item.seq),
        text,
        kind,
        state: DeliveryState::Received,
        reply_to: in_reply_to.map(Quote::to),
        edited_at: None,
        deleted_by: None,
        reactions: Vec::new(),
        expires_at,
        read_by: 0,
        mentions,
        attachment: attachment.as_ref().map(|a| a.info()),
    };
    // This user's own messages, sent from another device, are not unread.
    let count_unread = sender.user != cx.me.identity.user_id;
    if store.insert_message(&message, cx.now, count_unread)? {
        if let Some(a) = &attachment {
            store.set_attachment(&message.id, a)?;
        }
        // As it is read back: with the message it answers.
        let message = store.message(&message.id)?.unwrap_or(message);
        Ok(vec![
            Event::Message(message),
            Event::ConversationUpdated(item.group_id),
        ])
    } else {
        Ok(vec![]) // duplicate message id
    }
}
