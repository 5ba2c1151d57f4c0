//! Output files appear whole or not at all. Every writer writes an [`OutputFile`]: a temporary
//! file beside the destination (`.realnvp-partial-*`, same directory so the final rename is
//! atomic) that [`OutputFile::commit`] renames into place when complete; dropping an
//! uncommitted one deletes it. A run with several outputs finishes (syncs) all of them before it
//! commits any, so a failure leaves every existing output as it was.
//!
//! - A destination that exists and is not a regular file (`/dev/null`, a FIFO, a character
//!   device) is written through, not replaced: `--output /dev/null` discards the output.
//! - A symbolic link is followed: the file it points to is replaced, the link stays.
//! - A directory, or a destination in a missing directory, is an error before anything runs.
//! - Files are created with mode 0666 less the process umask, like any other program's output.
//! - Writers mark an unfinished file as such in its first bytes (e.g. `.npy` files carry a
//!   wrong magic string until they are complete), so a temporary file left by a killed process
//!   (SIGKILL cannot be caught) is never a valid output. [`remove_partial_files`] deletes the
//!   temporary files this process has open (a signal handler's last resort).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Temporary files of this process that are not committed yet (for [`remove_partial_files`]).
static PARTIAL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn partial_files() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PARTIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Deletes every temporary output file this process is writing; returns how many. For a
/// signal handler that ends the process without unwinding.
pub fn remove_partial_files() -> usize {
    let mut live = partial_files();
    let n = live.iter().filter(|p| std::fs::remove_file(p).is_ok()).count();
    live.clear();
    n
}

/// One output being written; see the module documentation.
pub struct OutputFile {
    /// Where the result goes (a followed symbolic link: its target).
    dest: PathBuf,
    target: Target,
}

enum Target {
    /// A regular file: written beside `dest`, renamed over it on commit.
    Temp(NamedTempFile),
    /// Not a regular file (a device, a FIFO): written directly.
    Through(File),
    /// Committed.
    Done,
}

impl OutputFile {
    /// Starts the output `path`: checks where it goes and opens the temporary file (or the
    /// existing non-regular file). Nothing at `path` changes until [`OutputFile::commit`].
    pub fn create(path: &Path) -> Result<OutputFile> {
        let dest = follow_links(path)?;
        match std::fs::metadata(&dest) {
            Ok(m) if m.is_dir() => {
                return Err(Error::Argument(format!("the output {} is a directory", path.display())))
            }
            Ok(m) if !m.is_file() => {
                let file = std::fs::OpenOptions::new().write(true).open(&dest).map_err(|e| Error::io(path, e))?;
                return Ok(OutputFile { dest, target: Target::Through(file) });
            }
            _ => {}
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::Argument(format!(
                "cannot write {}: the directory {} does not exist",
                path.display(),
                dir.display()
            )));
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(".realnvp-partial-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder.tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
        partial_files().push(tmp.path().to_owned());
        Ok(OutputFile { dest, target: Target::Temp(tmp) })
    }

    /// The destination (a followed link's target).
    pub fn path(&self) -> &Path {
        &self.dest
    }

    /// Whether [`OutputFile::overwrite_start`] can rewrite the first bytes (a temporary file;
    /// a device or FIFO is written once, front to back).
    pub fn is_seekable(&self) -> bool {
        matches!(self.target, Target::Temp(_))
    }

    /// Rewrites the first `bytes.len()` bytes (a header completed at the end), then continues
    /// at the end of the file. Only for a seekable output.
    pub fn overwrite_start(&mut self, bytes: &[u8]) -> Result<()> {
        let dest = self.dest.clone();
        let io = |e| Error::io(&dest, e);
        match &mut self.target {
            Target::Temp(tmp) => {
                let f = tmp.as_file_mut();
                f.seek(SeekFrom::Start(0)).map_err(io)?;
                f.write_all(bytes).map_err(io)?;
                f.seek(SeekFrom::End(0)).map_err(io)?;
                Ok(())
            }
            _ => Err(Error::Argument(format!("{} cannot be rewritten in place", dest.display()))),
        }
    }

    /// Flushes the data to the disk (the first of the two steps of finishing; a full disk
    /// shows here at the latest).
    pub fn sync(&mut self) -> Result<()> {
        let dest = self.dest.clone();
        match &mut self.target {
            Target::Temp(tmp) => {
                tmp.flush().map_err(|e| Error::io(&dest, e))?;
                tmp.as_file().sync_all().map_err(|e| Error::io(&dest, e))
            }
            Target::Through(f) => f.flush().map_err(|e| Error::io(&dest, e)),
            Target::Done => Ok(()),
        }
    }

    /// Renames the synced temporary file over the destination.
    pub fn commit(mut self) -> Result<()> {
        match std::mem::replace(&mut self.target, Target::Done) {
            Target::Temp(tmp) => {
                let mut live = partial_files();
                let tmp_path = tmp.path().to_owned();
                let result = tmp.persist(&self.dest).map_err(|e| Error::io(&self.dest, e.error));
                live.retain(|p| *p != tmp_path);
                result.map(|_| ())
            }
            Target::Through(_) | Target::Done => Ok(()),
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Target::Temp(tmp) = &self.target {
            let path = tmp.path().to_owned();
            partial_files().retain(|p| *p != path);
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.target {
            Target::Temp(tmp) => tmp.write(buf),
            Target::Through(f) => f.write(buf),
            Target::Done => Err(std::io::Error::other("output already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.target {
            Target::Temp(tmp) => tmp.flush(),
            Target::Through(f) => f.flush(),
            Target::Done => Ok(()),
        }
    }
}

/// Syncs every output, then commits them: all outputs or none, as far as the file system
/// allows (a rename failing after another succeeded is the only partial outcome left).
pub fn commit_all(mut files: Vec<OutputFile>) -> Result<()> {
    for f in &mut files {
        f.sync()?;
    }
    files.into_iter().try_for_each(OutputFile::commit)
}

/// Writes `bytes` to `path` whole or not at all.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = OutputFile::create(path)?;
    out.write_all(bytes).map_err(|e| Error::io(path, e))?;
    commit_all(vec![out])
}

/// `path` with symbolic links followed to the file they name (which need not exist yet).
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_owned();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p).map_err(|e| Error::io(&p, e))?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(Error::Argument(format!("{}: too many levels of symbolic links", path.display())))
}

/// Refuses outputs that would overwrite an input (the same file, by device and inode, however
/// it is named: a link, `./x.npy`) or each other, before anything is read or written. Outputs
/// that are not regular files (`/dev/null`) may repeat.
pub fn check_distinct(inputs: &[&Path], outputs: &[&Path]) -> Result<()> {
    for (i, out) in outputs.iter().enumerate() {
        if std::fs::metadata(out).is_ok_and(|m| !m.is_file()) {
            continue;
        }
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
