//! Helpers shared by the integration tests.

/// The scripted DM server lives in the library (`dm-client demo` runs it too).
pub mod dm {
    #[allow(unused_imports)]
    pub use dm_client::device::demo::DmServer;
}
pub mod http;
