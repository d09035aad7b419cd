//! The conformance suite every [`ClientStore`] must pass.
//!
//! `client_store_conformance!(name, make)` generates one test per case in a
//! module `name`, where `make` is an expression returning a fresh store;
//! `reopen` cases take a path and a constructor for file-backed stores.

use cascade_protocol::{DeviceId, GroupId, OrgId, UserId};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::OpenMlsProvider;

use super::*;
use crate::content::MessageId;

fn msg(group: GroupId, n: u8, state: DeliveryState) -> Message {
    Message {
        id: MessageId::v1([n; 16]),
        group_id: group,
        sender: UserId::new("alice@north").expect("valid"),
        sender_device: DeviceId([1; 16]),
        sent_at: 1000 + u64::from(n),
        seq: None,
        text: Some(format!("m{n}")),
        kind: "text".into(),
        state,
        reply_to: None,
        edited_at: None,
        deleted_by: None,
        reactions: Vec::new(),
        expires_at: None,
        read_by: 0,
        mentions: Vec::new(),
        attachment: None,
    }
}

pub fn identity_round_trips<S: ClientStore>(s: S) {
    assert_eq!(s.identity().expect("read"), None);
    let id = Identity {
        server_url: "http://relay".into(),
        user_id: UserId::new("alice@north").expect("valid"),
        org_id: OrgId::new("north").expect("valid"),
        device_id: DeviceId([3; 16]),
        display_name: "Alice".into(),
        role: "Nurse".into(),
        signature_key: vec![9; 32],
        anchor: vec![1, 2, 3],
        certificate: Some(serde_bytes::ByteBuf::from(vec![4, 5])),
        previous_anchor: None,
        server_ca: None,
    };
    s.set_identity(&id).expect("write");
    assert_eq!(s.identity().expect("read"), Some(id));
    assert_eq!(s.kv_get("k").expect("read"), None);
    s.kv_set("k", b"v1").expect("write");
    s.kv_set("k", b"v2").expect("write");
    assert_eq!(s.kv_get("k").expect("read"), Some(b"v2".to_vec()));
}

pub fn conversations_track_cursor_state_and_activity<S: ClientStore>(s: S) {
    let (g1, g2) = (GroupId([1; 16]), GroupId([2; 16]));
    s.insert_conversation(&g1, "One", 0, 10).expect("insert");
    s.insert_conversation(&g2, "Two", 5, 20).expect("insert");
    s.insert_conversation(&g2, "Ignored", 9, 30)
        .expect("idempotent");
    assert_eq!(
        s.conversation_cursor(&g2).expect("read"),
        Some((5, ConversationState::Active))
    );
    s.set_last_seq(&g2, 8).expect("write");
    s.set_last_seq(&g2, 7).expect("never backwards");
    assert_eq!(
        s.conversation_cursor(&g2).expect("read").map(|c| c.0),
        Some(8)
    );
    s.set_conversation_state(&g1, ConversationState::Left)
        .expect("write");
    s.set_conversation_name(&g1, "Renamed").expect("write");
    let list = s.conversations(&|g| u64::from(g.0[0]) * 10).expect("list");
    assert_eq!(
        list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["Two", "Renamed"]
    );
    assert_eq!(list[1].state, ConversationState::Left);
    assert_eq!(list[0].epoch, 20);
    // A received message counts as unread and moves the conversation up.
    assert!(s
        .insert_message(&msg(g1, 1, DeliveryState::Received), 99, true)
        .expect("insert"));
    let list = s.conversations(&|_| 0).expect("list");
    assert_eq!(list[0].group_id, g1);
    assert_eq!(list[0].unread, 1);
    assert_eq!(list[0].last_message.as_deref(), Some("m1"));
    s.mark_read(&g1).expect("write");
    assert_eq!(s.conversations(&|_| 0).expect("list")[0].unread, 0);
    assert_eq!(
        s.conversation_cursor(&GroupId([7; 16])).expect("read"),
        None
    );
}

pub fn messages_are_deduplicated_and_paged<S: ClientStore>(s: S) {
    let g = GroupId([1; 16]);
    s.insert_conversation(&g, "G", 0, 0).expect("insert");
    for n in 1..=5 {
        assert!(s
            .insert_message(&msg(g, n, DeliveryState::Received), 1, true)
            .expect("insert"));
    }
    assert!(!s
        .insert_message(&msg(g, 3, DeliveryState::Received), 1, true)
        .expect("dup"));
    let all = s.history(&g, None, 100).expect("read");
    assert_eq!(
        all.iter().map(|m| m.id.as_bytes()[0]).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let last2 = s.history(&g, None, 2).expect("read");
    assert_eq!(
        last2.iter().map(|m| m.id.as_bytes()[0]).collect::<Vec<_>>(),
        [4, 5]
    );
    let before = s
        .history(&g, Some(&MessageId::v1([4; 16])), 2)
        .expect("read");
    assert_eq!(
        before
            .iter()
            .map(|m| m.id.as_bytes()[0])
            .collect::<Vec<_>>(),
        [2, 3]
    );
    s.set_message_state(&MessageId::v1([2; 16]), DeliveryState::Sent, Some(42))
        .expect("write");
    let m = s
        .message(&MessageId::v1([2; 16]))
        .expect("read")
        .expect("exists");
    assert_eq!((m.state, m.seq), (DeliveryState::Sent, Some(42)));
    s.set_message_state(&MessageId::v1([2; 16]), DeliveryState::Failed, None)
        .expect("write");
    let m = s
        .message(&MessageId::v1([2; 16]))
        .expect("read")
        .expect("exists");
    assert_eq!(
        (m.state, m.seq),
        (DeliveryState::Failed, Some(42)),
        "seq kept"
    );
    assert_eq!(
        s.conversations(&|_| 0).expect("list")[0].unread,
        5,
        "the duplicate did not count"
    );
}

/// A MIMI message id (32 octets) and a `v1` one (16) are kept apart,
/// read back as they were written, and receipts work for both.
pub fn v1_and_mimi_message_ids_are_kept_apart<S: ClientStore>(s: S) {
    let g = GroupId([1; 16]);
    s.insert_conversation(&g, "G", 0, 0).expect("insert");
    let mut mimi = [7u8; 32];
    mimi[0] = 0x01;
    let mimi = MessageId::mimi(crate::content::mimi::MimiId(mimi)).expect("a MIMI id");
    // The v1 id whose octets are the MIMI id's last 16.
    let v1 = MessageId::v1([7; 16]);
    for id in [v1, mimi] {
        let mut m = msg(g, 7, DeliveryState::Sent);
        m.id = id;
        assert!(
            s.insert_message(&m, 1, true).expect("insert"),
            "{id} is new"
        );
    }
    let ids: Vec<_> = s
        .history(&g, None, 10)
        .expect("read")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [v1, mimi]);
    assert_eq!(s.message(&mimi).expect("read").map(|m| m.id), Some(mimi));
    let bob = UserId::new("bob@east").expect("valid");
    s.expect_receipts(&mimi, &g, std::slice::from_ref(&bob))
        .expect("expect");
    s.expect_receipts(&v1, &g, std::slice::from_ref(&bob))
        .expect("expect");
    assert!(s.add_receipt(&v1, &g, &bob, 10).expect("add"));
    assert!(!s.all_confirmed(&mimi).expect("read"));
    assert_eq!(s.forget_recipient(&g, &bob).expect("forget"), vec![mimi]);
}

pub fn mentions_follow_the_text<S: ClientStore>(s: S) {
    let g = GroupId([1; 16]);
    s.insert_conversation(&g, "G", 0, 0).expect("insert");
    let bob = UserId::new("bob@east").expect("valid");
    let mention = |start, end| crate::content::Mention {
        user_id: bob.clone(),
        start,
        end,
    };
    let mut m = msg(g, 1, DeliveryState::Received);
    m.text = Some("ask @Bob".into());
    m.mentions = vec![mention(4, 8)];
    assert!(s.insert_message(&m, 1, true).expect("insert"));
    let read = s.message(&m.id).expect("read").expect("there");
    assert_eq!(read.mentions, m.mentions);
    assert!(read.mentions(&bob));
    // An edit brings its own mentions, none here.
    let edit = MessageId::random();
    assert!(s
        .edit_message(&m.id, &edit, "ask Bob", &[], 2)
        .expect("edit"));
    assert!(s
        .message(&m.id)
        .expect("read")
        .expect("there")
        .mentions
        .is_empty());
    let again = MessageId::random();
    assert!(s
        .edit_message(&m.id, &again, "@Bob!", &[mention(0, 4)], 3)
        .expect("edit"));
    assert_eq!(
        s.message(&m.id).expect("read").expect("there").mentions,
        vec![mention(0, 4)]
    );
    // A delete for everyone erases them with the text.
    s.erase_message(&m.id, &bob).expect("erase");
    let gone = s.message(&m.id).expect("read").expect("there");
    assert_eq!((gone.text, gone.mentions), (None, vec![]));
}

pub fn outbox_keeps_lanes_in_order_with_prepared_bytes_and_state<S: ClientStore>(s: S) {
    let (g1, g2) = (GroupId([1; 16]), GroupId([2; 16]));
    assert!(s.outbox_groups().expect("read").is_empty());
    let a = s.push_op(&g1, b"a").expect("push");
    let x = s.push_op(&g2, b"x").expect("push");
    let b = s.push_op(&g1, b"b").expect("push");
    assert!(a < x && x < b, "ids increase across lanes");
    assert_eq!(s.outbox_len().expect("len"), 3);
    assert_eq!(s.outbox_groups().expect("read"), [g1, g2], "oldest first");
    s.set_op_prepared(a, b"cipher").expect("write");
    s.set_op_state(b, b"claims").expect("write");
    let lane = s.ops(&g1, None, 10).expect("read");
    assert_eq!(
        lane.iter()
            .map(|e| (
                e.op_id,
                e.group_id,
                e.op.as_slice(),
                e.prepared.as_deref(),
                e.state.as_deref()
            ))
            .collect::<Vec<_>>(),
        [
            (a, g1, &b"a"[..], Some(&b"cipher"[..]), None),
            (b, g1, &b"b"[..], None, Some(&b"claims"[..])),
        ]
    );
    assert_eq!(
        s.ops(&g1, Some(a), 10).expect("read")[0].op_id,
        b,
        "after a"
    );
    assert_eq!(s.ops(&g1, None, 1).expect("read").len(), 1, "limit");
    assert_eq!(s.op(x).expect("read").map(|e| e.group_id), Some(g2));
    s.clear_prepared(&g1).expect("write");
    assert_eq!(s.op(a).expect("read").and_then(|e| e.prepared), None);
    s.delete_op(a).expect("delete");
    s.delete_op(a).expect("deleting twice is fine");
    assert_eq!(
        s.outbox_groups().expect("read"),
        [g2, g1],
        "g2 now holds the oldest"
    );
    s.delete_op(b).expect("delete");
    s.delete_op(x).expect("delete");
    assert_eq!(s.outbox_len().expect("len"), 0);
    assert!(s.outbox_groups().expect("read").is_empty());
}

pub fn conversation_members_are_summarised_and_joins_can_be_undone<S: ClientStore>(s: S) {
    let g = GroupId([7; 16]);
    s.insert_conversation(&g, "Ward", 0, 0).expect("insert");
    let c = &s.conversations(&|_| 0).expect("list")[0];
    assert_eq!((c.orgs.len(), c.people), (0, 0), "nothing recorded yet");
    let (north, east) = (
        OrgId::new("north").expect("valid"),
        OrgId::new("east").expect("valid"),
    );
    assert_eq!(s.conversation_users(&g).expect("read"), None);
    let (a, b, c) = (
        UserId::new("ann@north").expect("valid"),
        UserId::new("bo@east").expect("valid"),
        UserId::new("cy@north").expect("valid"),
    );
    s.set_conversation_members(
        &g,
        &[north.clone(), east.clone(), north.clone()],
        &[c.clone(), a.clone(), b.clone(), a.clone()],
    )
    .expect("write");
    let conv = &s.conversations(&|_| 0).expect("list")[0];
    assert_eq!((conv.orgs.clone(), conv.people), (vec![east, north], 3));
    assert_eq!(s.conversation_users(&g).expect("read"), Some(vec![a, b, c]));
    for state in [
        ConversationState::Joining,
        ConversationState::Rejoining,
        ConversationState::Leaving,
    ] {
        s.set_conversation_state(&g, state).expect("write");
        assert_eq!(
            s.conversation_cursor(&g).expect("read").map(|c| c.1),
            Some(state)
        );
    }
    s.delete_conversation(&g).expect("delete");
    assert_eq!(s.conversation_cursor(&g).expect("read"), None);
}

pub fn receipts_are_recorded_once_per_user<S: ClientStore>(s: S) {
    let m = MessageId::v1([4; 16]);
    let g = GroupId([1; 16]);
    let bob = UserId::new("bob@east").expect("valid");
    let carol = UserId::new("carol@north").expect("valid");
    assert!(!s.all_confirmed(&m).expect("read"), "nobody expected yet");
    // Bob's receipt may come before the relay's answer that sets who is
    // expected; it counts once expectations are set.
    assert!(s.add_receipt(&m, &g, &bob, 10).expect("add"));
    assert!(
        !s.add_receipt(&m, &g, &bob, 12).expect("add"),
        "a repeat is not new"
    );
    assert!(!s.all_confirmed(&m).expect("read"));
    s.expect_receipts(&m, &g, &[bob.clone(), carol.clone()])
        .expect("expect");
    assert!(
        !s.all_confirmed(&m).expect("read"),
        "Carol has not confirmed"
    );
    assert!(s.add_receipt(&m, &g, &carol, 13).expect("add"));
    assert!(s.all_confirmed(&m).expect("read"));

    // A recipient who leaves is no longer waited for.
    let m2 = MessageId::v1([5; 16]);
    s.expect_receipts(&m2, &g, &[bob.clone(), carol.clone()])
        .expect("expect");
    assert!(s.add_receipt(&m2, &g, &bob, 14).expect("add"));
    assert_eq!(s.forget_recipient(&g, &carol).expect("forget"), vec![m2]);
    assert!(s.all_confirmed(&m2).expect("read"));
    assert!(
        s.forget_recipient(&g, &bob).expect("forget").is_empty(),
        "confirmed rows stay"
    );
}

pub fn directory_cache_is_searchable<S: ClientStore>(s: S) {
    let p = |u: &str, name: &str, role: &str| Person {
        user_id: UserId::new(u).expect("valid"),
        org_id: UserId::new(u).expect("valid").org(),
        display_name: name.into(),
        role: role.into(),
        devices: 1,
    };
    s.put_person(&p("alice@north", "Alice Okafor", "Ward Sister"), 1)
        .expect("put");
    s.put_person(&p("bob@north", "Bob Singh", "Junior Doctor"), 1)
        .expect("put");
    s.put_person(&p("carol@east", "Carol 100%_Hughes", "Paramedic"), 1)
        .expect("put");
    let names = |q: &str| -> Vec<String> {
        s.search_people(q, 10)
            .expect("search")
            .into_iter()
            .map(|p| p.display_name)
            .collect()
    };
    assert_eq!(names("sister"), ["Alice Okafor"]);
    assert_eq!(names("DOCTOR"), ["Bob Singh"]);
    assert_eq!(names("@north"), ["Alice Okafor", "Bob Singh"]);
    assert_eq!(
        names("100%_"),
        ["Carol 100%_Hughes"],
        "LIKE wildcards are literal"
    );
    assert_eq!(names("%"), ["Carol 100%_Hughes"]);
    assert_eq!(names("").len(), 3);
    // Refreshing replaces.
    s.put_person(&p("bob@north", "Bob Singh", "Registrar"), 2)
        .expect("put");
    assert_eq!(names("registrar"), ["Bob Singh"]);
    assert!(names("junior").is_empty());
}

fn make_group<S: ClientStore>(s: &S) -> openmls::group::GroupId {
    let provider = s.mls();
    let cs = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
    let signer = SignatureKeyPair::new(cs.signature_algorithm()).expect("keys");
    signer.store(provider.storage()).expect("store key");
    let cwk = CredentialWithKey {
        credential: BasicCredential::new(b"x".to_vec()).into(),
        signature_key: signer.public().into(),
    };
    let g = MlsGroup::new(
        &provider,
        &signer,
        &MlsGroupCreateConfig::builder().ciphersuite(cs).build(),
        cwk,
    )
    .expect("group");
    g.group_id().clone()
}

/// An MLS change and the app data written with it commit together or not
/// at all.
pub fn transactions_cover_mls_state_and_app_data<S: ClientStore>(s: S) {
    let tx = s.transaction().expect("begin");
    let gid = make_group(&s);
    s.insert_conversation(&GroupId([5; 16]), "Doomed", 0, 0)
        .expect("insert");
    drop(tx); // rolled back
    assert!(MlsGroup::load(s.mls().storage(), &gid)
        .expect("read")
        .is_none());
    assert_eq!(
        s.conversation_cursor(&GroupId([5; 16])).expect("read"),
        None
    );

    let tx = s.transaction().expect("begin");
    let gid = make_group(&s);
    s.insert_conversation(&GroupId([6; 16]), "Kept", 0, 0)
        .expect("insert");
    tx.commit().expect("commit");
    assert!(MlsGroup::load(s.mls().storage(), &gid)
        .expect("read")
        .is_some());
    assert!(s
        .conversation_cursor(&GroupId([6; 16]))
        .expect("read")
        .is_some());
}

/// A transaction begun inside another commits or rolls back with respect
/// to it; nothing is kept unless the outermost commits.
pub fn nested_transactions_answer_to_the_outer_one<S: ClientStore>(s: S) {
    let (g1, g2, g3) = (GroupId([1; 16]), GroupId([2; 16]), GroupId([3; 16]));
    {
        let outer = s.transaction().expect("begin");
        let inner = s.transaction().expect("begin inner");
        s.insert_conversation(&g1, "Inner, committed", 0, 0)
            .expect("insert");
        inner.commit().expect("commit inner");
        drop(outer); // rolled back, and the inner work with it
    }
    assert_eq!(s.conversation_cursor(&g1).expect("read"), None);
    {
        let outer = s.transaction().expect("begin");
        s.insert_conversation(&g2, "Outer", 0, 0).expect("insert");
        let inner = s.transaction().expect("begin inner");
        s.insert_conversation(&g3, "Inner, rolled back", 0, 0)
            .expect("insert");
        drop(inner);
        outer.commit().expect("commit");
    }
    assert!(s.conversation_cursor(&g2).expect("read").is_some());
    assert_eq!(s.conversation_cursor(&g3).expect("read"), None);
    // And a plain transaction still works afterwards.
    let tx = s.transaction().expect("begin");
    s.insert_conversation(&g1, "Later", 0, 0).expect("insert");
    tx.commit().expect("commit");
    assert!(s.conversation_cursor(&g1).expect("read").is_some());
}

/// Generates the suite for a store constructor.
macro_rules! client_store_conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn identity_round_trips() {
                $crate::store::conformance::identity_round_trips($make);
            }
            #[test]
            fn conversations_track_cursor_state_and_activity() {
                $crate::store::conformance::conversations_track_cursor_state_and_activity($make);
            }
            #[test]
            fn messages_are_deduplicated_and_paged() {
                $crate::store::conformance::messages_are_deduplicated_and_paged($make);
            }
            #[test]
            fn v1_and_mimi_message_ids_are_kept_apart() {
                $crate::store::conformance::v1_and_mimi_message_ids_are_kept_apart($make);
            }
            #[test]
            fn mentions_follow_the_text() {
                $crate::store::conformance::mentions_follow_the_text($make);
            }
            #[test]
            fn outbox_keeps_lanes_in_order_with_prepared_bytes_and_state() {
                $crate::store::conformance::outbox_keeps_lanes_in_order_with_prepared_bytes_and_state($make);
            }
            #[test]
            fn conversation_members_are_summarised_and_joins_can_be_undone() {
                $crate::store::conformance::conversation_members_are_summarised_and_joins_can_be_undone($make);
            }
            #[test]
            fn receipts_are_recorded_once_per_user() {
                $crate::store::conformance::receipts_are_recorded_once_per_user($make);
            }
            #[test]
            fn directory_cache_is_searchable() {
                $crate::store::conformance::directory_cache_is_searchable($make);
            }
            #[test]
            fn nested_transactions_answer_to_the_outer_one() {
                $crate::store::conformance::nested_transactions_answer_to_the_outer_one($make);
            }
            #[test]
            fn transactions_cover_mls_state_and_app_data() {
                $crate::store::conformance::transactions_cover_mls_state_and_app_data($make);
            }
        }
    };
}

client_store_conformance!(sqlite_in_memory, SqliteStore::in_memory().expect("store"));
client_store_conformance!(
    sqlite_file,
    SqliteStore::open(
        &tempfile::tempdir().expect("tmp").keep().join("store.db"),
        &StoreKey::key([7; 32])
    )
    .expect("store")
);

/// A file-backed store keeps everything across a reopen, MLS state included.
#[test]
fn sqlite_file_survives_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("store.db");
    let gid = {
        let s = SqliteStore::open(&path, &StoreKey::key([7; 32])).expect("store");
        let tx = s.transaction().expect("begin");
        let gid = make_group(&s);
        s.insert_conversation(&GroupId([1; 16]), "Persisted", 3, 0)
            .expect("insert");
        s.push_op(&GroupId([1; 16]), b"op").expect("push");
        tx.commit().expect("commit");
        gid
    };
    let s = SqliteStore::open(&path, &StoreKey::key([7; 32])).expect("reopen");
    assert!(MlsGroup::load(s.mls().storage(), &gid)
        .expect("read")
        .is_some());
    assert_eq!(
        s.conversation_cursor(&GroupId([1; 16]))
            .expect("read")
            .map(|c| c.0),
        Some(3)
    );
    assert_eq!(s.outbox_len().expect("len"), 1);
}

/// A new database is created at the current schema version; one written by
/// a newer Cascade is refused, not opened (nothing in it is touched).
#[test]
fn schema_version_is_recorded_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, &StoreKey::key([7; 32])).expect("store"));
    let (conn, _) = at_rest::open(&path, &StoreKey::key([7; 32])).expect("open");
    let v: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("read");
    assert_eq!(v, SCHEMA_VERSION);
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("write");
    drop(conn);
    match SqliteStore::open(&path, &StoreKey::key([7; 32])) {
        Err(CoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION))
        }
        Err(e) => panic!("expected SchemaTooNew, got {e}"),
        Ok(_) => panic!("a newer schema was opened"),
    }
}

/// The file on disk is SQLCipher's: neither what was stored nor SQLite's
/// header can be read from it without the key, and a wrong key is
/// `WrongKey` without a byte changed.
#[test]
fn sqlite_file_is_encrypted_and_a_wrong_key_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("store.db");
    {
        let s = SqliteStore::open(&path, &StoreKey::key([7; 32])).expect("store");
        s.insert_conversation(&GroupId([1; 16]), "Bay 12 handover", 0, 0)
            .expect("insert");
    }
    let files = |dir: &std::path::Path| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut all: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").path())
            .map(|p| (p.clone(), std::fs::read(&p).expect("read")))
            .collect();
        all.sort();
        all
    };
    let before = files(dir.path());
    for (p, bytes) in &before {
        for needle in [&b"Bay 12 handover"[..], b"SQLite format 3", b"CREATE TABLE"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {:?}",
                p.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(matches!(
        SqliteStore::open(&path, &StoreKey::key([8; 32])),
        Err(CoreError::WrongKey)
    ));
    assert_eq!(files(dir.path()), before, "a wrong key changed the files");
    let s = SqliteStore::open(&path, &StoreKey::key([7; 32])).expect("reopens");
    assert!(s
        .conversation_cursor(&GroupId([1; 16]))
        .expect("read")
        .is_some());
}
