//! The health checks `register` can guard a registration with: a TCP
//! connect, an HTTP GET expecting 2xx, or a shell command expecting exit 0.
//! Each becomes a core [`Ping`]; core runs it on the interval, applies the
//! timeout (dropping a hung check, which kills a hung command) and
//! deregisters while it fails.

use std::fmt;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use serversets_core::{HostPort, Ping};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an HTTP answer read to find its status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// An `http://host[:port][/path]` URL for `--check-http`.
///
/// Only plain HTTP is supported: the check speaks HTTP/1.0 itself over a
/// TCP connection, which is all a local health endpoint needs.
///
/// ```
/// use serversets_cli::HttpUrl;
///
/// let url: HttpUrl = "http://127.0.0.1:8080/health?deep=1".parse()?;
/// assert_eq!(url.addr().to_string(), "127.0.0.1:8080");
/// assert_eq!(url.target(), "/health?deep=1");
///
/// let bare: HttpUrl = "http://localhost".parse()?;
/// assert_eq!((bare.addr().port(), bare.target()), (80, "/"));
///
/// assert!("https://localhost/".parse::<HttpUrl>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    addr: HostPort,
    target: String,
}

impl HttpUrl {
    /// Where to connect.
    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    /// The request target: path and query, at least `/`.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.addr, self.target)
    }
}

impl FromStr for HttpUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            format!("invalid URL {text:?}: only http://host[:port]/path URLs are supported")
        })?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(format!("invalid URL {text:?}: user info is not supported"));
        }
        let has_port = match authority.strip_prefix('[') {
            Some(r) => r.contains("]:"),
            None => authority.contains(':'),
        };
        let addr = if has_port {
            authority.parse::<HostPort>()
        } else {
            HostPort::new(authority.trim_start_matches('[').trim_end_matches(']'), 80)
        }
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "invalid URL {text:?}: the path contains spaces or control characters"
            ));
        }
        Ok(HttpUrl { addr, target })
    }
}

/// A health check, as chosen on the command line.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    /// Connect to this address.
    Tcp(HostPort),
    /// GET this URL, expecting 2xx.
    Http(HttpUrl),
    /// Run this with `sh -c`, expecting exit 0.
    Cmd(String),
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Tcp(addr) => write!(f, "tcp connect to {addr}"),
            Check::Http(url) => write!(f, "http GET {url}"),
            Check::Cmd(cmd) => write!(f, "command `{cmd}`"),
        }
    }
}

impl Check {
    /// The check as a core [`Ping`].
    pub(crate) fn into_ping(self) -> Ping {
        match self {
            Check::Tcp(addr) => Ping::new(move || tcp(addr.clone())),
            Check::Http(url) => Ping::new(move || http(url.clone())),
            Check::Cmd(cmd) => Ping::new(move || command(cmd.clone())),
        }
    }
}

async fn tcp(addr: HostPort) -> Result<(), String> {
    TcpStream::connect((addr.host(), addr.port()))
        .await
        .map(drop)
        .map_err(|e| format!("connect to {addr}: {e}"))
}

async fn http(url: HttpUrl) -> Result<(), String> {
    let status = http_status(&url).await?;
    if (200..300).contains(&status.0) {
        Ok(())
    } else {
        Err(format!("GET {url} answered {} {}", status.0, status.1))
    }
}

/// Sends `GET` and reads the status code and reason phrase.
async fn http_status(url: &HttpUrl) -> Result<(u16, String), String> {
    let addr = url.addr();
    let mut stream = TcpStream::connect((addr.host(), addr.port()))
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: serversets/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target(),
        env!("CARGO_PKG_VERSION"),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status_line(&head).ok_or_else(|| {
        let shown: String = String::from_utf8_lossy(&head).chars().take(80).collect();
        format!("GET {url}: not an HTTP answer: {shown:?}")
    })
}

/// `HTTP/1.1 204 No Content\r\n...` -> `(204, "No Content")`.
fn parse_status_line(head: &[u8]) -> Option<(u16, String)> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..end]).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    Some((code, parts.next().unwrap_or("").to_string()))
}

/// The most of a failed command's stderr kept for the message.
const MAX_STDERR: usize = 4 * 1024;

/// How long stderr is still read after the command exited: a background
/// process it started may hold the pipe open forever.
const STDERR_AFTER_EXIT: Duration = Duration::from_millis(100);

async fn command(cmd: String) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so everything it starts can be killed
        // with it (see `KillGroup`).
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    // Whichever way this ends (done, or dropped by core after the timeout),
    // nothing the check started outlives it.
    let _group = child.id().map(KillGroup);
    let mut stderr = child.stderr.take();
    let mut kept = Vec::new();
    // Read stderr while waiting, so a chatty command cannot block on a
    // full pipe; but wait for the command, not for the pipe to close.
    let status = {
        let read = drain(&mut stderr, &mut kept);
        tokio::pin!(read);
        tokio::select! {
            status = child.wait() => status,
            () = &mut read => child.wait().await,
        }
    };
    let status = status.map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let _ = tokio::time::timeout(STDERR_AFTER_EXIT, drain(&mut stderr, &mut kept)).await;
    let status = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    };
    let stderr = String::from_utf8_lossy(&kept);
    match stderr.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => {
            let line: String = line.chars().take(200).collect();
            Err(format!("`{cmd}` failed with {status}: {line}"))
        }
        None => Err(format!("`{cmd}` failed with {status}")),
    }
}

/// Reads `pipe` to its end, keeping the first [`MAX_STDERR`] bytes in
/// `kept` and discarding the rest. Safe to cancel between reads.
async fn drain(pipe: &mut Option<tokio::process::ChildStderr>, kept: &mut Vec<u8>) {
    let Some(p) = pipe else { return };
    let mut buf = [0u8; 1024];
    loop {
        match p.read(&mut buf).await {
            Ok(0) | Err(_) => {
                *pipe = None;
                return;
            }
            Ok(n) => {
                let room = MAX_STDERR.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Kills a check command's whole process group when dropped.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let Ok(pgid) = libc::pid_t::try_from(self.0) else {
            return;
        };
        // SAFETY: kill(2) has no memory effects; -pgid names the group the
        // check's shell leads (process_group(0) made its pid the group id).
        // The group lives while any of its processes do, so this reaches
        // only what the check started.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn urls() {
        let u: HttpUrl = "http://[::1]:81/a/b".parse().unwrap();
        assert_eq!(
            (u.addr().host(), u.addr().port(), u.target()),
            ("::1", 81, "/a/b")
        );
        let u: HttpUrl = "http://h?x=1".parse().unwrap();
        assert_eq!(u.target(), "/?x=1");
        assert_eq!(u.to_string(), "http://h:80/?x=1");
        for bad in [
            "ftp://h/",
            "h:80/",
            "http://",
            "http://h:0/",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert!(bad.parse::<HttpUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 204 No Content\r\nX: y\r\n"),
            Some((204, "No Content".into()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503\r\n"),
            Some((503, String::new()))
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 x\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), None);
    }

    /// A one-shot HTTP server on loopback answering `status`.
    async fn serve_once(status: &'static str) -> HttpUrl {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(req.starts_with("GET /health HTTP/1.0\r\n"), "{req}");
            assert!(
                req.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
                "{req}"
            );
            s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await
                .unwrap();
        });
        format!("http://127.0.0.1:{port}/health").parse().unwrap()
    }

    #[tokio::test]
    async fn http_check_wants_2xx() {
        assert_eq!(http(serve_once("200 OK").await).await, Ok(()));
        let err = http(serve_once("503 Service Unavailable").await)
            .await
            .unwrap_err();
        assert!(err.contains("answered 503 Service Unavailable"), "{err}");
    }

    #[tokio::test]
    async fn tcp_check_follows_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = HostPort::new("127.0.0.1", listener.local_addr().unwrap().port()).unwrap();
        assert_eq!(tcp(addr.clone()).await, Ok(()));
        drop(listener);
        let err = tcp(addr.clone()).await.unwrap_err();
        assert!(err.contains(&addr.to_string()), "{err}");
    }

    /// Whether `pid` is gone (or a zombie waiting for init to reap it).
    fn dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    async fn wait_dead(pid_file: &std::path::Path) {
        let pid: i32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !dead(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} started by the check is still running"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_command_that_leaves_a_daemon_finishes_and_takes_it_along() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // The background sleep keeps stderr open: waiting for the pipe to
        // close instead of for the shell would take 30 s.
        let cmd = format!("sleep 30 & echo $! > {}", pid_file.display());
        let result = tokio::time::timeout(Duration::from_secs(10), command(cmd))
            .await
            .expect("the check ends when its shell does");
        assert_eq!(result, Ok(()));
        wait_dead(&pid_file).await;

        let cmd = format!(
            "sleep 30 & echo $! > {}; echo sick >&2; exit 4",
            pid_file.display()
        );
        let err = tokio::time::timeout(Duration::from_secs(10), command(cmd))
            .await
            .expect("a failing check ends when its shell does")
            .unwrap_err();
        assert!(err.contains("exit code 4") && err.contains("sick"), "{err}");
        wait_dead(&pid_file).await;
    }

    #[tokio::test]
    async fn a_dropped_command_kills_everything_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let cmd = format!("sleep 30 & echo $! > {}; sleep 30", pid_file.display());
        // What core does with a check that outlives its timeout.
        let timed_out = tokio::time::timeout(Duration::from_millis(500), command(cmd)).await;
        assert!(timed_out.is_err());
        wait_dead(&pid_file).await;
    }

    #[tokio::test]
    async fn command_check_reports_exit_code_and_stderr() {
        assert_eq!(command("true".into()).await, Ok(()));
        let err = command("echo broken >&2; exit 3".into()).await.unwrap_err();
        assert!(
            err.contains("exit code 3") && err.contains("broken"),
            "{err}"
        );
    }
}
