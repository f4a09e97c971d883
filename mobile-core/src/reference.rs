//! The speed reference: one fixed network of a table's space that is timed throughout a profile and
//! again whenever the table is checked or used, so that "how fast was the device" becomes a measured
//! figure instead of a guess.
//!
//! A phone (and a shared VM) changes speed over minutes: heat, battery saver, other apps, a stolen
//! core. A table's entries carry the speed of the moment they were measured, and a later measurement
//! compared with them mixes the table's error with the device's drift. With the reference:
//! - the profile times it before the first covering network, after every one, and at the end; each
//!   covering network's record keeps the reference's time around it, and the fit divides every record by
//!   its speed relative to the median, so the entries stand for one speed (the median's) even when the
//!   device changed pace in the middle (and a network whose two reference timings disagree is measured
//!   again);
//! - `fbnet lut validate`, `fbnet bench --rescale` and the apps time it again and state the
//!   device's speed now as a ratio to the table's, and predict with that factor when asked.
//!
//! The reference is a random architecture of the table's space drawn with a fixed seed, so it runs the
//! same kernels as the networks it stands for; its text and weight seed are stored in the table.

use std::sync::atomic::AtomicBool;

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::lut::{Lut, ReferenceTiming, SpeedReference};
use crate::measure::{TimingConfig, build_at, median, random_inputs, time_session};
use crate::onnx::{Dtype, RandomWeights, arch_graph};
use crate::rng::SplitMix;
use crate::runtime::SessionConfig;
use crate::space::Space;

/// Seed of the draw that picks the reference architecture of a space.
const REFERENCE_DRAW: u64 = 0x005e_ed0f_5eed;

/// Fresh sessions per timing of the reference (their median is the timing).
pub const SESSIONS_PER_TIMING: usize = 3;

/// The reference architecture of `space`.
pub fn reference_arch(space: &Space) -> Result<Arch> {
    Arch::random(space, "reference", &mut SplitMix::new(REFERENCE_DRAW))
}

/// An empty reference record for a table of `space` whose weights are drawn with `seed`.
pub fn new_record(space: &Space, seed: u64) -> Result<SpeedReference> {
    Ok(SpeedReference {
        arch: reference_arch(space)?.text(),
        seed,
        timings: Vec::new(),
    })
}

/// The reference network built at one dtype. Each timing runs it in [`SESSIONS_PER_TIMING`] fresh
/// sessions and keeps the median: a session kept open beside the measured ones was measured here to
/// change pace with them at two threads (its thread pool competing with theirs), and one fresh session
/// alone can land its buffers well or badly (the int8 reference of the 224 space read 3.9 or 5.5–6.4 ms
/// by session on one quiet machine).
pub struct Reference {
    model: Vec<u8>,
    session_config: SessionConfig,
    input: Vec<f32>,
    shape: Vec<usize>,
    timing: TimingConfig,
    pub dtype: Dtype,
}

impl Reference {
    /// Builds the reference of `record` (a network of `space`) at `dtype`, timed with a third of
    /// `timing`'s runs per timing.
    pub fn build(
        record: &SpeedReference,
        space: &Space,
        dtype: Dtype,
        session: SessionConfig,
        timing: &TimingConfig,
    ) -> Result<Reference> {
        let arch = Arch::parse("reference", space, &record.arch)?;
        let seed = record.seed;
        let mut weights = RandomWeights { seed };
        let graph = build_at(dtype, session, seed, &mut |d, r| {
            arch_graph(&arch, d, &mut weights, r, 1, &[])
        })?;
        Ok(Reference {
            model: graph.model.to_bytes(),
            session_config: session,
            input: random_inputs(&graph.input_shape, 1, seed).remove(0),
            shape: graph.input_shape,
            timing: timing.split(3 * SESSIONS_PER_TIMING),
            dtype,
        })
    }

    /// One timing: the median over [`SESSIONS_PER_TIMING`] fresh sessions of the trimmed mean of a
    /// short run, µs.
    pub fn time(&mut self, cancel: &AtomicBool) -> Result<f64> {
        let times = (0..SESSIONS_PER_TIMING)
            .map(|_| {
                let mut session = self.session_config.session(&self.model)?;
                Ok(
                    time_session(&mut session, &self.input, &self.shape, &self.timing, cancel)?
                        .trimmed_mean,
                )
            })
            .collect::<Result<Vec<f64>>>()?;
        median(times).ok_or_else(|| Error::Runtime("the reference was not timed".into()))
    }

    /// Times the reference and records the timing in `lut` under `at`; returns it.
    pub fn time_into(&mut self, lut: &mut Lut, at: &str, cancel: &AtomicBool) -> Result<f64> {
        let us = self.time(cancel)?;
        let record = lut
            .reference
            .as_mut()
            .ok_or_else(|| Error::Runtime("the table has no speed reference record".into()))?;
        record.timings.push(ReferenceTiming {
            dtype: self.dtype,
            at: at.to_string(),
            us,
        });
        Ok(us)
    }
}

/// The table's reference built at one dtype, with its time in the table: timing it says how fast the
/// device runs now against the table.
pub struct Pace {
    reference: Reference,
    table_us: f64,
}

impl Pace {
    /// The pace of the device against `lut` at `dtype`, timed with `session`; `None` when the table
    /// has no reference timed at `dtype` (schema 1, or a dtype measured in a run without one).
    pub fn of(lut: &Lut, dtype: Dtype, session: SessionConfig) -> Result<Option<Pace>> {
        let (Some(record), Some(table_us)) = (&lut.reference, lut.reference_time(dtype)) else {
            return Ok(None);
        };
        Ok(Some(Pace {
            reference: Reference::build(record, &lut.space, dtype, session, &lut.timing)?,
            table_us,
        }))
    }

    pub fn dtype(&self) -> Dtype {
        self.reference.dtype
    }

    /// One timing of the reference over its time in the table (1.2: the device takes 20% longer now
    /// than when the table was made).
    pub fn now(&mut self, cancel: &AtomicBool) -> Result<f64> {
        Ok(self.reference.time(cancel)? / self.table_us)
    }
}

/// The device's pace ([`Pace::now`]) during a sequence of measurements, by position in the sequence,
/// so each measurement can be set against the pace while it ran.
#[derive(Default)]
pub struct SpeedTrack {
    /// (position, dtype, pace): a timing taken before the measurement at `position`.
    points: Vec<(usize, Dtype, f64)>,
}

impl SpeedTrack {
    pub fn push(&mut self, position: usize, dtype: Dtype, pace: f64) {
        self.points.push((position, dtype, pace));
    }

    /// The pace around the measurement at `position`: the mean of the last timing taken before it and
    /// the first taken after it (either alone at the ends).
    pub fn around(&self, position: usize, dtype: Dtype) -> Option<f64> {
        let mine = || self.points.iter().filter(|p| p.1 == dtype);
        let before = mine().rfind(|p| p.0 <= position).map(|p| p.2);
        let after = mine().find(|p| p.0 > position).map(|p| p.2);
        match (before, after) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measurement_is_set_against_the_timings_around_it() {
        let mut t = SpeedTrack::default();
        t.push(0, Dtype::Fp32, 100.0);
        t.push(0, Dtype::Int8, 50.0);
        t.push(4, Dtype::Fp32, 140.0);
        assert_eq!(t.around(0, Dtype::Fp32), Some(120.0));
        assert_eq!(t.around(3, Dtype::Fp32), Some(120.0));
        assert_eq!(t.around(4, Dtype::Fp32), Some(140.0));
        assert_eq!(t.around(9, Dtype::Int8), Some(50.0));
        assert_eq!(SpeedTrack::default().around(0, Dtype::Fp32), None);
    }

    #[test]
    fn the_reference_is_a_fixed_network_of_the_space() {
        let space = Space::fbnet_224();
        let a = reference_arch(&space).unwrap();
        assert_eq!(a, reference_arch(&space).unwrap());
        let record = new_record(&space, 3).unwrap();
        assert_eq!(Arch::parse("reference", &space, &record.arch).unwrap(), a);
        // not a degenerate network: several candidates, not all skip
        let mut kinds = a.choices.clone();
        kinds.sort_by_key(|b| b.name());
        kinds.dedup();
        assert!(kinds.len() >= 4, "{}", a.text());
    }
}
