use super::*;
use crate::store::conformance::Harness;
use std::sync::Arc;

/// Opens sled stores in temporary directories.
struct SledHarness {
    dirs: Vec<tempfile::TempDir>,
}

impl Harness for SledHarness {
    fn fresh(&mut self) -> Arc<dyn Store> {
        self.dirs.push(tempfile::tempdir().expect("temp dir"));
        self.reopen()
    }

    fn reopen(&mut self) -> Arc<dyn Store> {
        let dir = self.dirs.last().expect("fresh was called");
        Arc::new(SledStore::open(dir.path()).expect("open sled"))
    }
}

crate::store_conformance_tests!(SledHarness { dirs: Vec::new() });

/// Pins the on-disk encoding of every record (STYLE.md #10). Run with
/// `UPDATE_GOLDEN=1` after a deliberate change of the disk format.
#[test]
fn record_encodings_are_pinned() {
    let device = DeviceId([0x11; 16]);
    let group = GroupId([0x22; 16]);
    let user = UserId::new("alice@north-trust").expect("valid");
    let samples: Vec<(&str, Vec<u8>)> = vec![
        (
            "org",
            encode(&Org {
                org_id: OrgId::new("north-trust").expect("valid"),
                display_name: "North Trust".into(),
                created_at: 1_700_000_000,
                ca_certificate: Some(Bytes::from(vec![0x30, 0x01, 0xca])),
            }),
        ),
        (
            "user",
            encode(&User {
                user_id: user.clone(),
                display_name: "Alice".into(),
                role: "Nurse".into(),
                created_at: 1_700_000_001,
            }),
        ),
        (
            "device",
            encode(&Device {
                device_id: device,
                user_id: user.clone(),
                name: "Ward 7".into(),
                signature_key: Bytes::from(vec![0x33; 32]),
                enrolled_at: 1_700_000_002,
                revoked: false,
                certificate: Some(Bytes::from(vec![0x30, 0x01, 0xde])),
                push_token: None,
                last_seen: 0,
                wipe: None,
            }),
        ),
        (
            "device_seen",
            encode(&Device {
                device_id: device,
                user_id: user.clone(),
                name: "Ward 7".into(),
                signature_key: Bytes::from(vec![0x33; 32]),
                enrolled_at: 1_700_000_002,
                revoked: false,
                certificate: Some(Bytes::from(vec![0x30, 0x01, 0xde])),
                push_token: None,
                last_seen: 1_700_000_100,
                wipe: None,
            }),
        ),
        (
            "device_wiped",
            encode(&Device {
                device_id: device,
                user_id: user.clone(),
                name: "Ward 7".into(),
                signature_key: Bytes::from(vec![0x33; 32]),
                enrolled_at: 1_700_000_002,
                revoked: true,
                certificate: Some(Bytes::from(vec![0x30, 0x01, 0xde])),
                push_token: None,
                last_seen: 1_700_000_100,
                wipe: Some(Wipe {
                    body: Bytes::from(vec![0xa1, 0x01, 0x02]),
                    signature: Bytes::from(vec![0x5e; 64]),
                    co_signature: None,
                    ordered_at: 1_700_000_200,
                    confirmed: Some(WipeConfirmed {
                        at: 1_700_000_300,
                        signature: Bytes::from(vec![0x5f; 64]),
                    }),
                }),
            }),
        ),
        (
            "enrolment_token",
            encode(&EnrolmentTokenRecord {
                user_id: user,
                expires_at: 1_700_003_600,
                used: true,
            }),
        ),
        (
            "group",
            encode(&GroupRecord {
                group_id: group,
                epoch: 3,
                roster: vec![device],
                readable_from: 0,
                stopped: Vec::new(),
                leaving: Vec::new(),
            }),
        ),
        (
            "group_readable_from",
            encode(&GroupRecord {
                group_id: group,
                epoch: 3,
                roster: vec![device],
                readable_from: 2,
                stopped: Vec::new(),
                leaving: Vec::new(),
            }),
        ),
        (
            "group_stopped",
            encode(&GroupRecord {
                group_id: group,
                epoch: 3,
                roster: vec![device, DeviceId([0x44; 16])],
                readable_from: 0,
                stopped: vec![DeviceId([0x44; 16])],
                leaving: Vec::new(),
            }),
        ),
        (
            "group_leaving",
            encode(&GroupRecord {
                group_id: group,
                epoch: 3,
                roster: vec![device, DeviceId([0x55; 16])],
                readable_from: 0,
                stopped: Vec::new(),
                leaving: vec![DeviceId([0x55; 16])],
            }),
        ),
        (
            "group_info",
            encode(&GroupInfoRecord {
                epoch: 3,
                group_info: Bytes::from(vec![0, 1, 0, 4]),
            }),
        ),
        (
            "queue_entry",
            encode(&QueueEntry {
                group_id: group,
                seq: 9,
                sender: device,
                kind: ItemKind::Welcome,
            }),
        ),
        (
            "payload",
            encode(&PayloadRecord {
                refs: 2,
                payload: Bytes::from(vec![0, 1, 0, 2]),
            }),
        ),
        (
            "trust_list",
            encode(&TrustList {
                body: Bytes::from(vec![0xa1, 0x01, 0x02]),
                signature: Bytes::from(vec![0x5e; 64]),
                published_at: 1_700_000_003,
                co_signature: None,
            }),
        ),
        (
            "log_entry",
            encode(&LogEntry {
                seq: 9,
                sender: device,
                kind: ItemKind::Application,
                payload: Bytes::from(vec![0, 1, 0, 2]),
                welcomed: Vec::new(),
                to: None,
            }),
        ),
        (
            "log_entry_welcome",
            encode(&LogEntry {
                seq: 9,
                sender: device,
                kind: ItemKind::Welcome,
                payload: Bytes::from(vec![0, 1, 0, 3]),
                welcomed: vec![DeviceId([0x44; 16])],
                to: None,
            }),
        ),
        (
            "log_entry_targeted",
            encode(&LogEntry {
                seq: 9,
                sender: device,
                kind: ItemKind::Application,
                payload: Bytes::from(vec![0, 1, 0, 4]),
                welcomed: Vec::new(),
                to: Some(vec![DeviceId([0x44; 16])]),
            }),
        ),
        (
            "membership",
            encode(&Membership {
                next: 300,
                acked_seq: 8,
                spans: vec![
                    log::Span {
                        from: 1,
                        until: Some(4),
                    },
                    log::Span {
                        from: 6,
                        until: None,
                    },
                ],
                stop: None,
            }),
        ),
        (
            "membership_stopped",
            encode(&Membership {
                next: 300,
                acked_seq: 9,
                spans: vec![log::Span {
                    from: 1,
                    until: Some(10),
                }],
                stop: Some(log::Stop {
                    pos: 301,
                    seq: 10,
                    payload: Bytes::from(vec![0xa1]),
                    welcome: Some(log::KeptWelcome {
                        pos: 280,
                        seq: 1,
                        sender: DeviceId([0x44; 16]),
                        payload: Bytes::from(vec![0, 1, 0, 3]),
                    }),
                }),
            }),
        ),
        (
            "log_entry_notice",
            encode(&LogEntry {
                seq: 10,
                sender: device,
                kind: ItemKind::Notice,
                payload: Bytes::from(vec![0xa1]),
                welcomed: Vec::new(),
                to: None,
            }),
        ),
        ("log_key", log::log_key(&group, 258).to_vec()),
        (
            "log_pos_notice",
            log::Header {
                group,
                seq: 10,
                kind: ItemKind::Notice,
                sender: device,
                targeted: false,
            }
            .to_bytes()
            .to_vec(),
        ),
        (
            "log_pos",
            log::Header {
                group,
                seq: 9,
                kind: ItemKind::Welcome,
                sender: device,
                targeted: false,
            }
            .to_bytes()
            .to_vec(),
        ),
        (
            "log_pos_targeted",
            log::Header {
                group,
                seq: 9,
                kind: ItemKind::Application,
                sender: device,
                targeted: true,
            }
            .to_bytes()
            .to_vec(),
        ),
        ("member_key", member_key(&group, &device).to_vec()),
        (
            "device_group_key",
            device_group_key(&device, &group).to_vec(),
        ),
        (
            "log_gc",
            log::Collected {
                floor_seq: 7,
                at_seq: 12,
            }
            .to_bytes()
            .to_vec(),
        ),
        ("queue_key", device_index_key(&device, 258).to_vec()),
        (
            "payload_key",
            payload_key(&group, 9, ItemKind::Commit).to_vec(),
        ),
        ("kp_meta", kp_meta_bytes(1, 5).to_vec()),
        ("user_key", user_key(&UserId::new("bob@b").expect("valid"))),
        (
            "admin_nonce_key",
            admin_nonce_key(
                0x6553_f1c8,
                &[0x5e; 16],
                &OrgId::new("north").expect("valid"),
            ),
        ),
    ];
    let actual: String = samples
        .iter()
        .map(|(name, bytes)| format!("{name} {}\n", hex::encode(bytes)))
        .collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/golden.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).expect("write golden file");
    }
    let expected = std::fs::read_to_string(path).expect("golden file; run with UPDATE_GOLDEN=1");
    assert_eq!(actual, expected, "the disk format changed");
}

/// Records written before organisation CAs and device certificates
/// existed (pinned bytes of that format) still decode, without them.
#[test]
fn records_from_before_certificates_still_decode() {
    let org = hex::decode(
        "a3666f72675f69646b6e6f7274682d74727573746c646973706c61795f6e616d65\
         6b4e6f7274682054727573746a637265617465645f61741a6553f100",
    )
    .expect("hex");
    let org: Org = decode(&org, "org").expect("an old org record decodes");
    assert_eq!(org.org_id.as_str(), "north-trust");
    assert_eq!(org.ca_certificate, None);
    let device = hex::decode(
        "a6696465766963655f6964501111111111111111111111111111111167757365725f69\
         6471616c696365406e6f7274682d7472757374646e616d65665761726420376d736967\
         6e61747572655f6b65795820333333333333333333333333333333333333333333333333\
         33333333333333336b656e726f6c6c65645f61741a6553f102677265766f6b6564f4",
    )
    .expect("hex");
    let device: Device = decode(&device, "device").expect("an old device record decodes");
    assert_eq!(device.device_id, DeviceId([0x11; 16]));
    assert_eq!(device.certificate, None);
}

fn add(store: &SledStore, group: GroupId, epoch: u64, by: DeviceId, added: &[DeviceId]) {
    store
        .apply_commit(&CommitWrite {
            group_id: group,
            epoch,
            committer: by,
            commit: b"commit",
            welcome: Some(b"welcome"),
            group_info: b"info",
            added,
            removed: &[],
        })
        .expect("commit");
}

fn send(store: &SledStore, group: GroupId, sender: DeviceId, body: &[u8]) {
    store
        .append_application(&ApplicationWrite {
            group_id: group,
            sender,
            message: body,
            leave_request: false,
            to: None,
        })
        .expect("send");
}

fn ack_all(store: &SledStore, device: &DeviceId) -> usize {
    let items = store.queue_page(device, None, 100_000).expect("queue");
    let ids: Vec<u64> = items.iter().map(|i| i.queue_id).collect();
    for chunk in ids.chunks(1_000) {
        store.ack(device, chunk).expect("ack");
    }
    ids.len()
}

/// A device whose delivery is stopped holds nothing back: the group's log
/// is collected past it, while its kept Welcome and notice stay readable
/// until it acknowledges them.
#[test]
fn a_stopped_device_holds_no_log_back() {
    let store = SledStore::open_temporary().expect("open");
    let g = GroupId([6; 16]);
    let (a, b) = (DeviceId([1; 16]), DeviceId([2; 16]));
    store.create_group(&g, &a, b"info").expect("create");
    add(&store, g, 0, a, &[b]);
    ack_all(&store, &a);
    for n in 0..100u32 {
        send(&store, g, a, &n.to_be_bytes());
    }
    store
        .stop_delivery(&g, &b, b"stopped", None)
        .expect("stop")
        .expect("written");
    for round in 0..4u32 {
        for n in 0..1_000u32 {
            send(&store, g, a, &(round * 1_000 + n).to_be_bytes());
        }
        ack_all(&store, &a);
    }
    assert!(
        store.log.len() < usize::try_from(log::COLLECT_EVERY).expect("small"),
        "{} entries left",
        store.log.len()
    );
    let kinds: Vec<_> = store
        .queue_page(&b, None, 100)
        .expect("queue")
        .iter()
        .map(|i| (i.kind, i.seq, i.payload.to_vec()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ItemKind::Welcome, 1, b"welcome".to_vec()),
            (ItemKind::Notice, 102, b"stopped".to_vec()),
        ]
    );
    assert_eq!(ack_all(&store, &b), 2);
    assert_eq!(store.queue_len(&b).expect("len"), 0);
    store.collect(&g).expect("collect");
    assert!(
        store
            .members
            .get(member_key(&g, &b))
            .expect("read")
            .is_none(),
        "forgotten once it read its notice"
    );
}

/// A message is stored once whatever the group's size, and what every
/// member device acknowledged is deleted, so a busy group's log stays
/// short.
#[test]
fn group_logs_store_once_and_forget_what_everyone_read() {
    let store = SledStore::open_temporary().expect("open");
    let g = GroupId([5; 16]);
    let members: Vec<DeviceId> = (1..=50u8).map(|n| DeviceId([n; 16])).collect();
    store
        .create_group(&g, &members[0], b"info")
        .expect("create");
    add(&store, g, 0, members[0], &members[1..]);
    for m in &members {
        ack_all(&store, m);
    }
    send(&store, g, members[0], b"one");
    assert_eq!(store.log.len(), 3, "commit, Welcome and one message");
    assert_eq!(store.log_pos.len(), 3);

    for round in 0..4u64 {
        for i in 0..100u64 {
            let sender = members[usize::try_from(i % 3).expect("small")];
            send(&store, g, sender, format!("{round}-{i}").as_bytes());
        }
        for m in &members {
            ack_all(&store, m);
        }
    }
    // Collection runs every COLLECT_EVERY sequence numbers: what is left is
    // what came since, never the 400 messages every device read.
    assert!(
        store.log.len() < usize::try_from(log::COLLECT_EVERY).expect("small"),
        "{} entries left",
        store.log.len()
    );
    assert_eq!(store.log.len(), store.log_pos.len());
    for m in &members {
        assert!(store.queue_page(m, None, 10).expect("queue").is_empty());
    }
}

/// A relay upgraded with items still queued the earlier way (one queue per
/// device, shared payloads) delivers them first, then the group's new
/// messages, and acknowledgements remove both.
#[test]
fn queues_of_the_earlier_layout_are_delivered_after_an_upgrade() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (DeviceId([1; 16]), DeviceId([2; 16]));
    let g = GroupId([3; 16]);
    {
        // What version 0.x wrote: a group of a and b at seq 3, with b's
        // two messages from a still queued.
        let db = ::sled::Config::new().path(dir.path()).open().expect("open");
        let record = GroupRecord {
            group_id: g,
            epoch: 1,
            roster: vec![a, b],
            readable_from: 1,
            stopped: Vec::new(),
            leaving: Vec::new(),
        };
        db.open_tree("groups")
            .expect("tree")
            .insert(g.as_bytes(), encode(&record))
            .expect("insert");
        db.open_tree("group_seq")
            .expect("tree")
            .insert(g.as_bytes(), &4u64.to_be_bytes()[..])
            .expect("insert");
        let queue = db.open_tree("queue").expect("tree");
        let payloads = db.open_tree("payloads").expect("tree");
        for seq in [2u64, 3] {
            let id = db.generate_id().expect("id");
            let entry = QueueEntry {
                group_id: g,
                seq,
                sender: a,
                kind: ItemKind::Application,
            };
            queue
                .insert(device_index_key(&b, id), encode(&entry))
                .expect("insert");
            let payload = PayloadRecord {
                refs: 1,
                payload: Bytes::from(format!("old {seq}").into_bytes()),
            };
            payloads
                .insert(
                    payload_key(&g, seq, ItemKind::Application),
                    encode(&payload),
                )
                .expect("insert");
        }
        db.open_tree("queue_len")
            .expect("tree")
            .insert(b.as_bytes(), &2u64.to_be_bytes()[..])
            .expect("insert");
        db.flush().expect("flush");
    }
    let store = SledStore::open(dir.path()).expect("open and migrate");
    send(&store, g, a, b"new 4");
    assert_eq!(store.queue_len(&b).expect("len"), 3);
    let first = store.queue_page(&b, None, 10).expect("queue");
    let seqs: Vec<u64> = first.iter().map(|i| i.seq).collect();
    assert_eq!(seqs, vec![2, 3], "the old queue first");
    let next = store
        .queue_page(&b, Some(first[1].queue_id), 10)
        .expect("queue");
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].seq, next[0].payload.as_slice()),
        (4, &b"new 4"[..])
    );
    assert!(next[0].queue_id > first[1].queue_id);

    let ids: Vec<u64> = first.iter().chain(&next).map(|i| i.queue_id).collect();
    assert_eq!(store.ack(&b, &ids).expect("ack"), 3);
    assert!(store.queue_page(&b, None, 10).expect("queue").is_empty());
    assert!(store.payloads.is_empty(), "old payloads are released");
    assert_eq!(
        store.groups_with_devices(&[b]).expect("groups"),
        vec![g],
        "found through the new index"
    );
    drop(store);
    // Migrating is done once.
    let store = SledStore::open(dir.path()).expect("reopen");
    assert!(store.queue_page(&b, None, 10).expect("queue").is_empty());
    send(&store, g, b, b"new 5");
    let for_a = store.queue_page(&a, None, 10).expect("queue");
    assert_eq!(for_a.len(), 1, "b's message, not a's own");
    assert_eq!(for_a[0].payload.as_slice(), b"new 5");
}

/// A flush syncs what sled leaves unsynced: the log file and blob files
/// (items over about 128 KiB), which sled writes without any sync. Large
/// messages go to blobs; the flush finds and syncs them, survives sled
/// collecting them, and they read back after a reopen.
#[test]
fn a_flush_syncs_the_log_and_new_blob_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let group = GroupId([5; 16]);
    let (a, b) = (DeviceId([1; 16]), DeviceId([2; 16]));
    let big = vec![0x5a_u8; 400 * 1024];
    {
        let store = SledStore::open(dir.path()).expect("open");
        store.create_group(&group, &a, b"info").expect("group");
        add(&store, group, 0, a, &[b]);
        send(&store, group, a, &big);
        store.flush().expect("flush");
        let blobs = std::fs::read_dir(dir.path().join("blobs"))
            .expect("blob directory")
            .count();
        assert!(blobs > 0, "a 400 KiB message is a blob file");
        let files = store.files.as_ref().expect("durable files");
        let synced = files.synced_blobs().len();
        assert_eq!(synced, blobs, "every blob file synced");
        send(&store, group, a, b"small");
        store.flush().expect("a flush with nothing new to sync");
    }
    let store = SledStore::open(dir.path()).expect("reopen");
    let items = store.queue_page(&b, None, 10).expect("queue");
    assert!(
        items.iter().any(|i| i.payload.as_slice() == big.as_slice()),
        "the large message reads back"
    );
}
