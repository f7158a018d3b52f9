//! Prometheus metrics (contract §9), one registry per node so tests can run
//! several nodes in one process.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The `outcome` label values of `souk_events_total`.
pub const OUTCOMES: [&str; 2] = ["ok", "error"];

/// Every metric a node exports; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `souk_connections`: open Socket.IO connections.
    pub connections: IntGauge,
    /// `souk_rooms{kind}`: live rooms on this node.
    pub rooms: IntGaugeVec,
    /// `souk_events_total{event,outcome}`: client events handled.
    pub events: IntCounterVec,
    /// `souk_event_duration_seconds{event}`: time from decode to ack.
    pub event_duration: HistogramVec,
    /// `souk_deliveries_total`: frames handed to connections by rooms.
    pub deliveries: IntCounter,
    /// `souk_deliveries_mailbox_total`: of those, frames that went through
    /// a session's mailbox because no transport could take them directly
    /// (before CONNECT is answered, behind one already in the mailbox).
    pub mailbox_deliveries: IntCounter,
    /// `souk_disconnects_total{reason}`: closed connections by reason.
    pub disconnects: IntCounterVec,
    /// `souk_redis_ops_total`: Redis round trips.
    pub redis_ops: IntCounter,
    /// `souk_db_ops_total`: Postgres units of work.
    pub db_ops: IntCounter,
    /// `souk_bad_frames_total`: frames answered with `bad_request`.
    pub bad_frames: IntCounter,
    /// `process_open_fds`: file descriptors the node holds open.
    pub open_fds: IntGauge,
    /// `process_max_fds`: its open-files limit; at it, connections are refused.
    pub max_fds: IntGauge,
    /// `souk_connections_refused_total`: new connections refused because
    /// the node held `SOUK_MAX_CONNECTIONS`.
    pub refused_connections: IntCounter,
    /// `souk_limits_tripped_total{limit}`: times a bound on one client
    /// tripped (the label names the setting's bound, e.g. `rooms_per_socket`).
    pub limits_tripped: IntCounterVec,
    /// `souk_ingest_total{outcome}`: entries of the backend's queue, by
    /// what became of them (`INGEST_OUTCOMES`).
    pub ingest: IntCounterVec,
    /// `souk_ingest_lag`: entries of the queue not delivered yet, as the
    /// node reading it last saw (0 on the others).
    pub ingest_lag: IntGauge,
}

/// The `outcome` label values of `souk_ingest_total`: published, dropped
/// as a repeat of an idempotency key, moved to the dead letters.
pub const INGEST_OUTCOMES: [&str; 3] = ["delivered", "duplicate", "dead"];

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let connections = IntGauge::new("souk_connections", "Open Socket.IO connections")?;
        let rooms = IntGaugeVec::new(
            Opts::new("souk_rooms", "Live rooms on this node"),
            &["kind"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("souk_events_total", "Client events handled"),
            &["event", "outcome"],
        )?;
        let event_duration = HistogramVec::new(
            HistogramOpts::new(
                "souk_event_duration_seconds",
                "Time from a client event's decode to its answer",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["event"],
        )?;
        let deliveries = IntCounter::new("souk_deliveries_total", "Frames delivered by rooms")?;
        let mailbox_deliveries = IntCounter::new(
            "souk_deliveries_mailbox_total",
            "Frames delivered by rooms through a session's mailbox (no transport to take them)",
        )?;
        let disconnects = IntCounterVec::new(
            Opts::new("souk_disconnects_total", "Closed connections by reason"),
            &["reason"],
        )?;
        let redis_ops = IntCounter::new("souk_redis_ops_total", "Redis round trips")?;
        let db_ops = IntCounter::new("souk_db_ops_total", "Postgres units of work")?;
        let bad_frames =
            IntCounter::new("souk_bad_frames_total", "Frames answered with bad_request")?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(rooms.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(event_duration.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(mailbox_deliveries.clone()))?;
        registry.register(Box::new(disconnects.clone()))?;
        registry.register(Box::new(redis_ops.clone()))?;
        registry.register(Box::new(db_ops.clone()))?;
        let open_fds = IntGauge::new("process_open_fds", "Open file descriptors")?;
        let max_fds = IntGauge::new("process_max_fds", "Open-files limit (soft)")?;
        registry.register(Box::new(bad_frames.clone()))?;
        registry.register(Box::new(open_fds.clone()))?;
        registry.register(Box::new(max_fds.clone()))?;
        let refused_connections = IntCounter::new(
            "souk_connections_refused_total",
            "New connections refused at SOUK_MAX_CONNECTIONS",
        )?;
        registry.register(Box::new(refused_connections.clone()))?;
        let limits_tripped = IntCounterVec::new(
            Opts::new(
                "souk_limits_tripped_total",
                "Times a bound on one client tripped, by bound",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(limits_tripped.clone()))?;
        let ingest = IntCounterVec::new(
            Opts::new(
                "souk_ingest_total",
                "Entries of the backend's queue, by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(ingest.clone()))?;
        for outcome in INGEST_OUTCOMES {
            ingest.with_label_values(&[outcome]);
        }
        let ingest_lag = IntGauge::new(
            "souk_ingest_lag",
            "Entries of the backend's queue not delivered yet",
        )?;
        registry.register(Box::new(ingest_lag.clone()))?;
        Ok(Metrics {
            registry,
            connections,
            rooms,
            events,
            event_duration,
            deliveries,
            mailbox_deliveries,
            disconnects,
            redis_ops,
            db_ops,
            bad_frames,
            open_fds,
            max_fds,
            refused_connections,
            limits_tripped,
            ingest,
            ingest_lag,
        })
    }

    /// Creates the series of every known event (both outcomes) and every
    /// disconnect reason at 0. A series that first appears at 1 shows no
    /// `increase()` or `rate()` to Prometheus, so without this the first slow
    /// consumer or failing event would never reach an alert
    /// (deploy/prometheus/alerts.yml), nor a dashboard panel.
    pub fn expose_known(&self, events: &[&str], disconnect_reasons: &[&str]) {
        for event in events {
            for outcome in OUTCOMES {
                self.events.with_label_values(&[event, outcome]);
            }
        }
        for reason in disconnect_reasons {
            self.disconnects.with_label_values(&[reason]);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_are_served_at_zero_before_anything_happens() {
        let metrics = Metrics::new().unwrap_or_else(|err| panic!("{err}"));
        let before = metrics.render().unwrap_or_default();
        assert!(!before.contains("souk_disconnects_total"), "{before}");
        metrics.expose_known(&["bid:place"], &["slow consumer"]);
        let text = metrics.render().unwrap_or_default();
        for line in [
            r#"souk_events_total{event="bid:place",outcome="ok"} 0"#,
            r#"souk_events_total{event="bid:place",outcome="error"} 0"#,
            r#"souk_disconnects_total{reason="slow consumer"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
