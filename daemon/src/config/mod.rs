//! `config.toml`: profiles, the default profile, vault settings (docs/behaviour.md,
//! "Configuration and profiles").
//!
//! Reading deserializes into typed structs and rejects unknown keys, so a typo is a
//! usage error naming the key rather than a silently ignored setting. Writing edits
//! the TOML document in place (toml_edit), so a person's comments and ordering
//! survive `latchkey profile add`, and goes through the vault's atomic writer
//! (0600 file in a 0700 folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use latchkey_proto::profile::{ProfileList, ProfileSummary, validate_name};
use latchkey_proto::proxy::AllowRule;
use latchkey_proto::vault::KdfParams;
use serde::Deserialize;
use toml_edit::{DocumentMut, Item, Table, value};

pub mod presets;
pub mod tools;

use crate::error::ConfigError;
use crate::vault::crypto::{DEFAULT_KDF, MIN_LOG_N, check_kdf};
use crate::vault::fs;

/// The scopes a profile gets when none are given.
pub const DEFAULT_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// A config file larger than this is refused as corrupt.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// One provider account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// The OIDC issuer; discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Explicit endpoints for providers without a discovery document.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// Sent as `audience` on authorization and token requests (Auth0 and others).
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 8707 resource indicator.
    #[serde(default)]
    pub resource: Option<String>,
    /// Extra query parameters for the authorization request (`auth_params`; the
    /// older name `extra_auth_params` is still read).
    #[serde(default, rename = "auth_params", alias = "extra_auth_params")]
    pub extra_auth_params: BTreeMap<String, String>,
    /// The client secret of an "installed app" client that has one (Google's
    /// desktop clients: not confidential there, but its token endpoint wants it).
    /// Sent to the token, device authorization and revocation endpoints only;
    /// never logged.
    #[serde(default)]
    pub client_secret: Option<latchkey_proto::secret::Secret>,
    /// How the secret is sent: `basic` (HTTP Basic, RFC 6749 §2.3.1) or `post`
    /// (in the form). Unset: what the provider's metadata announces, else Basic
    /// ([`crate::oauth::client::ClientAuth`]).
    #[serde(default)]
    pub client_auth: Option<ClientAuthMethod>,
    /// The userinfo claim that lists the user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// `[profiles.NAME.proxy]`: the API the proxy serves with this profile's token.
    #[serde(default)]
    pub proxy: Option<ProxySettings>,
    /// Hosts (`host` or `host:port`) whose git credentials this profile answers.
    #[serde(default)]
    pub git_hosts: Vec<String>,
    /// The user name git gets (default `oauth2`).
    #[serde(default)]
    pub git_username: Option<String>,
    /// `basic` (default: the token as the password) or `bearer` (the token as a
    /// Bearer credential, where git supports it).
    #[serde(default)]
    pub git_auth: Option<tools::GitAuth>,
    /// Registries (`host` or `host:port`) whose docker credentials this profile answers.
    #[serde(default)]
    pub docker_registries: Vec<String>,
    /// The user name docker gets (default `oauth2accesstoken`).
    #[serde(default)]
    pub docker_username: Option<String>,
}

pub use latchkey_proto::vault::ClientAuthMethod;

/// `[profiles.NAME.proxy]` (docs/behaviour.md, "The API proxy").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// The base URL requests go to (`upstream + "/" + path`): https, or http on a
    /// loopback host; the only host that ever receives the profile's token.
    pub upstream: String,
    /// How long the upstream may take from the request's start to its answer's
    /// head (default 60 s, at most 600 s).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// `METHOD /path` patterns ([`AllowRule`]); when set, any other request is
    /// refused (forbidden) before it leaves the machine. Absent: everything.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
}

impl ProxySettings {
    /// The `allow` list, parsed (checked at load); `None` when every request is
    /// allowed.
    pub fn allow_rules(&self) -> Result<Option<Vec<AllowRule>>, String> {
        self.allow
            .as_ref()
            .map(|list| list.iter().map(|r| AllowRule::parse(r)).collect())
            .transpose()
    }

    /// How long the upstream may take to answer: `timeout_seconds`, 1 to 600.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout_seconds
            .map_or(crate::proxy::DEFAULT_TIMEOUT, |s| {
                std::time::Duration::from_secs(s.max(1)).min(crate::proxy::MAX_TIMEOUT)
            })
    }

    /// The upstream as a URL, by the rule of [`check_upstream`] (checked at load).
    pub fn upstream_url(&self) -> Result<url::Url, String> {
        check_upstream(&self.upstream)
    }
}

/// The rule for a proxy upstream: the provider URL rule ([`check_url`]) and no
/// query (paths and queries come from each request).
pub fn check_upstream(s: &str) -> Result<url::Url, String> {
    let url = check_url(s)?;
    if url.query().is_some() {
        return Err("an upstream URL has no query; requests bring their own".into());
    }
    Ok(url)
}

fn default_scopes() -> Vec<String> {
    DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// `[vault]`: how new vaults are encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// scrypt cost as a power of two; never below 10.
    #[serde(default = "default_log_n")]
    pub scrypt_log_n: u8,
}

fn default_log_n() -> u8 {
    let KdfParams::Scrypt { log_n, .. } = DEFAULT_KDF;
    log_n
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            scrypt_log_n: default_log_n(),
        }
    }
}

impl VaultSettings {
    /// The KDF parameters new vaults are written with.
    pub fn kdf(&self) -> KdfParams {
        let KdfParams::Scrypt { r, p, .. } = DEFAULT_KDF;
        KdfParams::Scrypt {
            log_n: self.scrypt_log_n,
            r,
            p,
        }
    }
}

/// `[delegate]`: the listeners that serve client tokens only (docs/behaviour.md,
/// "Client tokens"). Both are off unless configured; `latchkeyd` binds them at
/// start (a change needs `latchkey daemon restart`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateSettings {
    /// `true`: `<runtime folder>/delegate.sock`; a string: that path.
    #[serde(default)]
    pub socket: Option<DelegateSocket>,
    /// A loopback address and port, such as `127.0.0.1:7878`.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// `[delegate] socket = true | "PATH"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DelegateSocket {
    Default(bool),
    Path(PathBuf),
}

impl DelegateSettings {
    /// The delegate socket's path, if one is configured.
    pub fn socket_path(&self, runtime_dir: &Path) -> Option<PathBuf> {
        match &self.socket {
            None | Some(DelegateSocket::Default(false)) => None,
            Some(DelegateSocket::Default(true)) => Some(runtime_dir.join("delegate.sock")),
            Some(DelegateSocket::Path(p)) => Some(p.clone()),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub vault: VaultSettings,
    #[serde(default)]
    pub delegate: DelegateSettings,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
}

/// The `default_profile` of config.toml, read without parsing the document: the
/// hot path of `latchkey token` needs only the profile's name, and
/// whoever answers (the daemon or the embedded engine) parses and checks the whole
/// file anyway. `None` when the key is absent or written in any way this small
/// reader does not follow (the caller then parses the file); never a name that the
/// full parse would read differently.
pub fn default_profile_hint(path: &Path) -> Option<String> {
    let text = read(path).ok()??;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            // Tables begin: `default_profile` is a top-level key.
            return None;
        }
        let Some(rest) = line.strip_prefix("default_profile") else {
            continue;
        };
        let rest = rest.trim_start().strip_prefix('=')?.trim_start();
        let quote = rest.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let (name, after) = rest[1..].split_once(quote)?;
        let after = after.trim();
        if !(after.is_empty() || after.starts_with('#')) {
            return None;
        }
        // Profile names have no quotes, escapes or spaces, so the raw text is the value.
        validate_name(name).ok()?;
        return Some(name.to_string());
    }
    None
}

impl Config {
    /// Reads the config; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match read(path)? {
            None => Ok(Config::default()),
            Some(text) => Config::parse(path, &text),
        }
    }

    /// Parses and validates config text.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let parse_err = |reason: String| ConfigError::Parse {
            path: path.to_path_buf(),
            reason,
        };
        let config: Config = toml_edit::de::from_str(text)
            .map_err(|e| parse_err(where_(e.message(), e.span(), text)))?;
        for (name, profile) in &config.profiles {
            validate_name(name)
                .map_err(|reason| parse_err(format!("profile {name:?}: {reason}")))?;
            validate_issuer(&profile.issuer)
                .map_err(|e| parse_err(format!("profile {name:?}: {e}")))?;
            if let Some(proxy) = &profile.proxy {
                proxy.upstream_url().map_err(|e| {
                    parse_err(format!(
                        "[profiles.{name}.proxy] upstream = {:?}: {e}",
                        proxy.upstream
                    ))
                })?;
                proxy
                    .allow_rules()
                    .map_err(|e| parse_err(format!("[profiles.{name}.proxy] allow: {e}")))?;
            }
        }
        if let Some(d) = &config.default_profile
            && !config.profiles.contains_key(d)
        {
            return Err(parse_err(format!(
                "default_profile {d:?} is not a configured profile"
            )));
        }
        check_kdf(&config.vault.kdf()).map_err(|reason| {
            parse_err(format!(
                "[vault] scrypt_log_n: {reason} (the minimum is {MIN_LOG_N})"
            ))
        })?;
        if let Some(addr) = config.delegate.listen
            && !addr.ip().is_loopback()
        {
            return Err(parse_err(format!(
                "[delegate] listen = {addr}: only a loopback address (127.0.0.1, ::1) can serve client tokens"
            )));
        }
        if let Some(DelegateSocket::Path(p)) = &config.delegate.socket
            && !p.is_absolute()
        {
            return Err(parse_err(format!(
                "[delegate] socket = {:?}: give an absolute path, or true for the runtime folder",
                p.display()
            )));
        }
        Ok(config)
    }

    /// Names of the configured profiles, sorted.
    pub fn profile_names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }

    /// Chooses the profile: `--profile`, then LATCHKEY_PROFILE, then
    /// `default_profile`, then the only profile. The chosen one must exist.
    pub fn resolve_profile(
        &self,
        explicit: Option<&str>,
        from_env: Option<&str>,
    ) -> Result<String, ConfigError> {
        let chosen = explicit
            .or(from_env.filter(|s| !s.is_empty()))
            .or(self.default_profile.as_deref());
        match chosen {
            Some(name) if self.profiles.contains_key(name) => Ok(name.to_string()),
            Some(name) => Err(ConfigError::UnknownProfile {
                name: name.to_string(),
                known: self.profile_names(),
            }),
            None => match self.profiles.len() {
                0 => Err(ConfigError::NoProfiles),
                1 => Ok(self.profile_names().remove(0)),
                _ => Err(ConfigError::AmbiguousProfile {
                    known: self.profile_names(),
                }),
            },
        }
    }

    /// The `latchkey profile list` document.
    pub fn summary(&self) -> ProfileList {
        ProfileList {
            default_profile: self.default_profile.clone(),
            profiles: self
                .profiles
                .iter()
                .map(|(name, p)| ProfileSummary {
                    name: name.clone(),
                    issuer: p.issuer.clone(),
                    client_id: p.client_id.clone(),
                    scopes: p.scopes.clone(),
                    default: self.default_profile.as_deref() == Some(name),
                })
                .collect(),
        }
    }
}

/// A parser's message and where it points, as one line. Never the offending
/// line itself, which toml_edit's own rendering quotes: it may hold a
/// `client_secret` (a typo in the key, an unterminated string).
fn where_(message: &str, span: Option<std::ops::Range<usize>>, text: &str) -> String {
    let message = message
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(before) = span.and_then(|s| text.get(..s.start)) else {
        return message;
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // The key of that line, when it is a plain one: names the setting, not its value.
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    match key {
        Some(k) => format!("{message} (line {line}, column {column}, key `{k}`)"),
        None => format!("{message} (line {line}, column {column})"),
    }
}

fn read(path: &Path) -> Result<Option<String>, ConfigError> {
    let Some((bytes, _)) = fs::read_private(path, MAX_CONFIG_LEN, false)? else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: "it is not UTF-8 text".into(),
        })
}

/// Checks an issuer URL: https, or plain http on a loopback host only.
pub fn validate_issuer(issuer: &str) -> Result<url::Url, ConfigError> {
    check_url(issuer)
        .and_then(|u| match u.query() {
            Some(_) => Err("an issuer has no query".to_string()),
            None => Ok(u),
        })
        .map_err(|reason| ConfigError::Issuer {
            issuer: issuer.to_string(),
            reason,
        })
}

/// The rule for every provider URL (issuer and endpoints): https, or plain http on a
/// loopback host only; no query, fragment or credentials in the URL itself. Returns
/// why not, in words.
pub fn check_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    if url.fragment().is_some() {
        return Err("a provider URL has no fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a provider URL carries no user name or password".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(url)
            } else {
                Err("plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost); use https".into())
            }
        }
        other => Err(format!("scheme {other:?} is not https")),
    }
}

/// A new profile as `latchkey profile add` gives it.
#[derive(Debug, Clone, Default)]
pub struct NewProfile {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// Empty means the defaults.
    pub scopes: Vec<String>,
    pub make_default: bool,
    /// What a preset adds (`presets::fill`): explicit endpoints, authorization
    /// parameters, an audience, git hosts.
    pub endpoints: BTreeMap<&'static str, String>,
    pub auth_params: BTreeMap<String, String>,
    pub audience: Option<String>,
    pub git_hosts: Vec<String>,
    pub client_auth: Option<&'static str>,
}

/// Edits `config.toml` in place, keeping comments, and writes it atomically.
#[derive(Debug)]
pub struct ConfigEditor {
    path: PathBuf,
    doc: DocumentMut,
}

impl ConfigEditor {
    /// Opens the config for editing (an empty document when missing). The current
    /// text must be valid, so an edit never builds on a broken file.
    pub fn open(path: &Path) -> Result<Self, ConfigError> {
        let text = read(path)?.unwrap_or_default();
        Config::parse(path, &text)?;
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                reason: where_(e.message(), e.span(), &text),
            })?;
        Ok(ConfigEditor {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The `[profiles]` table, created when missing. An inline `profiles = {...}`
    /// table is refused rather than rewritten, so a hand-written file is never mangled.
    fn profiles_table(&mut self) -> Result<&mut Table, ConfigError> {
        if self.doc.get("profiles").is_none() {
            let mut t = Table::new();
            // `[profiles]` itself stays implicit; only `[profiles.NAME]` headers show.
            t.set_implicit(true);
            self.doc.insert("profiles", Item::Table(t));
        }
        let path = self.path.clone();
        self.doc
            .get_mut("profiles")
            .and_then(Item::as_table_mut)
            .ok_or(ConfigError::Parse {
                path,
                reason: "`profiles` is an inline table; edit it by hand or write it as [profiles.NAME] sections".into(),
            })
    }

    /// Adds a profile; it must not exist yet. The first profile of a config without
    /// a `default_profile` becomes the default, so adding a second one later does
    /// not leave `latchkey token` without a profile (as `gh` and kubectl contexts do).
    pub fn add(&mut self, p: &NewProfile) -> Result<(), ConfigError> {
        validate_name(&p.name).map_err(|reason| ConfigError::ProfileName {
            name: p.name.clone(),
            reason,
        })?;
        validate_issuer(&p.issuer)?;
        if p.client_id.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "--client-id",
                reason: "it cannot be empty".into(),
            });
        }
        if let Some(bad) = p
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(ConfigError::Invalid {
                field: "--scope",
                reason: format!("{bad:?} is not a single scope"),
            });
        }
        let no_default = self.doc.get("default_profile").is_none();
        let profiles = self.profiles_table()?;
        let first = profiles.is_empty();
        if profiles.contains_key(&p.name) {
            return Err(ConfigError::ProfileExists(p.name.clone()));
        }
        let mut t = Table::new();
        t.insert("issuer", value(p.issuer.as_str()));
        t.insert("client_id", value(p.client_id.as_str()));
        let scopes: Vec<String> = if p.scopes.is_empty() {
            default_scopes()
        } else {
            p.scopes.clone()
        };
        t.insert("scopes", value(toml_edit::Array::from_iter(scopes)));
        for (key, url) in &p.endpoints {
            t.insert(key, value(url.as_str()));
        }
        if let Some(a) = &p.audience {
            t.insert("audience", value(a.as_str()));
        }
        if let Some(m) = p.client_auth {
            t.insert("client_auth", value(m));
        }
        if !p.auth_params.is_empty() {
            let mut params = toml_edit::InlineTable::new();
            for (k, v) in &p.auth_params {
                params.insert(k, v.as_str().into());
            }
            t.insert("auth_params", value(params));
        }
        if !p.git_hosts.is_empty() {
            t.insert(
                "git_hosts",
                value(toml_edit::Array::from_iter(p.git_hosts.iter())),
            );
        }
        profiles.insert(&p.name, Item::Table(t));
        if p.make_default || (first && no_default) {
            self.doc.insert("default_profile", value(p.name.as_str()));
        }
        Ok(())
    }

    /// Removes a profile (and clears `default_profile` when it named it).
    pub fn remove(&mut self, name: &str) -> Result<(), ConfigError> {
        let known = self.current()?.profile_names();
        if self.profiles_table()?.remove(name).is_none() {
            return Err(ConfigError::UnknownProfile {
                name: name.to_string(),
                known,
            });
        }
        if self.doc.get("default_profile").and_then(Item::as_str) == Some(name) {
            self.doc.remove("default_profile");
        }
        Ok(())
    }

    /// Makes an existing profile the default.
    pub fn set_default(&mut self, name: &str) -> Result<(), ConfigError> {
        let current = self.current()?;
        if !current.profiles.contains_key(name) {
            return Err(ConfigError::UnknownProfile {
                name: name.to_string(),
                known: current.profile_names(),
            });
        }
        self.doc.insert("default_profile", value(name));
        Ok(())
    }

    /// The config as the edited document reads now.
    pub fn current(&self) -> Result<Config, ConfigError> {
        Config::parse(&self.path, &self.doc.to_string())
    }

    /// Validates the edited document and writes it atomically (0600, folder 0700).
    pub fn save(self) -> Result<Config, ConfigError> {
        let config = self.current()?;
        if let Some(dir) = self.path.parent() {
            fs::ensure_private_dir(dir)?;
        }
        let mut text = self.doc.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        fs::write_atomic(&self.path, text.as_bytes(), fs::Replace::Overwrite)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delegate_table_takes_loopback_listeners_only() {
        let path = Path::new("/x/config.toml");
        let parse = |t: &str| Config::parse(path, t);
        let c = parse("[delegate]\nsocket = true\nlisten = \"127.0.0.1:7878\"\n").unwrap();
        assert_eq!(
            c.delegate.socket_path(Path::new("/run/lk")),
            Some(PathBuf::from("/run/lk/delegate.sock"))
        );
        assert_eq!(c.delegate.listen, Some("127.0.0.1:7878".parse().unwrap()));
        let c = parse("[delegate]\nsocket = \"/srv/lk.sock\"\nlisten = \"[::1]:1\"\n").unwrap();
        assert_eq!(
            c.delegate.socket_path(Path::new("/run/lk")),
            Some(PathBuf::from("/srv/lk.sock"))
        );
        assert_eq!(
            parse("").unwrap().delegate.socket_path(Path::new("/r")),
            None
        );
        for bad in [
            "[delegate]\nlisten = \"0.0.0.0:7878\"\n",
            "[delegate]\nlisten = \"192.168.1.2:7878\"\n",
            "[delegate]\nlisten = \"[::]:7878\"\n",
            "[delegate]\nlisten = \"localhost:7878\"\n",
            "[delegate]\nsocket = \"relative.sock\"\n",
            "[delegate]\nsockets = true\n",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("config.toml is not valid"), "{bad}: {e}");
            let key = if bad.contains("socket") {
                "socket"
            } else {
                "listen"
            };
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn the_default_profile_hint_agrees_with_the_parser_or_abstains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let profiles = "[profiles.work]\nissuer = \"https://id.example.com\"\nclient_id = \"c\"\n[profiles.dev-1]\nissuer = \"https://id.example.com\"\nclient_id = \"c\"\n";
        for (head, hint) in [
            ("default_profile = \"work\"\n", Some("work")),
            ("default_profile='dev-1'   # comment\n", Some("dev-1")),
            ("  default_profile   =   \"work\"\n", Some("work")),
            ("# default_profile = \"dev-1\"\n", None),
            ("", None),
            ("default_profile = \"wo\\u0072k\"\n", None),
            ("default_profile = \"\"\"work\"\"\"\n", None),
            ("default_profile = \"work\" x\n", None),
        ] {
            std::fs::write(&path, format!("{head}{profiles}")).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            let got = default_profile_hint(&path);
            assert_eq!(got.as_deref(), hint, "{head:?}");
            if let (Some(h), Ok(full)) = (&got, Config::load(&path)) {
                assert_eq!(
                    full.default_profile.as_deref(),
                    Some(h.as_str()),
                    "{head:?}"
                );
            }
        }
        // A key inside a table is not the top-level one.
        std::fs::write(&path, format!("{profiles}default_profile = \"work\"\n")).unwrap();
        assert_eq!(default_profile_hint(&path), None);
    }

    fn add(ed: &mut ConfigEditor, name: &str, default: bool) {
        ed.add(&NewProfile {
            name: name.into(),
            issuer: "https://id.example.com".into(),
            client_id: "cli".into(),
            scopes: vec![],
            make_default: default,
            ..NewProfile::default()
        })
        .unwrap();
    }

    #[test]
    fn issuer_rules() {
        for ok in [
            "https://id.example.com",
            "https://id.example.com/realms/x",
            "http://127.0.0.1:9",
            "http://127.8.0.1",
            "http://[::1]:8080",
            "http://localhost:3000",
        ] {
            assert!(validate_issuer(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "ftp://x",
            "not a url",
            "https://id.example.com/?q=1",
            "https://u:p@id.example.com",
        ] {
            assert!(validate_issuer(bad).is_err(), "{bad}");
        }
        let e = validate_issuer("http://example.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn resolution_order() {
        let text = r#"
            default_profile = "b"
            [profiles.a]
            issuer = "https://a"
            client_id = "x"
            [profiles.b]
            issuer = "https://b"
            client_id = "y"
        "#;
        let c = Config::parse(Path::new("c.toml"), text).unwrap();
        assert_eq!(c.resolve_profile(Some("a"), Some("b")).unwrap(), "a");
        assert_eq!(c.resolve_profile(None, Some("a")).unwrap(), "a");
        assert_eq!(c.resolve_profile(None, Some("")).unwrap(), "b");
        assert_eq!(c.resolve_profile(None, None).unwrap(), "b");
        assert!(matches!(
            c.resolve_profile(Some("zz"), None),
            Err(ConfigError::UnknownProfile { .. })
        ));
        assert_eq!(c.profiles["a"].scopes, default_scopes());
        assert_eq!(c.profiles["a"].groups_claim, "groups");
        let mut two = c.clone();
        two.default_profile = None;
        let err = two.resolve_profile(None, None).unwrap_err();
        assert!(err.to_string().contains("profiles: a, b"), "{err}");
        let mut one = two.clone();
        one.profiles.remove("b");
        assert_eq!(one.resolve_profile(None, None).unwrap(), "a");
        assert!(matches!(
            Config::default().resolve_profile(None, None),
            Err(ConfigError::NoProfiles)
        ));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let p = Path::new("c.toml");
        let typo = "[profiles.a]\nissuer = \"https://a\"\nclient_id = \"x\"\nscope = [\"x\"]\n";
        let e = Config::parse(p, typo).unwrap_err().to_string();
        assert!(e.contains("scope"), "{e}");
        let bad_issuer = "[profiles.a]\nissuer = \"http://evil.example\"\nclient_id = \"x\"\n";
        assert!(Config::parse(p, bad_issuer).is_err());
        let weak = "[vault]\nscrypt_log_n = 8\n";
        assert!(
            Config::parse(p, weak)
                .unwrap_err()
                .to_string()
                .contains("minimum")
        );
        let dangling = "default_profile = \"nope\"\n";
        assert!(Config::parse(p, dangling).is_err());
    }

    #[test]
    fn parse_errors_point_at_the_line_without_quoting_it() {
        let p = Path::new("c.toml");
        let base = "[profiles.a]\nissuer = \"https://a\"\nclient_id = \"x\"\n";
        for broken in [
            format!("{base}client_secert = \"hunter2-secret\"\n"),
            format!("{base}client_secret = \"hunter2-secret\n"),
            format!(
                "{base}client_secret = \"hunter2-secret\"\nclient_secret = \"hunter2-secret\"\n"
            ),
        ] {
            let e = Config::parse(p, &broken).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("line 4") || e.contains("line 5"), "{e}");
        }
        // The editor's own parse says the same.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.toml");
        std::fs::write(&path, format!("{base}client_secret = \"hunter2-secret\n")).unwrap();
        let e = ConfigEditor::open(&path).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_first_profile_becomes_the_default_and_only_the_first() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.toml");
        let mut ed = ConfigEditor::open(&path).unwrap();
        add(&mut ed, "first", false);
        add(&mut ed, "second", false);
        let c = ed.save().unwrap();
        assert_eq!(c.default_profile.as_deref(), Some("first"));
        // After the default is removed, a new profile does not take its place by
        // itself: there are others, and choosing among them is the person's call.
        let mut ed = ConfigEditor::open(&path).unwrap();
        ed.remove("first").unwrap();
        add(&mut ed, "third", false);
        let c = ed.save().unwrap();
        assert_eq!(c.default_profile, None);
        assert_eq!(c.profile_names(), vec!["second", "third"]);
    }

    #[test]
    fn editor_keeps_comments_and_writes_0600() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("cfg/config.toml");
        let mut ed = ConfigEditor::open(&path).unwrap();
        add(&mut ed, "work", true);
        ed.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("# my notes\n{text}")).unwrap();
        let mut ed = ConfigEditor::open(&path).unwrap();
        add(&mut ed, "home", false);
        assert!(matches!(
            ed.add(&NewProfile {
                name: "home".into(),
                issuer: "https://x".into(),
                client_id: "c".into(),
                scopes: vec![],
                make_default: false,
                ..NewProfile::default()
            }),
            Err(ConfigError::ProfileExists(_))
        ));
        let c = ed.save().unwrap();
        assert_eq!(c.profile_names(), vec!["home", "work"]);
        assert_eq!(c.default_profile.as_deref(), Some("work"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my notes"), "{text}");
        assert!(!text.contains("[profiles]\n"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        let mut ed = ConfigEditor::open(&path).unwrap();
        ed.remove("work").unwrap();
        let c = ed.save().unwrap();
        assert_eq!(c.default_profile, None);
        assert_eq!(c.profile_names(), vec!["home"]);
    }
}
