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
    let token = args.auth_token_file.as_deref().map(token).transpose()?;
    let (environments, default) = settings::all_environments(global).map_err(|e| ExecError::Usage(e.0))?;
    for (name, options) in &environments {
        if let Err(why) = options {
            eprintln!("warning: environment `{name}` cannot be read and will answer 503: {why}");
        }
    }
    let names: Vec<String> = environments.iter().map(|(name, _)| name.clone()).collect();
    // Two workers: requests keep flowing while one of them waits on a slow read.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ExecError::Usage(format!("cannot start the async runtime: {e}")))?;
    // Each fleet's members, listed once at start (a command or a query may list them).
    let mut fleets = Vec::new();
    for name in settings::fleet_names(global).map_err(|e| ExecError::Usage(e.0))? {
        let listed = async {
            let fleet = settings::fleet(global, &name).map_err(|e| e.0)?;
            let found = crate::fleet::listed(&fleet).await.map_err(|e| e.to_string())?;
            let members = fleet.members(global, found).map_err(|e| e.0)?;
            Ok::<_, String>((members, fleet.rollout.parallel))
        };
        // A command or catalog that hangs must not keep every environment down.
        let listed = async {
            tokio::time::timeout(std::time::Duration::from_secs(30), listed)
                .await
                .unwrap_or_else(|_| Err("listing its members took over 30 s".to_owned()))
        };
        let (members, parallel) = match runtime.block_on(listed) {
            Ok((members, parallel)) => (Ok(members), parallel),
            Err(why) => {
                eprintln!("warning: fleet `{name}` cannot be listed and its page will say so: {why}");
                (Err(why), 1)
            }
        };
        fleets.push(airlock_http::Fleet { name, members, parallel });
    }
    let config = airlock_http::Config {
        environments: environments
            .into_iter()
            .map(|(name, options)| airlock_http::Environment { name, options })
            .collect(),
        default,
        max_age,
        read_timeout,
        token,
        fleets,
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ExecError::Usage(format!("--listen {listen}: cannot listen there: {e}")))?;
        let bound = listener.local_addr().map_err(|e| ExecError::Usage(format!("--listen {listen}: {e}")))?;
        eprintln!("airlock serve: listening on http://{bound} (environments: {})", names.join(", "));
        eprintln!("  the page: http://{bound}/ · the gate: http://{bound}/gate?require=latest");
        airlock_http::serve(listener, config, stopped())
            .await
            .map_err(|e| ExecError::Usage(format!("the HTTP server stopped: {e}")))
    })
}

/// The token in `path`: its one line, which must not be empty.
fn token(path: &std::path::Path) -> Result<String, ExecError> {
    let said = |why: String| ExecError::Usage(format!("--auth-token-file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| said(format!("cannot read it: {e}")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(said("it is empty; put the token on its first line".to_owned()));
    }
    if token.lines().count() > 1 {
        return Err(said("it holds more than one line; put the token alone on its first line".to_owned()));
    }
    Ok(token.to_owned())
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
