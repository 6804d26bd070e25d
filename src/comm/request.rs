//! Non-blocking requests and the scopes that keep their buffers alive.
//!
//! A request lends its buffer to the engine (and, for single copy, to the peer's kernel calls).
//! Its lifetime `'s` is its scope's, so the buffer stays borrowed until the scope ends, and the
//! scope does not end before every request it issued has finished: it waits for them. A request
//! dropped without `wait` is waited for on the spot. So a peer never reads or writes memory that
//! has been freed or handed back to the program.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

use super::{CommError, Status, World};

/// Where non-blocking operations live; see [`scope`].
///
/// `'s` is the scope's own lifetime, `'env` that of everything it may borrow: buffers made
/// before [`scope`] is called outlive it and can be lent to requests.
pub struct Scope<'s, 'env: 's> {
    issued: RefCell<Vec<(World, u64)>>,
    _scope: PhantomData<Cell<&'s mut &'s ()>>,
    _env: PhantomData<Cell<&'env mut &'env ()>>,
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("issued", &self.issued.borrow().len())
            .finish()
    }
}

impl<'s> Scope<'s, '_> {
    pub(crate) fn register(&'s self, world: World, id: u64) -> Request<'s> {
        self.issued.borrow_mut().push((world.clone(), id));
        Request {
            world,
            id,
            finished: false,
            _scope: PhantomData,
        }
    }
}

impl Scope<'_, '_> {
    /// Waits for every request issued in this scope that is still unfinished.
    fn finish_all(&self) {
        let issued: Vec<(World, u64)> = self.issued.borrow_mut().drain(..).collect();
        for (world, id) in issued {
            if world.is_pending(id)
                && let Err(e) = world.wait(id)
            {
                tracing::warn!("a request finished with an error nobody collected: {e}");
            }
        }
    }
}

/// Runs `f` with a scope for non-blocking operations; returns after every request issued in it
/// has finished.
///
/// ```no_run
/// let universe = onecopy::initialize().expect("run me with `onecopy run`");
/// let world = universe.world();
/// let data = [1.0f64; 1024];
/// let mut back = [0.0f64; 1024];
/// onecopy::request::scope(|scope| -> Result<(), onecopy::CommError> {
///     let peer = world.process_at_rank(1 - world.rank());
///     let sent = peer.immediate_send(scope, &data)?;
///     let received = peer.immediate_receive_into(scope, &mut back)?;
///     sent.wait()?;
///     received.wait()?;
///     Ok(())
/// })
/// .expect("exchange");
/// ```
pub fn scope<'env, R>(f: impl for<'s> FnOnce(&'s Scope<'s, 'env>) -> R) -> R {
    let scope = Scope {
        issued: RefCell::new(Vec::new()),
        _scope: PhantomData,
        _env: PhantomData,
    };
    // Even if `f` panics, the buffers it lent stay untouched until every request has finished.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&scope)));
    scope.finish_all();
    match result {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A non-blocking operation in flight. Wait for it with [`Request::wait`]; dropping it waits too.
#[must_use = "a request must be waited on; dropping it blocks until it finishes"]
pub struct Request<'s> {
    world: World,
    id: u64,
    finished: bool,
    _scope: PhantomData<&'s ()>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("id", &self.id).finish()
    }
}

impl Request<'_> {
    /// Blocks until the operation finishes.
    pub fn wait(mut self) -> Result<Status, CommError> {
        self.finished = true;
        self.world.wait(self.id)
    }

    /// The result if the operation has finished, or the request back if not.
    pub fn test(mut self) -> Result<Result<Status, CommError>, Self> {
        match self.world.test(self.id) {
            Some(result) => {
                self.finished = true;
                Ok(result)
            }
            None => Err(self),
        }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = self.world.wait(self.id)
        {
            tracing::warn!("a dropped request finished with an error: {e}");
        }
    }
}
