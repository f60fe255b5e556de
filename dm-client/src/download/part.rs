//! Partial downloads on disk: `<dest>.part` holds the bytes received so far and
//! `<dest>.part.meta` says what they are (URL, validator, expected total), so a later
//! fetch, in this process or after a crash, can ask for the rest with `Range`.
//!
//! The sidecar is always written whole (temporary file, fsync, rename) and before the
//! first byte of a new `.part`, so a `.part` never exists with a sidecar that describes
//! something else. `dest` appears only by renaming a complete, synced `.part`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// First line of a sidecar; a file without it is ignored (and replaced).
const MAGIC: &str = "dm-client-part 1";
/// A sidecar larger than this is not one of ours.
const MAX_META_BYTES: u64 = 16 * 1024;

/// What the bytes in a `.part` file are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartMeta {
    /// The URL the bytes came from.
    pub url: String,
    /// The entity tag the server gave, as sent (quotes included).
    pub etag: Option<String>,
    /// The Last-Modified date the server gave, as sent.
    pub last_modified: Option<String>,
    /// The full length of the resource, when the server told it.
    pub total: Option<u64>,
}

impl PartMeta {
    /// The validator for `If-Range`: a strong entity tag, else the Last-Modified date.
    /// `None` when the server gave neither, and then a partial file cannot be trusted
    /// to belong to the resource the server has now.
    pub fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(tag) if !tag.starts_with("W/") => Some(tag),
            _ => self.last_modified.as_deref(),
        }
    }

    fn encode(&self) -> String {
        let mut s = format!("{MAGIC}\nurl {}\n", self.url);
        if let Some(v) = &self.etag {
            s.push_str(&format!("etag {v}\n"));
        }
        if let Some(v) = &self.last_modified {
            s.push_str(&format!("last-modified {v}\n"));
        }
        if let Some(v) = self.total {
            s.push_str(&format!("total {v}\n"));
        }
        s
    }

    fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut meta = PartMeta::default();
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            match key {
                "url" => meta.url = value.to_owned(),
                "etag" => meta.etag = Some(value.to_owned()),
                "last-modified" => meta.last_modified = Some(value.to_owned()),
                "total" => meta.total = Some(value.parse().ok()?),
                _ => return None,
            }
        }
        (!meta.url.is_empty()).then_some(meta)
    }

    /// Whether a value can be stored: one line, so the sidecar stays parseable.
    fn storable(&self) -> bool {
        let one_line = |s: &str| !s.contains(['\n', '\r']);
        one_line(&self.url)
            && self.etag.as_deref().is_none_or(one_line)
            && self.last_modified.as_deref().is_none_or(one_line)
    }
}

/// The `.part` and `.part.meta` files of one destination.
#[derive(Debug, Clone)]
pub struct PartFiles {
    dest: PathBuf,
    part: PathBuf,
    meta: PathBuf,
}

impl PartFiles {
    /// The partial files that belong to `dest`.
    pub fn new(dest: &Path) -> Self {
        let with = |suffix: &str| {
            let mut s: OsString = dest.as_os_str().to_owned();
            s.push(suffix);
            PathBuf::from(s)
        };
        Self {
            dest: dest.to_owned(),
            part: with(".part"),
            meta: with(".part.meta"),
        }
    }

    /// The file that holds the bytes received so far.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// The sidecar that describes them.
    pub fn meta_path(&self) -> &Path {
        &self.meta
    }

    /// The partial download on disk, if there is a usable one: its sidecar and the
    /// number of bytes in the `.part` file. A missing, foreign or unreadable sidecar or
    /// a missing `.part` gives `None`.
    pub fn load(&self) -> Option<(PartMeta, u64)> {
        let mut text = String::new();
        File::open(&self.meta)
            .ok()?
            .take(MAX_META_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        let meta = PartMeta::decode(&text)?;
        let len = fs::metadata(&self.part).ok()?.len();
        Some((meta, len))
    }

    /// Starts a new partial download: removes any old `.part`, writes the sidecar, and
    /// returns an empty `.part` open for writing.
    pub fn start(&self, meta: &PartMeta) -> io::Result<File> {
        remove_if_present(&self.part)?;
        self.write_meta(meta)?;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.part)
    }

    /// Reopens the `.part` to append after its first `offset` bytes (anything beyond
    /// them is cut off), recording `meta` if it says more than the stored sidecar.
    pub fn resume(&self, offset: u64, meta: &PartMeta) -> io::Result<File> {
        if self.load().map(|(m, _)| m) != Some(meta.clone()) {
            self.write_meta(meta)?;
        }
        let mut file = OpenOptions::new().write(true).open(&self.part)?;
        file.set_len(offset)?;
        io::Seek::seek(&mut file, io::SeekFrom::Start(offset))?;
        Ok(file)
    }

    /// Completes the download: syncs the `.part`, renames it to `dest`, removes the
    /// sidecar and syncs the directory so the rename survives a power loss.
    pub fn finish(&self, file: File) -> io::Result<()> {
        file.sync_all()?;
        drop(file);
        fs::rename(&self.part, &self.dest)?;
        remove_if_present(&self.meta)?;
        sync_dir(&self.dest)
    }

    /// Forgets the partial download (both files).
    pub fn discard(&self) -> io::Result<()> {
        remove_if_present(&self.part)?;
        remove_if_present(&self.meta)
    }

    fn write_meta(&self, meta: &PartMeta) -> io::Result<()> {
        if !meta.storable() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a line break in a URL or validator",
            ));
        }
        let mut tmp: OsString = self.meta.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = File::create(&tmp)?;
        file.write_all(meta.encode().as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &self.meta)?;
        sync_dir(&self.meta)
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Makes a rename or removal in the directory of `path` durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for syncing here; the rename is still atomic.
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> PartMeta {
        PartMeta {
            url: "http://h/p.bin".into(),
            etag: Some("\"v1\"".into()),
            last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            total: Some(10),
        }
    }

    #[test]
    fn sidecar_round_trips_and_rejects_foreign_files() {
        let m = meta();
        assert_eq!(PartMeta::decode(&m.encode()), Some(m));
        assert_eq!(PartMeta::decode("something else\nurl x\n"), None);
        assert_eq!(
            PartMeta::decode(&format!("{MAGIC}\nurl x\ntotal many\n")),
            None
        );
        assert_eq!(
            PartMeta::decode(&format!("{MAGIC}\nurl x\ncolour red\n")),
            None
        );
        assert_eq!(PartMeta::decode(&format!("{MAGIC}\netag \"a\"\n")), None);
    }

    #[test]
    fn if_range_prefers_a_strong_etag() {
        let mut m = meta();
        assert_eq!(m.if_range(), Some("\"v1\""));
        m.etag = Some("W/\"weak\"".into());
        assert_eq!(m.if_range(), Some("Wed, 21 Oct 2015 07:28:00 GMT"));
        m.last_modified = None;
        assert_eq!(m.if_range(), None);
    }

    #[test]
    fn start_resume_finish() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("pkg.bin");
        let files = PartFiles::new(&dest);
        assert_eq!(files.load(), None);

        let mut f = files.start(&meta()).unwrap();
        f.write_all(b"hello wor").unwrap();
        drop(f);
        assert_eq!(files.load(), Some((meta(), 9)));

        // Resuming cuts anything past the offset, then appends.
        let mut f = files.resume(5, &meta()).unwrap();
        f.write_all(b" world").unwrap();
        files.finish(f).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"hello world");
        assert!(!files.part_path().exists());
        assert!(!files.meta_path().exists());
        assert_eq!(files.load(), None);
    }

    #[test]
    fn start_replaces_an_old_part_and_discard_removes_both() {
        let dir = tempfile::tempdir().unwrap();
        let files = PartFiles::new(&dir.path().join("p"));
        fs::write(files.part_path(), b"old bytes").unwrap();
        let mut other = meta();
        other.url = "http://h/other".into();
        drop(files.start(&other).unwrap());
        assert_eq!(files.load(), Some((other, 0)));
        files.discard().unwrap();
        assert!(!files.part_path().exists() && !files.meta_path().exists());
        files.discard().unwrap();
    }

    #[test]
    fn a_line_break_in_a_validator_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = PartFiles::new(&dir.path().join("p"));
        let mut m = meta();
        m.etag = Some("\"a\"\nurl http://evil".into());
        assert!(files.start(&m).is_err());
    }
}
