//! Golden tests of everything the device stores in its own encodings: the
//! outbox operations, an add's claimed KeyPackages, a prepared commit
//! bundle, the identity record and the signed documents kept in `kv`. The
//! bytes are pinned in `golden.txt`, so a change to what is on disk is
//! deliberate (and comes with a schema migration). Run with
//! `UPDATE_GOLDEN=1` to rewrite the file after such a change.

use cascade_protocol::{Bytes, CommitBundle, DeviceId, GroupId, OrgId, SignedDocument, UserId};

use crate::content::MessageId;
use crate::engine::outbox::{AddClaims, Claimed, Op};
use crate::store::Identity;

fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut b = Vec::new();
    ciborium::into_writer(v, &mut b).expect("serialises");
    b
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let group = GroupId([0x22; 16]);
    let device = DeviceId([0x11; 16]);
    let user = UserId::new("alice@north-trust").expect("valid");
    let users = vec![user.clone(), UserId::new("bob@east").expect("valid")];
    vec![
        (
            "message_mentions",
            crate::store::mentions_column(&[crate::content::Mention {
                user_id: user.clone(),
                start: 4,
                end: 16,
            }])
            .expect("some")
            .into_bytes(),
        ),
        (
            "op_create_group",
            Op::CreateGroup { group_id: group }.encode(),
        ),
        (
            "op_send",
            Op::Send {
                group_id: group,
                message_id: MessageId::v1([0x33; 16]),
                content: vec![1, 2, 3],
                to: Vec::new(),
            }
            .encode(),
        ),
        (
            "op_send_to",
            Op::Send {
                group_id: group,
                message_id: MessageId::v1([0x33; 16]),
                content: vec![1, 2, 3],
                to: vec![user.clone()],
            }
            .encode(),
        ),
        (
            "op_add_members",
            Op::AddMembers {
                group_id: group,
                users: users.clone(),
            }
            .encode(),
        ),
        (
            "op_remove_members",
            Op::RemoveMembers {
                group_id: group,
                users,
            }
            .encode(),
        ),
        (
            "op_remove_devices",
            Op::RemoveDevices {
                group_id: group,
                devices: vec![device],
            }
            .encode(),
        ),
        (
            "op_update_credential",
            Op::UpdateCredential { group_id: group }.encode(),
        ),
        ("op_leave", Op::Leave { group_id: group }.encode()),
        (
            "op_change_room_role",
            Op::ChangeRoom {
                group_id: group,
                change: crate::engine::RoomChange::Role {
                    user: UserId::new("bob@north").expect("valid"),
                    role: crate::engine::Role::Admin,
                },
                unchecked: false,
            }
            .encode(),
        ),
        (
            "op_change_room_policy",
            Op::ChangeRoom {
                group_id: group,
                change: crate::engine::RoomChange::Policy {
                    action: crate::engine::Action::Remove,
                    role: crate::engine::Role::Member,
                },
                unchecked: false,
            }
            .encode(),
        ),
        (
            "op_change_room_timer",
            Op::ChangeRoom {
                group_id: group,
                change: crate::engine::RoomChange::Timer { secs: Some(3600) },
                unchecked: false,
            }
            .encode(),
        ),
        (
            "op_commit_proposals",
            Op::CommitProposals { group_id: group }.encode(),
        ),
        (
            "op_join_external",
            Op::JoinExternal {
                group_id: group,
                rejoin: false,
            }
            .encode(),
        ),
        (
            "op_rejoin",
            Op::JoinExternal {
                group_id: group,
                rejoin: true,
            }
            .encode(),
        ),
        (
            "state_add_claims",
            AddClaims {
                next: 1,
                claimed: vec![Claimed {
                    device,
                    user: user.clone(),
                    key_package: vec![0x44; 3],
                }],
            }
            .encode(),
        ),
        (
            "prepared_commit_bundle",
            crate::engine::commit::encode_bundle(&CommitBundle {
                group_id: group,
                epoch: 3,
                commit: Bytes::from(vec![6]),
                welcome: Some(Bytes::from(vec![7])),
                group_info: Bytes::from(vec![8]),
                added: vec![device],
                removed: vec![],
            }),
        ),
        (
            "identity",
            cbor(&Identity {
                server_url: "http://relay".into(),
                user_id: user,
                org_id: OrgId::new("north-trust").expect("valid"),
                device_id: device,
                display_name: "Alice".into(),
                role: "Nurse".into(),
                signature_key: vec![9; 4],
                anchor: vec![1, 2],
                certificate: Some(serde_bytes::ByteBuf::from(vec![3])),
                previous_anchor: None,
                server_ca: None,
            }),
        ),
        (
            "kv_signed_document",
            cbor(&SignedDocument {
                body: Bytes::from(vec![0xa0]),
                signature: Bytes::from(vec![0x55; 4]),
                co_signature: None,
            }),
        ),
    ]
}

#[test]
fn stored_encodings_match_the_golden_file() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/golden.txt");
    let actual: String = samples()
        .into_iter()
        .map(|(name, bytes)| format!("{name} {}\n", hex::encode(bytes)))
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("golden file");
    for (want, got) in expected.lines().zip(actual.lines()) {
        assert_eq!(got, want, "a stored encoding changed");
    }
    assert_eq!(expected.lines().count(), actual.lines().count());
}

#[test]
fn version_1_operations_decode_as_they_were_written() {
    // Bytes written by schema 1's outbox (taken from the v1 fixture's
    // encoding): a join without the `rejoin` field is a new device's join.
    let v1 = Op::JoinExternal {
        group_id: GroupId([0x22; 16]),
        rejoin: false,
    }
    .encode();
    assert!(
        !v1.windows(6).any(|w| w == b"rejoin"),
        "the field is left out"
    );
    assert_eq!(
        Op::decode(&v1).expect("decodes"),
        Op::JoinExternal {
            group_id: GroupId([0x22; 16]),
            rejoin: false
        }
    );
}
