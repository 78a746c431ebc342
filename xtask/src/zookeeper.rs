//! Asking a ZooKeeper server its mode, with the `srvr` four-letter word.

use testkit::four_letter_word;

/// The mode (standalone, leader, follower) of the server at `address`
/// (`host:port`), or `None` when it does not answer.
pub fn server_mode(address: &str) -> Option<String> {
    let port = address.rsplit(':').next()?.parse::<u16>().ok()?;
    parse_mode(&four_letter_word(port, "srvr").ok()?)
}

/// The `Mode:` of a `srvr` reply (standalone, leader, follower).
fn parse_mode(srvr: &str) -> Option<String> {
    srvr.lines()
        .find_map(|l| l.strip_prefix("Mode:"))
        .map(|m| m.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_comes_from_srvr() {
        let reply = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\nNode count: 5\n";
        assert_eq!(parse_mode(reply).as_deref(), Some("follower"));
        assert_eq!(parse_mode("nothing"), None);
    }

    #[test]
    fn no_server_no_mode() {
        assert_eq!(server_mode("127.0.0.1:1"), None);
        assert_eq!(server_mode("no port"), None);
    }
}
