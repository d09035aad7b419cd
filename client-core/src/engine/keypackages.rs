//! This device's KeyPackages at the relay: a batch of single-use ones and
//! one last-resort KeyPackage, replenished when the relay says the stock
//! is low.
//!
//! Every KeyPackage lists the extensions it carries in its leaf's
//! capabilities (RFC 9420 §10 and §7.2): the last-resort one carries
//! `last_resort` (0x000a), so the leaf advertises it (see
//! [`super::groups::capabilities`]). KeyPackages uploaded before that
//! (format 1) did not, and peers that check refuse them; a device still
//! on format 1 replaces its last-resort KeyPackage on its next connection.
//! Format 3 adds the room extension (a device that reads MIMI content,
//! protocol §14.8); a format-2 single-use KeyPackage still at the relay is
//! refused for a conversation with a room (the add reports the device as
//! outdated) and is used up by other adds.

use cascade_protocol::limits::{KEY_PACKAGE_BATCH, KEY_PACKAGE_LOW_WATER};
use cascade_protocol::{ProtocolError, Request, Response};
use openmls::prelude::*;

use super::effects::{Effects, Route};
use super::groups::{bytes, capabilities, mls_bytes, CIPHERSUITE};
use super::Me;
use crate::error::{CoreError, Result};
use crate::store::ClientStore;
use crate::store::Transactions;

/// Where the format of the KeyPackages at the relay is kept (`kv`).
const KV_FORMAT: &str = "key_package_format";

/// The format this build uploads: leaf capabilities list `last_resort`
/// (format 2) and the room extension (format 3).
const FORMAT: u8 = 3;

/// Uploads in flight.
#[derive(Default)]
pub(crate) struct KeyPackages {
    uploading: bool,
}

impl KeyPackages {
    /// Authenticated (with a certificate): tops up the stock if it is low,
    /// and replaces a missing or outdated last-resort KeyPackage.
    pub fn authenticated(
        &mut self,
        store: &dyn ClientStore,
        me: &Me,
        stock: u32,
        has_last_resort: bool,
        fx: &mut Effects,
    ) -> Result<()> {
        let outdated = store.kv_get(KV_FORMAT)?.as_deref() != Some(&[FORMAT]);
        if stock <= KEY_PACKAGE_LOW_WATER || !has_last_resort || outdated {
            self.upload(store, me, !has_last_resort || outdated, fx)?;
        }
        Ok(())
    }

    /// The relay says the stock is low. At zero it is handing out the
    /// last-resort KeyPackage: replace that too, so it is not reused for
    /// long.
    pub fn low(
        &mut self,
        store: &dyn ClientStore,
        me: &Me,
        stock: u32,
        fx: &mut Effects,
    ) -> Result<()> {
        self.upload(store, me, stock == 0, fx)
    }

    /// A new certificate: the relay withdrew the KeyPackages carrying the
    /// old one.
    pub fn renewed(&mut self, store: &dyn ClientStore, me: &Me, fx: &mut Effects) -> Result<()> {
        self.uploading = false;
        self.upload(store, me, true, fx)
    }

    /// The connection dropped: an upload in flight is retried on the next
    /// authentication (the relay reports the stock then).
    pub fn disconnected(&mut self) {
        self.uploading = false;
    }

    /// Makes a batch (and a last-resort KeyPackage, if asked) and uploads
    /// it. The private keys are stored first, in one transaction.
    fn upload(
        &mut self,
        store: &dyn ClientStore,
        me: &Me,
        with_last_resort: bool,
        fx: &mut Effects,
    ) -> Result<()> {
        if self.uploading {
            return Ok(());
        }
        let cwk = me.credential_with_key()?;
        let tx = store.transaction()?;
        let provider = store.mls();
        let mut kps = Vec::new();
        for _ in 0..KEY_PACKAGE_BATCH {
            let b = KeyPackage::builder()
                .leaf_node_capabilities(capabilities())
                .build(CIPHERSUITE, &provider, &me.signer, cwk.clone())
                .map_err(CoreError::mls)?;
            kps.push(bytes(mls_bytes(&MlsMessageOut::from(
                b.key_package().clone(),
            ))?));
        }
        let last_resort = if with_last_resort {
            let b = KeyPackage::builder()
                .leaf_node_capabilities(capabilities())
                .mark_as_last_resort()
                .build(CIPHERSUITE, &provider, &me.signer, cwk)
                .map_err(CoreError::mls)?;
            Some(bytes(mls_bytes(&MlsMessageOut::from(
                b.key_package().clone(),
            ))?))
        } else {
            None
        };
        tx.commit()?;
        self.uploading = true;
        fx.request(
            Request::UploadKeyPackages {
                key_packages: kps,
                last_resort: last_resort.clone(),
            },
            Route::KeyPackageUpload {
                with_last_resort: last_resort.is_some(),
            },
        );
        Ok(())
    }

    /// The relay answered an upload.
    pub fn answered(
        &mut self,
        store: &dyn ClientStore,
        with_last_resort: bool,
        result: Result<Response, ProtocolError>,
    ) -> Result<()> {
        self.uploading = false;
        match result {
            Ok(_) if with_last_resort => store.kv_set(KV_FORMAT, &[FORMAT]),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "KeyPackage upload refused");
                Ok(())
            }
        }
    }
}
