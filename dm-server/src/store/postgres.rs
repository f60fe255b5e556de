//! The PostgreSQL store (placeholder until implemented).
use super::*;
pub struct PostgresStore;
impl PostgresStore {
    pub fn open(_url: &str) -> Result<PostgresStore> {
        Err(StoreError::Db("not implemented".into()))
    }
}
