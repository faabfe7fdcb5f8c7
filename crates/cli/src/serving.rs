//! What `dev` and `serve` share: the runtime's settings, finding Deno early, and running the
//! router until Ctrl-C or SIGTERM, then draining.

use homebase_runtime::{Runtime, RuntimeConfig};
use homebase_server::config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::output;

/// The runtime's limits from `config`. `inherit_env`: whether functions see Homebase's own
/// environment (dev: that is where local secrets live; serve: never).
pub fn runtime_config(config: &Config, inherit_env: bool) -> RuntimeConfig {
    RuntimeConfig {
        function_timeout: config.function_timeout,
        idle_timeout: config.idle_timeout,
        boot_timeout: config.boot_timeout,
        inherit_env,
        net_allow: config.net_allow(),
        check_timeout: config.deploy_check_timeout,
        max_checks: config.max_deploy_checks,
        ..RuntimeConfig::default()
    }
}

/// Finds (or installs) Deno now, so that the first request does not wait for it.
pub fn find_deno_early(runtime: &Runtime) {
    let runtime = runtime.clone();
    tokio::spawn(async move {
        if let Err(error) = runtime.deno().await {
            tracing::error!("{error}");
        }
    });
}

/// Serves `router` until Ctrl-C or SIGTERM (a second one exits at once), then cancels
/// `shutdown`, lets in-flight requests finish within `config`'s shutdown timeout, stops the
/// workers and prints what they logged last. The functions reach the same router over the
/// runtime's API socket until the workers are stopped.
pub async fn serve_until_signal(
    json: bool,
    listener: TcpListener,
    router: axum::Router,
    config: &Config,
    runtime: Runtime,
    terminal: std::sync::Arc<output::TerminalLogs>,
    shutdown: CancellationToken,
) {
    let (limits, grace) = (config.connection_limits(), config.shutdown_timeout);
    let workers_done = CancellationToken::new();
    let api = listener.local_addr().and_then(|addr| {
        homebase_server::serve_workers(
            &runtime,
            router.clone(),
            addr,
            config.public_url.as_deref(),
            workers_done.clone(),
        )
    });
    if let Err(error) = &api {
        tracing::error!("functions cannot reach this server's API: its socket could not be opened: {error}");
    }
    let server = tokio::spawn(homebase_server::serve_with(listener, router, limits, shutdown.clone(), grace));
    output::wait_for_signal().await;
    output::note(json, "shutting_down", "Shutting down: finishing in-flight requests… (again to stop now)");
    tokio::spawn(async {
        output::wait_for_signal().await;
        std::process::exit(130);
    });
    shutdown.cancel();
    let _ = server.await;
    runtime.shutdown(grace).await;
    workers_done.cancel();
    if let Ok(api) = api {
        let _ = api.await;
    }
    // Waiting for the printing thread is blocking work.
    let _ = tokio::task::spawn_blocking(move || terminal.flush()).await;
    output::note(json, "stopped", "Stopped.");
}
