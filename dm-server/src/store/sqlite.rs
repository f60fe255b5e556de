//! The SQLite store (placeholder until implemented).
use super::*;
pub struct SqliteStore;
impl SqliteStore {
    pub fn open(_path: &std::path::Path) -> Result<SqliteStore> {
        Err(StoreError::Db("not implemented".into()))
    }
}
