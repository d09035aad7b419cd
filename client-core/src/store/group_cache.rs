//! Group states kept in memory between operations.
//!
//! Loading a group's MLS state means decoding its whole ratchet tree from
//! the store: about 200 ms in a group of 10,000 devices, paid by every
//! message sent or read there (`stored_load` in `docs/benchmarks.md`). The
//! store keeps the few groups used last as live `MlsGroup`s instead, and
//! hands one out only while it is known to equal what the database holds:
//!
//! - An instance changed by an operation is kept only when the operation's
//!   transaction commits (it is *staged* until then). A rolled-back
//!   operation may have left the instance ahead of the database (openmls
//!   changes its in-memory state before it writes), so it is dropped, and the
//!   next load decodes the committed state.
//! - An instance only read is kept as it was.
//! - While one instance of a group is out, a second load of that group
//!   decodes its own from the database, and neither is kept afterwards:
//!   only an instance that was the group's last load goes back ([`Ticket`]).
//! - Another connection's commit to the database (a second process on the
//!   same device store) empties the cache: SQLite's `data_version` changes
//!   for this connection whenever another one commits.
//! - Creating, joining or deleting a group's state forgets whatever is kept
//!   of it ([`GroupCache::forget`]).

use std::collections::HashMap;

use cascade_protocol::GroupId;
use openmls::group::MlsGroup;

/// How many groups are kept. A group of 10,000 devices is about 15 MB in
/// memory; most devices use a handful of conversations at a time.
pub const KEPT_GROUPS: usize = 8;

/// Which load of a group an instance came from: it may go back to the
/// cache only if no load of the group came after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    load: u64,
    rollbacks: u64,
}

struct Entry {
    id: GroupId,
    group: MlsGroup,
    ticket: Ticket,
}

/// The kept groups of one store connection.
#[derive(Default)]
pub struct GroupCache {
    /// Groups in step with the committed database, used last at the end.
    kept: Vec<Entry>,
    /// Groups changed in the open transaction, kept if it commits.
    staged: Vec<Entry>,
    /// Loads of each group so far.
    loads: HashMap<GroupId, u64>,
    /// Rollbacks so far: an instance out during one may hold its changes.
    rollbacks: u64,
    /// The connection's `data_version` when `kept` was last checked.
    data_version: Option<i64>,
}

impl GroupCache {
    /// Empties the cache if another connection committed since the last
    /// check (`data_version` as read now).
    pub fn check(&mut self, data_version: i64) {
        if self.data_version != Some(data_version) {
            self.kept.clear();
            self.staged.clear();
            self.data_version = Some(data_version);
        }
    }

    /// Takes the kept (or staged) instance of a group, if any, and the
    /// ticket of this load.
    pub fn take(&mut self, id: &GroupId) -> (Option<MlsGroup>, Ticket) {
        let loads = self.loads.entry(*id).or_default();
        *loads += 1;
        let ticket = Ticket {
            load: *loads,
            rollbacks: self.rollbacks,
        };
        let found = [&mut self.staged, &mut self.kept]
            .into_iter()
            .find_map(|list| {
                let at = list.iter().position(|e| e.id == *id)?;
                Some(list.remove(at).group)
            });
        (found, ticket)
    }

    /// Whether an instance from the load of `ticket` may still be kept: no
    /// load of its group came after it, and nothing rolled back while it was
    /// out.
    fn current(&self, id: &GroupId, ticket: Ticket) -> bool {
        self.loads.get(id) == Some(&ticket.load) && self.rollbacks == ticket.rollbacks
    }

    /// Gives back an instance: kept if it was only read, staged for the
    /// open transaction if it may have changed (dropped if there is none),
    /// dropped either way if it is no longer [`current`](Self::current).
    pub fn give_back(
        &mut self,
        id: GroupId,
        group: MlsGroup,
        ticket: Ticket,
        changed: bool,
        in_transaction: bool,
    ) {
        if !self.current(&id, ticket) {
            return;
        }
        let entry = Entry { id, group, ticket };
        match (changed, in_transaction) {
            (false, _) => self.keep(entry),
            (true, true) => self.staged.push(entry),
            (true, false) => {}
        }
    }

    /// The outermost transaction committed: what it changed is now the
    /// database's state.
    pub fn committed(&mut self) {
        for entry in std::mem::take(&mut self.staged) {
            if self.current(&entry.id, entry.ticket) {
                self.keep(entry);
            }
        }
    }

    /// A transaction (or savepoint) rolled back: what was changed in it may
    /// not match the database.
    pub fn rolled_back(&mut self) {
        self.rollbacks += 1;
        self.staged.clear();
    }

    /// Forgets a group: its state was created, replaced or deleted other
    /// than through a kept instance. An instance of it still out is not
    /// kept when it comes back.
    pub fn forget(&mut self, id: &GroupId) {
        *self.loads.entry(*id).or_default() += 1;
        self.kept.retain(|e| e.id != *id);
        self.staged.retain(|e| e.id != *id);
    }

    fn keep(&mut self, entry: Entry) {
        self.kept.retain(|e| e.id != entry.id);
        self.kept.push(entry);
        if self.kept.len() > KEPT_GROUPS {
            self.kept.remove(0);
        }
    }

    /// How many groups are kept (for tests).
    pub fn kept_len(&self) -> usize {
        self.kept.len()
    }
}
