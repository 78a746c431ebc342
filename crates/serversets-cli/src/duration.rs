//! Durations on the command line: `500ms`, `2s`, `1.5s`, `1m`, `1h`, or a
//! bare number of seconds. Hand-rolled so the binary needs no extra crate.

use std::time::Duration;

/// Parses a duration such as `500ms`, `2s`, `1.5s`, `3m` or `1h`; a bare
/// number means seconds. It must be at least 1ms and at most 24h: every
/// duration the command takes (timeouts, check intervals) is a real wait.
///
/// # Errors
///
/// A message naming the text and the expected form (clap shows it as a
/// usage error) when the text is no such duration or is out of range.
///
/// ```
/// use std::time::Duration;
/// use serversets_cli::parse_duration;
///
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
/// assert!(parse_duration("0s").is_err());
/// assert!(parse_duration("0.5ms").is_err());
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || format!("invalid duration {text:?} (expected e.g. 500ms, 2s, 1.5s, 1m)");
    if number.is_empty() {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = value * scale;
    // Below a millisecond nothing here (timers, ZooKeeper timeouts) can
    // honour it. A day is far beyond any timeout or interval this command
    // uses; the bound also keeps `from_secs_f64` away from overflow.
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(format!(
            "invalid duration {text:?}: it must be at least 1ms and at most 24h"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The shortest `--check-interval`: a check every millisecond would keep a
/// core busy (a `--check-cmd` forks a shell each time).
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// [`parse_duration`] for `--check-interval`, which must be at least 10ms.
pub(crate) fn parse_check_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < MIN_CHECK_INTERVAL {
        return Err(format!(
            "invalid check interval {text:?}: it must be at least {}",
            show(MIN_CHECK_INTERVAL)
        ));
    }
    Ok(d)
}

/// Shows a duration the way it is typed: `500ms`, `2s`, `1.5s`.
pub(crate) fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 || (ms % 1000 != 0 && ms % 100 != 0) {
        format!("{ms}ms")
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        let ok = [
            ("1ms", 1),
            ("250ms", 250),
            ("0.5", 500),
            ("3s", 3000),
            (" 2 s ", 2000),
            ("1.25s", 1250),
            ("2min", 120_000),
            ("1h", 3_600_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in [
            "", "s", "-1s", "0", "0ms", "1d", "1.2.3s", "25h", "NaN", "inf", "0.5ms", "0.0001",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_intervals_are_at_least_10ms() {
        assert_eq!(parse_check_interval("10ms"), Ok(Duration::from_millis(10)));
        let err = parse_check_interval("9ms").unwrap_err();
        assert!(err.contains("at least 10ms"), "{err}");
        assert!(parse_check_interval("0").is_err());
    }

    #[test]
    fn shows_durations_as_typed() {
        assert_eq!(show(Duration::from_millis(500)), "500ms");
        assert_eq!(show(Duration::from_secs(2)), "2s");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show(Duration::from_millis(1250)), "1250ms");
    }
}
