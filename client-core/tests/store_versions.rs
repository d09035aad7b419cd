//! Databases written by every earlier schema version open, migrate and
//! carry on: each `tests/fixtures/store-v<N>/` holds real devices'
//! databases as version N wrote them (see the fixtures' README).

mod sim;

use cascade_core::store::{ClientStore, SqliteStore, SCHEMA_VERSION};
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

fn user_version(path: &std::path::Path) -> u32 {
    rusqlite::Connection::open(path)
        .expect("open")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("read")
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
    let group: GroupId = meta["group_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("group id");

    // What version 1 stored reads as it was.
    let store = SqliteStore::open(&alice_db).expect("migrates");
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
    drop(store);

    // The conversation carries on: Alice's waiting messages go out and Bob
    // reads them; Bob answers and Alice reads it.
    let mut sim = Sim::new();
    sim.now = meta["now_ms"].as_u64().expect("now");
    let a = sim.adopt("Alice", alice_db);
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
}
