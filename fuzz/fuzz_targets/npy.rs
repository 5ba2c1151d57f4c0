//! A data file's bytes → `NpyReader` (header, dtype, shape, size checks) and reading every
//! row in both precisions.
#![no_main]

use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    file.write_all(data).expect("write");
    for wide in [false, true] {
        let Ok(mut reader) = realnvp::npy::NpyReader::open(file.path()) else { return };
        let expected = reader.rows() * reader.cols();
        let mut got = 0;
        loop {
            let n = if wide {
                let mut out = Vec::<f64>::new();
                let n = reader.read_rows(7, &mut out).expect("a checked file reads");
                assert_eq!(out.len(), n * reader.cols());
                n
            } else {
                let mut out = Vec::<f32>::new();
                let n = reader.read_rows(7, &mut out).expect("a checked file reads");
                assert_eq!(out.len(), n * reader.cols());
                n
            };
            if n == 0 {
                break;
            }
            got += n * reader.cols();
        }
        assert_eq!(got, expected);
    }
});
