//! Real ZooKeeper servers: a standalone one or an ensemble, on loopback.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pki::{TestPki, Validity, STORE_PASSWORD};
use crate::process::{kill_and_reap, signal, spawn};
use crate::{free_port, io, Error, FaultProxy, Result};

const INSTALL_HINT: &str = "ZooKeeper 3.8 is needed to run this test. On Debian or Ubuntu: \
`sudo apt-get update && sudo apt-get install -y zookeeper` (or run `cargo xtask test`, which \
installs it when run as root). To use another install, set ZOOKEEPER_CLASSPATH to its jars \
and conf directory (e.g. /opt/zookeeper/lib/*:/opt/zookeeper/conf).";

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ZkOptions {
    /// Number of servers: 1 for standalone, 3 (or more) for an ensemble.
    pub servers: usize,
    /// ZooKeeper's tick in milliseconds; sessions may be as short as two ticks.
    pub tick_ms: u32,
    /// Kill the servers when this process exits (tests); false for servers
    /// that outlive the process (`cargo xtask zk start`).
    pub die_with_parent: bool,
    /// Where data directories go; a fresh temporary directory when `None`.
    pub data_root: Option<PathBuf>,
    /// How long to wait for the cluster to serve.
    pub ready_timeout: Duration,
    /// Put a [`FaultProxy`] in front of each server: [`ZkCluster::connect_string`]
    /// and [`ZkCluster::server_address`] then name the proxies, and
    /// [`ZkCluster::proxy`] injects faults. Off by default.
    pub proxied: bool,
    /// Also serve a TLS client port (ZooKeeper's `secureClientPort`, on the
    /// Netty connection factory): see [`ZkCluster::secure_connect_string`].
    /// The plain port stays open (the cluster uses it to check readiness).
    pub tls: Option<ZkTls>,
    /// Accept SASL DIGEST-MD5 logins for these users (a JAAS `Server`
    /// section with `DigestLoginModule`).
    pub sasl: Option<ZkSasl>,
}

/// TLS settings of a test cluster's secure client port.
#[derive(Debug, Clone)]
pub struct ZkTls {
    /// Where the server's keystore and truststore come from.
    pub pki: TestPki,
    /// Whether the server asks clients for a certificate.
    pub client_auth: ClientAuth,
    /// Serve the valid server certificate or the expired one.
    pub server_cert: Validity,
}

impl ZkTls {
    /// TLS with a valid server certificate and no client certificate asked.
    pub fn new(pki: &TestPki) -> ZkTls {
        ZkTls {
            pki: pki.clone(),
            client_auth: ClientAuth::None,
            server_cert: Validity::Valid,
        }
    }
}

/// ZooKeeper's `ssl.clientAuth`: whether a client must show a certificate
/// signed by the test CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// One is asked for, and checked when given.
    Want,
    /// Mutual TLS: a connection without one is refused.
    Need,
}

/// SASL users of a test cluster.
#[derive(Debug, Clone, Default)]
pub struct ZkSasl {
    /// `(user, password)` pairs.
    pub users: Vec<(String, String)>,
}

impl ZkSasl {
    /// One SASL user.
    pub fn user(user: &str, password: &str) -> ZkSasl {
        ZkSasl {
            users: vec![(user.to_string(), password.to_string())],
        }
    }
}

impl Default for ZkOptions {
    fn default() -> Self {
        ZkOptions {
            servers: 1,
            tick_ms: 100,
            die_with_parent: true,
            data_root: None,
            ready_timeout: Duration::from_secs(90),
            proxied: false,
            tls: None,
            sasl: None,
        }
    }
}

struct Server {
    client_port: u16,
    /// The TLS client port, when the cluster serves TLS.
    secure_port: Option<u16>,
    /// JVM options for TLS and SASL.
    jvm_args: Vec<String>,
    cfg: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running ZooKeeper standalone server or ensemble.
///
/// Servers are addressed by index (0-based). Dropping the cluster kills every
/// server and removes its data.
///
/// With [`ZkOptions::proxied`], each server has a [`FaultProxy`] in front of
/// it, and clients given [`connect_string`](Self::connect_string) or
/// [`server_address`](Self::server_address) connect through it. A proxy
/// forwards to its server's fixed port, so it keeps working across
/// [`stop`](Self::stop), [`kill`](Self::kill) and [`restart`](Self::restart).
/// The cluster itself (readiness, [`leader`](Self::leader)) always talks to
/// the servers directly.
pub struct ZkCluster {
    servers: Mutex<Vec<Server>>,
    proxies: Vec<FaultProxy>,
    opts: ZkOptions,
    java: PathBuf,
    classpath: String,
    root: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

impl ZkCluster {
    /// One standalone server.
    pub fn standalone() -> Result<ZkCluster> {
        ZkCluster::start(ZkOptions::default())
    }

    /// A 3-node ensemble.
    pub fn ensemble() -> Result<ZkCluster> {
        ZkCluster::start(ZkOptions {
            servers: 3,
            ..ZkOptions::default()
        })
    }

    /// One standalone server that also serves TLS (see [`ZkOptions::tls`]):
    /// certificates from `pki`, the server certificate `server_cert`, client
    /// certificates asked for as `client_auth`.
    pub fn with_tls(
        pki: &TestPki,
        client_auth: ClientAuth,
        server_cert: Validity,
    ) -> Result<ZkCluster> {
        ZkCluster::start(ZkOptions {
            tls: Some(ZkTls {
                client_auth,
                server_cert,
                ..ZkTls::new(pki)
            }),
            ..ZkOptions::default()
        })
    }

    /// One standalone server whose SASL login knows `user` with `password`.
    pub fn with_sasl_user(user: &str, password: &str) -> Result<ZkCluster> {
        ZkCluster::start(ZkOptions {
            sasl: Some(ZkSasl::user(user, password)),
            ..ZkOptions::default()
        })
    }

    /// Starts a cluster as described, waiting until every server serves.
    pub fn start(opts: ZkOptions) -> Result<ZkCluster> {
        let (java, mut classpath) = locate()?;
        if opts.tls.is_some() {
            // The Netty connection factory TLS needs also needs netty-codec,
            // which the zookeeper jar's manifest leaves out: without it every
            // connection is closed with NoClassDefFoundError.
            classpath.push_str(":/usr/share/java/netty-codec.jar");
        }
        let (tmp, root) = match &opts.data_root {
            Some(root) => {
                std::fs::create_dir_all(root).map_err(io(format!("create {}", root.display())))?;
                (None, root.clone())
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("serversets-zk-")
                    .tempdir()
                    .map_err(io("create a temporary directory"))?;
                let root = tmp.path().to_path_buf();
                (Some(tmp), root)
            }
        };
        let n = opts.servers.max(1);
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut servers = Vec::with_capacity(n);
        for (i, &(client, _, _)) in ports.iter().enumerate() {
            let dir = root.join(format!("server{}", i + 1));
            let data = dir.join("data");
            std::fs::create_dir_all(&data).map_err(io(format!("create {}", data.display())))?;
            let mut cfg = format!(
                "tickTime={tick}\ninitLimit=100\nsyncLimit=30\ndataDir={data}\n\
                 clientPort={client}\nclientPortAddress=127.0.0.1\n\
                 minSessionTimeout={min}\nmaxSessionTimeout=120000\n\
                 4lw.commands.whitelist=*\nadmin.enableServer=false\nmaxClientCnxns=0\n\
                 preAllocSize=1024\nforceSync=no\nreconfigEnabled=false\n",
                tick = opts.tick_ms,
                min = opts.tick_ms * 2,
                data = data.display(),
            );
            if n > 1 {
                std::fs::write(data.join("myid"), format!("{}\n", i + 1))
                    .map_err(io("write myid"))?;
                for (j, (c, peer, elect)) in ports.iter().enumerate() {
                    let _ = writeln!(
                        cfg,
                        "server.{}=127.0.0.1:{peer}:{elect};127.0.0.1:{c}",
                        j + 1
                    );
                }
            }
            let mut jvm_args = Vec::new();
            let secure_port = match &opts.tls {
                Some(tls) => {
                    let port = free_port();
                    let client_auth = match tls.client_auth {
                        ClientAuth::None => "none",
                        ClientAuth::Want => "want",
                        ClientAuth::Need => "need",
                    };
                    let _ = write!(
                        cfg,
                        "secureClientPort={port}\nsecureClientPortAddress=127.0.0.1\n\
                         ssl.keyStore.location={keystore}\nssl.keyStore.password={STORE_PASSWORD}\n\
                         ssl.keyStore.type=PKCS12\n\
                         ssl.trustStore.location={truststore}\nssl.trustStore.password={STORE_PASSWORD}\n\
                         ssl.trustStore.type=PKCS12\n\
                         ssl.clientAuth={client_auth}\nssl.hostnameVerification=false\n",
                        keystore = tls.pki.server_keystore(tls.server_cert).display(),
                        truststore = tls.pki.truststore().display(),
                    );
                    jvm_args.extend([
                        "-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory".to_string(),
                        "-Dzookeeper.authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider".to_string(),
                    ]);
                    Some(port)
                }
                None => None,
            };
            if let Some(sasl) = &opts.sasl {
                let mut jaas = String::from(
                    "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required",
                );
                for (user, password) in &sasl.users {
                    let _ = write!(jaas, "\n  user_{user}=\"{password}\"");
                }
                jaas.push_str(";\n};\n");
                let jaas_path = dir.join("jaas.conf");
                std::fs::write(&jaas_path, jaas).map_err(io("write jaas.conf"))?;
                jvm_args.extend([
                    format!("-Djava.security.auth.login.config={}", jaas_path.display()),
                    "-Dzookeeper.authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider".to_string(),
                ]);
            }
            let cfg_path = dir.join("zoo.cfg");
            std::fs::write(&cfg_path, cfg).map_err(io("write zoo.cfg"))?;
            servers.push(Server {
                client_port: client,
                secure_port,
                jvm_args,
                cfg: cfg_path,
                log: dir.join("server.log"),
                child: None,
            });
        }
        let proxies = if opts.proxied {
            servers
                .iter()
                .map(|s| FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], s.client_port))))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let cluster = ZkCluster {
            servers: Mutex::new(servers),
            proxies,
            opts,
            java,
            classpath,
            root,
            tmp,
        };
        for i in 0..n {
            cluster.launch(i)?;
        }
        for i in 0..n {
            cluster.wait_serving(i)?;
        }
        Ok(cluster)
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,...` for every server, or for every
    /// server's proxy in a [proxied](ZkOptions::proxied) cluster.
    pub fn connect_string(&self) -> String {
        if self.proxies.is_empty() {
            self.direct_connect_string()
        } else {
            self.proxies
                .iter()
                .map(|p| p.addr().to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,...` of the servers themselves, bypassing
    /// any proxy: for reading ZooKeeper's truth while the proxies inject faults.
    pub fn direct_connect_string(&self) -> String {
        self.lock()
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,...` of every server's TLS client port
    /// (never proxied); `None` unless the cluster was started with
    /// [`ZkOptions::tls`].
    pub fn secure_connect_string(&self) -> Option<String> {
        let servers = self.lock();
        let ports: Option<Vec<u16>> = servers.iter().map(|s| s.secure_port).collect();
        ports.map(|ports| {
            ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// `127.0.0.1:port` of one server, or of its proxy in a
    /// [proxied](ZkOptions::proxied) cluster.
    pub fn server_address(&self, i: usize) -> Result<String> {
        match self.proxies.get(i) {
            Some(p) => Ok(p.addr().to_string()),
            None => self.direct_address(i),
        }
    }

    /// `127.0.0.1:port` of one server itself, bypassing any proxy.
    pub fn direct_address(&self, i: usize) -> Result<String> {
        let servers = self.lock();
        let s = servers.get(i).ok_or_else(|| bad(i))?;
        Ok(format!("127.0.0.1:{}", s.client_port))
    }

    /// The fault proxy in front of server `i`; `None` if the cluster is not
    /// [proxied](ZkOptions::proxied) or there is no such server.
    pub fn proxy(&self, i: usize) -> Option<&FaultProxy> {
        self.proxies.get(i)
    }

    /// Every server's fault proxy, in server order; empty if the cluster is
    /// not [proxied](ZkOptions::proxied).
    pub fn proxies(&self) -> &[FaultProxy] {
        &self.proxies
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True for a cluster of no servers (never, in practice).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the servers keep their data and logs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Process ids of the running servers (for tools that detach them).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.lock()
            .iter()
            .map(|s| s.child.as_ref().map(Child::id))
            .collect()
    }

    /// Stops a server gracefully (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&self, i: usize) -> Result<()> {
        let mut servers = self.lock();
        let s = servers.get_mut(i).ok_or_else(|| bad(i))?;
        if let Some(mut child) = s.child.take() {
            let _ = signal(child.id(), libc::SIGCONT);
            let _ = signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_and_reap(&mut child);
        }
        Ok(())
    }

    /// Kills a server with SIGKILL, as a crash would.
    pub fn kill(&self, i: usize) -> Result<()> {
        let mut servers = self.lock();
        let s = servers.get_mut(i).ok_or_else(|| bad(i))?;
        if let Some(mut child) = s.child.take() {
            kill_and_reap(&mut child);
        }
        Ok(())
    }

    /// Starts a stopped or killed server again on the same ports and data,
    /// waiting until it serves. A running server is killed first.
    pub fn restart(&self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.launch(i)?;
        self.wait_serving(i)
    }

    /// Starts a stopped server without waiting for it to serve (for
    /// ensembles that need a quorum before any member serves).
    pub fn start_server(&self, i: usize) -> Result<()> {
        let running = self.lock().get(i).ok_or_else(|| bad(i))?.child.is_some();
        if running {
            return Ok(());
        }
        self.launch(i)
    }

    /// Freezes a server with SIGSTOP: its sockets stay open but nothing is
    /// answered, like a network partition. Returns once the kernel reports the process stopped.
    pub fn pause(&self, i: usize) -> Result<()> {
        self.send(i, libc::SIGSTOP)?;
        self.wait_state(i, true)
    }

    /// Thaws a paused server with SIGCONT.
    pub fn resume(&self, i: usize) -> Result<()> {
        self.send(i, libc::SIGCONT)?;
        self.wait_state(i, false)
    }

    /// Waits until /proc says the server is (or is no longer) stopped:
    /// kill(2) returns before a multi-threaded JVM has actually stopped.
    fn wait_state(&self, i: usize, stopped: bool) -> Result<()> {
        let pid = self
            .pids()
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| bad(i))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state letter follows the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            if matches!(state, Some('T') | Some('t')) == stopped {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::BadServer(format!(
                    "ZooKeeper server {i} did not {} in time (state {state:?})",
                    if stopped { "stop" } else { "continue" }
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The index of the current ensemble leader (or of the standalone server).
    pub fn leader(&self) -> Option<usize> {
        let ports: Vec<(u16, bool)> = self
            .lock()
            .iter()
            .map(|s| (s.client_port, s.child.is_some()))
            .collect();
        ports.iter().position(|&(port, running)| {
            running
                && four_letter_word(port, "srvr")
                    .map(|r| r.contains("Mode: leader") || r.contains("Mode: standalone"))
                    .unwrap_or(false)
        })
    }

    /// Waits until server `i` answers requests (standalone, leader or follower).
    pub fn wait_serving(&self, i: usize) -> Result<()> {
        let (port, log) = {
            let servers = self.lock();
            let s = servers.get(i).ok_or_else(|| bad(i))?;
            (s.client_port, s.log.clone())
        };
        let deadline = Instant::now() + self.opts.ready_timeout;
        loop {
            if let Ok(reply) = four_letter_word(port, "srvr") {
                if reply.contains("Mode: ") {
                    return Ok(());
                }
            }
            if let Some(status) = self.exited(i) {
                return Err(Error::NotReady(format!(
                    "ZooKeeper server {i} exited ({status}); log tail:\n{}",
                    log_tail(&log)
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady(format!(
                    "ZooKeeper server {i} (port {port}) did not serve within {:?}; log tail:\n{}",
                    self.opts.ready_timeout,
                    log_tail(&log)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Forgets the server processes without killing them, so they outlive
    /// this value (for `cargo xtask zk start`). Returns their pids. Proxies
    /// do not outlive it: they stop with this value.
    pub fn detach(mut self) -> Vec<u32> {
        let pids = self
            .lock()
            .iter_mut()
            .filter_map(|s| s.child.take().map(|c| c.id()))
            .collect();
        if let Some(tmp) = self.tmp.take() {
            // The servers keep using their data directory.
            let _ = tmp.keep();
        }
        pids
    }

    fn launch(&self, i: usize) -> Result<()> {
        let mut servers = self.lock();
        let n = servers.len();
        let s = servers.get_mut(i).ok_or_else(|| bad(i))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .map_err(io(format!("open {}", s.log.display())))?;
        let log2 = log.try_clone().map_err(io("clone log handle"))?;
        let main = if n > 1 {
            "org.apache.zookeeper.server.quorum.QuorumPeerMain"
        } else {
            "org.apache.zookeeper.server.ZooKeeperServerMain"
        };
        let mut cmd = Command::new(&self.java);
        cmd.args([
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-Djava.net.preferIPv4Stack=true",
            "-Dzookeeper.admin.enableServer=false",
            "-Dzookeeper.4lw.commands.whitelist=*",
            "-Dzookeeper.cnxTimeout=1000",
            "-Dzookeeper.jmx.log4j.disable=true",
        ])
        .args(&s.jvm_args)
        .arg("-cp")
        .arg(&self.classpath)
        .arg(main)
        .arg(&s.cfg)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
        let child = spawn(cmd, self.opts.die_with_parent)
            .map_err(io(format!("start {} for ZooKeeper", self.java.display())))?;
        s.child = Some(child);
        Ok(())
    }

    fn send(&self, i: usize, sig: libc::c_int) -> Result<()> {
        let servers = self.lock();
        let s = servers.get(i).ok_or_else(|| bad(i))?;
        let child = s
            .child
            .as_ref()
            .ok_or_else(|| Error::BadServer(format!("ZooKeeper server {i} is not running")))?;
        signal(child.id(), sig).map_err(io(format!("signal ZooKeeper server {i}")))
    }

    fn exited(&self, i: usize) -> Option<String> {
        let mut servers = self.lock();
        let child = servers.get_mut(i)?.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Server>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ZkCluster {
    fn drop(&mut self) {
        for s in self.lock().iter_mut() {
            if let Some(mut child) = s.child.take() {
                kill_and_reap(&mut child);
            }
        }
    }
}

impl std::fmt::Debug for ZkCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkCluster")
            .field("connect", &self.connect_string())
            .field("root", &self.root)
            .finish()
    }
}

fn bad(i: usize) -> Error {
    Error::BadServer(format!("no ZooKeeper server with index {i}"))
}

/// Finds `java` and the ZooKeeper classpath, or says how to install them.
fn locate() -> Result<(PathBuf, String)> {
    let classpath = match std::env::var("ZOOKEEPER_CLASSPATH") {
        Ok(cp) if !cp.trim().is_empty() => cp,
        _ => {
            let jar = Path::new("/usr/share/java/zookeeper.jar");
            if !jar.exists() {
                return Err(Error::NotInstalled(format!(
                    "{} is missing. {INSTALL_HINT}",
                    jar.display()
                )));
            }
            "/usr/share/java/zookeeper.jar:/etc/zookeeper/conf".to_string()
        }
    };
    let java = match std::env::var_os("JAVA_HOME") {
        Some(home) if Path::new(&home).join("bin/java").exists() => {
            Path::new(&home).join("bin/java")
        }
        _ => which("java").ok_or_else(|| {
            Error::NotInstalled(format!(
                "no `java` on PATH (Debian's zookeeper package depends on a JRE). {INSTALL_HINT}"
            ))
        })?,
    };
    Ok((java, classpath))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Sends a ZooKeeper four-letter-word command (`srvr`, `ruok`, `mntr`, ...)
/// to a loopback port and returns the reply.
pub fn four_letter_word(port: u16, cmd: &str) -> std::io::Result<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(cmd.as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
