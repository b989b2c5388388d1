//! The `promsnmp` binary: parse the command line and the configuration,
//! start logging, run, and map the outcome to an exit code.

use std::process::ExitCode;

use promsnmp::cli::Command;
use promsnmp::config::Config;

fn main() -> ExitCode {
    let command = match promsnmp::cli::parse(std::env::args_os()) {
        Ok(c) => c,
        // Help and version (exit 0, stdout) or a usage error (exit 2).
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("promsnmp: {e}");
            return ExitCode::from(2);
        }
    };
    promsnmp::logging::init(config.log_format, &config.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fatal(&format!("cannot start the async runtime: {e}"), 1),
    };
    match command {
        Command::Serve => {}
        Command::Inventory(inventory) => {
            return match runtime.block_on(promsnmp::backup::run(inventory, &config)) {
                Ok(summary) => {
                    eprintln!("promsnmp inventory: {summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("promsnmp inventory: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Healthcheck => {
            return match runtime.block_on(promsnmp::http::probe_health(
                config.bind_address,
                config.server_port,
                config.web_config_file.as_deref(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("promsnmp healthcheck: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    match runtime.block_on(promsnmp::app::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        // A bad module file is bad configuration, like a bad variable.
        Err(e @ promsnmp::app::AppError::Modules(_)) => fatal(&e.to_string(), 2),
        Err(e) => fatal(&e.to_string(), 1),
    }
}

/// Reports a fatal error once: in the log, or on standard error when the
/// log filter hides errors.
fn fatal(message: &str, code: u8) -> ExitCode {
    if tracing::enabled!(tracing::Level::ERROR) {
        tracing::error!("promsnmp: {message}");
    } else {
        eprintln!("promsnmp: {message}");
    }
    ExitCode::from(code)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
