//! Latency histograms (HDR, microseconds) and how they are shown.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::error::Result;

/// Latencies from 1 µs to 10 min, three significant digits.
pub struct Latency {
    hist: Histogram<u64>,
}

impl Latency {
    pub fn new() -> Result<Latency> {
        Ok(Latency {
            hist: Histogram::new_with_bounds(1, 600_000_000, 3)?,
        })
    }

    pub fn record(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latency) -> Result<()> {
        self.hist.add(&other.hist)?;
        Ok(())
    }

    fn ms(&self, micros: u64) -> f64 {
        (micros as f64) / 1000.0
    }

    /// p50/p95/p99/max in milliseconds (zeros when empty).
    pub fn summary(&self) -> Summary {
        if self.hist.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.hist.len(),
            p50: self.ms(self.hist.value_at_quantile(0.50)),
            p95: self.ms(self.hist.value_at_quantile(0.95)),
            p99: self.ms(self.hist.value_at_quantile(0.99)),
            max: self.ms(self.hist.max()),
        }
    }
}

#[derive(Default, Clone, Copy)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// `p50 1.2 / p95 3.4 / p99 5.6 / max 7.8 ms`
    pub fn line(&self) -> String {
        if self.count == 0 {
            return "none".into();
        }
        format!(
            "p50 {} / p95 {} / p99 {} / max {} ms",
            fmt_ms(self.p50),
            fmt_ms(self.p95),
            fmt_ms(self.p99),
            fmt_ms(self.max)
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50": round3(self.p50),
            "p95": round3(self.p95),
            "p99": round3(self.p99),
            "max": round3(self.max),
        })
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `x` per second over `secs`, rounded to one decimal.
pub fn per_sec(x: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    ((x as f64) / secs * 10.0).round() / 10.0
}
