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

impl Config {
    /// The profile whose `git_hosts` lists `host` (as git sends it: `host` or
    /// `host:port`). Several: the first by name.
    pub fn profile_for_git_host(&self, host: &str) -> Option<String> {
        self.first_listing(host, |p| &p.git_hosts)
    }

    /// The profile whose `docker_registries` lists the registry of `server`.
    pub fn profile_for_registry(&self, server: &str) -> Option<String> {
        self.first_listing(server, |p| &p.docker_registries)
    }

    fn first_listing(
        &self,
        wanted: &str,
        list: impl Fn(&ProfileConfig) -> &Vec<String>,
    ) -> Option<String> {
        let wanted = host_key(wanted)?;
        self.profiles
            .iter()
            .find(|(_, p)| {
                list(p)
                    .iter()
                    .any(|h| host_key(h).as_deref() == Some(&wanted))
            })
            .map(|(name, _)| name.clone())
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
            git_hosts = ["git.example.com", "example.com:8443"]
            docker_registries = ["registry.example.com"]
            [profiles.home]
            issuer = "https://id.example.com"
            client_id = "c"
            git_hosts = ["github.com"]
        "#;
        let c = Config::parse(std::path::Path::new("config.toml"), text).unwrap();
        assert_eq!(
            c.profile_for_git_host("GIT.example.com").as_deref(),
            Some("work")
        );
        assert_eq!(
            c.profile_for_git_host("example.com:8443").as_deref(),
            Some("work")
        );
        assert_eq!(c.profile_for_git_host("example.com").as_deref(), None);
        assert_eq!(
            c.profile_for_git_host("github.com").as_deref(),
            Some("home")
        );
        assert_eq!(
            c.profile_for_registry("https://registry.example.com/v1/")
                .as_deref(),
            Some("work")
        );
        assert_eq!(c.profile_for_registry("docker.io"), None);
    }
}
