//! WebSocket connections owned from the end of the HTTP handshake: frames
//! ([`frame`]), the task that serves one connection ([`connection`]) and the
//! handle its session holds ([`Transport`]).

pub mod connection;
pub mod frame;
mod transport;

pub use connection::{serve, Ended, Upper};
pub use transport::Transport;
