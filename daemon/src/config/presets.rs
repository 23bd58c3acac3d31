//! Provider presets for `latchkey profile add NAME --preset P`: the issuer,
//! scopes, endpoints and quirks of well-known providers, from each provider's own
//! documentation (docs/providers.md cites it). A preset only fills in what a
//! person would otherwise type; explicit `--issuer` and `--scope` win, and the
//! result is an ordinary profile that can be edited by hand.

use std::collections::BTreeMap;

use super::NewProfile;
use crate::error::ConfigError;

/// The providers with a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Gitlab,
    Google,
    Entra,
    Keycloak,
    Okta,
    Auth0,
    Github,
}

impl Preset {
    pub const ALL: [Preset; 7] = [
        Preset::Gitlab,
        Preset::Google,
        Preset::Entra,
        Preset::Keycloak,
        Preset::Okta,
        Preset::Auth0,
        Preset::Github,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Preset::Gitlab => "gitlab",
            Preset::Google => "google",
            Preset::Entra => "entra",
            Preset::Keycloak => "keycloak",
            Preset::Okta => "okta",
            Preset::Auth0 => "auth0",
            Preset::Github => "github",
        }
    }

    pub fn parse(name: &str) -> Result<Preset, ConfigError> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| ConfigError::Invalid {
                field: "--preset",
                reason: format!(
                    "{name:?} is not a preset; the presets are {}",
                    Preset::ALL.map(Preset::name).join(", ")
                ),
            })
    }
}

/// What a person gave besides the preset's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresetInputs {
    /// Entra's tenant (default `organizations`).
    pub tenant: Option<String>,
    /// The server's host: GitLab's and GitHub's (defaults gitlab.com and
    /// github.com), Keycloak's, Okta's and Auth0's (required).
    pub domain: Option<String>,
    /// Keycloak's realm (required).
    pub realm: Option<String>,
    /// Auth0's API identifier, sent as `audience`.
    pub audience: Option<String>,
}

/// What a preset writes into the profile, besides `client_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresetProfile {
    pub issuer: String,
    pub scopes: Vec<String>,
    /// Explicit endpoints, for a provider without discovery.
    pub endpoints: BTreeMap<&'static str, String>,
    pub auth_params: BTreeMap<String, String>,
    pub audience: Option<String>,
    pub git_hosts: Vec<String>,
    /// `client_auth`, for a provider that takes a secret one way only.
    pub client_auth: Option<&'static str>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

/// A host as typed: `gitlab.example.com`, `https://gitlab.example.com/`, or with a
/// port. Only the host (and port) is kept; a path or anything odd is refused.
fn host(field: &'static str, given: &str) -> Result<String, ConfigError> {
    let bare = given
        .trim()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let ok = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if ok {
        Ok(bare.to_ascii_lowercase())
    } else {
        Err(ConfigError::Invalid {
            field,
            reason: format!("{given:?} is not a host name (like id.example.com)"),
        })
    }
}

/// One path segment (a tenant or a realm).
fn segment(field: &'static str, given: &str) -> Result<String, ConfigError> {
    let ok = !given.is_empty()
        && given
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(given.to_string())
    } else {
        Err(ConfigError::Invalid {
            field,
            reason: format!("{given:?} must be letters, digits, '.', '-' or '_'"),
        })
    }
}

fn required<'a>(
    field: &'static str,
    given: Option<&'a String>,
    preset: Preset,
) -> Result<&'a String, ConfigError> {
    given.ok_or_else(|| ConfigError::Invalid {
        field,
        reason: format!("the {} preset needs it", preset.name()),
    })
}

/// Refuses an input the preset does not use, rather than dropping it silently.
fn unused(preset: Preset, inputs: &PresetInputs) -> Result<(), ConfigError> {
    let uses = |field: &str| {
        matches!(
            (preset, field),
            (Preset::Entra, "--tenant")
                | (
                    Preset::Gitlab
                        | Preset::Github
                        | Preset::Keycloak
                        | Preset::Okta
                        | Preset::Auth0,
                    "--domain",
                )
                | (Preset::Keycloak, "--realm")
                | (Preset::Auth0, "--audience")
        )
    };
    for (field, given) in [
        ("--tenant", &inputs.tenant),
        ("--domain", &inputs.domain),
        ("--realm", &inputs.realm),
        ("--audience", &inputs.audience),
    ] {
        if given.is_some() && !uses(field) {
            return Err(ConfigError::Invalid {
                field: "--preset",
                reason: format!("the {} preset takes no {field}", preset.name()),
            });
        }
    }
    Ok(())
}

/// The profile `preset` describes for `inputs`.
pub fn fill(preset: Preset, inputs: &PresetInputs) -> Result<PresetProfile, ConfigError> {
    unused(preset, inputs)?;
    let oidc = ["openid", "profile", "email"];
    let with_offline = ["openid", "profile", "email", "offline_access"];
    let mut out = PresetProfile::default();
    match preset {
        Preset::Gitlab => {
            let domain = host("--domain", inputs.domain.as_deref().unwrap_or("gitlab.com"))?;
            out.issuer = format!("https://{domain}");
            // No offline_access at GitLab: every code exchange returns a refresh token.
            out.scopes = strings(&[&oidc[..], &["read_api", "read_repository"]].concat());
            out.git_hosts = vec![domain];
        }
        Preset::Google => {
            out.issuer = "https://accounts.google.com".into();
            out.scopes = strings(&["openid", "email", "profile"]);
            // Google's refresh tokens come with access_type=offline (not the
            // offline_access scope), and again after the first consent only with
            // prompt=consent.
            out.auth_params
                .insert("access_type".into(), "offline".into());
            out.auth_params.insert("prompt".into(), "consent".into());
        }
        Preset::Entra => {
            let tenant = segment(
                "--tenant",
                inputs.tenant.as_deref().unwrap_or("organizations"),
            )?;
            out.issuer = format!("https://login.microsoftonline.com/{tenant}/v2.0");
            out.scopes = strings(&with_offline);
        }
        Preset::Keycloak => {
            let domain = host(
                "--domain",
                required("--domain", inputs.domain.as_ref(), preset)?,
            )?;
            let realm = segment(
                "--realm",
                required("--realm", inputs.realm.as_ref(), preset)?,
            )?;
            out.issuer = format!("https://{domain}/realms/{realm}");
            // Keycloak issues refresh tokens without asking; offline_access would
            // ask for an offline token, which outlives the SSO session.
            out.scopes = strings(&oidc);
        }
        Preset::Okta => {
            let domain = host(
                "--domain",
                required("--domain", inputs.domain.as_ref(), preset)?,
            )?;
            out.issuer = format!("https://{domain}/oauth2/default");
            out.scopes = strings(&with_offline);
        }
        Preset::Auth0 => {
            let domain = host(
                "--domain",
                required("--domain", inputs.domain.as_ref(), preset)?,
            )?;
            // Auth0 writes its issuer with the trailing slash.
            out.issuer = format!("https://{domain}/");
            out.scopes = strings(&with_offline);
            if let Some(a) = &inputs.audience {
                if a.trim().is_empty() {
                    return Err(ConfigError::Invalid {
                        field: "--audience",
                        reason: "it cannot be empty".into(),
                    });
                }
                out.audience = Some(a.trim().to_string());
            }
        }
        Preset::Github => {
            let domain = host("--domain", inputs.domain.as_deref().unwrap_or("github.com"))?;
            // No OIDC discovery at GitHub: every endpoint is named.
            out.issuer = format!("https://{domain}");
            out.endpoints.insert(
                "authorization_endpoint",
                format!("https://{domain}/login/oauth/authorize"),
            );
            out.endpoints.insert(
                "token_endpoint",
                format!("https://{domain}/login/oauth/access_token"),
            );
            out.endpoints.insert(
                "device_authorization_endpoint",
                format!("https://{domain}/login/device/code"),
            );
            let api = if domain == "github.com" {
                "https://api.github.com/user".to_string()
            } else {
                format!("https://{domain}/api/v3/user")
            };
            out.endpoints.insert("userinfo_endpoint", api);
            out.scopes = strings(&["read:user", "user:email"]);
            // GitHub takes a client secret (its browser flow needs one; the
            // person adds it by hand) in the form only, not by HTTP Basic.
            out.client_auth = Some("post");
        }
    }
    Ok(out)
}

/// What `latchkey profile add` asked for.
#[derive(Debug, Clone, Default)]
pub struct AddRequest {
    pub name: String,
    pub client_id: String,
    /// `--issuer`: required without a preset, an override with one.
    pub issuer: Option<String>,
    /// `--scope`: the preset's (or the default) scopes when empty.
    pub scopes: Vec<String>,
    pub make_default: bool,
    pub preset: Option<String>,
    pub inputs: PresetInputs,
}

/// The profile to add: the preset's settings, with `--issuer` and `--scope`
/// winning over them.
pub fn new_profile(req: AddRequest) -> Result<NewProfile, ConfigError> {
    let Some(preset) = req.preset.as_deref() else {
        if req.inputs != PresetInputs::default() {
            return Err(ConfigError::Invalid {
                field: "--preset",
                reason: "--tenant, --domain, --realm and --audience go with a preset".into(),
            });
        }
        let issuer = req.issuer.ok_or(ConfigError::Invalid {
            field: "--issuer",
            reason: "it is required without --preset".into(),
        })?;
        return Ok(NewProfile {
            name: req.name,
            issuer,
            client_id: req.client_id,
            scopes: req.scopes,
            make_default: req.make_default,
            ..NewProfile::default()
        });
    };
    let filled = fill(Preset::parse(preset)?, &req.inputs)?;
    Ok(NewProfile {
        name: req.name,
        issuer: req.issuer.unwrap_or(filled.issuer),
        client_id: req.client_id,
        scopes: if req.scopes.is_empty() {
            filled.scopes
        } else {
            req.scopes
        },
        make_default: req.make_default,
        endpoints: filled.endpoints,
        auth_params: filled.auth_params,
        audience: filled.audience,
        git_hosts: filled.git_hosts,
        client_auth: filled.client_auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(domain: Option<&str>, realm: Option<&str>) -> PresetInputs {
        PresetInputs {
            domain: domain.map(str::to_string),
            realm: realm.map(str::to_string),
            ..PresetInputs::default()
        }
    }

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_presets() {
        for p in Preset::ALL {
            assert_eq!(Preset::parse(p.name()).unwrap(), p);
        }
        let e = Preset::parse("ping").unwrap_err().to_string();
        assert!(
            e.contains("gitlab, google, entra, keycloak, okta, auth0, github"),
            "{e}"
        );
    }

    #[test]
    fn required_inputs_are_asked_for_and_unused_ones_refused() {
        assert!(fill(Preset::Keycloak, &given(Some("id.example.com"), None)).is_err());
        assert!(fill(Preset::Okta, &PresetInputs::default()).is_err());
        assert!(fill(Preset::Auth0, &PresetInputs::default()).is_err());
        let e = fill(Preset::Google, &given(Some("x.example"), None)).unwrap_err();
        assert!(e.to_string().contains("takes no --domain"), "{e}");
        assert!(
            fill(
                Preset::Gitlab,
                &given(Some("gitlab.example.com/evil"), None)
            )
            .is_err()
        );
        assert!(
            fill(
                Preset::Keycloak,
                &given(Some("id.example.com"), Some("a/b"))
            )
            .is_err()
        );
    }

    /// The profile as config.toml holds it after `profile add --preset`.
    fn written(req: AddRequest) -> super::super::ProfileConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let name = req.name.clone();
        let mut ed = super::super::ConfigEditor::open(&path).unwrap();
        ed.add(&new_profile(req).unwrap()).unwrap();
        ed.save().unwrap();
        let config = super::super::Config::load(&path).unwrap();
        config.profiles.get(&name).cloned().unwrap()
    }

    fn request(preset: &str, inputs: PresetInputs) -> AddRequest {
        AddRequest {
            name: "p".into(),
            client_id: "my-client".into(),
            preset: Some(preset.into()),
            inputs,
            ..AddRequest::default()
        }
    }

    #[test]
    fn every_preset_writes_a_profile_that_loads() {
        let p = written(request("gitlab", PresetInputs::default()));
        assert_eq!(p.issuer, "https://gitlab.com");
        assert_eq!(p.client_id, "my-client");
        assert_eq!(
            p.scopes,
            ["openid", "profile", "email", "read_api", "read_repository"]
        );
        assert_eq!(p.git_hosts, ["gitlab.com"]);
        assert_eq!(p.token_endpoint, None, "discovery does the rest");

        let p = written(request("google", PresetInputs::default()));
        assert_eq!(p.issuer, "https://accounts.google.com");
        assert_eq!(p.scopes, ["openid", "email", "profile"]);
        assert_eq!(
            p.extra_auth_params.get("access_type").map(String::as_str),
            Some("offline")
        );
        assert_eq!(
            p.extra_auth_params.get("prompt").map(String::as_str),
            Some("consent")
        );
        assert_eq!(p.client_secret, None, "a preset never writes a secret");

        let p = written(request("entra", PresetInputs::default()));
        assert_eq!(
            p.issuer,
            "https://login.microsoftonline.com/organizations/v2.0"
        );
        assert_eq!(p.scopes, ["openid", "profile", "email", "offline_access"]);
        let tenant = PresetInputs {
            tenant: Some("contoso.onmicrosoft.com".into()),
            ..PresetInputs::default()
        };
        let p = written(request("entra", tenant));
        assert_eq!(
            p.issuer,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
        );

        let p = written(request(
            "keycloak",
            given(Some("sso.example.com"), Some("dev")),
        ));
        assert_eq!(p.issuer, "https://sso.example.com/realms/dev");
        assert_eq!(p.scopes, ["openid", "profile", "email"]);

        let p = written(request("okta", given(Some("dev-1.okta.com"), None)));
        assert_eq!(p.issuer, "https://dev-1.okta.com/oauth2/default");
        assert_eq!(p.scopes, ["openid", "profile", "email", "offline_access"]);

        let auth0 = PresetInputs {
            audience: Some("https://api.example.com".into()),
            ..given(Some("tenant.eu.auth0.com"), None)
        };
        let p = written(request("auth0", auth0));
        assert_eq!(p.issuer, "https://tenant.eu.auth0.com/");
        assert_eq!(p.audience.as_deref(), Some("https://api.example.com"));

        let p = written(request("github", PresetInputs::default()));
        assert_eq!(p.issuer, "https://github.com");
        assert_eq!(p.scopes, ["read:user", "user:email"]);
        assert_eq!(
            p.token_endpoint.as_deref(),
            Some("https://github.com/login/oauth/access_token")
        );
        assert_eq!(
            p.authorization_endpoint.as_deref(),
            Some("https://github.com/login/oauth/authorize")
        );
        assert_eq!(
            p.device_authorization_endpoint.as_deref(),
            Some("https://github.com/login/device/code")
        );
        assert_eq!(
            p.userinfo_endpoint.as_deref(),
            Some("https://api.github.com/user")
        );
        assert_eq!(p.revocation_endpoint, None);
        assert_eq!(p.client_auth, Some(super::super::ClientAuthMethod::Post));
        let ghes = written(request("github", given(Some("ghe.example.com"), None)));
        assert_eq!(
            ghes.userinfo_endpoint.as_deref(),
            Some("https://ghe.example.com/api/v3/user")
        );
    }

    #[test]
    fn explicit_issuer_and_scopes_win() {
        let mut req = request("okta", given(Some("dev-1.okta.com"), None));
        req.issuer = Some("https://dev-1.okta.com".into());
        req.scopes = vec!["openid".into(), "offline_access".into()];
        let p = written(req);
        assert_eq!(p.issuer, "https://dev-1.okta.com");
        assert_eq!(p.scopes, ["openid", "offline_access"]);
        // Without a preset the issuer is required, and preset inputs are refused.
        let plain = AddRequest {
            name: "p".into(),
            client_id: "c".into(),
            ..AddRequest::default()
        };
        assert!(new_profile(plain.clone()).is_err());
        let stray = AddRequest {
            issuer: Some("https://id.example.com".into()),
            inputs: given(Some("x.example"), None),
            ..plain
        };
        assert!(new_profile(stray).is_err());
    }

    #[test]
    fn hosts_are_taken_as_typed_or_as_urls() {
        let p = fill(
            Preset::Gitlab,
            &given(Some("https://Git.Example.com/"), None),
        )
        .unwrap();
        assert_eq!(p.issuer, "https://git.example.com");
        assert_eq!(p.git_hosts, ["git.example.com"]);
    }
}
