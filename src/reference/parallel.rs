//! Splitting independent output rows over the machine's cores.

use std::thread;

/// Calls `work(first_row, chunk)` on contiguous chunks of whole rows of
/// `out` (each `row_len` long), one chunk per available core, in scoped
/// threads. Every row is computed by exactly one call, so the result does
/// not depend on the number of cores.
pub fn split_rows<T, F>(out: &mut [T], row_len: usize, work: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(rows).max(1);
    if threads == 1 {
        work(0, out);
        return;
    }
    let per = rows.div_ceil(threads);
    thread::scope(|s| {
        for (k, chunk) in out.chunks_mut(per * row_len).enumerate() {
            let work = &work;
            s.spawn(move || work(k * per, chunk));
        }
    });
}
