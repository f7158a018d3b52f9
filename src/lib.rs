//! souk: real-time coordination for online marketplaces over Socket.IO v5.
//!
//! Data flows: a frame arrives at a [`session`], is decoded by [`protocol`],
//! authorized with [`auth`] and data from the [`store`], goes to a room actor
//! in [`rooms`], and fans out as one pre-encoded frame. The marketplace
//! backend talks to the [`api`].

pub mod api;
pub mod auction;
pub mod auth;
pub mod beacon;
pub mod broker;
pub mod cors;
pub mod domain;
pub mod engine;
pub mod error;
pub mod handlers;
pub mod ids;
pub mod ingest;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod protocol;
pub mod rooms;
pub mod session;
pub mod settings;
pub mod state;
pub mod store;
pub mod time;
pub mod timers;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, AsyncContext};
use actix_http::{HttpService, KeepAlive, Protocol};
use actix_service::map_config;
use actix_service::Service;
use actix_service::{fn_factory, ServiceFactory};
use actix_web::dev::{fn_service, AppConfig, Server, ServerHandle};
use actix_web::rt::net::TcpStream;
use actix_web::{web, App};

use crate::broker::Events;
use crate::rooms::registry::ShutdownAll;
use crate::rooms::Registry;
use crate::settings::Settings;
use crate::state::AppState;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] auth::KeyError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error(transparent)]
    OnlyNode(#[from] broker::memory::OnlyNodeError),
}

/// A node, bound and ready to run.
pub struct Application {
    server: Server,
    address: SocketAddr,
    state: web::Data<AppState>,
    _closer: actix::Addr<auction::closer::AuctionCloser>,
    beacon: actix::Addr<beacon::NodeBeacon>,
    outbox: broker::outbox::Relay,
    ingest: Option<ingest::Reader>,
    room_threads: RoomThreads,
    /// Held for the node's life on the memory broker: no second node.
    only_node: Option<broker::memory::OnlyNode>,
}

/// The threads room actors run on; stopped when the node is dropped.
struct RoomThreads(Vec<Arbiter>);

impl Drop for RoomThreads {
    fn drop(&mut self) {
        for arbiter in &self.0 {
            arbiter.stop();
        }
    }
}

impl Application {
    /// Binds the listener (port 0 picks one) and builds the node's actors.
    /// Call inside an actix system.
    pub fn build(mut settings: Settings) -> Result<Self, StartError> {
        settings.check_for_serving()?;
        let only_node = match settings.memory_broker() {
            true => Some(broker::memory::OnlyNode::take(&settings.database_url)?),
            false => None,
        };
        if settings.max_connections == 0 {
            settings.max_connections = ops::connection_cap(ops::soft_limit());
        }
        log::info!(
            "accepting up to {} Socket.IO connections",
            settings.max_connections
        );
        let metrics = metrics::Metrics::new()?;
        metrics.expose_known(protocol::events::KNOWN_EVENTS, session::reason::ALL);
        ops::FdWatch::new(metrics.clone()).start();
        let auth = auth::Authenticator::new(&settings.jwt, settings.dev)?;
        let db = store::Db::new(
            &settings.database_url,
            settings.db_pool_size,
            settings.quotas.db_statement_timeout,
            metrics.clone(),
        )?;
        // SOUK_REDIS_URL=memory: this node alone, with no Redis.
        let broker = match settings.memory_broker() {
            true => broker::Broker::Memory(broker::memory::MemoryBroker::new()),
            false => {
                let redis = broker::redis::Redis::new(
                    &settings.redis_url,
                    &settings.redis_prefix,
                    settings.redis_pool_size,
                    metrics.clone(),
                )?;
                broker::Broker::Redis(std::sync::Arc::new(broker::redis::RedisBroker::new(
                    redis,
                    &settings.redis_url,
                    &settings.node_id,
                )?))
            }
        };
        let threads = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let room_arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let fanout = broker::Fanout::start(
            broker.clone(),
            broker::LogLimits {
                ttl: settings.recovery_window,
                max_len: settings.room_log_len,
            },
        );
        let records =
            broker::records::RecordKeeper::start(broker.clone(), settings.recovery_window);
        let (arbiters, idle) = (
            room_arbiters.iter().map(Arbiter::handle).collect(),
            settings.room_idle,
        );
        let registry_fanout = fanout.clone();
        let registry_metrics = metrics.clone();
        let registry_db = db.clone();
        let max_rooms = settings.quotas.max_rooms_per_socket;
        let registry = Registry::create(|ctx| {
            let parts = rooms::registry::BrokerParts {
                subscription: broker.subscribe(ctx.address().recipient()),
                fanout: registry_fanout,
                records,
                db: registry_db,
            };
            Registry::new(arbiters, idle, registry_metrics, parts).with_max_rooms(max_rooms)
        });
        let presence = rooms::presence::PresenceTracker::new(
            broker.clone(),
            fanout.clone(),
            settings.presence_ttl,
        )
        .start();
        // Each writer has connections of its own, which no read can take:
        // a flood of slow reads cannot stop messages and bids being stored.
        let writer_db = || {
            store::Db::new(
                &settings.database_url,
                settings.quotas.db_writer_pool_size,
                settings.quotas.db_statement_timeout,
                metrics.clone(),
            )
        };
        let messages =
            store::writer::Writer::<store::messages::Messages>::new(writer_db()?).start();
        let bids = store::writer::Writer::<store::bids::Bids>::new(writer_db()?).start();
        let actors = state::Actors {
            registry,
            fanout,
            messages,
            bids,
            presence,
        };

        let listener =
            TcpListener::bind(&settings.http_addr).map_err(|source| StartError::Bind {
                addr: settings.http_addr.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.http_addr.clone(),
            source,
        })?;
        let grace = settings.shutdown_grace;
        let state = web::Data::new(AppState::new(settings, auth, db, broker, actors, metrics));
        let closer = auction::closer::AuctionCloser::new(state.clone().into_inner()).start();
        let outbox = broker::outbox::Relay::start(
            state.db.clone(),
            state.fanout.clone(),
            state.settings.node_id.clone(),
            state.settings.outbox.clone(),
        );
        let beacon = beacon::NodeBeacon::new(
            state.settings.node_id.clone(),
            address.to_string(),
            state.settings.node_heartbeat,
            state.broker.clone(),
            state.registry.clone(),
        )
        .start();
        let ingest = start_ingest(&state);
        let app_state = state.clone();
        // Open sessions by Engine.IO sid (polling and upgrades find them
        // there); the session layer's own, so the state does not know it.
        let directory = web::Data::new(session::Directory::default());
        let user_timeout = state.settings.guard.tcp_user_timeout;
        let server = serve(listener, threads, grace, move || {
            let door = session::SocketIo::new(app_state.clone(), directory.clone());
            let app = App::new()
                .app_data(app_state.clone())
                .app_data(directory.clone())
                .configure(|cfg| api::configure(cfg, &app_state.settings));
            (door, app, user_timeout)
        })
        .map_err(|source| StartError::Bind {
            addr: address.to_string(),
            source,
        })?;
        Ok(Application {
            server,
            address,
            state,
            _closer: closer,
            beacon,
            outbox,
            ingest,
            room_threads: RoomThreads(room_arbiters),
            only_node,
        })
    }

    /// The address the node listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The node's shared state (tests read the registry through it).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// A handle that shuts the node down gracefully.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            server: self.server.handle(),
            state: self.state.clone(),
            beacon: self.beacon.clone(),
            outbox: self.outbox.clone(),
            ingest: self.ingest.clone(),
        }
    }

    /// Serves until stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        log::info!(
            "listening on {} as node {}",
            self.address,
            self.state.settings.node_id
        );
        let Application {
            server,
            room_threads,
            only_node,
            ..
        } = self;
        let result = server.await;
        drop(room_threads);
        drop(only_node);
        result
    }
}

/// Serves HTTP as actix-web's `HttpServer` does (its timeouts and
/// keep-alive), with two differences: a connection whose first request is
/// a long-poll goes to the engine's front door, which serves long-polling
/// itself (keeping none of the HTTP layer's buffers) and hands any other
/// request, with its connection, to actix-http; and a request to upgrade
/// to a WebSocket goes from actix-http's upgrade hook to the engine with
/// its raw connection. `parts` makes each worker's door, App and
/// `TCP_USER_TIMEOUT`.
fn serve<F, D, A>(
    listener: TcpListener,
    workers: usize,
    grace: Duration,
    parts: F,
) -> std::io::Result<Server>
where
    F: Fn() -> (D, App<A>, Option<Duration>) + Send + Clone + 'static,
    D: engine::front::Door,
    A: AppFactory,
{
    let address = listener.local_addr()?;
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(grace.as_secs().max(1))
        .listen("souk", listener, move || {
            // Two HTTP services over one configuration: one for connections
            // that start with the HTTP server (a WebSocket, the API), one for
            // those the front door hands over after serving long-polling.
            let (door, app, user_timeout) = parts();
            let (_, replay_app, _) = parts();
            let straight = http_service::<TcpStream, _, _>(app, door.clone(), address, &shutdown);
            let replayed = http_service::<engine::front::Replay, _, _>(
                replay_app,
                door.clone(),
                address,
                &shutdown,
            );
            let signal = shutdown.clone();
            let stopping: engine::front::Stopping = std::rc::Rc::new(move || {
                let signal = signal.clone();
                Box::pin(async move { signal.notified().await })
            });
            fn_factory(move || {
                let (door, stopping) = (door.clone(), stopping.clone());
                let (straight, replayed) = (straight.new_service(()), replayed.new_service(()));
                async move {
                    let straight = std::rc::Rc::new(straight.await?);
                    let replayed = std::rc::Rc::new(replayed.await?);
                    Ok::<_, ()>(fn_service(move |stream: TcpStream| {
                        session::on_accept(&stream, user_timeout);
                        // Acks are small frames: without this, Nagle holds
                        // each behind the client's delayed ACK (about 35 ms
                        // an ack, measured by souk-bench).
                        if let Err(err) = stream.set_nodelay(true) {
                            log::debug!("cannot set TCP_NODELAY: {err}");
                        }
                        let (door, straight, replayed) =
                            (door.clone(), straight.clone(), replayed.clone());
                        let timing = engine::front::Timing {
                            head: REQUEST_TIMEOUT,
                            stopping: stopping.clone(),
                        };
                        async move {
                            let first = engine::front::first_request::<D>(&stream, REQUEST_TIMEOUT);
                            match first.await {
                                engine::front::First::LongPoll => {
                                    // Its own task: this one is as large as
                                    // actix-http's dispatcher, which a
                                    // poller does not need.
                                    let served =
                                        engine::front::serve(stream, door, replayed, timing);
                                    actix_web::rt::spawn(served);
                                }
                                engine::front::First::Other => {
                                    let peer = stream.peer_addr().ok();
                                    let call = straight.call((stream, Protocol::Http1, peer));
                                    if let Err(err) = call.await {
                                        log::debug!("http: {err:?}");
                                    }
                                }
                                engine::front::First::Nothing => {}
                            }
                            Ok::<_, ()>(())
                        }
                    }))
                }
            })
        })?
        .run();
    Ok(server)
}

/// actix-http over connections of type `T` (fresh sockets, or sockets the
/// front door hands over): actix-web's `HttpServer` settings (timeouts,
/// keep-alive, graceful shutdown), and upgrades handed to `door`.
fn http_service<T, D, A>(
    app: App<A>,
    door: D,
    address: SocketAddr,
    shutdown: &actix_server::GracefulShutdownSignal,
) -> impl ServiceFactory<
    (T, Protocol, Option<SocketAddr>),
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + engine::front::Handed + 'static,
    D: engine::front::Door,
    A: AppFactory,
{
    let upgrades = fn_service(
        move |(request, framed): (
            actix_http::Request,
            actix_codec::Framed<T, actix_http::h1::Codec>,
        )| {
            let door = door.clone();
            async move {
                engine::front::upgrade_in_http(door, request.head(), framed).await;
                Ok::<_, actix_web::Error>(())
            }
        },
    );
    let signal = shutdown.clone();
    HttpService::<T, _, _, _, _>::build()
        .keep_alive(KeepAlive::Timeout(REQUEST_TIMEOUT))
        .client_request_timeout(REQUEST_TIMEOUT)
        .client_disconnect_timeout(Duration::from_secs(1))
        .h1_allow_half_closed(true)
        .local_addr(address)
        .graceful_shutdown_signal(move || {
            let signal = signal.clone();
            async move { signal.notified().await }
        })
        .upgrade(upgrades)
        .finish(map_config(app, |_| AppConfig::default()))
}

/// What `App::new()` makes, as the HTTP service takes it.
trait AppFactory:
    actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    > + 'static
{
}

impl<T> AppFactory for T where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
            InitError = (),
        > + 'static
{
}

/// How long a request head may take (and a kept-alive connection idle).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts reading the backend's queue, unless it is off or the broker has
/// no queue (the memory broker).
fn start_ingest(state: &web::Data<AppState>) -> Option<ingest::Reader> {
    let settings = &state.settings;
    if !settings.ingest.enabled {
        log::info!("ingest: off (SOUK_INGEST)");
        return None;
    }
    let Some(queue) = state.broker.queue() else {
        log::info!("ingest: off: the memory broker has no queue");
        return None;
    };
    let parts = ingest::Parts {
        fanout: state.fanout.clone(),
        metrics: state.metrics.clone(),
        settings: settings.ingest.clone(),
        node: settings.node_id.clone(),
        window: settings.recovery_window,
    };
    Some(ingest::Reader::start(queue, parts))
}

/// Stops a node: tells every connection to reconnect elsewhere, then stops
/// the HTTP server, waiting up to the grace period.
#[derive(Clone)]
pub struct Stopper {
    server: ServerHandle,
    state: web::Data<AppState>,
    beacon: Addr<beacon::NodeBeacon>,
    outbox: broker::outbox::Relay,
    ingest: Option<ingest::Reader>,
}

impl Stopper {
    pub async fn stop(&self) {
        let _ = self.beacon.send(beacon::Leave).await;
        // The batch in hand is delivered; the next reader starts after it.
        if let Some(reader) = &self.ingest {
            reader.stop().await;
        }
        // Notices not yet published are the other nodes' to relay.
        self.outbox.stop();
        let registry = &self.state.registry;
        match registry.send(ShutdownAll).await {
            Ok(count) => log::info!("shutting down: closing {count} connections"),
            Err(err) => log::warn!("shutting down: registry gone: {err}"),
        }
        // Let the connections go, then flush what they left behind: events
        // not yet published and rows not yet written.
        let grace = self.state.settings.shutdown_grace;
        let closed = async {
            while registry
                .send(rooms::registry::GetStats)
                .await
                .is_ok_and(|stats| stats.sessions > 0)
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            self.state.fanout.published().await;
            store::writer::drain(&self.state.messages).await;
            store::writer::drain(&self.state.bids).await;
        };
        if tokio::time::timeout(grace, closed).await.is_err() {
            log::warn!("shutting down: grace period over with work pending");
        }
        self.server.stop(true).await;
    }
}
