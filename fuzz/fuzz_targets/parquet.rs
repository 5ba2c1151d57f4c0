//! A Parquet file's bytes → `ParquetReader` (footer, schema, column types, nulls) and reading
//! every row group, with the feature columns chosen by the reader.
#![no_main]

use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    file.write_all(data).expect("write");
    let Ok(mut reader) = realnvp::parquet::ParquetReader::open(file.path(), &[], &[], 5) else { return };
    let mut out = Vec::<f64>::new();
    while let Ok(Some(chunk)) = reader.read(&mut out) {
        assert!(chunk.rows <= 5);
    }
});
