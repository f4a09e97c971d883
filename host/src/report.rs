//! Pictures and text a search run leaves in its folder, all of them text: a heat map of the architecture
//! distribution P_θ (SVG), a drawing of a sampled architecture in the style of the paper's Figure 4
//! (SVG) and a Markdown table helper for the run report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use mobile_core::files::write_atomic;
use mobile_core::{Arch, Block, LayerSpec};

// ---------------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------------

/// A GitHub-flavoured Markdown table. Cells are padded to their column's width; `|` is escaped and line
/// breaks become spaces; a column whose every non-empty cell is a number is right-aligned. Rows shorter
/// than the header are padded with empty cells; a row longer than the header widens the table (the extra
/// header cells are empty) rather than losing data.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = rows
        .iter()
        .map(Vec::len)
        .chain([headers.len()])
        .max()
        .unwrap_or(0);
    if cols == 0 {
        return String::new();
    }
    let clean = |s: &str| s.replace(['\r', '\n'], " ").replace('|', "\\|");
    let mut head: Vec<String> = headers.iter().map(|h| clean(h)).collect();
    head.resize(cols, String::new());
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut r: Vec<String> = r.iter().map(|c| clean(c)).collect();
            r.resize(cols, String::new());
            r
        })
        .collect();
    let width = |c: usize| {
        body.iter()
            .map(|r| r[c].chars().count())
            .chain([head[c].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let numeric: Vec<bool> = (0..cols)
        .map(|c| {
            let mut cells = body
                .iter()
                .map(|r| r[c].trim())
                .filter(|s| !s.is_empty())
                .peekable();
            cells.peek().is_some() && cells.all(|s| s.trim_end_matches('%').parse::<f64>().is_ok())
        })
        .collect();
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for (c, cell) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[c] - cell.chars().count());
            if numeric[c] {
                let _ = write!(out, " {pad}{cell} |");
            } else {
                let _ = write!(out, " {cell}{pad} |");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&head);
    out.push('|');
    for c in 0..cols {
        let dashes = "-".repeat(widths[c] - usize::from(numeric[c]));
        let _ = write!(out, " {dashes}{} |", if numeric[c] { ":" } else { "" });
    }
    out.push('\n');
    for r in &body {
        out.push_str(&line(r));
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Colours
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Heat map of P_θ
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Architecture drawing (paper Figure 4)
// ---------------------------------------------------------------------------------------------------

/// Fill of blocks with a 3x3 depthwise convolution (blue, as in the paper's Figure 4).
pub const SVG_K3: &str = "#3b73c4";
/// Fill of blocks with a 5x5 depthwise convolution (green, as in the paper's Figure 4).
pub const SVG_K5: &str = "#3f9e4d";
const SVG_FIXED: &str = "#8d8d8d";
const SVG_POOL: &str = "#bdbdbd";
const SVG_FC: &str = "#555555";
const SVG_STRIDE: &str = "#d0342c";
const SVG_LINE: &str = "#9a9a9a";

/// Height of a block's box in the drawing: by expansion, 6 tallest; a group-2 block is as tall as an
/// `e1` block (and marked by a divider). Zero for `skip`, which draws no box.
pub fn block_height(block: Block) -> f64 {
    match block.expansion() {
        0 => 0.0,
        1 => 22.0,
        3 => 44.0,
        _ => 72.0,
    }
}

/// Escapes text for SVG/XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const SLOT: f64 = 30.0;
const BOX_W: f64 = 22.0;
const END_W: f64 = 40.0;
const END_H: f64 = 96.0;
const MID_Y: f64 = 160.0;

/// Text of `size` px, escaped; `extra` holds further attributes.
fn svg_text(out: &mut String, x: f64, y: f64, size: f64, extra: &str, text: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" {extra}>{}</text>"#,
        xml_escape(text)
    );
}

/// A fixed box at the ends (stem, head, pool, classifier) with one or two lines of text written
/// vertically inside.
fn svg_end_box(out: &mut String, x: f64, h: f64, fill: &str, ink: &str, lines: &[&str], tip: &str) {
    let y = MID_Y - h / 2.0;
    let _ = writeln!(
        out,
        r#"<g class="fixed"><title>{}</title><rect x="{x:.1}" y="{y:.1}" width="{END_W}" height="{h}" rx="3" fill="{fill}"/>"#,
        xml_escape(tip)
    );
    // Rotated by -90°, a line's glyphs stand left of its baseline.
    let first = x + END_W / 2.0 + 4.0 - 6.5 * (lines.len() as f64 - 1.0);
    for (i, line) in lines.iter().enumerate() {
        let (cx, cy) = (first + 13.0 * i as f64, MID_Y);
        svg_text(
            out,
            cx,
            cy,
            11.0,
            &format!(
                r#"text-anchor="middle" fill="{ink}" transform="rotate(-90 {cx:.1} {cy:.1})""#
            ),
            line,
        );
    }
    out.push_str("</g>\n");
}

/// Draws `arch` in the style of the paper's Figure 4 as a self-contained SVG file at `path`: the
/// layers from input (left) to output (right), each chosen block a box coloured by kernel size (blue 3,
/// green 5) and as tall as its expansion (6, 3, 1), group-2 blocks split by a divider, `skip` only the
/// through line, stride-2 layers marked `/2`, stage boundaries dashed and labelled with their channels
/// and output size, stem, head, pooling and classifier at the ends, and a legend. Written atomically.
pub fn arch_svg(path: &Path, arch: &Arch) -> Result<()> {
    Ok(write_atomic(path, arch_svg_string(arch).as_bytes())?)
}

/// The SVG text [`arch_svg`] writes.
pub fn arch_svg_string(arch: &Arch) -> String {
    let space = &arch.space;
    let layers: Vec<(LayerSpec, Block)> = arch.layers().collect();
    let n_stages = space.stages.len();

    // Horizontal positions.
    let margin = 20.0;
    let input_w = 64.0;
    let stem_x = margin + input_w;
    let first_slot = stem_x + END_W + 14.0;
    let slot_x = |i: usize, stage: usize| first_slot + i as f64 * SLOT + stage as f64 * 6.0;
    let layers_end = slot_x(layers.len(), n_stages.saturating_sub(1)) + 8.0;
    let head_x = layers_end;
    let pool_x = head_x + END_W + 10.0;
    let fc_x = pool_x + END_W + 10.0;
    let output_x = fc_x + END_W + 14.0;
    let output_w = 90.0;
    let legend_w = 820.0;
    let width = (output_x + output_w + margin).max(margin * 2.0 + legend_w);
    let height = 420.0;

    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(s, "<title>{}</title>", xml_escape(&arch.name));
    let _ = writeln!(
        s,
        r#"<rect class="background" x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#
    );

    // Title.
    svg_text(
        &mut s,
        margin,
        28.0,
        17.0,
        r#"font-weight="bold""#,
        &arch.name,
    );
    let subtitle = format!(
        "space {} · {} px · width {} · {} searchable layers, {} skipped",
        space.name,
        space.resolution,
        space.width,
        layers.len(),
        layers.iter().filter(|(_, b)| *b == Block::Skip).count(),
    );
    svg_text(&mut s, margin, 46.0, 10.0, r##"fill="#444""##, &subtitle);
    svg_text(&mut s, margin, 60.0, 9.0, r##"fill="#666""##, &arch.text());

    // The data path.
    let _ = writeln!(
        s,
        r#"<line class="path" x1="{:.1}" y1="{MID_Y}" x2="{:.1}" y2="{MID_Y}" stroke="{SVG_LINE}" stroke-width="2"/>"#,
        stem_x - 8.0,
        output_x - 4.0
    );

    // Input and stem.
    svg_text(&mut s, margin, MID_Y - 6.0, 11.0, "", "input");
    svg_text(
        &mut s,
        margin,
        MID_Y + 10.0,
        11.0,
        "",
        &format!("{}×{}²", space.input_channels, space.resolution),
    );
    svg_end_box(
        &mut s,
        stem_x,
        END_H,
        SVG_FIXED,
        "white",
        &[
            "stem 3×3",
            &format!("/{} → {}", space.stem_stride, space.stem_out()),
        ],
        &format!(
            "stem: 3×3 conv, stride {}, {}→{} channels, {}→{} px",
            space.stem_stride,
            space.input_channels,
            space.stem_out(),
            space.resolution,
            space.stem_hw()
        ),
    );

    // Stage boundaries and labels.
    for stage in 0..n_stages {
        let in_stage: Vec<&(LayerSpec, Block)> =
            layers.iter().filter(|(l, _)| l.stage == stage).collect();
        let (Some((first, _)), Some((last, _))) = (in_stage.first(), in_stage.last()) else {
            continue;
        };
        let x0 = slot_x(first.index, stage) - 4.0;
        let x1 = slot_x(last.index + 1, stage) - 4.0;
        let _ = writeln!(
            s,
            r##"<line class="stage" x1="{x0:.1}" y1="68" x2="{x0:.1}" y2="282" stroke="#c8c8c8" stroke-dasharray="4 3"/>"##
        );
        if stage + 1 == n_stages {
            let _ = writeln!(
                s,
                r##"<line class="stage" x1="{x1:.1}" y1="68" x2="{x1:.1}" y2="282" stroke="#c8c8c8" stroke-dasharray="4 3"/>"##
            );
        }
        let cx = (x0 + x1) / 2.0;
        svg_text(
            &mut s,
            cx,
            78.0,
            10.0,
            r#"text-anchor="middle" font-weight="bold""#,
            &format!("s{stage}"),
        );
        svg_text(
            &mut s,
            cx,
            92.0,
            10.0,
            r#"text-anchor="middle""#,
            &format!("{}ch", last.cout),
        );
        svg_text(
            &mut s,
            cx,
            105.0,
            9.0,
            r##"text-anchor="middle" fill="#666""##,
            &format!("{}²", last.hw_out),
        );
    }

    // The searchable layers.
    for (layer, block) in &layers {
        let x = slot_x(layer.index, layer.stage);
        let cx = x + BOX_W / 2.0;
        let tip = format!(
            "layer {} (stage {}): {}, {}→{} channels, stride {}, {}→{} px",
            layer.index,
            layer.stage,
            block.name(),
            layer.cin,
            layer.cout,
            layer.stride,
            layer.hw_in,
            layer.hw_out
        );
        if *block == Block::Skip {
            let _ = writeln!(
                s,
                r##"<g class="skip" data-layer="{}" data-block="skip"><title>{}</title><line x1="{x:.1}" y1="{MID_Y}" x2="{:.1}" y2="{MID_Y}" stroke="#555" stroke-width="1"/></g>"##,
                layer.index,
                xml_escape(&tip),
                x + BOX_W
            );
        } else {
            let h = block_height(*block);
            let fill = if block.kernel() == 3 { SVG_K3 } else { SVG_K5 };
            let _ = write!(
                s,
                r##"<g class="block" data-layer="{}" data-block="{}"><title>{}</title><rect x="{x:.1}" y="{:.1}" width="{BOX_W}" height="{h}" rx="2" fill="{fill}" stroke="#222" stroke-width="0.6"/>"##,
                layer.index,
                block.name(),
                xml_escape(&tip),
                MID_Y - h / 2.0
            );
            if block.groups() > 1 {
                let _ = write!(
                    s,
                    r#"<line class="groups" x1="{:.1}" y1="{MID_Y}" x2="{:.1}" y2="{MID_Y}" stroke="white" stroke-width="2"/>"#,
                    x + 1.0,
                    x + BOX_W - 1.0
                );
            }
            s.push_str("</g>\n");
        }
        if layer.stride > 1 {
            let ty = MID_Y + 44.0;
            let _ = writeln!(
                s,
                r#"<path class="stride" d="M{:.1} {:.1} L{:.1} {:.1} L{cx:.1} {:.1} Z" fill="{SVG_STRIDE}"/>"#,
                cx - 5.0,
                ty,
                cx + 5.0,
                ty,
                ty + 7.0
            );
            svg_text(
                &mut s,
                cx,
                ty + 18.0,
                9.0,
                &format!(r#"text-anchor="middle" fill="{SVG_STRIDE}""#),
                &format!("/{}", layer.stride),
            );
        }
        let ny = 278.0;
        let ink = if *block == Block::Skip {
            "#999"
        } else {
            "#222"
        };
        svg_text(
            &mut s,
            cx + 3.0,
            ny,
            9.0,
            &format!(
                r#"text-anchor="end" fill="{ink}" transform="rotate(-90 {:.1} {ny})""#,
                cx + 3.0
            ),
            block.name(),
        );
    }

    // Head, pooling, classifier and output.
    svg_end_box(
        &mut s,
        head_x,
        END_H,
        SVG_FIXED,
        "white",
        &["head 1×1", &format!("→ {}", space.head_out())],
        &format!(
            "head: 1×1 conv, {}→{} channels at {} px",
            space.last_channels(),
            space.head_out(),
            space.last_hw()
        ),
    );
    svg_end_box(
        &mut s,
        pool_x,
        60.0,
        SVG_POOL,
        "#222",
        &["avg pool"],
        "global average pooling",
    );
    svg_end_box(
        &mut s,
        fc_x,
        END_H,
        SVG_FC,
        "white",
        &["fc", &format!("→ {}", space.num_classes)],
        &format!(
            "classifier: fully connected, {}→{}",
            space.head_out(),
            space.num_classes
        ),
    );
    svg_text(
        &mut s,
        output_x,
        MID_Y - 4.0,
        11.0,
        "",
        &format!("{} classes", space.num_classes),
    );

    // Legend.
    let base = 398.0;
    let _ = writeln!(s, r#"<g class="legend">"#);
    svg_text(
        &mut s,
        margin,
        314.0,
        11.0,
        r#"font-weight="bold""#,
        "legend",
    );
    let mut x = margin;
    let item = |s: &mut String, x: &mut f64, h: f64, fill: &str, g2: bool, label: &str| {
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{BOX_W}" height="{h}" rx="2" fill="{fill}" stroke="#222" stroke-width="0.6"/>"##,
            *x,
            base - h
        );
        if g2 {
            let _ = write!(
                s,
                r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="white" stroke-width="2"/>"#,
                *x + 1.0,
                base - h / 2.0,
                *x + BOX_W - 1.0,
                base - h / 2.0
            );
        }
        s.push('\n');
        svg_text(s, *x + BOX_W + 5.0, base, 10.0, "", label);
        *x += BOX_W + 12.0 + 6.5 * label.chars().count() as f64;
    };
    item(&mut s, &mut x, 22.0, SVG_K3, false, "3×3 depthwise");
    item(&mut s, &mut x, 22.0, SVG_K5, false, "5×5 depthwise");
    x += 12.0;
    item(
        &mut s,
        &mut x,
        block_height(Block::K3E6),
        "#bbbbbb",
        false,
        "e6",
    );
    item(
        &mut s,
        &mut x,
        block_height(Block::K3E3),
        "#bbbbbb",
        false,
        "e3",
    );
    item(
        &mut s,
        &mut x,
        block_height(Block::K3E1),
        "#bbbbbb",
        false,
        "e1",
    );
    item(
        &mut s,
        &mut x,
        block_height(Block::K3E1G2),
        "#bbbbbb",
        true,
        "e1, 2 groups",
    );
    x += 12.0;
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#555" stroke-width="1"/>"##,
        base - 4.0,
        x + BOX_W,
        base - 4.0
    );
    svg_text(&mut s, x + BOX_W + 5.0, base, 10.0, "", "skip");
    x += BOX_W + 44.0;
    let _ = writeln!(
        s,
        r#"<path d="M{:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} Z" fill="{SVG_STRIDE}"/>"#,
        x,
        base - 9.0,
        x + 10.0,
        base - 9.0,
        x + 5.0,
        base - 2.0
    );
    svg_text(&mut s, x + 15.0, base, 10.0, "", "stride 2");
    x += 70.0;
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{base:.1}" stroke="#c8c8c8" stroke-dasharray="4 3"/>"##,
        base - 22.0
    );
    svg_text(
        &mut s,
        x + 6.0,
        base,
        10.0,
        "",
        "stage: channels, output size",
    );
    s.push_str("</g>\n</svg>\n");
    s
}
