//! The float64 CPU reference as an [`Engine`] (`--device cpu`): [`crate::reference`] over
//! rows of either precision. Float32 rows are widened exactly; results are rounded once, on
//! the way out; the log-likelihood reduction sums the float64 values.

use std::sync::Arc;

use crate::engine::{thread_count, Engine, LogLikelihoodSum, Pass};
use crate::error::Result;
use crate::model::Flow;
use crate::real::{Batch, Io, Real};
use crate::reference;

/// The float64 CPU reference as an [`Engine`].
pub struct CpuReference {
    flow: Arc<Flow>,
}

impl CpuReference {
    /// Wraps a validated flow.
    pub fn new(flow: Arc<Flow>) -> Self {
        CpuReference { flow }
    }

    fn run_in<T: Real>(&self, pass: Pass, io: Io<'_, T>, sum: &mut LogLikelihoodSum) -> Result<()> {
        let n = io.check(pass.maps_rows(), self.flow.dim)?;
        let input: Vec<f64> = io.input.iter().map(|v| v.wide()).collect();
        let mut rows = vec![0.0; io.rows.len()];
        let mut per_row = vec![0.0; n];
        match pass {
            Pass::LogProb => {
                reference::log_prob(&self.flow, &input, &mut per_row);
                sum.add_rows(&per_row);
            }
            Pass::ToLatent => reference::forward_to_latent(&self.flow, &input, &mut rows, &mut per_row),
            Pass::ToData => reference::inverse_to_data(&self.flow, &input, &mut rows, &mut per_row),
        }
        io.rows.iter_mut().zip(&rows).for_each(|(o, &v)| *o = T::of(v));
        io.per_row.iter_mut().zip(&per_row).for_each(|(o, &v)| *o = T::of(v));
        Ok(())
    }
}

impl Engine for CpuReference {
    fn name(&self) -> String {
        format!("cpu (float64 reference, {})", thread_count())
    }

    fn flow(&self) -> &Flow {
        &self.flow
    }

    fn run(&self, pass: Pass, batch: Batch<'_>, sum: &mut LogLikelihoodSum) -> Result<()> {
        crate::with_io!(batch, io => self.run_in(pass, io, sum))
    }
}
