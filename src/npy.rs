//! Chunked `.npy` input and atomic `.npy` output. Inputs are float32 or float64 of either
//! byte order, in C or Fortran order, shape `[N, D]` (a 1-D `[N]` array reads as `[N, 1]`);
//! rows are handed out in the caller's precision (no conversion when it is the file's, in C
//! order and this machine's byte order). Outputs (little-endian, C order) go to a temporary file in the
//! destination folder and are renamed into place only when complete.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ndarray_npy::npy::header::{Header, Layout};
use py_literal::Value as PyValue;

use crate::error::{Error, Result};
use crate::output::OutputFile;
use crate::real::Real;

/// Element type of an `.npy` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    F32,
    F64,
}

impl NpyDtype {
    fn descr(self) -> &'static str {
        match self {
            NpyDtype::F32 => "<f4",
            NpyDtype::F64 => "<f8",
        }
    }

    /// The element type of `T`.
    pub fn of<T: Real>() -> Self {
        if std::mem::size_of::<T>() == 4 {
            NpyDtype::F32
        } else {
            NpyDtype::F64
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::F32 => 4,
            NpyDtype::F64 => 8,
        }
    }
}

/// Reads an `[N, D]` float array row chunk by row chunk.
pub struct NpyReader {
    path: PathBuf,
    reader: BufReader<File>,
    dtype: NpyDtype,
    /// Elements stored big-endian (`'>f4'`, `'>f8'`).
    big_endian: bool,
    /// Elements stored in this machine's byte order (then read without conversion).
    native_order: bool,
    /// Fortran (column-major) order: column c's N values lie together, at element c·N.
    fortran: bool,
    /// Byte offset of the first element.
    data_start: u64,
    rows: usize,
    cols: usize,
    rows_read: usize,
    bytes: Vec<u8>,
}

impl NpyReader {
    /// Opens `path`, checks its header and that the file holds exactly N·D elements.
    pub fn open(path: &Path) -> Result<Self> {
        let data_err = |reason: String| Error::Data { path: path.to_owned(), reason };
        // stat before opening: opening a FIFO blocks until someone writes to it
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(data_err(
                "not a regular file (a pipe, device or directory); .npy input is read by its size, save it to a file"
                    .into(),
            ));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        let file_len = meta.len();
        if file_len == 0 {
            return Err(data_err("the file is empty (0 bytes), not a .npy array".into()));
        }
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let header = Header::from_reader(&mut reader).map_err(|e| data_err(format!("not a valid .npy file: {e}")))?;
        // '=' and no byte-order mark mean native order, which NumPy reads as the reading
        // machine's: little-endian on every machine this reader supports
        let (dtype, big_endian) = match &header.type_descriptor {
            PyValue::String(s) if ["<f4", "=f4", "f4"].contains(&s.as_str()) => (NpyDtype::F32, false),
            PyValue::String(s) if ["<f8", "=f8", "f8"].contains(&s.as_str()) => (NpyDtype::F64, false),
            PyValue::String(s) if s == ">f4" => (NpyDtype::F32, true),
            PyValue::String(s) if s == ">f8" => (NpyDtype::F64, true),
            other => {
                return Err(data_err(format!(
                    "dtype {other} is not supported; use float32 or float64 ('<f4', '<f8', or big-endian '>f4', '>f8') (NumPy: x.astype('<f4'))"
                )))
            }
        };
        let (rows, cols) = match header.shape[..] {
            [rows, cols] => (rows, cols),
            [rows] => (rows, 1),
            ref shape => {
                return Err(data_err(format!(
                    "expected a 2-D array of shape [N, D] (or [N] for D = 1), found shape {shape:?}"
                )))
            }
        };
        let data_start = reader.stream_position().map_err(|e| Error::io(path, e))?;
        let expected = (rows as u128) * (cols as u128) * (dtype.size() as u128);
        let present = u128::from(file_len.saturating_sub(data_start));
        if present != expected {
            return Err(data_err(format!(
                "header promises {rows}×{cols} {} values ({expected} bytes) but the file holds {present} data bytes (truncated or corrupt)",
                dtype.descr()
            )));
        }
        Ok(NpyReader {
            path: path.to_owned(),
            reader,
            dtype,
            big_endian,
            native_order: big_endian == cfg!(target_endian = "big"),
            fortran: header.layout == Layout::Fortran,
            data_start,
            rows,
            cols,
            rows_read: 0,
            bytes: Vec::new(),
        })
    }

    /// Number of rows N.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns D.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element type on disk.
    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }

    /// Reads up to `max_rows` further rows into `out` (cleared first) in precision `T`;
    /// returns how many rows were read, 0 at the end. When `T` is the file's element type, in
    /// C order and this machine's byte order, the bytes are read straight into `out`; a
    /// Fortran-order file is read as one run of `n` values per column, then interleaved into rows.
    pub fn read_rows<T: Real>(&mut self, max_rows: usize, out: &mut Vec<T>) -> Result<usize> {
        let n = max_rows.min(self.rows - self.rows_read);
        let values = n * self.cols;
        let size = self.dtype.size();
        out.clear();
        if self.fortran {
            self.bytes.resize(values * size, 0);
            for c in 0..self.cols {
                let first = (c as u64) * (self.rows as u64) + self.rows_read as u64;
                let run = &mut self.bytes[c * n * size..(c + 1) * n * size];
                self.reader
                    .seek(SeekFrom::Start(self.data_start + first * size as u64))
                    .and_then(|_| self.reader.read_exact(run))
                    .map_err(|e| Error::io(&self.path, e))?;
            }
            let (bytes, cols, dtype, big_endian) = (&self.bytes, self.cols, self.dtype, self.big_endian);
            out.extend((0..values).map(|k| {
                let (row, col) = (k / cols, k % cols);
                element::<T>(&bytes[(col * n + row) * size..][..size], dtype, big_endian)
            }));
        } else if NpyDtype::of::<T>() == self.dtype && self.native_order {
            out.resize(values, T::zero());
            self.reader.read_exact(bytemuck::cast_slice_mut(out)).map_err(|e| Error::io(&self.path, e))?;
        } else {
            self.bytes.resize(values * size, 0);
            self.reader.read_exact(&mut self.bytes).map_err(|e| Error::io(&self.path, e))?;
            let (dtype, big_endian) = (self.dtype, self.big_endian);
            out.extend(self.bytes.chunks_exact(size).map(|b| element::<T>(b, dtype, big_endian)));
        }
        self.rows_read += n;
        Ok(n)
    }
}

/// One element of `dtype` from its bytes on disk, in precision `T`.
fn element<T: Real>(b: &[u8], dtype: NpyDtype, big_endian: bool) -> T {
    match dtype {
        NpyDtype::F32 => {
            let b = [b[0], b[1], b[2], b[3]];
            T::from_f32(if big_endian { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) })
        }
        NpyDtype::F64 => {
            let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
            T::of(if big_endian { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) })
        }
    }
}

/// The first bytes of an `.npy` file, and of one still being written (not a valid `.npy`
/// until [`NpyWriter::finish`] puts the real magic string in place).
const MAGIC: &[u8; 6] = b"\x93NUMPY";
const PARTIAL_MAGIC: &[u8; 6] = b"\x93PARTL";

/// Writes an array of known shape incrementally to an [`OutputFile`] (a temporary file beside
/// the destination); [`NpyWriter::finish`] completes it for [`crate::output::commit_all`].
/// Dropping an unfinished writer deletes the temporary file.
pub struct NpyWriter {
    path: PathBuf,
    out: BufWriter<OutputFile>,
    dtype: NpyDtype,
    expected: usize,
    written: usize,
}

impl NpyWriter {
    /// Starts writing an array of `shape` (e.g. `[N, D]` or `[N]`) to `path`.
    pub fn create(path: &Path, shape: &[usize], dtype: NpyDtype) -> Result<Self> {
        let file = OutputFile::create(path)?;
        let header = Header {
            type_descriptor: PyValue::String(dtype.descr().into()),
            layout: Layout::Standard,
            shape: shape.to_vec(),
        };
        let mut bytes = header.to_bytes().map_err(|e| Error::Argument(format!("cannot encode .npy header: {e}")))?;
        debug_assert_eq!(&bytes[..6], MAGIC);
        if file.is_seekable() {
            bytes[..6].copy_from_slice(PARTIAL_MAGIC);
        }
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&bytes).map_err(|e| Error::io(path, e))?;
        Ok(NpyWriter { path: path.to_owned(), out, dtype, expected: shape.iter().product(), written: 0 })
    }

    /// Appends values in C order (rounded or widened to the file's element type).
    pub fn write<T: Real>(&mut self, values: &[T]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(Error::Argument(format!("{}: more values written than the shape holds", self.path.display())));
        }
        let io = |e| Error::io(&self.path, e);
        if NpyDtype::of::<T>() == self.dtype && cfg!(target_endian = "little") {
            self.out.write_all(bytemuck::cast_slice(values)).map_err(io)?;
        } else {
            let buf: Vec<u8> = match self.dtype {
                NpyDtype::F32 => values.iter().flat_map(|&v| v.to_f32().to_le_bytes()).collect(),
                NpyDtype::F64 => values.iter().flat_map(|&v| v.wide().to_le_bytes()).collect(),
            };
            self.out.write_all(&buf).map_err(io)?;
        }
        self.written += values.len();
        Ok(())
    }

    /// Checks that the whole shape was written, flushes and marks the file complete; the
    /// caller commits it (with the run's other outputs).
    pub fn finish(self) -> Result<OutputFile> {
        if self.written != self.expected {
            return Err(Error::Argument(format!(
                "{}: {} of {} values written; output discarded",
                self.path.display(),
                self.written,
                self.expected
            )));
        }
        let path = self.path;
        let mut file = self.out.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
        if file.is_seekable() {
            file.overwrite_start(MAGIC)?;
        }
        Ok(file)
    }
}

/// Reads a whole `[N, D]` file into memory as float64 (for tests and small inputs).
pub fn read_all(path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    let mut reader = NpyReader::open(path)?;
    let (rows, cols) = (reader.rows(), reader.cols());
    let mut out = Vec::new();
    reader.read_rows(rows, &mut out)?;
    Ok((out, rows, cols))
}

/// Writes a whole array of `shape` atomically.
pub fn write_all<T: Real>(path: &Path, shape: &[usize], values: &[T], dtype: NpyDtype) -> Result<()> {
    let mut w = NpyWriter::create(path, shape, dtype)?;
    w.write(values)?;
    crate::output::commit_all(vec![w.finish()?])
}
