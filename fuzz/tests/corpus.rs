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
fn the_stored_records_corpus_replays() {
    replay("stored_records", cascade_fuzz::stored_records);
}

#[test]
fn the_relay_requests_corpus_replays() {
    replay("relay_requests", cascade_fuzz::relay_requests);
}
