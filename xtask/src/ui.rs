//! Terminal output: plain ANSI colours (off when the stream is not a terminal
//! or `NO_COLOR` is set) and human-readable durations.

use std::io::IsTerminal;
use std::time::Duration;

/// Decides once whether to colour, then wraps text in ANSI codes.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    color: bool,
}

impl Ui {
    /// Colours for text written to stdout.
    pub fn stdout() -> Ui {
        Ui {
            color: wants_color(std::io::stdout().is_terminal()),
        }
    }

    /// Colours for text written to stderr.
    pub fn stderr() -> Ui {
        Ui {
            color: wants_color(std::io::stderr().is_terminal()),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Bold text.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
    /// Dim text, for what matters less.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
    /// Bold red, for failures.
    pub fn red(&self, text: &str) -> String {
        self.paint("1;31", text)
    }
    /// Green, for what passed.
    pub fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }
    /// Yellow, for warnings.
    pub fn yellow(&self, text: &str) -> String {
        self.paint("33", text)
    }
    /// Cyan, for structure (step markers, bars).
    pub fn cyan(&self, text: &str) -> String {
        self.paint("36", text)
    }

    /// `==> what` at the start of a step.
    pub fn step_start(&self, what: &str) {
        println!("{} {}", self.cyan("==>"), self.bold(what));
    }

    /// `<== ok in 1.2s` (or FAILED) at the end of a step.
    pub fn step_end(&self, ok: bool, took: Duration) {
        let verdict = if ok {
            self.green("ok")
        } else {
            self.red("FAILED")
        };
        println!("{} {verdict} in {}", self.cyan("<=="), human(took));
    }
}

/// Colour only on a terminal, and never when NO_COLOR is set to anything
/// non-empty (<https://no-color.org>).
fn wants_color(is_terminal: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    is_terminal && !no_color && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// `85µs`, `850ms`, `12.3s`, `4m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        format!("{}µs", d.as_micros())
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_micros(85)), "85µs");
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(245)), "4m05s");
    }

    #[test]
    fn no_colour_codes_when_disabled() {
        let ui = Ui { color: false };
        assert_eq!(ui.red("x"), "x");
        let ui = Ui { color: true };
        assert_eq!(ui.red("x"), "\x1b[1;31mx\x1b[0m");
    }
}
