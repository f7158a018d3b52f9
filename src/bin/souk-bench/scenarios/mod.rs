//! One module per scenario. Each takes the shared options and its own,
//! runs, and answers a report; main prints it and writes the JSON.

pub mod auction;
pub mod chat;
pub mod fanout;

use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::report::Report;

pub async fn run(name: &str, common: &Common, options: Options) -> Result<Report> {
    match name {
        "auction" => auction::run(common, options).await,
        "fanout" => fanout::run(common, options).await,
        "chat" => chat::run(common, options).await,
        other => fail(format!("unknown scenario {other:?} (see --help)")),
    }
}

/// A short random id for this run, so runs against one database never
/// share users or listings.
pub fn run_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric
        .sample_string(&mut rand::rng(), 8)
        .to_lowercase()
}
