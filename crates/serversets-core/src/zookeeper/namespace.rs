//! Where a server set lives in ZooKeeper.

use std::fmt;
use std::sync::Arc;

use crate::zookeeper::error::{Error, Result};

/// The deployment environment, the middle part of the default path
/// `/discovery/<env>/<service>`.
///
/// ```
/// use serversets_core::{Environment, ServerSet};
///
/// let users = ServerSet::new(Environment::Production, "users", ["zk1:2181"])?;
/// assert_eq!(users.path(), "/discovery/prod/users");
///
/// // From configuration: the usual names, or any other segment.
/// let canary: Environment = "canary".parse()?;
/// let users = ServerSet::new(canary, "users", ["zk1:2181"])?;
/// assert_eq!(users.path(), "/discovery/canary/users");
/// # Ok::<(), serversets_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Environment {
    /// `local`
    Local,
    /// `staging`
    Staging,
    /// `prod`
    Production,
    /// `test`
    Test,
    /// Any other name (non-empty, no `/`).
    Custom(String),
}

impl Environment {
    /// The path segment.
    pub fn as_str(&self) -> &str {
        match self {
            Environment::Local => "local",
            Environment::Staging => "staging",
            Environment::Production => "prod",
            Environment::Test => "test",
            Environment::Custom(s) => s,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Environment {
    type Err = Error;

    /// Parses `local`, `staging`, `prod` (or `production`), `test`, or a
    /// custom name.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "local" => Environment::Local,
            "staging" => Environment::Staging,
            "prod" | "production" => Environment::Production,
            "test" => Environment::Test,
            other => {
                check_segment(other).map_err(|_| Error::InvalidEnvironment(other.to_string()))?;
                Environment::Custom(other.to_string())
            }
        })
    }
}

/// Builds the set's path from environment and service, like go.serversets'
/// `BaseZnodePath`.
pub type PathFn = Arc<dyn Fn(&Environment, &str) -> String + Send + Sync>;

fn check_segment(s: &str) -> std::result::Result<(), ()> {
    if s.is_empty() || s.contains('/') || s == "." || s == ".." {
        Err(())
    } else {
        Ok(())
    }
}

pub(crate) fn check_service(service: &str) -> Result<()> {
    check_segment(service).map_err(|_| Error::InvalidServiceName(service.to_string()))
}

pub(crate) fn check_env(env: &Environment) -> Result<()> {
    check_segment(env.as_str()).map_err(|_| Error::InvalidEnvironment(env.as_str().to_string()))
}

/// Checks a ZooKeeper path: absolute, no empty segments, no trailing slash.
///
/// ```
/// use serversets_core::validate_path;
/// assert!(validate_path("/aurora/www-data/prod/hello").is_ok());
/// assert!(validate_path("discovery/x").is_err());
/// assert!(validate_path("/a//b").is_err());
/// assert!(validate_path("/").is_err());
/// ```
///
/// # Errors
///
/// [`Error::InvalidPath`] with the reason: relative, a trailing `/`, the
/// root, an empty, `.` or `..` segment, or control characters.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |reason| Error::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if !path.starts_with('/') {
        return Err(bad("it must be absolute (start with '/')"));
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err(bad("it must not end with '/'"));
    }
    if path == "/" {
        return Err(bad("a server set cannot be the root"));
    }
    if path[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("it has an empty, '.' or '..' segment"));
    }
    if path.chars().any(|c| c == '\0' || c.is_control()) {
        return Err(bad("it contains control characters"));
    }
    Ok(())
}

pub(crate) fn default_path(base: &str, env: &Environment, service: &str) -> String {
    format!(
        "{}/{}/{}",
        base.trim_end_matches('/'),
        env.as_str(),
        service
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_service("users").is_ok());
        for bad in ["", "a/b", "..", "/"] {
            assert!(
                matches!(check_service(bad), Err(Error::InvalidServiceName(_))),
                "{bad}"
            );
        }
        assert!("prod".parse::<Environment>().unwrap() == Environment::Production);
        assert!("x/y".parse::<Environment>().is_err());
        assert_eq!(
            default_path("/discovery/", &Environment::Staging, "svc"),
            "/discovery/staging/svc"
        );
    }
}
