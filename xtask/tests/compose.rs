//! `compose/docker-compose.yml` is checked here, offline, because no
//! container engine runs where this project is built and tested:
//!
//! - it is valid against the Compose Specification's JSON schema, vendored
//!   in `compose/schema/compose-spec.json` (YAML anchors and `<<` merge keys
//!   are resolved first, as Compose does);
//! - it does what `compose/README.md` says: three ZooKeeper servers and one
//!   memcached, their images, ids and ensemble, ports published on
//!   127.0.0.1 only, no volumes, and the connect string the README exports;
//! - and the check has teeth: broken copies of the file fail it.

use std::path::PathBuf;

use serde_json::Value;

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
/// keys resolved, as JSON for the schema.
fn parse(yaml: &str) -> Result<Value, String> {
    let mut doc: serde_norway::Value =
        serde_norway::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    doc.apply_merge()
        .map_err(|e| format!("bad merge key: {e}"))?;
    serde_json::to_value(&doc).map_err(|e| format!("not JSON-shaped: {e}"))
}

/// Every way `yaml` breaks the Compose schema, one line each; empty when it
/// is a valid Compose file.
fn schema_errors(yaml: &str) -> Vec<String> {
    let schema: Value = serde_json::from_str(&read("schema/compose-spec.json"))
        .expect("the vendored schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the vendored schema compiles");
    match parse(yaml) {
        Ok(doc) => validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect(),
        Err(e) => vec![e],
    }
}

fn compose_file() -> String {
    read("docker-compose.yml")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/services/{name}"))
        .unwrap_or_else(|| panic!("no service {name:?}"))
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

fn ports(service: &Value) -> Vec<&str> {
    service["ports"]
        .as_array()
        .expect("ports is a list")
        .iter()
        .map(|p| p.as_str().expect("ports in the short form"))
        .collect()
}

#[test]
fn the_compose_file_is_valid_against_the_compose_schema() {
    let errors = schema_errors(&compose_file());
    assert!(
        errors.is_empty(),
        "compose/docker-compose.yml breaks the Compose schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_compose_file_does_what_the_readme_says() {
    let doc = parse(&compose_file()).expect("the compose file parses");
    let readme = read("README.md");

    let mut names: Vec<&str> = doc["services"]
        .as_object()
        .expect("services is a mapping")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["memcached", "zoo1", "zoo2", "zoo3"]);

    // A 3-node ZooKeeper 3.8 ensemble: ids 1 to 3, each listing all three.
    let mut client_ports = Vec::new();
    for (id, name) in ["zoo1", "zoo2", "zoo3"].iter().enumerate() {
        let zk = service(&doc, name);
        assert_eq!(text(zk, "/image"), "zookeeper:3.8");
        assert_eq!(text(zk, "/hostname"), *name);
        assert_eq!(text(zk, "/environment/ZOO_MY_ID"), (id + 1).to_string());
        let servers = text(zk, "/environment/ZOO_SERVERS");
        for (other_id, other) in ["zoo1", "zoo2", "zoo3"].iter().enumerate() {
            let entry = format!("server.{}={other}:2888:3888;2181", other_id + 1);
            assert!(
                servers.contains(&entry),
                "{name}: ZOO_SERVERS lacks {entry}"
            );
        }
        let published = ports(zk);
        assert_eq!(published.len(), 1, "{name} publishes one port");
        let (host, container) = published[0]
            .rsplit_once(':')
            .expect("HOST_IP:HOST_PORT:CONTAINER_PORT");
        assert_eq!(container, "2181", "{name} publishes its client port");
        client_ports.push(host.to_string());
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

    let memcached = service(&doc, "memcached");
    assert!(text(memcached, "/image").starts_with("memcached:"));
    assert_eq!(ports(memcached), ["127.0.0.1:11211:11211"]);
    assert!(readme.contains("memcached: 127.0.0.1:11211"));

    // "Ports are published on 127.0.0.1 only. The servers keep no volumes."
    for (name, s) in doc["services"].as_object().expect("services") {
        for port in ports(s) {
            assert!(port.starts_with("127.0.0.1:"), "{name} publishes {port}");
        }
        assert!(s.get("volumes").is_none(), "{name} keeps a volume");
    }
    assert!(doc.get("volumes").is_none(), "the file declares volumes");
}

#[test]
fn a_broken_compose_file_fails_the_check() {
    let good = compose_file();
    // Each copy changes one thing of the real file, and must fail with the
    // error that names it.
    let copies = [
        // A misspelt key: a service allows no unknown property.
        ("    ports:\n", "    port:\n", "'port' was unexpected"),
        // A list written as a string.
        (
            "    ports:\n      - \"127.0.0.1:11211:11211\"",
            "    ports: \"127.0.0.1:11211:11211\"",
            "/services/memcached/ports: \"127.0.0.1:11211:11211\" is not of type \"array\"",
        ),
        // An unknown top-level section.
        ("services:\n", "servces:\n", "'servces' was unexpected"),
        // A wrong type behind the anchor reaches every service merging it.
        (
            "restart: unless-stopped",
            "restart: [unless-stopped]",
            "/services/zoo3/restart: [\"unless-stopped\"] is not of type \"string\"",
        ),
        // Not YAML at all.
        ("  zoo2:\n", " zoo2:\n   - x\n  y:", "not YAML"),
    ];
    for (from, to, expected) in copies {
        assert!(good.contains(from), "{from:?} is not in the file any more");
        let errors = schema_errors(&good.replacen(from, to, 1));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "replacing {from:?} by {to:?}: expected an error with {expected:?}, got {errors:?}"
        );
    }
}
