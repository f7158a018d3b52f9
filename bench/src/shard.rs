//! The generator's threads: each runs its own single-threaded Tokio
//! runtime with a `LocalSet`, so a connection's task never moves between
//! threads and shares state with its neighbours through `Rc`/`RefCell`.
//! Work is split by index: shard `s` of `n` takes items `s, s+n, s+2n…`.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Runs `work(shard)` on `threads` threads; answers each shard's result
/// once all are done, in shard order.
pub async fn run<T, F, Fut>(threads: usize, work: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + 'static,
{
    start(threads, work)?.await
}

/// Starts `work(shard)` on `threads` threads at once, without waiting to
/// be polled; the future answers each shard's result once all are done.
pub fn start<T, F, Fut>(
    threads: usize,
    work: F,
) -> Result<impl Future<Output = Result<Vec<T>>> + 'static>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + 'static,
{
    let work = Arc::new(work);
    let mut waiting = Vec::with_capacity(threads);
    for shard in 0..threads {
        let work = work.clone();
        let (done, result) = oneshot::channel::<Result<T>>();
        std::thread::Builder::new()
            .name(format!("bench-{shard}"))
            .spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::from)
                    .and_then(|runtime| {
                        let local = tokio::task::LocalSet::new();
                        local.block_on(&runtime, work(shard))
                    });
                let _ = done.send(outcome);
            })?;
        waiting.push(result);
    }
    Ok(async move {
        let mut results = Vec::with_capacity(threads);
        for result in waiting {
            results.push(result.await.map_err(|_| "a generator thread died")??);
        }
        Ok(results)
    })
}

/// The items of `shard` among `total` split over `shards`.
pub fn items(shard: usize, shards: usize, total: usize) -> impl Iterator<Item = usize> {
    (shard..total).step_by(shards.max(1))
}
