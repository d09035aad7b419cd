//! `GetTrustList`: an organisation's trust list, as its admins signed it.
//!
//! The relay checked the CA signature when the list was uploaded, but
//! clients verify it again: the relay only serves it.

use cascade_protocol::frames::{Response, SignedDocument};
use cascade_protocol::OrgId;

use crate::error::DsError;
use crate::AppState;

/// The organisation's latest trust list; `document: None` if it has none
/// (or the organisation is unknown). Any authenticated device may ask for
/// any organisation's list.
pub fn handle(state: &AppState, org_id: &OrgId) -> Result<Response, DsError> {
    let document = state.store().trust_list(org_id)?.map(to_document);
    Ok(Response::TrustList { document })
}

/// The organisation's latest revocation list; `document: None` if it has
/// none. Any authenticated device may ask for any organisation's list.
pub fn revocations(state: &AppState, org_id: &OrgId) -> Result<Response, DsError> {
    let document = state.store().revocations(org_id)?.map(to_document);
    Ok(Response::Revocations { document })
}

/// A stored signed document as the protocol carries it.
fn to_document(stored: crate::store::TrustList) -> SignedDocument {
    SignedDocument {
        body: stored.body,
        signature: stored.signature,
        co_signature: stored.co_signature,
    }
}
