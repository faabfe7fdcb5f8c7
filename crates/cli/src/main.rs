//! `homebase`: the command-line entry point. Parsing and dispatch only; each command lives in
//! its own file under `commands/`.

mod api;
mod cli;
mod commands;
mod output;
mod target;

use clap::Parser;

/// mimalloc: the request path allocates many small, short-lived buffers, which it serves faster
/// than the system allocator (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    output::init_tracing(cli.global.json, cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return output::fail(cli.global.json, &anyhow::anyhow!("could not start: {error}")),
    };
    let json = cli.global.json;
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => output::fail(json, &error),
    }
}
