//! The heat map of P_θ (SVG) and its colours.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use mobile_core::LayerSpec;
use mobile_core::files::write_atomic;

use super::xml_escape;

/// An 8-bit RGB colour.
pub type Rgb = [u8; 3];

/// Anchors of the colour map: matplotlib's viridis sampled at 0, 1/8, …, 1 (perceptually uniform,
/// monotone in lightness, readable in grey and by colour-blind readers).
const VIRIDIS: [Rgb; 9] = [
    [68, 1, 84],
    [72, 36, 117],
    [59, 82, 139],
    [44, 114, 142],
    [33, 145, 140],
    [40, 174, 128],
    [94, 201, 98],
    [173, 220, 48],
    [253, 231, 37],
];

/// The colour of probability 0.
pub const COLORMAP_BOTTOM: Rgb = VIRIDIS[0];
/// The colour of probability 1.
pub const COLORMAP_TOP: Rgb = VIRIDIS[VIRIDIS.len() - 1];
/// Background of a cell whose layer does not offer the candidate.
pub const MISSING_BG: Rgb = [214, 214, 214];
/// Hatch lines of such a cell.
pub const MISSING_HATCH: Rgb = [158, 158, 158];
/// Outline of the most likely candidate of each row.
pub const OUTLINE: Rgb = [230, 25, 75];
const BACKGROUND: Rgb = [255, 255, 255];
const INK: Rgb = [28, 28, 28];
const INK_LIGHT: Rgb = [255, 255, 255];

/// The colour of probability `p` (clamped to 0..1; NaN counts as 0), linearly interpolated between the
/// viridis anchors.
pub fn colormap(p: f64) -> Rgb {
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
    let pos = p * (VIRIDIS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let t = pos - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |k: usize| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * t).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// The colour of text printed on `fill`: dark on light fills, white on dark ones.
pub fn text_color_on(fill: Rgb) -> Rgb {
    let luma = 0.299 * fill[0] as f64 + 0.587 * fill[1] as f64 + 0.114 * fill[2] as f64;
    if luma > 140.0 { INK } else { INK_LIGHT }
}

/// One row of the heat map: a searchable layer and the probabilities of the candidates it offers.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerProbs {
    /// Row label, e.g. `l3 s1 24→24 @56` (see [`layer_label`]).
    pub label: String,
    /// Candidate block names (`k3_e1`, `k3_e1_g2`, `skip`), in the layer's order.
    pub candidates: Vec<String>,
    /// One probability per candidate.
    pub probs: Vec<f64>,
}

/// The usual row label of a layer: `l{index} s{stage} {cin}→{cout} @{input size}`, with `/2` for a
/// strided layer (`l1 s1 16→24 @112/2`).
pub fn layer_label(layer: &LayerSpec) -> String {
    let stride = if layer.stride > 1 {
        format!("/{}", layer.stride)
    } else {
        String::new()
    };
    format!(
        "l{} s{} {}→{} @{}{stride}",
        layer.index, layer.stage, layer.cin, layer.cout, layer.hw_in
    )
}

/// Font size of every text, px; the layout takes a character of the monospace font to be 0.6 em wide.
const FONT: f64 = 12.0;
const CHAR_W: f64 = 0.6 * FONT;
/// Padding between a cell's edge and its printed probability.
const CELL_PAD: f64 = 8.0;
/// Blank space between neighbouring cells.
const CELL_GAP: f64 = 2.0;
/// Thickness of the outline of a row's most likely candidate.
const OUTLINE_T: f64 = 3.0;
const MARGIN: f64 = 12.0;
const LABEL_GAP: f64 = 12.0;
const BAR_W: f64 = 160.0;
const LEGEND_SEP: f64 = 24.0;

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_W
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// How a probability is printed in its cell: two digits (`.83`, `.07`), `1.0` from 0.995 up.
pub fn format_prob(p: f64) -> String {
    let p = p.clamp(0.0, 1.0);
    let hundredths = (p * 100.0).round() as u32;
    if hundredths >= 100 {
        "1.0".to_string()
    } else {
        format!(".{hundredths:02}")
    }
}

/// The heat map's columns (the union of the layers' candidates, in first-seen order), after checking
/// the layers: at least one, as many probabilities as candidates, finite probabilities, no candidate
/// twice in a layer.
fn heatmap_columns(layers: &[LayerProbs]) -> Result<Vec<String>> {
    if layers.is_empty() {
        bail!("a heat map needs at least one layer");
    }
    let mut columns: Vec<String> = Vec::new();
    for l in layers {
        if l.candidates.len() != l.probs.len() {
            bail!(
                "layer `{}` has {} candidates but {} probabilities",
                l.label,
                l.candidates.len(),
                l.probs.len()
            );
        }
        if let Some(p) = l.probs.iter().find(|p| !p.is_finite()) {
            bail!(
                "layer `{}` has a probability that is not finite ({p})",
                l.label
            );
        }
        for (i, c) in l.candidates.iter().enumerate() {
            if l.candidates[..i].contains(c) {
                bail!("layer `{}` lists candidate `{c}` twice", l.label);
            }
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
    }
    if columns.is_empty() {
        bail!("a heat map needs at least one candidate");
    }
    Ok(columns)
}

/// The heat map of P_θ as SVG: one row per searchable layer, one column per candidate (the union of the
/// layers' candidates in first-seen order), each cell coloured by [`colormap`] with its probability
/// printed (`.83`), a candidate the layer does not offer hatched grey, each row's most likely candidate
/// (the first of equals) outlined, and a legend underneath. Cells carry `class` (`cell`, `missing`,
/// `best`) and `data-layer`/`data-candidate`/`data-p` attributes, so the picture can be checked and
/// restyled as text.
pub fn heatmap_svg_string(layers: &[LayerProbs]) -> Result<String> {
    let columns = heatmap_columns(layers)?;
    let cell_w = columns
        .iter()
        .map(|c| text_width(c))
        .fold(text_width("1.0"), f64::max)
        + 2.0 * CELL_PAD;
    let cell_h = FONT + 2.0 * CELL_PAD;
    let label_w = layers
        .iter()
        .map(|l| text_width(&l.label))
        .fold(0.0, f64::max);
    let left = MARGIN + label_w + LABEL_GAP;
    let top = MARGIN + FONT + CELL_PAD;
    let grid_w = columns.len() as f64 * (cell_w + CELL_GAP) - CELL_GAP;
    let grid_h = layers.len() as f64 * (cell_h + CELL_GAP) - CELL_GAP;
    let legend_top = top + grid_h + 2.0 * CELL_PAD;
    let (p_label, one, missing, likely) = ("P_θ 0", "1", "not offered", "most likely");
    let legend_w = text_width(p_label)
        + BAR_W
        + text_width(one)
        + text_width(missing)
        + text_width(likely)
        + 2.0 * (LEGEND_SEP + FONT)
        + 5.0 * CHAR_W;
    let width = (left + grid_w).max(MARGIN + legend_w) + MARGIN;
    let height = legend_top + FONT + MARGIN;
    let cell = |r: usize, c: usize| {
        (
            left + c as f64 * (cell_w + CELL_GAP),
            top + r as f64 * (cell_h + CELL_GAP),
        )
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" \
         font-size=\"{FONT}\">\n<defs>\n<pattern id=\"hatch\" width=\"6\" height=\"6\" \
         patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" \
         fill=\"{}\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"{}\" stroke-width=\"2\"/></pattern>\n\
         <linearGradient id=\"colormap\">",
        hex(MISSING_BG),
        hex(MISSING_HATCH)
    );
    for (i, c) in VIRIDIS.iter().enumerate() {
        let _ = write!(
            svg,
            "<stop offset=\"{:.3}\" stop-color=\"{}\"/>",
            i as f64 / (VIRIDIS.len() - 1) as f64,
            hex(*c)
        );
    }
    let _ = writeln!(
        svg,
        "</linearGradient>\n</defs>\n<rect width=\"100%\" height=\"100%\" fill=\"{}\"/>",
        hex(BACKGROUND)
    );
    let baseline = |y: f64, h: f64| y + h / 2.0 + 0.35 * FONT;
    for (c, name) in columns.iter().enumerate() {
        let (x, _) = cell(0, c);
        let _ = writeln!(
            svg,
            "<text class=\"column\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{}\">{}</text>",
            x + cell_w / 2.0,
            MARGIN + FONT,
            hex(INK),
            xml_escape(name)
        );
    }
    for (r, layer) in layers.iter().enumerate() {
        let (_, y) = cell(r, 0);
        let _ = writeln!(
            svg,
            "<text class=\"label\" x=\"{MARGIN}\" y=\"{:.1}\" fill=\"{}\">{}</text>",
            baseline(y, cell_h),
            hex(INK),
            xml_escape(&layer.label)
        );
        let probs: HashMap<&str, f64> = layer
            .candidates
            .iter()
            .map(String::as_str)
            .zip(layer.probs.iter().copied())
            .collect();
        let best = layer
            .candidates
            .iter()
            .zip(&layer.probs)
            .fold(None::<(&str, f64)>, |best, (c, &p)| match best {
                Some((_, bp)) if bp >= p => best,
                _ => Some((c.as_str(), p)),
            })
            .map(|(c, _)| c);
        for (c, name) in columns.iter().enumerate() {
            let (x, y) = cell(r, c);
            let at = format!(
                "x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell_w:.1}\" height=\"{cell_h:.1}\" data-layer=\"{r}\" data-candidate=\"{}\"",
                xml_escape(name)
            );
            match probs.get(name.as_str()) {
                None => {
                    let _ = writeln!(svg, "<rect class=\"missing\" {at} fill=\"url(#hatch)\"/>");
                }
                Some(&p) => {
                    let fill = colormap(p);
                    let _ = writeln!(
                        svg,
                        "<rect class=\"cell\" {at} data-p=\"{p}\" fill=\"{}\"/>\n\
                         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{}\">{}</text>",
                        hex(fill),
                        x + cell_w / 2.0,
                        baseline(y, cell_h),
                        hex(text_color_on(fill)),
                        format_prob(p)
                    );
                    if best == Some(name.as_str()) {
                        let h = OUTLINE_T / 2.0;
                        let _ = writeln!(
                            svg,
                            "<rect class=\"best\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                             data-layer=\"{r}\" data-candidate=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{OUTLINE_T}\"/>",
                            x + h,
                            y + h,
                            cell_w - OUTLINE_T,
                            cell_h - OUTLINE_T,
                            xml_escape(name),
                            hex(OUTLINE)
                        );
                    }
                }
            }
        }
    }
    // Legend: colour bar, the hatch of a candidate not offered, the outline of the most likely one.
    let y = legend_top;
    let text_y = baseline(y, FONT);
    let mut x = MARGIN;
    let label = |svg: &mut String, x: &mut f64, text: &str| {
        let _ = writeln!(
            svg,
            "<text class=\"legend\" x=\"{:.1}\" y=\"{text_y:.1}\" fill=\"{}\">{}</text>",
            *x,
            hex(INK),
            xml_escape(text)
        );
        *x += text_width(text) + CHAR_W;
    };
    label(&mut svg, &mut x, p_label);
    let _ = writeln!(
        svg,
        "<rect class=\"colorbar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BAR_W}\" height=\"{FONT}\" fill=\"url(#colormap)\"/>"
    );
    x += BAR_W + CHAR_W;
    label(&mut svg, &mut x, one);
    x += LEGEND_SEP - CHAR_W;
    let _ = writeln!(
        svg,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{FONT}\" height=\"{FONT}\" fill=\"url(#hatch)\"/>"
    );
    x += FONT + CHAR_W;
    label(&mut svg, &mut x, missing);
    x += LEGEND_SEP - CHAR_W;
    let _ = writeln!(
        svg,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{FONT}\" height=\"{FONT}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"{OUTLINE_T}\"/>",
        hex(COLORMAP_TOP),
        hex(OUTLINE)
    );
    x += FONT + CHAR_W;
    label(&mut svg, &mut x, likely);
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// Writes [`heatmap_svg_string`] to `path`, atomically.
pub fn heatmap_svg(path: &Path, layers: &[LayerProbs]) -> Result<()> {
    let svg = heatmap_svg_string(layers)
        .with_context(|| format!("cannot draw the heat map {}", path.display()))?;
    Ok(write_atomic(path, svg.as_bytes())?)
}
