//! The human side of a finished search: the heat map of P_θ, the drawing of the chosen architecture and
//! a short markdown report, all in the run folder.

use anyhow::Result;
use mobile_core::Arch;
use mobile_core::lut::Lut;

use crate::report::{LayerProbs, arch_svg, heatmap_png, layer_label, markdown_table, write_atomic};
use crate::search::{Candidate, RunDir, SearchConfig, SearchResult, read_metrics};

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

/// Writes `heatmap.png`, `arch.svg` and `report.md` into the run folder (the space searched is the table's).
pub fn write(run: &RunDir, cfg: &SearchConfig, lut: &Lut, result: &SearchResult) -> Result<()> {
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
    heatmap_png(&run.0.join("heatmap.png"), &layers)?;
    let best = Arch::parse(&result.best.name, space, &result.best.arch)?;
    arch_svg(&run.0.join("arch.svg"), &best)?;

    let metrics = read_metrics(run)?;
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
        "Data `{}`{}, batch {}, {} epochs (θ frozen for {}), loss {:?} α={} β={}, seed {}.\n\n",
        cfg.data,
        cfg.max_images
            .map(|m| format!(" (at most {m} images)"))
            .unwrap_or_default(),
        cfg.batch_size,
        cfg.epochs,
        cfg.freeze_epochs,
        cfg.loss,
        cfg.alpha,
        cfg.beta,
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
    md +=
        "\n## Result\n\n![P_θ per layer](heatmap.png)\n\n![most likely architecture](arch.svg)\n\n";
    let mut rows = vec![candidate_row(&result.best)];
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
    write_atomic(&run.0.join("report.md"), md.as_bytes())
}
