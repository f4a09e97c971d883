//! Small-multiple line charts as SVG (the search's per-epoch curves): one panel per quantity, each with
//! its own y range, epochs along x. SVG text is drawn by the viewer, so no font is needed here.

use std::fmt::Write as _;

use crate::report::xml_escape;

/// One panel: a title and one or more named series of (x, y) points.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

const W: f64 = 300.0;
const H: f64 = 180.0;
const PAD_L: f64 = 52.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 26.0;
const PAD_B: f64 = 30.0;
const COLUMNS: usize = 3;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The panels laid out in rows of three, as one SVG document.
pub fn line_charts_svg(panels: &[Panel]) -> String {
    let rows = panels.len().div_ceil(COLUMNS).max(1);
    let (width, height) = (W * COLUMNS as f64, H * rows as f64);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (k, panel) in panels.iter().enumerate() {
        let (ox, oy) = ((k % COLUMNS) as f64 * W, (k / COLUMNS) as f64 * H);
        panel_svg(&mut s, panel, ox, oy);
    }
    s += "</svg>\n";
    s
}

/// The range of the values, widened when flat so that a constant series sits mid-panel.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = lo.abs().max(1.0) * 0.05;
        return (lo - d, hi + d);
    }
    (lo, hi)
}

fn panel_svg(s: &mut String, panel: &Panel, ox: f64, oy: f64) {
    let points = || panel.series.iter().flat_map(|(_, p)| p.iter());
    let (x0, x1) = range(points().map(|p| p.0));
    let (y0, y1) = range(points().map(|p| p.1));
    let (pw, ph) = (W - PAD_L - PAD_R, H - PAD_T - PAD_B);
    let px = |x: f64| ox + PAD_L + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| oy + PAD_T + (1.0 - (y - y0) / (y1 - y0)) * ph;
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
        ox + PAD_L,
        oy + 16.0,
        xml_escape(&panel.title)
    );
    let _ = writeln!(
        s,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{pw:.1}\" height=\"{ph:.1}\" fill=\"none\" stroke=\"#999\"/>",
        ox + PAD_L,
        oy + PAD_T
    );
    for (v, anchor_y) in [(y1, py(y1) + 4.0), (y0, py(y0))] {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{anchor_y:.1}\" text-anchor=\"end\">{}</text>",
            ox + PAD_L - 4.0,
            short(v)
        );
    }
    for v in [x0, x1] {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            px(v),
            oy + H - PAD_B + 14.0,
            short(v)
        );
    }
    for (i, (name, pts)) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                s,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{color}\"/>"
            );
        }
        if panel.series.len() > 1 {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}</text>",
                ox + PAD_L + 6.0 + 90.0 * i as f64,
                oy + PAD_T + 14.0,
                xml_escape(name)
            );
        }
    }
}

/// A number in at most four significant digits.
fn short(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(0.01..10000.0).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}
