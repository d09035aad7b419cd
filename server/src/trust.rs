//! Which organisations' devices may reach each other through the relay.
//!
//! Clients accept a member only if their organisation's CA, or a CA their
//! organisation pinned in its signed trust list, certified it (protocol
//! §14). A conversation between two organisations therefore works only when
//! each pins the other. The relay applies the same rule to what it serves,
//! from the same signed trust lists (their signatures were checked against
//! the organisation's CA when they were stored), so that an organisation
//! nobody trusts cannot put another's devices in its groups, claim their
//! KeyPackages or read their directory (issue 11): the same organisation,
//! or each pins the other's current CA.

use cascade_protocol::OrgId;

use crate::store::{Store, StoreError};

/// Whether devices of `a` and `b` may share a group, claim each other's
/// KeyPackages and find each other in the directory.
pub fn mutually_trusted(store: &dyn Store, a: &OrgId, b: &OrgId) -> Result<bool, StoreError> {
    if a == b {
        return Ok(true);
    }
    Ok(pins(store, a, b)? && pins(store, b, a)?)
}

/// Whether `by`'s current trust list pins `of`'s current CA.
fn pins(store: &dyn Store, by: &OrgId, of: &OrgId) -> Result<bool, StoreError> {
    let Some(ca) = store.get_org(of)?.and_then(|org| org.ca_certificate) else {
        return Ok(false);
    };
    let Some(list) = store.trust_list(by)? else {
        return Ok(false);
    };
    Ok(anchors(&list.body)
        .iter()
        .any(|anchor| anchor.as_slice() == ca.as_slice()))
}

/// The partner CAs (DER) a trust list body pins (`docs/protocol.md`
/// §14.4); none if the body does not decode.
fn anchors(body: &[u8]) -> Vec<serde_bytes::ByteBuf> {
    #[derive(serde::Deserialize)]
    struct Pinned {
        anchors: Vec<serde_bytes::ByteBuf>,
    }
    ciborium::from_reader::<Pinned, _>(body)
        .map(|pinned| pinned.anchors)
        .unwrap_or_default()
}
