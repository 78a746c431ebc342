//! Reading the Prometheus text format, for tests that check what a metrics
//! endpoint (or a `PrometheusHandle::render`) shows.
//!
//! A test binary that reads back what it records calls [`install`] before
//! anything registers a metric and [`scrape`] to read it (the benchmarks'
//! switchable recorder is [`crate::recorder`]; a binary uses one or the
//! other).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the Prometheus recorder (what `serversets --metrics-addr`
/// installs) as this binary's global recorder the first time, and returns
/// its handle.
///
/// # Panics
/// When another recorder was installed first.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Test support: a second recorder is a mistake in the test binary's
        // set-up, and failing that test at once, saying so, is the answer.
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this binary")
    })
}

/// What the installed recorder (see [`install`]) shows now.
pub fn scrape() -> Samples {
    Samples::parse(&install().render())
}

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The name as exposed, suffix included (`_count`, `_sum`, `_total`).
    pub name: String,
    /// The labels, in the order given.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// Every sample of an exposition, comments and `# HELP`/`# TYPE` skipped.
///
/// ```
/// let text = "# TYPE up gauge\nup{job=\"zk\",zk=\"127.0.0.1:1\"} 1\nreads_total 7\n";
/// let samples = testkit::prometheus::Samples::parse(text);
/// assert_eq!(samples.sum("up", &[("job", "zk")]), 1.0);
/// assert_eq!(samples.sum("reads_total", &[]), 7.0);
/// assert_eq!(samples.sum("missing", &[]), 0.0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Parses the text format; lines that are not samples are skipped.
    pub fn parse(text: &str) -> Samples {
        Samples(text.lines().filter_map(parse_line).collect())
    }

    /// The samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
    }

    /// The sum of the matching samples' values (0 when none matches).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// True when some sample matches.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, Vec::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"`, with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_string(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_escapes_and_summaries_parse() {
        let text = "x_seconds{set=\"/a\",quantile=\"0.5\"} 0.25\nx_seconds_count{set=\"/a\"} 3\ny{v=\"a\\\"b\\\\c\"} -1\n";
        let s = Samples::parse(text);
        assert_eq!(s.0.len(), 3);
        assert_eq!(s.sum("x_seconds", &[("quantile", "0.5")]), 0.25);
        assert_eq!(s.sum("x_seconds_count", &[("set", "/a")]), 3.0);
        assert_eq!(s.0[2].labels[0].1, "a\"b\\c");
        assert!(!s.has("x_seconds_count", &[("set", "/b")]));
    }
}
