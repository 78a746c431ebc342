//! Host and port pairs, and the parsing rules every crate shares.

use std::fmt;
use std::str::FromStr;

/// Why a `host:port` string or a host/port pair was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The text has no `:port` part.
    #[error("address {0:?} has no port (expected host:port)")]
    MissingPort(String),
    /// The host part is empty.
    #[error("address {0:?} has an empty host")]
    EmptyHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("address {0:?} has an invalid port (expected 1-65535)")]
    InvalidPort(String),
    /// The host contains characters no host name or IP literal can contain.
    #[error("address {0:?} has an invalid host")]
    InvalidHost(String),
}

/// A network endpoint: a host name or IP literal plus a non-zero port.
///
/// Ordering is by host, then port, which is what snapshots sort by so every
/// client sees the same order.
///
/// ```
/// use serversets_core::HostPort;
///
/// let a: HostPort = "10.0.0.3:31781".parse()?;
/// assert_eq!(a.host(), "10.0.0.3");
/// assert_eq!(a.port(), 31781);
/// assert_eq!(a.to_string(), "10.0.0.3:31781");
///
/// // IPv6 literals use brackets in text form.
/// let b: HostPort = "[::1]:80".parse()?;
/// assert_eq!(b.host(), "::1");
/// assert_eq!(b.to_string(), "[::1]:80");
/// # Ok::<(), serversets_core::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    // Shared, not copied: a member's served address is usually its
    // service endpoint, and snapshots clone members often.
    host: std::sync::Arc<str>,
    port: u16,
}

impl HostPort {
    /// Builds an address from parts, refusing an empty host or port 0.
    ///
    /// ```
    /// use serversets_core::HostPort;
    /// assert!(HostPort::new("cache01", 11211).is_ok());
    /// assert!(HostPort::new("", 11211).is_err());
    /// assert!(HostPort::new("cache01", 0).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`AddressError::EmptyHost`], [`AddressError::InvalidHost`] (a space,
    /// a `/`, a bracket...) or [`AddressError::InvalidPort`] (0), naming
    /// the address.
    pub fn new(host: impl Into<String>, port: u16) -> Result<Self, AddressError> {
        let host = host.into();
        let shown = || format!("{host}:{port}");
        if host.is_empty() {
            return Err(AddressError::EmptyHost(shown()));
        }
        if !valid_host(&host) {
            return Err(AddressError::InvalidHost(shown()));
        }
        if port == 0 {
            return Err(AddressError::InvalidPort(shown()));
        }
        Ok(HostPort {
            host: host.into(),
            port,
        })
    }

    /// Builds an address from a host and a port given as a wider integer, as
    /// found in JSON, refusing ports outside 1..=65535.
    ///
    /// ```
    /// use serversets_core::HostPort;
    /// assert!(HostPort::from_wide("h", 65535).is_ok());
    /// assert!(HostPort::from_wide("h", 65536).is_err());
    /// assert!(HostPort::from_wide("h", -1).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`HostPort::new`], and [`AddressError::InvalidPort`] for a port
    /// outside 1..=65535.
    pub fn from_wide(host: impl Into<String>, port: i64) -> Result<Self, AddressError> {
        let host = host.into();
        match u16::try_from(port) {
            Ok(p) => HostPort::new(host, p),
            Err(_) => Err(AddressError::InvalidPort(format!("{host}:{port}"))),
        }
    }

    /// The host name or IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, never 0.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn valid_host(host: &str) -> bool {
    !host.chars().any(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '/' | '[' | ']' | '@' | '?' | '#')
    })
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| AddressError::InvalidHost(s.to_string()))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| AddressError::MissingPort(s.to_string()))?;
            (host, port)
        } else {
            text.rsplit_once(':')
                .ok_or_else(|| AddressError::MissingPort(s.to_string()))?
        };
        if host.is_empty() {
            return Err(AddressError::EmptyHost(s.to_string()));
        }
        if !text.starts_with('[') && host.contains(':') {
            // An unbracketed IPv6 literal is ambiguous.
            return Err(AddressError::InvalidHost(s.to_string()));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| AddressError::InvalidPort(s.to_string()))?;
        if port == 0 {
            return Err(AddressError::InvalidPort(s.to_string()));
        }
        if !valid_host(host) {
            return Err(AddressError::InvalidHost(s.to_string()));
        }
        Ok(HostPort {
            host: host.into(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_addresses() {
        let cases = [
            ("h1:80", "h1", 80),
            ("10.0.0.1:11211", "10.0.0.1", 11211),
            ("[::1]:9090", "::1", 9090),
            (" host.example:65535 ", "host.example", 65535),
        ];
        for (text, host, port) in cases {
            let a: HostPort = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((a.host(), a.port()), (host, port), "{text}");
        }
    }

    #[test]
    fn rejects_bad_addresses_naming_them() {
        type Check = fn(&AddressError) -> bool;
        let cases: [(&str, Check); 9] = [
            ("host", |e| matches!(e, AddressError::MissingPort(_))),
            (":80", |e| matches!(e, AddressError::EmptyHost(_))),
            ("h:0", |e| matches!(e, AddressError::InvalidPort(_))),
            ("h:65536", |e| matches!(e, AddressError::InvalidPort(_))),
            ("h:-1", |e| matches!(e, AddressError::InvalidPort(_))),
            ("h:http", |e| matches!(e, AddressError::InvalidPort(_))),
            ("::1:80", |e| matches!(e, AddressError::InvalidHost(_))),
            ("a b:80", |e| matches!(e, AddressError::InvalidHost(_))),
            ("[::1]80", |e| matches!(e, AddressError::MissingPort(_))),
        ];
        for (text, check) in cases {
            let err = text.parse::<HostPort>().expect_err(text);
            assert!(check(&err), "{text}: got {err:?}");
            assert!(err.to_string().contains(text.trim()), "{err} names {text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["h:1", "[fe80::1]:443", "10.1.2.3:8080"] {
            let a: HostPort = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
            assert_eq!(a.to_string().parse::<HostPort>().unwrap(), a);
        }
    }
}
