//! `souk serve` runs a node; `souk migrate` applies migrations and exits;
//! `souk seed-demo` writes the demo marketplace `scripts/dev` shows.

use std::path::PathBuf;
use std::process::ExitCode;

use souk::broker::Auctions;
use souk::ids::ListingId;
use souk::settings::Settings;
use souk::{broker, store, Application};

const USAGE: &str =
    "usage: souk serve [--no-migrate] [--config PATH] | souk migrate [--config PATH] \
     | souk seed-demo [--config PATH]";

fn main() -> ExitCode {
    souk::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut command = None;
    let mut migrate = true;
    let mut config = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "serve" | "migrate" | "seed-demo" if command.is_none() => command = Some(arg.clone()),
            "--no-migrate" => migrate = false,
            "--config" => match rest.next() {
                Some(path) => config = Some(PathBuf::from(path)),
                None => return usage(),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let settings = match Settings::load(config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            log::error!("{err}");
            eprintln!("souk: {err}");
            return ExitCode::from(2);
        }
    };
    match command.as_deref() {
        Some("migrate") => run_migrations(&settings),
        Some("seed-demo") => seed_demo(&settings),
        Some("serve") => {
            if let Err(err) = settings.check_for_serving() {
                log::error!("{err}");
                eprintln!("souk: {err}");
                return ExitCode::from(2);
            }
            if migrate && run_migrations(&settings) != ExitCode::SUCCESS {
                return ExitCode::FAILURE;
            }
            serve(settings)
        }
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn run_migrations(settings: &Settings) -> ExitCode {
    match store::db::migrate(&settings.database_url) {
        Ok(applied) => {
            log::info!("migrations applied: {}", applied.len());
            ExitCode::SUCCESS
        }
        Err(err) => {
            log::error!("cannot migrate: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the demo marketplace, then drops the demo auction's live state in
/// the broker so its next bid starts from the freshly seeded settings.
fn seed_demo(settings: &Settings) -> ExitCode {
    let seeded = store::demo::seed_url(&settings.database_url).and_then(|()| {
        if settings.memory_broker() {
            // The memory broker lives in its node, not here: a node started
            // after seeding rebuilds the auction from Postgres.
            return Ok(());
        }
        actix_web::rt::System::new().block_on(async {
            let metrics = souk::metrics::Metrics::new()
                .map_err(|err| store::StoreError::internal_by("metrics", err))?;
            let redis =
                broker::redis::Redis::new(&settings.redis_url, &settings.redis_prefix, 1, metrics)?;
            let auction = ListingId::parse(store::demo::AUCTION)
                .ok_or_else(|| store::StoreError::internal("the demo auction's id is not valid"))?;
            broker::redis::RedisBroker::new(redis, &settings.redis_url, &settings.node_id)?
                .forget(&auction, &[])
                .await
        })
    });
    match seeded {
        Ok(()) => {
            log::info!(
                "demo marketplace seeded; the auction {} ends in {} minutes",
                store::demo::AUCTION,
                store::demo::AUCTION_RUNS_FOR.num_minutes()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            log::error!("cannot seed the demo marketplace: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings)?;
        let stopper = app.stopper();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            stopper.stop().await;
        });
        app.run_until_stopped().await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    match result {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM received"),
                _ = int.recv() => log::info!("SIGINT received"),
            }
        }
        _ => {
            log::error!("cannot listen for signals; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
