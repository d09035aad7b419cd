//! Every input in the checked-in corpus (`fuzz/corpus/<target>/`, seeds and
//! what fuzzing kept) replayed through its target in the ordinary test run,
//! so that a regression on an input fuzzing once found is caught without
//! fuzzing.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let files = cascade_fuzz::inputs([dir.clone()]).expect("the corpus reads");
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("an input reads");
        f(&data);
    }
}

#[test]
fn the_frame_decoder_corpus_replays() {
    replay("frame_decoder", cascade_fuzz::frame_decoder);
}

#[test]
fn the_mls_header_corpus_replays() {
    replay("mls_header", cascade_fuzz::mls_header);
}

#[test]
fn the_content_corpus_replays() {
    replay("content", cascade_fuzz::content);
}

#[test]
fn the_stored_records_corpus_replays() {
    replay("stored_records", cascade_fuzz::stored_records);
}

#[test]
fn the_relay_requests_corpus_replays() {
    replay("relay_requests", cascade_fuzz::relay_requests);
}

#[test]
fn the_groups_corpus_replays() {
    replay("groups", cascade_fuzz::groups);
}

/// The multi-party target does what its input says: a conversation is
/// made, three users' devices are added and three texts reach every device
/// (so its checks are not passing on nothing).
#[test]
fn the_groups_target_plays_a_conversation() {
    // Operations are [what, device, a, b]: 7 connects, 11 hands the relay
    // a device's next frame, 15 has a device handle up to 2 + a frames.
    let mut pump: Vec<u8> = Vec::new();
    for _ in 0..3 {
        for _ in 0..3 {
            pump.extend((0..4).flat_map(|d| [11, d, 0, 0]));
        }
        pump.extend((0..4).flat_map(|d| [15, d, 17, 0]));
    }
    let mut input: Vec<u8> = (0..4).flat_map(|d| [7, d, 0, 0]).collect();
    input.extend_from_slice(&pump);
    for step in [
        [2, 0, 0, 0], // Alice's phone creates a conversation
        [3, 0, 0, 2], // and adds Carol
        [3, 0, 0, 1], // and Bob
        [3, 0, 0, 0], // and Alice's desktop
        [0, 0, 0, 0], // Alice sends
        [0, 3, 0, 0], // Carol sends
        [1, 2, 0, 0], // Bob sends
    ] {
        input.extend_from_slice(&step);
        input.extend_from_slice(&pump);
    }
    let outcome = cascade_fuzz::play(&input);
    assert_eq!(outcome.groups.len(), 1, "{outcome:?}");
    let (epoch, roster, shown) = &outcome.groups[0];
    assert_eq!(*roster, 4, "{outcome:?}");
    assert_eq!(*epoch, 3, "each add is a commit: {outcome:?}");
    assert_eq!(shown, &vec![3, 3, 3, 3], "{outcome:?}");
}
