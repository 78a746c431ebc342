//! Benchmark records: parsing the JSON lines benchmarks emit (the format of
//! `testkit::bench`), and joining each record with its baseline.

use serde_json::{json, Value};

/// One measurement as a benchmark emitted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub name: String,
    pub params: Value,
    pub unit: String,
    pub median: f64,
    pub p99: f64,
    pub baseline: Option<String>,
}

/// A record with its ratio to the baseline's median (same params).
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub record: Record,
    pub ratio: Option<f64>,
}

impl Record {
    /// Parses one JSON line; the error says what is wrong with it.
    pub fn parse(line: &str) -> Result<Record, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let text = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("no string {key:?}"))
        };
        let number = |key: &str| {
            v.get(key)
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("no finite number {key:?}"))
        };
        let name = text("name")?;
        if name.is_empty() {
            return Err("empty \"name\"".into());
        }
        let baseline = match v.get("baseline") {
            None | Some(Value::Null) => None,
            Some(Value::String(b)) => Some(b.clone()),
            Some(other) => {
                return Err(format!(
                    "\"baseline\" is neither a string nor null: {other}"
                ))
            }
        };
        Ok(Record {
            name,
            params: v.get("params").cloned().unwrap_or_else(|| json!({})),
            unit: text("unit")?,
            median: number("median")?,
            p99: number("p99")?,
            baseline,
        })
    }
}

/// Parses JSON lines, skipping blank ones; bad lines are returned as
/// `(line number, reason)` so the caller can report them.
pub fn parse_lines(text: &str) -> (Vec<Record>, Vec<(usize, String)>) {
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match Record::parse(line) {
            Ok(r) => records.push(r),
            Err(e) => bad.push((i + 1, e)),
        }
    }
    (records, bad)
}

/// Computes each record's ratio: its median over the median of the first
/// record named by its `baseline` with equal params and the same unit. The
/// ratio is `None` without a baseline, when none matches, or when the
/// baseline's median is zero.
pub fn join(records: Vec<Record>) -> Vec<Joined> {
    let ratios: Vec<Option<f64>> = records
        .iter()
        .map(|r| {
            let base = baseline_of(r, &records)?;
            (base.median != 0.0).then(|| r.median / base.median)
        })
        .collect();
    records
        .into_iter()
        .zip(ratios)
        .map(|(record, ratio)| Joined { record, ratio })
        .collect()
}

/// The record `r` is compared with, if it is in the run.
pub fn baseline_of<'a>(r: &Record, all: &'a [Record]) -> Option<&'a Record> {
    let name = r.baseline.as_deref()?;
    all.iter()
        .find(|b| b.name == name && b.params == r.params && b.unit == r.unit)
}

/// results.json as text: the same document as the tests' `results_json`, one
/// measurement per line with the fields in a reading order (name, params,
/// unit, median, p99, baseline, ratio).
pub fn results_text(joined: &[Joined]) -> String {
    let field = |v: Value| v.to_string();
    let lines: Vec<String> = joined
        .iter()
        .map(|j| {
            let r = &j.record;
            format!(
                "  {{\"name\": {}, \"params\": {}, \"unit\": {}, \"median\": {}, \"p99\": {}, \"baseline\": {}, \"ratio\": {}}}",
                field(json!(r.name)),
                field(r.params.clone()),
                field(json!(r.unit)),
                field(json!(r.median)),
                field(json!(r.p99)),
                field(json!(r.baseline)),
                field(json!(j.ratio)),
            )
        })
        .collect();
    if lines.is_empty() {
        "[]\n".into()
    } else {
        format!("[\n{}\n]\n", lines.join(",\n"))
    }
}

/// `members=1000 keys=10`, or `-` for no params; for labels and tables.
pub fn params_label(params: &Value) -> String {
    match params {
        Value::Object(map) if map.is_empty() => "-".into(),
        Value::Object(map) => {
            // Sorted, whatever map order serde_json was built with.
            let mut pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            pairs.sort();
            pairs.join(" ")
        }
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The results.json document as a value: one object per measurement (the
    /// reference that [`results_text`] is tested against).
    pub fn results_json(joined: &[Joined]) -> Value {
        Value::Array(
            joined
                .iter()
                .map(|j| {
                    json!({
                        "name": j.record.name,
                        "params": j.record.params,
                        "unit": j.record.unit,
                        "median": j.record.median,
                        "p99": j.record.p99,
                        "baseline": j.record.baseline,
                        "ratio": j.ratio,
                    })
                })
                .collect(),
        )
    }

    pub fn rec(name: &str, params: Value, median: f64, baseline: Option<&str>) -> Record {
        Record {
            name: name.into(),
            params,
            unit: "us".into(),
            median,
            p99: median * 2.0,
            baseline: baseline.map(str::to_string),
        }
    }

    #[test]
    fn parses_what_testkit_emits_and_reports_bad_lines() {
        let text = concat!(
            r#"{"name":"core.propagation","params":{"members":10},"unit":"us","median":12.5,"p99":40.0,"baseline":null}"#,
            "\n\n",
            "not json\n",
            r#"{"name":"x","params":{},"unit":"us","median":"fast","p99":1,"baseline":null}"#,
            "\n",
            r#"{"name":"y","params":{},"unit":"ns","median":1,"p99":2,"baseline":"x"}"#,
            "\n",
        );
        let (records, bad) = parse_lines(text);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].name, "core.propagation");
        assert_eq!(records[0].params, json!({"members": 10}));
        assert_eq!(records[0].baseline, None);
        assert_eq!(records[1].baseline.as_deref(), Some("x"));
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].0, 3);
        assert!(bad[1].1.contains("median"), "{:?}", bad[1]);
    }

    #[test]
    fn ratio_uses_the_baseline_with_equal_params() {
        let joined = join(vec![
            rec("a.fast", json!({"n": 10}), 5.0, Some("a.base")),
            rec("a.fast", json!({"n": 100}), 30.0, Some("a.base")),
            rec("a.fast", json!({"n": 1000}), 30.0, Some("a.base")),
            rec("a.base", json!({"n": 10}), 10.0, None),
            rec("a.base", json!({"n": 100}), 20.0, None),
            rec("b.other", json!({}), 1.0, Some("missing")),
        ]);
        assert_eq!(joined[0].ratio, Some(0.5));
        assert_eq!(joined[1].ratio, Some(1.5));
        assert_eq!(joined[2].ratio, None, "no baseline with n=1000");
        assert_eq!(joined[3].ratio, None, "a baseline has no baseline");
        assert_eq!(joined[5].ratio, None);
    }

    #[test]
    fn param_key_order_does_not_matter_but_units_do() {
        let base = rec("base", json!({"a": 1, "b": 2}), 4.0, None);
        let r = rec("r", json!({"b": 2, "a": 1}), 2.0, Some("base"));
        let mut other_unit = rec("r2", json!({"a": 1, "b": 2}), 2.0, Some("base"));
        other_unit.unit = "ms".into();
        let zero = rec("zero", json!({}), 0.0, None);
        let over_zero = rec("oz", json!({}), 3.0, Some("zero"));
        let joined = join(vec![base, r, other_unit, zero, over_zero]);
        assert_eq!(joined[1].ratio, Some(0.5));
        assert_eq!(joined[2].ratio, None);
        assert_eq!(joined[4].ratio, None);
    }

    #[test]
    fn results_json_has_every_field() {
        let joined = join(vec![
            rec("a", json!({"n": 1}), 2.0, Some("b")),
            rec("b", json!({"n": 1}), 4.0, None),
        ]);
        let v = results_json(&joined);
        assert_eq!(
            v[0],
            json!({"name": "a", "params": {"n": 1}, "unit": "us", "median": 2.0,
                   "p99": 4.0, "baseline": "b", "ratio": 0.5})
        );
        assert_eq!(v[1]["baseline"], Value::Null);
        assert_eq!(v[1]["ratio"], Value::Null);
    }

    #[test]
    fn results_text_is_results_json_in_reading_order() {
        let joined = join(vec![
            rec("a", json!({"n": 1, "m": "x"}), 2.0, Some("b")),
            rec("b", json!({"m": "x", "n": 1}), 4.0, None),
        ]);
        let text = results_text(&joined);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, results_json(&joined));
        let first = text.lines().nth(1).unwrap();
        assert!(
            first
                .trim_start()
                .starts_with(r#"{"name": "a", "params": "#),
            "{first}"
        );
        assert!(
            first.contains(r#""baseline": "b", "ratio": 0.5}"#),
            "{first}"
        );
        assert_eq!(results_text(&[]), "[]\n");
    }

    #[test]
    fn params_labels() {
        assert_eq!(params_label(&json!({})), "-");
        assert_eq!(
            params_label(&json!({"n": 10, "mode": "rr"})),
            "mode=rr n=10"
        );
    }
}
