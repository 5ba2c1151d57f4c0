//! `--device all`: one batch split across several engines in proportion to their measured
//! speed, evaluated concurrently, results merged in row order.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::{Engine, LogLikelihoodSum, Pass};
use crate::error::{Error, Result};
use crate::model::Flow;
use crate::real::{Batch, Io, Real};
use crate::sample::Draw;

/// Rows used to measure each engine's speed when the split engine is opened.
const CALIBRATION_ROWS: usize = 4096;

/// Several engines behind one [`Engine`]. Each batch is cut into contiguous row ranges, one
/// per engine, sized by the engines' measured log-likelihood throughput and aligned to whole
/// workgroups.
pub struct SplitEngine {
    flow: Arc<Flow>,
    engines: Vec<Box<dyn Engine>>,
    /// Fraction of each batch per engine (sums to 1).
    shares: Vec<f64>,
}

impl SplitEngine {
    /// Measures every engine on a small batch and fixes the shares.
    pub fn new(flow: Arc<Flow>, engines: Vec<Box<dyn Engine>>) -> Result<Self> {
        if engines.is_empty() {
            return Err(Error::Argument("no engine to split the batch across".into()));
        }
        let x: Vec<f32> = (0..CALIBRATION_ROWS * flow.dim).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let mut speeds = Vec::new();
        for e in &engines {
            let mut logp = vec![0.0f32; CALIBRATION_ROWS];
            e.log_prob(&x, &mut logp, &mut LogLikelihoodSum::default())?; // first use compiles
            let start = Instant::now();
            e.log_prob(&x, &mut logp, &mut LogLikelihoodSum::default())?;
            speeds.push(CALIBRATION_ROWS as f64 / start.elapsed().as_secs_f64().max(1e-9));
        }
        let total: f64 = speeds.iter().sum();
        Ok(SplitEngine { flow, engines, shares: speeds.iter().map(|s| s / total).collect() })
    }

    /// Engine names with their share of each batch.
    pub fn shares(&self) -> Vec<(String, f64)> {
        self.engines.iter().zip(&self.shares).map(|(e, &s)| (e.name(), s)).collect()
    }

    /// Contiguous row ranges, one per engine, in workgroup multiples.
    fn ranges(&self, n: usize) -> Vec<(usize, usize)> {
        let align = self.row_alignment();
        let mut ranges = Vec::with_capacity(self.engines.len());
        let mut start = 0;
        for (k, share) in self.shares.iter().enumerate() {
            let end = if k + 1 == self.shares.len() {
                n
            } else {
                let cut = (n as f64 * share) as usize;
                (start + cut.div_ceil(align) * align).min(n)
            };
            ranges.push((start, end));
            start = end;
        }
        ranges
    }

    /// Runs `f(engine, item)` for every engine with its own work item, concurrently.
    fn concurrently<T: Send>(&self, work: Vec<T>, f: impl Fn(&dyn Engine, T) -> Result<()> + Sync) -> Result<()> {
        std::thread::scope(|scope| {
            let f = &f;
            let handles: Vec<_> =
                self.engines.iter().zip(work).map(|(e, item)| scope.spawn(move || f(e.as_ref(), item))).collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().map_err(|_| Error::Gpu("an engine thread panicked".into()))?)
        })
    }
}

/// Splits `data` (`[n, width]`) into mutable pieces for the given row ranges.
fn split_rows<'a, T>(mut data: &'a mut [T], width: usize, ranges: &[(usize, usize)]) -> Vec<&'a mut [T]> {
    let mut pieces = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges {
        let (head, tail) = std::mem::take(&mut data).split_at_mut((b - a) * width);
        pieces.push(head);
        data = tail;
    }
    pieces
}

impl Engine for SplitEngine {
    fn name(&self) -> String {
        let parts: Vec<String> = self.shares().iter().map(|(n, s)| format!("{n} {:.0}%", 100.0 * s)).collect();
        format!("all [{}]", parts.join(" + "))
    }

    fn flow(&self) -> &Flow {
        &self.flow
    }

    fn row_alignment(&self) -> usize {
        self.engines.iter().map(|e| e.row_alignment()).max().unwrap_or(1)
    }

    fn run(&self, pass: Pass, batch: Batch<'_>, sum: &mut LogLikelihoodSum) -> Result<()> {
        crate::with_io!(batch, io => self.run_in(pass, io, sum))
    }

    fn sample(&self, draw: &Draw, batch: Batch<'_>) -> Result<()> {
        crate::with_io!(batch, io => self.sample_in(draw, io))
    }
}

impl SplitEngine {
    /// Each engine draws its own row range (`first_row` shifted), so the rows are the same
    /// as one engine's.
    fn sample_in<T: Real>(&self, draw: &Draw, io: Io<'_, T>) -> Result<()> {
        let d = self.flow.dim;
        let n = io.check_sample(d)?;
        draw.check(n)?;
        let ranges = self.ranges(n);
        let work: Vec<_> =
            ranges.iter().zip(split_rows(io.rows, d, &ranges)).zip(split_rows(io.per_row, 1, &ranges)).collect();
        self.concurrently(work, |e, ((&(a, _), rows), per_row)| {
            e.sample(&draw.skip(a as u64), T::batch(Io { input: &[], rows, per_row }))
        })
    }

    /// Cuts the batch into one row range per engine, runs them concurrently and merges the
    /// ranges' reductions in row order.
    fn run_in<T: Real>(&self, pass: Pass, io: Io<'_, T>, sum: &mut LogLikelihoodSum) -> Result<()> {
        let d = self.flow.dim;
        let n = io.check(pass.maps_rows(), d)?;
        let ranges = self.ranges(n);
        let mut sums = vec![LogLikelihoodSum::default(); ranges.len()];
        let width = if pass.maps_rows() { d } else { 0 };
        let work: Vec<_> = ranges
            .iter()
            .zip(split_rows(io.rows, width, &ranges))
            .zip(split_rows(io.per_row, 1, &ranges))
            .zip(sums.iter_mut())
            .map(|(((&(a, b), rows), per_row), s)| (Io { input: &io.input[a * d..b * d], rows, per_row }, s))
            .collect();
        self.concurrently(work, |e, (io, s)| e.run(pass, T::batch(io), s))?;
        sums.iter().for_each(|s| sum.merge(s));
        Ok(())
    }
}
