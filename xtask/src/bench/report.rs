//! The human report: `report.md` with a table of every measurement and one
//! hand-written SVG bar chart per benchmark name (median and p99 for each set
//! of params, with the baseline's beside them when there is one).

use std::fmt::Write as _;

use super::model::{baseline_of, params_label, Joined, Record};

/// What the report says about the run itself.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// e.g. `2026-11-25 15:20 UTC`.
    pub when: String,
    /// Commit and dirty flag, when known.
    pub revision: Option<String>,
    /// The filter the run was started with.
    pub prefix: Option<String>,
    /// Bench targets that failed, as `package/target: reason`.
    pub failures: Vec<String>,
}

/// Benchmark names in order of first appearance.
pub fn names(joined: &[Joined]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for j in joined {
        if !names.contains(&j.record.name) {
            names.push(j.record.name.clone());
        }
    }
    names
}

/// A file name for a benchmark's chart: the name with anything unusual
/// replaced by `_`, plus `.svg`.
pub fn chart_file(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.svg", safe.trim_start_matches('.'))
}

/// `1234`, `12.3`, `1.23`, `0.0123`, `1.2e-5`.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.001 {
        format!("{x:.4}")
    } else {
        format!("{x:.2e}")
    }
}

/// Escapes text for markdown table cells.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The whole report.md.
pub fn markdown(joined: &[Joined], info: &RunInfo) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark report\n");
    let mut facts = vec![format!("Run {}", info.when)];
    if let Some(rev) = &info.revision {
        facts.push(format!("at `{rev}`"));
    }
    if let Some(prefix) = &info.prefix {
        facts.push(format!("filter `{prefix}`"));
    }
    let _ = writeln!(
        md,
        "{}; {} measurements of {} benchmarks.\n",
        facts.join(", "),
        joined.len(),
        names(joined).len()
    );
    let _ = writeln!(
        md,
        "`ratio` is the median divided by the median of the `baseline` \
         measurement with the same params in the same run.\n"
    );
    if !info.failures.is_empty() {
        let _ = writeln!(md, "**Benchmarks that failed:**\n");
        for f in &info.failures {
            let _ = writeln!(md, "- {f}");
        }
        let _ = writeln!(md);
    }
    if joined.is_empty() {
        let _ = writeln!(md, "No measurements were recorded.");
        return md;
    }
    let _ = writeln!(
        md,
        "| benchmark | params | unit | median | p99 | baseline | ratio |"
    );
    let _ = writeln!(md, "|---|---|---|---:|---:|---|---:|");
    for j in joined {
        let r = &j.record;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&r.name),
            cell(&params_label(&r.params)),
            cell(&r.unit),
            fmt_num(r.median),
            fmt_num(r.p99),
            r.baseline
                .as_deref()
                .map(cell)
                .unwrap_or_else(|| "-".into()),
            j.ratio
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    for name in names(joined) {
        let _ = writeln!(md, "\n## {name}\n");
        let _ = writeln!(md, "![{name}]({})", chart_file(&name));
    }
    md
}

/// One bar group: a set of params, with this benchmark's values and,
/// when present, its baseline's.
struct Group<'a> {
    label: String,
    own: &'a Record,
    base: Option<&'a Record>,
    ratio: Option<f64>,
}

/// Average width of a character at the chart's 11px font.
const CHAR_W: f64 = 6.5;

const SERIES: [(&str, &str); 4] = [
    ("median", "#4e79a7"),
    ("p99", "#a0cbe8"),
    ("baseline median", "#f28e2b"),
    ("baseline p99", "#ffbe7d"),
];

/// A round step near `max / 5` for the y axis: 1, 2, 2.5 or 5 times a power of ten.
pub fn nice_step(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let factor = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|&f| f >= norm - 1e-9)
        .unwrap_or(10.0);
    factor * mag
}

/// An axis label with as many decimals as the step needs (0, 2.5, 5, 7.5).
pub fn fmt_tick(v: f64, step: f64) -> String {
    let mut decimals = 0;
    while decimals < 12
        && ((step * 10f64.powi(decimals)).round() - step * 10f64.powi(decimals)).abs() > 1e-6
    {
        decimals += 1;
    }
    format!("{v:.*}", decimals as usize)
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG chart of one benchmark name.
pub fn svg(name: &str, joined: &[Joined]) -> String {
    let all: Vec<Record> = joined.iter().map(|j| j.record.clone()).collect();
    let groups: Vec<Group<'_>> = joined
        .iter()
        .filter(|j| j.record.name == name)
        .map(|j| Group {
            label: params_label(&j.record.params),
            own: &j.record,
            base: baseline_of(&j.record, &all),
            ratio: j.ratio,
        })
        .collect();
    let with_base = groups.iter().any(|g| g.base.is_some());
    let bars = if with_base { 4 } else { 2 };
    let unit = groups
        .first()
        .map(|g| g.own.unit.clone())
        .unwrap_or_default();
    let max = groups
        .iter()
        .flat_map(|g| {
            let mut v = vec![g.own.median, g.own.p99];
            if let Some(b) = g.base {
                v.extend([b.median, b.p99]);
            }
            v
        })
        .fold(0.0f64, f64::max);
    let step = nice_step(max);
    let top = (max / step).ceil().max(1.0) * step;

    let (bar_w, gap, left, right) = (22.0, 36.0, 72.0, 24.0);
    // Wide enough for the bars and for the longest params label under them.
    let longest = groups
        .iter()
        .map(|g| g.label.chars().count())
        .max()
        .unwrap_or(0);
    let group_w = (bars as f64 * bar_w + gap).max(longest as f64 * CHAR_W + 16.0);
    let plot_w = (groups.len().max(1) as f64 * group_w).max(300.0);
    // Few groups in a wide plot sit in the middle.
    let offset = (plot_w - groups.len() as f64 * group_w) / 2.0;
    let width = left + plot_w + right;
    let (title_h, plot_h, label_h, legend_h) = (40.0, 260.0, 70.0, 28.0);
    let height = title_h + plot_h + label_h + legend_h;
    let y0 = title_h + plot_h; // the baseline of the bars
    let y_of = |v: f64| y0 - (v / top) * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let base_name = groups
        .iter()
        .find_map(|g| g.base.map(|b| b.name.clone()))
        .map(|b| format!(" vs {b}"))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        xml(&format!("{name}{base_name} ({unit})"))
    );
    // Y axis: grid lines and tick labels.
    let ticks = (top / step).round() as usize;
    for i in 0..=ticks {
        let v = step * i as f64;
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            left + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + 4.0,
            fmt_tick(v, step)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{y0}" x2="{:.1}" y2="{y0}" stroke="#333"/>"##,
        left + plot_w
    );
    // Bars, one group per set of params.
    for (gi, g) in groups.iter().enumerate() {
        let gx = left + offset + gi as f64 * group_w + (group_w - bars as f64 * bar_w) / 2.0;
        let mut values = vec![(g.own.median, 0, &g.own.name), (g.own.p99, 1, &g.own.name)];
        if let Some(b) = g.base {
            values.extend([(b.median, 2, &b.name), (b.p99, 3, &b.name)]);
        }
        for (v, series, who) in values {
            let x = gx + series as f64 * bar_w;
            let y = y_of(v);
            let (label, colour) = SERIES[series];
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}</title></rect>"#,
                bar_w - 2.0,
                (y0 - y).max(0.0),
                xml(&format!("{who} {} {label}: {} {unit}", g.label, fmt_num(v)))
            );
        }
        let cx = gx + bars as f64 * bar_w / 2.0;
        let _ = writeln!(
            s,
            r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            y0 + 16.0,
            xml(&g.label)
        );
        if let Some(r) = g.ratio {
            let _ = writeln!(
                s,
                r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#555">ratio {r:.2}</text>"##,
                y0 + 30.0
            );
        }
    }
    // Legend.
    let ly = height - legend_h / 2.0;
    let mut lx = left;
    for (label, colour) in SERIES.iter().take(bars) {
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/>"#,
            ly - 9.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{label}</text>"#,
            lx + 16.0,
            ly + 1.0
        );
        lx += 24.0 + label.len() as f64 * CHAR_W;
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::model::join;
    use crate::bench::model::tests::rec;
    use serde_json::json;

    fn sample() -> Vec<Joined> {
        join(vec![
            rec("httpset.rr", json!({"n": 3}), 5.0, Some("httpset.naive")),
            rec("httpset.rr", json!({"n": 30}), 6.0, Some("httpset.naive")),
            rec("httpset.naive", json!({"n": 3}), 10.0, None),
            rec("httpset.naive", json!({"n": 30}), 24.0, None),
            rec("core.alone", json!({}), 0.5, None),
        ])
    }

    #[test]
    fn markdown_has_a_row_per_measurement_and_a_chart_per_name() {
        let md = markdown(
            &sample(),
            &RunInfo {
                when: "2026-01-01 00:00 UTC".into(),
                revision: Some("abc123".into()),
                prefix: None,
                failures: vec!["serversets-x/broken: exit status 101".into()],
            },
        );
        assert!(
            md.contains("| httpset.rr | n=3 | us | 5.00 | 10.00 | httpset.naive | 0.500 |"),
            "{md}"
        );
        assert!(
            md.contains("| httpset.naive | n=30 | us | 24.00 | 48.00 | - | - |"),
            "{md}"
        );
        assert!(
            md.contains("| core.alone | - | us | 0.5000 | 1.00 | - | - |"),
            "{md}"
        );
        assert!(md.contains("![httpset.rr](httpset.rr.svg)"));
        assert!(md.contains("![httpset.naive](httpset.naive.svg)"));
        assert!(md.contains("![core.alone](core.alone.svg)"));
        assert!(md.contains("serversets-x/broken"));
        assert!(md.contains("5 measurements of 3 benchmarks"));
    }

    #[test]
    fn empty_run_says_so() {
        let md = markdown(&[], &RunInfo::default());
        assert!(md.contains("No measurements were recorded."));
    }

    #[test]
    fn chart_shows_own_and_baseline_bars() {
        let joined = sample();
        let chart = svg("httpset.rr", &joined);
        assert!(chart.starts_with("<svg"));
        assert!(chart.trim_end().ends_with("</svg>"));
        // 2 param groups x (median, p99, baseline median, baseline p99).
        assert_eq!(
            chart.matches("<rect x=").count() - 4,
            8,
            "bars plus 4 legend boxes"
        );
        assert!(chart.contains("httpset.naive n=30 baseline p99: 48.00 us"));
        assert!(chart.contains("ratio 0.50"));
        assert!(chart.contains("httpset.rr vs httpset.naive (us)"));

        let alone = svg("core.alone", &joined);
        assert_eq!(
            alone.matches("<rect x=").count() - 2,
            2,
            "median and p99 only"
        );
        assert!(!alone.contains("baseline"));
    }

    #[test]
    fn chart_text_is_escaped() {
        let joined = join(vec![rec("a<b>&c", json!({"k": "<v>"}), 1.0, None)]);
        let chart = svg("a<b>&c", &joined);
        assert!(chart.contains("a&lt;b&gt;&amp;c"));
        assert!(!chart.contains("<v>"));
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(100.0), 20.0);
        assert_eq!(nice_step(48.0), 10.0);
        assert_eq!(nice_step(12.0), 2.5);
        assert_eq!(nice_step(0.0), 1.0);
        assert!((nice_step(0.004) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn ticks_show_only_needed_decimals() {
        assert_eq!(fmt_tick(500.0, 100.0), "500");
        assert_eq!(fmt_tick(7.5, 2.5), "7.5");
        assert_eq!(fmt_tick(0.003, 0.001), "0.003");
        assert_eq!(fmt_tick(0.0, 0.25), "0.00");
    }

    #[test]
    fn chart_file_names_are_safe() {
        assert_eq!(chart_file("core.propagation"), "core.propagation.svg");
        assert_eq!(chart_file("a/b c"), "a_b_c.svg");
        assert_eq!(chart_file("../x"), "_x.svg");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_num(12345.6), "12346");
        assert_eq!(fmt_num(123.45), "123.5");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.01234), "0.0123");
        assert_eq!(fmt_num(0.0), "0");
    }
}
