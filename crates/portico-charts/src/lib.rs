//! Charts of the warehouse's reports, for people who would rather look than read: `chart`
//! says what each report is as bars (categories, series, stacked or side by side), `svg` draws
//! it at 800x450 with a title, labelled axes and a legend, and `png` rasterizes that SVG with
//! resvg, its text set in a bundled font so the picture is the same on every machine.
//!
//! Everything a report says is text in the SVG, escaped; nothing from a report becomes markup.

use std::fmt::Write;
use std::sync::{Arc, OnceLock};

use portico_core::warehouse::{Report, ReportTable, date_text};

pub const WIDTH: u32 = 800;
pub const HEIGHT: u32 = 450;
/// Categories drawn at most; a longer report shows its largest ones (the data has them all).
const MAX_CATEGORIES: usize = 60;
/// Okabe and Ito's palette: told apart by colour-blind readers too.
const COLOURS: [&str; 7] =
    ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442"];
const FONT: &str = "DejaVu Sans Mono";
/// The widest a bar is drawn, in pixels.
const MAX_BAR: f64 = 56.0;

/// A bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<Series>,
    /// Series stacked on each other (parts of a whole), or side by side.
    pub stacked: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// One value per category.
    pub values: Vec<f64>,
}

/// Sums `value` per category (column `x`) and per series (column `by`, or one series named
/// `single`), categories in first-seen order (reports are sorted).
fn pivot(
    table: &ReportTable,
    x: usize,
    by: Option<usize>,
    values: &[(usize, &str)],
) -> (Vec<String>, Vec<Series>) {
    let mut categories: Vec<String> = Vec::new();
    let mut series: Vec<Series> = Vec::new();
    for row in &table.rows {
        let category = row[x].text();
        let ci = match categories.iter().position(|c| *c == category) {
            Some(i) => i,
            None => {
                categories.push(category);
                for s in &mut series {
                    s.values.push(0.0);
                }
                categories.len() - 1
            }
        };
        for (column, name) in values {
            let name = match by {
                Some(b) => row[b].text(),
                None => (*name).to_string(),
            };
            let si = match series.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    series.push(Series { name, values: vec![0.0; categories.len()] });
                    series.len() - 1
                }
            };
            series[si].values[ci] += row[*column].as_int() as f64;
        }
    }
    (categories, series)
}

/// What `table` is as a chart.
pub fn chart(table: &ReportTable) -> Chart {
    let columns = table.report.columns();
    let index = |name: &str| columns.iter().position(|c| c.name == name).unwrap_or(0);
    let (x_label, y_label, stacked, (categories, series)) = match table.report {
        Report::AlertsByAccount => (
            "week starting",
            "alerts",
            true,
            pivot(table, index("week_start"), Some(index("severity")), &[(index("alerts"), "")]),
        ),
        Report::ShipmentsByProduct => (
            "product (SKU)",
            "quantity shipped",
            false,
            pivot(table, index("sku"), None, &[(index("quantity"), "quantity shipped")]),
        ),
        Report::LotExposure => (
            "lot",
            "reached",
            false,
            pivot(
                table,
                index("lot_number"),
                None,
                &[(index("accounts"), "accounts"), (index("instruments"), "instruments")],
            ),
        ),
        Report::UploadsByAccount => (
            "account",
            "uploads",
            true,
            pivot(
                table,
                index("account_name"),
                None,
                &[
                    (index("ready"), "ready"),
                    (index("failed"), "failed"),
                    (index("other"), "other"),
                ],
            ),
        ),
        Report::ActiveUsers => (
            "week starting",
            "active users",
            false,
            pivot(table, index("week_start"), None, &[(index("active_users"), "active users")]),
        ),
    };
    let mut chart = Chart {
        title: table.report.title().to_string(),
        subtitle: format!(
            "{} to {}{}",
            date_text(table.from),
            date_text(table.to),
            table.account_id.as_deref().map(|a| format!(", account {a}")).unwrap_or_default()
        ),
        x_label: x_label.into(),
        y_label: y_label.into(),
        categories,
        series,
        stacked,
    };
    if chart.x_label.starts_with("week") {
        every_week(&mut chart, table);
    }
    keep_largest(&mut chart);
    chart
}

/// A weekly chart has a slot for every week of the report's range, empty ones included, so
/// its axis is time.
fn every_week(chart: &mut Chart, table: &ReportTable) {
    let monday =
        |d: time::Date| d - time::Duration::days(i64::from(d.weekday().number_from_monday()) - 1);
    let mut weeks = Vec::new();
    let mut week = monday(table.from);
    while week <= table.to {
        weeks.push(date_text(week));
        week += time::Duration::days(7);
    }
    for s in &mut chart.series {
        s.values = weeks
            .iter()
            .map(|w| chart.categories.iter().position(|c| c == w).map_or(0.0, |i| s.values[i]))
            .collect();
    }
    chart.categories = weeks;
}

/// Keeps the `MAX_CATEGORIES` largest categories of a chart whose categories are not dates
/// (a time axis keeps its latest ones), in their order.
fn keep_largest(chart: &mut Chart) {
    let n = chart.categories.len();
    if n <= MAX_CATEGORIES {
        return;
    }
    let total = |i: usize| chart.series.iter().map(|s| s.values[i]).sum::<f64>();
    let time_axis = chart.x_label.starts_with("week");
    let mut keep: Vec<usize> = (0..n).collect();
    if time_axis {
        keep = keep.split_off(n - MAX_CATEGORIES);
    } else {
        keep.sort_by(|a, b| total(*b).total_cmp(&total(*a)));
        keep.truncate(MAX_CATEGORIES);
        keep.sort_unstable();
    }
    chart.subtitle.push_str(&format!(" ({} of {n} shown)", keep.len()));
    chart.categories = keep.iter().map(|&i| chart.categories[i].clone()).collect();
    for s in &mut chart.series {
        s.values = keep.iter().map(|&i| s.values[i]).collect();
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Shortens a label to `max` characters.
fn clip(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        return label.to_string();
    }
    let mut out: String = label.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A round axis maximum and step for values up to `max`: steps of 1, 2 or 5 times a power of
/// ten, about five of them.
fn ticks(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (5.0, 1.0);
    }
    let raw = max / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(raw);
    let step = step.max(1.0);
    ((max / step).ceil() * step, step)
}

fn number(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.1}M", value / 1_000_000.0)
    } else if value >= 10_000.0 {
        format!("{:.0}k", value / 1_000.0)
    } else {
        format!("{value:.0}")
    }
}

/// The chart as an SVG document of `WIDTH` x `HEIGHT`.
pub fn svg(chart: &Chart) -> String {
    let (w, h) = (f64::from(WIDTH), f64::from(HEIGHT));
    let (left, right, top, bottom) = (70.0, 20.0, 70.0, 95.0);
    let (plot_w, plot_h) = (w - left - right, h - top - bottom);
    let n = chart.categories.len();
    let totals: Vec<f64> = (0..n)
        .map(|i| {
            let values = chart.series.iter().map(|s| s.values[i]);
            if chart.stacked { values.sum() } else { values.fold(0.0, f64::max) }
        })
        .collect();
    let (y_max, step) = ticks(totals.iter().copied().fold(0.0, f64::max));
    let y = |v: f64| top + plot_h - v / y_max * plot_h;

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT}, monospace">"#
    );
    let _ = write!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = write!(
        out,
        r##"<text x="{left}" y="28" font-size="18" font-weight="bold" fill="#111111">{}</text>"##,
        escape(&chart.title)
    );
    let _ = write!(
        out,
        r##"<text x="{left}" y="48" font-size="12" fill="#444444">{}</text>"##,
        escape(&chart.subtitle)
    );
    // Grid and y axis.
    let mut tick = 0.0;
    while tick <= y_max + f64::EPSILON {
        let ty = y(tick);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#333333">{}</text>"##,
            left + plot_w,
            left - 6.0,
            ty + 4.0,
            number(tick)
        );
        tick += step;
    }
    let _ = write!(
        out,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="#333333"/><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333333"/>"##,
        top + plot_h,
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    let _ = write!(
        out,
        r##"<text transform="translate(16 {:.1}) rotate(-90)" font-size="12" text-anchor="middle" fill="#111111">{}</text>"##,
        top + plot_h / 2.0,
        escape(&chart.y_label)
    );
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#111111">{}</text>"##,
        left + plot_w / 2.0,
        h - 8.0,
        escape(&chart.x_label)
    );
    if n == 0 {
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle" fill="#666666">no data in this range</text>"##,
            left + plot_w / 2.0,
            top + plot_h / 2.0
        );
    }
    // Bars.
    let slot = plot_w / n.max(1) as f64;
    let groups = if chart.stacked { 1 } else { chart.series.len().max(1) };
    // Bars at most `MAX_BAR` wide (a report of one row is not one wall), centred in their slot.
    let bar = (slot * 0.8 / groups as f64).clamp(1.0, MAX_BAR);
    let group_width = bar * groups as f64;
    let label_every = (n / 20).max(1);
    for i in 0..n {
        let x0 = left + slot * i as f64 + (slot - group_width) / 2.0;
        let mut base = 0.0;
        for (si, series) in chart.series.iter().enumerate() {
            let v = series.values[i];
            let colour = COLOURS[si % COLOURS.len()];
            let (x, from, to) =
                if chart.stacked { (x0, base, base + v) } else { (x0 + bar * si as f64, 0.0, v) };
            if chart.stacked {
                base += v;
            }
            if v > 0.0 {
                let _ = write!(
                    out,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}: {}</title></rect>"#,
                    y(to),
                    bar,
                    y(from) - y(to),
                    escape(&chart.categories[i]),
                    number(v)
                );
            }
        }
        if i % label_every == 0 {
            let cx = left + slot * (i as f64 + 0.5);
            let _ = write!(
                out,
                r##"<text transform="translate({cx:.1} {:.1}) rotate(-40)" font-size="10" text-anchor="end" fill="#333333">{}</text>"##,
                top + plot_h + 14.0,
                escape(&clip(&chart.categories[i], 14))
            );
        }
    }
    // Legend, top right.
    let mut lx = w - right;
    for (si, series) in chart.series.iter().enumerate().rev() {
        let label = clip(&series.name, 18);
        let width = 7.0 * label.chars().count() as f64 + 22.0;
        lx -= width;
        let _ = write!(
            out,
            r##"<rect x="{lx:.1}" y="52" width="12" height="12" fill="{}"/><text x="{:.1}" y="62" font-size="11" fill="#111111">{}</text>"##,
            COLOURS[si % COLOURS.len()],
            lx + 16.0,
            escape(&label)
        );
    }
    out.push_str("</svg>");
    out
}

fn fonts() -> &'static Arc<resvg::usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    FONTS.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        for font in typst_assets::fonts() {
            db.load_font_data(font.to_vec());
        }
        db.set_monospace_family(FONT);
        db.set_sans_serif_family(FONT);
        Arc::new(db)
    })
}

/// Why a PNG could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("the chart is not valid SVG: {0}")]
    Svg(String),
    #[error("cannot encode the PNG: {0}")]
    Encode(String),
}

/// The SVG `svg` as a PNG of the same size.
pub fn png(svg: &str) -> Result<Vec<u8>, PngError> {
    let options = resvg::usvg::Options { fontdb: fonts().clone(), ..Default::default() };
    let tree =
        resvg::usvg::Tree::from_str(svg, &options).map_err(|e| PngError::Svg(e.to_string()))?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(WIDTH, HEIGHT)
        .ok_or_else(|| PngError::Encode("no pixmap".into()))?;
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| PngError::Encode(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portico_core::warehouse::{Cell, parse_date};

    fn table() -> ReportTable {
        let row = |week: &str, severity: &str, n: i64| {
            vec![
                Cell::Text(week.into()),
                Cell::Text("acc-1".into()),
                Cell::Text("Lab <One> & Co".into()),
                Cell::Text(severity.into()),
                Cell::Int(n),
            ]
        };
        ReportTable {
            report: Report::AlertsByAccount,
            from: parse_date("2026-11-01").unwrap(),
            to: parse_date("2026-11-30").unwrap(),
            account_id: None,
            rows: vec![
                row("2026-11-02", "critical", 2),
                row("2026-11-02", "error", 5),
                row("2026-11-09", "error", 1),
            ],
            as_of: None,
        }
    }

    #[test]
    fn a_report_becomes_stacked_bars_with_a_legend() {
        let chart = chart(&table());
        // Every week of the range, from the Monday of its first day.
        assert_eq!(
            chart.categories,
            ["2026-10-26", "2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23", "2026-11-30"]
        );
        assert_eq!(chart.series.len(), 2);
        assert_eq!(chart.series[0].values, [0.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(chart.series[1].values, [0.0, 5.0, 1.0, 0.0, 0.0, 0.0]);
        let svg = svg(&chart);
        assert!(svg.contains("Alerts per week, by severity"));
        assert!(svg.contains(">critical<") && svg.contains(">error<"));
        assert!(svg.contains(">week starting<") && svg.contains(">alerts<"));
    }

    #[test]
    fn the_png_is_the_chart_at_its_size() {
        let png = png(&svg(&chart(&table()))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((width, height), (WIDTH, HEIGHT));
    }

    /// The chart of a fixed report is the checked-in SVG, byte for byte (`PORTICO_UPDATE_GOLDEN=1`
    /// writes it anew after a deliberate change; look at the PNG it makes before committing).
    #[test]
    fn the_rendering_is_the_golden_one() {
        let golden =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/alerts-by-account.svg");
        let svg = svg(&chart(&table()));
        if std::env::var_os("PORTICO_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &svg).unwrap();
            std::fs::write(golden.with_extension("png"), png(&svg).unwrap()).unwrap();
        }
        assert_eq!(svg, std::fs::read_to_string(&golden).unwrap());
        // The picture has ink in it: bars in both colours, text in black.
        let png = png(&svg).unwrap();
        assert!(png.len() > 4_000, "{} bytes", png.len());
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(7.0), (8.0, 2.0));
        assert_eq!(ticks(0.0), (5.0, 1.0));
        assert_eq!(ticks(123.0), (150.0, 50.0));
    }
}
