//! The `promsnmp` binary: parse configuration, start tracing, run, and map the
//! outcome to an exit code. `promsnmp healthcheck` asks the local replica.

use std::process::ExitCode;

use promsnmp::config::Config;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tracing_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_filter)
        .with_writer(std::io::stderr)
        .init();

    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("promsnmp: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("promsnmp: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.first().map(String::as_str) {
        None | Some("serve") => {}
        Some("healthcheck") => {
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
        Some(other) => {
            eprintln!("promsnmp: unknown command `{other}` (expected no argument, `serve` or `healthcheck`)");
            return ExitCode::from(2);
        }
    }
    match runtime.block_on(promsnmp::app::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        // A bad module file is bad configuration, like a bad variable.
        Err(e @ promsnmp::app::AppError::Modules(_)) => {
            tracing::error!("{e}");
            eprintln!("promsnmp: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("promsnmp: {e}");
            ExitCode::FAILURE
        }
    }
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
