//! Parquet tables in and out ([`ParquetReader`], [`ParquetWriter`]).
//!
//! Reading: the feature columns (float32 or float64, chosen by name, in the model's feature
//! order) of a file, or of every file of a dataset directory one after another, are read in
//! record batches of a bounded number of rows and turned into row-major
//! `[n, D]` rows; a null in any feature makes the row NaN (so its result is NaN, counted with
//! the non-finite rows) and is remembered, so that the row's results are written as nulls.
//! Columns to keep (`--keep id,…`) travel with their batch to the output untouched.
//!
//! Writing: results as float32 (or float64) columns next to the kept columns, to a temporary
//! file in the destination directory that is renamed into place when complete (dropping an
//! unfinished writer deletes it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, RecordBatch, UInt64Array};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::npy::NpyDtype;
use crate::output::OutputFile;
use crate::real::Real;

/// Whether `path` names a Parquet file (by its extension).
pub fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Whether input `path` is read as Parquet: a `.parquet` file, or a directory (a dataset of
/// Parquet files, [`dataset_files`]).
pub fn is_parquet_input(path: &Path) -> bool {
    is_parquet(path) || path.is_dir()
}

/// One batch of rows read from a table (the pipeline's chunk, for `.npy` files too).
pub struct Chunk {
    /// Rows in the batch.
    pub rows: usize,
    /// Rows with a null in some feature (their values are NaN); `None` when there are none.
    pub nulls: Option<NullBuffer>,
    /// The kept columns of these rows (empty for `.npy` input).
    pub kept: Vec<ArrayRef>,
}

/// Reads the feature columns of a Parquet file, or of a dataset of files (a directory), in
/// batches of rows.
pub struct ParquetReader {
    /// The dataset's files, in reading order, and their row counts.
    files: Vec<(PathBuf, usize)>,
    /// Index in `files` of the file `batches` reads.
    current: usize,
    batches: ParquetRecordBatchReader,
    columns: Vec<String>,
    keep: Vec<Field>,
    dtype: NpyDtype,
    batch_rows: usize,
}

/// The Parquet files of `path`: the file itself, or for a directory every `*.parquet` file
/// under it (recursively, in path order; links to files are read, links to directories are
/// not followed), leaving out names that start with `_` or `.` (`_SUCCESS`, `_temporary/`,
/// `.part-…` files of Spark and Hive writers).
pub fn dataset_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let (name, path) = (entry.file_name(), entry.path());
            if name.to_string_lossy().starts_with(['_', '.']) {
                continue;
            }
            // subdirectories, not links to directories (a link back up would never end)
            if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
                walk(&path, out)?;
            } else if is_parquet(&path) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(path, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(Error::Data { path: path.to_owned(), reason: "a directory with no .parquet files".into() });
    }
    Ok(files)
}

/// One file opened for reading: its batches of the wanted columns, its schema and row count.
struct OpenFile {
    builder: ParquetRecordBatchReaderBuilder<File>,
    schema: SchemaRef,
    rows: usize,
}

impl OpenFile {
    fn open(path: &Path) -> Result<OpenFile> {
        let data_err = |reason: String| Error::Data { path: path.to_owned(), reason };
        // stat before opening: opening a FIFO blocks until someone writes to it
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(data_err(
                "not a regular file (a pipe, device or directory); Parquet is read from a file".into(),
            ));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| data_err(format!("not a readable Parquet file: {e}")))?;
        let schema = builder.schema().clone();
        let rows = usize::try_from(builder.metadata().file_metadata().num_rows())
            .map_err(|_| data_err("negative row count in the file metadata".into()))?;
        Ok(OpenFile { builder, schema, rows })
    }

    /// Column `name`'s index and field, or an error naming the file's columns; a name the
    /// file holds more than once is an error too (which column would be meant?).
    fn field(&self, path: &Path, name: &str) -> Result<(usize, &Field)> {
        let data_err = |reason: String| Error::Data { path: path.to_owned(), reason };
        let mut matches = self.schema.fields().iter().enumerate().filter(|(_, f)| f.name() == name);
        match (matches.next(), matches.count()) {
            (Some((i, f)), 0) => Ok((i, f.as_ref())),
            (Some(_), more) => Err(data_err(format!(
                "the file has {} columns named {name:?}; rename them apart so that the column meant is unambiguous",
                more + 1
            ))),
            (None, _) => {
                let names: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
                Err(data_err(format!("no column {name:?}; the file has {}", names.join(", "))))
            }
        }
    }

    /// Its batches of `batch_rows` rows of the columns named `names`.
    fn batches<'a>(
        self,
        path: &Path,
        names: impl IntoIterator<Item = &'a str>,
        batch_rows: usize,
    ) -> Result<ParquetRecordBatchReader> {
        let wanted = names.into_iter().map(|name| Ok(self.field(path, name)?.0)).collect::<Result<Vec<usize>>>()?;
        let mask = ProjectionMask::roots(self.builder.parquet_schema(), wanted);
        self.builder
            .with_projection(mask)
            .with_batch_size(batch_rows.max(1))
            .build()
            .map_err(|e| Error::Data { path: path.to_owned(), reason: format!("cannot read: {e}") })
    }
}

impl ParquetReader {
    /// Opens `path` (a file, or a directory read as one table: see [`dataset_files`]), reading
    /// the feature `columns` (in this order; all columns when empty, in the first file's order,
    /// except the `keep` ones) and keeping the `keep` columns, `batch_rows` rows at a time.
    /// Every file of a dataset must hold those columns with the first file's types; all footers
    /// are read here, so a mismatch is an error before any row is read.
    pub fn open(path: &Path, columns: &[String], keep: &[String], batch_rows: usize) -> Result<Self> {
        let paths = dataset_files(path)?;
        let first = OpenFile::open(&paths[0])?;
        let data_err = |reason: String| Error::Data { path: paths[0].clone(), reason };
        let columns: Vec<String> = if columns.is_empty() {
            first.schema.fields().iter().map(|f| f.name()).filter(|n| !keep.contains(n)).cloned().collect()
        } else {
            columns.to_vec()
        };
        let mut dtype = NpyDtype::F32;
        for name in &columns {
            let (_, field) = first.field(&paths[0], name)?;
            match field.data_type() {
                DataType::Float32 => {}
                DataType::Float64 => dtype = NpyDtype::F64,
                other => {
                    return Err(data_err(format!(
                        "column {name:?} is {other}; feature columns must be float32 or float64 (cast it, or leave it out with --columns / keep it with --keep)"
                    )))
                }
            }
        }
        let mut kept = Vec::new();
        for name in keep {
            let (_, field) = first.field(&paths[0], name)?;
            if columns.contains(name) {
                return Err(data_err(format!("column {name:?} is both a feature and kept")));
            }
            kept.push(field.clone());
        }
        let mut files = vec![(paths[0].clone(), first.rows)];
        for path in &paths[1..] {
            let other = OpenFile::open(path)?;
            for name in columns.iter().chain(keep) {
                let (_, field) = other.field(path, name)?;
                let (_, want) = first.field(&paths[0], name)?;
                if field.data_type() != want.data_type() {
                    return Err(Error::Data {
                        path: path.clone(),
                        reason: format!(
                            "column {name:?} is {} here but {} in {} (every file of a dataset must have the same types)",
                            field.data_type(),
                            want.data_type(),
                            paths[0].display()
                        ),
                    });
                }
            }
            files.push((path.clone(), other.rows));
        }
        let batches = first.batches(&paths[0], columns.iter().chain(keep).map(String::as_str), batch_rows)?;
        Ok(ParquetReader { files, current: 0, batches, columns, keep: kept, dtype, batch_rows })
    }

    /// The file being read (for errors).
    fn path(&self) -> &Path {
        &self.files[self.current].0
    }

    /// Rows in the dataset (the sum of the files' footers).
    pub fn rows(&self) -> usize {
        self.files.iter().map(|(_, rows)| rows).sum()
    }

    /// Feature columns D.
    pub fn cols(&self) -> usize {
        self.columns.len()
    }

    /// Feature column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Float64 when any feature column is float64.
    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }

    /// The kept columns' fields.
    pub fn kept_fields(&self) -> &[Field] {
        &self.keep
    }

    /// The next batch's features as row-major rows in `out` (cleared first); `None` at the end
    /// (of the last file: a batch never spans two files).
    pub fn read<T: Real>(&mut self, out: &mut Vec<T>) -> Result<Option<Chunk>> {
        let batch = loop {
            match self.batches.next() {
                Some(b) => {
                    break b.map_err(|e| Error::Data {
                        path: self.path().to_owned(),
                        reason: format!("cannot read: {e}"),
                    })?
                }
                None if self.current + 1 == self.files.len() => return Ok(None),
                None => {
                    self.current += 1;
                    let path = self.path().to_owned();
                    let names = self.columns.iter().chain(self.keep.iter().map(|f| f.name())).map(String::as_str);
                    self.batches = OpenFile::open(&path)?.batches(&path, names, self.batch_rows)?;
                }
            }
        };
        let (n, d) = (batch.num_rows(), self.columns.len());
        out.clear();
        out.resize(n * d, T::zero());
        let mut null_rows: Option<Vec<bool>> = None;
        for (j, name) in self.columns.iter().enumerate() {
            let column = batch.column_by_name(name).ok_or_else(|| Error::Data {
                path: self.path().to_owned(),
                reason: format!("column {name:?} missing from a record batch"),
            })?;
            match column.data_type() {
                DataType::Float32 => {
                    scatter(column.as_primitive::<Float32Type>().values(), |v| T::from_f32(*v), out, j, d)
                }
                _ => scatter(column.as_primitive::<Float64Type>().values(), |v| T::of(*v), out, j, d),
            }
            if let Some(nulls) = column.nulls().filter(|n| n.null_count() > 0) {
                let rows = null_rows.get_or_insert_with(|| vec![false; n]);
                for i in nulls.iter().enumerate().filter(|(_, valid)| !valid).map(|(i, _)| i) {
                    rows[i] = true;
                    out[i * d + j] = T::nan();
                }
            }
        }
        let kept = self.keep.iter().filter_map(|f| batch.column_by_name(f.name()).cloned()).collect();
        let nulls = null_rows.map(|rows| NullBuffer::from(rows.iter().map(|&null| !null).collect::<Vec<bool>>()));
        Ok(Some(Chunk { rows: n, nulls, kept }))
    }
}

/// Column `j` of row-major `[n, d]` rows from a column's values.
fn scatter<S, T: Copy>(values: &[S], convert: impl Fn(&S) -> T, out: &mut [T], j: usize, d: usize) {
    for (row, v) in out.chunks_exact_mut(d).zip(values) {
        row[j] = convert(v);
    }
}

/// Writes record batches of result columns (next to kept columns) to a temporary file;
/// [`ParquetWriter::finish`] renames it into place.
pub struct ParquetWriter {
    path: PathBuf,
    writer: ArrowWriter<OutputFile>,
    schema: SchemaRef,
    dtype: NpyDtype,
    row_index: bool,
}

impl ParquetWriter {
    /// Starts writing `path` with the `kept` fields, then `row` (u64) if `row_index`, then one
    /// `dtype` column per name in `values` (nullable).
    pub fn create(path: &Path, kept: &[Field], row_index: bool, values: &[String], dtype: NpyDtype) -> Result<Self> {
        let tmp = OutputFile::create(path)?;
        let float = match dtype {
            NpyDtype::F32 => DataType::Float32,
            NpyDtype::F64 => DataType::Float64,
        };
        let mut fields: Vec<Field> = kept.to_vec();
        if row_index {
            fields.push(Field::new("row", DataType::UInt64, false));
        }
        fields.extend(values.iter().map(|name| Field::new(name, float.clone(), true)));
        for (i, f) in fields.iter().enumerate() {
            if fields[..i].iter().any(|g| g.name() == f.name()) {
                return Err(Error::Argument(format!(
                    "output column {:?} would appear twice in {}",
                    f.name(),
                    path.display()
                )));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let writer = ArrowWriter::try_new(tmp, schema.clone(), Some(props))
            .map_err(|e| Error::Data { path: path.to_owned(), reason: format!("cannot write Parquet: {e}") })?;
        Ok(ParquetWriter { path: path.to_owned(), writer, schema, dtype, row_index })
    }

    /// Appends a batch: the kept columns, the row indices `first_row…` (when the file has a
    /// `row` column), one column per feature of the row-major `rows` `[n, dim]` (none when
    /// `dim` is 0) and `per_row` `[n]`; `nulls` marks rows whose results are written as null.
    pub fn write<T: Real>(
        &mut self,
        kept: Vec<ArrayRef>,
        first_row: u64,
        rows: &[T],
        dim: usize,
        per_row: &[T],
        nulls: Option<&NullBuffer>,
    ) -> Result<()> {
        let n = per_row.len();
        let mut columns = kept;
        if self.row_index {
            columns.push(Arc::new(UInt64Array::from_iter_values(first_row..first_row + n as u64)));
        }
        for j in 0..dim {
            columns.push(self.column(rows.iter().skip(j).step_by(dim), nulls));
        }
        columns.push(self.column(per_row.iter(), nulls));
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.error(e))?;
        self.writer.write(&batch).map_err(|e| self.error(e))
    }

    /// One result column in the file's precision.
    fn column<'a, T: Real>(&self, values: impl Iterator<Item = &'a T>, nulls: Option<&NullBuffer>) -> ArrayRef {
        match self.dtype {
            NpyDtype::F32 => Arc::new(Float32Array::new(values.map(|&v| Real::to_f32(v)).collect(), nulls.cloned())),
            NpyDtype::F64 => Arc::new(Float64Array::new(values.map(|&v| v.wide()).collect(), nulls.cloned())),
        }
    }

    /// Completes the file (its footer) for [`crate::output::commit_all`]. An unfinished
    /// Parquet file has no footer and is not valid.
    pub fn finish(self) -> Result<OutputFile> {
        let path = self.path;
        self.writer
            .into_inner()
            .map_err(|e| Error::Data { path: path.clone(), reason: format!("cannot write Parquet: {e}") })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Data { path: self.path.clone(), reason: format!("cannot write Parquet: {e}") }
    }
}
