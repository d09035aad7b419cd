//! The MIMI content codec against the draft's own examples
//! (draft-ietf-mimi-content-08, `examples/*.cbor` of
//! github.com/ietf-wg-mimi/draft-ietf-mimi-content at 961ea5a; see
//! `tests/mimi-examples/README.md`): each decodes, encodes back to the same
//! bytes, and has the message id the draft gives. Then what the decoder
//! refuses, each with its typed reason.

use cascade_core::content::mimi::{
    message_id, Disposition, Expiration, ExtensionKey, MimiContent, MimiError, MimiId, NestedPart,
    Part, PartSemantics, EXT_ROOM_URI, EXT_SENDER_URI, MAX_PARTS,
};
use ciborium::Value;

macro_rules! example {
    ($name:literal, $id:literal) => {
        (
            $name,
            include_bytes!(concat!("mimi-examples/", $name, ".cbor")),
            $id,
        )
    };
}

/// Each example with the message id the draft gives for it.
const EXAMPLES: &[(&str, &[u8], &str)] = &[
    example!(
        "original",
        "017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f4"
    ),
    example!(
        "reply",
        "015354973c2b65ca937bf1e035ae53a5ab80e947afa43d46920d4202e5cc0b27"
    ),
    example!(
        "reaction",
        "0158c4288911e50a8f6be3f47746b6682f10fd91bc8c05557aa589a3157aff68"
    ),
    example!(
        "mention",
        "018d825adf9f6be00dcafc5704c4102f5022e74219d0b603e4ba7622654042af"
    ),
    example!(
        "mention-html",
        "01967ff8e9a66819738ad5cf26d2e0388a3b81d86b0f61d129c077d043ee2a4e"
    ),
    example!(
        "edit",
        "014028c0deddbdea56bec26172f6ede953d11024cb82b8192b5e2aea62d7fb47"
    ),
    example!(
        "delete",
        "011d9efc78d04d4dcf4d82b07d5199bbef37011c1f0c7e004b6111c6dda504b4"
    ),
    example!(
        "unlike",
        "013aadbb8f313253c8930f4e93c6ca54b2ed06d258185bdcec3870534c8a4ec4"
    ),
    example!(
        "expiring",
        "01e59db8173939facc2c8a4a0f0ae8d0c7a11a81239626630c9464a8d6717a03"
    ),
    example!(
        "attachment",
        "0176180c7d19a925021fe446d241134d05c38e0d999cdc0f39c391d2377ed9d1"
    ),
    example!(
        "conferencing",
        "01496d15a8dba28d7397f9868b70768e4a67f765d5b5b1ae9e03848c5fdeb0ba"
    ),
    example!(
        "multipart-1",
        "01da5a515ec5db42cc4dcc19b90c3c31245d8a1cfcce11318f24eb11dce0990e"
    ),
    example!(
        "multipart-2",
        "01d65918c6c51c8e76546337276ae6f4bfd873d867d5cb57c76bcdca3d999dd7"
    ),
    example!(
        "multipart-3",
        "01cfebeadbdb83c1eefb6403ba4852daf8bbbf9cd53bf5035a74d5d741950c9f"
    ),
];

fn example(name: &str) -> (MimiContent, MimiId) {
    let (_, bytes, id) = EXAMPLES
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("an example");
    (
        MimiContent::decode(bytes).expect("decodes"),
        MimiId(hex::decode(id).expect("hex").try_into().expect("32 octets")),
    )
}

fn text_of(p: &NestedPart) -> &str {
    match &p.part {
        Part::Single { content, .. } => std::str::from_utf8(content).expect("utf-8"),
        other => panic!("not a single part: {other:?}"),
    }
}

#[test]
fn every_example_decodes_encodes_to_the_same_bytes_and_has_the_drafts_id() {
    for (name, bytes, id) in EXAMPLES {
        let m = MimiContent::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&m.encode(), bytes, "{name}: the deterministic encoding");
        let sender = m.text_extension(EXT_SENDER_URI).expect("a sender URI");
        let room = m.text_extension(EXT_ROOM_URI).expect("a room URI");
        assert_eq!(
            message_id(sender, room, bytes, &m.salt)
                .expect("short URIs")
                .to_string(),
            *id,
            "{name}: the message id"
        );
    }
}

/// What the examples say, read back: a reply and a reaction point at the
/// original, an edit and a delete replace the reply, an unlike deletes the
/// reaction, and the parts are what the draft shows.
#[test]
fn the_examples_mean_what_the_draft_says() {
    let (original, original_id) = example("original");
    assert_eq!(original.body.disposition, Disposition::RENDER);
    assert!(text_of(&original.body).starts_with("Hi everyone, we just shipped release 2.0."));
    assert_eq!(
        original.text_extension(EXT_SENDER_URI),
        Some("mimi://example.com/u/alice-smith")
    );

    let (reply, reply_id) = example("reply");
    assert_eq!(reply.in_reply_to, Some(original_id));
    assert_eq!(reply.replaces, None);

    let (reaction, reaction_id) = example("reaction");
    assert_eq!(reaction.in_reply_to, Some(original_id));
    assert_eq!(reaction.body.disposition, Disposition::REACTION);
    assert_eq!(text_of(&reaction.body), "\u{2764}");

    let (edit, _) = example("edit");
    assert_eq!(edit.replaces, Some(reply_id));
    assert_eq!(text_of(&edit.body), "Right on! _Congratulations_ y'all!");

    let (delete, _) = example("delete");
    assert_eq!(delete.replaces, Some(reply_id));
    assert_eq!(delete.body.part, Part::Null);

    let (unlike, _) = example("unlike");
    assert_eq!(unlike.replaces, Some(reaction_id));
    assert_eq!(unlike.body.part, Part::Null);

    let (expiring, _) = example("expiring");
    assert_eq!(expiring.expires, Some(Expiration::At(1_644_390_004)));

    let (attachment, _) = example("attachment");
    assert_eq!(attachment.body.disposition, Disposition::ATTACHMENT);
    assert_eq!(attachment.body.language, "en");
    let Part::External(e) = &attachment.body.part else {
        panic!("an external part");
    };
    assert_eq!(e.url, "https://example.com/storage/8ksB4bSrrRE.mp4");
    assert_eq!((e.size, e.enc_alg, e.hash_alg), (708_234_961, 1, 1));
    assert_eq!((e.key.len(), e.nonce.len(), e.aad.len()), (16, 12, 0));
    assert_eq!(e.filename, "bigfile.mp4");

    // Four levels: chooseOne > processAll > chooseOne > the English and
    // French HTML.
    let (nested, _) = example("multipart-3");
    let Part::Multi { semantics, parts } = &nested.body.part else {
        panic!("multipart");
    };
    assert_eq!(*semantics, PartSemantics::ChooseOne);
    let Part::Multi { parts, .. } = &parts[0].part else {
        panic!("a second level");
    };
    let Part::Multi { parts, .. } = &parts[0].part else {
        panic!("a third level");
    };
    assert_eq!(
        parts
            .iter()
            .map(|p| p.language.as_str())
            .collect::<Vec<_>>(),
        ["en", "fr"]
    );
}

/// A message of our own round-trips, its extensions are written in the
/// deterministic order whatever order they were given in, and an id over
/// other bytes, another sender or another room differs.
#[test]
fn a_message_round_trips_with_its_extensions_sorted() {
    let mut m = MimiContent::new(NestedPart::single(
        Disposition::RENDER,
        "text/plain;charset=utf-8",
        b"Bed 4 needs obs at 14:00".to_vec(),
    ));
    m.in_reply_to = Some(MimiId([1; 32]));
    m.expires = Some(Expiration::AfterReading(3600));
    m.extensions = vec![
        (ExtensionKey::Text("z".into()), Value::Bool(true)),
        (
            ExtensionKey::Int(2),
            Value::Text("mimi://north-trust/r/ward-7".into()),
        ),
        (ExtensionKey::Int(-1), Value::Integer(7.into())),
        (
            ExtensionKey::Int(1),
            Value::Text("mimi://north-trust/u/alice".into()),
        ),
    ];
    let bytes = m.encode();
    let back = MimiContent::decode(&bytes).expect("decodes");
    let keys: Vec<_> = back.extensions.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys,
        [
            ExtensionKey::Int(1),
            ExtensionKey::Int(2),
            ExtensionKey::Int(-1),
            ExtensionKey::Text("z".into())
        ],
        "keys in the bytewise order of their encodings"
    );
    assert_eq!(back.encode(), bytes);
    assert_eq!(back.body, m.body);
    assert_eq!((back.in_reply_to, back.expires), (m.in_reply_to, m.expires));

    let id = |s: &str, r: &str, b: &[u8]| message_id(s, r, b, &m.salt).expect("id");
    let base = id("a", "r", &bytes);
    assert_eq!(base.hash_alg(), 0x01);
    assert_ne!(base, id("b", "r", &bytes));
    assert_ne!(base, id("a", "s", &bytes));
    assert_ne!(base, id("a", "r", &bytes[..bytes.len() - 1]));
    // The lengths keep the fields apart: "ab" + "c" is not "a" + "bc".
    assert_ne!(id("ab", "c", &bytes), id("a", "bc", &bytes));
}

/// The original example with one change made to its CBOR value.
fn altered(change: impl FnOnce(&mut Vec<Value>)) -> Vec<u8> {
    let (_, bytes, _) = EXAMPLES[0];
    let Value::Array(mut fields) = ciborium::from_reader::<Value, _>(bytes).expect("cbor") else {
        panic!("an array");
    };
    change(&mut fields);
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Array(fields), &mut out).expect("writes");
    out
}

fn part(disposition: u64, cardinality: u64, rest: Vec<Value>) -> Value {
    let mut fields = vec![
        Value::Integer(disposition.into()),
        Value::Text(String::new()),
        Value::Integer(cardinality.into()),
    ];
    fields.extend(rest);
    Value::Array(fields)
}

fn text_part() -> Value {
    part(
        1,
        1,
        vec![
            Value::Text("text/plain".into()),
            Value::Bytes(b"x".to_vec()),
        ],
    )
}

/// `depth` levels of multiparts around text.
fn nested(depth: usize) -> Value {
    if depth == 1 {
        return text_part();
    }
    part(
        1,
        3,
        vec![
            Value::Integer(2.into()),
            Value::Array(vec![nested(depth - 1), text_part()]),
        ],
    )
}

/// An extension value nested `depth` arrays deep.
fn arrays(depth: usize) -> Value {
    (0..depth).fold(Value::Integer(1.into()), |v, _| Value::Array(vec![v]))
}

fn with_extension(key: Value, value: Value) -> Vec<u8> {
    altered(|f| {
        let Value::Map(m) = &mut f[5] else {
            panic!("a map")
        };
        m.push((key, value));
    })
}

/// A map has no order: a message whose extensions (and the maps inside
/// them) came in another order decodes to the deterministic order, so it
/// equals itself decoded again after encoding (found by the `content` fuzz
/// target, input in its corpus).
#[test]
fn extensions_decode_in_the_deterministic_order() {
    let bytes = altered(|f| {
        f[5] = Value::Map(vec![
            (
                Value::Text("z".into()),
                Value::Map(vec![
                    (Value::Integer(2.into()), Value::Null),
                    (Value::Integer(1.into()), Value::Null),
                ]),
            ),
            (Value::Integer(2.into()), Value::Text("mimi://x/r/y".into())),
            (
                Value::Integer((-3).into()),
                Value::Text("mimi://x/u/z".into()),
            ),
        ])
    });
    let m = MimiContent::decode(&bytes).expect("decodes");
    let keys: Vec<_> = m.extensions.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys,
        [
            ExtensionKey::Int(2),
            ExtensionKey::Int(-3),
            ExtensionKey::Text("z".into())
        ]
    );
    assert_eq!(
        m.extensions[2].1,
        Value::Map(vec![
            (Value::Integer(1.into()), Value::Null),
            (Value::Integer(2.into()), Value::Null),
        ])
    );
    assert_eq!(MimiContent::decode(&m.encode()).expect("decodes"), m);

    // Bignums that fit an integer are that integer, others lose their
    // leading zeros, and a NaN is the one quiet NaN: the deterministic form
    // (the fuzz target's second finding: `c2 5f ff`, an empty bignum in an
    // indefinite-length string, first read as a bignum and then as 0).
    let bignum = |tag: u64, digits: &[u8]| Value::Tag(tag, Box::new(Value::Bytes(digits.to_vec())));
    let m = MimiContent::decode(&with_extension(
        Value::Integer(300.into()),
        Value::Array(vec![
            bignum(2, &[]),
            bignum(3, &[0, 0, 1]),
            bignum(2, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Value::Float(f64::from_bits(0x7ff8_0000_0000_0001)),
        ]),
    ))
    .expect("decodes");
    let Value::Array(values) = &m.extensions.last().expect("the extension").1 else {
        panic!("an array");
    };
    assert_eq!(values[0], Value::Integer(0.into()));
    assert_eq!(values[1], Value::Integer((-2).into()));
    assert_eq!(values[2], bignum(2, &[1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert!(matches!(values[3], Value::Float(f) if f.to_bits() == f64::NAN.to_bits()));
    let bytes = m.encode();
    assert_eq!(
        MimiContent::decode(&bytes).expect("decodes").encode(),
        bytes
    );
}

#[test]
fn what_the_draft_calls_nonsensical_is_refused_with_its_reason() {
    let (_, original, _) = EXAMPLES[0];
    let cases: Vec<(&str, Vec<u8>, MimiError)> = vec![
        ("not CBOR", vec![0xff], MimiError::Cbor),
        (
            "bytes after the message",
            [original, &[0x00][..]].concat(),
            MimiError::Cbor,
        ),
        ("a map", vec![0xa0], MimiError::Field("message")),
        (
            "six fields",
            altered(|f| {
                f.pop();
            }),
            MimiError::Field("message"),
        ),
        (
            "a short salt",
            altered(|f| f[0] = Value::Bytes(vec![0; 15])),
            MimiError::Field("salt"),
        ),
        (
            "an id with hash algorithm 2",
            altered(|f| f[1] = Value::Bytes([&[2u8][..], &[0; 31]].concat())),
            MimiError::UnknownHashAlg(2),
        ),
        (
            "a 31-octet id",
            altered(|f| f[4] = Value::Bytes(vec![1; 31])),
            MimiError::Field("inReplyTo"),
        ),
        (
            "a long topic",
            altered(|f| f[2] = Value::Bytes(vec![0; 4097])),
            MimiError::TopicTooLong,
        ),
        (
            "an expiry past 2106",
            altered(|f| {
                f[3] = Value::Array(vec![
                    Value::Bool(false),
                    Value::Integer((1u64 << 32).into()),
                ])
            }),
            MimiError::Field("expires"),
        ),
        (
            "five levels of parts",
            altered(|f| f[6] = nested(5)),
            MimiError::TooDeep,
        ),
        (
            "too many parts",
            altered(|f| {
                f[6] = part(
                    1,
                    3,
                    vec![
                        Value::Integer(2.into()),
                        Value::Array(vec![text_part(); MAX_PARTS]),
                    ],
                )
            }),
            MimiError::TooManyParts,
        ),
        (
            "part semantics 3",
            altered(|f| {
                f[6] = part(
                    1,
                    3,
                    vec![
                        Value::Integer(3.into()),
                        Value::Array(vec![text_part(), text_part()]),
                    ],
                )
            }),
            MimiError::UnknownSemantics(3),
        ),
        (
            "a multipart of one",
            altered(|f| {
                f[6] = part(
                    1,
                    3,
                    vec![Value::Integer(0.into()), Value::Array(vec![text_part()])],
                )
            }),
            MimiError::Field("parts"),
        ),
        (
            "cardinality 4",
            altered(|f| f[6] = part(1, 4, vec![])),
            MimiError::UnknownCardinality(4),
        ),
        (
            "disposition 256",
            altered(|f| f[6] = part(256, 0, vec![])),
            MimiError::Field("disposition"),
        ),
        (
            "a field after a null part",
            altered(|f| f[6] = part(1, 0, vec![Value::Null])),
            MimiError::Field("part"),
        ),
        (
            "a single part without content",
            altered(|f| f[6] = part(1, 1, vec![Value::Text("text/plain".into())])),
            MimiError::Field("content"),
        ),
        (
            "the sender URI twice",
            with_extension(Value::Integer(1.into()), Value::Text("mimi://x/u/y".into())),
            MimiError::Extension("the same key twice"),
        ),
        (
            "a 256-octet text key",
            with_extension(Value::Text("k".repeat(256)), Value::Null),
            MimiError::Extension("a key that is not an integer or a short text"),
        ),
        (
            "a byte-string key",
            with_extension(Value::Bytes(vec![1]), Value::Null),
            MimiError::Extension("a key that is not an integer or a short text"),
        ),
        (
            "a key of 2^53",
            with_extension(Value::Integer((1u64 << 53).into()), Value::Null),
            MimiError::Extension("an integer key beyond 2^53 - 1"),
        ),
        (
            "an extension four arrays deep",
            with_extension(Value::Integer(300.into()), arrays(4)),
            MimiError::Extension("nested more than 4 deep"),
        ),
        (
            "a float map key inside an extension",
            with_extension(
                Value::Integer(300.into()),
                Value::Map(vec![(Value::Float(1.5), Value::Null)]),
            ),
            MimiError::Extension("a map key of another type"),
        ),
        (
            "a nested map with the same key twice",
            with_extension(
                Value::Integer(300.into()),
                Value::Map(vec![
                    (Value::Integer(1.into()), Value::Null),
                    (Value::Integer(1.into()), Value::Bool(true)),
                ]),
            ),
            MimiError::Extension("a map with the same key twice"),
        ),
        (
            "a bignum around a bignum",
            with_extension(
                Value::Integer(300.into()),
                Value::Tag(
                    3,
                    Box::new(Value::Tag(3, Box::new(Value::Bytes(vec![0x4b; 75])))),
                ),
            ),
            MimiError::Extension("a bignum that is not a byte string"),
        ),
        (
            "a room URI that is not text",
            altered(|f| {
                let Value::Map(m) = &mut f[5] else {
                    panic!("a map")
                };
                m[1].1 = Value::Bytes(vec![1]);
            }),
            MimiError::Extension("a sender or room URI that is not text"),
        ),
    ];
    for (what, bytes, reason) in cases {
        assert_eq!(
            MimiContent::decode(&bytes).err(),
            Some(reason),
            "{what} is refused for its reason"
        );
    }
}

/// What the draft says is legitimate is kept: an unknown disposition, an
/// unknown content type, unknown extensions, the deepest nesting allowed,
/// exactly the most parts, an extension three containers deep.
#[test]
fn what_the_draft_calls_legitimate_is_kept() {
    let cases = [
        altered(|f| f[6] = part(200, 0, vec![])),
        altered(|f| {
            f[6] = part(
                1,
                1,
                vec![
                    Value::Text("application/x-unheard-of".into()),
                    Value::Bytes(vec![0, 1, 2]),
                ],
            )
        }),
        altered(|f| f[6] = nested(4)),
        altered(|f| {
            f[6] = part(
                1,
                3,
                vec![
                    Value::Integer(2.into()),
                    Value::Array(vec![text_part(); MAX_PARTS - 1]),
                ],
            )
        }),
        with_extension(Value::Integer(300.into()), arrays(3)),
        with_extension(
            Value::Text("x-cascade".into()),
            Value::Tag(32, Box::new(Value::Text("https://a".into()))),
        ),
        with_extension(Value::Integer((-(1i64 << 53) + 1).into()), Value::Null),
    ];
    for bytes in cases {
        let m = MimiContent::decode(&bytes).expect("kept");
        assert_eq!(MimiContent::decode(&m.encode()).expect("round-trips"), m);
    }
    let m = MimiContent::decode(&altered(|f| f[6] = part(200, 0, vec![]))).expect("kept");
    assert_eq!(m.body.disposition, Disposition(200));
}
