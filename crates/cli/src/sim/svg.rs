//! A line chart written as SVG text by hand, for `rserpool sim ... --svg`.
//! Only what the experiments need: panels stacked top to bottom, each with
//! axes, ticks, shaded x intervals, dashed horizontal rules and polylines;
//! a legend; text lines. Points are thinned to what a pixel column can show,
//! so that a long run at a fine step still gives a small file.

use std::fmt::Write;

/// Width of the drawing, in pixels.
const WIDTH: f64 = 960.0;
/// Room left of a plot for the y tick labels and the y axis label.
const LEFT: f64 = 72.0;
const RIGHT: f64 = 20.0;
/// Room above a plot for its heading, and below for tick labels and the x
/// axis label.
const HEAD: f64 = 22.0;
const FOOT: f64 = 38.0;
/// Gap between two stacked blocks.
const GAP: f64 = 14.0;

/// Fill of a shaded x interval.
const BAND: &str = r##"fill="#808080" fill-opacity="0.16""##;

/// Ten colours that stay apart for the colour-blind (Tableau 10).
const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
/// From the eleventh line on, colours repeat: a dash pattern tells them
/// apart.
const DASHES: [&str; 4] = ["", "7 3", "2 2", "7 2 2 2"];

/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stroke {
    colour: &'static str,
    dash: &'static str,
}

impl Stroke {
    /// The stroke of the `i`th of several lines.
    pub fn nth(i: usize) -> Self {
        Self {
            colour: COLOURS[i % COLOURS.len()],
            dash: DASHES[(i / COLOURS.len()) % DASHES.len()],
        }
    }

    /// A black line.
    pub fn black() -> Self {
        Self {
            colour: "#222222",
            dash: "",
        }
    }

    fn attributes(&self) -> String {
        let mut a = format!(r#"stroke="{}""#, self.colour);
        if !self.dash.is_empty() {
            let _ = write!(a, r#" stroke-dasharray="{}""#, self.dash);
        }
        a
    }
}

/// One polyline of a panel.
pub struct Line<'a> {
    /// Shown as a tooltip.
    pub name: &'a str,
    pub stroke: Stroke,
    /// (x, y) in data units, x ascending.
    pub points: &'a [(f64, f64)],
}

/// One plot: data ranges, decorations and lines.
pub struct Panel<'a> {
    /// The `id` of the panel's group, so that readers (and tests) can find
    /// the lines of one panel.
    pub id: &'a str,
    pub heading: &'a str,
    pub height: f64,
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Shaded x intervals, explained by `band_label` at the top right.
    pub bands: &'a [(f64, f64)],
    pub band_label: &'a str,
    /// Dashed horizontal lines at y with a label.
    pub rules: &'a [(f64, String)],
    pub lines: &'a [Line<'a>],
}

/// An SVG drawing being laid out from top to bottom.
pub struct Chart {
    body: String,
    /// Where the next block starts.
    y: f64,
}

impl Default for Chart {
    fn default() -> Self {
        Self::new()
    }
}

impl Chart {
    pub fn new() -> Self {
        Self {
            body: String::new(),
            y: 8.0,
        }
    }

    /// A line of text across the drawing.
    pub fn text(&mut self, text: &str, size: f64, bold: bool) {
        self.y += size + 4.0;
        let weight = if bold { r#" font-weight="bold""# } else { "" };
        let _ = writeln!(
            self.body,
            r#"<text x="{LEFT}" y="{:.1}" font-size="{size}"{weight}>{}</text>"#,
            self.y,
            escape(text)
        );
    }

    /// Entries (stroke, label) in as many columns as fit.
    pub fn legend(&mut self, entries: &[(Stroke, String)]) {
        const COLUMN: f64 = 176.0;
        const ROW: f64 = 17.0;
        let columns = (((WIDTH - LEFT - RIGHT) / COLUMN).floor() as usize).max(1);
        self.y += 6.0;
        let _ = writeln!(self.body, r#"<g id="legend">"#);
        for (i, (stroke, label)) in entries.iter().enumerate() {
            let x = LEFT + COLUMN * (i % columns) as f64;
            let y = self.y + ROW * (i / columns) as f64 + ROW / 2.0;
            let _ = writeln!(
                self.body,
                r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke-width="2.5" {}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 22.0,
                stroke.attributes(),
                x + 28.0,
                y + 4.0,
                escape(label)
            );
        }
        let _ = writeln!(self.body, "</g>");
        self.y += ROW * entries.len().div_ceil(columns) as f64;
    }

    pub fn panel(&mut self, p: &Panel<'_>) {
        self.y += GAP;
        let top = self.y;
        let (x0, x1) = (LEFT, WIDTH - RIGHT);
        let (y0, y1) = (top + HEAD, top + p.height - FOOT);
        let sx = Scale::new(p.x, (x0, x1));
        let sy = Scale::new(p.y, (y1, y0));
        let b = &mut self.body;
        let _ = writeln!(b, r#"<g id="{}">"#, escape(p.id));
        let _ = writeln!(
            b,
            r#"<text x="{x0}" y="{:.1}" font-weight="bold">{}</text>"#,
            top + 14.0,
            escape(p.heading)
        );
        // Above the plot, not inside the band, where it would cross lines.
        if !p.bands.is_empty() && !p.band_label.is_empty() {
            let _ = writeln!(
                b,
                r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" {BAND}/><text x="{x1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x1 - 14.0 - 6.2 * p.band_label.chars().count() as f64,
                top + 5.0,
                top + 14.0,
                escape(p.band_label)
            );
        }
        for &(from, to) in p.bands {
            let (from, to) = (from.max(p.x.0), to.min(p.x.1));
            if from >= to {
                continue;
            }
            let (a, z) = (sx.map(from), sx.map(to));
            let _ = writeln!(
                b,
                r##"<rect x="{a:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" {BAND}/>"##,
                z - a,
                y1 - y0
            );
        }
        for t in ticks(p.y, 6) {
            let y = sy.map(t);
            let _ = writeln!(
                b,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                tick_label(t, p.y, 6)
            );
        }
        for t in ticks(p.x, 10) {
            let x = sx.map(t);
            let _ = writeln!(
                b,
                r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}" stroke="#e4e4e4"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                y1 + 15.0,
                tick_label(t, p.x, 10)
            );
        }
        let _ = writeln!(
            b,
            r##"<rect x="{x0}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333333"/>"##,
            x1 - x0,
            y1 - y0
        );
        for line in p.lines {
            let pts = thin(
                line.points
                    .iter()
                    .filter(|(x, _)| (p.x.0..=p.x.1).contains(x))
                    .map(|&(x, y)| (sx.map(x), sy.map(y))),
            );
            let mut coords = String::with_capacity(pts.len() * 12);
            for (i, (x, y)) in pts.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                let _ = write!(coords, "{sep}{x:.1},{y:.1}");
            }
            let _ = writeln!(
                b,
                r#"<polyline fill="none" stroke-width="1.5" stroke-linejoin="round" {} points="{coords}"><title>{}</title></polyline>"#,
                line.stroke.attributes(),
                escape(line.name)
            );
        }
        for (at, label) in p.rules {
            if !(p.y.0..=p.y.1).contains(at) {
                continue;
            }
            let y = sy.map(*at);
            let _ = writeln!(
                b,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#222222" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
                x1 - 4.0,
                y - 4.0,
                escape(label)
            );
        }
        let _ = writeln!(
            b,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            y1 + 32.0,
            escape(p.x_label)
        );
        let _ = writeln!(
            b,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (y0 + y1) / 2.0,
            escape(p.y_label)
        );
        let _ = writeln!(b, "</g>");
        self.y += p.height;
    }

    /// The whole document.
    pub fn finish(self) -> String {
        let height = (self.y + GAP).ceil();
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n\
             <g font-family=\"sans-serif\" font-size=\"12\" fill=\"#222222\">\n{}</g>\n</svg>\n",
            self.body
        )
    }
}

/// Maps a data range onto a pixel range (either may be reversed).
struct Scale {
    from: (f64, f64),
    to: (f64, f64),
}

impl Scale {
    fn new(from: (f64, f64), to: (f64, f64)) -> Self {
        Self { from, to }
    }

    fn map(&self, v: f64) -> f64 {
        let span = self.from.1 - self.from.0;
        let f = if span > 0.0 {
            (v - self.from.0) / span
        } else {
            0.0
        };
        self.to.0 + f * (self.to.1 - self.to.0)
    }
}

/// A round step (1, 2 or 5 times a power of ten) that cuts `span` into
/// about `target` pieces.
fn nice_step(span: f64, target: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// The smallest round number at or above `v` on the tick grid of
/// [0, v]: an axis end that gets a labelled tick.
pub fn nice_ceiling(v: f64, target: usize) -> f64 {
    let step = nice_step(v, target);
    (v / step).ceil() * step
}

fn ticks(range: (f64, f64), target: usize) -> Vec<f64> {
    let step = nice_step(range.1 - range.0, target);
    let mut t = (range.0 / step).ceil() * step;
    let mut out = Vec::new();
    // A little slack so that an end on the grid still gets its tick despite
    // rounding.
    while t <= range.1 + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

fn tick_label(t: f64, range: (f64, f64), target: usize) -> String {
    let step = nice_step(range.1 - range.0, target);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    // `-0` would look like a bug.
    let t = if t.abs() < step * 1e-9 { 0.0 } else { t };
    format!("{t:.decimals$}")
}

/// Keeps of each pixel column (points rounded to whole x pixels) the first,
/// lowest, highest and last point, in their order, then drops the middle of
/// any three points at the same height: the drawing looks the same, the
/// file stays small however many samples there are.
fn thin(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut kept: Vec<(f64, f64)> = Vec::new();
    let mut column: Vec<(f64, f64)> = Vec::new();
    let flush = |column: &mut Vec<(f64, f64)>, kept: &mut Vec<(f64, f64)>| {
        if column.is_empty() {
            return;
        }
        let by_y = |&a: &usize, &b: &usize| column[a].1.total_cmp(&column[b].1);
        let top = (0..column.len()).min_by(by_y).unwrap_or(0);
        let bottom = (0..column.len()).max_by(by_y).unwrap_or(0);
        let mut picks = [0, top, bottom, column.len() - 1];
        picks.sort_unstable();
        let mut last = None;
        for i in picks {
            if last != Some(i) {
                push_dropping_flat(kept, column[i]);
                last = Some(i);
            }
        }
        column.clear();
    };
    for p in points {
        if column.first().is_some_and(|c| c.0.round() != p.0.round()) {
            flush(&mut column, &mut kept);
        }
        column.push(p);
    }
    flush(&mut column, &mut kept);
    kept
}

/// Appends `p`, first dropping the last point if it lies between its
/// predecessor and `p` at the same height (pixel y are compared rounded to
/// the 0.1 px they are written with).
fn push_dropping_flat(kept: &mut Vec<(f64, f64)>, p: (f64, f64)) {
    let same = |a: f64, b: f64| (a * 10.0).round() == (b * 10.0).round();
    if let [.., a, b] = kept[..] {
        if same(a.1, b.1) && same(b.1, p.1) {
            kept.pop();
        }
    }
    kept.push(p);
}

/// Text content and attribute values may not hold these raw.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(600.0, 10), 100.0);
        assert_eq!(nice_step(95.0, 10), 10.0);
        assert_eq!(nice_step(1.0, 6), 0.2);
        assert_eq!(nice_ceiling(343.0, 6), 400.0);
        assert_eq!(ticks((0.0, 600.0), 10).len(), 7);
        assert_eq!(tick_label(1.2000000001, (1.0, 2.0), 6), "1.2");
        assert_eq!(tick_label(200.0, (0.0, 400.0), 6), "200");
    }

    #[test]
    fn thinning_keeps_the_shape_and_drops_flat_runs() {
        // A step from 0 to 5 on a flat line, two samples per pixel.
        let pts: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64 / 2.0, if i < 100 { 0.0 } else { 5.0 }))
            .collect();
        let kept = thin(pts.iter().copied());
        assert_eq!(kept.first(), Some(&(0.0, 0.0)));
        assert_eq!(kept.last(), Some(&(99.5, 5.0)));
        assert!(kept.len() <= 6, "{kept:?}");
        // A spike inside one pixel column survives.
        let spike = [(0.0, 1.0), (0.1, 9.0), (0.2, 1.0), (5.0, 1.0)];
        let kept = thin(spike.iter().copied());
        assert!(kept.contains(&(0.1, 9.0)), "{kept:?}");
    }

    #[test]
    fn the_document_is_closed_and_text_escaped() {
        let mut c = Chart::new();
        c.text("a < b & c", 12.0, false);
        let pts = [(0.0, 1.0), (1.0, 2.0)];
        c.panel(&Panel {
            id: "p",
            heading: "h",
            height: 200.0,
            x: (0.0, 1.0),
            y: (0.0, 2.0),
            x_label: "x",
            y_label: "y",
            bands: &[(0.2, 0.4)],
            band_label: "band",
            rules: &[(1.0, "rule".into())],
            lines: &[Line {
                name: "l",
                stroke: Stroke::nth(0),
                points: &pts,
            }],
        });
        let s = c.finish();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a &lt; b &amp; c"));
        assert_eq!(s.matches("<polyline").count(), 1);
    }
}
