//! Linking a new device with its history ([`crate::link`], protocol
//! §14.12): the new device offers and waits; the existing device answers,
//! and once the person has typed the digits the new device shows, seals
//! its history under the agreed key and sends it through the relay as a
//! blob for the user's own devices (uploaded and fetched in pieces, each
//! resumed where it broke off); the new device opens it and takes it in.

use std::time::{Duration, Instant};

use cascade_protocol::frames::LinkSlot;
use cascade_protocol::DeviceId;
use zeroize::Zeroizing;

use super::Client;
use crate::attachments;
use crate::engine::Answer;
use crate::error::{CoreError, InvalidInput, Result};
use crate::link::{self, Agreed, LinkError, Ready, Share};
use crate::store::history::{HistoryArchive, Imported};

/// How often a waiting device asks the relay about its link session.
const POLL: Duration = Duration::from_millis(500);

/// Where a link on this device stands.
pub(crate) enum LinkState {
    /// The new device offered; it waits for the answer.
    Offered {
        code: String,
        offer: Vec<u8>,
        share: Share,
    },
    /// The new device has the answer and shows the digits; it waits for
    /// the history.
    Agreed {
        code: String,
        key: Zeroizing<[u8; 32]>,
    },
    /// The existing device answered; it waits for the person to type the
    /// new device's digits.
    Answered { code: String, agreed: Agreed },
}

/// What the new device shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOffer {
    /// The code to type on the other device (`1234 5678`).
    pub code: String,
    /// The same, with a commitment to this device's key, for a QR code.
    pub qr: String,
}

/// The other device of a link, verified, and the digits both show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPeer {
    /// The other device.
    pub device_id: DeviceId,
    /// The user's name, as the device's certificate gives it.
    pub display_name: String,
    /// The digits both devices show (`123 456`).
    pub digits: String,
}

/// What the existing device sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSent {
    /// Conversations.
    pub conversations: usize,
    /// Messages.
    pub messages: usize,
    /// Octets of the sealed history.
    pub bytes: u64,
}

fn file_error(e: impl std::fmt::Display) -> CoreError {
    InvalidInput::File(e.to_string()).into()
}

fn refused(answer: Option<Answer>) -> CoreError {
    match answer {
        Some(Answer::Refused(e)) => CoreError::Relay(e),
        Some(_) | None => CoreError::Offline,
    }
}

impl Client {
    fn link_state(&self) -> std::sync::MutexGuard<'_, Option<LinkState>> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn link_write(&self, code: &str, slot: LinkSlot, payload: Vec<u8>) -> Result<()> {
        let code = code.to_owned();
        match self
            .query(move |e, _| Ok(e.link_put(&code, slot, payload)))
            .await?
        {
            Some(Answer::LinkStored) => Ok(()),
            other => Err(refused(other)),
        }
    }

    async fn link_read(&self, code: &str, slot: LinkSlot) -> Result<Option<Vec<u8>>> {
        let code = code.to_owned();
        match self.query(move |e, _| Ok(e.link_get(&code, slot))).await? {
            Some(Answer::LinkSlot(payload)) => Ok(payload),
            other => Err(refused(other)),
        }
    }

    /// Waits until the slot is written, asking every [`POLL`].
    async fn link_await(&self, code: &str, slot: LinkSlot, timeout: Duration) -> Result<Vec<u8>> {
        let until = Instant::now() + timeout;
        loop {
            match self.link_read(code, slot).await {
                Ok(Some(payload)) => return Ok(payload),
                Ok(None) | Err(CoreError::Offline | CoreError::Timeout) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= until {
                return Err(LinkError::TimedOut.into());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// On the **new** device: starts a link, returning the code to show
    /// (and the QR payload). Needs the relay; a link started earlier on
    /// this device is dropped.
    pub async fn link_start(&self) -> Result<LinkOffer> {
        let share = Share::new();
        let code = link::new_code();
        let public = share.public();
        let c = code.clone();
        let offer = self.call(move |e, _| e.link_offer(&c, public)).await?;
        self.link_write(&code, LinkSlot::Offer, offer.clone())
            .await?;
        let shown = LinkOffer {
            code: link::shown_code(&code),
            qr: link::qr_payload(&code, &offer),
        };
        *self.link_state() = Some(LinkState::Offered { code, offer, share });
        Ok(shown)
    }

    /// On the **new** device: waits (at most `timeout`) for the other
    /// device to answer, checks it is one of this user's, and returns it
    /// with the digits to show, which the person types there.
    pub async fn link_wait(&self, timeout: Duration) -> Result<LinkPeer> {
        let code = match &*self.link_state() {
            Some(LinkState::Offered { code, .. }) => code.clone(),
            _ => return Err(LinkError::NotStarted.into()),
        };
        let answer = self.link_await(&code, LinkSlot::Answer, timeout).await?;
        let Some(LinkState::Offered { code, offer, share }) = self.link_state().take() else {
            return Err(LinkError::NotStarted.into());
        };
        let (o, a) = (offer.clone(), answer.clone());
        let (checked, peer) = self
            .call(move |e, now| e.link_check_answer(&o, &a, now))
            .await?;
        let agreed = share.agree(&checked.share, &offer, &answer)?;
        let shown = LinkPeer {
            device_id: checked.device_id,
            display_name: peer.claims.display_name,
            digits: agreed.digits.clone(),
        };
        *self.link_state() = Some(LinkState::Agreed {
            code,
            key: agreed.key,
        });
        Ok(shown)
    }

    /// On the **new** device: waits (at most `timeout`) for the history
    /// the other device sends once the person typed the digits there,
    /// fetches it, opens it with the agreed key and takes it in. The
    /// device then joins the conversations by itself.
    pub async fn link_receive(&self, timeout: Duration) -> Result<Imported> {
        let code = match &*self.link_state() {
            Some(LinkState::Agreed { code, .. }) => code.clone(),
            _ => return Err(LinkError::NotStarted.into()),
        };
        let ready: Ready = link::decode(&self.link_await(&code, LinkSlot::Ready, timeout).await?)?;
        let digest: [u8; 32] = ready
            .digest
            .as_slice()
            .try_into()
            .map_err(|_| LinkError::Invalid("a digest is 32 octets"))?;
        let incoming = self.data_dir().join("incoming");
        std::fs::create_dir_all(&incoming).map_err(file_error)?;
        let path = incoming.join(format!("link-{}.sealed", hex::encode(digest)));
        self.download_blob(
            || self.query(move |e, _| Ok(e.get_own_blob(digest))),
            &digest,
            ready.size,
            &path,
            |_| {},
        )
        .await?;
        let key = match &*self.link_state() {
            Some(LinkState::Agreed { key, .. }) => key.clone(),
            _ => return Err(LinkError::NotStarted.into()),
        };
        let p = path.clone();
        let opened = tokio::task::spawn_blocking(move || -> Result<HistoryArchive> {
            let f = std::io::BufReader::new(std::fs::File::open(&p).map_err(file_error)?);
            let mut plain = Zeroizing::new(Vec::new());
            attachments::open(f, &mut *plain, &key, &digest, |_| {})
                .map_err(|_| LinkError::NotOpened)?;
            Ok(link::decode(&plain)?)
        })
        .await
        .map_err(|_| self.closed())?;
        let _ = std::fs::remove_file(&path);
        let archive = opened?;
        let done = self
            .call(move |e, now| {
                let done = e.import_history(&archive, now)?;
                e.forget_own_blob(digest)?;
                Ok(done)
            })
            .await?;
        *self.link_state() = None;
        Ok(done)
    }

    /// On the **existing** device: answers the new device whose code (or
    /// QR payload) the person entered, once it is verified to be another
    /// device of this user. Returns it with the digits it should show.
    pub async fn link_approve(&self, code_or_qr: &str) -> Result<LinkPeer> {
        let (code, hash) = link::parse_code(code_or_qr)?;
        let offer = self
            .link_read(&code, LinkSlot::Offer)
            .await?
            .ok_or(LinkError::NoSuchCode)?;
        let (o, c) = (offer.clone(), code.clone());
        let (checked, peer) = self
            .call(move |e, now| e.link_check_offer(&o, &c, hash, now))
            .await?;
        let share = Share::new();
        let public = share.public();
        let o = offer.clone();
        let answer = self.call(move |e, _| e.link_answer(&o, public)).await?;
        let agreed = share.agree(&checked.share, &offer, &answer)?;
        self.link_write(&code, LinkSlot::Answer, answer).await?;
        let shown = LinkPeer {
            device_id: checked.device_id,
            display_name: peer.claims.display_name,
            digits: agreed.digits.clone(),
        };
        *self.link_state() = Some(LinkState::Answered { code, agreed });
        Ok(shown)
    }

    /// On the **existing** device: if `digits` are the ones the new device
    /// shows, seals this device's history under the agreed key and sends
    /// it. Wrong digits send nothing and end the link.
    pub async fn link_send(&self, digits: &str) -> Result<LinkSent> {
        let (code, key) = {
            let mut state = self.link_state();
            match state.take() {
                Some(LinkState::Answered { code, agreed }) => {
                    if !link::same_digits(digits, &agreed.digits) {
                        return Err(LinkError::WrongDigits.into());
                    }
                    (code, agreed.key)
                }
                other => {
                    *state = other;
                    return Err(LinkError::NotStarted.into());
                }
            }
        };
        let archive = self.call(|e, _| e.export_history(true)).await?;
        let (conversations, messages) = (archive.conversations.len(), archive.messages());
        let outgoing = self.data_dir().join("outgoing");
        std::fs::create_dir_all(&outgoing).map_err(file_error)?;
        let path = outgoing.join(format!(
            "link-{}.sealed",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let target = path.clone();
        let sealed =
            tokio::task::spawn_blocking(move || -> std::io::Result<attachments::Sealed> {
                let plain = Zeroizing::new(link::encode(&archive));
                let mut dst = std::fs::File::create(&target)?;
                let sealed = attachments::seal_with(key, plain.as_slice(), &mut dst, |_| {})?;
                dst.sync_all()?;
                Ok(sealed)
            })
            .await
            .map_err(|_| self.closed())?
            .map_err(file_error);
        let result = match sealed {
            Ok(s) => {
                let (digest, size) = (s.digest, s.size);
                self.upload_blob(
                    || self.query(move |e, _| Ok(e.post_own_blob(digest, size))),
                    &path,
                    &digest,
                    size,
                    |_| {},
                )
                .await
                .map(|()| (digest, size))
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&path);
        let (digest, size) = result?;
        let ready = Ready {
            digest: serde_bytes::ByteBuf::from(digest.to_vec()),
            size,
        };
        self.link_write(&code, LinkSlot::Ready, link::encode(&ready))
            .await?;
        Ok(LinkSent {
            conversations,
            messages,
            bytes: size,
        })
    }

    /// Drops a link under way on this device (its secrets with it).
    pub fn link_cancel(&self) {
        *self.link_state() = None;
    }
}
