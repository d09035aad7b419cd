//! The conversation's room: a GroupContext extension (protocol §14.8)
//! that every member holds the same authenticated copy of, changed only
//! by commits.
//!
//! It names the room (its MIMI URI, which every message id is derived
//! from) and who administers it. Its presence is also the sign that every
//! member reads MIMI content: it is listed in the group's required
//! capabilities, so MLS admits only devices that advertise it (RFC 9420
//! §11.1), and a conversation without it (created before) keeps the `v1`
//! envelope.

use cascade_protocol::{GroupId, OrgId, UserId};
use openmls::prelude::*;
use serde::{Deserialize, Serialize};

use crate::content::mapping;
use crate::error::{CoreError, Result};

/// The extension type: from the private-use range (RFC 9420 §17.3).
pub const ROOM_EXTENSION: u16 = 0xF0CA;

/// The version of the room's encoding.
const ROOM_VERSION: u8 = 1;

/// A conversation's room, as its GroupContext carries it: a CBOR map
/// `{"v": 1, "uri": text, "admins": [user id, …]}`. Unknown keys are
/// ignored, so later versions may add to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Its encoding's version.
    pub v: u8,
    /// The room's URI (`mimi://<creator's org>/r/<group id>`).
    pub uri: String,
    /// Who administers it: deletes others' messages. The creator first.
    pub admins: Vec<UserId>,
}

impl Room {
    /// The room of a conversation created now by `creator`.
    pub fn new(creator: &UserId, org: &OrgId, group: &GroupId) -> Room {
        Room {
            v: ROOM_VERSION,
            uri: mapping::room_uri(org, group),
            admins: vec![creator.clone()],
        }
    }

    /// Whether `user` administers the room.
    pub fn is_admin(&self, user: &UserId) -> bool {
        self.admins.contains(user)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("serialising to a Vec cannot fail");
        out
    }

    /// The GroupContext extensions of a new conversation with this room:
    /// the room, and the required capabilities that keep out devices that
    /// cannot read it.
    pub fn group_context_extensions(&self) -> Result<Extensions<GroupContext>> {
        Extensions::from_vec(vec![
            Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
                &[ExtensionType::Unknown(ROOM_EXTENSION)],
                &[],
                &[],
            )),
            Extension::Unknown(ROOM_EXTENSION, UnknownExtension(self.encode())),
        ])
        .map_err(CoreError::mls)
    }
}

/// The room of a group, `None` for a conversation created before rooms
/// (or whose room does not decode: treated the same, so its messages stay
/// in the `v1` envelope).
pub fn of(group: &MlsGroup) -> Option<Room> {
    group.extensions().iter().find_map(|e| match e {
        Extension::Unknown(ROOM_EXTENSION, UnknownExtension(bytes)) => {
            ciborium::from_reader::<Room, _>(bytes.as_slice())
                .ok()
                .filter(|r| r.v >= ROOM_VERSION)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The room's encoding is pinned: every member must read it.
    #[test]
    fn the_room_is_pinned() {
        let user = UserId::new("alice@north").expect("user");
        let org = OrgId::new("north").expect("org");
        let room = Room::new(&user, &org, &GroupId([0xab; 16]));
        assert_eq!(hex::encode(room.encode()), ROOM_GOLDEN);
        let back: Room = ciborium::from_reader(room.encode().as_slice()).expect("reads");
        assert_eq!(back, room);
        assert!(room.is_admin(&user));
        assert!(!room.is_admin(&UserId::new("bob@north").expect("user")));
    }

    /// `{"v": 1, "uri": "mimi://north/r/abab…ab", "admins": ["alice@north"]}`.
    const ROOM_GOLDEN: &str = "a361760163757269782f6d696d693a2f2f6e6f7274682f722f61626162616261\
626162616261626162616261626162616261626162616261626661646d696e73\
816b616c696365406e6f727468";
}
