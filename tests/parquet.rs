//! Parquet in and out (issue #15): tables with mixed float32/float64 feature columns, an id
//! column, nulls and NaNs scored in chunks across row groups equal the engine on the same rows;
//! a directory of files read as one table; forward/inverse and sample round trips; every bad
//! input (a dataset whose files disagree included) is an error that writes nothing;
//! memory stays bounded on a file larger than the chunk.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use realnvp::engine::{Engine, LogLikelihoodSum};
use realnvp::npy::NpyDtype;
use realnvp::pipeline::{sample_to_file, score_file, transform_file, StreamOptions};
use realnvp::random::reference_model;
use realnvp::sample::Draw;
use realnvp::{Device, Pass};

use common::{gaussian_rows, tempdir};

/// Columns id (i64), a (f32), b (f64), name (string), c (f32, NaN every 1000th row), d (f64,
/// null every 997th row); row groups of `group` rows. Returns the rows [n, 4] as the file holds
/// them (float32 columns rounded), nulls as NaN.
fn write_table(path: &Path, n: usize, group: usize) -> Vec<f64> {
    let x = gaussian_rows(n, 4, 15);
    let col = |j: usize| (0..n).map(|i| x[i * 4 + j]).collect::<Vec<f64>>().into_iter();
    let a: Vec<f32> = col(0).map(|v| v as f32).collect();
    let b: Vec<f64> = col(1).collect();
    let c: Vec<f32> = col(2).enumerate().map(|(i, v)| if i % 1000 == 7 { f32::NAN } else { v as f32 }).collect();
    let d: Vec<Option<f64>> = col(3).enumerate().map(|(i, v)| (i % 997 != 3).then_some(v)).collect();
    let mut rows = Vec::with_capacity(n * 4);
    for i in 0..n {
        rows.extend([f64::from(a[i]), b[i], f64::from(c[i]), d[i].unwrap_or(f64::NAN)]);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from_iter_values(0..n as i64))),
        ("a", Arc::new(Float32Array::from(a))),
        ("b", Arc::new(Float64Array::from(b))),
        ("name", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("r{i}"))))),
        ("c", Arc::new(Float32Array::from(c))),
        ("d", Arc::new(Float64Array::from(d))),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(group)).build();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    rows
}

fn read_table(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    arrow_select_concat(&batches)
}

/// Concatenates batches of one schema (a small stand-in for arrow_select::concat_batches).
fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    let schema = batches[0].schema();
    let columns = (0..schema.fields().len())
        .map(|j| {
            let parts: Vec<&dyn arrow_array::Array> = batches.iter().map(|b| b.column(j).as_ref()).collect();
            arrow_select::concat::concat(&parts).unwrap()
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

/// seed4d's native engine and its per-row log p and reduction of `rows` `[n, 4]` in memory:
/// what scoring the same rows from Parquet must give.
fn native_seed4d_log_prob(rows: &[f64]) -> (Box<dyn Engine>, Vec<f64>, LogLikelihoodSum) {
    let engine = reference_model("seed4d").unwrap().engine(&Device::Native).unwrap();
    let mut want = vec![0.0f64; rows.len() / 4];
    let mut sum = LogLikelihoodSum::default();
    engine.log_prob(rows, &mut want, &mut sum).unwrap();
    (engine, want, sum)
}

fn options(chunk_rows: usize, columns: &[&str], keep: &[&str]) -> StreamOptions {
    StreamOptions {
        chunk_rows,
        progress: false,
        columns: columns.iter().map(|s| s.to_string()).collect(),
        keep: keep.iter().map(|s| s.to_string()).collect(),
        ..StreamOptions::default()
    }
}

#[test]
fn parquet_scores_equal_the_engine_on_the_same_rows() {
    let dir = tempdir();
    let input = dir.path().join("x.parquet");
    let n = 10_000;
    let rows = write_table(&input, n, 3000);
    let (engine, want, want_sum) = native_seed4d_log_prob(&rows);
    for chunk in [256, 1024, 4096] {
        let out = dir.path().join(format!("lp{chunk}.parquet"));
        let opts = options(chunk, &["a", "b", "c", "d"], &["id"]);
        let summary = score_file(engine.as_ref(), &input, Some(&out), &opts).unwrap();
        assert_eq!(summary.rows, n as u64);
        // 10 NaN rows (c) and 11 null rows (d) count as non-finite
        assert_eq!(summary.nonfinite_rows, 10 + 11);
        assert_eq!(summary.mean_log_likelihood, want_sum.mean(), "chunk {chunk}");
        let table = read_table(&out);
        assert_eq!(table.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["id", "log_prob"]);
        let ids = table.column(0).as_primitive::<Int64Type>();
        assert!(ids.values().iter().enumerate().all(|(i, &id)| id == i as i64), "ids kept in order");
        let logp = table.column(1).as_primitive::<Float32Type>();
        for (i, &want) in want.iter().enumerate().take(n) {
            if i % 997 == 3 {
                assert!(logp.is_null(i), "row {i} has a null feature: null log p");
            } else if i % 1000 == 7 {
                assert!(logp.value(i).is_nan(), "row {i} has a NaN feature: NaN log p");
            } else {
                assert_eq!(logp.value(i), want as f32, "row {i}");
            }
        }
    }
}

#[test]
fn column_order_comes_from_columns_and_float64_output_from_f64() {
    let dir = tempdir();
    let input = dir.path().join("x.parquet");
    let rows = write_table(&input, 500, 200);
    let flow = reference_model("seed4d").unwrap();
    let engine = flow.engine(&Device::Cpu).unwrap();
    // reversed column order = reversed features
    let reversed: Vec<f64> = rows.chunks(4).flat_map(|r| [r[3], r[2], r[1], r[0]]).collect();
    let mut want = vec![0.0f64; 500];
    engine.log_prob(&reversed, &mut want, &mut LogLikelihoodSum::default()).unwrap();
    let out = dir.path().join("lp.parquet");
    let opts = StreamOptions { output_dtype: NpyDtype::F64, ..options(128, &["d", "c", "b", "a"], &[]) };
    score_file(engine.as_ref(), &input, Some(&out), &opts).unwrap();
    let logp = read_table(&out).column(0).as_primitive::<Float64Type>().clone();
    for (i, w) in want.iter().enumerate() {
        if i % 997 != 3 && i % 1000 != 7 {
            assert_eq!(logp.value(i), *w, "row {i}");
        }
    }
}

#[test]
fn forward_then_inverse_through_parquet_round_trips() {
    let dir = tempdir();
    let input = dir.path().join("x.parquet");
    let rows = write_table(&input, 3000, 1000);
    let flow = reference_model("seed4d").unwrap();
    let engine = flow.engine(&Device::Native).unwrap();
    let z = dir.path().join("z.parquet");
    transform_file(
        engine.as_ref(),
        Pass::ToLatent,
        &input,
        &z,
        None,
        &options(512, &["a", "b", "c", "d"], &["id", "name"]),
    )
    .unwrap();
    let back = dir.path().join("x_back.parquet");
    transform_file(engine.as_ref(), Pass::ToData, &z, &back, None, &options(700, &["z0", "z1", "z2", "z3"], &["id"]))
        .unwrap();
    let zt = read_table(&z);
    let names: Vec<String> = zt.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "name", "z0", "z1", "z2", "z3", "logdet"]);
    let bt = read_table(&back);
    let ld_fwd = zt.column(6).as_primitive::<Float32Type>();
    let ld_inv = bt.column(5).as_primitive::<Float32Type>();
    for i in (0..3000).filter(|i| i % 997 != 3 && i % 1000 != 7) {
        for j in 0..4 {
            let x = bt.column(1 + j).as_primitive::<Float32Type>().value(i) as f64;
            assert!((x - rows[i * 4 + j]).abs() <= 1e-4 * (1.0 + rows[i * 4 + j].abs()), "row {i} feature {j}");
        }
        assert!((ld_fwd.value(i) + ld_inv.value(i)).abs() <= 1e-4, "row {i}: log-dets cancel");
    }
    assert!(zt.column(2).is_null(3) && bt.column(1).is_null(3), "a null feature stays null through both maps");
}

#[test]
fn parquet_samples_equal_npy_samples_row_for_row() {
    let dir = tempdir();
    let flow = reference_model("seed4d").unwrap();
    let engine = flow.engine(&Device::Native).unwrap();
    let draw = Draw { seed: 9, first_row: 1_000, temperature: 0.9 };
    let (npy, lq, pq) = (dir.path().join("s.npy"), dir.path().join("q.npy"), dir.path().join("s.parquet"));
    sample_to_file(engine.as_ref(), 2500, &draw, &npy, Some(&lq), &options(1000, &[], &[])).unwrap();
    sample_to_file(engine.as_ref(), 2500, &draw, &pq, None, &options(333, &[], &[])).unwrap();
    let (x, _, _) = realnvp::npy::read_all(&npy).unwrap();
    let (q, _, _) = realnvp::npy::read_all(&lq).unwrap();
    let t = read_table(&pq);
    let row = t.column(0).as_primitive::<UInt64Type>();
    for i in 0..2500 {
        assert_eq!(row.value(i), 1000 + i as u64);
        for j in 0..4 {
            assert_eq!(t.column(1 + j).as_primitive::<Float32Type>().value(i) as f64, x[i * 4 + j]);
        }
        assert_eq!(t.column(5).as_primitive::<Float32Type>().value(i) as f64, q[i]);
    }
}

#[test]
fn bad_parquet_input_is_a_clear_error_that_writes_nothing() {
    let dir = tempdir();
    let input = dir.path().join("x.parquet");
    write_table(&input, 100, 50);
    let flow = reference_model("seed4d").unwrap();
    let engine = flow.engine(&Device::Native).unwrap();
    let out = dir.path().join("out.parquet");
    let cases: Vec<(StreamOptions, &str)> = vec![
        (options(0, &[], &[]), "column \"id\" is Int64; feature columns must be float32 or float64"),
        (options(0, &[], &["id"]), "column \"name\" is Utf8"),
        (options(0, &["a", "b", "c", "e"], &[]), "no column \"e\"; the file has id, a, b, name, c, d"),
        (options(0, &["a", "b", "c"], &[]), "the model has D = 4 but the input has 3 columns"),
        (options(0, &["a", "b", "c", "d"], &["a"]), "column \"a\" is both a feature and kept"),
        (options(0, &["a", "b", "c", "d"], &["nope"]), "no column \"nope\""),
    ];
    for (opts, message) in cases {
        let err = score_file(engine.as_ref(), &input, Some(&out), &opts).unwrap_err().to_string();
        assert!(err.contains(message), "{err}");
        assert!(!out.exists());
    }
    let npy_out = dir.path().join("lp.npy");
    let err =
        score_file(engine.as_ref(), &input, Some(&npy_out), &options(0, &["a", "b", "c", "d"], &["id"])).unwrap_err();
    assert!(err.to_string().contains("--keep needs a Parquet output"), "{err}");
    assert!(!npy_out.exists());
    let err = transform_file(
        engine.as_ref(),
        Pass::ToLatent,
        &input,
        &out,
        Some(&dir.path().join("ld.npy")),
        &options(0, &["a", "b", "c", "d"], &[]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("gets the column \"logdet\""), "{err}");
    let not_parquet = dir.path().join("bad.parquet");
    std::fs::write(&not_parquet, b"PAR1 this is not a parquet file").unwrap();
    let err = score_file(engine.as_ref(), &not_parquet, None, &options(0, &[], &[])).unwrap_err();
    assert!(err.to_string().contains("not a readable Parquet file"), "{err}");
    let npy_in = dir.path().join("x.npy");
    realnvp::npy::write_all(&npy_in, &[3, 4], &[0.0f32; 12], NpyDtype::F32).unwrap();
    let err = score_file(engine.as_ref(), &npy_in, None, &options(0, &["a"], &[])).unwrap_err();
    assert!(err.to_string().contains("--columns and --keep apply to Parquet input"), "{err}");
}

/// Issue #31: a table with two columns of one name was read without a word (the first one):
/// a feature or kept column whose name is not unique is refused, naming it, and nothing is
/// written; the other columns still read.
#[test]
fn a_column_name_the_file_holds_twice_is_refused_as_ambiguous() {
    let dir = tempdir();
    let input = dir.path().join("dup.parquet");
    let n = 20;
    let x = gaussian_rows(n, 5, 31);
    let col = |j: usize| Arc::new(Float64Array::from((0..n).map(|i| x[i * 5 + j]).collect::<Vec<f64>>())) as ArrayRef;
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("a", col(0)),
        ("b", col(1)),
        ("c", col(2)),
        ("d", col(3)),
        ("e", col(4)),
        ("b", col(0)),
        ("id", Arc::new(Int64Array::from_iter_values(0..n as i64))),
        ("id", Arc::new(Int64Array::from_iter_values(0..n as i64))),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w = ArrowWriter::try_new(File::create(&input).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let flow = reference_model("seed4d").unwrap();
    let engine = flow.engine(&Device::Native).unwrap();
    let out = dir.path().join("out.parquet");
    std::fs::write(&out, b"an existing output").unwrap();
    for (columns, keep, name) in
        [(&["a", "b", "c", "d"][..], &[][..], "\"b\""), (&["a", "c", "d", "e"][..], &["id"][..], "\"id\"")]
    {
        let err = score_file(engine.as_ref(), &input, Some(&out), &options(0, columns, keep)).unwrap_err().to_string();
        assert!(err.contains(&format!("the file has 2 columns named {name}")), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"an existing output");
    }
    // the columns whose names are unique still read
    let npy_out = dir.path().join("lp.npy");
    score_file(engine.as_ref(), &input, Some(&npy_out), &options(0, &["a", "c", "d", "e"], &[])).unwrap();
    assert!(npy_out.exists());
}

#[test]
fn parquet_scoring_memory_stays_bounded_on_a_file_larger_than_the_chunk() {
    // 4·10⁶ rows × 4 float32 features = 64 MB of features (plus 32 MB of ids), chunks of 2¹⁶ rows
    let dir = tempdir();
    let input = dir.path().join("big.parquet");
    let n = 4_000_000usize;
    let schema_batch = |start: usize, len: usize| {
        let x: Vec<f32> = (start..start + len).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(Int64Array::from_iter_values((start..start + len).map(|i| i as i64)))),
            ("a", Arc::new(Float32Array::from(x.clone()))),
            ("b", Arc::new(Float32Array::from(x.iter().map(|v| -v).collect::<Vec<_>>()))),
            ("c", Arc::new(Float32Array::from(x.iter().map(|v| v * 0.5).collect::<Vec<_>>()))),
            ("d", Arc::new(Float32Array::from(x))),
        ];
        RecordBatch::try_from_iter(cols).unwrap()
    };
    let first = schema_batch(0, 1);
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(1 << 18)).build();
    let mut w = ArrowWriter::try_new(File::create(&input).unwrap(), first.schema(), Some(props)).unwrap();
    for start in (0..n).step_by(1 << 18) {
        w.write(&schema_batch(start, (1 << 18).min(n - start))).unwrap();
    }
    w.close().unwrap();
    let model = dir.path().join("m.safetensors");
    reference_model("seed4d").unwrap().save(&model, realnvp::format::TensorDtype::F32).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_realnvp"))
        .args(["score", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()])
        .args(["--output", dir.path().join("lp.parquet").to_str().unwrap(), "--keep", "id"])
        .args(["--columns", "a,b,c,d", "--device", "native", "--chunk-rows", "65536", "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rows"], n as u64);
    let Some(rss) = summary["peak_rss_bytes"].as_u64() else {
        if cfg!(target_os = "linux") {
            panic!("peak RSS is read from /proc on Linux");
        }
        return;
    };
    assert!(rss < 64 << 20, "peak RSS {} MiB for 96 MB of input", rss >> 20);
}

/// A model that records its feature names (`init`/`convert --feature-names`) reads those
/// columns by default, whatever their order in the file, and names its data-space outputs
/// by them; the latent side stays `z0…`. Names that do not fit D are refused.
#[test]
fn feature_names_in_the_model_choose_the_columns_and_name_the_outputs() {
    let dir = tempdir();
    let input = dir.path().join("x.parquet");
    write_table(&input, 1200, 500);
    let mut named = reference_model("seed4d").unwrap();
    // the file holds a, b, c, d; the model's features are d, c, b, a
    named.features = Some(["d", "c", "b", "a"].map(String::from).to_vec());
    let named = std::sync::Arc::new(named);
    let engine = named.engine(&Device::Cpu).unwrap();
    let (by_names, by_columns) = (dir.path().join("n.parquet"), dir.path().join("c.parquet"));
    score_file(engine.as_ref(), &input, Some(&by_names), &options(300, &[], &["id"])).unwrap();
    score_file(engine.as_ref(), &input, Some(&by_columns), &options(300, &["d", "c", "b", "a"], &["id"])).unwrap();
    let (n, c) = (read_table(&by_names), read_table(&by_columns));
    assert_eq!(n.column(1).as_ref(), c.column(1).as_ref(), "default columns = --columns d,c,b,a");
    // without names the default is every column not kept, in file order: a, b, c, d (id, name
    // are kept or refused): a different result
    let plain = reference_model("seed4d").unwrap().engine(&Device::Cpu).unwrap();
    let unnamed = dir.path().join("u.parquet");
    score_file(plain.as_ref(), &input, Some(&unnamed), &options(300, &[], &["id", "name"])).unwrap();
    assert_ne!(read_table(&unnamed).column(2).as_ref(), n.column(1).as_ref());

    let names =
        |path: &Path| -> Vec<String> { read_table(path).schema().fields().iter().map(|f| f.name().clone()).collect() };
    let samples = dir.path().join("s.parquet");
    sample_to_file(engine.as_ref(), 10, &Draw::new(1, 0), &samples, None, &options(0, &[], &[])).unwrap();
    assert_eq!(names(&samples), ["row", "d", "c", "b", "a", "log_q"]);
    let z = dir.path().join("z.parquet");
    transform_file(engine.as_ref(), Pass::ToLatent, &input, &z, None, &options(0, &[], &["id"])).unwrap();
    assert_eq!(names(&z), ["id", "z0", "z1", "z2", "z3", "logdet"]);
    let x = dir.path().join("back.parquet");
    transform_file(engine.as_ref(), Pass::ToData, &z, &x, None, &options(0, &["z0", "z1", "z2", "z3"], &[])).unwrap();
    assert_eq!(names(&x), ["d", "c", "b", "a", "logdet"]);

    // the names survive the model file; names that do not fit are refused
    let path = dir.path().join("m.safetensors");
    named.save(&path, realnvp::format::TensorDtype::F32).unwrap();
    assert_eq!(realnvp::model::Flow::load(&path).unwrap().features, named.features);
    let bin = env!("CARGO_BIN_EXE_realnvp");
    for (names, needle) in [("a,b,c", "3 feature names"), ("a,b,a,d", "appears twice"), ("a,,c,d", "empty")] {
        let out = Command::new(bin)
            .args(["init", "--dim", "4", "--layers", "2", "--feature-names", names, "-o"])
            .arg(dir.path().join("bad.safetensors"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{names}: {err}");
        assert!(!dir.path().join("bad.safetensors").exists());
    }
    let out = Command::new(bin)
        .args(["init", "--dim", "4", "--layers", "2", "--feature-names", "p,q,r,s", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let info = Command::new(bin).arg("info").arg(&path).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("features         p, q, r, s"));
}

/// Writes rows `range` of `table` to `path` in row groups of `group` rows.
fn write_slice(table: &RecordBatch, range: std::ops::Range<usize>, path: &Path, group: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(group)).build();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), table.schema(), Some(props)).unwrap();
    w.write(&table.slice(range.start, range.len())).unwrap();
    w.close().unwrap();
}

#[test]
fn a_directory_of_parquet_files_is_read_as_one_table_in_path_order() {
    let dir = tempdir();
    let whole = dir.path().join("whole.parquet");
    let n = 5_000;
    let rows = write_table(&whole, n, n);
    let table = read_table(&whole);
    // three files, one in a subdirectory, of 1,200 / 2,500 / 1,300 rows; Spark's marker, a
    // hidden file and a _temporary directory beside them are not part of the table
    let data = dir.path().join("data");
    write_slice(&table, 0..1200, &data.join("part-0.parquet"), 500);
    write_slice(&table, 1200..3700, &data.join("part-1.parquet"), 1000);
    write_slice(&table, 3700..n, &data.join("year=2026/part-0.parquet"), 400);
    std::fs::write(data.join("_SUCCESS"), b"").unwrap();
    write_slice(&table, 0..10, &data.join(".part-2.parquet.crc.parquet"), 10);
    write_slice(&table, 0..10, &data.join("_temporary/part-9.parquet"), 10);
    // a link back up the tree is not followed (it would never end)
    #[cfg(unix)]
    std::os::unix::fs::symlink(&data, data.join("year=2026/loop")).unwrap();
    let (engine, want, want_sum) = native_seed4d_log_prob(&rows);
    // chunks smaller than a row group, spanning files' ends, and larger than a file
    for chunk in [300, 1024, 4096] {
        let out = dir.path().join(format!("lp{chunk}.parquet"));
        let summary =
            score_file(engine.as_ref(), &data, Some(&out), &options(chunk, &["a", "b", "c", "d"], &["id"])).unwrap();
        assert_eq!(summary.rows, n as u64);
        assert_eq!(summary.nonfinite_rows, 5 + 6, "NaN rows (c) and null rows (d)");
        // a chunk ends with its file, so the engine's float64 partial sums start at rows
        // 1,200 and 3,700 too: the same values added in another grouping (≤ 1e-15 relative)
        let (got, mean) = (summary.mean_log_likelihood, want_sum.mean());
        assert!((got - mean).abs() <= 1e-13 * mean.abs(), "chunk {chunk}: {got} vs {mean}");
        let scored = read_table(&out);
        let ids = scored.column(0).as_primitive::<Int64Type>();
        assert!(ids.values().iter().enumerate().all(|(i, &id)| id == i as i64), "every row once, in path order");
        let logp = scored.column(1).as_primitive::<Float32Type>();
        for (i, &want) in want.iter().enumerate() {
            if i % 997 == 3 {
                assert!(logp.is_null(i), "row {i}: null feature, null log p");
            } else if i % 1000 != 7 {
                assert_eq!(logp.value(i), want as f32, "row {i}");
            }
        }
    }
    // the CLI takes the directory too
    let out = dir.path().join("cli.parquet");
    let status = Command::new(env!("CARGO_BIN_EXE_realnvp"))
        .args(["score", "--model", "seed4d", "--device", "native", "--quiet", "--columns", "a,b,c,d", "--keep", "id"])
        .args(["--input", data.to_str().unwrap(), "--output", out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(read_table(&out).num_rows(), n);
}

#[test]
fn a_dataset_whose_files_disagree_is_an_error_naming_the_file_that_writes_nothing() {
    let dir = tempdir();
    let whole = dir.path().join("whole.parquet");
    write_table(&whole, 300, 300);
    let table = read_table(&whole);
    let data = dir.path().join("data");
    write_slice(&table, 0..100, &data.join("a.parquet"), 100);
    // b.parquet: column b as float32 where a.parquet has float64
    let b32: ArrayRef = Arc::new(Float32Array::from_iter_values(
        table.column(2).as_primitive::<Float64Type>().values().iter().skip(100).take(100).map(|&v| v as f32),
    ));
    let mut columns: Vec<ArrayRef> = table.slice(100, 100).columns().to_vec();
    columns[2] = b32;
    let names = ["id", "a", "b", "name", "c", "d"];
    let other = RecordBatch::try_from_iter(names.iter().zip(columns).map(|(n, c)| (*n, c))).unwrap();
    write_slice(&other, 0..100, &data.join("b.parquet"), 100);
    let flow = reference_model("seed4d").unwrap();
    let engine = flow.engine(&Device::Native).unwrap();
    let out = dir.path().join("out.parquet");
    let opts = options(0, &["a", "b", "c", "d"], &["id"]);
    let err = score_file(engine.as_ref(), &data, Some(&out), &opts).unwrap_err().to_string();
    assert!(err.contains("b.parquet") && err.contains("column \"b\" is Float32 here but Float64 in"), "{err}");
    assert!(!out.exists());
    // a file without a column the first has
    let no_d = RecordBatch::try_from_iter(["id", "a", "b", "c"].iter().map(|n| {
        let j = names.iter().position(|m| m == n).unwrap();
        (*n, table.slice(0, 10).column(j).clone())
    }))
    .unwrap();
    write_slice(&no_d, 0..10, &data.join("b.parquet"), 10);
    let err = score_file(engine.as_ref(), &data, Some(&out), &opts).unwrap_err().to_string();
    assert!(err.contains("b.parquet") && err.contains("no column \"d\""), "{err}");
    assert!(!out.exists());
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("_temporary")).unwrap();
    let err = score_file(engine.as_ref(), &empty, Some(&out), &opts).unwrap_err().to_string();
    assert!(err.contains("a directory with no .parquet files"), "{err}");
    assert!(!out.exists());
}
