//! The PostgreSQL store (placeholder until implemented).
use super::*;
/// The PostgreSQL store.
pub struct PostgresStore;
impl PostgresStore {
    /// Connects and applies migrations.
    pub fn open(_url: &str) -> Result<PostgresStore> {
        Err(StoreError::Db("not implemented".into()))
    }
}
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn add_device(&self, _: &Device) -> Result<()> {
        unimplemented!()
    }
    fn add_devices(&self, _: &[Device]) -> Result<u64> {
        unimplemented!()
    }
    fn put_device(&self, _: &Device) -> Result<()> {
        unimplemented!()
    }
    fn device(&self, _: &str) -> Result<Option<Device>> {
        unimplemented!()
    }
    fn devices(&self, _: &DeviceQuery) -> Result<Vec<Device>> {
        unimplemented!()
    }
    fn count_devices(&self) -> Result<u64> {
        unimplemented!()
    }
    fn delete_device(&self, _: &str) -> Result<bool> {
        unimplemented!()
    }
    fn queue_commands(&self, _: &[NewCommand], _: Millis) -> Result<Vec<CommandRecord>> {
        unimplemented!()
    }
    fn command(&self, _: i64) -> Result<Option<CommandRecord>> {
        unimplemented!()
    }
    fn commands(&self, _: &CommandQuery) -> Result<Vec<CommandRecord>> {
        unimplemented!()
    }
    fn pending_commands(&self, _: &str, _: usize) -> Result<Vec<CommandRecord>> {
        unimplemented!()
    }
    fn cancel_command(&self, _: i64, _: Millis) -> Result<Option<CommandRecord>> {
        unimplemented!()
    }
    fn session(&self, _: &str) -> Result<Option<SessionRecord>> {
        unimplemented!()
    }
    fn active_session(&self, _: &str, _: &str) -> Result<Option<SessionRecord>> {
        unimplemented!()
    }
    fn sessions(&self, _: &SessionQuery) -> Result<Vec<SessionRecord>> {
        unimplemented!()
    }
    fn commit(&self, _: &Commit) -> Result<()> {
        unimplemented!()
    }
    fn expire_sessions(&self, _: Millis, _: u32, _: Millis) -> Result<Vec<String>> {
        unimplemented!()
    }
    fn events(&self, _: &str, _: usize) -> Result<Vec<DeviceEvent>> {
        unimplemented!()
    }
    fn add_notification(&self, _: &str, _: u16, _: &[u8], _: Millis) -> Result<Notification> {
        unimplemented!()
    }
    fn take_notification(&self, _: &str, _: Millis) -> Result<Option<Notification>> {
        unimplemented!()
    }
    fn notifications(&self, _: &str, _: usize) -> Result<Vec<Notification>> {
        unimplemented!()
    }
    fn add_token(&self, _: &ApiToken) -> Result<()> {
        unimplemented!()
    }
    fn token_by_secret(&self, _: &str) -> Result<Option<ApiToken>> {
        unimplemented!()
    }
    fn tokens(&self) -> Result<Vec<ApiToken>> {
        unimplemented!()
    }
    fn delete_token(&self, _: &str) -> Result<bool> {
        unimplemented!()
    }
}
