//! Which profile serves a tool's credential request (docs/behaviour.md,
//! "Credential helpers"): git names a host, docker a registry, and a profile
//! lists the ones it answers for in config.toml (`git_hosts`,
//! `docker_registries`). One rule for the CLI's helpers, with or without a
//! daemon.

use serde::Deserialize;

use super::{Config, ProfileConfig};

/// How git gets the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GitAuth {
    /// `username` + `password` (HTTP Basic): every git version.
    #[default]
    Basic,
    /// `authtype=Bearer` + `credential`, when git announces `capability[]=authtype`
    /// (git 2.46 and later); Basic otherwise.
    Bearer,
}

/// `host` or `host:port`, lower-cased, from a host, a `host:port` or a URL (a
/// docker server URL is `https://host/v1/` or a bare host). The default port of
/// the URL's scheme is dropped.
pub fn host_key(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let parsed = if s.contains("://") {
        url::Url::parse(s).ok()
    } else {
        url::Url::parse(&format!("https://{s}")).ok()
    }?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    Some(match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// Whether a credential may go to `host_key` over `scheme`: https, or plain
/// http to a loopback host only (the proxy's rule for upstreams).
fn secure(scheme: &str, host_key: &str) -> bool {
    let host = host_key
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host_key, |(h, _)| h);
    match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

impl Config {
    /// The profile that answers git for `host` over `protocol` (as git sends
    /// them): `explicit` (`--profile`) when its `git_hosts` is empty or lists the
    /// host, else the profile whose `git_hosts` lists it. Never over plain http
    /// to a host that is not loopback.
    pub fn git_profile(
        &self,
        explicit: Option<&str>,
        protocol: &str,
        host: &str,
    ) -> Option<String> {
        let key = host_key(host)?;
        if !secure(protocol, &key) {
            return None;
        }
        self.serving(explicit, &key, |p| &p.git_hosts)
    }

    /// The profile that answers docker for the registry of `server` (a host, or a
    /// URL whose scheme must be https, or http on loopback), by the same rule.
    pub fn registry_profile(&self, explicit: Option<&str>, server: &str) -> Option<String> {
        let key = host_key(server)?;
        let scheme = server
            .trim()
            .split_once("://")
            .map_or("https", |(scheme, _)| scheme);
        if !secure(scheme, &key) {
            return None;
        }
        self.serving(explicit, &key, |p| &p.docker_registries)
    }

    fn serving(
        &self,
        explicit: Option<&str>,
        key: &str,
        list: impl Fn(&ProfileConfig) -> &Vec<String>,
    ) -> Option<String> {
        let listed =
            |p: &ProfileConfig| list(p).iter().any(|h| host_key(h).as_deref() == Some(key));
        match explicit {
            Some(name) => self
                .profiles
                .get(name)
                .filter(|p| list(p).is_empty() || listed(p))
                .map(|_| name.to_string()),
            None => self
                .profiles
                .iter()
                .find(|(_, p)| listed(p))
                .map(|(name, _)| name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_case_scheme_path_or_default_port() {
        assert_eq!(
            host_key("GitLab.example.com").as_deref(),
            Some("gitlab.example.com")
        );
        assert_eq!(
            host_key("example.com:8443").as_deref(),
            Some("example.com:8443")
        );
        assert_eq!(
            host_key("https://index.docker.io/v1/").as_deref(),
            Some("index.docker.io")
        );
        assert_eq!(
            host_key("https://r.example:443/").as_deref(),
            Some("r.example")
        );
        assert_eq!(
            host_key("127.0.0.1:5000").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(host_key(""), None);
    }

    #[test]
    fn a_host_finds_the_profile_that_lists_it() {
        let text = r#"
            [profiles.work]
            issuer = "https://id.example.com"
            client_id = "c"
            git_hosts = ["git.example.com", "example.com:8443", "127.0.0.1:3000"]
            docker_registries = ["registry.example.com", "127.0.0.1:5000"]
            [profiles.home]
            issuer = "https://id.example.com"
            client_id = "c"
            git_hosts = ["github.com"]
            [profiles.any]
            issuer = "https://id.example.com"
            client_id = "c"
        "#;
        let c = Config::parse(std::path::Path::new("config.toml"), text).unwrap();
        let git = |explicit, protocol, host| c.git_profile(explicit, protocol, host);
        assert_eq!(
            git(None, "https", "GIT.example.com").as_deref(),
            Some("work")
        );
        assert_eq!(
            git(None, "https", "example.com:8443").as_deref(),
            Some("work")
        );
        assert_eq!(git(None, "https", "example.com"), None);
        assert_eq!(git(None, "https", "github.com").as_deref(), Some("home"));
        // Plain http only to loopback.
        assert_eq!(git(None, "http", "git.example.com"), None);
        assert_eq!(git(None, "http", "127.0.0.1:3000").as_deref(), Some("work"));
        // --profile: only for hosts it lists, unless it lists none.
        assert_eq!(git(Some("work"), "https", "evil.example"), None);
        assert_eq!(
            git(Some("work"), "https", "git.example.com").as_deref(),
            Some("work")
        );
        assert_eq!(
            git(Some("any"), "https", "evil.example").as_deref(),
            Some("any")
        );
        assert_eq!(git(Some("any"), "http", "evil.example"), None);
        assert_eq!(git(Some("nope"), "https", "git.example.com"), None);

        let reg = |server| c.registry_profile(None, server);
        assert_eq!(
            reg("https://registry.example.com/v1/").as_deref(),
            Some("work")
        );
        assert_eq!(reg("registry.example.com").as_deref(), Some("work"));
        assert_eq!(reg("http://registry.example.com"), None);
        assert_eq!(reg("127.0.0.1:5000").as_deref(), Some("work"));
        assert_eq!(reg("docker.io"), None);
    }
}
