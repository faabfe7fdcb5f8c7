//! kill -9 during a deploy: after a restart the function runs the old deployment or the new one,
//! whole, never a mix.

mod common;

use common::Running;
use std::time::Duration;

use serde_json::{Value, json};

const KEY: &str = "b44k_killninetest000000000000000000";

/// Version `n`: the entry and the module it imports both carry it, so a deployment assembled
/// from two versions would answer with two different numbers.
fn version(n: u32) -> Value {
    json!({
        "entry": "entry.ts",
        "files": [
            { "path": "entry.ts", "content": format!("import {{ lib }} from './lib.ts';\nDeno.serve(() => Response.json({{ entry: {n}, lib }}));\n") },
            { "path": "lib.ts", "content": format!("export const lib = {n};\n") },
        ],
        "automations": [],
    })
}

#[tokio::test]
async fn a_deploy_killed_at_any_point_leaves_the_old_or_the_new_code_active() {
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut server = Running::serve(data.path(), KEY).await;
    let app_id = server.create_app(KEY, "crash").await;
    let deploy_url = |server: &Running| server.at(&format!("/api/apps/{app_id}/backend-functions/f"));
    let started = std::time::Instant::now();
    let deployed = http.put(deploy_url(&server)).header("api_key", KEY).json(&version(1)).send().await.unwrap();
    assert_eq!(deployed.status(), 200);
    // How long a whole deploy takes on this machine now: the kills sweep 0 to 1.5 times that.
    let span = started.elapsed();

    let mut current = 1;
    let (mut kept_old, mut got_new) = (0, 0);
    // The kill lands at a different moment of the deploy each round (checking with Deno, storing,
    // materialising): the moment is what this test varies, so it waits on purpose. It starts at
    // once and moves later by 15% of a deploy while the old code survives, earlier while the new
    // one lands, so that on a machine of any speed it straddles the commit.
    let mut delay = Duration::ZERO;
    let step = span * 3 / 20;
    for round in 0..40u32 {
        if round >= 10 && kept_old > 0 && got_new > 0 {
            break;
        }
        let next = current + 1;
        let request = http.put(deploy_url(&server)).header("api_key", KEY).json(&version(next)).send();
        let in_flight = tokio::spawn(request);
        tokio::time::sleep(delay).await;
        server.signal(libc::SIGKILL);
        let _ = in_flight.await;
        let _ = server.exit_code().await;

        server = Running::serve(data.path(), KEY).await;
        let answer: Value =
            http.get(server.at(&format!("/api/apps/{app_id}/functions/f"))).send().await.unwrap().json().await.unwrap();
        let entry = answer["entry"].as_u64().unwrap() as u32;
        assert_eq!(answer["lib"], entry, "round {round}: a mix of deployments: {answer}");
        assert!(entry == current || entry == next, "round {round}: version {entry}, expected {current} or {next}");
        let listed: Value = http
            .get(server.at(&format!("/api/apps/{app_id}/backend-functions")))
            .header("api_key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let file =
            listed["functions"][0]["files"].as_array().unwrap().iter().find(|f| f["path"] == "lib.ts").unwrap().clone();
        assert_eq!(file["content"], format!("export const lib = {entry};\n"), "round {round}: the store agrees");
        if entry == next {
            got_new += 1;
            delay = delay.saturating_sub(step);
        } else {
            kept_old += 1;
            delay += step;
        }
        current = entry;
    }
    // The sweep must straddle the commit, or it proved nothing.
    assert!(kept_old > 0 && got_new > 0, "old kept {kept_old} times, new {got_new} times");
    let scratch: Vec<_> = std::fs::read_dir(data.path().join("scratch")).unwrap().collect();
    assert!(scratch.is_empty(), "a restart clears interrupted checks");
}
