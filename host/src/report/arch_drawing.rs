//! The drawing of an architecture in the style of the paper's Figure 4 (SVG).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use mobile_core::files::write_atomic;
use mobile_core::{Arch, Block, LayerSpec};

use super::xml_escape;

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
