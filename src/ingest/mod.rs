//! The backend's queue (§8b, issue 16): entries the backend appends to a
//! stream, delivered as room events and notifications through the same
//! path as the server API, so they are logged, offset and recoverable.
//!
//! One node at a time reads, under a lease every node tries to take: a
//! single reader keeps stream order per target without partitioning, and
//! a node that dies is replaced once its lease runs out; the entries it
//! left pending are taken over before anything newer (docs/DECISIONS.md,
//! "The backend's queue"). Per batch: malformed entries go to the dead
//! letters, idempotency keys are taken, the rest is published and awaited,
//! marked delivered, then acknowledged. Nothing is acknowledged that was
//! not published: a failure anywhere leaves the batch pending, to be read
//! again, and a store outage only pauses the loop.
//!
//! Only [`crate::broker::Ingest`] is used to reach the queue.

pub mod entry;

use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Fanout;
use crate::broker::{Ingest, Mark, Next, QueueEntry};
use crate::metrics::Metrics;
use crate::settings::IngestSettings;
use crate::store::StoreError;

/// How long the reader waits after a store failure before trying again.
const OUTAGE_PAUSE: Duration = Duration::from_millis(500);

/// What the reader needs besides the queue.
pub struct Parts {
    pub fanout: Fanout,
    pub metrics: Metrics,
    pub settings: IngestSettings,
    /// This node's id: its consumer name in the group.
    pub node: String,
    /// How long an idempotency key is remembered: the recovery window.
    pub window: Duration,
}

/// A node's queue reader; cheap to clone.
#[derive(Clone)]
pub struct Reader {
    stop: std::sync::Arc<watch::Sender<bool>>,
    finished: watch::Receiver<bool>,
}

impl Reader {
    /// Starts the reader on the current runtime.
    pub fn start<Q>(queue: Q, parts: Parts) -> Reader
    where
        Q: Ingest + Send + Sync + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let (done, finished) = watch::channel(false);
        actix_web::rt::spawn(async move {
            run(queue, parts, stopped).await;
            let _ = done.send(true);
        });
        Reader {
            stop: std::sync::Arc::new(stop),
            finished,
        }
    }

    /// Stops reading once the batch in hand is delivered (or given up,
    /// pending), and gives the lease up so that another node reads at once.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }
}

/// What one step of the loop came to.
enum Step {
    /// A batch was handled: there may be more at once.
    Busy,
    /// Nothing to read for now.
    Idle,
    /// Another node reads.
    Follow,
}

async fn run<Q: Ingest>(queue: Q, parts: Parts, mut stopped: watch::Receiver<bool>) {
    let holder = format!("{}/{}", parts.node, crate::state::random_id(12));
    let mut leading = false;
    let mut failing = false;
    while !*stopped.borrow() {
        let pause = match step(&queue, &parts, &holder, &mut leading).await {
            Ok(step) => {
                if failing {
                    log::info!("ingest: the queue answers again; reading resumes");
                    failing = false;
                }
                match step {
                    Step::Busy => continue,
                    Step::Idle => parts.settings.poll,
                    Step::Follow => parts.settings.lease / 3,
                }
            }
            Err(err) => {
                if !failing {
                    log::warn!("ingest: reading paused: {err}");
                    failing = true;
                }
                OUTAGE_PAUSE
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stopped.changed() => {}
        }
    }
    if leading {
        if let Err(err) = queue.resign(&holder).await {
            log::warn!("ingest: could not give the lease up: {err}");
        }
    }
}

/// Renews (or takes) the lease, then handles one batch.
async fn step<Q: Ingest>(
    queue: &Q,
    parts: &Parts,
    holder: &str,
    leading: &mut bool,
) -> Result<Step, StoreError> {
    let settings = &parts.settings;
    if !queue.lead(holder, settings.lease).await? {
        if *leading {
            log::warn!("ingest: {} lost the queue's lease", parts.node);
        }
        *leading = false;
        parts.metrics.ingest_lag.set(0);
        return Ok(Step::Follow);
    }
    if !*leading {
        log::info!("ingest: {} reads the backend's queue", parts.node);
        *leading = true;
    }
    let next = queue
        .next(&parts.node, settings.batch, settings.claim_idle)
        .await?;
    let step = match next {
        Next::Entries(entries) if !entries.is_empty() => {
            deliver(queue, parts, entries).await?;
            Step::Busy
        }
        // Nothing pending and nothing new: nothing lags.
        Next::Entries(_) => {
            parts.metrics.ingest_lag.set(0);
            return Ok(Step::Idle);
        }
        Next::Wait => Step::Idle,
    };
    let lag = queue.lag().await?;
    parts
        .metrics
        .ingest_lag
        .set(i64::try_from(lag).unwrap_or(i64::MAX));
    Ok(step)
}

/// Delivers one batch, in order; acknowledges it once published.
async fn deliver<Q: Ingest>(
    queue: &Q,
    parts: &Parts,
    entries: Vec<QueueEntry>,
) -> Result<(), StoreError> {
    let counter = |outcome: &str, n: usize| {
        parts
            .metrics
            .ingest
            .with_label_values(&[outcome])
            .inc_by(n as u64)
    };
    let mut valid = Vec::new();
    for queued in entries {
        match entry::decode(&queued.fields) {
            Ok(entry) => valid.push((queued.entry, entry)),
            Err(reason) => {
                queue.dead(&queued, &reason).await?;
                log::warn!(
                    "ingest: entry {} moved to the dead letters: {reason}",
                    queued.entry
                );
                counter("dead", 1);
            }
        }
    }
    let keys: Vec<(String, String)> = valid
        .iter()
        .map(|(id, entry)| (entry.key.clone(), id.clone()))
        .collect();
    let marks = queue.mark(&keys, parts.window).await?;
    let mut publish = Vec::new();
    let mut published_keys = Vec::new();
    let (mut delivered, mut duplicates) = (0, 0);
    for (((_, entry), key), mark) in valid.iter().zip(&keys).zip(marks) {
        match mark {
            Mark::Fresh | Mark::Retry => {
                publish.push(entry);
                published_keys.push(key.clone());
            }
            // Published by a reader that did not get to acknowledge it.
            Mark::Delivered => delivered += 1,
            Mark::Duplicate => duplicates += 1,
        }
    }
    if !publish.is_empty() {
        parts
            .fanout
            .all_published(|fanout| {
                for entry in &publish {
                    fanout.emit_as(
                        entry::emission(&entry.key),
                        std::slice::from_ref(&entry.room),
                        entry.event.clone(),
                        None,
                    );
                }
            })
            .await?;
        queue.delivered(&published_keys, parts.window).await?;
    }
    delivered += publish.len();
    let ids: Vec<String> = valid.into_iter().map(|(id, _)| id).collect();
    queue.ack(&ids).await?;
    counter("delivered", delivered);
    counter("duplicate", duplicates);
    Ok(())
}
