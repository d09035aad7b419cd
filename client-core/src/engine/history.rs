//! A device's history out of and into the engine: for an encrypted backup
//! ([`crate::backup`]) and for a linked device. What the
//! archive holds and how it is put in is in [`crate::store::history`].

use crate::engine::outbox::Op;
use crate::engine::{Engine, Event};
use crate::error::Result;
use crate::store::history::{self, HistoryArchive, Imported};
use crate::store::{ClientStore, ConversationState, Transactions};

impl<S: ClientStore> Engine<S> {
    /// This device's history. `disappearing`: with the messages that will
    /// disappear (for a linked device, which keeps their timers; never in
    /// a backup, which would outlive them).
    pub fn export_history(&self, disappearing: bool) -> Result<HistoryArchive> {
        self.store.export_history(disappearing)
    }

    /// Puts an archive of this user's history into this device, all or
    /// nothing. A conversation the user was in when the archive was made
    /// and this device is not yet in is joined (by external commit, as a
    /// new device joins); one they had left is kept to read.
    pub fn import_history(&mut self, archive: &HistoryArchive, now: u64) -> Result<Imported> {
        history::validate(archive)?;
        let mut done = Imported::default();
        let mut touched = Vec::new();
        let tx = self.store.transaction()?;
        for c in &archive.conversations {
            let state = if c.member {
                ConversationState::Joining
            } else {
                ConversationState::Left
            };
            let (new, messages) = self.store.import_conversation(c, state)?;
            let group_id = history::group_id(c)?;
            if new {
                done.conversations += 1;
                if c.member {
                    Op::JoinExternal {
                        group_id,
                        rejoin: false,
                    }
                    .queue(&self.store)?;
                }
            }
            done.messages += messages;
            touched.push(group_id);
        }
        tx.commit()?;
        self.events
            .extend(touched.into_iter().map(Event::ConversationUpdated));
        self.drive(now)?;
        Ok(done)
    }
}
