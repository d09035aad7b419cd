//! The engine's side of linking a device ([`crate::link`]): signing this
//! device's part, checking the other device's, and the link session and
//! own-blob requests. The flow itself is [`crate::Client`]'s
//! (`client/link.rs`).

use cascade_protocol::frames::{LinkSlot, Request};
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use openmls_traits::OpenMlsProvider;
use serde_bytes::ByteBuf;

use super::effects::{Effects, QueryKind, Route};
use super::groups::CIPHERSUITE;
use super::{Engine, QueryId};
use crate::error::{CoreError, Result};
use crate::identity::VerifiedMember;
use crate::link::{self, Answer, LinkError, Offer, LINK_VERSION};
use crate::store::ClientStore;

impl<S: ClientStore> Engine<S> {
    fn link_sign(&self, payload: &[u8]) -> Result<ByteBuf> {
        let me = self.me()?;
        me.signer
            .sign(payload)
            .map(ByteBuf::from)
            .map_err(|_| CoreError::Decode("a link signature"))
    }

    /// Checks the other device of a link: its certificate verifies (and is
    /// not revoked), names this user and `device`, which is not this
    /// device, and its key signed `signed`.
    fn link_peer(
        &self,
        certificate: &[u8],
        device: &cascade_protocol::DeviceId,
        signed: &[u8],
        signature: &[u8],
        now: u64,
    ) -> Result<VerifiedMember> {
        let me = self.me()?;
        let peer = self.trust.verify_certificate(certificate, now)?;
        if peer.claims.user != me.identity.user_id {
            return Err(LinkError::OtherUser(peer.claims.user).into());
        }
        if peer.claims.device != *device {
            return Err(LinkError::Invalid("the certificate is another device's").into());
        }
        if *device == me.identity.device_id {
            return Err(LinkError::OwnCode.into());
        }
        self.store
            .mls()
            .crypto()
            .verify_signature(
                CIPHERSUITE.signature_algorithm(),
                signed,
                &peer.signature_key,
                signature,
            )
            .map_err(|_| LinkError::Invalid("its signature"))?;
        Ok(peer)
    }

    /// The new device's offer for `code` with its X25519 `share`.
    pub fn link_offer(&self, code: &str, share: [u8; 32]) -> Result<Vec<u8>> {
        let me = self.me()?;
        let mut offer = Offer {
            version: LINK_VERSION,
            code: code.to_owned(),
            device_id: me.identity.device_id,
            certificate: ByteBuf::from(me.certificate()?.to_vec()),
            share: ByteBuf::from(share.to_vec()),
            signature: ByteBuf::new(),
        };
        offer.signature = self.link_sign(&offer.to_be_signed())?;
        Ok(link::encode(&offer))
    }

    /// The existing device checks an offer read under `code` (and, when
    /// the QR was scanned, against its hash).
    pub fn link_check_offer(
        &self,
        bytes: &[u8],
        code: &str,
        hash: Option<[u8; 32]>,
        now: u64,
    ) -> Result<(Offer, VerifiedMember)> {
        use sha2::Digest as _;
        if hash.is_some_and(|h| h != <[u8; 32]>::from(sha2::Sha256::digest(bytes))) {
            return Err(LinkError::Invalid("it is not the offer the QR code shows").into());
        }
        let offer: Offer = link::decode(bytes)?;
        if offer.version != LINK_VERSION || offer.code != code {
            return Err(LinkError::Invalid("its code").into());
        }
        let peer = self.link_peer(
            &offer.certificate,
            &offer.device_id,
            &offer.to_be_signed(),
            &offer.signature,
            now,
        )?;
        Ok((offer, peer))
    }

    /// The existing device's answer to `offer` with its X25519 `share`.
    pub fn link_answer(&self, offer: &[u8], share: [u8; 32]) -> Result<Vec<u8>> {
        let me = self.me()?;
        let mut answer = Answer {
            version: LINK_VERSION,
            device_id: me.identity.device_id,
            certificate: ByteBuf::from(me.certificate()?.to_vec()),
            share: ByteBuf::from(share.to_vec()),
            signature: ByteBuf::new(),
        };
        answer.signature = self.link_sign(&answer.to_be_signed(offer))?;
        Ok(link::encode(&answer))
    }

    /// The new device checks the answer to its `offer`.
    pub fn link_check_answer(
        &self,
        offer: &[u8],
        bytes: &[u8],
        now: u64,
    ) -> Result<(Answer, VerifiedMember)> {
        let answer: Answer = link::decode(bytes)?;
        if answer.version != LINK_VERSION {
            return Err(LinkError::Invalid("its version").into());
        }
        let peer = self.link_peer(
            &answer.certificate,
            &answer.device_id,
            &answer.to_be_signed(offer),
            &answer.signature,
            now,
        )?;
        Ok((answer, peer))
    }

    /// Writes a slot of this user's link session `code` (`LinkPut`);
    /// `None` when offline.
    pub fn link_put(&mut self, code: &str, slot: LinkSlot, payload: Vec<u8>) -> Option<QueryId> {
        self.query(
            Request::LinkPut {
                code: code.to_owned(),
                slot,
                payload: payload.into(),
            },
            QueryKind::Link,
        )
    }

    /// Reads a slot of this user's link session `code` (`LinkGet`).
    pub fn link_get(&mut self, code: &str, slot: LinkSlot) -> Option<QueryId> {
        self.query(
            Request::LinkGet {
                code: code.to_owned(),
                slot,
            },
            QueryKind::Link,
        )
    }

    /// A ticket to upload a blob for this user's own devices
    /// (`PostOwnBlob`).
    pub fn post_own_blob(&mut self, digest: [u8; 32], size: u64) -> Option<QueryId> {
        self.query(
            Request::PostOwnBlob {
                digest: digest.to_vec().into(),
                size,
            },
            QueryKind::Blob,
        )
    }

    /// A ticket to fetch a blob by its digest (`GetBlob`): one posted for
    /// this user's own devices.
    pub fn get_own_blob(&mut self, digest: [u8; 32]) -> Option<QueryId> {
        self.query(
            Request::GetBlob {
                digest: digest.to_vec().into(),
            },
            QueryKind::Blob,
        )
    }

    /// Deletes a blob this user posted, if connected (`DeleteBlob`; nobody
    /// waits for the answer).
    pub fn forget_own_blob(&mut self, digest: [u8; 32]) -> Result<()> {
        if !self.is_online() {
            return Ok(());
        }
        let mut fx = Effects::default();
        fx.request(
            Request::DeleteBlob {
                digest: digest.to_vec().into(),
            },
            Route::Forget,
        );
        self.apply(fx)
    }
}
