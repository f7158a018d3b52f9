//! `souk-bench`: a load generator that speaks Socket.IO v5 (WebSocket or
//! long-polling transport) and the souk contract's events and server API to any server,
//! runs a scenario, prints a summary table and writes JSON.
//!
//! Layout: `cli` (options), `ws` (the Socket.IO client, the only code that
//! knows frames), `polling` (its long-polling transport), `http` (the server API), `token` (JWTs), `shard` (the
//! generator's threads), `runner` (the life every scenario but `idle`
//! shares: phases, threads, progress, the measured window, the report),
//! `stats` (HDR histograms), `procs` (CPU and RSS from /proc), `progress`,
//! `report`, one module per scenario under `scenarios/`, and `compare`
//! (`souk-bench report DIR...`: the side-by-side tables and charts of
//! `scripts/bench --compare`).

mod cli;
mod compare;
mod error;
mod http;
mod polling;
mod procs;
mod progress;
mod queue;
mod report;
mod runner;
mod scenarios;
mod shard;
mod stats;
mod token;
mod ws;

use std::process::ExitCode;

use cli::Command;
use error::Result;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("souk-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("report") {
        if args.iter().any(|a| a == "--help" || a == "-h") {
            print!("{}", compare::USAGE);
            return Ok(());
        }
        print!("{}", compare::run(&args[1..])?);
        return Ok(());
    }
    match cli::parse(args)? {
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Command::Run {
            scenario,
            common,
            options,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let Some(report) = runtime.block_on(scenarios::run(&scenario, &common, options))?
            else {
                return Ok(());
            };
            println!("{}", report.table());
            if let Some(path) = &common.json {
                report.write_json(path)?;
                eprintln!("souk-bench: wrote {}", path.display());
            }
            Ok(())
        }
    }
}
