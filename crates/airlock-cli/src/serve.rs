//! `airlock serve`: flags and airlock.toml → the HTTP server's environments,
//! then run it until SIGINT or SIGTERM.

use std::net::SocketAddr;

use airlock_core::migration::parse_duration;
use airlock_exec::ExecError;
use anstream::eprintln;

use crate::args::{Global, ServeArgs};
use crate::settings;

fn duration(text: &str, flag: &str) -> Result<std::time::Duration, ExecError> {
    parse_duration(text).map_err(|e| ExecError::Usage(format!("{flag} {text}: {e}")))
}

/// Runs the server; returns when it was told to stop.
pub fn run(global: &Global, args: &ServeArgs) -> Result<(), ExecError> {
    let listen: SocketAddr = args.listen.parse().map_err(|e| {
        ExecError::Usage(format!("--listen {}: {e} (expected an address like 127.0.0.1:8080)", args.listen))
    })?;
    let max_age = duration(&args.max_age, "--max-age")?;
    let read_timeout = duration(&args.read_timeout, "--read-timeout")?;
    if read_timeout.is_zero() {
        return Err(ExecError::Usage("--read-timeout must be more than 0".to_owned()));
    }
    let (environments, default) = settings::all_environments(global).map_err(|e| ExecError::Usage(e.0))?;
    for (name, options) in &environments {
        if let Err(why) = options {
            eprintln!("warning: environment `{name}` cannot be read and will answer 503: {why}");
        }
    }
    let names: Vec<String> = environments.iter().map(|(name, _)| name.clone()).collect();
    let config = airlock_http::Config {
        environments: environments
            .into_iter()
            .map(|(name, options)| airlock_http::Environment { name, options })
            .collect(),
        default,
        max_age,
        read_timeout,
    };
    // Two workers: requests keep flowing while one of them waits on a slow read.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ExecError::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ExecError::Usage(format!("--listen {listen}: cannot listen there: {e}")))?;
        let bound = listener.local_addr().map_err(|e| ExecError::Usage(format!("--listen {listen}: {e}")))?;
        eprintln!("airlock serve: listening on http://{bound} (environments: {})", names.join(", "));
        airlock_http::serve(listener, config, stopped())
            .await
            .map_err(|e| ExecError::Usage(format!("the HTTP server stopped: {e}")))
    })
}

/// Completes at SIGINT or SIGTERM.
async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
