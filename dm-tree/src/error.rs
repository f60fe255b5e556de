//! The crate's error type, and the Status code each error gives a command.

use syncml_core::StatusCode;

use crate::uri::UriError;

/// Errors of tree operations, the store, DDF documents and the executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Uri(#[from] UriError),
    #[error("no node at {0}")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}: the parent is a leaf")]
    ParentIsLeaf(String),
    #[error("{0} is not a leaf")]
    NotALeaf(String),
    #[error("{0} has children: it cannot become a leaf")]
    HasChildren(String),
    #[error("the tree cannot commit while a command is executing")]
    Held,
    #[error("{0}: not a valid node name")]
    BadName(String),
    #[error("the root cannot be removed or renamed")]
    RootIsPermanent,
    /// The store's files fail their checks; nothing was written.
    #[error("damaged store: {0}")]
    Damaged(String),
    #[error("store I/O: {0}")]
    Io(String),
    #[error("the store in {0} is open in another process")]
    Locked(String),
    #[error("a commit over 4 GiB")]
    TooLarge,
    #[error("DDF: {0}")]
    Ddf(String),
    /// A state directory without a tree (the tool's hint says how to make one).
    #[error("no tree in {0}: create one with `dm-tree --state {0} init`")]
    NoTree(String),
}

impl Error {
    /// The Status a command failing with this error gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Uri(u) => u.status(),
            Error::NotFound(_) => StatusCode::NotFound,
            Error::AlreadyExists(_) => StatusCode::AlreadyExists,
            Error::ParentIsLeaf(_)
            | Error::NotALeaf(_)
            | Error::HasChildren(_)
            | Error::RootIsPermanent => StatusCode::CommandNotAllowed,
            Error::BadName(_) => StatusCode::BadRequest,
            Error::TooLarge => StatusCode::DeviceFull,
            Error::Damaged(_) | Error::Io(_) | Error::Locked(_) | Error::NoTree(_) => {
                StatusCode::DataStoreFailure
            }
            Error::Ddf(_) | Error::Held => StatusCode::CommandFailed,
        }
    }
}
