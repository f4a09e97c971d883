//! Pictures and text a search run leaves in its folder, all of them text (written from the run folder
//! after the search, never inside its loop): a heat map of the architecture
//! distribution P_θ (SVG), a drawing of a sampled architecture in the style of the paper's Figure 4
//! (SVG) and a Markdown table helper for the run report.

use std::fmt::Write as _;

mod arch_drawing;
pub mod charts;
mod heatmap;

pub use arch_drawing::{SVG_K3, SVG_K5, arch_svg, arch_svg_string, block_height};
pub use heatmap::{
    COLORMAP_BOTTOM, COLORMAP_TOP, LayerProbs, MISSING_BG, MISSING_HATCH, OUTLINE, Rgb, colormap,
    format_prob, heatmap_svg, heatmap_svg_string, layer_label, text_color_on,
};

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
