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
        id: MessageId([n; 16]),
        group_id: group,
        sender: UserId::new("alice@north").expect("valid"),
        sender_device: DeviceId([1; 16]),
        sent_at: 1000 + u64::from(n),
        seq: None,
        text: Some(format!("m{n}")),
        kind: "text".into(),
        state,
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
        all.iter().map(|m| m.id.0[0]).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let last2 = s.history(&g, None, 2).expect("read");
    assert_eq!(last2.iter().map(|m| m.id.0[0]).collect::<Vec<_>>(), [4, 5]);
    let before = s.history(&g, Some(&MessageId([4; 16])), 2).expect("read");
    assert_eq!(before.iter().map(|m| m.id.0[0]).collect::<Vec<_>>(), [2, 3]);
    s.set_message_state(&MessageId([2; 16]), DeliveryState::Sent, Some(42))
        .expect("write");
    let m = s
        .message(&MessageId([2; 16]))
        .expect("read")
        .expect("exists");
    assert_eq!((m.state, m.seq), (DeliveryState::Sent, Some(42)));
    s.set_message_state(&MessageId([2; 16]), DeliveryState::Failed, None)
        .expect("write");
    let m = s
        .message(&MessageId([2; 16]))
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

pub fn outbox_is_fifo_with_prepared_bytes<S: ClientStore>(s: S) {
    assert!(s.first_op().expect("read").is_none());
    let a = s.push_op(b"a").expect("push");
    let b = s.push_op(b"b").expect("push");
    assert!(b > a);
    assert_eq!(s.outbox_len().expect("len"), 2);
    s.set_op_prepared(a, b"cipher").expect("write");
    let first = s.first_op().expect("read").expect("some");
    assert_eq!(
        (first.op_id, first.op.as_slice(), first.prepared.as_deref()),
        (a, &b"a"[..], Some(&b"cipher"[..]))
    );
    s.delete_op(a).expect("delete");
    let first = s.first_op().expect("read").expect("some");
    assert_eq!((first.op_id, first.prepared), (b, None));
    s.delete_op(b).expect("delete");
    assert_eq!(s.outbox_len().expect("len"), 0);
}

pub fn receipts_are_recorded_once_per_user<S: ClientStore>(s: S) {
    let m = MessageId([4; 16]);
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
    let m2 = MessageId([5; 16]);
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
            fn outbox_is_fifo_with_prepared_bytes() {
                $crate::store::conformance::outbox_is_fifo_with_prepared_bytes($make);
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
            fn transactions_cover_mls_state_and_app_data() {
                $crate::store::conformance::transactions_cover_mls_state_and_app_data($make);
            }
        }
    };
}

client_store_conformance!(sqlite_in_memory, SqliteStore::in_memory().expect("store"));
client_store_conformance!(
    sqlite_file,
    SqliteStore::open(&tempfile::tempdir().expect("tmp").keep().join("store.db")).expect("store")
);

/// A file-backed store keeps everything across a reopen, MLS state included.
#[test]
fn sqlite_file_survives_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("store.db");
    let gid = {
        let s = SqliteStore::open(&path).expect("store");
        let tx = s.transaction().expect("begin");
        let gid = make_group(&s);
        s.insert_conversation(&GroupId([1; 16]), "Persisted", 3, 0)
            .expect("insert");
        s.push_op(b"op").expect("push");
        tx.commit().expect("commit");
        gid
    };
    let s = SqliteStore::open(&path).expect("reopen");
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
