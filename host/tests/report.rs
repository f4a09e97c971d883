//! The pictures and text of a run folder: the P_θ heat map and the architecture drawing are SVG, read
//! back with an XML reader and checked element by element against the probabilities, the colour map and
//! the architecture; the Markdown tables are checked line by line.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use fbnet::report::{
    COLORMAP_BOTTOM, COLORMAP_TOP, LayerProbs, MISSING_BG, OUTLINE, Rgb, SVG_K3, SVG_K5, arch_svg,
    block_height, colormap, format_prob, heatmap_svg, heatmap_svg_string, layer_label,
    markdown_table, text_color_on,
};
use mobile_core::{Arch, Block, Space, builtin};

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

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

/// An element of a parsed SVG: its name, attributes (the root's namespace as `xmlns`), children and
/// its own text.
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

    /// The elements of class `class`.
    fn class(&self, class: &str) -> Vec<&Node> {
        self.all()
            .into_iter()
            .filter(|n| n.attr("class") == class)
            .collect()
    }
}

/// Parses an XML document (panicking on anything that is not well-formed) into [`Node`]s.
fn parse_xml(doc: &str) -> Node {
    fn convert(n: roxmltree::Node) -> Node {
        let mut attrs: HashMap<String, String> = n
            .attributes()
            .map(|a| (a.name().to_string(), a.value().to_string()))
            .collect();
        if let Some(ns) = n.tag_name().namespace() {
            attrs.insert("xmlns".into(), ns.to_string());
        }
        Node {
            name: n.tag_name().name().to_string(),
            attrs,
            children: n
                .children()
                .filter(|c| c.is_element())
                .map(convert)
                .collect(),
            text: n
                .children()
                .filter(|c| c.is_text())
                .filter_map(|c| c.text())
                .collect(),
        }
    }
    let parsed = roxmltree::Document::parse(doc).unwrap_or_else(|e| panic!("not XML: {e}"));
    convert(parsed.root_element())
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn num(n: &Node, key: &str) -> f64 {
    n.attr(key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} of {n:?}"))
}

/// Draws a heat map into a fresh folder and parses it again; the folder must hold only the picture.
fn draw(layers: &[LayerProbs]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heatmap.svg");
    heatmap_svg(&path, layers).unwrap();
    assert_eq!(names_in_dir(dir.path()), ["heatmap.svg"]);
    let root = parse_xml(&fs::read_to_string(&path).unwrap());
    assert_eq!(root.name, "svg");
    assert_eq!(root.attr("xmlns"), "http://www.w3.org/2000/svg");
    root
}

// ---------------------------------------------------------------------------------------------------
// Heat map
// ---------------------------------------------------------------------------------------------------

#[test]
fn heatmap_has_one_cell_per_layer_and_candidate_and_grows_with_them() {
    let names: Vec<&str> = Block::ALL.iter().map(|b| b.name()).collect();
    let uniform = vec![1.0 / 9.0; 9];
    let one = draw(&[row("l0", &names, &uniform)]);
    let three = draw(&[
        row("l0", &names, &uniform),
        row("l1", &names, &uniform),
        row("l2", &names, &uniform),
    ]);
    assert_eq!(one.class("cell").len(), 9);
    assert_eq!(three.class("cell").len(), 27);
    assert!(num(&three, "height") > num(&one, "height"));
    assert_eq!(num(&three, "width"), num(&one, "width"));
    // the column headers are the candidates in first-seen order
    let headers: Vec<String> = three
        .class("column")
        .iter()
        .map(|n| n.text.clone())
        .collect();
    assert_eq!(headers, names);
    // cells of one row share a top edge, cells of one column a left edge, and none overlap
    let cells = three.class("cell");
    for a in &cells {
        for b in &cells {
            if std::ptr::eq(*a, *b) {
                continue;
            }
            let (ax, ay, bx, by) = (num(a, "x"), num(a, "y"), num(b, "x"), num(b, "y"));
            let apart = ax + num(a, "width") <= bx
                || bx + num(b, "width") <= ax
                || ay + num(a, "height") <= by
                || by + num(b, "height") <= ay;
            assert!(apart, "{a:?} overlaps {b:?}");
            if a.attr("data-layer") == b.attr("data-layer") {
                assert_eq!(ay, by);
            }
            if a.attr("data-candidate") == b.attr("data-candidate") {
                assert_eq!(ax, bx);
            }
        }
    }
}

#[test]
fn heatmap_cells_take_the_colormap_and_print_their_probability() {
    let layers = [
        row("l0", &["k3_e1", "k5_e6", "skip"], &[0.0, 1.0, 0.0]),
        row("l1", &["k3_e1", "k5_e6"], &[0.83, 0.17]),
    ];
    let root = draw(&layers);
    let cells = root.class("cell");
    assert_eq!(cells.len(), 5);
    let texts: Vec<&Node> = root
        .children
        .iter()
        .filter(|n| n.name == "text" && n.attr("class").is_empty())
        .collect();
    for (cell, text) in cells.iter().zip(&texts) {
        let p: f64 = num(cell, "data-p");
        assert_eq!(cell.attr("fill"), hex(colormap(p)), "{cell:?}");
        assert_eq!(text.text, format_prob(p));
        assert_eq!(text.attr("fill"), hex(text_color_on(colormap(p))));
        // the probability is printed inside its cell
        let (x, y) = (num(text, "x"), num(text, "y"));
        assert!(x > num(cell, "x") && x < num(cell, "x") + num(cell, "width"));
        assert!(y > num(cell, "y") && y < num(cell, "y") + num(cell, "height"));
    }
    assert_eq!(cells[1].attr("fill"), hex(COLORMAP_TOP));
    assert_eq!(cells[0].attr("fill"), hex(COLORMAP_BOTTOM));
    // a candidate layer 1 does not offer is hatched, with the hatch's grey in the pattern
    let missing = root.class("missing");
    assert_eq!(missing.len(), 1);
    assert_eq!(
        (
            missing[0].attr("data-layer"),
            missing[0].attr("data-candidate")
        ),
        ("1", "skip")
    );
    assert_eq!(missing[0].attr("fill"), "url(#hatch)");
    let hatch = root
        .all()
        .into_iter()
        .find(|n| n.attr("id") == "hatch")
        .unwrap();
    assert!(
        hatch
            .all()
            .iter()
            .any(|n| n.attr("fill") == hex(MISSING_BG))
    );
}

#[test]
fn heatmap_outlines_the_most_likely_candidate_of_each_row() {
    let layers = [
        row("l0", &["a", "b", "c"], &[0.2, 0.5, 0.3]),
        // equals: the first is the most likely
        row("l1", &["a", "b", "c"], &[0.4, 0.4, 0.2]),
        row("l2", &["a", "b", "c"], &[0.1, 0.1, 0.8]),
    ];
    let root = draw(&layers);
    let best: Vec<(String, String)> = root
        .class("best")
        .iter()
        .map(|n| {
            (
                n.attr("data-layer").to_string(),
                n.attr("data-candidate").to_string(),
            )
        })
        .collect();
    let expect = [("0", "b"), ("1", "a"), ("2", "c")].map(|(l, c)| (l.to_string(), c.to_string()));
    assert_eq!(best, expect);
    for n in root.class("best") {
        assert_eq!(n.attr("stroke"), hex(OUTLINE));
        assert_eq!(n.attr("fill"), "none");
    }
}

#[test]
fn heatmap_prints_two_digit_probabilities() {
    assert_eq!(format_prob(0.834), ".83");
    assert_eq!(format_prob(0.07), ".07");
    assert_eq!(format_prob(0.0), ".00");
    assert_eq!(format_prob(0.995), "1.0");
    assert_eq!(format_prob(1.7), "1.0");
    assert_eq!(format_prob(-0.2), ".00");
}

#[test]
fn heatmap_escapes_labels_and_candidate_names() {
    let root = draw(&[row("l0 <s&1> \"x\"", &["a<b", "c&d"], &[0.5, 0.5])]);
    let label = root.class("label");
    assert_eq!(label[0].text, "l0 <s&1> \"x\"");
    let headers: Vec<String> = root
        .class("column")
        .iter()
        .map(|n| n.text.clone())
        .collect();
    assert_eq!(headers, ["a<b", "c&d"]);
}

#[test]
fn heatmap_rejects_inconsistent_layers_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heatmap.svg");
    for (layers, what) in [
        (vec![], "at least one layer"),
        (vec![row("l0", &["a", "b"], &[1.0])], "2 candidates but 1"),
        (vec![row("l0", &["a"], &[f64::NAN])], "not finite"),
        (vec![row("l0", &["a", "a"], &[0.5, 0.5])], "twice"),
        (vec![row("l0", &[], &[])], "at least one candidate"),
    ] {
        let err = format!("{:#}", heatmap_svg(&path, &layers).unwrap_err());
        assert!(err.contains(what) && err.contains("heatmap.svg"), "{err}");
        assert!(heatmap_svg_string(&layers).is_err());
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
    heatmap_svg(&dir.join("heatmap.svg"), &layers).unwrap();
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
