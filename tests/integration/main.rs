//! souk's integration tests: one binary, each test against a real node on a
//! random port with its own fresh Postgres database and the real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod admin_disputes;
mod api;
mod auction_faults;
mod auction_rules;
mod auctions;
mod authorization;
mod authz_holes;
mod bad_input;
mod bookings;
mod chat;
mod client_types;
mod cluster;
mod connect;
mod dashboards;
mod engine;
mod heartbeat;
mod hostile;
mod hostile_limits;
mod ingest;
mod lifecycle;
mod presence;
mod process;
mod recovery;
mod redis_cluster;
mod rollout;
mod rooms;
mod schema;
mod tokens;
mod transports;
mod user_reads;
mod web;
