//! Golden tests: the exact bytes of every frame kind are pinned in
//! `tests/golden.txt`, so any change to the wire encoding is deliberate.
//! Run with `UPDATE_GOLDEN=1` to rewrite the file after such a change.

use cascade_protocol::*;

fn bytes(b: &[u8]) -> Bytes {
    Bytes::from(b.to_vec())
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let device = DeviceId([0x11; 16]);
    let group = GroupId([0x22; 16]);
    let user = UserId::new("alice@north-trust").expect("valid");
    let req = |id: u64, req: Request| encode_client_frame(&ClientFrame { v: 1, id, req });
    let resp = |id: u64, result: Result<Response, ProtocolError>| {
        encode_server_frame(&ServerFrame::Response { id, result })
    };
    let push = |p: Push| encode_server_frame(&ServerFrame::Push(p));
    vec![
        (
            "req_authenticate",
            req(
                1,
                Request::Authenticate {
                    device_id: device,
                    signature: bytes(&[0xab; 4]),
                },
            ),
        ),
        (
            "req_upload_key_packages",
            req(
                2,
                Request::UploadKeyPackages {
                    key_packages: vec![bytes(&[1, 2]), bytes(&[3])],
                    last_resort: Some(bytes(&[4])),
                },
            ),
        ),
        (
            "req_claim_key_packages",
            req(
                3,
                Request::ClaimKeyPackages {
                    user_id: user.clone(),
                },
            ),
        ),
        (
            "req_close_group",
            req(31, Request::CloseGroup { group_id: group }),
        ),
        ("resp_group_closed", resp(31, Ok(Response::GroupClosed))),
        (
            "req_create_group",
            req(
                4,
                Request::CreateGroup {
                    group_id: group,
                    group_info: bytes(&[5]),
                },
            ),
        ),
        (
            "req_commit",
            req(
                5,
                Request::Commit(CommitBundle {
                    group_id: group,
                    epoch: 3,
                    commit: bytes(&[6]),
                    welcome: Some(bytes(&[7])),
                    group_info: bytes(&[8]),
                    added: vec![device],
                    removed: vec![],
                }),
            ),
        ),
        (
            "req_send_message",
            req(
                6,
                Request::SendMessage {
                    group_id: group,
                    message: bytes(&[9]),
                    to: vec![],
                },
            ),
        ),
        (
            "req_send_message_to",
            req(
                6,
                Request::SendMessage {
                    group_id: group,
                    message: bytes(&[9]),
                    to: vec![user.clone()],
                },
            ),
        ),
        (
            "req_ack",
            req(
                7,
                Request::Ack {
                    queue_ids: vec![1, 300],
                },
            ),
        ),
        (
            "req_get_group_info",
            req(8, Request::GetGroupInfo { group_id: group }),
        ),
        (
            "req_get_user",
            req(
                9,
                Request::GetUser {
                    user_id: user.clone(),
                },
            ),
        ),
        ("req_ping", req(10, Request::Ping)),
        ("req_list_groups", req(13, Request::ListGroups)),
        (
            "req_typing",
            req(
                14,
                Request::Typing {
                    group_id: group,
                    epoch: 3,
                    payload: bytes(&[0xee; 4]),
                },
            ),
        ),
        ("resp_typing_relayed", resp(14, Ok(Response::TypingRelayed))),
        (
            "req_post_blob",
            req(
                15,
                Request::PostBlob {
                    group_id: group,
                    digest: bytes(&[0xab; 32]),
                    size: 70_000,
                },
            ),
        ),
        (
            "req_get_blob",
            req(
                16,
                Request::GetBlob {
                    digest: bytes(&[0xab; 32]),
                },
            ),
        ),
        (
            "resp_blob_ticket",
            resp(
                15,
                Ok(Response::BlobTicket {
                    token: bytes(&[0x77; 32]),
                    offset: 65_536,
                    size: 70_000,
                }),
            ),
        ),
        (
            "req_delete_blob",
            req(
                17,
                Request::DeleteBlob {
                    digest: bytes(&[0xab; 32]),
                },
            ),
        ),
        ("resp_blob_deleted", resp(17, Ok(Response::BlobDeleted))),
        (
            "req_post_own_blob",
            req(
                18,
                Request::PostOwnBlob {
                    digest: bytes(&[0xab; 32]),
                    size: 70_000,
                },
            ),
        ),
        (
            "req_link_put",
            req(
                19,
                Request::LinkPut {
                    code: "48213307".into(),
                    slot: LinkSlot::Offer,
                    payload: bytes(&[0x42; 4]),
                },
            ),
        ),
        ("resp_link_stored", resp(19, Ok(Response::LinkStored))),
        (
            "req_link_get",
            req(
                20,
                Request::LinkGet {
                    code: "48213307".into(),
                    slot: LinkSlot::Answer,
                },
            ),
        ),
        (
            "resp_link_slot",
            resp(
                20,
                Ok(Response::LinkSlot {
                    payload: Some(bytes(&[0x43; 4])),
                }),
            ),
        ),
        (
            "resp_link_slot_empty",
            resp(20, Ok(Response::LinkSlot { payload: None })),
        ),
        (
            "err_quota_exceeded",
            resp(
                15,
                Err(ProtocolError::QuotaExceeded {
                    limit: 10_737_418_240,
                }),
            ),
        ),
        (
            "err_rate_limited_typing",
            resp(
                14,
                Err(ProtocolError::RateLimited {
                    retry_after_ms: 900,
                    scope: Some(cascade_protocol::RateScope::Typing),
                }),
            ),
        ),
        (
            "resp_groups",
            resp(
                13,
                Ok(Response::Groups {
                    group_ids: vec![group],
                }),
            ),
        ),
        (
            "req_get_trust_list",
            req(12, Request::GetTrustList { org_id: user.org() }),
        ),
        (
            "resp_trust_list",
            resp(
                12,
                Ok(Response::TrustList {
                    document: Some(SignedDocument {
                        body: bytes(&[0xa0]),
                        signature: bytes(&[0x55; 4]),
                        co_signature: None,
                    }),
                }),
            ),
        ),
        (
            "resp_authenticated",
            resp(
                1,
                Ok(Response::Authenticated {
                    user_id: user.clone(),
                    key_package_stock: 20,
                    has_last_resort: true,
                    certificate: Some(bytes(&[0x30, 0x82])),
                }),
            ),
        ),
        (
            "resp_key_packages_stored",
            resp(2, Ok(Response::KeyPackagesStored { stock: 21 })),
        ),
        (
            "resp_key_packages",
            resp(
                3,
                Ok(Response::KeyPackages {
                    devices: vec![ClaimedKeyPackage {
                        device_id: device,
                        key_package: bytes(&[1]),
                    }],
                }),
            ),
        ),
        ("resp_group_created", resp(4, Ok(Response::GroupCreated))),
        (
            "resp_commit_accepted",
            resp(5, Ok(Response::CommitAccepted { epoch: 4, seq: 9 })),
        ),
        (
            "resp_message_accepted",
            resp(6, Ok(Response::MessageAccepted { seq: 10 })),
        ),
        ("resp_acked", resp(7, Ok(Response::Acked))),
        (
            "resp_group_info",
            resp(
                8,
                Ok(Response::GroupInfo {
                    epoch: 4,
                    group_info: bytes(&[8]),
                }),
            ),
        ),
        (
            "resp_user",
            resp(
                9,
                Ok(Response::User(UserEntry {
                    user_id: user.clone(),
                    org_id: user.org(),
                    display_name: "Alice".into(),
                    role: "Nurse".into(),
                    devices: vec![device],
                })),
            ),
        ),
        ("resp_pong", resp(10, Ok(Response::Pong))),
        (
            "err_unauthenticated",
            resp(11, Err(ProtocolError::Unauthenticated)),
        ),
        (
            "err_authentication_failed",
            resp(11, Err(ProtocolError::AuthenticationFailed)),
        ),
        (
            "err_wrong_epoch",
            resp(11, Err(ProtocolError::WrongEpoch { current: 5 })),
        ),
        ("err_not_member", resp(11, Err(ProtocolError::NotMember))),
        (
            "err_unknown_group",
            resp(11, Err(ProtocolError::UnknownGroup)),
        ),
        (
            "err_group_exists",
            resp(11, Err(ProtocolError::GroupExists)),
        ),
        (
            "err_unknown_user",
            resp(11, Err(ProtocolError::UnknownUser)),
        ),
        (
            "err_unknown_device",
            resp(11, Err(ProtocolError::UnknownDevice)),
        ),
        (
            "err_too_large",
            resp(11, Err(ProtocolError::TooLarge { limit: 1024 })),
        ),
        (
            "err_queue_full",
            resp(
                11,
                Err(ProtocolError::QueueFull {
                    limit: 10,
                    devices: vec![],
                }),
            ),
        ),
        (
            "err_queue_full_naming_devices",
            resp(
                11,
                Err(ProtocolError::QueueFull {
                    limit: 10,
                    devices: vec![device],
                }),
            ),
        ),
        (
            "err_rate_limited",
            resp(
                11,
                Err(ProtocolError::RateLimited {
                    retry_after_ms: 500,
                    scope: None,
                }),
            ),
        ),
        (
            "err_rate_limited_device",
            resp(
                11,
                Err(ProtocolError::RateLimited {
                    retry_after_ms: 500,
                    scope: Some(cascade_protocol::RateScope::Device),
                }),
            ),
        ),
        (
            "err_malformed",
            resp(11, Err(ProtocolError::Malformed { reason: "x".into() })),
        ),
        (
            "err_unsupported_version",
            resp(11, Err(ProtocolError::UnsupportedVersion { supported: 1 })),
        ),
        (
            "err_no_key_packages",
            resp(11, Err(ProtocolError::NoKeyPackages)),
        ),
        (
            "err_unavailable",
            resp(
                11,
                Err(ProtocolError::Unavailable {
                    retry_after_ms: 5000,
                }),
            ),
        ),
        ("err_internal", resp(11, Err(ProtocolError::Internal))),
        (
            "err_forbidden",
            resp(
                11,
                Err(ProtocolError::Forbidden {
                    reason: "only a conversation admin may remove others".into(),
                }),
            ),
        ),
        (
            "rejected",
            encode_server_frame(&ServerFrame::Rejected(ProtocolError::TooLarge { limit: 7 })),
        ),
        (
            "push_challenge",
            push(Push::Challenge {
                nonce: bytes(&[0x33; 4]),
            }),
        ),
        (
            "push_deliver",
            push(Push::Deliver(QueueItem {
                queue_id: 42,
                group_id: group,
                seq: 9,
                sender: device,
                kind: ItemKind::Application,
                payload: bytes(&[0xcc]),
                addressed: false,
            })),
        ),
        (
            "push_deliver_notice",
            push(Push::Deliver(QueueItem {
                queue_id: 43,
                group_id: group,
                seq: 10,
                sender: device,
                kind: ItemKind::Notice,
                payload: bytes(
                    &Notice::DeliveryStopped {
                        reason: StopReason::QueueFull { limit: 10_000 },
                    }
                    .encode(),
                ),
                addressed: false,
            })),
        ),
        (
            "push_deliver_addressed",
            push(Push::Deliver(QueueItem {
                queue_id: 44,
                group_id: group,
                seq: 11,
                sender: device,
                kind: ItemKind::Application,
                payload: bytes(&[0xcd]),
                addressed: true,
            })),
        ),
        (
            "notice_stopped_queue_full",
            Notice::DeliveryStopped {
                reason: StopReason::QueueFull { limit: 10_000 },
            }
            .encode(),
        ),
        (
            "notice_stopped_expired",
            Notice::DeliveryStopped {
                reason: StopReason::Expired {
                    idle_secs: 2_592_000,
                },
            }
            .encode(),
        ),
        ("push_queue_drained", push(Push::QueueDrained)),
        (
            "push_key_packages_low",
            push(Push::KeyPackagesLow { stock: 2 }),
        ),
        (
            "push_certificate_issued",
            push(Push::CertificateIssued {
                certificate: bytes(&[0x30, 0x82]),
            }),
        ),
        (
            "push_typing",
            push(Push::Typing {
                group_id: group,
                sender: device,
                epoch: 3,
                payload: bytes(&[0xee; 4]),
            }),
        ),
        (
            "push_trust_list_updated",
            push(Push::TrustListUpdated { org_id: user.org() }),
        ),
        (
            "push_revocations_updated",
            push(Push::RevocationsUpdated { org_id: user.org() }),
        ),
        (
            "req_get_revocations",
            req(13, Request::GetRevocations { org_id: user.org() }),
        ),
        (
            "resp_revocations",
            resp(
                13,
                Ok(Response::Revocations {
                    document: Some(SignedDocument {
                        body: bytes(&[0xa0]),
                        signature: bytes(&[0x66; 4]),
                        co_signature: None,
                    }),
                }),
            ),
        ),
        (
            "req_search_directory",
            req(
                14,
                Request::SearchDirectory {
                    orgs: vec![user.org()],
                    query: "ali".into(),
                },
            ),
        ),
        (
            "req_register_push",
            req(
                15,
                Request::RegisterPush {
                    token: Some("apns:abc".into()),
                },
            ),
        ),
        (
            "resp_push_registered",
            resp(15, Ok(Response::PushRegistered)),
        ),
        (
            "resp_directory",
            resp(
                14,
                Ok(Response::Directory {
                    entries: vec![DirectoryEntry {
                        user_id: user.clone(),
                        certificates: vec![bytes(&[0x30])],
                    }],
                }),
            ),
        ),
    ]
}

#[test]
fn frames_match_golden_bytes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden.txt");
    let actual: String = samples()
        .iter()
        .map(|(name, b)| format!("{name} {}\n", hex::encode(b)))
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).expect("write golden file");
    }
    let expected = std::fs::read_to_string(path).expect("golden file exists");
    for (a, e) in actual.lines().zip(expected.lines()) {
        assert_eq!(
            a, e,
            "encoding changed; if deliberate, run with UPDATE_GOLDEN=1"
        );
    }
    assert_eq!(actual.lines().count(), expected.lines().count());
}

#[test]
fn every_golden_frame_decodes_back() {
    for (name, b) in samples() {
        if name.starts_with("notice_") {
            let n = Notice::decode(&b).expect(name);
            assert_eq!(n.encode(), b, "{name}");
        } else if name.starts_with("req_") {
            let f = decode_client_frame(&b).expect(name);
            assert_eq!(encode_client_frame(&f), b, "{name}");
        } else {
            let f = decode_server_frame(&b).expect(name);
            assert_eq!(encode_server_frame(&f), b, "{name}");
        }
    }
}

#[test]
fn a_notice_of_an_unknown_shape_is_none_not_an_error() {
    assert_eq!(Notice::decode(&[0xff, 0x00]), None);
    assert_eq!(Notice::decode(b""), None);
    // A later version's notice (an unknown variant).
    let mut later = Vec::new();
    ciborium::into_writer(&serde_json_like_map("Renamed"), &mut later).expect("encode");
    assert_eq!(Notice::decode(&later), None);
}

fn serde_json_like_map(key: &str) -> std::collections::BTreeMap<String, u8> {
    std::collections::BTreeMap::from([(key.to_string(), 1)])
}

#[test]
fn malformed_frames_are_typed_errors() {
    assert!(matches!(
        decode_client_frame(&[0xff, 0x00]),
        Err(DecodeError::Malformed { id: None, .. })
    ));
    // A valid envelope with an unknown request keeps its id.
    #[derive(serde::Serialize)]
    struct Odd {
        v: u16,
        id: u64,
        req: &'static str,
    }
    let mut b = Vec::new();
    ciborium::into_writer(
        &Odd {
            v: 1,
            id: 77,
            req: "Fly",
        },
        &mut b,
    )
    .expect("encode");
    let err = decode_client_frame(&b).expect_err("unknown request");
    assert_eq!(err.request_id(), Some(77));
    let mut b = Vec::new();
    ciborium::into_writer(
        &Odd {
            v: 9,
            id: 77,
            req: "Fly",
        },
        &mut b,
    )
    .expect("encode");
    assert_eq!(decode_client_frame(&b), Err(DecodeError::Version(9)));
    let big = vec![0u8; limits::MAX_FRAME_BYTES + 1];
    assert!(matches!(
        decode_client_frame(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

/// Decoders never panic, whatever the bytes: every golden frame, truncated
/// at every length and with random bytes flipped, decodes or fails cleanly.
#[test]
fn decoders_survive_truncation_and_corruption() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC45C);
    for (_, frame) in samples() {
        for cut in 0..frame.len() {
            let _ = decode_client_frame(&frame[..cut]);
            let _ = decode_server_frame(&frame[..cut]);
        }
        for _ in 0..2_000 {
            let mut f = frame.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..f.len());
                f[i] = rng.gen();
            }
            let _ = decode_client_frame(&f);
            let _ = decode_server_frame(&f);
            let _ = mls_header::framing_header(&f);
        }
    }
    for _ in 0..20_000 {
        let len = rng.gen_range(0..64);
        let f: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let _ = decode_client_frame(&f);
        let _ = mls_header::framing_header(&f);
        let _ = mls_header::wire_format(&f);
    }
}
