//! What is left of the cluster module: the node list (moving out, to the
//! broker's `Nodes`). Room events and session records live in `broker`.

pub mod nodes;
