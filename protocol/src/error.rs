//! The typed errors the relay returns. Every variant is something a client can
//! act on; none carries message content, keys or tokens.

use serde::{Deserialize, Serialize};

/// Which of the relay's limits a [`ProtocolError::RateLimited`] answer is
/// about (protocol §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RateScope {
    /// This device claimed this one user's KeyPackages too often
    /// (`CLAIMS_PER_USER`).
    User,
    /// This device made too many claims in all (`CLAIMS_PER_DEVICE`).
    Device,
    /// This device sent too many typing indicators to one group
    /// (`TYPING_PER_WINDOW`).
    Typing,
    /// This user has too many link sessions open
    /// (`LINK_SESSIONS_PER_USER`).
    Link,
    /// A limit this version does not know.
    #[serde(other)]
    Other,
}

/// An error answer to a request (or, for a frame that could not be attributed
/// to a request, a [`ServerFrame::Rejected`](crate::ServerFrame::Rejected)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProtocolError {
    /// The request needs an authenticated connection; send `Authenticate`
    /// first.
    #[error("not authenticated")]
    Unauthenticated,
    /// The challenge signature did not verify, the device is unknown, or the
    /// device has been revoked. The relay closes the connection after this.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// A commit was made for an epoch other than the group's current one.
    /// Process the queue up to `current` and retry the operation.
    #[error("wrong epoch: the group is at epoch {current}")]
    WrongEpoch {
        /// The group's current epoch at the relay.
        current: u64,
    },
    /// The sending device is not a current member of the group.
    #[error("this device is not a member of the group")]
    NotMember,
    /// The relay knows no group with this id.
    #[error("unknown group")]
    UnknownGroup,
    /// A group with this id already exists.
    #[error("group already exists")]
    GroupExists,
    /// The user id is not known to the relay.
    #[error("unknown user")]
    UnknownUser,
    /// A device named in the request is not known to the relay, or is
    /// revoked.
    #[error("unknown device")]
    UnknownDevice,
    /// A frame or an item inside it exceeds a limit of
    /// [`limits`](crate::limits); `limit` is that limit in bytes or items
    /// (for a full KeyPackage stock, the stock limit).
    #[error("too large: the limit is {limit}")]
    TooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The organisation's attachment storage at the relay is full
    /// (`PostBlob`); nothing was stored. `limit` is the quota in octets.
    #[error("the organisation's attachment storage is full: the quota is {limit} octets")]
    QuotaExceeded {
        /// The organisation's quota, in octets.
        limit: u64,
    },
    /// A recipient's queue is full; nothing was stored. Retry later, or
    /// remove the devices named.
    #[error("a recipient's queue is full (limit {limit})")]
    QueueFull {
        /// The queue limit.
        limit: u64,
        /// The member devices that have stopped reading this group (absent
        /// from the encoding when empty, as before it was added).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        devices: Vec<crate::DeviceId>,
    },
    /// Over a rate limit of the relay (protocol §10: KeyPackage claims).
    /// Retry after the given time; nothing was done.
    #[error("rate limited: retry after {retry_after_ms} ms")]
    RateLimited {
        /// Milliseconds to wait before retrying.
        retry_after_ms: u64,
        /// Which limit was reached (absent from the encoding when not
        /// given, as before it was added).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<RateScope>,
    },
    /// The frame is not valid CBOR of this protocol, or an MLS message in it
    /// does not parse or does not match the request (group id, epoch,
    /// content type). `reason` is a short fixed description, never content.
    #[error("malformed: {reason}")]
    Malformed {
        /// What was wrong, for logs and developers.
        reason: String,
    },
    /// The envelope version is not supported by this relay.
    #[error("unsupported protocol version; the relay speaks {supported}")]
    UnsupportedVersion {
        /// The version the relay speaks.
        supported: u16,
    },
    /// None of the user's devices has a KeyPackage left (not even a last
    /// resort), or the user has no enrolled device.
    #[error("no KeyPackages available for this user")]
    NoKeyPackages,
    /// The relay cannot store anything new for now (its disk is nearly
    /// full); nothing was done. Retry after the given time.
    #[error("relay unavailable for writes: retry after {retry_after_ms} ms")]
    Unavailable {
        /// Milliseconds to wait before retrying.
        retry_after_ms: u64,
    },
    /// The conversation's policy (its room, protocol §14.8) does not let
    /// this device's user make the change the commit's GroupInfo and roster
    /// change show: nothing was done. `reason` is a fixed description
    /// ("only a conversation admin may remove others"), never content.
    #[error("forbidden by the conversation's policy: {reason}")]
    Forbidden {
        /// What the policy keeps for another role.
        reason: String,
    },
    /// The relay failed internally (storage error). The request had no effect;
    /// retrying is safe.
    #[error("internal relay error")]
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scope a later relay adds is read as `Other`, not as a broken
    /// answer; an answer without one (an earlier relay) has none.
    #[test]
    fn rate_limit_scopes_this_version_does_not_know_are_other() {
        use ciborium::Value;
        let decode = |scope: Option<&str>| -> ProtocolError {
            let mut fields = vec![(Value::from("retry_after_ms"), Value::from(5))];
            fields.extend(scope.map(|s| (Value::from("scope"), Value::from(s))));
            let value = Value::Map(vec![(Value::from("RateLimited"), Value::Map(fields))]);
            let mut bytes = Vec::new();
            ciborium::into_writer(&value, &mut bytes).expect("cbor");
            ciborium::from_reader(bytes.as_slice()).expect("decodes")
        };
        assert_eq!(
            decode(Some("Org")),
            ProtocolError::RateLimited {
                retry_after_ms: 5,
                scope: Some(RateScope::Other)
            }
        );
        assert_eq!(
            decode(None),
            ProtocolError::RateLimited {
                retry_after_ms: 5,
                scope: None
            }
        );
    }
}
