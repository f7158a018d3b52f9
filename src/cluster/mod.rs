//! How room events leave a node. Today every member is local; cross-node
//! delivery through Redis sharded pub/sub plugs in here.

pub mod fanout;

pub use fanout::Fanout;
