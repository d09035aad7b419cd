//! The MIMI message status format (draft-mahy-mimi-message-status-01):
//! a report of what became of messages, `application/mimi-message-status`,
//! carried as the one part of a MIMI content message
//! ([`super::mapping`]).
//!
//! ```cddl
//! MessageStatusReport = [ * PerMessageStatus ]
//! PerMessageStatus = [ messageId: bstr .size 32, status: uint ]
//! ```
//!
//! Cascade sends one status, `read`, and gives it a meaning the draft leaves
//! to implementations: a member who read a message has read every earlier
//! message of the conversation (protocol §15 rule 27). So one report names
//! only the last message read, and the last of each person whose messages
//! were read, whatever the number of messages.

use ciborium::Value;

use super::MessageId;

/// The media type of a status report.
pub const MESSAGE_STATUS: &str = "application/mimi-message-status";

/// Most entries read from one report; the rest are ignored.
pub const MAX_STATUS_ENTRIES: usize = 500;

/// What became of a message, as the draft numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not read (yet, or marked unread again).
    Unread,
    /// A device of the reporting user received it.
    Delivered,
    /// The reporting user read it.
    Read,
    /// It expired before it was read.
    Expired,
    /// It was deleted.
    Deleted,
    /// The reporting user hid it.
    Hidden,
    /// It arrived but could not be processed.
    Error,
    /// A status this version does not know (7 to 255).
    Other(u8),
}

impl Status {
    /// Its number.
    pub fn code(self) -> u8 {
        match self {
            Status::Unread => 0,
            Status::Delivered => 1,
            Status::Read => 2,
            Status::Expired => 3,
            Status::Deleted => 4,
            Status::Hidden => 5,
            Status::Error => 6,
            Status::Other(n) => n,
        }
    }

    /// The status numbered `n`.
    pub fn from_code(n: u8) -> Status {
        match n {
            0 => Status::Unread,
            1 => Status::Delivered,
            2 => Status::Read,
            3 => Status::Expired,
            4 => Status::Deleted,
            5 => Status::Hidden,
            6 => Status::Error,
            n => Status::Other(n),
        }
    }
}

/// Encodes a report. A message id takes its 32 octets: a MIMI id as it is,
/// a `v1` id after 16 zero octets ([`MessageId::as_32`]).
pub fn encode(entries: &[(MessageId, Status)]) -> Vec<u8> {
    let report = Value::Array(
        entries
            .iter()
            .map(|(id, status)| {
                Value::Array(vec![
                    Value::Bytes(id.as_32().to_vec()),
                    Value::Integer(status.code().into()),
                ])
            })
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::into_writer(&report, &mut out).expect("serialising to a Vec cannot fail");
    out
}

/// Decodes a report; `None` if it is not one. Entries that are not a
/// 32-octet id and a status from 0 to 255 are skipped; at most
/// [`MAX_STATUS_ENTRIES`] are read.
pub fn decode(bytes: &[u8]) -> Option<Vec<(MessageId, Status)>> {
    let Value::Array(items) = ciborium::from_reader::<Value, _>(bytes).ok()? else {
        return None;
    };
    Some(
        items
            .iter()
            .take(MAX_STATUS_ENTRIES)
            .filter_map(|item| {
                let Value::Array(pair) = item else {
                    return None;
                };
                match pair.as_slice() {
                    [Value::Bytes(id), Value::Integer(n)] => {
                        let id = MessageId::from_32(id.as_slice().try_into().ok()?);
                        Some((id, Status::from_code(u8::try_from(*n).ok()?)))
                    }
                    _ => None,
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex32: &str) -> MessageId {
        MessageId::from_32(hex::decode(hex32).expect("hex").try_into().expect("32"))
    }

    /// The draft's own example (its section 5), octet for octet.
    #[test]
    fn the_drafts_example_report_is_written_and_read() {
        let entries = vec![
            (
                id("017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f4"),
                Status::Read,
            ),
            (
                id("015354973c2b65ca937bf1e035ae53a5ab80e947afa43d46920d4202e5cc0b27"),
                Status::Read,
            ),
            (
                id("018d825adf9f6be00dcafc5704c4102f5022e74219d0b603e4ba7622654042af"),
                Status::Unread,
            ),
            (
                id("01e59db8173939facc2c8a4a0f0ae8d0c7a11a81239626630c9464a8d6717a03"),
                Status::Expired,
            ),
        ];
        let example = "84\
            825820017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f402\
            825820015354973c2b65ca937bf1e035ae53a5ab80e947afa43d46920d4202e5cc0b2702\
            825820018d825adf9f6be00dcafc5704c4102f5022e74219d0b603e4ba7622654042af00\
            82582001e59db8173939facc2c8a4a0f0ae8d0c7a11a81239626630c9464a8d6717a0303";
        assert_eq!(hex::encode(encode(&entries)), example);
        assert_eq!(decode(&hex::decode(example).expect("hex")), Some(entries));
    }

    /// Unknown statuses are kept; malformed entries are skipped, not fatal;
    /// what is not an array is no report; a `v1` id travels as 32 octets.
    #[test]
    fn odd_reports_are_read_as_far_as_they_go() {
        let v1 = MessageId::v1([7; 16]);
        let bytes = encode(&[(v1, Status::Other(42)), (v1, Status::Read)]);
        assert_eq!(
            decode(&bytes),
            Some(vec![(v1, Status::Other(42)), (v1, Status::Read)])
        );
        let mut odd = Vec::new();
        let junk = Value::Array(vec![
            Value::Array(vec![Value::Bytes(vec![1; 31]), Value::Integer(2.into())]),
            Value::Array(vec![Value::Bytes(vec![1; 32]), Value::Integer(300.into())]),
            Value::Text("x".into()),
            Value::Array(vec![Value::Bytes(vec![1; 32]), Value::Integer(2.into())]),
        ]);
        ciborium::into_writer(&junk, &mut odd).expect("writes");
        assert_eq!(
            decode(&odd),
            Some(vec![(MessageId::from_32([1; 32]), Status::Read)])
        );
        assert_eq!(decode(b"\xa0"), None);
        assert_eq!(decode(b"\xff"), None);
        let many: Vec<_> = (0..MAX_STATUS_ENTRIES + 5)
            .map(|_| (v1, Status::Read))
            .collect();
        assert_eq!(
            decode(&encode(&many)).map(|e| e.len()),
            Some(MAX_STATUS_ENTRIES)
        );
    }
}
