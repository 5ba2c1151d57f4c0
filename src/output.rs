//! Output files appear whole or not at all: every writer writes to a temporary file beside the
//! destination (`.realnvp-partial-*`, same directory so the final rename is atomic) and renames
//! it into place when complete; dropping an unfinished one deletes it.
//!
//! Files are created with mode 0666 less the process umask, like any other program's output
//! (a temporary file's default 0600 would otherwise stay on the result).

use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// A new temporary file in `path`'s directory, for [`persist`] to rename to `path`.
pub fn temp_beside(path: &Path) -> Result<NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".realnvp-partial-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))
}

/// Flushes `tmp` to disk and renames it to `path`.
pub fn persist(tmp: NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Refuses outputs that would overwrite an input (the same file, by device and inode, however
/// it is named: a link, `./x.npy`) or each other, before anything is read or written.
pub fn check_distinct(inputs: &[&Path], outputs: &[&Path]) -> Result<()> {
    for (i, out) in outputs.iter().enumerate() {
        for input in inputs {
            if same_file(input, out) {
                return Err(Error::Argument(format!(
                    "the output {} is the input {}: writing it would destroy the input; choose another output path",
                    out.display(),
                    input.display()
                )));
            }
        }
        for other in &outputs[..i] {
            if same_file(other, out) || (absolute(other).is_some() && absolute(other) == absolute(out)) {
                return Err(Error::Argument(format!("{} is given as two outputs", out.display())));
            }
        }
    }
    Ok(())
}

/// Whether both paths exist and are one file.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b)
    }
}

/// The path with its directory made absolute (the file itself need not exist yet).
fn absolute(p: &Path) -> Option<std::path::PathBuf> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(p.file_name()?))
}
