//! `compose/docker-compose.yml` is checked here, offline, because no
//! container engine runs where this project is built and tested:
//!
//! - it is a valid Compose file: parsed as YAML (anchors and `<<` merge keys
//!   resolved, as Compose does) into the `compose_spec` crate's `Compose`,
//!   whose `Deserialize` follows the Compose Specification and parses and
//!   validates each value (image names, port mappings, restart policies...)
//!   and refuses unknown keys (any key not in the specification must be an
//!   `x-` extension);
//! - it does what `compose/README.md` says: three ZooKeeper servers and one
//!   memcached, their images, ids and ensemble, ports published on
//!   127.0.0.1 only, no volumes, and the connect string the README exports;
//! - and the check has teeth: broken copies of the file fail it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use compose_spec::service::ports;
use compose_spec::{Compose, Service};

fn compose_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("compose")
}

fn read(name: &str) -> String {
    let path = compose_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The compose file as Compose reads it: YAML with its anchors and merge
/// keys resolved, then typed and validated by `compose_spec`.
fn parse(yaml: &str) -> Result<Compose, String> {
    let mut doc: serde_norway::Value =
        serde_norway::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    doc.apply_merge()
        .map_err(|e| format!("bad merge key: {e}"))?;
    serde_norway::from_value(doc).map_err(|e| format!("not a Compose file: {e}"))
}

fn compose_file() -> String {
    read("docker-compose.yml")
}

fn service<'a>(compose: &'a Compose, name: &str) -> &'a Service {
    compose
        .services
        .get(name)
        .unwrap_or_else(|| panic!("no service {name:?}"))
}

fn image(service: &Service) -> String {
    service
        .image
        .as_ref()
        .map(ToString::to_string)
        .expect("an image")
}

/// The service's environment as `NAME` to value.
fn environment(service: &Service) -> HashMap<String, String> {
    service
        .environment
        .clone()
        .into_list()
        .into_iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (entry, String::new()),
        })
        .collect()
}

/// Each published port in the long syntax: host IP, host port (range),
/// container port.
fn ports(service: &Service) -> Vec<(Option<IpAddr>, Option<String>, u16)> {
    ports::into_long_iter(service.ports.clone())
        .map(|p| (p.host_ip, p.published.map(|r| r.to_string()), p.target))
        .collect()
}

const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

#[test]
fn the_compose_file_is_a_valid_compose_file() {
    if let Err(e) = parse(&compose_file()) {
        panic!("compose/docker-compose.yml is not a valid Compose file: {e}");
    }
}

#[test]
fn the_compose_file_does_what_the_readme_says() {
    let compose = parse(&compose_file()).expect("the compose file parses");
    let readme = read("README.md");

    let mut names: Vec<&str> = compose.services.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["memcached", "zoo1", "zoo2", "zoo3"]);

    // A 3-node ZooKeeper 3.8 ensemble: ids 1 to 3, each listing all three.
    let mut client_ports = Vec::new();
    for (id, name) in ["zoo1", "zoo2", "zoo3"].iter().enumerate() {
        let zk = service(&compose, name);
        assert_eq!(image(zk), "zookeeper:3.8");
        assert_eq!(
            zk.hostname.as_ref().map(ToString::to_string).as_deref(),
            Some(*name)
        );
        let env = environment(zk);
        assert_eq!(env["ZOO_MY_ID"], (id + 1).to_string());
        let servers = &env["ZOO_SERVERS"];
        for (other_id, other) in ["zoo1", "zoo2", "zoo3"].iter().enumerate() {
            let entry = format!("server.{}={other}:2888:3888;2181", other_id + 1);
            assert!(
                servers.contains(&entry),
                "{name}: ZOO_SERVERS lacks {entry}"
            );
        }
        let published = ports(zk);
        assert_eq!(published.len(), 1, "{name} publishes one port");
        let (host_ip, host_port, container) = &published[0];
        assert_eq!(*container, 2181, "{name} publishes its client port");
        assert_eq!(*host_ip, LOOPBACK, "{name} publishes on 127.0.0.1");
        let host_port = host_port.as_deref().expect("a host port");
        client_ports.push(format!("127.0.0.1:{host_port}"));
    }
    assert_eq!(
        client_ports,
        ["127.0.0.1:2181", "127.0.0.1:2182", "127.0.0.1:2183"]
    );

    // The connect string the README (and the file's own header) export.
    let export = format!("export SERVERSETS_ZK={}", client_ports.join(","));
    assert!(readme.contains(&export), "README.md lacks `{export}`");
    assert!(
        compose_file().contains(&export),
        "the file's header lacks `{export}`"
    );

    let memcached = service(&compose, "memcached");
    assert!(image(memcached).starts_with("memcached:"));
    assert_eq!(
        ports(memcached),
        [(LOOPBACK, Some("11211".to_string()), 11211)]
    );
    assert!(readme.contains("memcached: 127.0.0.1:11211"));

    // "Ports are published on 127.0.0.1 only. The servers keep no volumes."
    for (name, s) in &compose.services {
        let name = name.as_str();
        for (host_ip, _, container) in ports(s) {
            assert_eq!(
                host_ip, LOOPBACK,
                "{name} publishes {container} beyond 127.0.0.1"
            );
        }
        assert!(s.volumes.is_empty(), "{name} keeps a volume");
    }
    assert!(compose.volumes.is_empty(), "the file declares volumes");
}

#[test]
fn a_broken_compose_file_fails_the_check() {
    let good = compose_file();
    // Each copy changes one thing of the real file, and must fail with the
    // error that names it.
    let copies = [
        // Misspelt keys: outside `x-` extensions, a service allows no key
        // the specification does not define, in the service itself...
        (
            "    ports:\n",
            "    port:\n",
            "extension key `port` does not start with \"x-\"",
        ),
        // ... or behind the anchor, which reaches every service merging it.
        (
            "  image: zookeeper:3.8",
            "  imagee: zookeeper:3.8",
            "extension key `imagee` does not start with \"x-\"",
        ),
        // An unknown top-level section, and `services` misspelt.
        (
            "x-zookeeper: &zookeeper",
            "zookeeper: &zookeeper",
            "extension key `zookeeper` does not start with \"x-\"",
        ),
        ("services:\n", "servces:\n", "missing field `services`"),
        // Wrong types: a number, or a single string, where a list of ports
        // is required...
        (
            "    ports:\n      - \"127.0.0.1:11211:11211\"",
            "    ports: 11211",
            "invalid type: integer `11211`, expected a set",
        ),
        (
            "    ports:\n      - \"127.0.0.1:11211:11211\"",
            "    ports: \"127.0.0.1:11211:11211\"",
            "invalid type: string \"127.0.0.1:11211:11211\", expected a set",
        ),
        // ... and a list where the restart policy is a string.
        (
            "restart: unless-stopped",
            "restart: [unless-stopped]",
            "invalid type: sequence",
        ),
        // Invalid port mappings: a port beyond 65535, a host IP that is none.
        (
            "127.0.0.1:11211:11211",
            "127.0.0.1:11211:99999",
            "error parsing `99999` as an integer",
        ),
        (
            "127.0.0.1:2183:2181",
            "127.0.0.300:2183:2181",
            "error parsing host ip address",
        ),
        // Values the specification does not allow: a restart policy, an
        // image name.
        (
            "restart: unless-stopped",
            "restart: sometimes",
            "unknown variant `sometimes`",
        ),
        (
            "image: memcached:1.6",
            "image: Memcached:1.6",
            "invalid image name part",
        ),
        // Not YAML at all.
        ("  zoo2:\n", " zoo2:\n   - x\n  y:", "not YAML"),
    ];
    for (from, to, expected) in copies {
        assert!(good.contains(from), "{from:?} is not in the file any more");
        match parse(&good.replacen(from, to, 1)) {
            Ok(_) => panic!("replacing {from:?} by {to:?}: the check passed"),
            Err(e) => assert!(
                e.contains(expected),
                "replacing {from:?} by {to:?}: expected an error with {expected:?}, got {e:?}"
            ),
        }
    }
}
