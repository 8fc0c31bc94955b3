//! `prism.toml`: the settings of `prism serve` kept in a file, as an operator expects of a
//! server. Every flag of `serve` (and the global `--data` and `--log-format`) may be set three
//! ways; the later wins: the file, an environment variable `PRISM_<FLAG>` (`PRISM_IDLE_MINUTES`),
//! the command line.
//!
//! The file's keys are the flags' long names (`idle-minutes = 30`, `trusted-proxy =
//! ["10.0.0.1"]`, `single-session = true`). A key is given to clap as its flag only when
//! neither the command line nor the environment set that flag, so that the file is the
//! weakest of the three.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Arg, ArgAction, Command};

/// The environment variable of a flag: `PRISM_` and its long name in capitals.
pub fn env_name(long: &str) -> String {
    format!("PRISM_{}", long.to_uppercase().replace('-', "_"))
}

/// `serve`'s flags (and the global ones) with an environment variable each, and the repeated
/// ones taking a comma-separated list there.
pub fn with_environment(cli: Command) -> Command {
    let name = |a: &Arg| a.get_long().map(env_name);
    cli.mut_args(|a| match (name(&a), a.get_env()) {
        (Some(env), None) if a.is_global_set() => a.env(env),
        _ => a,
    })
    .mut_subcommand("serve", |serve| {
        serve.mut_args(|a| {
            let Some(env) = name(&a) else { return a };
            let a = match a.get_action() {
                ArgAction::Append => a.value_delimiter(','),
                _ => a,
            };
            match a.get_env() {
                Some(_) => a,
                None => a.env(env),
            }
        })
    })
}

/// The config file named by `--config FILE` (or `PRISM_CONFIG`), or `prism.toml` in the
/// current folder when there is one.
pub fn config_file(args: &[OsString]) -> Option<PathBuf> {
    let named = args.iter().enumerate().find_map(|(i, a)| {
        let text = a.to_str()?;
        text.strip_prefix("--config=")
            .map(PathBuf::from)
            .or_else(|| (text == "--config").then(|| args.get(i + 1).map(PathBuf::from))?)
    });
    named
        .or_else(|| std::env::var_os("PRISM_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let default = PathBuf::from("prism.toml");
            default.is_file().then_some(default)
        })
}

/// The command line with the config file's settings added for each flag that neither the
/// command line nor the environment sets. A key that is no flag, or a value of the wrong kind,
/// is refused by name.
pub fn args_with_file(args: Vec<OsString>, file: &Path, cli: &Command) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let settings = settings(file, &text, cli)?;
    // What the command line and the environment set, as clap reads them.
    let Ok(matches) = cli.clone().try_get_matches_from(&args) else {
        // A command line clap refuses: let it say why, unchanged.
        return Ok(args);
    };
    let serving = matches.subcommand_matches("serve");
    let unset = |m: Option<&clap::ArgMatches>, id: &str| {
        m.is_none_or(|m| {
            matches!(
                m.value_source(id),
                None | Some(clap::parser::ValueSource::DefaultValue)
            )
        })
    };
    let mut global = Vec::new();
    let mut local = Vec::new();
    for s in settings {
        let (into, set_here) = match s.global {
            true => (&mut global, unset(Some(&matches), &s.id)),
            false if serving.is_some() => (&mut local, unset(serving, &s.id)),
            false => continue,
        };
        if !set_here {
            continue;
        }
        match s.switch {
            true if s.values == ["true"] => into.push(format!("--{}", s.long)),
            true => {}
            false => {
                for v in s.values {
                    into.push(format!("--{}={v}", s.long));
                }
            }
        }
    }
    let mut out = args;
    let tail = out.split_off(1.min(out.len()));
    out.extend(global.into_iter().map(OsString::from));
    out.extend(tail);
    out.extend(local.into_iter().map(OsString::from));
    Ok(out)
}

/// One key of the file: the flag it sets and its values.
#[derive(Debug, PartialEq)]
pub struct Setting {
    /// The flag's long name, as the key is written.
    pub long: String,
    /// clap's id of the flag.
    pub id: String,
    /// A global flag (`--data`), or one of `serve`'s.
    pub global: bool,
    /// A switch (`--single-session`): present or not.
    pub switch: bool,
    /// Its values as text; several for a repeated flag.
    pub values: Vec<String>,
}

/// The file's keys as the flags they set.
pub fn settings(file: &Path, text: &str, cli: &Command) -> Result<Vec<Setting>> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(":{}", text[..s.start].lines().count().max(1)))
            .unwrap_or_default();
        anyhow::anyhow!("{}{at}: {}", file.display(), e.message())
    })?;
    let flags: Vec<&Arg> = cli
        .get_arguments()
        .filter(|a| a.is_global_set())
        .chain(
            cli.find_subcommand("serve")
                .into_iter()
                .flat_map(|s| s.get_arguments()),
        )
        .filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "config"))
        .collect();
    let names: Vec<&str> = flags.iter().filter_map(|a| a.get_long()).collect();
    let mut out = Vec::new();
    for (key, value) in &table {
        let Some(flag) = flags.iter().find(|a| a.get_long() == Some(key.as_str())) else {
            bail!(
                "{}: `{key}` is not a setting of `prism serve`{} (the settings are its flags: {})",
                file.display(),
                prism_model::did_you_mean(key, names.iter().copied()),
                names.join(", ")
            );
        };
        let list = matches!(flag.get_action(), ArgAction::Append);
        let values = match value {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Integer(n) => vec![n.to_string()],
            toml::Value::Float(x) => vec![x.to_string()],
            toml::Value::Boolean(b) => vec![b.to_string()],
            toml::Value::Array(items) if list => items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => bail!(
                        "{}: `{key}`: {} is not text",
                        file.display(),
                        other.type_str()
                    ),
                })
                .collect::<Result<Vec<_>>>()?,
            other => bail!(
                "{}: `{key}` takes {}, not {}",
                file.display(),
                if list { "a list of text" } else { "one value" },
                other.type_str()
            ),
        };
        let switch = matches!(flag.get_action(), ArgAction::SetTrue);
        if switch && values != ["true"] && values != ["false"] {
            bail!("{}: `{key}` is true or false", file.display());
        }
        out.push(Setting {
            long: key.clone(),
            id: flag.get_id().to_string(),
            global: flag.is_global_set(),
            switch,
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Command {
        Command::new("prism")
            .arg(Arg::new("data").long("data").global(true))
            .subcommand(Command::new("query"))
            .subcommand(
                Command::new("serve")
                    .arg(Arg::new("idle_minutes").long("idle-minutes"))
                    .arg(
                        Arg::new("trusted_proxies")
                            .long("trusted-proxy")
                            .action(ArgAction::Append),
                    )
                    .arg(
                        Arg::new("single_session")
                            .long("single-session")
                            .action(ArgAction::SetTrue),
                    ),
            )
    }

    #[test]
    fn the_file_is_weaker_than_the_environment_and_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prism.toml");
        std::fs::write(
            &file,
            "data = \"/srv/prism\"\nidle-minutes = 30\ntrusted-proxy = [\"10.0.0.1\", \"10.0.0.2\"]\nsingle-session = true\n",
        )
        .unwrap();
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let got = args_with_file(args(&["prism", "serve"]), &file, &cli()).unwrap();
        assert_eq!(
            got,
            args(&[
                "prism",
                "--data=/srv/prism",
                "serve",
                "--idle-minutes=30",
                "--single-session",
                "--trusted-proxy=10.0.0.1",
                "--trusted-proxy=10.0.0.2"
            ])
        );
        // Set on the command line: the file's value is not added.
        let got = args_with_file(
            args(&["prism", "--data", "here", "serve", "--idle-minutes", "5"]),
            &file,
            &cli(),
        )
        .unwrap();
        assert_eq!(
            got,
            args(&[
                "prism",
                "--data",
                "here",
                "serve",
                "--idle-minutes",
                "5",
                "--single-session",
                "--trusted-proxy=10.0.0.1",
                "--trusted-proxy=10.0.0.2"
            ])
        );
        // Another command takes the global settings only.
        let got = args_with_file(args(&["prism", "query"]), &file, &cli()).unwrap();
        assert_eq!(got, args(&["prism", "--data=/srv/prism", "query"]));
    }

    #[test]
    fn a_bad_key_or_value_is_refused_by_name() {
        let e = settings(Path::new("prism.toml"), "idle-minute = 30\n", &cli())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("prism.toml: `idle-minute` is not a setting of `prism serve`")
                && e.contains("did you mean `idle-minutes`"),
            "{e}"
        );
        let e = settings(Path::new("prism.toml"), "single-session = 1\n", &cli())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`single-session` is true or false"), "{e}");
        let e = settings(Path::new("prism.toml"), "idle-minutes = [1]\n", &cli())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`idle-minutes` takes one value, not array"),
            "{e}"
        );
        let e = settings(Path::new("prism.toml"), "\n\nidle-minutes = \n", &cli())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("prism.toml:3: "), "{e}");
    }
}
