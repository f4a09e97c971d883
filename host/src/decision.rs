//! What a search decided: each layer's lead and whether it exceeds the noise, and the architecture to
//! train: the most likely one, or the most likely one within a latency band (a target).
//!
//! The noise level: Adam moves each θ by about its learning rate per step whatever the gradient's size,
//! so θ driven by gradients of random sign (noise, no preference) drifts like a random walk whose spread
//! after `s` steps is about `lr · √s` (with β₁ = 0.9 the steps are correlated over about ten steps, and
//! their normalised size is about 0.23; the two nearly cancel). A layer whose winner leads the runner-up
//! by less than twice that could have been decided by noise alone, so it is reported as undecided.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::latency::{LatencyTable, entropy};

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
    /// Whether the lead exceeds the noise margin.
    pub decided: bool,
}

impl LayerDecision {
    pub fn of(theta: &[f64], probs: &[f64], noise_margin: f64) -> LayerDecision {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let winner = order[0];
        let runner_up = order.get(1).copied().unwrap_or(winner);
        let theta_lead = theta[winner] - theta[runner_up];
        LayerDecision {
            winner,
            runner_up,
            theta_lead,
            prob_lead: probs[winner] - probs[runner_up],
            entropy: entropy(probs),
            decided: runner_up != winner && theta_lead > noise_margin,
        }
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
