//! Work over a long list on a few threads, its results taken in order: for
//! the costly per-migration steps of a long history (reading the files,
//! PostgreSQL's parser), which are independent of each other.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most this many threads: the work is short and the machines small.
const MAX_THREADS: usize = 4;

/// Runs `work` on every item and hands each result to `each` with its index,
/// in the items' order, each as soon as it and every one before it are done
/// (so `each` may overlap the work still running). With fewer than `min`
/// items, or one core, all on the calling thread. A panic in `work` is
/// raised again here, never a result left out.
pub fn in_order<T: Sync, R: Send>(
    items: &[T],
    min: usize,
    work: impl Fn(&T) -> R + Sync,
    mut each: impl FnMut(usize, R),
) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS);
    if threads < 2 || items.len() < min {
        for (i, item) in items.iter().enumerate() {
            each(i, work(item));
        }
        return;
    }
    // Items are taken a run at a time, so that the threads meet (a wake-up
    // on the channel) a few dozen times, not once an item.
    let run = items.len().div_ceil(threads * 8).clamp(1, 256);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (done, results) = std::sync::mpsc::channel();
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (done, next, work) = (done.clone(), &next, &work);
            workers.push(scope.spawn(move || {
                loop {
                    let start = next.fetch_add(run, Ordering::Relaxed);
                    let Some(chunk) = items.get(start..items.len().min(start + run)).filter(|c| !c.is_empty()) else {
                        break;
                    };
                    if done.send((start, chunk.iter().map(&work).collect::<Vec<R>>())).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(done);
        // Runs arrive nearly in order; the few that come early wait here.
        let mut early = BTreeMap::new();
        let mut want = 0;
        for (start, results) in results {
            early.insert(start, results);
            while let Some(results) = early.remove(&want) {
                for result in results {
                    each(want, result);
                    want += 1;
                }
            }
        }
        // A worker that panicked left its item out: raise its panic, as is.
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// [`in_order`], collected.
pub fn map<T: Sync, R: Send>(items: &[T], min: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let mut out = Vec::with_capacity(items.len());
    in_order(items, min, work, |_, result| out.push(result));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_whatever_the_threads_finish_first() {
        let items: Vec<u64> = (0..500).collect();
        let slow_first = |n: &u64| {
            if *n % 7 == 0 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            n * 2
        };
        let mut seen = Vec::new();
        in_order(&items, 10, slow_first, |i, r| seen.push((i, r)));
        assert_eq!(seen, items.iter().map(|n| (*n as usize, n * 2)).collect::<Vec<_>>());
        assert_eq!(map(&items[..3], 10, |n| n + 1), vec![1, 2, 3], "few items: on this thread");
    }

    #[test]
    #[should_panic(expected = "item 300")]
    fn a_panic_in_the_work_is_raised_again() {
        let items: Vec<u64> = (0..500).collect();
        map(&items, 10, |n| if *n == 300 { panic!("item 300") } else { *n });
    }
}
