//! Postgres: an r2d2 pool whose connections are only used on the blocking
//! thread pool, and the embedded migrations.

use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{sql_query, Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::StoreError;
use crate::metrics::Metrics;

/// The migrations in `migrations/`, built into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long a request waits for a pooled connection before the store counts as down.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection that a writer keeps from one transaction to the
/// next (see [`Db::transaction_kept`]).
pub type Kept = PooledConnection<ConnectionManager<PgConnection>>;

/// A handle on Postgres; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<PgConnection>>,
    metrics: Metrics,
}

impl Db {
    /// Makes the pool without connecting, so a node starts (and says it is
    /// not ready) while Postgres is down. Every statement on its connections
    /// is cancelled after `statement_timeout`, so that no request holds a
    /// connection for long.
    pub fn new(
        url: &str,
        size: u32,
        statement_timeout: Duration,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let pool = Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(CONNECTION_TIMEOUT)
            .connection_customizer(Box::new(StatementTimeout(
                statement_timeout.as_millis() as u64
            )))
            .build_unchecked(ConnectionManager::new(url));
        Ok(Db { pool, metrics })
    }

    /// Runs `work` with a connection on the blocking pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let outcome = self
            .blocking(move || {
                let mut conn = pool
                    .get()
                    .map_err(|err| StoreError::unavailable_by("postgres pool", err))?;
                work(&mut conn)
            })
            .await
            .and_then(|outcome| outcome);
        self.count_timeout(&outcome);
        outcome
    }

    /// Runs `work` in a transaction on `kept`, the connection of the
    /// caller's last transaction, or else on one from the pool; gives back
    /// the connection to keep once the transaction committed. A writer
    /// keeps its connection so that a batch costs no checkout, whose check
    /// is a round trip (`SELECT 1`). A kept connection that cannot even
    /// `BEGIN` (Postgres restarted meanwhile) is dropped and `work` runs on
    /// a fresh one: nothing of the transaction reached Postgres, so running
    /// it is safe. Once it began, a failure is answered and the connection
    /// dropped, never tried again (a lost `COMMIT` may have committed).
    pub async fn transaction_kept<T, F>(
        &self,
        kept: Option<Kept>,
        work: F,
    ) -> (Option<Kept>, Result<T, StoreError>)
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let outcome = self
            .blocking(move || transaction_kept(&pool, kept, work))
            .await;
        let (kept, outcome) = match outcome {
            Ok((kept, outcome)) => (kept, outcome),
            Err(err) => (None, Err(err)),
        };
        self.count_timeout(&outcome);
        (kept, outcome)
    }

    /// Runs `work` on the blocking pool, counted as one operation.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.metrics.db_ops.inc();
        actix_web::rt::task::spawn_blocking(work)
            .await
            .map_err(|err| StoreError::internal_by("database task failed", err))
    }

    /// Counts a statement that ran past `statement_timeout`.
    fn count_timeout<T>(&self, outcome: &Result<T, StoreError>) {
        if let Err(StoreError::TimedOut(_)) = outcome {
            self.metrics
                .limits_tripped
                .with_label_values(&["statement_timeout"])
                .inc();
        }
    }

    /// Whether Postgres answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await
    }
}

/// [`Db::transaction_kept`] on the blocking pool.
fn transaction_kept<T, F>(
    pool: &Pool<ConnectionManager<PgConnection>>,
    kept: Option<Kept>,
    work: F,
) -> (Option<Kept>, Result<T, StoreError>)
where
    F: FnOnce(&mut PgConnection) -> Result<T, StoreError>,
{
    // Taken when the transaction began; still here if `BEGIN` failed.
    let mut work = Some(work);
    if let Some(mut conn) = kept {
        let outcome = in_transaction(&mut conn, &mut work);
        if work.is_none() {
            return settle(conn, outcome);
        }
        if let Err(err) = &outcome {
            log::info!("a kept Postgres connection is gone ({err}); taking another");
        }
    }
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(err) => return (None, Err(StoreError::unavailable_by("postgres pool", err))),
    };
    let outcome = in_transaction(&mut conn, &mut work);
    settle(conn, outcome)
}

/// Runs `work`, if it is still there, in a transaction on `conn`.
fn in_transaction<T, F>(conn: &mut PgConnection, work: &mut Option<F>) -> Result<T, StoreError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, StoreError>,
{
    conn.transaction(|conn| match work.take() {
        Some(work) => work(conn),
        None => Err(StoreError::internal("a transaction's work ran twice")),
    })
}

/// The connection to keep after a transaction: only one that committed.
fn settle<T>(conn: Kept, outcome: Result<T, StoreError>) -> (Option<Kept>, Result<T, StoreError>) {
    match outcome {
        Ok(value) => (Some(conn), Ok(value)),
        Err(err) => (None, Err(err)),
    }
}

/// What Postgres says of a statement it cancelled for `statement_timeout`.
pub const TIMED_OUT: &str = "canceling statement due to statement timeout";

/// Sets `statement_timeout` (ms) on each new pooled connection.
#[derive(Debug)]
struct StatementTimeout(u64);

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for StatementTimeout {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        sql_query(format!("SET statement_timeout = {}", self.0))
            .execute(conn)
            .map(|_| ())
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Applies pending migrations; returns the names of those applied.
pub fn migrate(url: &str) -> Result<Vec<String>, StoreError> {
    let mut conn =
        PgConnection::establish(url).map_err(|err| StoreError::unavailable_by("postgres", err))?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|err| StoreError::internal_by("migration failed", err))?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// Reverts every applied migration; used by tests that check `down.sql`.
pub fn revert_all(url: &str) -> Result<usize, StoreError> {
    let mut conn =
        PgConnection::establish(url).map_err(|err| StoreError::unavailable_by("postgres", err))?;
    let reverted = conn
        .revert_all_migrations(MIGRATIONS)
        .map_err(|err| StoreError::internal_by("revert failed", err))?;
    Ok(reverted.len())
}
