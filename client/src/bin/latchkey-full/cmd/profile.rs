//! `latchkey profile add|list|remove|default`.

use latchkey::Error;
use latchkey_daemon::Engine;
use latchkey_daemon::config::ConfigEditor;
use latchkey_daemon::config::presets::{self, AddRequest, PresetInputs};
use serde_json::json;

use super::Ctx;
use crate::cli::ProfileCommand;
use crate::render::Output;

pub fn run(ctx: &Ctx, cmd: ProfileCommand) -> Result<Output, Error> {
    let path = &ctx.paths.config_file;
    match cmd {
        ProfileCommand::Add {
            name,
            issuer,
            client_id,
            scopes,
            default,
            preset,
            tenant,
            domain,
            realm,
            audience,
        } => {
            let new = presets::new_profile(AddRequest {
                name: name.clone(),
                client_id,
                issuer,
                scopes,
                make_default: default,
                preset,
                inputs: PresetInputs {
                    tenant,
                    domain,
                    realm,
                    audience,
                },
            })?;
            let mut editor = ConfigEditor::open(path)?;
            editor.add(&new)?;
            let config = editor.save()?;
            let summary = config
                .summary()
                .profiles
                .into_iter()
                .find(|p| p.name == name)
                .ok_or_else(|| Error::usage("the new profile did not survive validation", None))?;
            let mut text = format!(
                "Added profile {} (issuer {}, client {}).\n",
                summary.name, summary.issuer, summary.client_id
            );
            if summary.default {
                text.push_str("It is the default profile.\n");
            }
            text.push_str(&format!(
                "Next: latchkey login --profile {}\n",
                summary.name
            ));
            Ok(Output {
                exit: 0,
                text,
                json: serde_json::to_value(&summary).map_err(internal)?,
            })
        }
        ProfileCommand::List => {
            let list = ctx.config()?.summary();
            let mut text = String::new();
            if list.profiles.is_empty() {
                text.push_str(
                    "No profiles yet. Add one with: latchkey profile add NAME --issuer URL --client-id ID\n",
                );
            }
            for p in &list.profiles {
                let mark = if p.default { "*" } else { " " };
                text.push_str(&format!(
                    "{mark} {}\t{}\tclient {}\n",
                    p.name, p.issuer, p.client_id
                ));
            }
            Ok(Output {
                exit: 0,
                text,
                json: serde_json::to_value(&list).map_err(internal)?,
            })
        }
        ProfileCommand::Remove { name } => {
            let mut editor = ConfigEditor::open(path)?;
            // Check the name before touching the session, so a typo deletes nothing.
            editor.remove(&name)?;
            // The session goes first: if its deletion fails, the profile stays
            // configured and the command can simply be run again.
            let config = ctx.config()?;
            let engine = Engine::new(ctx.paths.clone(), config);
            let session_deleted = engine.delete_session(&name)?;
            editor.save()?;
            let text = if session_deleted {
                format!("Removed profile {name} and deleted its local session.\n")
            } else {
                format!("Removed profile {name}.\n")
            };
            Ok(Output {
                exit: 0,
                text,
                json: json!({"removed": name, "session_deleted": session_deleted}),
            })
        }
        ProfileCommand::Default { name: None } => {
            let config = ctx.config()?;
            let text = match &config.default_profile {
                Some(d) => format!("{d}\n"),
                None => "No default profile is set.\n".to_string(),
            };
            Ok(Output {
                exit: 0,
                text,
                json: json!({"default_profile": config.default_profile}),
            })
        }
        ProfileCommand::Default { name: Some(name) } => {
            let mut editor = ConfigEditor::open(path)?;
            editor.set_default(&name)?;
            editor.save()?;
            Ok(Output {
                exit: 0,
                text: format!("{name} is now the default profile.\n"),
                json: json!({"default_profile": name}),
            })
        }
    }
}

fn internal(e: serde_json::Error) -> Error {
    Error::Output(std::io::Error::other(e))
}
