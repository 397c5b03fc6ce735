//! Ctrl-C and SIGTERM: the first signal stops the statement running on the
//! server (through the driver's `Cancel`) and tells the runner to stop at
//! the next safe point, where it rolls back or records where it stopped,
//! releases the lock and says what state the database is in. The caller
//! (the CLI) owns the signals and calls [`Interrupt::raise`]; a second
//! signal is the caller's to act on (it exits at once).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use airlock_driver::Cancel;
use tokio::sync::Notify;

/// A run's interruption flag, shared between the runner and whoever
/// receives the signals. Cloning shares it. The default is never raised.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// The first signal's number, 0 until one arrives.
    signal: AtomicI32,
    /// The canceller of the statement running now, while one runs.
    cancel: Mutex<Option<Arc<dyn Cancel>>>,
    /// Wakes the runner's waits (lock, retry back-off) and whoever waits
    /// for a cancel request to have gone out.
    notify: Notify,
    /// A cancel request is being sent (set under the `cancel` lock).
    sending: AtomicBool,
    /// A cancel request was sent.
    sent: AtomicBool,
    /// Runs of their own (a fleet's members) that a signal here stops too.
    children: Mutex<Vec<Interrupt>>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt").field("signal", &self.raised()).finish()
    }
}

/// SIGINT's number.
pub const SIGINT: i32 = 2;
/// SIGTERM's number.
pub const SIGTERM: i32 = 15;

/// A signal's name for messages.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "Ctrl-C (SIGINT)",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

impl Interrupt {
    /// Records `signal` (the first one counts), cancels the statement the
    /// armed connection is running, and wakes the runner's waits. Returns
    /// what the cancel request did, for the caller to tell.
    pub async fn raise(&self, signal: i32) -> Option<Result<(), airlock_driver::DriverError>> {
        let outcome = self.raise_own(signal).await;
        let children: Vec<Interrupt> = self.0.children.lock().map(|c| c.clone()).unwrap_or_default();
        // Each child stops its own statement; the first failure to cancel is told.
        let mut told = outcome;
        for outcome in futures_util::future::join_all(children.iter().map(|c| c.raise_own(signal))).await {
            if told.as_ref().is_none_or(Result::is_ok) && outcome.as_ref().is_some_and(Result::is_err) {
                told = outcome;
            }
        }
        told
    }

    /// [`Interrupt::raise`] for this run alone, its children left as they are.
    async fn raise_own(&self, signal: i32) -> Option<Result<(), airlock_driver::DriverError>> {
        let _ = self.0.signal.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.0.notify.notify_waiters();
        // Taken under the lock, with `sending` set: `disarm` then knows to
        // wait for this request before the connection runs anything else.
        let cancel = self.0.cancel.lock().ok().and_then(|mut slot| {
            let cancel = slot.take();
            self.0.sending.store(cancel.is_some(), Ordering::SeqCst);
            cancel
        });
        let outcome = match cancel {
            Some(cancel) => {
                let outcome = cancel.cancel().await;
                self.0.sent.store(true, Ordering::SeqCst);
                Some(outcome)
            }
            None => None,
        };
        self.0.sending.store(false, Ordering::SeqCst);
        self.0.notify.notify_waiters();
        outcome
    }

    /// A flag of its own for a run that goes on beside others (one member
    /// of a fleet): it has its own statement to cancel, and is raised when
    /// this one is (at once, if this one already was).
    pub fn child(&self) -> Interrupt {
        let child = Interrupt::default();
        if let Ok(mut children) = self.0.children.lock() {
            children.push(child.clone());
        }
        // After the push: a signal now either finds the child or is seen here.
        if let Some(signal) = self.raised() {
            child.0.signal.store(signal, Ordering::SeqCst);
        }
        child
    }

    /// The signal received, if any.
    pub fn raised(&self) -> Option<i32> {
        match self.0.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// From now until [`Interrupt::disarm`], a signal cancels the statement
    /// this canceller's connection runs.
    pub(crate) fn arm(&self, cancel: Option<Arc<dyn Cancel>>) {
        if let Ok(mut slot) = self.0.cancel.lock() {
            *slot = cancel;
        }
    }

    /// No statement of the runner's runs now: a signal only raises the
    /// flag. If a cancel request is on its way, waits until it has landed,
    /// so that it cannot stop the runner's own bookkeeping that comes next.
    pub(crate) async fn disarm(&self) {
        let sending = match self.0.cancel.lock() {
            Ok(mut slot) => {
                *slot = None;
                self.0.sending.load(Ordering::SeqCst)
            }
            Err(_) => false,
        };
        if sending || self.raised().is_some() {
            self.settled().await;
        }
    }

    /// Where a run may stop before doing more: `Interrupted` with `state`
    /// (what the database is left as) if a signal arrived.
    pub(crate) fn check(&self, state: impl FnOnce() -> String) -> Result<(), crate::error::ExecError> {
        match self.raised() {
            Some(signal) => Err(crate::error::ExecError::Interrupted { signal, state: state(), applied: Vec::new() }),
            None => Ok(()),
        }
    }

    /// Runs `work` (a statement or check on the connection `cancel` stops)
    /// with that canceller armed: a signal meanwhile stops it on the server;
    /// once it returns, no cancel request can land on what comes next.
    pub(crate) async fn cancellable<T>(
        &self,
        cancel: Option<Arc<dyn Cancel>>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        self.arm(cancel);
        let out = work.await;
        self.disarm().await;
        out
    }

    /// Returns once a signal arrives (never, if none does).
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.raised().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `duration`, or until a signal arrives if one does first.
    pub(crate) async fn sleep(&self, duration: std::time::Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.wait() => {}
        }
    }

    /// After a signal: returns once the cancel request (if any) has been
    /// sent and had a moment to land. At most 5 s.
    async fn settled(&self) {
        let wait = async {
            loop {
                let notified = self.0.notify.notified();
                if !self.0.sending.load(Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), wait).await;
        if self.0.sent.load(Ordering::SeqCst) {
            // A cancel request reaches PostgreSQL through a connection of
            // its own, and the backend acts on it a moment later.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
