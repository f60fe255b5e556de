//! The reference OMA DM server.
//!
//! ```text
//! http/      hyper + tokio: the DM endpoint, long-poll, admin REST API, /metrics
//! engine/    the sans-IO server session engine: one message in, one reply out,
//!            everything it changes returned as one store commit
//! store/     the storage trait, SQLite (default) and PostgreSQL
//! spec       commands as operators write them (JSON) and their SyncML form
//! ops        the operations the admin API and the CLI share (devices, queues...)
//! firmware/  the firmware repository: update packages, download tokens, deltas,
//!            the version matrix
//! fota/      firmware-update jobs: one device, one package, either protocol
//! campaign/  rollouts over fleets: targets, schedules, waves, retries, thresholds
//! events     the event bus: the event log in the store, streams woken on publish
//! webhooks   events POSTed to configured URLs, in order, with retries
//! record     recorded sessions (`serve --record DIR`)
//! ```
//!
//! The server keeps nothing between requests but its store, so several processes
//! can share one PostgreSQL database and serve one session between them.

pub mod audit;
pub mod campaign;
pub mod config;
pub mod engine;
pub mod events;
pub mod firmware;
pub mod fota;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod presence;
pub mod ratelimit;
pub mod record;
pub mod spec;
pub mod store;
pub mod webhooks;

pub use config::Config;
pub use engine::{DmRequest, DmResponse, Server};
