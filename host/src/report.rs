//! Pictures and text a search run leaves in its folder: a heat map of the architecture distribution P_θ
//! (PNG, drawn with a small built-in bitmap font), a drawing of a sampled architecture in the style of the
//! paper's Figure 4 (SVG) and a Markdown table helper for the run report.

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
// Bitmap font
// ---------------------------------------------------------------------------------------------------

/// Width of a glyph of [`glyph`] in font pixels.
pub const GLYPH_W: usize = 5;
/// Height of a glyph of [`glyph`] in font pixels.
pub const GLYPH_H: usize = 7;

/// The glyph drawn for characters the font lacks: a hollow box.
pub const UNKNOWN_GLYPH: [u8; GLYPH_H] = [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F];

/// The 5x7 bitmap of `c`: one byte per row, top first, bit 4 the leftmost pixel. The font covers digits,
/// ASCII letters, common punctuation and `→ × θ ·`; anything else is [`UNKNOWN_GLYPH`].
pub fn glyph(c: char) -> [u8; GLYPH_H] {
    match c {
        ' ' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        'a' => [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E],
        'c' => [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E],
        'd' => [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F],
        'e' => [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08],
        'g' => [0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E],
        'j' => [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x18, 0x08, 0x08, 0x08, 0x08, 0x08, 0x06],
        'm' => [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        'q' => [0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D],
        'v' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A],
        'x' => [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11],
        'y' => [0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'z' => [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        ';' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08],
        '-' | '–' | '−' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '@' => [0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '\\' => [0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00],
        '|' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '*' => [0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00],
        '&' => [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04],
        '?' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
        '\'' => [0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00],
        '"' => [0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00],
        '→' => [0x00, 0x04, 0x02, 0x1F, 0x02, 0x04, 0x00],
        '×' => [0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00],
        'θ' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x0E],
        '·' => [0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00, 0x00],
        _ => UNKNOWN_GLYPH,
    }
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
// Raster canvas
// ---------------------------------------------------------------------------------------------------

/// Font pixels per glyph pixel in the heat map.
const SCALE: usize = 2;
/// Horizontal advance of one character (glyph and one blank column), in image pixels.
const ADVANCE: usize = (GLYPH_W + 1) * SCALE;
/// Height of a line of text, in image pixels.
const TEXT_H: usize = GLYPH_H * SCALE;

/// Width of `text` in image pixels at the heat map's scale.
fn text_width(text: &str) -> usize {
    let n = text.chars().count();
    if n == 0 { 0 } else { n * ADVANCE - SCALE }
}

struct Canvas {
    width: usize,
    height: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize, bg: Rgb) -> Canvas {
        Canvas {
            width,
            height,
            px: bg.repeat(width * height),
        }
    }

    fn set(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.set(xx, yy, c);
            }
        }
    }

    /// A frame `t` pixels thick just inside the rectangle.
    fn frame(&mut self, x: usize, y: usize, w: usize, h: usize, t: usize, c: Rgb) {
        self.fill(x, y, w, t, c);
        self.fill(x, y + h - t, w, t, c);
        self.fill(x, y, t, h, c);
        self.fill(x + w - t, y, t, h, c);
    }

    /// Text with its top-left corner at (x, y).
    fn text(&mut self, x: usize, y: usize, text: &str, c: Rgb) {
        for (i, ch) in text.chars().enumerate() {
            let g = glyph(ch);
            let gx = x + i * ADVANCE;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (0x10 >> col) != 0 {
                        self.fill(gx + col * SCALE, y + row * SCALE, SCALE, SCALE, c);
                    }
                }
            }
        }
    }

    fn hatch(&mut self, x: usize, y: usize, w: usize, h: usize) {
        for dy in 0..h {
            for dx in 0..w {
                let c = if (dx + dy) % 6 == 0 {
                    MISSING_HATCH
                } else {
                    MISSING_BG
                };
                self.set(x + dx, y + dy, c);
            }
        }
    }

    fn png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("encoding PNG")?;
        w.write_image_data(&self.px).context("encoding PNG")?;
        w.finish().context("encoding PNG")?;
        Ok(out)
    }
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

/// Padding between a cell's edge and its printed probability.
const CELL_PAD: usize = 8;
/// Blank pixels between neighbouring cells.
const CELL_GAP: usize = 2;
/// Thickness of the outline of a row's most likely candidate.
const OUTLINE_T: usize = 3;
const MARGIN: usize = 12;
const LABEL_GAP: usize = 12;
const BAR_W: usize = 160;
const LEGEND_SEP: usize = 24;

/// Where everything of a heat map lies, in image pixels (origin top left).
#[derive(Clone, Debug, PartialEq)]
pub struct HeatmapLayout {
    pub width: usize,
    pub height: usize,
    /// Left edge of the first column of cells.
    pub left: usize,
    /// Top edge of the first row of cells.
    pub top: usize,
    pub cell_w: usize,
    pub cell_h: usize,
    /// Blank pixels between neighbouring cells.
    pub gap: usize,
    /// Column names: the union of the layers' candidates in first-seen order.
    pub columns: Vec<String>,
    pub rows: usize,
    /// Top edge of the legend under the cells.
    pub legend_top: usize,
}

impl HeatmapLayout {
    /// Lays out the heat map of `layers`, checking them: at least one layer, as many probabilities as
    /// candidates, finite probabilities, no candidate twice in a layer.
    pub fn new(layers: &[LayerProbs]) -> Result<HeatmapLayout> {
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
        let cell_w = columns
            .iter()
            .map(|c| text_width(c))
            .chain([text_width("1.0")])
            .max()
            .unwrap_or(0)
            + 2 * CELL_PAD;
        let cell_h = TEXT_H + 2 * CELL_PAD;
        let label_w = layers
            .iter()
            .map(|l| text_width(&l.label))
            .max()
            .unwrap_or(0);
        let left = MARGIN + label_w + LABEL_GAP;
        let top = MARGIN + TEXT_H + CELL_PAD;
        let grid_w = columns.len() * (cell_w + CELL_GAP) - CELL_GAP;
        let grid_h = layers.len() * (cell_h + CELL_GAP) - CELL_GAP;
        let legend_top = top + grid_h + 2 * CELL_PAD;
        let width = (left + grid_w).max(MARGIN + legend_width()) + MARGIN;
        let height = legend_top + TEXT_H + MARGIN;
        Ok(HeatmapLayout {
            width,
            height,
            left,
            top,
            cell_w,
            cell_h,
            gap: CELL_GAP,
            columns,
            rows: layers.len(),
            legend_top,
        })
    }

    /// The cell of `row` and `column` as (x, y, width, height).
    pub fn cell(&self, row: usize, column: usize) -> (usize, usize, usize, usize) {
        (
            self.left + column * (self.cell_w + self.gap),
            self.top + row * (self.cell_h + self.gap),
            self.cell_w,
            self.cell_h,
        )
    }

    /// Where the printed probability of a cell lies, as (x, y, width, height): centred in the cell.
    pub fn text_box(&self, row: usize, column: usize, text: &str) -> (usize, usize, usize, usize) {
        let (x, y, w, h) = self.cell(row, column);
        let tw = text_width(text);
        (x + (w - tw) / 2, y + (h - TEXT_H) / 2, tw, TEXT_H)
    }

    /// A point of a cell that shows its fill colour whatever is printed on it or around it: centred
    /// horizontally, between the outline band and the printed probability.
    pub fn swatch(&self, row: usize, column: usize) -> (usize, usize) {
        let (x, y, w, _) = self.cell(row, column);
        (x + w / 2, y + OUTLINE_T + (CELL_PAD - OUTLINE_T) / 2)
    }
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

fn legend_items() -> (&'static str, &'static str, &'static str, &'static str) {
    ("P_θ 0", "1", "not offered", "most likely")
}

fn legend_width() -> usize {
    let (p, one, missing, likely) = legend_items();
    let gap = ADVANCE;
    text_width(p)
        + gap
        + BAR_W
        + gap
        + text_width(one)
        + LEGEND_SEP
        + TEXT_H
        + gap
        + text_width(missing)
        + LEGEND_SEP
        + TEXT_H
        + gap
        + text_width(likely)
}

/// Renders the heat map of P_θ (one row per layer, one column per candidate) as an RGB image.
fn render_heatmap(layers: &[LayerProbs]) -> Result<(HeatmapLayout, Canvas)> {
    let lay = HeatmapLayout::new(layers)?;
    let mut cv = Canvas::new(lay.width, lay.height, BACKGROUND);
    for (c, name) in lay.columns.iter().enumerate() {
        let (x, _, w, _) = lay.cell(0, c);
        let tw = text_width(name);
        cv.text(x + (w - tw) / 2, MARGIN, name, INK);
    }
    for (r, layer) in layers.iter().enumerate() {
        let (_, y, _, h) = lay.cell(r, 0);
        cv.text(MARGIN, y + (h - TEXT_H) / 2, &layer.label, INK);
        let probs: HashMap<&str, f64> = layer
            .candidates
            .iter()
            .map(String::as_str)
            .zip(layer.probs.iter().copied())
            .collect();
        // The most likely candidate (the first of equals).
        let best = layer
            .candidates
            .iter()
            .zip(&layer.probs)
            .fold(None::<(&str, f64)>, |best, (c, &p)| match best {
                Some((_, bp)) if bp >= p => best,
                _ => Some((c.as_str(), p)),
            })
            .map(|(c, _)| c);
        for (c, name) in lay.columns.iter().enumerate() {
            let (x, y, w, h) = lay.cell(r, c);
            match probs.get(name.as_str()) {
                None => cv.hatch(x, y, w, h),
                Some(&p) => {
                    let fill = colormap(p);
                    cv.fill(x, y, w, h, fill);
                    let text = format_prob(p);
                    let (tx, ty, _, _) = lay.text_box(r, c, &text);
                    cv.text(tx, ty, &text, text_color_on(fill));
                    if best == Some(name.as_str()) {
                        cv.frame(x, y, w, h, OUTLINE_T, OUTLINE);
                    }
                }
            }
        }
    }
    // Legend: colour bar, the hatch of a candidate not offered, the outline of the most likely one.
    let (p_label, one, missing, likely) = legend_items();
    let y = lay.legend_top;
    let mut x = MARGIN;
    cv.text(x, y, p_label, INK);
    x += text_width(p_label) + ADVANCE;
    for i in 0..BAR_W {
        let c = colormap(i as f64 / (BAR_W - 1) as f64);
        cv.fill(x + i, y, 1, TEXT_H, c);
    }
    x += BAR_W + ADVANCE;
    cv.text(x, y, one, INK);
    x += text_width(one) + LEGEND_SEP;
    cv.hatch(x, y, TEXT_H, TEXT_H);
    x += TEXT_H + ADVANCE;
    cv.text(x, y, missing, INK);
    x += text_width(missing) + LEGEND_SEP;
    cv.fill(x, y, TEXT_H, TEXT_H, COLORMAP_TOP);
    cv.frame(x, y, TEXT_H, TEXT_H, OUTLINE_T, OUTLINE);
    x += TEXT_H + ADVANCE;
    cv.text(x, y, likely, INK);
    Ok((lay, cv))
}

/// Writes the heat map of P_θ to `path` as an 8-bit RGB PNG: one row per searchable layer, one column per
/// candidate (the union of the layers' candidates in first-seen order), each cell coloured by
/// [`colormap`] with its probability printed (`.83`), a candidate the layer does not offer hatched grey,
/// each row's most likely candidate outlined, and a legend underneath. The file is written atomically.
pub fn heatmap_png(path: &Path, layers: &[LayerProbs]) -> Result<()> {
    let (_, cv) = render_heatmap(layers)
        .with_context(|| format!("cannot draw the heat map {}", path.display()))?;
    Ok(write_atomic(path, &cv.png()?)?)
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
