//! The human side of a finished search, written from its run folder alone (`fbnet report RUN` rewrites
//! it): the heat map of P_θ, the per-epoch curves, the drawing of the chosen architecture and
//! `report.md` with how decided each layer is.

use anyhow::{Context, Result};
use mobile_core::Arch;
use mobile_core::lut::Lut;

use crate::report::charts::{Panel, line_charts_svg};
use crate::report::{LayerProbs, arch_svg, heatmap_svg, layer_label, markdown_table};
use crate::search::{
    Candidate, EpochMetrics, RunDir, SearchConfig, ThetaSchedule, read_metrics, read_result,
};
use mobile_core::files::write_atomic;

/// Points of accuracy by which the super net may fit its training batches better than θ's held-out
/// split before the joint schedule's θ is suspected of following memorisation rather than accuracy.
const FIT_GAP: f64 = 0.05;

/// What the reader of a search must know before trusting its choice, from its configuration, its
/// per-epoch metrics and the number of classes:
/// - a super net that ended below twice chance on θ's split (with two classes: below 75%) has not
///   learned enough for θ's gradient to carry accuracy, so whatever P_θ prefers the latency term chose
///   (the collapse towards `skip` that short searches on hard data end in); then nothing else is said,
///   a gap between two near-chance accuracies being no sign of memorisation;
/// - under the joint schedule, a super net that fits its training images much better than the
///   held-out ones (last epoch's training accuracy more than `FIT_GAP` above θ's split) lets θ favour
///   candidates that memorise, which is why DARTS and the paper learn θ on held-out images.
pub fn warnings(cfg: &SearchConfig, metrics: &[EpochMetrics], classes: usize) -> Vec<String> {
    let Some(last) = metrics.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let chance = 1.0 / classes.max(1) as f64;
    // twice chance, or halfway from chance to every image right where twice chance is out of reach
    let learned = (2.0 * chance).min((1.0 + chance) / 2.0);
    if metrics.iter().any(|m| m.theta_trained) && last.theta_acc < learned {
        out.push(format!(
            "the super net barely learned ({:.1}% on θ's split at the end, chance {:.1}%): the \
             cross-entropy part of θ's gradient is noise at that point, so P_θ moved by the latency term \
             alone; search on more images or for more epochs",
            100.0 * last.theta_acc,
            100.0 * chance
        ));
    } else if cfg.theta_schedule == ThetaSchedule::Joint
        && last.theta_trained
        && last.train_acc - last.theta_acc > FIT_GAP
    {
        out.push(format!(
            "the super net fits its training images better than held-out ones (last epoch {:.1}% \
             against {:.1}% on θ's split) and θ learned on the training images (joint schedule): it may \
             prefer candidates that memorise; `--theta-schedule interleaved` learns θ on the held-out \
             images",
            100.0 * last.train_acc,
            100.0 * last.theta_acc
        ));
    }
    out
}

/// `warnings` of a finished search's folder.
pub fn run_warnings(run: &RunDir) -> Result<Vec<String>> {
    let cfg: SearchConfig = run.load_config("search")?;
    let classes = Lut::load(&cfg.lut)?.space.num_classes;
    Ok(warnings(&cfg, &read_metrics(run)?, classes))
}

fn latency_cells(c: &Candidate) -> String {
    c.latency_us
        .iter()
        .map(|(d, us)| format!("{d} {:.1} ms", us / 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn candidate_row(c: &Candidate) -> Vec<String> {
    vec![
        c.name.clone(),
        format!("`{}`", c.arch),
        latency_cells(c),
        format!("{:.1}M", c.macs as f64 / 1e6),
        format!("{:.2}M", c.params as f64 / 1e6),
        format!("{:.2}", c.log_prob),
    ]
}

/// The per-epoch curves: CE and accuracy on both splits, E[LAT] and the most likely architecture's
/// latency, mean entropy of P_θ, τ.
fn curves(metrics: &[EpochMetrics]) -> Vec<Panel> {
    let series = |name: &str, f: &dyn Fn(&EpochMetrics) -> f64| {
        (
            name.to_string(),
            metrics.iter().map(|m| (m.epoch as f64, f(m))).collect(),
        )
    };
    let panel = |title: &str, series: Vec<(String, Vec<(f64, f64)>)>| Panel {
        title: title.to_string(),
        series,
    };
    vec![
        panel(
            "cross-entropy",
            vec![
                series("weights", &|m| m.train_ce),
                series("θ split", &|m| m.theta_ce),
            ],
        ),
        panel(
            "accuracy %",
            vec![
                series("weights", &|m| 100.0 * m.train_acc),
                series("θ split", &|m| 100.0 * m.theta_acc),
            ],
        ),
        panel(
            "latency µs",
            vec![
                series("E[LAT]", &|m| m.expected_latency_us),
                series("argmax", &|m| m.argmax_latency_us),
            ],
        ),
        panel(
            "mean entropy of P_θ (nats)",
            vec![series("entropy", &|m| m.entropy)],
        ),
        panel(
            "τ at the end of the epoch",
            vec![series("τ", &|m| m.tau_end)],
        ),
    ]
}

/// Layers whose most likely candidate changed during the last epoch (None with fewer than two epochs
/// on record).
fn changed_in_last_epoch(metrics: &[EpochMetrics]) -> Option<usize> {
    let [.., a, b] = metrics else { return None };
    (a.winners.len() == b.winners.len() && !b.winners.is_empty()).then(|| {
        a.winners
            .iter()
            .zip(&b.winners)
            .filter(|(x, y)| x != y)
            .count()
    })
}

/// Writes `heatmap.svg`, `curves.svg`, `arch.svg` and `report.md` into a finished search's folder, from
/// its `config.json`, `metrics.jsonl`, `result.json` and the table the configuration names.
pub fn write(run: &RunDir) -> Result<()> {
    let cfg: SearchConfig = run.load_config("search")?;
    let result = read_result(run)?;
    let lut = Lut::load(&cfg.lut).with_context(|| {
        format!(
            "{}: the search's latency table is needed for its report",
            run.config().display()
        )
    })?;
    let space = &lut.space;
    let layers: Vec<LayerProbs> = space
        .layers()
        .iter()
        .zip(&result.layers)
        .map(|(spec, l)| LayerProbs {
            label: layer_label(spec),
            candidates: l.candidates.iter().map(|b| b.name().to_string()).collect(),
            probs: l.probs.clone(),
        })
        .collect();
    heatmap_svg(&run.0.join("heatmap.svg"), &layers)?;
    let best = Arch::parse(&result.best.name, space, &result.best.arch)?;
    arch_svg(&run.0.join("arch.svg"), &best)?;

    let metrics = read_metrics(run)?;
    write_atomic(
        &run.0.join("curves.svg"),
        line_charts_svg(&curves(&metrics)).as_bytes(),
    )?;
    let mut md = format!(
        "# Search {}\n\nSpace `{}` (hash {}), latency table `{}` ({}, {} threads, {}), searched on `{}` latencies.\n\n",
        run.0.display(),
        space.name,
        result.space_hash,
        cfg.lut.display(),
        if lut.device.model.is_empty() || lut.device.model == "unknown" {
            &lut.device.cpu
        } else {
            &lut.device.model
        },
        lut.runtime.session.threads,
        lut.runtime.name,
        cfg.dtype
    );
    md += &format!(
        "Data `{}`{}, batch {}, {} epochs (θ frozen for {}), θ {:?} (every {} weight batches when \
         interleaved or joint) at Adam lr {}, {:?} relaxation, Gumbel noise per {:?}, τ {} → {} ({:?}), {}, seed {}.\n\n",
        cfg.data,
        cfg.max_images
            .map(|m| format!(" (at most {m} images)"))
            .unwrap_or_default(),
        cfg.batch_size,
        cfg.epochs,
        cfg.freeze_epochs,
        cfg.theta_schedule,
        cfg.theta_every,
        cfg.theta_lr,
        cfg.relaxation,
        cfg.gumbel,
        cfg.tau,
        metrics.last().map_or(cfg.tau, |m| m.tau_end),
        cfg.tau_anneal,
        match cfg.target_ms {
            Some(t) => format!(
                "latency target {t} ms ({:?}, λ={})",
                cfg.target_form, cfg.target_weight
            ),
            None => format!("loss {:?} α={} β={}", cfg.loss, cfg.alpha, cfg.beta),
        },
        cfg.seed
    );
    md += "## Epochs\n\n";
    let rows: Vec<Vec<String>> = metrics
        .iter()
        .map(|m| {
            vec![
                m.epoch.to_string(),
                format!("{:.2}", m.tau),
                format!("{:.3}", m.train_ce),
                format!("{:.1}%", 100.0 * m.train_acc),
                format!("{:.3}", m.theta_ce),
                format!("{:.1}%", 100.0 * m.theta_acc),
                format!("{:.1}", m.expected_latency_us),
                format!("{:.4}", m.entropy),
                format!("{:.0}", m.seconds),
            ]
        })
        .collect();
    md += &markdown_table(
        &[
            "epoch",
            "τ",
            "train CE",
            "train acc",
            "θ-split CE",
            "θ-split acc",
            "E[LAT] µs",
            "entropy",
            "s",
        ],
        &rows,
    );
    if cfg.theta_schedule == ThetaSchedule::Joint {
        md += "\nθ learned from the weights' own batches (joint schedule); θ's split was held out and \
               only evaluated, at the end of each epoch.\n";
    }
    for w in warnings(&cfg, &metrics, space.num_classes) {
        md += &format!("\n**Warning**: {w}.\n");
    }
    md += "\n![per-epoch curves](curves.svg)\n";
    md += &decisions(&result, &metrics);
    md += "\n## Result\n\n![P_θ per layer](heatmap.svg)\n\n![the architecture to train](arch.svg)\n\n";
    if let Some(t) = result.target_ms {
        let lat = result
            .best
            .latency_us
            .iter()
            .find(|(d, _)| *d == result.dtype)
            .map_or(f64::NAN, |x| x.1);
        md += &format!(
            "Latency target {t} ms at {}: `searched-best` is the most likely architecture whose predicted \
             latency lies in [{:.3}, {t}] ms; it takes {:.3} ms ({:.1}% of the target).{}\n\n",
            result.dtype,
            0.9 * t,
            lat / 1000.0,
            100.0 * lat / 1000.0 / t,
            match &result.argmax {
                Some(a) => format!(
                    " The per-layer most likely architecture (`searched-argmax`, log P_θ {:.2} against {:.2}) lies outside.",
                    a.log_prob, result.best.log_prob
                ),
                None => " It is also the per-layer most likely architecture.".into(),
            }
        );
    }
    let mut rows = vec![candidate_row(&result.best)];
    rows.extend(result.argmax.iter().map(candidate_row));
    rows.extend(result.samples.iter().map(candidate_row));
    md += &markdown_table(
        &[
            "name",
            "architecture",
            "predicted latency",
            "MACs",
            "params",
            "log P_θ",
        ],
        &rows,
    );
    md += "\nEach architecture is a file in this folder (`<name>.json`) that `fbnet arch show` accepts.\n";
    Ok(write_atomic(&run.0.join("report.md"), md.as_bytes())?)
}

/// The section on how decided each layer is, and a warning when noise could have chosen.
fn decisions(result: &crate::search::SearchResult, metrics: &[EpochMetrics]) -> String {
    let mut md = String::from("\n## Decision per layer\n\n");
    let decided: Vec<_> = result
        .layers
        .iter()
        .filter_map(|l| l.decision.as_ref())
        .collect();
    if decided.len() != result.layers.len() {
        return md + "This run's result predates per-layer decisions.\n";
    }
    let counts = result.decision_counts();
    let (undecided, on_accuracy) = (counts.undecided, counts.on_accuracy);
    let measured = decided.iter().any(|d| d.evidence_t.is_some());
    let changed = match changed_in_last_epoch(metrics) {
        Some(n) => format!(" {n} layers changed their most likely candidate in the last epoch."),
        None => String::new(),
    };
    if measured || result.theta_steps == 0 {
        md += &format!(
            "{} θ steps. A layer is decided when the search's θ gradients raised its winner over the \
             runner-up by more than two standard errors (t ≤ {}; t of the whole loss, and of its \
             cross-entropy part for \"on accuracy\"). {} of {} layers are decided, {on_accuracy} of them \
             on accuracy, the others by the latency term. For scale: Adam's random walk after these steps \
             reaches a θ lead of {:.3} (2·lr·√steps).{changed}\n\n",
            result.theta_steps,
            crate::decision::DECIDED_T,
            decided.len() - undecided,
            decided.len(),
            result.noise_margin,
        );
    } else {
        md += &format!(
            "{} θ steps; noise margin 2·lr·√steps = {:.3} (this run predates measured evidence: a layer              is decided when its θ lead exceeds the margin). {} of {} layers lead by more than that.{changed}\n\n",
            result.theta_steps,
            result.noise_margin,
            decided.len() - undecided,
            decided.len(),
        );
    }
    if undecided > 0 {
        md += &format!(
            "**Warning**: {undecided} layers are decided by less than the noise: their choice in the \
             architecture is not a preference of the search (more θ steps on more images may decide them).\n\n"
        );
    }
    let t = |v: Option<f64>| v.map_or("–".to_string(), |t| format!("{t:.1}"));
    let rows: Vec<Vec<String>> = result
        .layers
        .iter()
        .zip(&decided)
        .enumerate()
        .map(|(i, (l, d))| {
            vec![
                format!("l{i}"),
                l.candidates[d.winner].name().to_string(),
                format!("{:.3}", l.probs[d.winner]),
                l.candidates[d.runner_up].name().to_string(),
                format!("{:.3}", d.theta_lead),
                t(d.evidence_t),
                t(d.accuracy_t),
                format!("{:.3}", d.entropy),
                match (d.decided, d.by_accuracy()) {
                    (false, _) => "no",
                    (true, true) => "on accuracy",
                    (true, false) if measured => "by latency",
                    (true, false) => "yes",
                }
                .to_string(),
            ]
        })
        .collect();
    md + &markdown_table(
        &[
            "layer",
            "winner",
            "P",
            "runner-up",
            "θ lead",
            "t (loss)",
            "t (CE)",
            "entropy",
            "decided",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(train_acc: f64, theta_acc: f64, theta_trained: bool) -> EpochMetrics {
        serde_json::from_value(serde_json::json!({
            "epoch": 3, "tau": 2.0, "lr": 0.01, "theta_trained": theta_trained,
            "train_ce": 1.0, "train_acc": train_acc, "theta_ce": 1.2, "theta_acc": theta_acc,
            "expected_latency_us": 300.0, "entropy": 2.0, "seconds": 10.0, "images_per_second": 50.0
        }))
        .unwrap()
    }

    #[test]
    fn a_search_warns_when_its_super_net_barely_learned_or_joint_theta_may_follow_memorisation() {
        let joint = SearchConfig {
            theta_schedule: ThetaSchedule::Joint,
            ..SearchConfig::default()
        };
        let interleaved = SearchConfig {
            theta_schedule: ThetaSchedule::Interleaved,
            ..joint.clone()
        };
        let w = warnings(&joint, &[epoch(0.9, 0.7, true)], 10);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("90.0%") && w[0].contains("70.0%"), "{w:?}");
        // within the gap, θ learning on held-out images, or θ not learning at all: nothing to warn about
        assert!(warnings(&joint, &[epoch(0.74, 0.7, true)], 10).is_empty());
        assert!(warnings(&interleaved, &[epoch(0.9, 0.7, true)], 10).is_empty());
        assert!(warnings(&joint, &[epoch(0.9, 0.7, false)], 10).is_empty());
        assert!(warnings(&joint, &[], 10).is_empty());
        // below twice chance at the end, after θ learned: whatever P_θ prefers, latency chose
        let w = warnings(&interleaved, &[epoch(0.2, 0.185, true)], 10);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("18.5%") && w[0].contains("chance 10.0%"),
            "{w:?}"
        );
        assert!(warnings(&interleaved, &[epoch(0.2, 0.185, true)], 2).len() == 1);
        assert!(warnings(&interleaved, &[epoch(0.85, 0.8, true)], 2).is_empty());
        // near chance the training accuracy's lead is not memorisation: only the first warning
        let w = warnings(&joint, &[epoch(0.3, 0.12, true)], 10);
        assert!(w.len() == 1 && w[0].contains("barely learned"), "{w:?}");
        assert!(warnings(&interleaved, &[epoch(0.3, 0.25, true)], 10).is_empty());
        assert!(warnings(&interleaved, &[epoch(0.2, 0.185, false)], 10).is_empty());
    }
}
