//! A reader for the public part of an MLS message (RFC 9420 §6).
//!
//! The relay sees the framing header of every MLS message it sequences: the
//! wire format, group id, epoch and content type. It needs them to check that
//! a commit is for the group and epoch the request claims and that an
//! application message really is one. It never sees more than this.

// The fields are read with a small bounds-checked cursor rather than
// `tls_codec`: tls_codec 0.5's `VLBytes` hits a debug assertion (a panic in
// debug builds) on truncated input, and the relay must never panic on client
// bytes. The header is five fixed-layout fields; nothing else is parsed.

/// MLS wire formats (RFC 9420 §6, `WireFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// `mls_public_message` (1).
    PublicMessage,
    /// `mls_private_message` (2).
    PrivateMessage,
    /// `mls_welcome` (3).
    Welcome,
    /// `mls_group_info` (4).
    GroupInfo,
    /// `mls_key_package` (5).
    KeyPackage,
}

/// MLS content types (RFC 9420 §6, `ContentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application` (1).
    Application,
    /// `proposal` (2).
    Proposal,
    /// `commit` (3).
    Commit,
}

/// Sender types of a `PublicMessage` (RFC 9420 §6, `SenderType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderType {
    /// `member` (1), with the sender's leaf index.
    Member(u32),
    /// `external` (2), with the external sender index.
    External(u32),
    /// `new_member_proposal` (3).
    NewMemberProposal,
    /// `new_member_commit` (4): an external commit.
    NewMemberCommit,
}

/// The framing header of a public or private message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingHeader {
    /// Public or private.
    pub wire_format: WireFormat,
    /// The MLS group id.
    pub group_id: Vec<u8>,
    /// The epoch the message belongs to.
    pub epoch: u64,
    /// What the message carries.
    pub content_type: ContentType,
    /// The sender, visible only in public messages.
    pub sender: Option<SenderType>,
}

/// Why an MLS message header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The bytes end early or a field has an invalid value.
    #[error("not a valid MLS message header")]
    Invalid,
    /// The protocol version is not `mls10`.
    #[error("unsupported MLS protocol version")]
    Version,
}

/// Splits `n` bytes off the front of `b`.
fn split(b: &[u8], n: usize) -> Result<(&[u8], &[u8]), HeaderError> {
    if b.len() < n {
        return Err(HeaderError::Invalid);
    }
    Ok(b.split_at(n))
}

fn take_u8(b: &[u8]) -> Result<(u8, &[u8]), HeaderError> {
    let (h, t) = split(b, 1)?;
    Ok((h[0], t))
}

fn take_u16(b: &[u8]) -> Result<(u16, &[u8]), HeaderError> {
    let (h, t) = split(b, 2)?;
    Ok((u16::from_be_bytes([h[0], h[1]]), t))
}

fn take_u32(b: &[u8]) -> Result<(u32, &[u8]), HeaderError> {
    let (h, t) = split(b, 4)?;
    Ok((u32::from_be_bytes(h.try_into().expect("4 bytes")), t))
}

fn take_u64(b: &[u8]) -> Result<(u64, &[u8]), HeaderError> {
    let (h, t) = split(b, 8)?;
    Ok((u64::from_be_bytes(h.try_into().expect("8 bytes")), t))
}

/// Splits one MLS variable-length vector (RFC 9420 §2.1.2) off the front of
/// `b`: returns its contents and the rest. Bounds-checked; `None` if `b`
/// does not start with a complete vector.
pub fn split_vl(b: &[u8]) -> Option<(&[u8], &[u8])> {
    take_vl(b).ok()
}

/// An MLS variable-length vector (RFC 9420 §2.1.2): a 1, 2 or 4 byte length
/// whose top two bits give the length of the length, then the bytes.
fn take_vl(b: &[u8]) -> Result<(&[u8], &[u8]), HeaderError> {
    let (first, _) = take_u8(b)?;
    let (len, rest) = match first >> 6 {
        0 => (u64::from(first & 0x3f), &b[1..]),
        1 => {
            let (v, r) = take_u16(b)?;
            (u64::from(v & 0x3fff), r)
        }
        2 => {
            let (v, r) = take_u32(b)?;
            (u64::from(v & 0x3fff_ffff), r)
        }
        _ => return Err(HeaderError::Invalid),
    };
    split(
        rest,
        usize::try_from(len).map_err(|_| HeaderError::Invalid)?,
    )
}

/// Reads the wire format of an `MlsMessage`.
pub fn wire_format(bytes: &[u8]) -> Result<WireFormat, HeaderError> {
    let (version, rest) = take_u16(bytes)?;
    if version != 1 {
        return Err(HeaderError::Version);
    }
    let (wf, _) = take_u16(rest)?;
    Ok(match wf {
        1 => WireFormat::PublicMessage,
        2 => WireFormat::PrivateMessage,
        3 => WireFormat::Welcome,
        4 => WireFormat::GroupInfo,
        5 => WireFormat::KeyPackage,
        _ => return Err(HeaderError::Invalid),
    })
}

fn content_type(b: u8) -> Result<ContentType, HeaderError> {
    match b {
        1 => Ok(ContentType::Application),
        2 => Ok(ContentType::Proposal),
        3 => Ok(ContentType::Commit),
        _ => Err(HeaderError::Invalid),
    }
}

/// Reads the framing header of an `MlsMessage` holding a public or private
/// message.
pub fn framing_header(bytes: &[u8]) -> Result<FramingHeader, HeaderError> {
    let wire_format = wire_format(bytes)?;
    let rest = &bytes[4..];
    let (group_id, rest) = take_vl(rest)?;
    let (epoch, rest) = take_u64(rest)?;
    match wire_format {
        WireFormat::PublicMessage => {
            let (sender_type, rest) = take_u8(rest)?;
            let (sender, rest) = match sender_type {
                1 => {
                    let (i, r) = take_u32(rest)?;
                    (SenderType::Member(i), r)
                }
                2 => {
                    let (i, r) = take_u32(rest)?;
                    (SenderType::External(i), r)
                }
                3 => (SenderType::NewMemberProposal, rest),
                4 => (SenderType::NewMemberCommit, rest),
                _ => return Err(HeaderError::Invalid),
            };
            let (_aad, rest) = take_vl(rest)?;
            let (ct, _) = take_u8(rest)?;
            Ok(FramingHeader {
                wire_format,
                group_id: group_id.to_vec(),
                epoch,
                content_type: content_type(ct)?,
                sender: Some(sender),
            })
        }
        WireFormat::PrivateMessage => {
            let (ct, _) = take_u8(rest)?;
            Ok(FramingHeader {
                wire_format,
                group_id: group_id.to_vec(),
                epoch,
                content_type: content_type(ct)?,
                sender: None,
            })
        }
        _ => Err(HeaderError::Invalid),
    }
}

/// Reads the GroupContext extension of type `extension_type` from an
/// `MlsMessage` holding a GroupInfo (RFC 9420 §12.4.3: a GroupInfo starts
/// with its GroupContext, §8.1): `None` if the group has no such extension.
/// The relay reads the conversation's room (`room::ROOM_EXTENSION`) this
/// way; the GroupInfo is public to it already, for external joins.
pub fn group_info_extension(
    bytes: &[u8],
    extension_type: u16,
) -> Result<Option<&[u8]>, HeaderError> {
    if wire_format(bytes)? != WireFormat::GroupInfo {
        return Err(HeaderError::Invalid);
    }
    let rest = &bytes[4..];
    let (_version, rest) = take_u16(rest)?;
    let (_cipher_suite, rest) = take_u16(rest)?;
    let (_group_id, rest) = take_vl(rest)?;
    let (_epoch, rest) = take_u64(rest)?;
    let (_tree_hash, rest) = take_vl(rest)?;
    let (_transcript_hash, rest) = take_vl(rest)?;
    let (mut extensions, _) = take_vl(rest)?;
    while !extensions.is_empty() {
        let (ty, rest) = take_u16(extensions)?;
        let (data, rest) = take_vl(rest)?;
        if ty == extension_type {
            return Ok(Some(data));
        }
        extensions = rest;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_group_info_extension() {
        // version 1, wire format 4; GroupContext: version 1, suite 1, group
        // id "g", epoch 3, tree hash "t", transcript hash "h", extensions:
        // type 0x0003 "x", type 0xF0CA "room"; then the rest of the GroupInfo.
        let mut bytes = vec![0, 1, 0, 4, 0, 1, 0, 1, 1, b'g', 0, 0, 0, 0, 0, 0, 0, 3];
        bytes.extend([1, b't', 1, b'h']);
        bytes.extend([11, 0, 3, 1, b'x', 0xf0, 0xca, 4, b'r', b'o', b'o', b'm']);
        bytes.extend([0, 0, 0, 0, 0]);
        assert_eq!(group_info_extension(&bytes, 0xf0ca), Ok(Some(&b"room"[..])));
        assert_eq!(group_info_extension(&bytes, 0x0003), Ok(Some(&b"x"[..])));
        assert_eq!(group_info_extension(&bytes, 0x0004), Ok(None));
        // Cut anywhere, it is refused, never read past its end.
        for n in 0..bytes.len() - 5 {
            assert!(group_info_extension(&bytes[..n], 0xf0ca).is_err(), "{n}");
        }
        // A message that is no GroupInfo is refused.
        let private = [0, 1, 0, 2, 2, 0xaa, 0xbb, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0xff];
        assert_eq!(
            group_info_extension(&private, 0xf0ca),
            Err(HeaderError::Invalid)
        );
    }

    #[test]
    fn reads_a_private_message_header() {
        // version 1, wire format 2, group id of 2 bytes, epoch 7, content type 1
        let bytes = [0, 1, 0, 2, 2, 0xaa, 0xbb, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0xff];
        let h = framing_header(&bytes).expect("valid header");
        assert_eq!(h.wire_format, WireFormat::PrivateMessage);
        assert_eq!(h.group_id, vec![0xaa, 0xbb]);
        assert_eq!(h.epoch, 7);
        assert_eq!(h.content_type, ContentType::Application);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(framing_header(&[]), Err(HeaderError::Invalid));
        assert_eq!(framing_header(&[0, 2, 0, 1]), Err(HeaderError::Version));
        assert_eq!(framing_header(&[0, 1, 0, 9]), Err(HeaderError::Invalid));
        assert_eq!(
            framing_header(&[0, 1, 0, 2, 5, 1]),
            Err(HeaderError::Invalid)
        );
    }
}
