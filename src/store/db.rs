//! Postgres: an r2d2 pool whose connections are only used on the blocking
//! thread pool, and the embedded migrations.

use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{sql_query, Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::StoreError;
use crate::metrics::Metrics;

/// The migrations in `migrations/`, built into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long a request waits for a pooled connection before the store counts as down.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);

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
        self.metrics.db_ops.inc();
        let outcome = actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|err| StoreError::unavailable_by("postgres pool", err))?;
            work(&mut conn)
        })
        .await
        .map_err(|err| StoreError::internal_by("database task failed", err))?;
        if let Err(StoreError::TimedOut(_)) = &outcome {
            self.metrics
                .limits_tripped
                .with_label_values(&["statement_timeout"])
                .inc();
        }
        outcome
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
