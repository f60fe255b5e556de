//! Package files: one per slot under the packages directory, plus the copies
//! SaveFirmwareUpdate makes "at an address". Package bytes never live in the tree
//! for long: a value pushed into a `PkgData` leaf is moved out into the slot's file.
//!
//! Every file is written whole or not at all: to a temporary name, synced, renamed,
//! and the directory synced, so that a power cut leaves the old file or the new one.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dm_tree::Tree;
use sha2::{Digest, Sha256};

use super::records::key_of;
use super::Error;

/// The file holding the package of the slot at `node`.
pub fn package_file(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("{}.pkg", key_of(node)))
}

/// The file SaveFirmwareUpdate stores a package to for an address (`0x00089F`).
pub fn address_file(dir: &Path, address: u64) -> PathBuf {
    dir.join(format!("addr-{address:016x}.pkg"))
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    replace_with(path, |f| f.write_all(bytes))
}

/// Copies `from` to `to` atomically, `to` appearing only whole.
pub fn copy_atomic(from: &Path, to: &Path) -> Result<(), Error> {
    let mut src = File::open(from).map_err(|e| io(from, e))?;
    replace_with(to, |f| std::io::copy(&mut src, f).map(|_| ()))
}

fn replace_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory is.
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

/// Removes a file; a missing one is not an error.
pub fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, e)),
    }
}

/// The SHA-256 of a file, in lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = File::open(path).map_err(|e| io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The `PkgData` leaf of a slot, where a server pushes package bytes.
pub fn pkg_data_node(node: &str) -> String {
    if node.starts_with("./FUMO/") {
        format!("{node}/Update/PkgData")
    } else {
        format!("{node}/PkgData")
    }
}

/// Moves package bytes a server put into the slot's `PkgData` leaf (Add or Replace,
/// possibly as a large object) into the slot's file, and empties the leaf. The value
/// handler has usually written the file already; Add does not call it.
pub fn absorb_pkg_data(tree: &mut Tree, dir: &Path, node: &str) -> Result<(), Error> {
    let leaf = pkg_data_node(node);
    let value = match tree.get(&leaf).and_then(|n| n.value()) {
        Some(v) if !v.is_empty() => v.to_vec(),
        _ => return Ok(()),
    };
    let file = package_file(dir, node);
    let same = fs::read(&file).is_ok_and(|b| b == value);
    if !same {
        write_atomic(&file, &value)?;
    }
    tree.set_value(&leaf, Vec::new())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dm_tree::{Format, Record};

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/a.pkg");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        let q = d.path().join("b.pkg");
        copy_atomic(&p, &q).unwrap();
        assert_eq!(sha256_file(&q).unwrap(), sha256_file(&p).unwrap());
        assert!(copy_atomic(&d.path().join("missing"), &q).is_err());
        remove(&q).unwrap();
        remove(&q).unwrap();
    }

    #[test]
    fn pushed_bytes_move_from_the_tree_to_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::new();
        t.put(
            "./FWUpdate/x/PkgData",
            Record::leaf(Format::Bin, b"PKG".to_vec()),
        )
        .unwrap();
        absorb_pkg_data(&mut t, d.path(), "./FWUpdate/x").unwrap();
        assert_eq!(
            fs::read(package_file(d.path(), "./FWUpdate/x")).unwrap(),
            b"PKG"
        );
        assert_eq!(
            t.get("./FWUpdate/x/PkgData").unwrap().value(),
            Some(&b""[..])
        );
        // An empty leaf leaves the file alone.
        absorb_pkg_data(&mut t, d.path(), "./FWUpdate/x").unwrap();
        assert!(package_file(d.path(), "./FWUpdate/x").exists());
        assert_eq!(pkg_data_node("./FUMO/f"), "./FUMO/f/Update/PkgData");
    }
}
