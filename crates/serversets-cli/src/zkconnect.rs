//! The `--zk` value: ZooKeeper servers plus an optional chroot, checked
//! before anything connects so a typo is a usage error, not a 10 s wait.

use std::fmt;
use std::str::FromStr;

use serversets_core::HostPort;

/// ZooKeeper's client port, used when a `--zk` server has no `:port`.
const DEFAULT_ZK_PORT: u16 = 2181;

/// A parsed ZooKeeper connect string: `host:port,host:port[/chroot]`.
///
/// Servers without a port get 2181, as with ZooKeeper's own clients. Each
/// server must be a valid `host:port` (IPv6 in brackets) and the chroot, when
/// present, an absolute path.
///
/// ```
/// use serversets_cli::ZkConnect;
///
/// let zk: ZkConnect = "zk1:2181, zk2 ,[::1]:2182/apps/discovery".parse()?;
/// assert_eq!(zk.servers().len(), 3);
/// assert_eq!(zk.servers()[1].port(), 2181);
/// assert_eq!(zk.chroot(), Some("/apps/discovery"));
/// assert_eq!(zk.to_string(), "zk1:2181,zk2:2181,[::1]:2182/apps/discovery");
///
/// assert!("zk1:21x81".parse::<ZkConnect>().is_err());
/// assert!("".parse::<ZkConnect>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkConnect {
    servers: Vec<HostPort>,
    chroot: Option<String>,
}

impl ZkConnect {
    /// The servers' addresses, in the order given.
    pub fn servers(&self) -> &[HostPort] {
        &self.servers
    }

    /// The chroot, if any (`/apps/discovery`).
    pub fn chroot(&self) -> Option<&str> {
        self.chroot.as_deref()
    }

    /// The servers alone, comma-separated, for messages.
    pub(crate) fn servers_text(&self) -> String {
        self.servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for ZkConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.servers_text())?;
        if let Some(chroot) = &self.chroot {
            f.write_str(chroot)?;
        }
        Ok(())
    }
}

impl FromStr for ZkConnect {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        // The chroot can only follow the last server (as ZooKeeper's own
        // clients read it): addresses never contain '/', chroots never ','.
        let last_start = text.rfind(',').map_or(0, |i| i + 1);
        if let Some(i) = text[..last_start].find('/') {
            return Err(format!(
                "invalid ZooKeeper connect string {text:?}: a chroot ({:?}) can only follow the last server",
                &text[i..last_start - 1]
            ));
        }
        let (servers_part, chroot) = match text[last_start..].find('/') {
            Some(i) => (&text[..last_start + i], Some(&text[last_start + i..])),
            None => (text, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(c) => {
                serversets_core::validate_path(c).map_err(|e| format!("invalid chroot: {e}"))?;
                Some(c.to_string())
            }
        };
        let mut servers = Vec::new();
        for entry in servers_part.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let has_port = if let Some(rest) = entry.strip_prefix('[') {
                rest.contains("]:")
            } else {
                entry.contains(':')
            };
            let addr = if has_port {
                entry.parse::<HostPort>()
            } else {
                let host = entry.trim_start_matches('[').trim_end_matches(']');
                HostPort::new(host, DEFAULT_ZK_PORT)
            };
            servers.push(addr.map_err(|e| format!("invalid ZooKeeper server: {e}"))?);
        }
        if servers.is_empty() {
            return Err(format!(
                "no ZooKeeper servers in {text:?} (expected host:port,host:port[/chroot])"
            ));
        }
        Ok(ZkConnect { servers, chroot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_connect_strings() {
        let zk: ZkConnect = "127.0.0.1:2181".parse().unwrap();
        assert_eq!(zk.to_string(), "127.0.0.1:2181");
        assert_eq!(zk.chroot(), None);
        let zk: ZkConnect = "a:1,b:2/".parse().unwrap();
        assert_eq!(zk.to_string(), "a:1,b:2");
        let zk: ZkConnect = "[::1]/x".parse().unwrap();
        assert_eq!(zk.to_string(), "[::1]:2181/x");
        assert_eq!(zk.servers_text(), "[::1]:2181");
    }

    #[test]
    fn bad_connect_strings_say_what_is_wrong() {
        let cases = [
            ("", "no ZooKeeper servers"),
            (" , ", "no ZooKeeper servers"),
            ("h:0", "invalid port"),
            ("h:99999", "invalid port"),
            ("h:abc", "invalid port"),
            (":2181", "empty host"),
            ("h:1/rel//x", "invalid chroot"),
            ("h:1/x/", "invalid chroot"),
            ("a b:1", "invalid host"),
            ("zk1:2181/app,zk2:2181", "can only follow the last server"),
            ("zk1/app,zk2/app", "can only follow the last server"),
        ];
        for (text, want) in cases {
            let err = text.parse::<ZkConnect>().unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
