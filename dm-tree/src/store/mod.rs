//! Crash-safe persistence: a snapshot file and a write-ahead log in one directory.
//!
//! - `tree.snap`: the whole tree as Put operations, written to a temporary file,
//!   synced, then renamed over the old one (a rename is atomic), with a CRC-32 over
//!   the file.
//! - `tree.log`: the commits since that snapshot. Each commit is one record
//!   (`marker, length, CRC-32 of the length, CRC-32 of the operations, operations`)
//!   written with a single write and synced before [`FileStore::append`] returns.
//!
//! Both files carry a generation number. Compaction writes snapshot `g+1` and then a
//! fresh log `g+1`; a crash between the two leaves a log of generation `g`, whose
//! commits the new snapshot already holds, so it is ignored. A record cut short at
//! the end of the log (or a tail of zero bytes, a file extended but never written)
//! is a commit the crash interrupted: it was never acknowledged, and is dropped.
//! Anything else that fails its check is damage (a log newer than the snapshot, a
//! missing snapshot beside a log, a bad record that others follow): opening refuses,
//! names the file and the offset, and writes nothing, so the last good state stays
//! on disk for an operator to rescue. Opening itself writes nothing: the dropped tail
//! is cut off and a stale log replaced at the first commit.
//!
//! A lock on `tree.lock` keeps a second process from opening the same store.

mod encode;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::tree::Op;

pub use encode::{decode_ops, encode_ops};

const SNAP: &str = "tree.snap";
const LOG: &str = "tree.log";
const LOCK: &str = "tree.lock";
const SNAP_MAGIC: &[u8; 12] = b"DMTREE-SNAP1";
const LOG_MAGIC: &[u8; 12] = b"DMTREE-LOG-1";
const HEADER: usize = 12 + 8;
/// Starts every log record, so that a zero-filled tail never reads as a record.
const RECORD_MARKER: u8 = 0xA5;
const RECORD_HEAD: usize = 1 + 4 + 4 + 4;
/// The log is folded into a new snapshot past this size (and past the snapshot's).
const COMPACT_AT: u64 = 4 << 20;

/// An open store.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    log: File,
    generation: u64,
    log_len: u64,
    snap_len: u64,
    /// An interrupted commit is to be cut off (at `log_len`) before the next append.
    torn_tail: bool,
    /// The log must be replaced by an empty one of `generation` before the next
    /// append (it is stale, or a compaction wrote the snapshot but not the log).
    fresh_log_due: bool,
    _lock: File,
}

/// What [`inspect`] found in a store directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub generation: u64,
    /// Operations in the snapshot.
    pub snapshot_ops: usize,
    /// Committed records in the log.
    pub log_records: usize,
    /// Bytes of an interrupted commit at the end of the log (ignored at open, cut
    /// off by the next commit).
    pub torn_tail: u64,
}

impl FileStore {
    /// Opens (or creates) the store in `dir`; returns it with the operations that
    /// rebuild the tree: the snapshot's, then each committed record's.
    pub fn open(dir: &Path) -> Result<(FileStore, Vec<Op>), Error> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        lock.try_lock()
            .map_err(|_| Error::Locked(dir.display().to_string()))?;

        let log_path = dir.join(LOG);
        if !dir.join(SNAP).exists() && !log_path.exists() {
            write_snapshot(dir, 1, &[])?;
            write_fresh_log(dir, 1)?;
        }
        let read = read_store(dir)?;
        // A stale log is replaced at the first append; until then the handle is
        // only a placeholder (the lock file), never written.
        let (log, log_len) = if read.stale_log {
            (
                lock.try_clone().map_err(|e| io(&lock_path, e))?,
                HEADER as u64,
            )
        } else {
            let log = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&log_path)
                .map_err(|e| io(&log_path, e))?;
            let len = log.metadata().map_err(|e| io(&log_path, e))?.len();
            (log, len - read.torn_tail)
        };
        let store = FileStore {
            dir: dir.to_owned(),
            log,
            generation: read.generation,
            log_len,
            snap_len: read.snap_len,
            torn_tail: read.torn_tail > 0,
            fresh_log_due: read.stale_log,
            _lock: lock,
        };
        Ok((store, read.ops))
    }

    /// Makes the log ready for an append: a fresh one if due, an interrupted tail
    /// cut off so that the next record follows the last good one.
    fn prepare_log(&mut self) -> Result<(), Error> {
        let path = self.dir.join(LOG);
        if self.fresh_log_due {
            write_fresh_log(&self.dir, self.generation)?;
            self.log = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            self.log_len = HEADER as u64;
            self.fresh_log_due = false;
            self.torn_tail = false;
        }
        if self.torn_tail {
            self.log.set_len(self.log_len).map_err(|e| io(&path, e))?;
            self.log.sync_all().map_err(|e| io(&path, e))?;
            self.torn_tail = false;
        }
        Ok(())
    }

    /// Appends one commit and syncs it: when this returns Ok, the commit survives a
    /// crash or a power loss.
    pub fn append(&mut self, ops: &[Op]) -> Result<(), Error> {
        self.prepare_log()?;
        let mut payload = Vec::new();
        encode_ops(ops, &mut payload);
        let len = u32::try_from(payload.len()).map_err(|_| Error::TooLarge)?;
        let mut rec = Vec::with_capacity(RECORD_HEAD + payload.len());
        rec.push(RECORD_MARKER);
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(&len.to_le_bytes()).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        let path = self.dir.join(LOG);
        use std::io::Seek;
        self.log
            .seek(std::io::SeekFrom::Start(self.log_len))
            .map_err(|e| io(&path, e))?;
        let written = self.log.write_all(&rec).and_then(|()| self.log.sync_data());
        if let Err(e) = written {
            // Whatever part of the record reached the file is cut off again, now if
            // possible and in any case before the next append, so that a failed
            // commit cannot surface at the next open.
            let _ = self.log.set_len(self.log_len);
            self.torn_tail = true;
            return Err(io(&path, e));
        }
        self.log_len += rec.len() as u64;
        Ok(())
    }

    /// Whether the log has grown enough to be folded into a snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.log_len > COMPACT_AT && self.log_len > self.snap_len
    }

    /// Replaces snapshot and log by one snapshot of `ops` (the whole tree).
    pub fn compact(&mut self, ops: &[Op]) -> Result<(), Error> {
        let g = self.generation + 1;
        match write_snapshot(&self.dir, g, ops) {
            Ok(len) => self.snap_len = len,
            // The rename may have happened before the failure (syncing the directory):
            // then the new snapshot is the store all the same.
            Err(e) if snapshot_generation(&self.dir) == Some(g) => {
                self.generation = g;
                self.fresh_log_due = true;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        // From here the snapshot of g+1 is the store: the old log is stale whether
        // or not the fresh one can be written now (if not, the next append retries).
        self.generation = g;
        self.fresh_log_due = true;
        self.prepare_log()
    }
}

/// Reads a store without opening it for writing (and without taking its lock): the
/// check behind `dm-tree verify`.
pub fn inspect(dir: &Path) -> Result<(Inspection, Vec<Op>), Error> {
    let r = read_store(dir)?;
    Ok((
        Inspection {
            generation: r.generation,
            snapshot_ops: r.snapshot_ops,
            log_records: r.log_records,
            torn_tail: r.torn_tail,
        },
        r.ops,
    ))
}

struct ReadStore {
    generation: u64,
    ops: Vec<Op>,
    snapshot_ops: usize,
    log_records: usize,
    torn_tail: u64,
    stale_log: bool,
    snap_len: u64,
}

fn read_store(dir: &Path) -> Result<ReadStore, Error> {
    let snap_path = dir.join(SNAP);
    let snap = read_file(&snap_path)?;
    let damaged = |why: String| Error::Damaged(format!("{}: {why}", snap_path.display()));
    if snap.len() < HEADER + 4 || &snap[..12] != SNAP_MAGIC {
        return Err(damaged("not a dm-tree snapshot".into()));
    }
    let (body, tail) = snap.split_at(snap.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != tail {
        return Err(damaged("checksum mismatch".into()));
    }
    let generation = u64_at(&snap, 12);
    let mut ops = decode_ops(&body[HEADER..]).map_err(damaged)?;
    let snapshot_ops = ops.len();

    let log_path = dir.join(LOG);
    let (log_records, torn_tail, stale_log) = match read_optional(&log_path)? {
        // A missing log is an empty one: compaction replaces it by a rename.
        None => (0, 0, true),
        Some(log) => {
            let damaged = |why: String| Error::Damaged(format!("{}: {why}", log_path.display()));
            if log.len() < HEADER || &log[..12] != LOG_MAGIC {
                return Err(damaged("not a dm-tree log".into()));
            }
            let log_gen = u64_at(&log, 12);
            if log_gen > generation {
                return Err(damaged(format!(
                    "log generation {log_gen} is newer than the snapshot's {generation}"
                )));
            }
            if log_gen < generation {
                (0, 0, true)
            } else {
                let (records, torn) = read_records(&log, &mut ops).map_err(damaged)?;
                (records, torn, false)
            }
        }
    };
    Ok(ReadStore {
        generation,
        ops,
        snapshot_ops,
        log_records,
        torn_tail,
        stale_log,
        snap_len: snap.len() as u64,
    })
}

/// Appends the operations of each good record to `ops`; returns the record count and
/// the length of an interrupted record at the end.
fn read_records(log: &[u8], ops: &mut Vec<Op>) -> Result<(usize, u64), String> {
    let mut at = HEADER;
    let mut n = 0;
    while at < log.len() {
        let rest = &log[at..];
        let torn = (log.len() - at) as u64;
        // A head cut short, or a file extended with zeros that were never written.
        if rest.len() < RECORD_HEAD || rest.iter().all(|&b| b == 0) {
            return Ok((n, torn));
        }
        let len_bytes = [rest[1], rest[2], rest[3], rest[4]];
        // The length has its own checksum, so that a damaged length is never taken
        // for a record the crash cut short. A bad head with no good record after it
        // is the head of the interrupted commit (a power loss can leave a head half
        // written); with a good record after it, it is damage.
        if rest[0] != RECORD_MARKER || crc32fast::hash(&len_bytes).to_le_bytes() != rest[5..9] {
            if !(at + 1..log.len()).any(|p| record_at(log, p)) {
                return Ok((n, torn));
            }
            return Err(format!("damaged record head at byte {at}"));
        }
        let len = u32::from_le_bytes(len_bytes) as usize;
        let Some(payload) = rest.get(RECORD_HEAD..RECORD_HEAD + len) else {
            // The length reaches past the end: the write was cut short.
            return Ok((n, torn));
        };
        if crc32fast::hash(payload).to_le_bytes() != rest[9..13] {
            if at + RECORD_HEAD + len == log.len() {
                return Ok((n, torn));
            }
            return Err(format!("checksum mismatch in the record at byte {at}"));
        }
        ops.extend(decode_ops(payload).map_err(|e| format!("record at byte {at}: {e}"))?);
        n += 1;
        at += RECORD_HEAD + len;
    }
    Ok((n, 0))
}

/// Whether a whole, valid record starts at `at`.
fn record_at(log: &[u8], at: usize) -> bool {
    let Some(head) = log.get(at..at + RECORD_HEAD) else {
        return false;
    };
    let len_bytes = [head[1], head[2], head[3], head[4]];
    if head[0] != RECORD_MARKER || crc32fast::hash(&len_bytes).to_le_bytes() != head[5..9] {
        return false;
    }
    let len = u32::from_le_bytes(len_bytes) as usize;
    log.get(at + RECORD_HEAD..at + RECORD_HEAD + len)
        .is_some_and(|p| crc32fast::hash(p).to_le_bytes() == head[9..13])
}

/// The generation of the snapshot on disk, if it reads as one.
fn snapshot_generation(dir: &Path) -> Option<u64> {
    let b = read_optional(&dir.join(SNAP)).ok()??;
    (b.len() >= HEADER && &b[..12] == SNAP_MAGIC).then(|| u64_at(&b, 12))
}

fn write_snapshot(dir: &Path, generation: u64, ops: &[Op]) -> Result<u64, Error> {
    let mut b = Vec::new();
    b.extend_from_slice(SNAP_MAGIC);
    b.extend_from_slice(&generation.to_le_bytes());
    encode_ops(ops, &mut b);
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    replace_file(dir, SNAP, &b)?;
    Ok(b.len() as u64)
}

fn write_fresh_log(dir: &Path, generation: u64) -> Result<(), Error> {
    let mut b = Vec::with_capacity(HEADER);
    b.extend_from_slice(LOG_MAGIC);
    b.extend_from_slice(&generation.to_le_bytes());
    replace_file(dir, LOG, &b)
}

/// Write-new-then-rename, with the syncs that make the rename durable.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &target).map_err(|e| io(&target, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    read_optional(path)?.ok_or_else(|| Error::Damaged(format!("{} is missing", path.display())))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match File::open(path) {
        Ok(mut f) => {
            let mut b = Vec::new();
            f.read_to_end(&mut b).map_err(|e| io(path, e))?;
            Ok(Some(b))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
