//! Searching a device's own history: inside words, any case, with
//! filters; edits and deletes leave the index as they leave history.

mod sim;

use cascade_core::{CoreError, InvalidInput, SearchQuery};
use sim::*;

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        limit: 50,
        ..SearchQuery::default()
    }
}

fn found(sim: &mut Sim, d: D, q: SearchQuery) -> Vec<String> {
    sim.engine(d)
        .search(&q)
        .expect("search")
        .into_iter()
        .map(|h| h.message.text.expect("a text"))
        .collect()
}

#[test]
fn a_ward_finds_amoxicillin_by_amox_with_filters() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let ward = sim.group(a, "Ward 7", &[b]);
    let other = sim.group(b, "Pharmacy", &[a]);
    let t0 = sim.now;
    sim.send(a, ward, "Bed 4: Amoxicillin 500 mg at 14:00");
    sim.settle();
    sim.advance(60_000);
    sim.send(b, ward, "amoxicillin given");
    sim.send(b, other, "Co-amoxiclav out of stock");
    sim.send(b, other, "Paracetamol for bed 9");
    sim.settle();

    // Inside words, any case, newest first, with where it matched.
    let hits = sim.engine(a).search(&query("AMOX")).expect("search");
    assert_eq!(
        hits.iter()
            .map(|h| h.message.text.as_deref().expect("text"))
            .collect::<Vec<_>>(),
        [
            "Co-amoxiclav out of stock",
            "amoxicillin given",
            "Bed 4: Amoxicillin 500 mg at 14:00"
        ]
    );
    assert_eq!(hits[0].conversation, "Pharmacy");
    assert_eq!(hits[0].matches, [(3, 7)]);
    assert_eq!(hits[2].matches, [(7, 11)]);
    // Every word must match.
    assert_eq!(
        found(&mut sim, a, query("amox 500")),
        ["Bed 4: Amoxicillin 500 mg at 14:00"]
    );
    // Filters: conversation, sender, time.
    let in_ward = SearchQuery {
        group: Some(ward),
        ..query("amox")
    };
    assert_eq!(found(&mut sim, a, in_ward).len(), 2);
    let from_alice = SearchQuery {
        sender: Some(sim.user(a)),
        ..query("amox")
    };
    assert_eq!(
        found(&mut sim, a, from_alice),
        ["Bed 4: Amoxicillin 500 mg at 14:00"]
    );
    let before = SearchQuery {
        until: Some(t0 + 30_000),
        ..query("amox")
    };
    assert_eq!(
        found(&mut sim, b, before),
        ["Bed 4: Amoxicillin 500 mg at 14:00"]
    );
    // Too short, or too long, is a typed error.
    assert!(matches!(
        sim.engine(a).search(&query("mg")),
        Err(CoreError::Invalid(InvalidInput::SearchTooShort { min: 3 }))
    ));
    assert!(matches!(
        sim.engine(a).search(&query(&"x".repeat(300))),
        Err(CoreError::Invalid(InvalidInput::SearchTooLong { .. }))
    ));
    // FTS5 syntax in a query is only text.
    assert!(found(&mut sim, a, query("\"amox\" OR NEAR(bed")).is_empty());
}

#[test]
fn edits_and_deletes_leave_the_index() {
    let mut sim = Sim::new();
    let a = sim.device("alice@north", "Alice");
    let b = sim.device("bob@north", "Bob");
    let g = sim.group(a, "Ward 7", &[b]);
    let id = sim.send(a, g, "Patient Qwzxv in bay 3");
    sim.settle();
    assert_eq!(found(&mut sim, b, query("qwzxv")).len(), 1);
    let now = sim.now;
    sim.engine(a)
        .edit_message(&g, &id, "Patient Vbnmk in bay 3", now)
        .expect("edit");
    sim.settle();
    for d in [a, b] {
        assert!(found(&mut sim, d, query("qwzxv")).is_empty(), "{d:?}");
        assert_eq!(found(&mut sim, d, query("vbnmk")).len(), 1, "{d:?}");
    }
    assert_eq!(
        index_terms(&mut sim, b, &["vbn", "bnm", "nmk"]),
        3,
        "the scan sees them"
    );
    sim.engine(a).delete_message(&g, &id, now).expect("delete");
    sim.settle();
    for d in [a, b] {
        assert!(found(&mut sim, d, query("vbnmk")).is_empty(), "{d:?}");
        // Not only unlisted: the index itself holds none of its trigrams.
        assert_eq!(index_terms(&mut sim, d, &["vbn", "bnm", "nmk"]), 0, "{d:?}");
    }
    assert_eq!(
        index_terms(&mut sim, a, &["bay"]),
        0,
        "the only text with 'bay' is gone too"
    );
}

/// How many of `terms` the device's search index still holds.
fn index_terms(sim: &mut Sim, d: D, terms: &[&str]) -> usize {
    let path = sim.path(d);
    sim.crash(d);
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "key", format!("x'{}'", hex::encode(STORE_KEY)))
        .expect("key");
    conn.execute_batch(
        "CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, message_search, 'row');",
    )
    .expect("vocab");
    let n = terms
        .iter()
        .map(|t| {
            conn.query_row(
                "SELECT count(*) FROM temp.vocab WHERE term = ?1",
                [t],
                |r| r.get::<_, i64>(0),
            )
            .expect("count") as usize
        })
        .sum();
    drop(conn);
    sim.restart(d);
    sim.connect(d);
    sim.settle();
    n
}
