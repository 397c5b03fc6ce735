//! Ctrl-C and SIGTERM during a command that changes the database: the first
//! signal raises the run's `Interrupt` (the runner cancels the statement on
//! the server, rolls back or records where it stopped, releases the lock and
//! exits 130 or 143); a second one exits at once.
//!
//! The signals are watched on a thread of their own with its own runtime:
//! a SQLite statement runs on the runner's thread and holds it, and the
//! cancel request must still go out.

use airlock_exec::{ExecError, Interrupt, SIGINT, SIGTERM, signal_name};
use anstream::eprintln;
use tokio::signal::unix::{SignalKind, signal};

/// Starts watching SIGINT and SIGTERM for `interrupt`. The handlers are in
/// place when this returns.
pub fn watch(interrupt: Interrupt) -> Result<(), ExecError> {
    let failed = |e: std::io::Error| ExecError::Usage(format!("cannot watch for Ctrl-C: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(failed)?;
    let (mut int, mut term) = {
        let _inside = runtime.enter();
        (signal(SignalKind::interrupt()).map_err(failed)?, signal(SignalKind::terminate()).map_err(failed)?)
    };
    std::thread::Builder::new()
        .name("airlock-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let first = tokio::select! {
                    _ = int.recv() => SIGINT,
                    _ = term.recv() => SIGTERM,
                };
                eprintln!(
                    "airlock: {}: stopping the statement running on the server, then rolling back or recording where it stopped (press Ctrl-C again to quit at once)",
                    signal_name(first)
                );
                let cancel = interrupt.raise(first);
                tokio::pin!(cancel);
                let mut cancelled = false;
                loop {
                    tokio::select! {
                        outcome = &mut cancel, if !cancelled => {
                            cancelled = true;
                            if let Some(Err(e)) = outcome {
                                eprintln!("airlock: the cancel request failed ({}); the statement may go on running on the server", e.message);
                            }
                        }
                        _ = int.recv() => std::process::exit(128 + SIGINT),
                        _ = term.recv() => std::process::exit(128 + SIGTERM),
                    }
                }
            })
        })
        .map_err(failed)?;
    Ok(())
}
