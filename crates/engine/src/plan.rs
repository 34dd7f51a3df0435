//! What one engine step will do, decided by the scheduler before the executor runs.

use model::WantLogits;

/// One sequence's share of a step: tokens `start..start + len` of its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub seq_id: u64,
    /// Position in the scheduler's running list while this plan is live.
    pub(crate) index: usize,
    pub start: usize,
    pub len: usize,
    /// Which rows need logits: the last one when the chunk ends the known tokens. A
    /// speculative step would append draft tokens to the chunk and ask for `From(k)`.
    pub logits: WantLogits,
}

/// Copy the first `len` KV slots of block `src` into block `dst` before the forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCopy {
    pub src: u32,
    pub dst: u32,
    pub len: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    pub seqs: Vec<ScheduledSeq>,
    pub copies: Vec<BlockCopy>,
    /// Sequences whose blocks were taken back this step; they wait and recompute.
    pub preempted: Vec<u64>,
    /// Sequences dropped because their receiver went away.
    pub cancelled: Vec<u64>,
    /// The token budget this step was planned under.
    pub budget: usize,
}

impl StepPlan {
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    pub fn tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.len).sum()
    }

    pub fn find(&self, seq_id: u64) -> Option<&ScheduledSeq> {
        self.seqs.iter().find(|s| s.seq_id == seq_id)
    }
}
