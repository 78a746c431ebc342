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
    /// Cyan, for structure (step markers, bars).
    pub fn cyan(&self, text: &str) -> String {
        self.paint("36", text)
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
