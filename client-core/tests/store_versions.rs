//! Databases written by every earlier schema version open, migrate and
//! carry on: each `tests/fixtures/store-v<N>/` holds real devices'
//! databases as version N wrote them (see the fixtures' README). They are
//! plain SQLite, as every version before encryption at rest wrote them:
//! the first open with a key encrypts them.

mod sim;

use cascade_core::store::{ClientStore, SqliteStore, StoreKey, SCHEMA_VERSION};
use cascade_core::{ConversationState, DeliveryState, GroupId};
use sim::*;

fn fixture(version: u32) -> (tempfile::TempDir, serde_json::Value) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/store-v{version}"));
    let dir = tempfile::tempdir().expect("tmp");
    for f in ["alice.db", "bob.db", "fixture.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy fixture");
    }
    let meta =
        serde_json::from_slice(&std::fs::read(dir.path().join("fixture.json")).expect("read"))
            .expect("json");
    (dir, meta)
}

/// The fixture's conversation.
fn fixture_group(meta: &serde_json::Value) -> GroupId {
    meta["group_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("group id")
}

/// A message the fixture names under `messages`.
fn fixture_message(meta: &serde_json::Value, name: &str) -> cascade_core::MessageId {
    meta["messages"][name]
        .as_str()
        .expect("id")
        .parse()
        .expect("message id")
}

/// The fixture's Alice and Bob, opened with the current code, back at the
/// test relay with their conversation, connected and caught up.
fn carry_on(dir: &tempfile::TempDir, meta: &serde_json::Value, group: GroupId) -> (Sim, D, D) {
    let mut sim = Sim::new();
    sim.now = meta["now_ms"].as_u64().expect("now");
    let a = sim.adopt("Alice", dir.path().join("alice.db"));
    let b = sim.adopt("Bob", dir.path().join("bob.db"));
    sim.adopt_group(
        group,
        meta["epoch"].as_u64().expect("epoch"),
        meta["last_seq"].as_u64().expect("seq"),
        &[a, b],
    );
    sim.connect(a);
    sim.connect(b);
    sim.settle();
    (sim, a, b)
}

/// The schema version of a database, plain or encrypted with [`STORE_KEY`]
/// (SQLCipher's raw-key form: the format is SQLCipher's own).
fn user_version(path: &std::path::Path) -> u32 {
    let conn = rusqlite::Connection::open(path).expect("open");
    let plain = std::fs::read(path).expect("read")[..16] == *b"SQLite format 3\0";
    if !plain {
        conn.pragma_update(None, "key", format!("x'{}'", hex::encode(STORE_KEY)))
            .expect("key");
    }
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("read")
}

/// The files under `dir` (recursively) that hold `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .expect("read")
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

/// A store from before encryption is encrypted on its first open with a
/// key: before, its text can be read in the files; after, in none of them
/// (nor in a WAL, journal or left-over copy), and it reads as before.
#[test]
fn a_plaintext_store_is_encrypted_on_first_open() {
    let (dir, meta) = fixture(1);
    let group = fixture_group(&meta);
    let text = b"v1 history from alice";
    assert_eq!(
        files_holding(dir.path(), text).len(),
        2,
        "the fixture is plaintext: the scan finds the text in both stores"
    );
    for name in ["alice.db", "bob.db"] {
        drop(
            SqliteStore::open(&dir.path().join(name), &StoreKey::key(STORE_KEY)).expect("encrypts"),
        );
    }
    assert_eq!(
        files_holding(dir.path(), text),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_holding(dir.path(), b"SQLite format 3"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_holding(dir.path(), b"Ward 7"),
        Vec::<std::path::PathBuf>::new()
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["alice.db", "bob.db", "fixture.json"],
        "no copies left"
    );

    let store = SqliteStore::open(&dir.path().join("alice.db"), &StoreKey::key(STORE_KEY))
        .expect("reopens");
    let h = store.history(&group, None, 10).expect("history");
    assert_eq!(h[0].text.as_deref(), Some("v1 history from alice"));
    assert_eq!(user_version(&dir.path().join("alice.db")), SCHEMA_VERSION);
    drop(store);
    assert!(matches!(
        SqliteStore::open(&dir.path().join("alice.db"), &StoreKey::key([8; 32])),
        Err(cascade_core::CoreError::WrongKey)
    ));
}

#[test]
fn a_version_1_database_migrates_and_its_conversation_carries_on() {
    let (dir, meta) = fixture(1);
    let alice_db = dir.path().join("alice.db");
    assert_eq!(
        user_version(&alice_db),
        0,
        "version 1 predates user_version"
    );
    let group = fixture_group(&meta);

    // What version 1 stored reads as it was.
    let store = SqliteStore::open(&alice_db, &StoreKey::key(STORE_KEY)).expect("migrates");
    assert_eq!(user_version(&alice_db), SCHEMA_VERSION);
    assert_eq!(store.outbox_len().expect("outbox"), 2);
    assert_eq!(
        store.outbox_groups().expect("lanes"),
        [group],
        "operations put in their lane"
    );
    let h = store.history(&group, None, 10).expect("history");
    assert_eq!(
        h.iter()
            .map(|m| (m.text.as_deref().expect("text"), m.state))
            .collect::<Vec<_>>(),
        [
            ("v1 history from alice", DeliveryState::Delivered),
            ("v1 reply from bob", DeliveryState::Received),
            ("prepared under v1", DeliveryState::Sending),
            ("queued under v1", DeliveryState::Sending),
        ]
    );
    let conv = &store.conversations(&|_| 0).expect("list")[0];
    assert_eq!(
        (conv.name.as_str(), conv.state),
        ("Ward 7", ConversationState::Active)
    );
    // The search index (schema 4) is built from the history already there.
    let hits = store
        .search(&cascade_core::SearchQuery {
            text: "REPLY".into(),
            limit: 10,
            ..Default::default()
        })
        .expect("search");
    assert_eq!(
        hits.iter()
            .map(|h| h.message.text.as_deref().expect("text"))
            .collect::<Vec<_>>(),
        ["v1 reply from bob"]
    );
    drop(store);

    // The conversation carries on: Alice's waiting messages go out and Bob
    // reads them; Bob answers and Alice reads it.
    let (mut sim, a, b) = carry_on(&dir, &meta, group);
    assert_eq!(
        sim.texts(b, group),
        [
            "v1 history from alice",
            "v1 reply from bob",
            "prepared under v1",
            "queued under v1"
        ]
    );
    sim.send(b, group, "read under v2");
    sim.settle();
    assert_eq!(
        sim.texts(a, group).last().map(String::as_str),
        Some("read under v2")
    );
    let h = sim.engine(a).history(&group, None, 10).expect("history");
    assert!(
        h[2..4].iter().all(|m| m.state == DeliveryState::Delivered),
        "{h:?}"
    );
    assert_eq!(sim.engine(a).outbox_len().expect("outbox"), 0);
    // Who is in it (schema 2's summary) is worked out on first sight.
    let conv = sim.engine(a).conversation(&group).expect("conv");
    assert_eq!(
        (
            conv.people,
            conv.orgs.iter().map(|o| o.as_str()).collect::<Vec<_>>()
        ),
        (2, vec!["north"])
    );

    // Created before rooms, the conversation keeps the v1 envelope (its
    // members may not all read MIMI content): texts have v1 ids, and
    // replies, edits and reactions say why they cannot be used.
    let now = sim.now;
    let id = sim.send(a, group, "still v1");
    assert_eq!(id.as_bytes().len(), 16, "a v1 id");
    assert!(matches!(
        sim.engine(a).send_message(&group, "re", Some(&id), now),
        Err(cascade_core::CoreError::Invalid(
            cascade_core::InvalidInput::OldConversation
        ))
    ));
    assert!(matches!(
        sim.engine(a).react(&group, &id, "👍", now),
        Err(cascade_core::CoreError::Invalid(
            cascade_core::InvalidInput::OldConversation
        ))
    ));
    sim.settle();
    assert_eq!(
        sim.texts(b, group).last().map(String::as_str),
        Some("still v1")
    );
}

/// A version 4 store (encrypted, with a conversation whose room is of
/// version 1: before the policy) migrates to version 5 (disappearing
/// messages) with its replies, edits, reactions and tombstone as they
/// were; the room reads with the default policy (its creator the admin),
/// and the first role change writes a room of version 2 that both devices
/// hold.
#[test]
fn a_version_4_database_migrates_and_its_room_gains_a_policy() {
    let (dir, meta) = fixture(4);
    let alice_db = dir.path().join("alice.db");
    assert_eq!(user_version(&alice_db), 4);
    let group = fixture_group(&meta);
    let id = |name: &str| fixture_message(&meta, name);
    let (first, reply, gone) = (id("first"), id("reply"), id("gone"));

    let store = SqliteStore::open(&alice_db, &StoreKey::key(STORE_KEY)).expect("migrates");
    assert_eq!(user_version(&alice_db), SCHEMA_VERSION);
    let h = store.history(&group, None, 10).expect("history");
    let shown: Vec<_> = h
        .iter()
        .filter(|m| m.kind == "text")
        .map(|m| (m.id, m.text.clone(), m.expires_at))
        .collect();
    assert_eq!(
        shown,
        [
            (first, Some("v4 handover from alice, edited".into()), None),
            (reply, Some("v4 reply from bob".into()), None),
            (gone, None, None),
        ]
    );
    let m = store.message(&first).expect("read").expect("there");
    assert_eq!(m.reactions.len(), 1);
    assert_eq!(
        store.message_versions(&first).expect("versions")[0].text,
        "v4 handover from alice"
    );
    let r = store.message(&reply).expect("read").expect("there");
    assert_eq!(r.reply_to.expect("a reply").id, first);
    assert_eq!(
        store
            .message(&gone)
            .expect("read")
            .expect("tombstone")
            .deleted_by
            .map(|u| u.to_string()),
        Some("bob@north".into())
    );
    drop(store);

    let (mut sim, a, b) = carry_on(&dir, &meta, group);
    // The version 1 room: its creator administers it under the default
    // policy; Bob may not remove her.
    for d in [a, b] {
        let details = sim
            .engine(d)
            .room_details(&group)
            .expect("d")
            .expect("room");
        assert_eq!(
            details
                .admins
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>(),
            ["alice@north"]
        );
        assert_eq!(details.policy, cascade_core::Policy::default());
    }
    let now = sim.now;
    assert!(sim
        .engine(b)
        .remove_members(
            &group,
            vec![cascade_protocol::UserId::new("alice@north").expect("u")],
            now
        )
        .is_err());
    // Alice makes Bob an admin: the room is written again, as version 2.
    sim.engine(a)
        .set_role(
            &group,
            &cascade_protocol::UserId::new("bob@north").expect("u"),
            cascade_core::Role::Admin,
            now,
        )
        .expect("promote");
    sim.settle();
    for d in [a, b] {
        let room = sim.engine(d).room(&group).expect("room").expect("a room");
        assert_eq!(room.v, 2, "{d:?}");
        assert_eq!(room.admins.len(), 2, "{d:?}");
    }
    sim.send(b, group, "read under v5");
    sim.settle();
    assert_eq!(
        sim.texts(a, group).last().map(String::as_str),
        Some("read under v5")
    );
}

/// A version 5 database (a room of version 2 with a week's disappearing
/// timer, Bob an admin; one of Bob's messages unread on Alice's device)
/// migrates to version 6 (read positions): what was unread still is,
/// expiries and the room are as they were, nobody has read anything yet;
/// then Alice reads, and Bob's device learns it.
#[test]
fn a_version_5_database_migrates_and_read_state_starts_from_it() {
    let (dir, meta) = fixture(5);
    let alice_db = dir.path().join("alice.db");
    assert_eq!(user_version(&alice_db), 5);
    let group = fixture_group(&meta);
    let id = |name: &str| fixture_message(&meta, name);
    let (before, under, unread) = (id("before"), id("under"), id("unread"));

    let store = SqliteStore::open(&alice_db, &StoreKey::key(STORE_KEY)).expect("migrates");
    assert_eq!(user_version(&alice_db), SCHEMA_VERSION);
    let conversation = store
        .conversations(&|_| 0)
        .expect("list")
        .into_iter()
        .find(|c| c.group_id == group)
        .expect("there");
    assert_eq!(conversation.unread, 1, "Bob's last message");
    assert_eq!(
        store
            .message(&before)
            .expect("read")
            .expect("there")
            .expires_at,
        None
    );
    assert!(store
        .message(&under)
        .expect("read")
        .expect("there")
        .expires_at
        .is_some());
    assert!(store.read_marks(&group).expect("marks").is_empty());
    drop(store);

    let (mut sim, a, b) = carry_on(&dir, &meta, group);
    let details = sim
        .engine(a)
        .room_details(&group)
        .expect("d")
        .expect("room");
    assert_eq!(details.disappear_after, Some(7 * 24 * 3600));
    assert_eq!(details.admins.len(), 2);
    let now = sim.now;
    sim.engine(a).mark_read(&group, now).expect("read");
    sim.settle();
    assert_eq!(
        sim.engine(b)
            .message(&group, &unread)
            .expect("there")
            .read_by,
        1
    );
    assert_eq!(
        sim.engine(b)
            .message(&group, &under)
            .expect("there")
            .read_by,
        1
    );
}

/// A version 6 database (Bob read Alice's handover, Alice has not read his
/// reply and muted the conversation) migrates to version 7 (mentions): the
/// read state and the mute are as they were, no message mentions anyone;
/// then a mention of Alice reaches her through the mute, and an edit of the
/// old handover adds one.
#[test]
fn a_version_6_database_migrates_and_its_messages_gain_mentions() {
    let (dir, meta) = fixture(6);
    let alice_db = dir.path().join("alice.db");
    assert_eq!(user_version(&alice_db), 6);
    let group = fixture_group(&meta);
    let (handover, reply) = (
        fixture_message(&meta, "handover"),
        fixture_message(&meta, "reply"),
    );

    let store = SqliteStore::open(&alice_db, &StoreKey::key(STORE_KEY)).expect("migrates");
    assert_eq!(user_version(&alice_db), SCHEMA_VERSION);
    let conversation = store
        .conversations(&|_| 0)
        .expect("list")
        .into_iter()
        .find(|c| c.group_id == group)
        .expect("there");
    assert_eq!(conversation.unread, 1, "Bob's reply");
    assert!(conversation.muted);
    let mine = store.message(&handover).expect("read").expect("there");
    assert_eq!(mine.read_by, 1, "Bob read it");
    assert!(mine.mentions.is_empty());
    assert!(store
        .message(&reply)
        .expect("read")
        .expect("there")
        .mentions
        .is_empty());
    drop(store);

    let (mut sim, a, b) = carry_on(&dir, &meta, group);
    let call = sim.send(b, group, "@alice@north please sign the handover");
    sim.settle();
    let m = sim.engine(a).message(&group, &call).expect("there");
    assert_eq!(
        m.text.as_deref(),
        Some("@Alice Okafor please sign the handover")
    );
    assert!(
        sim.engine(a).notifies(&m).expect("decided"),
        "through the mute"
    );
    let now = sim.now;
    sim.engine(a)
        .edit_message(
            &group,
            &handover,
            "v6 handover from alice, @bob@north to sign",
            now,
        )
        .expect("edit");
    sim.settle();
    let edited = sim.engine(b).message(&group, &handover).expect("there");
    assert_eq!(
        edited.text.as_deref(),
        Some("v6 handover from alice, @Bob Jones to sign")
    );
    assert!(edited.mentions(&cascade_protocol::UserId::new("bob@north").expect("u")));
}
