//! The command line: `promsnmp [serve]`, `promsnmp healthcheck`,
//! `promsnmp inventory export|import|decrypt|encrypt`, `--help` (every
//! subcommand and environment variable, with the defaults in force) and
//! `--version`. Everything else is configured by environment variables
//! ([`crate::config`]).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction};

use crate::config::{Config, VARIABLES};

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the exporter (also with no subcommand).
    Serve,
    /// Ask the local replica's readiness; exit 0 when it is ready.
    Healthcheck,
    /// Back up, inspect or restore the inventory.
    Inventory(InventoryCommand),
}

/// `promsnmp inventory …`: see [`crate::backup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryCommand {
    /// Fetch the inventory from a running replica into a file, encrypted
    /// with `PROM_ENCRYPT_KEY` unless `plaintext`.
    Export {
        server: Server,
        output: PathBuf,
        plaintext: bool,
    },
    /// Replace a running replica's (or fleet's) inventory with a file's,
    /// encrypted or plaintext; with `if_match`, only if the inventory is
    /// still at that version.
    Import {
        server: Server,
        input: PathBuf,
        if_match: Option<String>,
    },
    /// Print (or write) an inventory file's JSON.
    Decrypt {
        input: PathBuf,
        output: Option<PathBuf>,
    },
    /// Encrypt a JSON inventory into the file format.
    Encrypt { input: PathBuf, output: PathBuf },
}

/// Where a running replica answers, and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Server {
    /// `--url`; `None`: this host's replica (PROMSNMP_BIND_ADDRESS, SERVER_PORT).
    pub url: Option<String>,
    pub user: Option<String>,
    /// `--password-file`; else `PROMSNMP_PASSWORD`.
    pub password_file: Option<PathBuf>,
    /// `--cacert`: CA certificates for https.
    pub ca_file: Option<PathBuf>,
}

/// Parses the arguments (the program name first). `Err` carries help,
/// version or a usage error: print it and exit with its code (0 or 2).
pub fn parse<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    Ok(match matches.subcommand() {
        None | Some(("serve", _)) => Command::Serve,
        Some(("healthcheck", _)) => Command::Healthcheck,
        Some(("inventory", inventory)) => Command::Inventory(inventory_command(inventory)),
        Some((other, _)) => unreachable!("subcommand {other} is declared but not handled"),
    })
}

fn inventory_command(matches: &clap::ArgMatches) -> InventoryCommand {
    let path = |m: &clap::ArgMatches, id: &str| m.get_one::<String>(id).map(PathBuf::from);
    let server = |m: &clap::ArgMatches| Server {
        url: m.get_one::<String>("url").cloned(),
        user: m.get_one::<String>("user").cloned(),
        password_file: path(m, "password-file"),
        ca_file: path(m, "cacert"),
    };
    match matches.subcommand() {
        Some(("export", m)) => InventoryCommand::Export {
            server: server(m),
            output: path(m, "output").expect("required"),
            plaintext: m.get_flag("plaintext"),
        },
        Some(("import", m)) => InventoryCommand::Import {
            server: server(m),
            input: path(m, "file").expect("required"),
            if_match: m.get_one::<String>("if-match").cloned(),
        },
        Some(("decrypt", m)) => InventoryCommand::Decrypt {
            input: path(m, "file").expect("required"),
            output: path(m, "output"),
        },
        Some(("encrypt", m)) => InventoryCommand::Encrypt {
            input: path(m, "file").expect("required"),
            output: path(m, "output").expect("required"),
        },
        other => unreachable!("inventory subcommand {other:?} is declared but not handled"),
    }
}

/// The options of the subcommands that ask a running replica.
fn server_args(command: clap::Command) -> clap::Command {
    command
        .arg(Arg::new("url").long("url").value_name("URL").help(
            "The replica or load balancer, http(s)://host:port [default: this host's replica at PROMSNMP_BIND_ADDRESS:SERVER_PORT]",
        ))
        .arg(
            Arg::new("user")
                .long("user")
                .value_name("NAME")
                .help("User of the web configuration (an admin); the password comes from --password-file or PROMSNMP_PASSWORD"),
        )
        .arg(
            Arg::new("password-file")
                .long("password-file")
                .value_name("FILE")
                .help("File holding the user's password (one line)"),
        )
        .arg(
            Arg::new("cacert")
                .long("cacert")
                .value_name("FILE")
                .help("CA certificates (PEM) that sign the server's certificate, for https"),
        )
}

fn inventory_subcommand() -> clap::Command {
    let file = || Arg::new("file").value_name("FILE").required(true);
    let output = |help: &'static str| {
        Arg::new("output")
            .short('o')
            .long("output")
            .value_name("FILE")
            .help(help)
    };
    clap::Command::new("inventory")
        .about("Back up, inspect and restore the inventory (the key is PROM_ENCRYPT_KEY)")
        .subcommand_required(true)
        .subcommand(server_args(
            clap::Command::new("export")
                .about("Fetch the inventory from a running replica into a file, encrypted like the inventory file")
                .arg(output("The backup file to write (mode 0600)").required(true))
                .arg(
                    Arg::new("plaintext")
                        .long("plaintext")
                        .action(ArgAction::SetTrue)
                        .help("Write JSON instead of the encrypted envelope"),
                ),
        ))
        .subcommand(server_args(
            clap::Command::new("import")
                .about("Replace a running replica's inventory (the whole fleet's) with a backup file, encrypted or JSON")
                .arg(file().help("The backup file"))
                .arg(
                    Arg::new("if-match")
                        .long("if-match")
                        .value_name("ETAG")
                        .help("Only if the inventory is still at this version (its ETag, as an export prints it)"),
                ),
        ))
        .subcommand(
            clap::Command::new("decrypt")
                .about("Print an inventory file's JSON (or write it with --output)")
                .arg(file().help("The inventory file or backup"))
                .arg(output(
                    "Write the JSON here (mode 0600) instead of standard output",
                )),
        )
        .subcommand(
            clap::Command::new("encrypt")
                .about("Encrypt a JSON inventory into the inventory file format (checked first)")
                .arg(file().help("The JSON inventory"))
                .arg(output("The encrypted file to write (mode 0600)").required(true)),
        )
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
        .subcommand(inventory_subcommand())
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
    fn inventory_subcommands() {
        assert_eq!(
            parse([
                "promsnmp",
                "inventory",
                "export",
                "-o",
                "b.json",
                "--url",
                "https://h:8443",
                "--user",
                "ops",
                "--cacert",
                "ca.pem"
            ])
            .unwrap(),
            Command::Inventory(InventoryCommand::Export {
                server: Server {
                    url: Some("https://h:8443".into()),
                    user: Some("ops".into()),
                    password_file: None,
                    ca_file: Some("ca.pem".into()),
                },
                output: "b.json".into(),
                plaintext: false,
            })
        );
        assert_eq!(
            parse([
                "promsnmp",
                "inventory",
                "import",
                "b.json",
                "--if-match",
                "\"v3\""
            ])
            .unwrap(),
            Command::Inventory(InventoryCommand::Import {
                server: Server::default(),
                input: "b.json".into(),
                if_match: Some("\"v3\"".into()),
            })
        );
        assert_eq!(
            parse(["promsnmp", "inventory", "decrypt", "f"]).unwrap(),
            Command::Inventory(InventoryCommand::Decrypt {
                input: "f".into(),
                output: None
            })
        );
        for missing in [
            &["promsnmp", "inventory"][..],
            &["promsnmp", "inventory", "export"],
            &["promsnmp", "inventory", "encrypt", "plain.json"],
            &["promsnmp", "inventory", "decrypt"],
        ] {
            assert_eq!(parse(missing).unwrap_err().exit_code(), 2, "{missing:?}");
        }
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
