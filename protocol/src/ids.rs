//! Identifiers: organisations, users, devices and groups.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string or byte string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// An organisation id must be 1–63 characters of `a-z`, `0-9` and `-`,
    /// not starting or ending with `-`.
    #[error("invalid organisation id: use 1-63 characters a-z, 0-9 and '-'")]
    Org,
    /// A user id is `local@org`, where `local` is 1–64 characters of `a-z`,
    /// `0-9`, `.`, `_` and `-`, and `org` is a valid organisation id.
    #[error("invalid user id: expected local@org with a-z, 0-9, '.', '_', '-'")]
    User,
    /// A device or group id is exactly 16 bytes (32 hex digits).
    #[error("invalid id: expected 32 hex digits")]
    Bytes,
}

fn valid_org(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_local(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// An organisation: the trust domain that provisions users and devices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrgId(String);

impl OrgId {
    /// Parses and validates an organisation id.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if valid_org(&s) {
            Ok(Self(s))
        } else {
            Err(IdError::Org)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person, `local@org`. A user owns one or more devices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Parses and validates a user id of the form `local@org`.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        match s.split_once('@') {
            Some((local, org)) if valid_local(local) && valid_org(org) => Ok(Self(s)),
            _ => Err(IdError::User),
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The organisation this user belongs to.
    pub fn org(&self) -> OrgId {
        let (_, org) = self.0.split_once('@').expect("validated at construction");
        OrgId(org.to_owned())
    }
}

macro_rules! string_id_impls {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_id_impls!(OrgId);
string_id_impls!(UserId);

macro_rules! byte_id {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $t(pub [u8; 16]);

        impl $t {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(rand::random())
            }

            /// Takes exactly 16 bytes.
            pub fn from_slice(b: &[u8]) -> Result<Self, IdError> {
                b.try_into().map(Self).map_err(|_| IdError::Bytes)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), hex::encode(self.0))
            }
        }

        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let v = hex::decode(s).map_err(|_| IdError::Bytes)?;
                Self::from_slice(&v)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    let b = serde_bytes::ByteBuf::deserialize(d)?;
                    Self::from_slice(&b).map_err(serde::de::Error::custom)
                }
            }
        }
    };
}

byte_id!(
    /// One device of a user: one MLS leaf, one signature key, one queue.
    DeviceId
);
byte_id!(
    /// An MLS group id. Cascade clients always create 16 random bytes.
    GroupId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_validated() {
        let u = UserId::new("alice.smith@north-trust").expect("valid");
        assert_eq!(u.org().as_str(), "north-trust");
        for bad in [
            "alice",
            "@org",
            "Alice@org",
            "a@-org",
            "a@org-",
            "a b@org",
            "a@b@c",
        ] {
            assert_eq!(UserId::new(bad), Err(IdError::User), "{bad}");
        }
        assert_eq!(OrgId::new(""), Err(IdError::Org));
    }

    #[test]
    fn byte_ids_round_trip_through_hex() {
        let d = DeviceId::random();
        assert_eq!(d.to_string().parse::<DeviceId>(), Ok(d));
        assert_eq!("abcd".parse::<DeviceId>(), Err(IdError::Bytes));
    }
}
