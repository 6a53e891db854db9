//! The control socket (`/var/run/leash.sock`, root only, mode 0600): one
//! JSON request per line, one JSON response per line. `protocol` is pure;
//! `server` and `client` are the socket adapters.

pub mod client;
pub mod protocol;
pub mod server;
