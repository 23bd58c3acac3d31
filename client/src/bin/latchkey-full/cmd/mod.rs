//! One module per command. Each returns an [`Output`](crate::render::Output) or an
//! error; printing and exit codes are `render`'s business.

pub mod api;
pub mod client_token;
pub mod daemon;
pub mod docker_credential;
pub mod doctor;
pub mod exec;
pub mod git_credential;
pub mod kube_credential;
pub mod login;
pub mod logout;
pub mod mcp;
pub mod profile;
pub mod shell;
pub mod status;
pub mod token;

use latchkey::Error;
use latchkey_daemon::config::Config;
use latchkey_proto::paths::Paths;
use latchkey_proto::profile::ProfileName;

/// What every command needs: the client (paths, daemon mode, the embedded engine
/// built on demand) and the global options.
#[derive(Debug)]
pub struct Ctx {
    pub paths: Paths,
    pub explicit_profile: Option<String>,
    pub client: latchkey::Client,
}

impl Ctx {
    /// Resolves the paths from the process environment.
    pub fn from_env(explicit_profile: Option<String>) -> Result<Ctx, Error> {
        let client = latchkey::Client::from_env()?;
        Ok(Ctx {
            paths: client.paths().clone(),
            explicit_profile,
            client,
        })
    }

    /// Reads config.toml.
    pub fn config(&self) -> Result<Config, Error> {
        Ok(Config::load(&self.paths.config_file)?)
    }

    /// The embedded engine and the profile this run is about.
    pub fn engine(&self) -> Result<(&std::sync::Arc<latchkey_daemon::Engine>, String), Error> {
        let engine = self.client.engine()?;
        let profile = self.profile(&engine.config())?;
        Ok((engine, profile))
    }

    /// The profile this run is about, without building an engine. With `--profile`
    /// or LATCHKEY_PROFILE the config is not even read (the hot path of
    /// `latchkey token`); whoever answers (daemon or engine) checks the profile exists.
    pub fn profile_name(&self) -> Result<ProfileName, Error> {
        if let Some(name) =
            latchkey::front::named_profile(self.explicit_profile.clone(), &self.paths.config_file)
        {
            return checked(name);
        }
        checked(self.profile(&self.config()?)?)
    }

    /// The profile this run is about: `--profile`, then LATCHKEY_PROFILE, then the
    /// config's default, then the only profile.
    pub fn profile(&self, config: &Config) -> Result<String, Error> {
        let from_env = std::env::var("LATCHKEY_PROFILE").ok();
        Ok(config.resolve_profile(self.explicit_profile.as_deref(), from_env.as_deref())?)
    }
}

/// A profile name checked against the naming rules, as a usage error if it breaks
/// them.
pub fn checked(name: String) -> Result<ProfileName, Error> {
    ProfileName::new(name).map_err(|e| {
        Error::from(latchkey_daemon::ConfigError::ProfileName {
            name: e.name,
            reason: e.reason,
        })
    })
}

/// A credential helper without a credential: one line on stderr for people (the
/// tool then asks its next helper, or the person), naming the login command when
/// the session is missing or expired.
#[allow(
    clippy::print_stderr,
    reason = "a helper's one line for people goes to stderr"
)]
pub fn no_credential(profile: &ProfileName, e: &Error) {
    if wants_login(e) {
        // The engine's own sentence and hint: no session, an expired one, or one
        // without the ID token kubectl wants.
        eprintln!(
            "latchkey: {e}; {}",
            e.hint()
                .unwrap_or_else(|| format!("run `latchkey login --profile {profile}`"))
        );
    } else {
        eprintln!("latchkey: no credential from profile {profile}: {e}");
    }
}

/// Whether only a login can give this profile a credential again (no session,
/// an expired one, no ID token): what a helper says in one line.
pub fn wants_login(e: &Error) -> bool {
    matches!(
        e.category(),
        latchkey_proto::error::Category::NotLoggedIn
            | latchkey_proto::error::Category::SessionExpired
    )
}

/// The profile a credential helper serves, by the name `config::tools` chose:
/// the checked name and its settings; `None`: not ours.
pub fn tool_profile(
    config: &Config,
    chosen: Option<String>,
) -> Result<Option<(ProfileName, latchkey_daemon::config::ProfileConfig)>, Error> {
    let Some(name) = chosen else {
        return Ok(None);
    };
    let settings = config.profiles.get(&name).cloned();
    let name = ProfileName::new(name).map_err(|e| Error::usage(e.to_string(), None))?;
    Ok(settings.map(|s| (name, s)))
}
