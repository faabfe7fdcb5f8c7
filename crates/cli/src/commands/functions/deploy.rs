//! `homebase functions deploy [NAMES…] [--force]`: uploads the project's functions, a few at a
//! time, with a line per function as it finishes and a summary table at the end.
//!
//! Nothing is uploaded while the project reports a problem with a function being deployed (all
//! of them when no names are given): the problems are printed instead. `--force` then deletes
//! the app's functions that the project no longer has (a function that exists locally but is
//! broken counts as existing). The exit code is 1 when any function failed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use futures_util::StreamExt;
use homebase_project::{FunctionDef, Project, ProjectError};
use serde_json::{Value, json};

use super::remote_names;
use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::{self, Target, TargetArgs};

/// How many deploys run at once. The server checks each with Deno, so a few in parallel save
/// most of the wall time without crowding it.
const CONCURRENCY: usize = 4;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Functions to deploy (default: all of the project's).
    names: Vec<String>,
    /// Also delete the app's functions that no longer exist in the project.
    #[arg(long)]
    force: bool,
}

pub async fn run(args: DeployArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = target::project(target_args)?;
    let target = target::target(target_args, Some(&project))?;
    deploy_functions(&project, &target, &args.names, args.force, global.json).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Deployed,
    Unchanged,
    Failed,
    Deleted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Deployed => "deployed",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed",
            Status::Deleted => "deleted",
        }
    }
}

struct Outcome {
    name: String,
    status: Status,
    deployment_id: Option<String>,
    elapsed: Duration,
    error: Option<ApiError>,
}

/// Deploys `names` (all when empty) of the project's functions to the target's app; with
/// `force`, deletes the app's functions the project does not have. Shared with `homebase deploy`.
pub async fn deploy_functions(
    project: &Project,
    target: &Target,
    names: &[String],
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let app_id = target.app_id()?.to_string();
    let api = Api::new(target)?;
    let discovery = project.discover_functions();
    let broken: BTreeSet<String> =
        discovery.problems.iter().filter_map(|p| p.function.as_deref().map(String::from)).collect();

    let selected: Vec<&FunctionDef> = if names.is_empty() {
        discovery.functions.iter().collect()
    } else {
        let mut selected = Vec::new();
        for name in names {
            match discovery.get(name) {
                Some(function) => selected.push(function),
                None if broken.contains(name) => {}
                None => bail!(
                    "The project has no function named '{name}' in {}; it has: {}",
                    project.functions_dir().display(),
                    if discovery.functions.is_empty() { "none".into() } else { discovery.names().join(", ") }
                ),
            }
        }
        selected
    };
    let blocking: Vec<&ProjectError> = discovery
        .problems
        .iter()
        // With --force every problem blocks: a function hidden by one would be deleted remotely.
        .filter(|p| names.is_empty() || force || p.function.as_deref().is_some_and(|f| names.iter().any(|n| n == f)))
        .collect();
    if !blocking.is_empty() {
        print_problems(&blocking, json);
        bail!(
            "Nothing was deployed: the project has {} problem{}; fix {} and deploy again",
            blocking.len(),
            plural(blocking.len()),
            if blocking.len() == 1 { "it" } else { "them" }
        );
    }

    let mut to_delete = Vec::new();
    if force {
        let remote = api.get(&Api::function_path(&app_id, None, "")).await.map_err(ApiError::into_anyhow)?;
        let local: BTreeSet<String> = discovery.names().into_iter().chain(broken.iter().cloned()).collect();
        to_delete = remote_names(&remote).into_iter().filter(|name| !local.contains(name)).collect();
    }
    let total = selected.len() + to_delete.len();
    if total == 0 {
        output::note(
            json,
            "nothing_to_deploy",
            &format!("No functions in {}; nothing to deploy.", project.functions_dir().display()),
        );
        return Ok(());
    }
    if !json {
        println!(
            "Deploying {} function{} to app {app_id} on {}{}",
            selected.len(),
            plural(selected.len()),
            target.url.value,
            if to_delete.is_empty() { String::new() } else { format!(", deleting {}", to_delete.len()) }
        );
    }

    let mut outcomes = Vec::with_capacity(total);
    let mut deploys = futures_util::stream::iter(selected.iter().map(|f| deploy_one(&api, &app_id, project, f)))
        .buffered(CONCURRENCY);
    while let Some(outcome) = deploys.next().await {
        report(&outcome, outcomes.len() + 1, total, json);
        outcomes.push(outcome);
    }
    for name in to_delete {
        let outcome = delete_one(&api, &app_id, name).await;
        report(&outcome, outcomes.len() + 1, total, json);
        outcomes.push(outcome);
    }

    let count = |status: Status| outcomes.iter().filter(|o| o.status == status).count();
    let (deployed, unchanged, failed, deleted) =
        (count(Status::Deployed), count(Status::Unchanged), count(Status::Failed), count(Status::Deleted));
    if json {
        let functions: Vec<Value> = outcomes
            .iter()
            .map(|o| json!({ "name": o.name, "status": o.status.as_str(), "seconds": seconds(o.elapsed) }))
            .collect();
        output::json_line(&json!({
            "event": "summary",
            "app_id": app_id,
            "url": target.url.value,
            "deployed": deployed,
            "unchanged": unchanged,
            "failed": failed,
            "deleted": deleted,
            "functions": functions,
        }));
    } else {
        println!();
        let rows: Vec<Vec<String>> = outcomes
            .iter()
            .map(|o| vec![o.name.clone(), o.status.as_str().into(), format!("{:.1}s", o.elapsed.as_secs_f64())])
            .collect();
        output::table(&["FUNCTION", "STATUS", "TIME"], &rows);
        let mut parts = vec![format!("{deployed} deployed"), format!("{unchanged} unchanged")];
        if failed > 0 {
            parts.push(format!("{failed} failed"));
        }
        if deleted > 0 || force {
            parts.push(format!("{deleted} deleted"));
        }
        println!("{}", parts.join(", "));
    }
    if failed > 0 {
        let attempted = outcomes.len() - deleted;
        bail!("{failed} of {attempted} function{} failed; see the errors above", plural(attempted));
    }
    Ok(())
}

impl Outcome {
    /// The outcome of one function's request that started at `started`.
    fn of(name: String, started: Instant, result: Result<(Status, Option<String>), ApiError>) -> Outcome {
        let elapsed = started.elapsed();
        match result {
            Ok((status, deployment_id)) => Outcome { name, status, deployment_id, elapsed, error: None },
            Err(error) => Outcome { name, status: Status::Failed, deployment_id: None, elapsed, error: Some(error) },
        }
    }
}

async fn deploy_one(api: &Api, app_id: &str, project: &Project, function: &FunctionDef) -> Outcome {
    let started = Instant::now();
    let name = function.name.clone();
    let result = match function.deploy_payload(project) {
        Ok(payload) => api.put(&Api::function_path(app_id, Some(&name), ""), &payload).await.map(|answer| {
            let status = if answer["status"] == "unchanged" { Status::Unchanged } else { Status::Deployed };
            (status, answer["deployment_id"].as_str().map(String::from))
        }),
        Err(error) => Err(ApiError {
            status: 0,
            code: "io".into(),
            message: format!("Could not read the files of function '{name}'"),
            detail: error.to_string(),
        }),
    };
    Outcome::of(name, started, result)
}

async fn delete_one(api: &Api, app_id: &str, name: String) -> Outcome {
    let started = Instant::now();
    let result = match api.delete(&Api::function_path(app_id, Some(&name), "")).await {
        // Gone already (another deploy raced us) is as good as deleted.
        Err(error) if error.status != 404 => Err(error),
        _ => Ok((Status::Deleted, None)),
    };
    Outcome::of(name, started, result)
}

fn report(outcome: &Outcome, index: usize, total: usize, json: bool) {
    if json {
        let mut line = json!({
            "event": "function",
            "index": index,
            "total": total,
            "name": outcome.name,
            "status": outcome.status.as_str(),
            "seconds": seconds(outcome.elapsed),
        });
        if let Some(id) = &outcome.deployment_id {
            line["deployment_id"] = id.as_str().into();
        }
        if let Some(error) = &outcome.error {
            line["message"] = error.message.as_str().into();
            line["detail"] = error.detail.as_str().into();
            line["code"] = error.code.as_str().into();
        }
        output::json_line(&line);
        return;
    }
    println!(
        "[{index}/{total}] {} … {} ({:.1}s)",
        outcome.name,
        outcome.status.as_str(),
        outcome.elapsed.as_secs_f64()
    );
    if let Some(error) = &outcome.error {
        println!("      {}", error.message);
        if !error.detail.is_empty() && error.detail != error.message {
            for line in error.detail.lines() {
                println!("      {line}");
            }
        }
    }
}

fn print_problems(problems: &[&ProjectError], json: bool) {
    for problem in problems {
        if json {
            output::json_line(&json!({
                "event": "problem",
                "function": problem.function.as_deref(),
                "file": problem.file,
                "line": problem.line,
                "column": problem.column,
                "code": problem.code(),
                "message": problem.message,
                "hint": problem.hint.as_deref(),
            }));
        } else {
            eprintln!("✗ {problem}");
        }
    }
}

fn seconds(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
