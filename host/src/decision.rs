//! What a search decided: each layer's lead and whether the search's evidence for it exceeds the noise,
//! and the architecture to train: the most likely one, or the most likely one within a latency band (a
//! target).
//!
//! The evidence is measured, not assumed: every θ step's gradient is tallied per layer (sums and cross
//! products, [`GradientSums`]), for the whole loss and for its cross-entropy part alone. A layer is
//! decided when the mean gradient of its winner lies below the runner-up's (a descent step raises the
//! winner against it) by more than two standard errors of that mean over the steps, a one-sided
//! t-test at about 2.5%. With gradients of random sign (a search that has learned nothing about that
//! layer) the mean difference stays within the noise whatever the learning rate, and so does the layer.
//! The cross-entropy part says whether the choice was made on accuracy; the rest of the loss is the
//! latency term, which pushes the same way at every step. Steps are treated as independent draws,
//! which they are not quite (θ and the weights change along the run), so the test is a guide rather
//! than an exact level.
//!
//! The θ lead is also compared with the random-walk scale of Adam, `2 · lr · √steps`
//! ([`noise_margin`]): Adam moves θ by about its learning rate per step whatever the gradient's size.
//! Earlier releases decided by that margin alone; it is kept in the result for reference.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::latency::LatencyTable;
use crate::relaxation::entropy;

/// How far a layer's most likely candidate leads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDecision {
    /// Indices of the most likely candidate and of the runner-up.
    pub winner: usize,
    pub runner_up: usize,
    /// θ_winner − θ_runner-up, and P_winner − P_runner-up.
    pub theta_lead: f64,
    pub prob_lead: f64,
    /// Entropy of the layer's P_θ, nats.
    pub entropy: f64,
    /// Whether the search's evidence for the winner over the runner-up exceeds the noise: the
    /// t statistic `evidence_t` at most −2 (runs of earlier releases: the θ lead above the noise margin).
    pub decided: bool,
    /// t statistic of the mean θ-gradient difference winner − runner-up over the θ steps, whole loss
    /// (negative: the steps raised the winner); absent without θ steps or in earlier releases' runs.
    #[serde(default)]
    pub evidence_t: Option<f64>,
    /// The same for the cross-entropy part alone: at most −2 means the winner was chosen on accuracy.
    #[serde(default)]
    pub accuracy_t: Option<f64>,
}

/// The t statistic below which a layer counts as decided.
pub const DECIDED_T: f64 = -2.0;

impl LayerDecision {
    /// The decision of one layer from its θ, P_θ and the tallies of its gradients (whole loss, and
    /// cross-entropy part).
    pub fn of(
        theta: &[f64],
        probs: &[f64],
        evidence: Option<(&GradientSums, &GradientSums)>,
    ) -> LayerDecision {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let winner = order[0];
        let runner_up = order.get(1).copied().unwrap_or(winner);
        let theta_lead = theta[winner] - theta[runner_up];
        let t = |g: &GradientSums| g.t_difference(winner, runner_up);
        let evidence_t = evidence.and_then(|(total, _)| t(total));
        LayerDecision {
            winner,
            runner_up,
            theta_lead,
            prob_lead: probs[winner] - probs[runner_up],
            entropy: entropy(probs),
            decided: runner_up != winner && evidence_t.is_some_and(|t| t <= DECIDED_T),
            evidence_t,
            accuracy_t: evidence.and_then(|(_, ce)| t(ce)),
        }
    }

    /// Decided, and on accuracy (the cross-entropy part alone is evidence enough).
    pub fn by_accuracy(&self) -> bool {
        self.decided && self.accuracy_t.is_some_and(|t| t <= DECIDED_T)
    }
}

/// Running sums of one layer's per-step θ gradients: their sums and cross products, enough for the mean
/// and the standard error of the difference of any two candidates' gradients over the steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GradientSums {
    pub steps: u64,
    /// Σ g_i per candidate.
    pub sum: Vec<f64>,
    /// Σ g_i · g_j, row-major `k × k`.
    pub cross: Vec<f64>,
}

impl GradientSums {
    pub fn new(k: usize) -> GradientSums {
        GradientSums {
            steps: 0,
            sum: vec![0.0; k],
            cross: vec![0.0; k * k],
        }
    }

    /// Adds one step's gradient (one value per candidate).
    pub fn add(&mut self, g: &[f64]) {
        let k = self.sum.len();
        debug_assert_eq!(g.len(), k);
        self.steps += 1;
        for i in 0..k {
            self.sum[i] += g[i];
            for j in 0..k {
                self.cross[i * k + j] += g[i] * g[j];
            }
        }
    }

    /// t statistic of the mean of `g_a − g_b` over the steps: its mean divided by its standard error.
    /// None with fewer than two steps, or when the difference never varied.
    pub fn t_difference(&self, a: usize, b: usize) -> Option<f64> {
        let k = self.sum.len();
        if self.steps < 2 || a >= k || b >= k || a == b {
            return None;
        }
        let n = self.steps as f64;
        let mean = (self.sum[a] - self.sum[b]) / n;
        let square =
            (self.cross[a * k + a] - 2.0 * self.cross[a * k + b] + self.cross[b * k + b]) / n;
        let var = (square - mean * mean).max(0.0) * n / (n - 1.0);
        let se = (var / n).sqrt();
        (se > 0.0 && se.is_finite()).then(|| mean / se)
    }
}

/// The gradient tallies of a search: per layer, of the whole loss and of its cross-entropy part.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub total: Vec<GradientSums>,
    pub ce: Vec<GradientSums>,
}

impl Evidence {
    /// Empty tallies for layers of `sizes` candidates.
    pub fn new(sizes: &[usize]) -> Evidence {
        Evidence {
            total: sizes.iter().map(|&k| GradientSums::new(k)).collect(),
            ce: sizes.iter().map(|&k| GradientSums::new(k)).collect(),
        }
    }

    /// The tallies of layer `i`, if there are any.
    pub fn layer(&self, i: usize) -> Option<(&GradientSums, &GradientSums)> {
        self.total.get(i).zip(self.ce.get(i))
    }
}

/// The lead of θ that noise alone reaches with 2σ: `2 · lr · √steps` (no steps: nothing is decided).
pub fn noise_margin(theta_lr: f64, steps: u64) -> f64 {
    if steps == 0 {
        return f64::INFINITY;
    }
    2.0 * theta_lr * (steps as f64).sqrt()
}

/// Index of the most likely candidate of each layer (the first of equals).
pub fn argmax_each(probs: &[Vec<f64>]) -> Vec<usize> {
    probs
        .iter()
        .map(|p| {
            (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        })
        .collect()
}

/// The fastest and the slowest architecture of the table's space, µs.
pub fn latency_range(table: &LatencyTable) -> (f64, f64) {
    let min = table
        .layers
        .iter()
        .map(|l| l.iter().copied().fold(f64::INFINITY, f64::min))
        .sum::<f64>();
    let max = table
        .layers
        .iter()
        .map(|l| l.iter().copied().fold(0.0, f64::max))
        .sum::<f64>();
    (table.fixed_us + min, table.fixed_us + max)
}

/// Checks that some architecture of the space lies in [0.9 T, T] for the target `target_us`.
pub fn check_target(table: &LatencyTable, target_us: f64) -> Result<()> {
    let (min, max) = latency_range(table);
    if min > target_us || max < 0.9 * target_us {
        bail!(
            "the target {:.3} ms is out of reach: the space's architectures take {:.3}–{:.3} ms at {} \
             on this table (the searched network must land within 0.9–1.0 × the target)",
            target_us / 1000.0,
            min / 1000.0,
            max / 1000.0,
            table.dtype
        );
    }
    if most_likely_within(table, &uniform(table), 0.9 * target_us, target_us).is_none() {
        bail!(
            "no architecture of the space takes between {:.3} and {:.3} ms at {} on this table",
            0.9 * target_us / 1000.0,
            target_us / 1000.0,
            table.dtype
        );
    }
    Ok(())
}

fn uniform(table: &LatencyTable) -> Vec<Vec<f64>> {
    table
        .layers
        .iter()
        .map(|l| vec![1.0 / l.len() as f64; l.len()])
        .collect()
}

/// Grid cells over the latency budget of [`most_likely_within`]: each layer's latency is rounded to a
/// cell, so the sum is off by at most half a cell per layer (22 layers: 0.3% of the budget); the
/// exact latency of the result is then checked.
const CELLS: usize = 4000;

/// The architecture (one candidate index per layer) with the largest `Σ log P_θ` among those whose
/// latency from the table lies in `[lo_us, hi_us]`: a knapsack over the layers by dynamic programming on
/// a grid of the latency budget. None when no architecture lies in the band.
pub fn most_likely_within(
    table: &LatencyTable,
    probs: &[Vec<f64>],
    lo_us: f64,
    hi_us: f64,
) -> Option<Vec<usize>> {
    let budget = hi_us - table.fixed_us;
    if budget < 0.0 || lo_us > hi_us {
        return None;
    }
    let cell = budget.max(1e-9) / CELLS as f64;
    let mut best = vec![f64::NEG_INFINITY; CELLS + 1];
    best[0] = 0.0;
    // per layer and cell: (candidate, previous cell) of the best way to reach it
    let mut back: Vec<Vec<(u16, u32)>> = Vec::with_capacity(table.layers.len());
    for (lat, p) in table.layers.iter().zip(probs) {
        let mut next = vec![f64::NEG_INFINITY; CELLS + 1];
        let mut from = vec![(0u16, 0u32); CELLS + 1];
        for (c, &score) in best.iter().enumerate() {
            if score == f64::NEG_INFINITY {
                continue;
            }
            for (i, (&l, &pi)) in lat.iter().zip(p).enumerate() {
                let to = c + (l / cell).round() as usize;
                let s = score + pi.max(1e-300).ln();
                if to <= CELLS && s > next[to] {
                    next[to] = s;
                    from[to] = (i as u16, c as u32);
                }
            }
        }
        best = next;
        back.push(from);
    }
    let mut ends: Vec<usize> = (0..=CELLS)
        .filter(|&c| best[c] > f64::NEG_INFINITY)
        .collect();
    ends.sort_by(|&a, &b| best[b].total_cmp(&best[a]));
    for end in ends {
        let mut choice = vec![0usize; table.layers.len()];
        let mut c = end;
        for l in (0..table.layers.len()).rev() {
            let (i, prev) = back[l][c];
            choice[l] = i as usize;
            c = prev as usize;
        }
        let lat = table.latency_of(&choice);
        if lat >= lo_us && lat <= hi_us {
            return Some(choice);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_t_statistic_measures_a_consistent_push_against_the_noise() {
        // candidate 0's gradient lies 1 or 2 below candidate 1's at every step: mean −1.5, sample
        // variance 1/3 over 4 steps, standard error √(1/12)
        let mut g = GradientSums::new(3);
        for d in [1.0, 2.0, 1.0, 2.0] {
            g.add(&[-d, 0.0, 5.0]);
        }
        let t = g.t_difference(0, 1).unwrap();
        assert!((t - (-1.5 / (1.0f64 / 12.0).sqrt())).abs() < 1e-9, "{t}");
        assert!((g.t_difference(1, 0).unwrap() + t).abs() < 1e-9);
        // a difference that never varies has no standard error; one step has no spread
        assert_eq!(g.t_difference(1, 2), None);
        let mut one = GradientSums::new(2);
        one.add(&[1.0, 2.0]);
        assert_eq!(one.t_difference(0, 1), None);
        // gradients of alternating sign: large steps, no evidence
        let mut noise = GradientSums::new(2);
        for i in 0..100 {
            let s = if i % 2 == 0 { 10.0 } else { -10.0 };
            noise.add(&[s, -s]);
        }
        assert!(noise.t_difference(0, 1).unwrap().abs() < 1e-9);
    }

    #[test]
    fn a_layer_is_decided_by_its_evidence_not_by_its_lead() {
        let probs = [0.7, 0.2, 0.1];
        let theta = [2.0, 0.7, 0.0];
        let mut pushed = GradientSums::new(3);
        let mut noisy = GradientSums::new(3);
        for i in 0..20 {
            let wobble = if i % 2 == 0 { 0.1 } else { -0.1 };
            pushed.add(&[-1.0 + wobble, 0.0, 0.0]);
            noisy.add(&[10.0 * wobble, 0.0, 0.0]);
        }
        let d = LayerDecision::of(&theta, &probs, Some((&pushed, &noisy)));
        assert!(d.decided && !d.by_accuracy(), "{d:?}");
        assert_eq!((d.winner, d.runner_up), (0, 1));
        let d = LayerDecision::of(&theta, &probs, Some((&noisy, &noisy)));
        assert!(!d.decided, "{d:?}");
        let d = LayerDecision::of(&theta, &probs, Some((&pushed, &pushed)));
        assert!(d.by_accuracy());
        // no θ steps: nothing is decided, whatever the lead
        assert!(!LayerDecision::of(&theta, &probs, None).decided);
    }
}
