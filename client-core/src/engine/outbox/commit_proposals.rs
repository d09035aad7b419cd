//! `CommitProposals`: commit the proposals other members sent (a member's
//! request to leave), so that the group moves on without them.

use cascade_protocol::GroupId;
use openmls::prelude::*;

use crate::engine::commit::{build_commit, Built, Change, ChangeOp};
use crate::engine::groups::Present;
use crate::engine::Ctx;
use crate::error::Result;

/// A commit of pending proposals.
pub(super) struct CommitProposals;

pub(super) fn commit_proposals(op_id: i64, group_id: GroupId) -> ChangeOp<CommitProposals> {
    ChangeOp::new(op_id, group_id, CommitProposals)
}

impl Change for CommitProposals {
    fn build(
        &mut self,
        cx: &Ctx<'_>,
        group: &mut MlsGroup,
        present: &[Present],
    ) -> Result<Option<Built>> {
        // Others' requests to leave; our own (we are leaving) is for them
        // to commit.
        let own = group.own_leaf_index();
        let removes_someone = group.pending_proposals().any(|p| match p.proposal() {
            Proposal::Remove(r) => {
                r.removed() != own && present.iter().any(|m| m.leaf == r.removed())
            }
            _ => false,
        });
        if !removes_someone {
            return Ok(None); // committed already by another member
        }
        // Our own request stays out of the commit (MLS refuses a commit
        // that removes its committer: two members leaving at once would
        // each refuse to commit the other's); it stays stored, so that a
        // commit of it by another member still processes, and is asked
        // again after ours (`leave::ask_again`).
        build_commit(cx, group, |b| b).map(Some)
    }
}
