//! The pictures and text of a run folder: the P_θ heat map is decoded again with the `png` crate and
//! checked pixel by pixel against its layout, colour map and font; the architecture drawing is parsed by a
//! small XML reader below and checked block by block against the architecture; atomic writes leave no
//! temporary files.

use std::collections::HashMap;
use std::fs;
use std::io::BufReader;
use std::path::Path;

use fbnet::report::{
    COLORMAP_BOTTOM, COLORMAP_TOP, GLYPH_H, GLYPH_W, HeatmapLayout, LayerProbs, MISSING_BG,
    MISSING_HATCH, OUTLINE, Rgb, SVG_K3, SVG_K5, UNKNOWN_GLYPH, arch_svg, block_height, colormap,
    format_prob, glyph, heatmap_png, layer_label, markdown_table, text_color_on,
};
use mobile_core::{Arch, Block, Space, builtin};

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

struct Image {
    width: usize,
    height: usize,
    px: Vec<u8>,
}

impl Image {
    fn at(&self, x: usize, y: usize) -> Rgb {
        assert!(
            x < self.width && y < self.height,
            "({x}, {y}) is outside the image"
        );
        let i = (y * self.width + x) * 3;
        [self.px[i], self.px[i + 1], self.px[i + 2]]
    }

    /// Every pixel of a rectangle with its coordinates.
    fn region(&self, (x, y, w, h): (usize, usize, usize, usize)) -> Vec<(usize, usize, Rgb)> {
        let mut out = Vec::new();
        for yy in y..y + h {
            for xx in x..x + w {
                out.push((xx, yy, self.at(xx, yy)));
            }
        }
        out
    }
}

fn decode(path: &Path) -> Image {
    let file = fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(BufReader::new(file)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    Image {
        width: info.width as usize,
        height: info.height as usize,
        px: buf,
    }
}

fn row(label: &str, candidates: &[&str], probs: &[f64]) -> LayerProbs {
    LayerProbs {
        label: label.to_string(),
        candidates: candidates.iter().map(|c| c.to_string()).collect(),
        probs: probs.to_vec(),
    }
}

fn names_in_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Draws a heat map into a fresh folder and decodes it again; the folder must hold only the picture.
fn draw(layers: &[LayerProbs]) -> (HeatmapLayout, Image) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heatmap.png");
    heatmap_png(&path, layers).unwrap();
    assert_eq!(names_in_dir(dir.path()), ["heatmap.png"]);
    let img = decode(&path);
    let layout = HeatmapLayout::new(layers).unwrap();
    assert_eq!((img.width, img.height), (layout.width, layout.height));
    (layout, img)
}

// ---------------------------------------------------------------------------------------------------
// Heat map
// ---------------------------------------------------------------------------------------------------

#[test]
fn heatmap_size_follows_from_layers_and_candidates() {
    let names: Vec<&str> = Block::ALL.iter().map(|b| b.name()).collect();
    let uniform = vec![1.0 / 9.0; 9];
    let layers = |n: usize, cands: &[&str], probs: &[f64]| -> Vec<LayerProbs> {
        (0..n)
            .map(|i| row(&format!("layer {i:02}"), cands, probs))
            .collect()
    };
    let (base, base_img) = draw(&layers(4, &names, &uniform));
    let (_, taller_img) = draw(&layers(5, &names, &uniform));
    let mut ten = names.clone();
    ten.push("k7_e6");
    let (_, wider_img) = draw(&layers(4, &ten, &[0.1; 10]));

    assert_eq!(base.columns, names);
    assert_eq!(base.rows, 4);
    // One more layer adds exactly one row of cells, one more candidate exactly one column.
    assert_eq!(taller_img.width, base_img.width);
    assert_eq!(taller_img.height - base_img.height, base.cell_h + base.gap);
    assert_eq!(wider_img.height, base_img.height);
    assert_eq!(wider_img.width - base_img.width, base.cell_w + base.gap);
    // The cells lie inside the picture, the legend under the last row.
    let (x, y, w, h) = base.cell(3, 8);
    assert!(x + w < base_img.width && y + h < base.legend_top && base.legend_top < base_img.height);
    // A column is wide enough for the longest candidate name in the font.
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap();
    assert!(base.cell_w > longest * (GLYPH_W + 1));

    // Columns are the union of the layers' candidates in first-seen order.
    let mixed = [
        row("a", &["k3_e1", "k5_e6"], &[0.5, 0.5]),
        row("b", &["skip", "k5_e6", "k3_e1", "k3_e3"], &[0.25; 4]),
    ];
    let (layout, img) = draw(&mixed);
    assert_eq!(layout.columns, ["k3_e1", "k5_e6", "skip", "k3_e3"]);
    assert_eq!(layout.rows, 2);
    let (x, y, w, h) = layout.cell(1, 3);
    assert!(x + w <= img.width && y + h <= img.height);
}

#[test]
fn heatmap_cells_take_the_colormap_ends_and_missing_candidates_are_hatched() {
    let layers = [
        row(
            "l3 s1 24→24 @56",
            &["k3_e1", "k5_e6", "skip"],
            &[1.0, 0.0, 0.0],
        ),
        row("l5 s2 24→32 @56/2", &["k3_e1", "k5_e6"], &[0.0, 1.0]),
    ];
    let (layout, img) = draw(&layers);
    let expect = [
        ((0, 0), COLORMAP_TOP),
        ((0, 1), COLORMAP_BOTTOM),
        ((0, 2), COLORMAP_BOTTOM),
        ((1, 0), COLORMAP_BOTTOM),
        ((1, 1), COLORMAP_TOP),
    ];
    for ((r, c), fill) in expect {
        let (sx, sy) = layout.swatch(r, c);
        assert_eq!(img.at(sx, sy), fill, "swatch of cell ({r}, {c})");
        // Inside the cell, away from its edges: only the fill and the printed probability.
        let text = format_prob(layers[r].probs[c]);
        let (tx, ty, tw, th) = layout.text_box(r, c, &text);
        let (x, y, w, h) = layout.cell(r, c);
        let ink = text_color_on(fill);
        assert_ne!(ink, fill);
        let mut fill_count = 0;
        let mut ink_count = 0;
        for (px, py, colour) in img.region((x + 4, y + 4, w - 8, h - 8)) {
            let in_text = (tx..tx + tw).contains(&px) && (ty..ty + th).contains(&py);
            if colour == fill {
                fill_count += 1;
            } else if in_text && colour == ink {
                ink_count += 1;
            } else {
                panic!("cell ({r}, {c}) has {colour:?} at ({px}, {py})");
            }
        }
        assert!(ink_count > 0, "cell ({r}, {c}) prints its probability");
        assert!(fill_count > 2 * ink_count);
    }
    // `skip` is not offered by the strided layer: a grey hatch, without text or outline.
    let region = img.region(layout.cell(1, 2));
    assert!(
        region
            .iter()
            .all(|(_, _, c)| *c == MISSING_BG || *c == MISSING_HATCH)
    );
    let hatch = region
        .iter()
        .filter(|(_, _, c)| *c == MISSING_HATCH)
        .count();
    assert!(
        hatch > region.len() / 10 && hatch < region.len() / 2,
        "{hatch} hatch pixels"
    );
    assert_eq!(colormap(1.0), COLORMAP_TOP);
    assert_eq!(colormap(0.0), COLORMAP_BOTTOM);
}

#[test]
fn heatmap_outlines_the_most_likely_candidate_of_each_row() {
    let layers = [
        row("a", &["k3_e1", "k3_e3", "k5_e6"], &[0.2, 0.5, 0.3]),
        // Ties go to the first.
        row("b", &["k3_e1", "k3_e3", "k5_e6"], &[0.4, 0.2, 0.4]),
    ];
    let (layout, img) = draw(&layers);
    for (r, best) in [(0, 1), (1, 0)] {
        for c in 0..3 {
            let (x, y, w, h) = layout.cell(r, c);
            let corners = [
                (x, y),
                (x + w - 1, y),
                (x, y + h - 1),
                (x + w - 1, y + h - 1),
            ];
            let outlined = img
                .region((x, y, w, h))
                .iter()
                .filter(|(_, _, colour)| *colour == OUTLINE)
                .count();
            if c == best {
                for (px, py) in corners {
                    assert_eq!(img.at(px, py), OUTLINE, "corner of cell ({r}, {c})");
                }
                // A frame all around: at least the perimeter.
                assert!(outlined >= 2 * (w + h) - 4);
            } else {
                assert_eq!(outlined, 0, "cell ({r}, {c}) is not the most likely");
            }
        }
    }
}

#[test]
fn heatmap_prints_two_digit_probabilities_in_the_font() {
    assert_eq!(format_prob(0.834), ".83");
    assert_eq!(format_prob(0.07), ".07");
    assert_eq!(format_prob(0.0), ".00");
    assert_eq!(format_prob(0.996), "1.0");
    assert_eq!(format_prob(1.0), "1.0");

    let probs = [0.83, 0.17];
    let layers = [row("x", &["k3_e1", "skip"], &probs)];
    let (layout, img) = draw(&layers);
    for (c, &p) in probs.iter().enumerate() {
        let text = format_prob(p);
        let (tx, ty, tw, th) = layout.text_box(0, c, &text);
        let scale = th / GLYPH_H;
        let advance = (GLYPH_W + 1) * scale;
        assert!(scale >= 1 && th == GLYPH_H * scale);
        assert_eq!(tw, text.chars().count() * advance - scale);
        let ink = text_color_on(colormap(p));
        // Reference: the glyph bitmaps blown up by `scale`, one blank column between characters.
        for (px, py, colour) in img.region((tx, ty, tw, th)) {
            let (dx, dy) = (px - tx, py - ty);
            let (ch, col) = (dx / advance, (dx % advance) / scale);
            let bits = glyph(text.chars().nth(ch).unwrap())[dy / scale];
            let on = col < GLYPH_W && bits & (0x10 >> col) != 0;
            assert_eq!(colour == ink, on, "`{text}` at ({dx}, {dy})");
        }
    }
}

#[test]
fn glyphs_differ_between_characters() {
    let required: Vec<char> = ('0'..='9')
        .chain('a'..='z')
        .chain('A'..='Z')
        .chain("_.->@% →".chars())
        .collect();
    for (i, &a) in required.iter().enumerate() {
        let g = glyph(a);
        assert!(
            g.iter().all(|row| row >> GLYPH_W == 0),
            "`{a}` is 5 pixels wide"
        );
        assert_ne!(g, UNKNOWN_GLYPH, "`{a}` has its own glyph");
        assert_eq!(
            g.iter().all(|row| *row == 0),
            a == ' ',
            "only space is blank"
        );
        for &b in &required[i + 1..] {
            assert_ne!(g, glyph(b), "`{a}` and `{b}` look the same");
        }
    }
    assert_eq!(glyph('€'), UNKNOWN_GLYPH);
    assert_eq!(glyph('\u{1F600}'), UNKNOWN_GLYPH);
}

#[test]
fn heatmap_row_labels_change_only_the_label_column() {
    let one = [row("l3 s1 24→24 @56", &["k3_e1"], &[1.0])];
    let other = [row("l8 s2 32→32 @28", &["k3_e1"], &[1.0])];
    let (layout, a) = draw(&one);
    let (_, b) = draw(&other);
    assert_eq!((a.width, a.height), (b.width, b.height));
    let (_, y, _, h) = layout.cell(0, 0);
    let mut differ = 0;
    for yy in 0..a.height {
        for xx in 0..a.width {
            if a.at(xx, yy) != b.at(xx, yy) {
                assert!(
                    xx < layout.left && (y..y + h).contains(&yy),
                    "({xx}, {yy}) differs"
                );
                differ += 1;
            }
        }
    }
    assert!(differ > 0);
}

#[test]
fn heatmap_rejects_inconsistent_layers_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heatmap.png");
    let cases: [(Vec<LayerProbs>, &str); 4] = [
        (vec![], "at least one layer"),
        (vec![row("l7", &["k3_e1", "skip"], &[1.0])], "l7"),
        (vec![row("l9", &["k3_e1"], &[f64::NAN])], "l9"),
        (vec![row("l2", &["k3_e1", "k3_e1"], &[0.5, 0.5])], "twice"),
    ];
    for (layers, needle) in cases {
        let err = format!("{:#}", heatmap_png(&path, &layers).unwrap_err());
        assert!(err.contains(needle), "{err}");
        assert!(err.contains("heatmap.png"), "{err}");
    }
    assert!(names_in_dir(dir.path()).is_empty());
}

#[test]
fn colormap_grows_lighter_with_probability() {
    let luma = |c: Rgb| 0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64;
    let mut last = -1.0;
    for i in 0..=200 {
        let l = luma(colormap(i as f64 / 200.0));
        assert!(l >= last, "lightness falls at {i}/200");
        last = l;
    }
    assert!(luma(COLORMAP_TOP) - luma(COLORMAP_BOTTOM) > 150.0);
    assert_eq!(colormap(-3.0), COLORMAP_BOTTOM);
    assert_eq!(colormap(7.0), COLORMAP_TOP);
}

#[test]
fn layer_labels_name_index_stage_shapes_and_stride() {
    let layers = Space::fbnet_224().layers();
    assert_eq!(layer_label(&layers[3]), "l3 s1 24→24 @56");
    assert_eq!(layer_label(&layers[1]), "l1 s1 16→24 @112/2");
}

// ---------------------------------------------------------------------------------------------------
// Architecture drawing
// ---------------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Node {
    name: String,
    attrs: HashMap<String, String>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn walk<'a>(&'a self, out: &mut Vec<&'a Node>) {
        out.push(self);
        for c in &self.children {
            c.walk(out);
        }
    }

    fn all(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        self.walk(&mut out);
        out
    }

    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map_or("", String::as_str)
    }

    fn texts(&self) -> Vec<String> {
        self.all().iter().map(|n| n.text.clone()).collect()
    }
}

/// Checks that character data uses only the five XML entities (or numeric ones) and has no raw `<`/`>`,
/// and returns it unescaped.
fn unescape(raw: &str) -> String {
    assert!(
        !raw.contains('<') && !raw.contains('>'),
        "raw markup in `{raw}`"
    );
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .unwrap_or_else(|| panic!("bare & in `{raw}`"));
        let entity = &rest[i + 1..i + end];
        out.push(match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e if e.starts_with('#') => '?',
            e => panic!("unknown entity &{e}; in `{raw}`"),
        });
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

/// A strict little XML reader: one root, balanced tags, quoted attributes, no duplicate attributes,
/// escaped character data. Panics on anything else.
fn parse_xml(doc: &str) -> Node {
    let mut rest = doc.trim_start();
    if rest.starts_with("<?xml") {
        rest = &rest[rest.find("?>").unwrap() + 2..];
    }
    let mut stack: Vec<Node> = vec![Node {
        name: "#document".into(),
        attrs: HashMap::new(),
        children: vec![],
        text: String::new(),
    }];
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        let text = unescape(&rest[..lt]);
        stack.last_mut().unwrap().text.push_str(&text);
        rest = &rest[lt..];
        if rest.is_empty() {
            break;
        }
        if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->").unwrap() + 3..];
            continue;
        }
        if let Some(r) = rest.strip_prefix("</") {
            let gt = r.find('>').unwrap();
            let name = r[..gt].trim();
            let node = stack.pop().unwrap();
            assert_eq!(node.name, name, "closing tag does not match");
            stack.last_mut().unwrap().children.push(node);
            rest = &r[gt + 1..];
            continue;
        }
        // A start tag: name, then attributes with quoted values.
        let mut r = &rest[1..];
        let name_end = r
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap();
        let name = r[..name_end].to_string();
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == ':'));
        r = &r[name_end..];
        let mut attrs = HashMap::new();
        loop {
            r = r.trim_start();
            if let Some(after) = r.strip_prefix("/>") {
                stack.last_mut().unwrap().children.push(Node {
                    name,
                    attrs,
                    children: vec![],
                    text: String::new(),
                });
                r = after;
                break;
            }
            if let Some(after) = r.strip_prefix('>') {
                stack.push(Node {
                    name,
                    attrs,
                    children: vec![],
                    text: String::new(),
                });
                r = after;
                break;
            }
            let eq = r.find('=').unwrap();
            let key = r[..eq].trim().to_string();
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
            );
            let quoted = &r[eq + 1..];
            let quote = quoted.chars().next().unwrap();
            assert!(quote == '"' || quote == '\'', "unquoted attribute {key}");
            let close = quoted[1..].find(quote).unwrap();
            let value = unescape(&quoted[1..1 + close]);
            assert!(
                attrs.insert(key.clone(), value).is_none(),
                "duplicate {key}"
            );
            r = &quoted[close + 2..];
        }
        rest = r;
    }
    let mut doc = stack.pop().unwrap();
    assert!(stack.is_empty(), "unclosed element");
    assert!(doc.text.trim().is_empty(), "text outside the root");
    assert_eq!(doc.children.len(), 1, "one root element");
    doc.children.pop().unwrap()
}

fn draw_arch(arch: &Arch) -> (String, Node) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arch.svg");
    arch_svg(&path, arch).unwrap();
    assert_eq!(names_in_dir(dir.path()), ["arch.svg"]);
    let text = fs::read_to_string(&path).unwrap();
    let root = parse_xml(&text);
    (text, root)
}

#[test]
fn arch_svg_is_well_formed_and_escapes_text() {
    let space = Space::fbnet_224();
    let b = builtin("fbnet-b").unwrap().unwrap();
    let arch = Arch::parse("x<&>\"y' run", &space, &b.text()).unwrap();
    let (text, root) = draw_arch(&arch);
    assert!(text.starts_with("<?xml"));
    assert_eq!(text.matches("<svg").count(), 1);
    assert_eq!(text.matches("</svg>").count(), 1);
    assert_eq!(root.name, "svg");
    assert_eq!(root.attr("xmlns"), "http://www.w3.org/2000/svg");
    assert!(text.contains("x&lt;&amp;&gt;&quot;y&apos; run"));
    assert!(!text.contains("x<&>"));
    // The name reads back unescaped, as the title and as the heading.
    let texts = root.texts();
    assert!(texts.iter().filter(|t| *t == "x<&>\"y' run").count() >= 2);
    // Self-contained: no external references.
    assert!(!text.contains("href"));
}

#[test]
fn arch_svg_draws_one_box_per_chosen_block() {
    for name in ["fbnet-a", "fbnet-b", "fbnet-96-0.35-1"] {
        let arch = builtin(name).unwrap().unwrap();
        let (_, root) = draw_arch(&arch);
        let nodes = root.all();
        let blocks: Vec<&Node> = nodes
            .iter()
            .copied()
            .filter(|n| n.name == "g" && n.attr("class") == "block")
            .collect();
        let skips: Vec<&Node> = nodes
            .iter()
            .copied()
            .filter(|n| n.name == "g" && n.attr("class") == "skip")
            .collect();
        let layers: Vec<_> = arch.layers().collect();
        let chosen = layers.iter().filter(|(_, b)| *b != Block::Skip).count();
        assert_eq!(blocks.len(), chosen, "{name}");
        assert_eq!(skips.len(), layers.len() - chosen, "{name}");

        let mut heights: HashMap<usize, f64> = HashMap::new();
        for g in blocks.iter().chain(&skips) {
            let index: usize = g.attr("data-layer").parse().unwrap();
            let (_, block) = layers[index];
            assert_eq!(g.attr("data-block"), block.name());
            let rects: Vec<&Node> = g.all().into_iter().filter(|n| n.name == "rect").collect();
            if block == Block::Skip {
                assert!(rects.is_empty(), "{name}: skip layer {index} draws a box");
                continue;
            }
            assert_eq!(rects.len(), 1, "{name}: layer {index}");
            let rect = rects[0];
            let want = if block.kernel() == 3 { SVG_K3 } else { SVG_K5 };
            assert_eq!(rect.attr("fill"), want, "{name}: layer {index} colour");
            let h: f64 = rect.attr("height").parse().unwrap();
            assert_eq!(h, block_height(block));
            heights.insert(block.expansion(), h);
            let marked = g.children.iter().any(|n| n.attr("class") == "groups");
            assert_eq!(
                marked,
                block.groups() == 2,
                "{name}: layer {index} group mark"
            );
            assert!(
                g.texts().concat().contains(block.name()),
                "tooltip names the block"
            );
        }
        // Taller for more expansion.
        let h = |e| heights.get(&e).copied();
        if let (Some(h1), Some(h6)) = (h(1), h(6)) {
            assert!(h6 > h1);
        }
        if let (Some(h3), Some(h6)) = (h(3), h(6)) {
            assert!(h6 > h3);
        }

        // Stride-2 layers are marked, stages labelled with their channel counts, the ends drawn.
        let strided = layers.iter().filter(|(l, _)| l.stride > 1).count();
        let marks = nodes.iter().filter(|n| n.attr("class") == "stride").count();
        assert_eq!(marks, strided, "{name}");
        let texts = root.texts();
        for stage in 0..arch.space.stages.len() {
            let cout = layers
                .iter()
                .find(|(l, _)| l.stage == stage)
                .unwrap()
                .0
                .cout;
            assert!(
                texts.contains(&format!("{cout}ch")),
                "{name}: stage {stage}"
            );
        }
        let fixed = nodes.iter().filter(|n| n.attr("class") == "fixed").count();
        assert_eq!(fixed, 4, "stem, head, pool, classifier");
        assert!(texts.iter().any(|t| t.starts_with("stem")));
        assert!(texts.iter().any(|t| t == "head 1×1"));
        assert!(texts.contains(&format!("→ {}", arch.space.head_out())));
        assert!(nodes.iter().any(|n| n.attr("class") == "legend"));
    }
}

// ---------------------------------------------------------------------------------------------------
// Files and tables
// ---------------------------------------------------------------------------------------------------

#[test]
fn markdown_table_escapes_cells_and_aligns_columns() {
    let rows = vec![
        vec![
            "k3_e1|g2".to_string(),
            "0.83".to_string(),
            "two\nlines".to_string(),
        ],
        vec!["skip".to_string(), "12.5".to_string()],
        vec![
            "k5_e6".to_string(),
            "".to_string(),
            "x".to_string(),
            "extra".to_string(),
        ],
    ];
    let table = markdown_table(&["block", "P", "note"], &rows);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2 + rows.len());
    // Every line has as many unescaped separators (4 columns: the long row widens the table) and the
    // same width.
    let separators = |l: &str| l.replace("\\|", "").matches('|').count();
    for l in &lines {
        assert_eq!(separators(l), 5, "{l}");
        assert_eq!(l.chars().count(), lines[0].chars().count(), "{l}");
    }
    assert!(table.contains("k3_e1\\|g2"));
    assert!(table.contains("two lines"));
    assert!(table.contains("extra"));
    // The numeric column is right-aligned, the others left-aligned.
    let seps: Vec<&str> = lines[1]
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert!(seps[1].ends_with(':') && !seps[0].ends_with(':') && !seps[2].ends_with(':'));
    let p_cell = |l: &str| l.replace("\\|", "").split('|').nth(2).unwrap().to_string();
    assert!(p_cell(lines[2]).ends_with("0.83 "));
    assert!(p_cell(lines[3]).ends_with("12.5 "));
    assert_eq!(markdown_table(&[], &[]), "");
}

/// Writes a sample heat map and drawing to `$FBNET_REPORT_DEMO` (default /tmp/report-demo) to look at.
#[test]
#[ignore = "writes demo pictures for a person to look at"]
fn demo_pictures() {
    let dir = std::env::var("FBNET_REPORT_DEMO").unwrap_or_else(|_| "/tmp/report-demo".into());
    let dir = Path::new(&dir);
    fs::create_dir_all(dir).unwrap();
    let space = Space::fbnet_224();
    let arch = builtin("fbnet-b").unwrap().unwrap();
    let layers: Vec<LayerProbs> = space
        .layers()
        .iter()
        .zip(&arch.choices)
        .map(|(l, chosen)| {
            let cands = space.candidates_at(l);
            // A peaked distribution on FBNet-B's choice, with some spread (deterministic).
            let logits: Vec<f64> = cands
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let peak = if b == chosen { 2.5 } else { 0.0 };
                    peak + ((l.index * 7 + i * 3) % 5) as f64 * 0.3
                })
                .collect();
            let z: f64 = logits.iter().map(|v| v.exp()).sum();
            LayerProbs {
                label: layer_label(l),
                candidates: cands.iter().map(|b| b.name().to_string()).collect(),
                probs: logits.iter().map(|v| v.exp() / z).collect(),
            }
        })
        .collect();
    heatmap_png(&dir.join("heatmap.png"), &layers).unwrap();
    arch_svg(&dir.join("fbnet-b.svg"), &arch).unwrap();
    arch_svg(
        &dir.join("fbnet-96.svg"),
        &builtin("fbnet-96-0.35-1").unwrap().unwrap(),
    )
    .unwrap();
    arch_svg(
        &dir.join("fbnet-a.svg"),
        &builtin("fbnet-a").unwrap().unwrap(),
    )
    .unwrap();
}
