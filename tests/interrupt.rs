//! Interrupted and concurrent runs (issue #16): SIGINT/SIGTERM stop a run within a second and
//! leave no output and no temporary file; a run killed at any moment (SIGKILL, SIGTERM) never
//! leaves a complete-looking output; two processes writing one output end with one complete
//! file.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use realnvp::npy::{read_all, write_all, NpyDtype, NpyReader};

mod common;

fn realnvp() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realnvp"));
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -{name} failed");
}

/// Waits until `dir` holds a temporary output file (the run is writing), at most `limit`.
fn wait_for_partial(dir: &Path, limit: Duration) {
    let start = Instant::now();
    while !files_in(dir).iter().any(|f| f.starts_with(".realnvp-partial-")) {
        assert!(start.elapsed() < limit, "no temporary output appeared in {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A model in `dir`.
fn model(dir: &Path) -> PathBuf {
    let path = dir.join("m.safetensors");
    let spec =
        realnvp::random::InitSpec { dim: 4, layers: 4, hidden: vec![32, 32], ..realnvp::random::InitSpec::seed4d(4) };
    realnvp::random::init_flow(&spec, 5).unwrap().save(&path, realnvp::format::TensorDtype::F32).unwrap();
    path
}

#[test]
fn sigint_and_sigterm_stop_a_run_within_a_second_and_leave_nothing() {
    let dir = common::tempdir();
    let m = model(dir.path());
    for (sig, code, output) in [("INT", 130, "s.npy"), ("TERM", 143, "s.parquet"), ("HUP", 129, "s.npy")] {
        let before = files_in(dir.path());
        // a run of minutes: 10⁹ rows on the float64 reference
        let child = realnvp()
            .args(["sample", "--model", m.to_str().unwrap(), "-n", "1000000000", "--device", "cpu", "--output"])
            .arg(dir.path().join(output))
            .spawn()
            .unwrap();
        wait_for_partial(dir.path(), Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(200));
        let sent = Instant::now();
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let took = sent.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(took < Duration::from_secs(1), "SIG{sig}: the run took {took:?} to stop");
        assert_eq!(out.status.code(), Some(code), "SIG{sig}: {stderr}");
        assert!(stderr.contains("interrupted") && !stderr.contains("panicked"), "SIG{sig}: {stderr}");
        assert_eq!(files_in(dir.path()), before, "SIG{sig} left files behind");
    }
}

/// A signal during one long chunk (here 2·10⁶ rows on the float64 reference, seconds of work):
/// the run cannot reach its next check, so after the grace period the handler deletes the
/// temporary output itself and exits, within a second of the signal.
#[test]
fn a_signal_during_a_long_chunk_ends_the_run_after_the_grace_period() {
    let dir = common::tempdir();
    let m = model(dir.path());
    let x = dir.path().join("x.npy");
    let rows = 2_000_000;
    write_all(&x, &[rows, 4], &vec![0.5f32; rows * 4], NpyDtype::F32).unwrap();
    let before = files_in(dir.path());
    let child = realnvp()
        .args(["score", "--model", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "--device", "cpu"])
        .args(["--chunk-rows", "100000000", "--output"])
        .arg(dir.path().join("lp.npy"))
        .spawn()
        .unwrap();
    wait_for_partial(dir.path(), Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(100));
    let sent = Instant::now();
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(took < Duration::from_secs(1), "the run took {took:?} to stop");
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert_eq!(files_in(dir.path()), before, "the temporary output was left behind");
}

/// Kills `realnvp score` at 20 random moments of a run (SIGKILL and SIGTERM alternately): the
/// output is either absent or the complete, correct file; a temporary file a SIGKILL leaves
/// is never a valid `.npy` (its magic string says PARTL until the file is complete).
#[test]
fn runs_killed_at_random_moments_never_leave_a_complete_looking_output() {
    let dir = common::tempdir();
    let m = model(dir.path());
    let x = dir.path().join("x.npy");
    let rows = 400_000;
    let values: Vec<f32> = (0..rows * 4).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
    write_all(&x, &[rows, 4], &values, NpyDtype::F32).unwrap();
    let out = dir.path().join("lp.npy");
    let score = || {
        let mut cmd = realnvp();
        cmd.args(["score", "--model", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "--device", "cpu"]);
        cmd.args(["--chunk-rows", "4000", "--output", out.to_str().unwrap()]);
        cmd
    };
    let start = Instant::now();
    assert!(score().status().unwrap().success());
    let full_run = start.elapsed();
    let complete = read_all(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(common::seeds(1)[0]);
    let (mut absent, mut finished) = (0, 0);
    for k in 0..20 {
        let child = score().spawn().unwrap();
        std::thread::sleep(full_run.mul_f64(rng.random_range(0.0..1.1)));
        if k % 2 == 0 {
            signal(&child, "KILL");
        } else {
            signal(&child, "TERM");
        }
        let status = child.wait_with_output().unwrap().status;
        if out.exists() {
            assert_eq!(read_all(&out).unwrap(), complete, "moment {k}: an output that is not the complete one");
            assert!(status.success() || status.code() == Some(143), "moment {k}: output exists after {status:?}");
            std::fs::remove_file(&out).unwrap();
            finished += 1;
        } else {
            absent += 1;
        }
        for leftover in files_in(dir.path()).iter().filter(|f| f.starts_with(".realnvp-partial-")) {
            let path = dir.path().join(leftover);
            assert!(k % 2 == 0, "moment {k}: SIGTERM left {leftover}");
            assert!(NpyReader::open(&path).is_err(), "moment {k}: the leftover {leftover} reads as a valid .npy");
            let magic = std::fs::read(&path).unwrap().get(..6).map(<[u8]>::to_vec);
            assert_ne!(magic.as_deref(), Some(&b"\x93NUMPY"[..]), "moment {k}: {leftover} has the .npy magic string");
            std::fs::remove_file(path).unwrap();
        }
    }
    eprintln!("20 kills: {absent} left no output, {finished} had finished (full run {full_run:?})");
    assert!(absent > 0, "no kill landed during a run");
}

/// Two processes writing the same output at once: it ends as one of the two complete files.
#[test]
fn two_processes_writing_one_output_end_with_one_complete_file() {
    let dir = common::tempdir();
    let m = model(dir.path());
    let sample = |seed: &str, out: &Path| {
        let mut cmd = realnvp();
        cmd.args(["sample", "--model", m.to_str().unwrap(), "-n", "300000", "--device", "native", "--seed", seed]);
        cmd.args(["--chunk-rows", "5000", "--output", out.to_str().unwrap()]);
        cmd
    };
    let (a, b, same) = (dir.path().join("a.npy"), dir.path().join("b.npy"), dir.path().join("same.npy"));
    assert!(sample("1", &a).status().unwrap().success());
    assert!(sample("2", &b).status().unwrap().success());
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_ne!(a, b);
    for round in 0..3 {
        let one = sample("1", &same).spawn().unwrap();
        let two = sample("2", &same).spawn().unwrap();
        assert!(one.wait_with_output().unwrap().status.success());
        assert!(two.wait_with_output().unwrap().status.success());
        let got = std::fs::read(&same).unwrap();
        assert!(got == a || got == b, "round {round}: the output is neither run's file");
        assert!(!files_in(dir.path()).iter().any(|f| f.starts_with(".realnvp-partial-")));
    }
}
