//! Reading the config file and secret files: only regular files (a symlink
//! to one is fine, as Kubernetes mounts Secrets), and never more than a
//! bound, so a secret pointed at `/dev/zero`, a FIFO or a socket is refused
//! with a message instead of read until memory runs out or waited on forever.
//! Reads that may hang (a stuck network or FUSE mount) are the caller's to
//! run off the serving workers, under a timeout (`app/reload.rs`).

use crate::call::problem::Problem;
use std::io::Read;
use std::path::Path;

/// The most a config file may hold.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The most a secret file may hold (a key, a token, a password).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// How long a file must have stood unchanged before it is read: a writer
/// that writes in steps (a key, then its end; a config line by line) is
/// never read between them. An atomic replace (Kubernetes' Secret update,
/// an editor's save, `install`) is a step of its own and waits this once.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(150);

/// The longest a read waits for a file that keeps changing; then it is
/// read as it is.
const SETTLE_AT_MOST: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits (blocking) until the file at `path` was last changed at least
/// [`SETTLE`] ago, for up to [`SETTLE_AT_MOST`].
fn wait_until_settled(path: &Path) {
    let mut waited = std::time::Duration::ZERO;
    while waited < SETTLE_AT_MOST {
        let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else {
            return;
        };
        // A time ahead of this clock (another host's) cannot be judged.
        let Ok(age) = crate::call::clock::wall().duration_since(modified) else {
            return;
        };
        if age >= SETTLE {
            return;
        }
        let rest = SETTLE - age;
        std::thread::sleep(rest);
        waited += rest;
    }
}

/// The text of the regular file at `path`, at most `limit` bytes of UTF-8,
/// read once it has stopped changing.
pub fn read_text(path: &Path, limit: u64) -> Result<String, Problem> {
    wait_until_settled(path);
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| Problem(format!("cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown} is not a regular file (a device, a FIFO or a directory); point it at a file"
        )
        .into());
    }
    if meta.len() > limit {
        return Err(format!(
            "{shown} holds {} bytes, more than the {limit} accepted",
            meta.len()
        )
        .into());
    }
    let file =
        std::fs::File::open(path).map_err(|e| Problem(format!("cannot read {shown}: {e}")))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow between the look and the read: never past the bound.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Problem(format!("cannot read {shown}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{shown} is larger than the {limit} bytes accepted").into());
    }
    String::from_utf8(bytes).map_err(|_| Problem(format!("{shown} is not UTF-8 text")))
}

/// The mode of the file at `path` when this process owns it and its group
/// or others may read it too (a secret should be the owner's alone);
/// `None` otherwise, or when it cannot be looked at.
pub fn open_to_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path).ok()?;
    // A file this process does not own is read through its group or others
    // bits (a Kubernetes Secret, root's, read as uid 65532): `chmod 600`
    // would lock offergate out. /proc/self belongs to the process's user.
    let ours = std::fs::metadata("/proc/self").map_or(true, |me| me.uid() == meta.uid());
    let mode = meta.permissions().mode() & 0o777;
    (ours && mode & 0o044 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("key");
        std::fs::write(&ok, "pk_live_x\n").unwrap();
        assert_eq!(read_text(&ok, 64).unwrap(), "pk_live_x\n");
        // Through a symlink, as a mounted Kubernetes Secret is.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(read_text(&link, 64).unwrap(), "pk_live_x\n");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 65]).unwrap();
        assert!(read_text(&big, 64)
            .unwrap_err()
            .contains("more than the 64"));
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(read_text(&zero, 64)
            .unwrap_err()
            .contains("not a regular file"));
        assert!(read_text(dir.path(), 64)
            .unwrap_err()
            .contains("not a regular file"));
        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        assert!(read_text(&binary, 64).unwrap_err().contains("not UTF-8"));
        assert!(read_text(&dir.path().join("none"), 64).is_err());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(open_to_others(&ok), Some(0o640));
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(open_to_others(&ok), None);
    }
}
