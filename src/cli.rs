//! The command line: `promsnmp [serve]`, `promsnmp healthcheck`, `--help`
//! (every subcommand and environment variable, with the defaults in force)
//! and `--version`. Everything else is configured by environment variables
//! ([`crate::config`]).

use std::ffi::OsString;

use clap::{Arg, ArgAction};

use crate::config::{Config, VARIABLES};

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the exporter (also with no subcommand).
    Serve,
    /// Ask the local replica's readiness; exit 0 when it is ready.
    Healthcheck,
}

/// Parses the arguments (the program name first). `Err` carries help,
/// version or a usage error: print it and exit with its code (0 or 2).
pub fn parse<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    Ok(match matches.subcommand_name() {
        None | Some("serve") => Command::Serve,
        Some("healthcheck") => Command::Healthcheck,
        Some(other) => unreachable!("subcommand {other} is declared but not handled"),
    })
}

fn command() -> clap::Command {
    clap::Command::new("promsnmp")
        .version(version_text())
        .about("Polls network devices over SNMP (v1, v2c, v3) and serves their metrics to Prometheus.")
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version, git commit and compiler"),
        )
        .subcommand(clap::Command::new("serve").about("Run the exporter (the default)"))
        .subcommand(clap::Command::new("healthcheck").about(
            "Ask the local replica's readiness (PROMSNMP_BIND_ADDRESS, SERVER_PORT, TLS from PROMSNMP_WEB_CONFIG_FILE); exit 0 when ready",
        ))
        .after_help(environment_help())
}

/// `--version`'s text after the program name.
fn version_text() -> String {
    format!(
        "{} (commit {}, rustc {})",
        crate::identity::VERSION,
        crate::identity::COMMIT,
        crate::identity::RUSTC_VERSION
    )
}

/// Every environment variable, what it sets, and its default here.
fn environment_help() -> String {
    let defaults = Config::from_lookup(|_| None)
        .map(|c| c.settings())
        .unwrap_or_default();
    let mut text = String::from("Environment variables (default in brackets):\n");
    for (name, help) in VARIABLES {
        let default = defaults
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty());
        match default {
            Some(v) => text.push_str(&format!("  {name}\n      {help} [{v}]\n")),
            None => text.push_str(&format!("  {name}\n      {help}\n")),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_and_default() {
        assert_eq!(parse(["promsnmp"]).unwrap(), Command::Serve);
        assert_eq!(parse(["promsnmp", "serve"]).unwrap(), Command::Serve);
        assert_eq!(
            parse(["promsnmp", "healthcheck"]).unwrap(),
            Command::Healthcheck
        );
        let unknown = parse(["promsnmp", "bogus"]).unwrap_err();
        assert_eq!(unknown.exit_code(), 2);
    }

    #[test]
    fn help_names_every_subcommand_and_variable() {
        let help = parse(["promsnmp", "--help"]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
        let text = help.to_string();
        for word in [
            "serve",
            "healthcheck",
            "--version",
            "[8080]",
            "[0 0 2 * * *]",
        ] {
            assert!(text.contains(word), "{word} missing:\n{text}");
        }
        for (name, _) in VARIABLES {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }

    #[test]
    fn version_names_the_commit() {
        for flag in ["--version", "-V"] {
            let v = parse(["promsnmp", flag]).unwrap_err();
            assert_eq!(v.exit_code(), 0);
            let text = v.to_string();
            assert!(
                text.contains(crate::identity::VERSION) && text.contains(crate::identity::COMMIT),
                "{text}"
            );
        }
    }
}
