//! `cargo xtask install`: the one place that knows which system packages
//! the tests, the demo and the soak run for real: ZooKeeper (with a JRE),
//! memcached, the Thrift compiler, openssl and protoc, all from Debian. As
//! root with apt-get it runs `apt-get update` and installs what is missing,
//! and says so; otherwise it prints the exact command and fails. `.ci/run`,
//! `cargo xtask test`, `cargo xtask zk start` and the demo all come here.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::proc::{self, is_root, which};
use crate::ui::{human, Ui};
use crate::Result;

/// The Debian packages, in the order they are installed: ZooKeeper (which
/// depends on a JRE, so it brings `java` too), memcached (mcset's tests and
/// the demo), the Thrift compiler (thriftset's generated test service),
/// openssl (the TLS tests' certificates; keytool comes with the JRE) and
/// protoc (serversets-tower's generated gRPC test code).
pub const PACKAGES: [&str; 5] = [
    "zookeeper",
    "memcached",
    "thrift-compiler",
    "openssl",
    "protobuf-compiler",
];

/// A JRE alone, for a machine with ZooKeeper's jar but no `java`.
const JRE: &str = "default-jre-headless";

/// What is on this machine, as far as our tests care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// ZooKeeper's jar (or ZOOKEEPER_CLASSPATH is set).
    pub zookeeper: Option<String>,
    /// A `java` to run it with.
    pub java: Option<String>,
    /// The memcached server.
    pub memcached: Option<String>,
    /// The `thrift` code generator.
    pub thrift: Option<String>,
    /// `openssl`, which makes the TLS tests' certificates.
    pub openssl: Option<String>,
    /// `protoc`, which tonic-build runs to check serversets-tower's
    /// generated gRPC test code.
    pub protoc: Option<String>,
}

impl Probe {
    /// Looks where testkit and the thriftset build look.
    pub fn scan() -> Probe {
        let zookeeper = match std::env::var("ZOOKEEPER_CLASSPATH") {
            Ok(cp) if !cp.trim().is_empty() => Some(format!("ZOOKEEPER_CLASSPATH={cp}")),
            _ => existing(&["/usr/share/java/zookeeper.jar"]),
        };
        let java = std::env::var_os("JAVA_HOME")
            .map(|home| Path::new(&home).join("bin/java"))
            .filter(|p| p.is_file())
            .or_else(|| which("java"))
            .map(|p| p.display().to_string());
        Probe {
            zookeeper,
            java,
            memcached: existing(&["/usr/bin/memcached", "/usr/local/bin/memcached"]),
            thrift: which("thrift").map(|p| p.display().to_string()),
            openssl: which("openssl").map(|p| p.display().to_string()),
            protoc: which("protoc").map(|p| p.display().to_string()),
        }
    }

    /// Debian packages that would supply what is missing.
    pub fn missing_packages(&self) -> Vec<&'static str> {
        let [zookeeper, memcached, thrift, openssl, protoc] = PACKAGES;
        let mut pkgs = Vec::new();
        if self.zookeeper.is_none() {
            pkgs.push(zookeeper);
        } else if self.java.is_none() {
            pkgs.push(JRE);
        }
        for (found, package) in [
            (&self.memcached, memcached),
            (&self.thrift, thrift),
            (&self.openssl, openssl),
            (&self.protoc, protoc),
        ] {
            if found.is_none() {
                pkgs.push(package);
            }
        }
        pkgs
    }

    /// One line per tool, each starting with `indent` plus two spaces.
    fn describe(&self, indent: &str) -> String {
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "MISSING".into());
        [
            ("zookeeper", &self.zookeeper),
            ("java", &self.java),
            ("memcached", &self.memcached),
            ("thrift", &self.thrift),
            ("openssl", &self.openssl),
            ("protoc", &self.protoc),
        ]
        .iter()
        .map(|(what, found)| format!("{indent}  {what}: {}", show(found)))
        .collect::<Vec<_>>()
        .join("\n")
    }
}

fn existing(paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find(|p| Path::new(p).is_file())
        .map(|p| p.to_string())
}

/// The command a person should run to install `pkgs`.
pub fn install_command(pkgs: &[&str], root: bool) -> String {
    let sudo = if root { "" } else { "sudo " };
    format!(
        "{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {}",
        pkgs.join(" ")
    )
}

/// `cargo xtask install`: [`ensure`], on its own.
pub fn run() -> Result<ExitCode> {
    ensure(&Ui::stdout(), "")?;
    Ok(ExitCode::SUCCESS)
}

/// Ensures every package is present, installing as root when possible.
pub fn ensure(ui: &Ui, indent: &str) -> Result<()> {
    let probe = Probe::scan();
    let missing = probe.missing_packages();
    if missing.is_empty() {
        println!("{indent}system packages present:");
        println!("{}", probe.describe(indent));
        return Ok(());
    }
    let root = is_root();
    let command = install_command(&missing, root);
    if !root || which("apt-get").is_none() {
        return Err(format!(
            "missing system packages: {}\n{}\nInstall them with:\n    {command}",
            missing.join(" "),
            probe.describe("")
        )
        .into());
    }
    println!(
        "{indent}{} {}",
        ui.yellow("installing missing Debian packages:"),
        missing.join(" ")
    );
    println!("{indent}$ {command}");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20 * 60);
    apt(&["update"], deadline)?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install, deadline)?;
    println!("{indent}apt-get finished in {}", human(started.elapsed()));
    let after = Probe::scan();
    let still = after.missing_packages();
    if !still.is_empty() {
        return Err(format!(
            "still missing after apt-get install: {}\n{}",
            still.join(" "),
            after.describe("")
        )
        .into());
    }
    println!("{}", after.describe(indent));
    Ok(())
}

fn apt(args: &[&str], deadline: Instant) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    let outcome = proc::run(&mut cmd, deadline)?;
    if outcome.success() {
        Ok(())
    } else {
        Err(format!("`apt-get {}` failed", args.join(" ")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Probe {
        Probe {
            zookeeper: Some("zk".into()),
            java: Some("java".into()),
            memcached: Some("mc".into()),
            thrift: Some("thrift".into()),
            openssl: Some("openssl".into()),
            protoc: Some("protoc".into()),
        }
    }

    #[test]
    fn nothing_missing_installs_nothing() {
        assert!(all().missing_packages().is_empty());
    }

    #[test]
    fn each_missing_tool_maps_to_its_debian_package() {
        let none = Probe::default();
        assert_eq!(
            none.missing_packages(),
            [
                "zookeeper",
                "memcached",
                "thrift-compiler",
                "openssl",
                "protobuf-compiler"
            ]
        );
        let no_java = Probe {
            java: None,
            ..all()
        };
        assert_eq!(no_java.missing_packages(), ["default-jre-headless"]);
        let no_thrift = Probe {
            thrift: None,
            ..all()
        };
        assert_eq!(no_thrift.missing_packages(), ["thrift-compiler"]);
        let no_protoc = Probe {
            protoc: None,
            ..all()
        };
        assert_eq!(no_protoc.missing_packages(), ["protobuf-compiler"]);
    }

    #[test]
    fn install_command_is_exact() {
        assert_eq!(
            install_command(&["zookeeper", "memcached"], false),
            "sudo apt-get update && sudo apt-get install -y --no-install-recommends zookeeper memcached"
        );
        assert_eq!(
            install_command(&["memcached"], true),
            "apt-get update && apt-get install -y --no-install-recommends memcached"
        );
    }
}
