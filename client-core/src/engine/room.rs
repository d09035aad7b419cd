//! The conversation's room in the MLS group: the GroupContext extension
//! ([`cascade_protocol::room`], protocol §14.8) that every member holds the
//! same authenticated copy of, changed only by commits.
//!
//! Its presence is also the sign that every member reads MIMI content: it
//! is listed in the group's required capabilities, so MLS admits only
//! devices that advertise it (RFC 9420 §11.1), and a conversation without
//! it (created before) keeps the `v1` envelope.

use cascade_protocol::{GroupId, OrgId, UserId};
use openmls::prelude::*;

pub use cascade_protocol::room::*;

use crate::content::mapping;
use crate::error::{CoreError, Result};

/// The room of a conversation created now by `creator`.
pub fn new(creator: &UserId, org: &OrgId, group: &GroupId) -> Room {
    Room::new(creator, mapping::room_uri(org, group))
}

/// The GroupContext extensions of a new conversation with this room: the
/// room, and the required capabilities that keep out devices that cannot
/// read it.
pub fn group_context_extensions(room: &Room) -> Result<Extensions<GroupContext>> {
    Extensions::from_vec(vec![
        Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
            &[ExtensionType::Unknown(ROOM_EXTENSION)],
            &[],
            &[],
        )),
        Extension::Unknown(ROOM_EXTENSION, UnknownExtension(room.encode())),
    ])
    .map_err(CoreError::mls)
}

/// A group's GroupContext extensions with `room` in place of its current
/// one; the others are kept as they are.
pub fn replacing_in(room: &Room, group: &MlsGroup) -> Result<Extensions<GroupContext>> {
    let mut list: Vec<Extension> = group
        .extensions()
        .iter()
        .filter(|e| !matches!(e, Extension::Unknown(ROOM_EXTENSION, _)))
        .cloned()
        .collect();
    list.push(Extension::Unknown(
        ROOM_EXTENSION,
        UnknownExtension(room.encode()),
    ));
    Extensions::from_vec(list).map_err(CoreError::mls)
}

/// The room of a group, `None` for a conversation created before rooms
/// (or whose room does not decode: treated the same, so its messages stay
/// in the `v1` envelope).
pub fn of(group: &MlsGroup) -> Option<Room> {
    in_extensions(group.extensions())
}

/// The room in a GroupContext's extensions.
pub fn in_extensions(extensions: &Extensions<GroupContext>) -> Option<Room> {
    extensions.iter().find_map(|e| match e {
        Extension::Unknown(ROOM_EXTENSION, UnknownExtension(bytes)) => Room::decode(bytes),
        _ => None,
    })
}
