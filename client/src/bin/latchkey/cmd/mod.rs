//! One module per command. Each returns an [`Output`](crate::render::Output) or an
//! error; printing and exit codes are `render`'s business.

pub mod doctor;
pub mod login;
pub mod logout;
pub mod profile;
pub mod status;
pub mod token;

use latchkey::Error;
use latchkey_daemon::config::Config;
use latchkey_proto::paths::Paths;

/// What every command needs: the resolved paths and the global options.
#[derive(Debug)]
pub struct Ctx {
    pub paths: Paths,
    pub explicit_profile: Option<String>,
}

impl Ctx {
    /// Resolves the paths from the process environment.
    pub fn from_env(explicit_profile: Option<String>) -> Result<Ctx, Error> {
        let env = latchkey_daemon::engine::process_env();
        let paths = Paths::resolve(&env).map_err(latchkey_daemon::EngineError::from)?;
        Ok(Ctx {
            paths,
            explicit_profile,
        })
    }

    /// Reads config.toml.
    pub fn config(&self) -> Result<Config, Error> {
        Ok(Config::load(&self.paths.config_file)?)
    }

    /// The engine over this home and the profile this run is about.
    pub fn engine(&self) -> Result<(latchkey_daemon::Engine, String), Error> {
        let config = self.config()?;
        let profile = self.profile(&config)?;
        Ok((
            latchkey_daemon::Engine::new(self.paths.clone(), config),
            profile,
        ))
    }

    /// The profile this run is about (SPEC §4 resolution order).
    pub fn profile(&self, config: &Config) -> Result<String, Error> {
        let from_env = std::env::var("LATCHKEY_PROFILE").ok();
        Ok(config.resolve_profile(self.explicit_profile.as_deref(), from_env.as_deref())?)
    }
}
