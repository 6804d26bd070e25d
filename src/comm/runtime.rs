//! The process's share of the runtime: its engine, its configuration, its communicator ids.
//! Every communicator of the process refers to it; the last one gone takes it down.

use std::cell::{RefCell, RefMut};

use super::context::{self, ContextIds};
use super::engine::{Engine, ReqId};
use super::{CommError, Status};
use crate::config::Config;

/// What every communicator of this process shares.
pub(crate) struct Runtime {
    pub engine: RefCell<Engine>,
    pub config: Config,
    pub world_rank: usize,
    pub world_size: usize,
    pub contexts: RefCell<ContextIds>,
    /// Why this job does not use single copy, when it was asked for and is not available.
    pub fallback: Option<String>,
}

impl Runtime {
    pub fn engine(&self) -> RefMut<'_, Engine> {
        self.engine.borrow_mut()
    }

    /// Waits for request `id` to finish, making progress; its result.
    pub fn wait(&self, id: ReqId) -> Result<Status, CommError> {
        self.engine().wait(id)
    }

    /// The result of request `id` if it has finished, after one round of progress.
    pub fn test(&self, id: ReqId) -> Option<Result<Status, CommError>> {
        self.engine().test(id)
    }

    /// One round of progress: moves whatever can move now without waiting; true if anything
    /// did.
    pub fn progress(&self) -> Result<bool, CommError> {
        self.engine().progress()
    }

    /// Whether request `id` is still unfinished.
    pub fn is_pending(&self, id: ReqId) -> bool {
        !self.engine.borrow().is_done(id)
    }

    /// A communicator with id `id` is gone.
    pub fn release_context(&self, id: u32) {
        self.contexts.borrow_mut().release(id);
    }

    /// The ids free on this rank for a new communicator, after reclaiming those that nothing
    /// refers to any more (dropping messages that arrived for them unreceived).
    pub fn free_ids(&self) -> Result<context::Mask, CommError> {
        let mut engine = self.engine();
        let reclaimed = self
            .contexts
            .borrow_mut()
            .reclaim(|id| engine.id_in_use(id));
        for id in reclaimed {
            engine.drop_id(id)?;
        }
        Ok(self.contexts.borrow().free_mask())
    }
}
