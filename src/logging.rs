//! Logs as one JSON object a line (contract §9); `RUST_LOG` sets the level.

use std::io::Write;

use chrono::Utc;
use serde_json::json;

/// Installs the JSON logger; `info` unless `RUST_LOG` says otherwise.
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            let line = json!({
                "ts": crate::time::rfc3339(Utc::now()),
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        })
        .init();
}
