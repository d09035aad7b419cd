//! Conformance cases of groups and queues: sequencing commits and
//! messages, who receives what, acknowledgements and the lag limit.

use cascade_protocol::frames::ItemKind;
use cascade_protocol::limits::MAX_QUEUE_LEN;
use cascade_protocol::DeviceId;

use super::{app, group_id, Harness};
use crate::store::{ApplicationWrite, CommitWrite, StoreError};

/// A group starts at epoch 0 with its creator; a commit at the current epoch
/// advances it, changes the roster and queues commit and Welcome; a commit at
/// another epoch changes nothing.
pub fn groups_sequence_commits_at_the_right_epoch(h: &mut dyn Harness) {
    let store = h.fresh();
    let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
    let g = group_id(7);
    store.create_group(&g, &a, b"info-0").expect("create");
    assert_eq!(
        store.create_group(&g, &b, b"other"),
        Err(StoreError::AlreadyExists)
    );
    let group = store.get_group(&g).expect("get").expect("exists");
    assert_eq!(
        (
            group.epoch,
            group.next_seq,
            group.roster,
            group.readable_from
        ),
        (0, 1, vec![a], 0)
    );
    assert_eq!(
        store.group_info(&g).expect("info"),
        Some((0, b"info-0".to_vec()))
    );
    assert_eq!(store.get_group(&group_id(8)).expect("get"), None);
    assert_eq!(store.group_info(&group_id(8)).expect("info"), None);

    let add_b = CommitWrite {
        group_id: g,
        epoch: 0,
        committer: a,
        commit: b"commit-0",
        welcome: Some(b"welcome-0"),
        group_info: b"info-1",
        added: &[b],
        removed: &[],
    };
    let done = store.apply_commit(&add_b).expect("commit");
    assert_eq!((done.epoch, done.seq), (1, 1));
    let kinds: Vec<(DeviceId, ItemKind)> = done
        .deliveries
        .iter()
        .map(|d| (d.device_id, d.kind))
        .collect();
    assert_eq!(kinds, vec![(a, ItemKind::Commit), (b, ItemKind::Welcome)]);
    let group = store.get_group(&g).expect("get").expect("exists");
    assert_eq!((group.epoch, group.next_seq), (1, 2));
    assert_eq!(group.roster, vec![a, b]);
    assert_eq!(group.readable_from, 1, "b reads from epoch 1 on");
    assert_eq!(
        store.group_info(&g).expect("info"),
        Some((1, b"info-1".to_vec()))
    );
    let a_queue = store.queue_page(&a, None, 10).expect("queue");
    assert_eq!(a_queue.len(), 1);
    assert_eq!(
        (a_queue[0].kind, a_queue[0].seq, a_queue[0].sender),
        (ItemKind::Commit, 1, a)
    );
    assert_eq!(a_queue[0].payload.as_slice(), b"commit-0");
    let b_queue = store.queue_page(&b, None, 10).expect("queue");
    assert_eq!(b_queue.len(), 1);
    assert_eq!((b_queue[0].kind, b_queue[0].seq), (ItemKind::Welcome, 1));
    assert_eq!(b_queue[0].payload.as_slice(), b"welcome-0");

    // A second commit for epoch 0 loses and writes nothing.
    let stale = CommitWrite {
        added: &[c],
        ..add_b
    };
    assert_eq!(
        store.apply_commit(&stale),
        Err(StoreError::WrongEpoch { current: 1 })
    );
    let group = store.get_group(&g).expect("get").expect("exists");
    assert_eq!((group.epoch, group.next_seq), (1, 2));
    assert_eq!(group.roster, vec![a, b]);
    assert!(store.queue_page(&c, None, 10).expect("queue").is_empty());
    assert_eq!(store.queue_len(&a).expect("len"), 1);

    // b asks to leave (a proposal): the group records it, once.
    for _ in 0..2 {
        store
            .append_application(&ApplicationWrite {
                group_id: g,
                sender: b,
                message: b"leave",
                leave_request: true,
                to: None,
            })
            .expect("proposal");
    }
    let group = store.get_group(&g).expect("get").expect("exists");
    assert_eq!(group.leaving, vec![b]);
    assert_eq!(group.next_seq, 4);

    // Removing b: both a and b get the commit; b leaves the roster (and
    // the devices asking to leave).
    let remove_b = CommitWrite {
        group_id: g,
        epoch: 1,
        committer: a,
        commit: b"commit-1",
        welcome: None,
        group_info: b"info-2",
        added: &[],
        removed: &[b],
    };
    let done = store.apply_commit(&remove_b).expect("commit");
    assert_eq!((done.epoch, done.seq), (2, 4));
    let recipients: Vec<DeviceId> = done.deliveries.iter().map(|d| d.device_id).collect();
    assert_eq!(recipients, vec![a, b]);
    let group = store.get_group(&g).expect("get").expect("exists");
    assert_eq!(group.roster, vec![a]);
    assert!(group.leaving.is_empty());
    assert_eq!(group.readable_from, 1, "a removal adds nobody");

    let unknown = CommitWrite {
        group_id: group_id(9),
        ..remove_b
    };
    assert_eq!(store.apply_commit(&unknown), Err(StoreError::NotFound));
    assert_eq!(
        store.append_application(&ApplicationWrite {
            group_id: group_id(9),
            sender: a,
            message: b"m",
            leave_request: false,
            to: None,
        }),
        Err(StoreError::NotFound)
    );
}

/// An external commit (the committer is not in the roster) reaches the old
/// roster and the joiner, who joins the roster.
pub fn external_commit_echoes_to_the_joiner(h: &mut dyn Harness) {
    let store = h.fresh();
    let (a, b, j) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
    let g = group_id(1);
    store.create_group(&g, &a, b"info-0").expect("create");
    store
        .apply_commit(&CommitWrite {
            group_id: g,
            epoch: 0,
            committer: a,
            commit: b"c0",
            welcome: Some(b"w0"),
            group_info: b"info-1",
            added: &[b],
            removed: &[],
        })
        .expect("add b");
    let done = store
        .apply_commit(&CommitWrite {
            group_id: g,
            epoch: 1,
            committer: j,
            commit: b"external",
            welcome: None,
            group_info: b"info-2",
            added: &[j],
            removed: &[],
        })
        .expect("external commit");
    let recipients: Vec<(DeviceId, ItemKind)> = done
        .deliveries
        .iter()
        .map(|d| (d.device_id, d.kind))
        .collect();
    assert_eq!(
        recipients,
        vec![
            (a, ItemKind::Commit),
            (b, ItemKind::Commit),
            (j, ItemKind::Commit)
        ]
    );
    let group = store.get_group(&g).expect("get").expect("exists");
    assert_eq!(group.roster, vec![a, b, j]);
    assert_eq!(group.epoch, 2);
}

/// Groups are found by any of their member devices, and no longer once the
/// device is removed.
pub fn groups_are_found_by_member_device(h: &mut dyn Harness) {
    let store = h.fresh();
    let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
    store.create_group(&group_id(2), &a, b"i").expect("create");
    store.create_group(&group_id(1), &b, b"i").expect("create");
    store.create_group(&group_id(3), &c, b"i").expect("create");
    assert_eq!(
        store.groups_with_devices(&[a, b]).expect("list"),
        vec![group_id(1), group_id(2)],
        "sorted, each once"
    );
    store
        .apply_commit(&CommitWrite {
            group_id: group_id(3),
            epoch: 0,
            committer: c,
            commit: b"c",
            welcome: Some(b"w"),
            group_info: b"i",
            added: &[a],
            removed: &[],
        })
        .expect("add a");
    assert_eq!(
        store.groups_with_devices(&[a]).expect("list"),
        vec![group_id(2), group_id(3)]
    );
    store
        .apply_commit(&CommitWrite {
            group_id: group_id(3),
            epoch: 1,
            committer: c,
            commit: b"c",
            welcome: None,
            group_info: b"i",
            added: &[],
            removed: &[a],
        })
        .expect("remove a");
    assert_eq!(
        store.groups_with_devices(&[a]).expect("list"),
        vec![group_id(2)]
    );
    assert!(store
        .groups_with_devices(&[DeviceId([9; 16])])
        .expect("list")
        .is_empty());
}

/// Application messages get increasing seqs, reach every member but the
/// sender in order, and stay until acked; acks are per device.
pub fn queues_keep_order_and_ack_removes(h: &mut dyn Harness) {
    let store = h.fresh();
    let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
    let g = group_id(1);
    created_with(&*store, g, a, &[b, c]);
    let seqs: Vec<u64> = (0..5u8).map(|i| app(&*store, g, a, &[b'm', i])).collect();
    assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
    assert_eq!(app(&*store, g, b, b"from b"), 7);

    assert_eq!(store.queue_len(&a).expect("len"), 2, "commit echo + b's");
    assert_eq!(store.queue_len(&b).expect("len"), 6, "welcome + 5");
    assert_eq!(store.queue_len(&c).expect("len"), 7);
    let items = store.queue_page(&c, None, 100).expect("queue");
    let order: Vec<(u64, ItemKind)> = items.iter().map(|i| (i.seq, i.kind)).collect();
    assert_eq!(
        order,
        vec![
            (1, ItemKind::Welcome),
            (2, ItemKind::Application),
            (3, ItemKind::Application),
            (4, ItemKind::Application),
            (5, ItemKind::Application),
            (6, ItemKind::Application),
            (7, ItemKind::Application),
        ]
    );
    assert!(
        items.windows(2).all(|w| w[0].queue_id < w[1].queue_id),
        "queue ids increase along the queue"
    );
    assert_eq!(items[1].payload.as_slice(), &[b'm', 0]);
    assert_eq!(items[6].sender, b);

    let page = store
        .queue_page(&c, Some(items[2].queue_id), 2)
        .expect("page");
    assert_eq!(page, items[3..5].to_vec());

    // Acking c's copies leaves b's copies of the same messages.
    let ids: Vec<u64> = items[..3].iter().map(|i| i.queue_id).collect();
    let mut with_unknown = ids.clone();
    with_unknown.push(u64::MAX);
    with_unknown.push(ids[0]);
    assert_eq!(store.ack(&c, &with_unknown).expect("ack"), 3);
    assert_eq!(store.ack(&c, &ids).expect("ack again"), 0, "idempotent");
    assert_eq!(store.queue_len(&c).expect("len"), 4);
    assert_eq!(
        store.queue_page(&c, None, 100).expect("queue"),
        items[3..].to_vec()
    );
    let b_items = store.queue_page(&b, None, 100).expect("queue");
    assert_eq!(b_items.len(), 6);
    assert_eq!(b_items[1].payload.as_slice(), &[b'm', 0]);
    // Acking another device's ids removes nothing.
    assert_eq!(store.ack(&a, &ids).expect("ack"), 0);
    let all: Vec<u64> = b_items.iter().map(|i| i.queue_id).collect();
    assert_eq!(store.ack(&b, &all).expect("ack"), 6);
    assert!(store.queue_page(&b, None, 100).expect("queue").is_empty());
    assert_eq!(store.queue_len(&b).expect("len"), 0);
}

/// A message addressed to some devices is queued for them alone (not its
/// sender, even if named); the others never see it, acknowledging its id
/// changes nothing for them, and their next ack passes over it.
pub fn targeted_messages_reach_only_their_devices(h: &mut dyn Harness) {
    let store = h.fresh();
    let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
    let g = group_id(3);
    created_with(&*store, g, a, &[b, c]);
    let done = store
        .append_application(&ApplicationWrite {
            group_id: g,
            sender: a,
            message: b"for b",
            leave_request: false,
            to: Some(&[b, a]),
        })
        .expect("targeted");
    assert_eq!(done.seq, 2);
    let to: Vec<DeviceId> = done.deliveries.iter().map(|d| d.device_id).collect();
    assert_eq!(to, vec![b], "b alone: a sent it");
    assert_eq!(app(&*store, g, a, b"for all"), 3);

    let b_items = store.queue_page(&b, None, 10).expect("queue");
    let b_seqs: Vec<u64> = b_items.iter().map(|i| i.seq).collect();
    assert_eq!(b_seqs, vec![1, 2, 3]);
    assert_eq!(b_items[1].payload.as_slice(), b"for b");
    let c_items = store.queue_page(&c, None, 10).expect("queue");
    let c_seqs: Vec<u64> = c_items.iter().map(|i| i.seq).collect();
    assert_eq!(c_seqs, vec![1, 3], "c never sees b's");
    assert_eq!(store.queue_len(&c).expect("len"), 2);

    // c acknowledging b's item (a position it was never given) changes
    // nothing: its queue still holds its Welcome.
    assert_eq!(store.ack(&c, &[b_items[1].queue_id]).expect("ack"), 0);
    assert_eq!(store.queue_len(&c).expect("len"), 2);
    // Acking its last item passes over the one that was not for it.
    assert_eq!(store.ack(&c, &[c_items[1].queue_id]).expect("ack"), 2);
    assert_eq!(store.queue_len(&c).expect("len"), 0);
    assert_eq!(store.ack(&b, &[b_items[1].queue_id]).expect("ack"), 2);
    assert_eq!(store.queue_len(&b).expect("len"), 1);

    // Addressed to nobody in the roster: sequenced, queued for nobody.
    let none = store
        .append_application(&ApplicationWrite {
            group_id: g,
            sender: a,
            message: b"for nobody",
            leave_request: false,
            to: Some(&[]),
        })
        .expect("targeted");
    assert!(none.deliveries.is_empty());
    assert_eq!(store.queue_len(&c).expect("len"), 0);
}

/// A group refuses messages, writing nothing, when a member device has not
/// acknowledged anything of its last [`MAX_QUEUE_LEN`] sequence numbers;
/// the device's other groups go on, commits still pass (so members can
/// remove it), and an ack makes room.
pub fn queue_limit_refuses_without_writing(h: &mut dyn Harness) {
    let store = h.fresh();
    let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
    let g = group_id(1);
    let g2 = group_id(2);
    store.create_group(&g, &a, b"info").expect("create");
    store.create_group(&g2, &a, b"info").expect("create");
    store
        .apply_commit(&CommitWrite {
            group_id: g,
            epoch: 0,
            committer: a,
            commit: b"c0",
            welcome: Some(b"w0"),
            group_info: b"info-1",
            added: &[b],
            removed: &[],
        })
        .expect("add b");
    store
        .apply_commit(&CommitWrite {
            group_id: g2,
            epoch: 0,
            committer: a,
            commit: b"c0",
            welcome: Some(b"w0"),
            group_info: b"info-1",
            added: &[b, c],
            removed: &[],
        })
        .expect("add b and c in g2");
    // a reads its commits' echoes; b never reads: its Welcome and the
    // messages of g (seq 2 on) fill g's limit.
    let echoes: Vec<u64> = store
        .queue_page(&a, None, 10)
        .expect("queue")
        .iter()
        .map(|i| i.queue_id)
        .collect();
    assert_eq!(store.ack(&a, &echoes).expect("ack"), 2);
    for _ in 2..=MAX_QUEUE_LEN + 1 {
        app(&*store, g, a, b"x");
    }
    // The Welcomes of g and g2, and the messages.
    assert_eq!(store.queue_len(&b).expect("len"), MAX_QUEUE_LEN + 2);
    let before = store.get_group(&g).expect("get").expect("exists");
    let one_more = ApplicationWrite {
        group_id: g,
        sender: a,
        message: b"y",
        leave_request: false,
        to: None,
    };
    assert_eq!(
        store.append_application(&one_more),
        Err(StoreError::QueueFull)
    );
    assert_eq!(store.get_group(&g).expect("get"), Some(before));
    assert_eq!(store.queue_len(&b).expect("len"), MAX_QUEUE_LEN + 2);
    assert_eq!(
        store.lagging_devices(&g, MAX_QUEUE_LEN).expect("lagging"),
        vec![b],
        "b holds the group, a does not"
    );

    // b's other conversation is not held up by it.
    app(&*store, g2, a, b"in g2");
    assert_eq!(
        store.queue_len(&c).expect("len"),
        2,
        "c's Welcome and the message"
    );

    // An ack makes room.
    let first = store.queue_page(&b, None, 3).expect("queue");
    assert_eq!((first[2].group_id, first[2].seq), (g, 2));
    assert_eq!(store.ack(&b, &[first[2].queue_id]).expect("ack"), 1);
    store.append_application(&one_more).expect("room again");
    assert_eq!(
        store.append_application(&one_more),
        Err(StoreError::QueueFull)
    );

    // Members can still remove the device that does not read, and then
    // write again.
    store
        .apply_commit(&CommitWrite {
            group_id: g,
            epoch: 1,
            committer: a,
            commit: b"remove b",
            welcome: None,
            group_info: b"info-2",
            added: &[],
            removed: &[b],
        })
        .expect("a commit passes the message limit");
    store
        .append_application(&one_more)
        .expect("b no longer holds g back");
}

/// A device receives a group's items only while it is in the roster: up to
/// the commit that removed it, and again from the Welcome that brought it
/// back; never its own messages.
pub fn a_device_reads_only_while_a_member(h: &mut dyn Harness) {
    let store = h.fresh();
    let (a, b) = (DeviceId([1; 16]), DeviceId([2; 16]));
    let g = group_id(4);
    store.create_group(&g, &a, b"info").expect("create");
    let commit = |epoch: u64, added: &[DeviceId], removed: &[DeviceId]| {
        store
            .apply_commit(&CommitWrite {
                group_id: g,
                epoch,
                committer: a,
                commit: b"c",
                welcome: (!added.is_empty()).then_some(b"w".as_slice()),
                group_info: b"i",
                added,
                removed,
            })
            .expect("commit")
            .seq
    };
    assert_eq!(commit(0, &[b], &[]), 1);
    assert_eq!(app(&*store, g, a, b"m2"), 2);
    assert_eq!(app(&*store, g, b, b"m3 from b"), 3);
    assert_eq!(commit(1, &[], &[b]), 4);
    assert_eq!(app(&*store, g, a, b"m5 while b is out"), 5);
    assert_eq!(commit(2, &[b], &[]), 6);
    assert_eq!(app(&*store, g, a, b"m7"), 7);

    let seen = |device: &DeviceId| -> Vec<(u64, ItemKind)> {
        store
            .queue_page(device, None, 100)
            .expect("queue")
            .iter()
            .map(|i| (i.seq, i.kind))
            .collect()
    };
    assert_eq!(
        seen(&b),
        vec![
            (1, ItemKind::Welcome),
            (2, ItemKind::Application),
            (4, ItemKind::Commit),
            (6, ItemKind::Welcome),
            (7, ItemKind::Application),
        ]
    );
    assert_eq!(
        seen(&a),
        vec![
            (1, ItemKind::Commit),
            (3, ItemKind::Application),
            (4, ItemKind::Commit),
            (6, ItemKind::Commit),
        ]
    );
    assert_eq!(store.queue_len(&b).expect("len"), 5);

    // Acking an item acknowledges the group's earlier items for the device,
    // and nothing of another device's.
    let b_items = store.queue_page(&b, None, 100).expect("queue");
    assert_eq!(store.ack(&b, &[b_items[2].queue_id]).expect("ack"), 1);
    assert_eq!(
        seen(&b),
        vec![(6, ItemKind::Welcome), (7, ItemKind::Application)]
    );
    assert_eq!(seen(&a).len(), 4, "a's queue is its own");
    // Ids that were never b's (a's echo) move nothing.
    let a_items = store.queue_page(&a, None, 100).expect("queue");
    assert_eq!(store.ack(&b, &[a_items[3].queue_id]).expect("ack"), 0);
    assert_eq!(seen(&b).len(), 2);
}

/// Stopping a device's delivery writes one `Notice` for every device the
/// group is delivered to: the stopped device's backlog there is gone
/// (except an unread Welcome), it gets nothing more of the group, and it
/// does not count for the lag limit; a resync by external commit brings it
/// back, and a commit that removes it forgets it.
pub fn stopping_delivery_drops_the_backlog_until_a_resync(h: &mut dyn Harness) {
    let store = h.fresh();
    let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
    let g = group_id(12);
    store.create_group(&g, &a, b"info").expect("create");
    let commit = |epoch: u64, committer: DeviceId, added: &[DeviceId], removed: &[DeviceId]| {
        store.apply_commit(&CommitWrite {
            group_id: g,
            epoch,
            committer,
            commit: b"c",
            welcome: (!added.is_empty()).then_some(&b"w"[..]),
            group_info: b"info",
            added,
            removed,
        })
    };
    commit(0, a, &[b, c], &[]).expect("add b and c");
    let echo = store.queue_page(&a, None, 10).expect("queue");
    store
        .ack(&a, &[echo[0].queue_id])
        .expect("a reads its echo");
    // b reads its Welcome; c never reads anything.
    let welcome = store.queue_page(&b, None, 10).expect("queue");
    store
        .ack(&b, &[welcome[0].queue_id])
        .expect("ack the Welcome");
    for n in 0..5u8 {
        app(&*store, g, a, &[n]);
    }
    assert_eq!(
        store.stop_delivery(&group_id(99), &b, b"n", None),
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.stop_delivery(&g, &DeviceId([9; 16]), b"n", None),
        Ok(None),
        "not a member"
    );
    assert_eq!(
        store.stop_delivery(&g, &b, b"n", Some(6)),
        Ok(None),
        "b is 5 behind, not 6"
    );
    let stopped = store
        .stop_delivery(&g, &b, b"notice b", Some(5))
        .expect("stop")
        .expect("written");
    assert_eq!(stopped.seq, 7);
    let mut to: Vec<_> = stopped.deliveries.iter().map(|d| d.device_id).collect();
    to.sort();
    assert_eq!(to, vec![a, b, c], "every device the group goes to, b too");
    assert!(stopped
        .deliveries
        .iter()
        .all(|d| d.kind == ItemKind::Notice));
    assert_eq!(
        store.stop_delivery(&g, &b, b"again", None),
        Ok(None),
        "already stopped"
    );
    let group = store.get_group(&g).expect("get").expect("exists");
    assert_eq!(group.stopped, vec![b]);
    assert!(group.roster.contains(&b), "still in the MLS group");

    // b's queue: the notice only (its five messages are gone).
    let page = store.queue_page(&b, None, 10).expect("queue");
    let got: Vec<_> = page
        .iter()
        .map(|i| (i.kind, i.seq, i.sender, i.payload.to_vec()))
        .collect();
    assert_eq!(got, vec![(ItemKind::Notice, 7, b, b"notice b".to_vec())]);
    // c has not read its Welcome: that stays, with the notice about c.
    store
        .stop_delivery(&g, &c, b"notice c", None)
        .expect("stop")
        .expect("written");
    let got: Vec<_> = store
        .queue_page(&c, None, 20)
        .expect("queue")
        .iter()
        .map(|i| (i.kind, i.seq))
        .collect();
    assert_eq!(
        got,
        vec![(ItemKind::Welcome, 1), (ItemKind::Notice, 8)],
        "c's Welcome and the notice about c"
    );
    // Nothing more of the group reaches b or c, and neither holds it back.
    app(&*store, g, a, b"later");
    assert_eq!(store.queue_len(&b).expect("len"), 1);
    let before = store.queue_len(&c).expect("len");
    let notices: Vec<_> = store
        .queue_page(&a, None, 10)
        .expect("queue")
        .iter()
        .map(|i| i.queue_id)
        .collect();
    assert_eq!(notices.len(), 2, "a got both notices");
    store.ack(&a, &notices).expect("a reads them");
    for _ in 0..MAX_QUEUE_LEN + 5 {
        app(&*store, g, a, b"x");
    }
    // The log is collected past them (they hold nothing back); c's notice
    // outlives it (its Welcome may not).
    let after: Vec<_> = store
        .queue_page(&c, None, 20)
        .expect("queue")
        .iter()
        .map(|i| (i.kind, i.seq, i.payload.to_vec()))
        .collect();
    assert_eq!(after.len() as u64, before);
    assert_eq!(
        after,
        vec![
            (ItemKind::Welcome, 1, b"w".to_vec()),
            (ItemKind::Notice, 8, b"notice c".to_vec())
        ]
    );
    assert_eq!(
        store.lagging_devices(&g, MAX_QUEUE_LEN).expect("lagging"),
        Vec::<DeviceId>::new()
    );

    // b rejoins by external commit: delivered to again from there.
    let epoch = store.get_group(&g).expect("get").expect("exists").epoch;
    let resync = commit(epoch, b, &[b], &[]).expect("resync");
    assert!(resync.deliveries.iter().any(|d| d.device_id == b));
    assert!(
        !resync.deliveries.iter().any(|d| d.device_id == c),
        "c is still stopped"
    );
    let seq = app(&*store, g, a, b"welcome back");
    let last = store.queue_page(&b, None, 10).expect("queue");
    assert_eq!(last.last().map(|i| i.seq), Some(seq));
    assert_eq!(
        store.get_group(&g).expect("get").expect("exists").stopped,
        vec![c]
    );
    // c reads its notice: nothing is left for it.
    let ids: Vec<u64> = store
        .queue_page(&c, None, 20)
        .expect("queue")
        .iter()
        .map(|i| i.queue_id)
        .collect();
    assert_eq!(store.ack(&c, &ids).expect("ack"), ids.len() as u64);
    assert_eq!(store.queue_len(&c).expect("len"), 0);
    // Removing c forgets that it was stopped.
    commit(epoch + 1, a, &[], &[c]).expect("remove c");
    let group = store.get_group(&g).expect("get").expect("exists");
    assert!(group.stopped.is_empty() && !group.roster.contains(&c));
}

/// Devices in a group are idle from when they were last seen (or, never
/// seen, enrolled).
pub fn idle_devices_are_found_by_last_seen(h: &mut dyn Harness) {
    let store = h.fresh();
    let a = super::enrolled(&*store, "a@o", 1);
    let b = super::enrolled(&*store, "b@o", 2);
    let loner = super::enrolled(&*store, "c@o", 3);
    let g = group_id(13);
    store
        .create_group(&g, &a.device_id, b"info")
        .expect("create");
    store
        .apply_commit(&CommitWrite {
            group_id: g,
            epoch: 0,
            committer: a.device_id,
            commit: b"c",
            welcome: Some(b"w"),
            group_info: b"info",
            added: &[b.device_id],
            removed: &[],
        })
        .expect("add b");
    let now = super::NOW;
    assert_eq!(
        store.idle_devices(now + 1).expect("idle"),
        vec![(a.device_id, now), (b.device_id, now)],
        "never seen: from enrolment; the device in no group is not listed"
    );
    store.set_last_seen(&a.device_id, now + 100).expect("seen");
    store
        .set_last_seen(&a.device_id, now + 50)
        .expect("an earlier time changes nothing");
    assert_eq!(
        store
            .get_device(&a.device_id)
            .expect("get")
            .expect("exists")
            .last_seen,
        now + 100
    );
    assert_eq!(
        store.idle_devices(now + 100).expect("idle"),
        vec![(b.device_id, now)]
    );
    assert_eq!(
        store.set_last_seen(&DeviceId([9; 16]), now),
        Err(StoreError::NotFound)
    );
    let _ = loner;
}

/// Creates `g` with `creator` and adds `added` at epoch 0.
fn created_with(
    store: &dyn crate::store::Store,
    g: cascade_protocol::GroupId,
    creator: DeviceId,
    added: &[DeviceId],
) {
    store.create_group(&g, &creator, b"info").expect("create");
    store
        .apply_commit(&CommitWrite {
            group_id: g,
            epoch: 0,
            committer: creator,
            commit: b"c0",
            welcome: Some(b"w0"),
            group_info: b"info-1",
            added,
            removed: &[],
        })
        .expect("add");
}
