//! The behaviour every backend must show, written once against a [`Store`].
//!
//! Each case is an async function that takes a fresh, empty store and panics on a failure.
//! A backend runs them all, each as its own test, with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! homebase_store::conformance_tests!(|| async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = Store::open_sqlite(dir.path().join("homebase.db")).await.unwrap();
//!     (store, dir) // the second value lives as long as the test
//! });
//! ```
//!
//! Only enabled with the `testing` feature (and in this crate's tests).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{Map, json};

use crate::{
    App, Change, ChangeKind, DeployFile, DeployStatus, Deployment, KeyScope, RETAINED_DEPLOYMENTS, Store, StoreError,
    StoreStats,
};

/// Runs every conformance case as its own `#[tokio::test]`. The argument is a closure returning
/// a future of `(Store, guard)`: a fresh empty store and anything that must outlive it (a temp
/// folder). The calling crate needs `tokio` with the `macros` and `rt` features.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@cases $fixture;
            apps_create_get_list,
            app_names_are_validated,
            keys_create_verify_list_revoke,
            keys_are_scoped_to_one_app,
            key_verification_marks_use,
            import_key_is_idempotent,
            deploy_and_read_back,
            functions_are_sorted_bytewise_and_scoped_to_their_app,
            deploy_to_unknown_app_stores_nothing,
            content_address_ignores_file_order,
            one_byte_makes_a_new_deployment,
            blobs_are_stored_once,
            invalid_deployments_store_nothing,
            history_lists_activations_newest_first,
            rollback_defaults_to_the_previous_deployment,
            rollback_to_an_explicit_deployment,
            rollback_rejects_foreign_and_unknown_deployments,
            rollback_without_an_earlier_deployment_is_an_error,
            retention_keeps_the_last_deployments_rollbackable,
            delete_function_removes_it_and_its_history,
            gc_keeps_everything_referenced,
            a_failed_deploy_leaves_the_previous_deployment,
            a_failed_rollback_changes_nothing,
            materialize_lays_out_entry_and_shared_files,
            materialize_handles_nested_functions,
            materialize_reuses_a_complete_folder,
            materialize_concurrently_writes_one_folder,
            materialize_rejects_bad_ids,
            secrets_set_list_read_delete,
            secret_names_are_validated,
            secrets_are_scoped_to_their_app,
            a_failed_secrets_write_changes_nothing,
            users_create_find_list_with_case_insensitive_email,
            users_are_scoped_to_their_app,
            passwords_check_and_change,
            user_updates_merge_custom_fields,
            codes_are_single_use_expiring_and_limited,
            reset_tokens_are_single_use_and_voided_by_a_new_password,
            ensure_app_and_auth_settings,
            a_failed_user_write_changes_nothing,
            function_net_allow_is_per_app_and_replaced_whole,
            disabling_a_user_changes_its_stamp_for_good,
            deleting_a_user_removes_it_and_its_codes,
            sign_in_changes_are_announced,
            the_function_limit_is_checked_by_the_deploy,
            concurrent_deploys_cannot_pass_the_function_limit,
            concurrent_deploys_of_one_function_all_land_in_order,
            committed_changes_are_announced,
            entity_schemas_are_replaced_whole,
            records_are_created_read_counted_and_deleted,
            record_queries_filter_sort_and_page_in_the_database,
            record_updates_merge_under_their_filter,
            many_records_update_in_one_batch,
            every_record_write_appends_one_change,
            a_failed_record_write_leaves_no_record_and_no_change,
            concurrent_record_writers_never_lose_or_duplicate_a_change,
            limits_count_refuse_give_back_and_reset,
            limit_windows_end_and_are_swept,
            concurrent_hits_never_pass_a_limit,
            function_heads_name_files_and_materialize_only_what_is_missing,
            app_digests_change_with_what_workers_run,
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = ($fixture)().await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

fn file(path: &str, content: &str) -> DeployFile {
    DeployFile { path: path.into(), content: content.into() }
}

/// A deployment with `entry.ts` as entry.
fn deployment(files: &[(&str, &str)]) -> Deployment {
    Deployment {
        entry: "entry.ts".into(),
        files: files.iter().map(|(p, c)| file(p, c)).collect(),
        automations: json!([]),
    }
}

/// A one-file deployment whose content is `export default () => new Response("<tag>")`.
fn version(tag: &str) -> Deployment {
    deployment(&[("entry.ts", &format!("export default () => new Response({tag:?});\n"))])
}

async fn app(store: &Store) -> App {
    store.create_app("Test app").await.unwrap()
}

async fn app_named(store: &Store, name: &str) -> App {
    store.create_app(name).await.unwrap()
}

fn now_ms() -> i64 {
    crate::ids::now_ms()
}

async fn stats(store: &Store) -> StoreStats {
    store.stats().await.unwrap()
}

pub async fn apps_create_get_list(store: Store) {
    assert!(store.list_apps().await.unwrap().is_empty());
    let before = now_ms();
    let first = store.create_app("  First  ").await.unwrap();
    let second = store.create_app("Second").await.unwrap();
    let third = store.create_app("Third").await.unwrap();
    let after = now_ms();
    assert_eq!(first.name, "First", "names are trimmed");
    for app in [&first, &second, &third] {
        assert_eq!(app.id.len(), 24, "{}", app.id);
        assert!(app.id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{}", app.id);
        assert!((before..=after).contains(&app.created_at));
    }
    let ids: HashSet<&str> = [&first, &second, &third].iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(store.get_app(&second.id).await.unwrap(), Some(second.clone()));
    assert_eq!(store.get_app("000000000000000000000000").await.unwrap(), None);
    let listed = store.list_apps().await.unwrap();
    assert_eq!(listed, vec![third, second, first], "newest first");
}

pub async fn app_names_are_validated(store: Store) {
    for bad in ["", "   ", "a\nb"] {
        let err = store.create_app(bad).await.unwrap_err();
        assert_eq!(err.code(), "invalid", "{bad:?}: {err}");
    }
    assert_eq!(stats(&store).await.apps, 0);
}

pub async fn keys_create_verify_list_revoke(store: Store) {
    let app = app(&store).await;
    let (admin, admin_secret) = store.create_key(KeyScope::Admin, "ops").await.unwrap();
    let (app_key, app_secret) = store.create_key(KeyScope::App(app.id.clone()), "ci").await.unwrap();
    for secret in [&admin_secret, &app_secret] {
        assert!(secret.starts_with("b44k_"), "{secret}");
        assert_eq!(secret.len(), 45);
        assert!(secret[5..].bytes().all(|b| b.is_ascii_alphanumeric()), "{secret}");
    }
    assert_ne!(admin_secret, app_secret);
    assert_eq!(admin.prefix, admin_secret[..11]);
    assert_eq!(admin.scope, KeyScope::Admin);
    assert_eq!(admin.name, "ops");
    assert_eq!(app_key.scope, KeyScope::App(app.id.clone()));

    let verified = store.verify_key(&admin_secret).await.unwrap().expect("the admin key verifies");
    assert_eq!((verified.id.as_str(), &verified.scope), (admin.id.as_str(), &KeyScope::Admin));
    let verified = store.verify_key(&app_secret).await.unwrap().expect("the app key verifies");
    assert_eq!(verified.id, app_key.id);

    // Wrong and unknown keys.
    let mut wrong = admin_secret.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    let unknown = ["", "b44k_", "b44k_unknownunknownunknownunknown", &admin_secret[..44]];
    for bad in unknown.into_iter().chain([wrong.as_str(), admin.prefix.as_str(), admin.id.as_str()]) {
        assert_eq!(store.verify_key(bad).await.unwrap(), None, "{bad:?} verified");
    }
    assert_eq!(store.verify_key(&format!("{admin_secret}x")).await.unwrap(), None);

    let all: Vec<String> = store.list_keys(None).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(all, vec![app_key.id.clone(), admin.id.clone()], "newest first");
    let scoped: Vec<String> = store.list_keys(Some(&app.id)).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(scoped, vec![app_key.id.clone()]);

    assert!(store.revoke_key(&app_key.id).await.unwrap());
    assert_eq!(store.verify_key(&app_secret).await.unwrap(), None, "a revoked key no longer verifies");
    assert!(!store.revoke_key(&app_key.id).await.unwrap(), "a second revoke finds nothing");
    assert!(store.verify_key(&admin_secret).await.unwrap().is_some(), "other keys are untouched");
    assert_eq!(stats(&store).await.api_keys, 1);

    let err = store.create_key(KeyScope::Admin, "  ").await.unwrap_err();
    assert_eq!(err.code(), "invalid");
}

pub async fn keys_are_scoped_to_one_app(store: Store) {
    let a = app(&store).await;
    let b = app(&store).await;
    let (key_a, secret_a) = store.create_key(KeyScope::App(a.id.clone()), "a").await.unwrap();
    let (key_b, _) = store.create_key(KeyScope::App(b.id.clone()), "b").await.unwrap();
    assert_eq!(store.verify_key(&secret_a).await.unwrap().unwrap().scope, KeyScope::App(a.id.clone()));
    assert_eq!(store.verify_key(&secret_a).await.unwrap().unwrap().scope.app_id(), Some(a.id.as_str()));
    let ids = |keys: Vec<crate::ApiKey>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_keys(Some(&a.id)).await.unwrap()), vec![key_a.id]);
    assert_eq!(ids(store.list_keys(Some(&b.id)).await.unwrap()), vec![key_b.id]);
    let err = store.create_key(KeyScope::App("ffffffffffffffffffffffff".into()), "x").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(err.status(), 404);
    assert_eq!(stats(&store).await.api_keys, 2);
}

pub async fn key_verification_marks_use(store: Store) {
    let (key, secret) = store.create_key(KeyScope::Admin, "ops").await.unwrap();
    assert_eq!(key.last_used_at, None);
    let before = now_ms();
    let verified = store.verify_key(&secret).await.unwrap().unwrap();
    let used = verified.last_used_at.expect("verification records the use");
    assert!(used >= before);
    let listed = store.list_keys(None).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(used));
}

pub async fn import_key_is_idempotent(store: Store) {
    let app = app(&store).await;
    let secret = "b44k_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let first = store.import_key(secret, KeyScope::Admin, "admin").await.unwrap();
    assert_eq!(first.prefix, &secret[..11]);
    let again = store.import_key(secret, KeyScope::Admin, "renamed").await.unwrap();
    assert_eq!(again, first, "a second import returns the stored key unchanged");
    assert_eq!(stats(&store).await.api_keys, 1);
    assert_eq!(store.verify_key(secret).await.unwrap().unwrap().id, first.id);
    let err = store.import_key(secret, KeyScope::App(app.id.clone()), "admin").await.unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
    for bad in ["0123456789abcdefghij", "b44k_short", "b44k_has space in it 0123456"] {
        let err = store.import_key(bad, KeyScope::Admin, "admin").await.unwrap_err();
        assert_eq!(err.code(), "invalid", "{bad:?}: {err}");
    }
    let scoped = store.import_key("b44k_scopedscopedscopedscoped", KeyScope::App(app.id.clone()), "s").await.unwrap();
    assert_eq!(scoped.scope, KeyScope::App(app.id));
    assert_eq!(stats(&store).await.api_keys, 2);
}

pub async fn deploy_and_read_back(store: Store) {
    let app = app(&store).await;
    let automations = json!([{"name": "nightly", "type": "scheduled", "schedule_mode": "recurring",
        "schedule_type": "cron", "cron_expression": "0 3 * * *", "is_active": true}]);
    let d = Deployment {
        entry: "entry.ts".into(),
        files: vec![
            file("lib/util.ts", "export const two = 2;\n"),
            file("entry.ts", "import { two } from './lib/util.ts';\n"),
            file("../../shared/db.ts", "export const db = 'x';\n"),
        ],
        automations: automations.clone(),
    };
    let before = now_ms();
    let outcome = store.deploy(&app.id, "send-email", d).await.unwrap();
    assert_eq!(outcome.status, DeployStatus::Deployed);
    let id = &outcome.deployment_id;
    assert!(id.starts_with("d_") && id.len() == 34, "{id}");
    assert!(id[2..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");

    let f = store.function(&app.id, "send-email").await.unwrap().expect("the function exists");
    assert_eq!(f.name, "send-email");
    assert_eq!(&f.deployment_id, id);
    assert_eq!(f.entry, "entry.ts");
    assert_eq!(f.automations, automations);
    assert!(f.activated_at >= before);
    let paths: Vec<&str> = f.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["../../shared/db.ts", "entry.ts", "lib/util.ts"], "files sorted by path");
    assert_eq!(f.files[2].content, "export const two = 2;\n");

    assert_eq!(store.functions(&app.id).await.unwrap(), vec![f.clone()]);
    assert_eq!(store.function_count(&app.id).await.unwrap(), 1);
    assert_eq!(store.function(&app.id, "other").await.unwrap(), None);

    let stored = store.deployment(id).await.unwrap().expect("the deployment is stored");
    assert_eq!(stored.entry, "entry.ts");
    assert_eq!(stored.files, f.files);
    assert_eq!(stored.automations, automations);
    assert_eq!(store.deployment("d_00000000000000000000000000000000").await.unwrap(), None);
}

pub async fn functions_are_sorted_bytewise_and_scoped_to_their_app(store: Store) {
    let a = app(&store).await;
    let b = app(&store).await;
    for name in ["zeta", "Beta", "email/send", "alpha", "email"] {
        store.deploy(&a.id, name, version(name)).await.unwrap();
    }
    store.deploy(&b.id, "only-b", version("b")).await.unwrap();
    let names: Vec<String> = store.functions(&a.id).await.unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["Beta", "alpha", "email", "email/send", "zeta"]);
    assert_eq!(store.function_count(&a.id).await.unwrap(), 5);
    assert_eq!(store.function_count(&b.id).await.unwrap(), 1);
    assert_eq!(store.function(&b.id, "zeta").await.unwrap(), None, "one app's functions are not another's");
    assert_eq!(store.function(&a.id, "only-b").await.unwrap(), None);
    assert!(store.functions("ffffffffffffffffffffffff").await.unwrap().is_empty());
    // Each function lists its own content.
    let email = store.function(&a.id, "email/send").await.unwrap().unwrap();
    assert!(email.files[0].content.contains("\"email/send\""), "{:?}", email.files);
}

pub async fn deploy_to_unknown_app_stores_nothing(store: Store) {
    let err = store.deploy("ffffffffffffffffffffffff", "f", version("1")).await.unwrap_err();
    assert!(matches!(&err, StoreError::NotFound { what } if what.contains("ffffffffffffffffffffffff")), "{err}");
    assert_eq!(stats(&store).await, StoreStats::default());
}

pub async fn content_address_ignores_file_order(store: Store) {
    let app = app(&store).await;
    let files = [("entry.ts", "import './a.ts';"), ("a.ts", "export {}"), ("../../shared/s.ts", "s")];
    let mut d = deployment(&files);
    d.automations = json!([{"name": "n", "type": "entity", "entity_name": "Order", "event_types": ["create"]}]);
    let first = store.deploy(&app.id, "f", d.clone()).await.unwrap();
    let mut reordered = d.clone();
    reordered.files.reverse();
    reordered.automations = json!([{"event_types": ["create"], "entity_name": "Order", "type": "entity", "name": "n"}]);
    let second = store.deploy(&app.id, "f", reordered).await.unwrap();
    assert_eq!(second.status, DeployStatus::Unchanged);
    assert_eq!(second.deployment_id, first.deployment_id);
    assert_eq!(store.history(&app.id, "f").await.unwrap().len(), 1, "an unchanged deploy records nothing");
    // The same content under another name is the same deployment, stored once.
    let other = store.deploy(&app.id, "g", d).await.unwrap();
    assert_eq!(other.status, DeployStatus::Deployed, "new for function g");
    assert_eq!(other.deployment_id, first.deployment_id);
    assert_eq!(stats(&store).await.deployments, 1);
    for f in store.functions(&app.id).await.unwrap() {
        let paths: Vec<&str> = f.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["../../shared/s.ts", "a.ts", "entry.ts"],
            "{}: a shared deployment lists its files once",
            f.name
        );
    }
}

pub async fn one_byte_makes_a_new_deployment(store: Store) {
    let app = app(&store).await;
    let first = store.deploy(&app.id, "f", deployment(&[("entry.ts", "a"), ("b.ts", "bbbb")])).await.unwrap();
    let second = store.deploy(&app.id, "f", deployment(&[("entry.ts", "a"), ("b.ts", "bbbc")])).await.unwrap();
    assert_eq!(second.status, DeployStatus::Deployed);
    assert_ne!(second.deployment_id, first.deployment_id);
    let mut with_automation = deployment(&[("entry.ts", "a"), ("b.ts", "bbbc")]);
    with_automation.automations = json!([{"name": "x"}]);
    let third = store.deploy(&app.id, "f", with_automation).await.unwrap();
    assert_ne!(third.deployment_id, second.deployment_id, "automations are part of the content");
    let active = store.function(&app.id, "f").await.unwrap().unwrap();
    assert_eq!(active.deployment_id, third.deployment_id);
    assert_eq!(active.automations, json!([{"name": "x"}]));
}

pub async fn blobs_are_stored_once(store: Store) {
    let app = app(&store).await;
    let shared = ("../../shared/big.ts", "export const big = 1;\n");
    store.deploy(&app.id, "f", deployment(&[("entry.ts", "v1"), ("lib.ts", "lib"), shared])).await.unwrap();
    assert_eq!(stats(&store).await.blobs, 3);
    // Only entry.ts changes: one new blob.
    store.deploy(&app.id, "f", deployment(&[("entry.ts", "v2"), ("lib.ts", "lib"), shared])).await.unwrap();
    // Another function with the same shared file and the same lib: one new blob (its entry).
    store.deploy(&app.id, "g", deployment(&[("entry.ts", "g"), ("lib.ts", "lib"), shared])).await.unwrap();
    // Identical contents under different paths are one blob.
    store.deploy(&app.id, "h", deployment(&[("entry.ts", "lib"), ("copy.ts", "lib")])).await.unwrap();
    let s = stats(&store).await;
    assert_eq!((s.deployments, s.blobs), (4, 5), "{s:?}");
    let h = store.function(&app.id, "h").await.unwrap().unwrap();
    assert!(h.files.iter().all(|f| f.content == "lib"));
}

pub async fn invalid_deployments_store_nothing(store: Store) {
    let app = app(&store).await;
    store.deploy(&app.id, "f", version("1")).await.unwrap();
    let before = stats(&store).await;
    let escape = format!("{}etc/passwd", "../".repeat(crate::MAX_PATH_CLIMB + 1));
    let cases: Vec<(&str, Deployment)> = vec![
        ("f", deployment(&[("entry.ts", "x"), ("/etc/passwd", "x")])),
        ("f", deployment(&[("entry.ts", "x"), ("a/../../../b.ts", "x")])),
        ("f", deployment(&[("entry.ts", "x"), ("./b.ts", "x")])),
        ("f", deployment(&[("entry.ts", "x"), ("a//b.ts", "x")])),
        ("f", deployment(&[("entry.ts", "x"), ("a\\b.ts", "x")])),
        ("f", deployment(&[("entry.ts", "x"), ("..", "x")])),
        ("f", deployment(&[("entry.ts", "x"), (escape.as_str(), "x")])),
        ("f", deployment(&[("entry.ts", "x"), ("entry.ts", "y")])),
        ("f", deployment(&[("main.ts", "x")])),
        ("f", deployment(&[])),
        ("f", Deployment { entry: "entry.ts".into(), files: vec![file("entry.ts", "x")], automations: json!({}) }),
        ("", version("2")),
        ("a\u{7}b", version("2")),
    ];
    for (name, d) in cases {
        let paths: Vec<String> = d.files.iter().map(|f| f.path.clone()).collect();
        let err = store.deploy(&app.id, name, d).await.unwrap_err();
        assert_eq!(err.code(), "invalid", "{name:?} {paths:?}: {err}");
        assert_eq!(err.status(), 400);
    }
    assert_eq!(stats(&store).await, before, "nothing was stored");
    assert_eq!(store.history(&app.id, "f").await.unwrap().len(), 1);
}

pub async fn history_lists_activations_newest_first(store: Store) {
    let app = app(&store).await;
    assert!(store.history(&app.id, "f").await.unwrap().is_empty(), "no history for an unknown function");
    let mut ids = Vec::new();
    for tag in ["1", "2", "3"] {
        ids.push(store.deploy(&app.id, "f", version(tag)).await.unwrap().deployment_id);
    }
    let history = store.history(&app.id, "f").await.unwrap();
    let listed: Vec<&str> = history.iter().map(|h| h.deployment_id.as_str()).collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]]);
    let active: Vec<bool> = history.iter().map(|h| h.active).collect();
    assert_eq!(active, [true, false, false]);
    assert!(history[0].sequence > history[1].sequence && history[1].sequence > history[2].sequence);
    assert!(history[0].activated_at >= history[2].activated_at);
}

pub async fn rollback_defaults_to_the_previous_deployment(store: Store) {
    let app = app(&store).await;
    let v1 = store.deploy(&app.id, "f", version("1")).await.unwrap().deployment_id;
    let v2 = store.deploy(&app.id, "f", version("2")).await.unwrap().deployment_id;
    let v3 = store.deploy(&app.id, "f", version("3")).await.unwrap().deployment_id;
    assert_eq!(store.rollback(&app.id, "f", None).await.unwrap(), v2);
    let f = store.function(&app.id, "f").await.unwrap().unwrap();
    assert_eq!(f.deployment_id, v2);
    assert!(f.files[0].content.contains("\"2\""), "the active content is version 2");
    let history = store.history(&app.id, "f").await.unwrap();
    assert_eq!(history.len(), 4, "the rollback is recorded");
    assert_eq!((history[0].deployment_id.as_str(), history[0].active), (v2.as_str(), true));
    // A second rollback swaps back.
    assert_eq!(store.rollback(&app.id, "f", None).await.unwrap(), v3);
    assert_eq!(store.function(&app.id, "f").await.unwrap().unwrap().deployment_id, v3);
    // A deploy of the content of an older deployment reuses it.
    let again = store.deploy(&app.id, "f", version("1")).await.unwrap();
    assert_eq!((again.deployment_id.as_str(), again.status), (v1.as_str(), DeployStatus::Deployed));
}

pub async fn rollback_to_an_explicit_deployment(store: Store) {
    let app = app(&store).await;
    let v1 = store.deploy(&app.id, "f", version("1")).await.unwrap().deployment_id;
    store.deploy(&app.id, "f", version("2")).await.unwrap();
    let v3 = store.deploy(&app.id, "f", version("3")).await.unwrap().deployment_id;
    assert_eq!(store.rollback(&app.id, "f", Some(&v1)).await.unwrap(), v1);
    assert_eq!(store.function(&app.id, "f").await.unwrap().unwrap().deployment_id, v1);
    let history = store.history(&app.id, "f").await.unwrap();
    assert_eq!(history[0].deployment_id, v1);
    assert_eq!(history.len(), 4);
    // Asking for the active deployment changes nothing.
    assert_eq!(store.rollback(&app.id, "f", Some(&v1)).await.unwrap(), v1);
    assert_eq!(store.history(&app.id, "f").await.unwrap().len(), 4);
    assert_eq!(store.rollback(&app.id, "f", Some(&v3)).await.unwrap(), v3);
}

pub async fn rollback_rejects_foreign_and_unknown_deployments(store: Store) {
    let app = app(&store).await;
    let other_app = store.create_app("Other").await.unwrap();
    store.deploy(&app.id, "f", version("1")).await.unwrap();
    let v2 = store.deploy(&app.id, "f", version("2")).await.unwrap().deployment_id;
    let g = store.deploy(&app.id, "g", version("g")).await.unwrap().deployment_id;
    let elsewhere = store.deploy(&other_app.id, "f", version("elsewhere")).await.unwrap().deployment_id;
    for foreign in [g.as_str(), elsewhere.as_str(), "d_00000000000000000000000000000000", "nonsense"] {
        let err = store.rollback(&app.id, "f", Some(foreign)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{foreign}: {err}");
        assert!(err.to_string().contains(foreign), "{err}");
    }
    assert_eq!(store.function(&app.id, "f").await.unwrap().unwrap().deployment_id, v2, "nothing changed");
    let err = store.rollback(&app.id, "missing", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    let err = store.rollback(&other_app.id, "g", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

pub async fn rollback_without_an_earlier_deployment_is_an_error(store: Store) {
    let app = app(&store).await;
    let v1 = store.deploy(&app.id, "f", version("1")).await.unwrap().deployment_id;
    let err = store.rollback(&app.id, "f", None).await.unwrap_err();
    assert_eq!((err.code(), err.status()), ("conflict", 409), "{err}");
    assert!(err.to_string().contains("no earlier deployment"), "{err}");
    assert_eq!(store.history(&app.id, "f").await.unwrap().len(), 1);
    assert_eq!(store.function(&app.id, "f").await.unwrap().unwrap().deployment_id, v1);
}

pub async fn retention_keeps_the_last_deployments_rollbackable(store: Store) {
    let app = app(&store).await;
    let shared = ("../../shared/s.ts", "shared");
    let total = RETAINED_DEPLOYMENTS + 5;
    let mut ids = Vec::new();
    for i in 0..total {
        let d = deployment(&[("entry.ts", &format!("v{i}")), shared]);
        ids.push(store.deploy(&app.id, "f", d).await.unwrap().deployment_id);
    }
    let history = store.history(&app.id, "f").await.unwrap();
    assert_eq!(history.len(), RETAINED_DEPLOYMENTS);
    let s = stats(&store).await;
    assert_eq!(s.deployments as usize, RETAINED_DEPLOYMENTS, "older deployments are collected");
    assert_eq!(s.blobs as usize, RETAINED_DEPLOYMENTS + 1, "their contents too, but not the shared file");
    // The oldest are gone for good.
    for old in &ids[..total - RETAINED_DEPLOYMENTS] {
        assert_eq!(store.deployment(old).await.unwrap(), None);
        assert!(matches!(store.rollback(&app.id, "f", Some(old)).await, Err(StoreError::NotFound { .. })));
    }
    // The last ten (at least) stay usable: roll back to each, oldest first, and check the content.
    for (i, id) in ids.iter().enumerate().skip(total - 10) {
        assert_eq!(&store.rollback(&app.id, "f", Some(id)).await.unwrap(), id);
        let f = store.function(&app.id, "f").await.unwrap().unwrap();
        assert_eq!(&f.deployment_id, id);
        let entry = f.files.iter().find(|f| f.path == "entry.ts").unwrap();
        assert_eq!(entry.content, format!("v{i}"));
        assert_eq!(f.files.len(), 2);
    }
    assert_eq!(stats(&store).await.deployments as usize, RETAINED_DEPLOYMENTS, "rollbacks collect nothing new");
}

pub async fn delete_function_removes_it_and_its_history(store: Store) {
    let app = app(&store).await;
    store.deploy(&app.id, "f", version("1")).await.unwrap();
    store.deploy(&app.id, "f", version("2")).await.unwrap();
    let shared = store.deploy(&app.id, "g", version("2")).await.unwrap().deployment_id;
    assert!(store.delete_function(&app.id, "f").await.unwrap());
    assert_eq!(store.function(&app.id, "f").await.unwrap(), None);
    assert!(store.history(&app.id, "f").await.unwrap().is_empty());
    let names: Vec<String> = store.functions(&app.id).await.unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["g"]);
    assert_eq!(store.function_count(&app.id).await.unwrap(), 1);
    assert!(matches!(store.rollback(&app.id, "f", None).await, Err(StoreError::NotFound { .. })));
    // Version 1 was only f's: collected. Version 2 is still g's.
    let s = stats(&store).await;
    assert_eq!((s.deployments, s.blobs, s.history_entries), (1, 1, 1), "{s:?}");
    assert!(store.deployment(&shared).await.unwrap().is_some());
    assert!(!store.delete_function(&app.id, "f").await.unwrap(), "deleting twice finds nothing");
    assert!(!store.delete_function(&app.id, "never").await.unwrap());
    // A new deploy of the same name starts a fresh history.
    store.deploy(&app.id, "f", version("3")).await.unwrap();
    assert_eq!(store.history(&app.id, "f").await.unwrap().len(), 1);
    assert!(store.delete_function(&app.id, "g").await.unwrap());
    assert!(store.delete_function(&app.id, "f").await.unwrap());
    let s = stats(&store).await;
    assert_eq!((s.functions, s.deployments, s.blobs, s.history_entries), (0, 0, 0, 0), "{s:?}");
}

pub async fn gc_keeps_everything_referenced(store: Store) {
    let app = app(&store).await;
    for i in 0..3 {
        store.deploy(&app.id, "f", version(&i.to_string())).await.unwrap();
    }
    store.deploy(&app.id, "g", version("g")).await.unwrap();
    store.delete_function(&app.id, "g").await.unwrap();
    let before = stats(&store).await;
    assert_eq!(store.gc().await.unwrap(), crate::GcReport::default(), "deletes already collected their garbage");
    assert_eq!(stats(&store).await, before);
    for entry in store.history(&app.id, "f").await.unwrap() {
        assert!(store.deployment(&entry.deployment_id).await.unwrap().is_some());
    }
    assert_eq!(
        store.rollback(&app.id, "f", None).await.unwrap(),
        store.history(&app.id, "f").await.unwrap()[0].deployment_id
    );
}

pub async fn a_failed_deploy_leaves_the_previous_deployment(store: Store) {
    let app = app(&store).await;
    let v1 = store.deploy(&app.id, "f", deployment(&[("entry.ts", "v1"), ("a.ts", "a1")])).await.unwrap();
    let before = stats(&store).await;
    let history_before = store.history(&app.id, "f").await.unwrap();
    // Fail after every row of the deploy is written, just before the commit.
    store.set_before_commit_hook(|op: &str| if op == "deploy" { Err("injected failure".into()) } else { Ok(()) });
    let new = || deployment(&[("entry.ts", "v2"), ("a.ts", "a2"), ("b.ts", "b2")]);
    let err = store.deploy(&app.id, "f", new()).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let err = store.deploy(&app.id, "brand-new", new()).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    store.clear_before_commit_hook();
    let f = store.function(&app.id, "f").await.unwrap().unwrap();
    assert_eq!(f.deployment_id, v1.deployment_id);
    assert_eq!(f.files.iter().map(|f| f.content.as_str()).collect::<Vec<_>>(), ["a1", "v1"]);
    assert_eq!(store.function(&app.id, "brand-new").await.unwrap(), None);
    assert_eq!(stats(&store).await, before, "no partial rows");
    assert_eq!(store.history(&app.id, "f").await.unwrap(), history_before);
    // The same deploy goes through once the failure is gone.
    assert_eq!(store.deploy(&app.id, "f", new()).await.unwrap().status, DeployStatus::Deployed);
}

pub async fn a_failed_rollback_changes_nothing(store: Store) {
    let app = app(&store).await;
    store.deploy(&app.id, "f", version("1")).await.unwrap();
    let v2 = store.deploy(&app.id, "f", version("2")).await.unwrap().deployment_id;
    let history = store.history(&app.id, "f").await.unwrap();
    store.set_before_commit_hook(|op: &str| if op == "rollback" { Err("injected failure".into()) } else { Ok(()) });
    assert!(store.rollback(&app.id, "f", None).await.is_err());
    store.clear_before_commit_hook();
    assert_eq!(store.function(&app.id, "f").await.unwrap().unwrap().deployment_id, v2);
    assert_eq!(store.history(&app.id, "f").await.unwrap(), history);
}

/// Entries of `root` whose names start with the temporary prefix.
fn temp_entries(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(crate::materialize::TEMP_PREFIX))
        .collect()
}

pub async fn materialize_lays_out_entry_and_shared_files(store: Store) {
    let app = app(&store).await;
    let d = deployment(&[
        ("entry.ts", "import './lib/util.ts'; import '../../shared/db.ts';"),
        ("lib/util.ts", "util"),
        ("../../shared/db.ts", "db"),
        ("../../shared/nested/deep.json", "{}"),
    ]);
    let id = store.deploy(&app.id, "f", d).await.unwrap().deployment_id;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("deployments");
    let entry = store.materialize(&id, &root).await.unwrap();
    assert!(entry.is_absolute(), "{}", entry.display());
    let base = root.canonicalize().unwrap().join(&id);
    assert_eq!(entry, base.join("functions/_/entry.ts"));
    let read = |rel: &str| std::fs::read_to_string(base.join(rel)).unwrap();
    assert_eq!(read("functions/_/entry.ts"), "import './lib/util.ts'; import '../../shared/db.ts';");
    assert_eq!(read("functions/_/lib/util.ts"), "util");
    assert_eq!(read("shared/db.ts"), "db");
    assert_eq!(read("shared/nested/deep.json"), "{}");
    // The relative imports of the entry resolve.
    let entry_dir = entry.parent().unwrap();
    assert!(entry_dir.join("../../shared/db.ts").is_file());
    assert!(entry_dir.join("lib/util.ts").is_file());
    let mut top: Vec<String> =
        std::fs::read_dir(&base).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert_eq!(top, ["functions", "shared"]);
    assert!(temp_entries(&root).is_empty(), "no temporary folder is left");
    let in_root: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(in_root, [id]);
}

pub async fn materialize_handles_nested_functions(store: Store) {
    let app = app(&store).await;
    // A function named `email/send` sends its shared files three folders up.
    let d = deployment(&[("entry.ts", "e"), ("../../../shared/x.ts", "x"), ("../common.ts", "c")]);
    let id = store.deploy(&app.id, "email/send", d).await.unwrap().deployment_id;
    let dir = tempfile::tempdir().unwrap();
    let entry = store.materialize(&id, dir.path()).await.unwrap();
    let base = dir.path().canonicalize().unwrap().join(&id);
    assert_eq!(entry, base.join("functions/_/_/entry.ts"));
    assert_eq!(std::fs::read_to_string(base.join("shared/x.ts")).unwrap(), "x");
    assert_eq!(std::fs::read_to_string(entry.parent().unwrap().join("../common.ts")).unwrap(), "c");
    assert_eq!(std::fs::read_to_string(entry.parent().unwrap().join("../../../shared/x.ts")).unwrap(), "x");
}

pub async fn materialize_reuses_a_complete_folder(store: Store) {
    let app = app(&store).await;
    let id = store.deploy(&app.id, "f", version("1")).await.unwrap().deployment_id;
    let dir = tempfile::tempdir().unwrap();
    let first = store.materialize(&id, dir.path()).await.unwrap();
    // A marker inside the folder survives a second materialisation: the folder is reused.
    let marker = first.parent().unwrap().join("marker");
    std::fs::write(&marker, "still here").unwrap();
    let second = store.materialize(&id, dir.path()).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "still here");
    // Another deployment gets its own folder beside it.
    let other = store.deploy(&app.id, "f", version("2")).await.unwrap().deployment_id;
    let third = store.materialize(&other, dir.path()).await.unwrap();
    assert_ne!(third, first);
    assert!(std::fs::read_to_string(&third).unwrap().contains("\"2\""));
    assert!(std::fs::read_to_string(&first).unwrap().contains("\"1\""));
    assert!(temp_entries(dir.path()).is_empty());
}

pub async fn materialize_concurrently_writes_one_folder(store: Store) {
    let app = app(&store).await;
    let files: Vec<(String, String)> =
        (0..30).map(|i| (format!("lib/m{i}.ts"), format!("export const m = {i};"))).collect();
    let mut list: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    list.push(("entry.ts", "entry"));
    let id = store.deploy(&app.id, "f", deployment(&list)).await.unwrap().deployment_id;
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, id, root) = (store.clone(), id.clone(), dir.path().to_path_buf());
            tokio::spawn(async move { store.materialize(&id, &root).await })
        })
        .collect();
    let mut entries = HashSet::new();
    for task in tasks {
        entries.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(entries.len(), 1);
    let entry = entries.into_iter().next().unwrap();
    assert_eq!(std::fs::read_to_string(&entry).unwrap(), "entry");
    for (path, content) in &files {
        assert_eq!(&std::fs::read_to_string(entry.parent().unwrap().join(path)).unwrap(), content);
    }
    assert!(temp_entries(dir.path()).is_empty(), "{:?}", temp_entries(dir.path()));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

pub async fn materialize_rejects_bad_ids(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["../escape", "d_../../x", "", "d_ABCDEF00000000000000000000000000"] {
        let err = store.materialize(bad, dir.path()).await.unwrap_err();
        assert_eq!(err.code(), "invalid", "{bad:?}: {err}");
    }
    let err = store.materialize("d_00000000000000000000000000000000", dir.path()).await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was written");
}

fn secret_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub async fn secrets_set_list_read_delete(store: Store) {
    let app = app(&store).await;
    assert!(store.secret_names(&app.id).await.unwrap().is_empty());
    assert!(store.secrets(&app.id).await.unwrap().is_empty());
    store.set_secrets(&app.id, secret_map(&[("B_KEY", "b-value"), ("A_KEY", "a-value"), ("_x1", "")])).await.unwrap();
    assert_eq!(store.secret_names(&app.id).await.unwrap(), ["A_KEY", "B_KEY", "_x1"]);
    assert_eq!(
        store.secrets(&app.id).await.unwrap(),
        secret_map(&[("A_KEY", "a-value"), ("B_KEY", "b-value"), ("_x1", "")])
    );
    // Setting again replaces the given names and keeps the others.
    let unicode = "ünïcode ✓ = \"quoted\"\nsecond line";
    store.set_secrets(&app.id, secret_map(&[("A_KEY", unicode), ("C", "c")])).await.unwrap();
    assert_eq!(
        store.secrets(&app.id).await.unwrap(),
        secret_map(&[("A_KEY", unicode), ("B_KEY", "b-value"), ("C", "c"), ("_x1", "")])
    );
    store.set_secrets(&app.id, BTreeMap::new()).await.unwrap();
    assert_eq!(store.secret_names(&app.id).await.unwrap().len(), 4, "an empty map changes nothing");
    assert!(store.delete_secret(&app.id, "B_KEY").await.unwrap());
    assert!(!store.delete_secret(&app.id, "B_KEY").await.unwrap(), "already gone");
    assert!(!store.delete_secret(&app.id, "NEVER").await.unwrap());
    assert_eq!(store.secret_names(&app.id).await.unwrap(), ["A_KEY", "C", "_x1"]);
    assert_eq!(store.secrets(&app.id).await.unwrap().get("B_KEY"), None);
}

pub async fn secret_names_are_validated(store: Store) {
    let app = app(&store).await;
    for bad in ["1BAD", "A-B", "", "A B", "É"] {
        let err = store
            .set_secrets(&app.id, secret_map(&[("GOOD", "value-must-not-leak"), (bad, "value-must-not-leak")]))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{bad}: {err:?}");
        let message = err.to_string();
        assert!(message.contains(&format!("'{bad}'")), "the error names {bad}: {message}");
        assert!(!message.contains("value-must-not-leak"), "{message}");
    }
    let err = store.set_secrets(&app.id, secret_map(&[("NUL", "a\0b")])).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(store.secret_names(&app.id).await.unwrap().is_empty(), "a bad name stores nothing of the call");
}

pub async fn secrets_are_scoped_to_their_app(store: Store) {
    let first = app(&store).await;
    let second = app(&store).await;
    store.set_secrets(&first.id, secret_map(&[("TOKEN", "first")])).await.unwrap();
    store.set_secrets(&second.id, secret_map(&[("TOKEN", "second"), ("ONLY_SECOND", "x")])).await.unwrap();
    assert_eq!(store.secrets(&first.id).await.unwrap(), secret_map(&[("TOKEN", "first")]));
    assert_eq!(store.secret_names(&second.id).await.unwrap(), ["ONLY_SECOND", "TOKEN"]);
    assert!(!store.delete_secret(&first.id, "ONLY_SECOND").await.unwrap());
    assert!(store.delete_secret(&first.id, "TOKEN").await.unwrap());
    assert_eq!(store.secrets(&second.id).await.unwrap().get("TOKEN").map(String::as_str), Some("second"));
    let err = store.set_secrets("000000000000000000000000", secret_map(&[("A", "b")])).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(store.secret_names("000000000000000000000000").await.unwrap().is_empty());
}

pub async fn a_failed_secrets_write_changes_nothing(store: Store) {
    let app = app(&store).await;
    store.set_secrets(&app.id, secret_map(&[("KEEP", "old")])).await.unwrap();
    store.set_before_commit_hook(|op: &str| if op == "set_secrets" { Err("injected failure".into()) } else { Ok(()) });
    let err = store.set_secrets(&app.id, secret_map(&[("KEEP", "new"), ("ADDED", "x")])).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    store.clear_before_commit_hook();
    assert_eq!(store.secrets(&app.id).await.unwrap(), secret_map(&[("KEEP", "old")]));
}

// ---- app users ----

fn new_user(email: &str, password: Option<&str>) -> crate::NewUser {
    crate::NewUser {
        email: email.into(),
        password: password.map(String::from),
        full_name: Some("Ann Example".into()),
        role: crate::UserRole::User,
        is_verified: false,
    }
}

pub async fn users_create_find_list_with_case_insensitive_email(store: Store) {
    let app = app(&store).await;
    let ann = store.create_user(&app.id, new_user("  Ann@Example.TEST ", Some("password-1"))).await.unwrap();
    assert_eq!(ann.email, "ann@example.test");
    assert_eq!(ann.id.len(), 24);
    assert_eq!(
        (ann.role, ann.is_verified, ann.disabled, ann.has_password),
        (crate::UserRole::User, false, false, true)
    );
    assert_eq!(store.user(&app.id, &ann.id).await.unwrap().as_ref(), Some(&ann));
    assert_eq!(store.user_by_email(&app.id, "ANN@example.test").await.unwrap().as_ref(), Some(&ann));
    assert_eq!(store.user_by_email(&app.id, "not an address").await.unwrap(), None);
    let err = store.create_user(&app.id, new_user("ann@EXAMPLE.test", Some("password-2"))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let invited = store.create_user(&app.id, new_user("bob@example.test", None)).await.unwrap();
    assert!(!invited.has_password);
    let listed: Vec<String> = store.list_users(&app.id).await.unwrap().into_iter().map(|u| u.email).collect();
    assert_eq!(listed, ["ann@example.test", "bob@example.test"]);
    for (email, password) in [("no-at-sign", Some("password-1")), ("c@example.test", Some("short"))] {
        let err = store.create_user(&app.id, new_user(email, password)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{email}: {err:?}");
    }
    let err = store.create_user("000000000000000000000000", new_user("x@example.test", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(store.list_users(&app.id).await.unwrap().len(), 2, "failed creates store nothing");
}

pub async fn users_are_scoped_to_their_app(store: Store) {
    let first = app(&store).await;
    let second = app(&store).await;
    let ann = store.create_user(&first.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    // The same address is a different account in another app.
    let other = store.create_user(&second.id, new_user("ann@example.test", Some("password-2"))).await.unwrap();
    assert_ne!(ann.id, other.id);
    assert_eq!(store.user(&second.id, &ann.id).await.unwrap(), None);
    assert!(store.check_password(&second.id, "ann@example.test", "password-1").await.unwrap().is_none());
    assert_eq!(store.check_password(&first.id, "ann@example.test", "password-1").await.unwrap().unwrap().id, ann.id);
    let err = store.update_user(&second.id, &ann.id, crate::UserUpdate::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn passwords_check_and_change(store: Store) {
    let app = app(&store).await;
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    assert_eq!(store.check_password(&app.id, "ANN@example.test", "password-1").await.unwrap().unwrap().id, ann.id);
    assert!(store.check_password(&app.id, "ann@example.test", "password-2").await.unwrap().is_none());
    assert!(store.check_password(&app.id, "nobody@example.test", "password-1").await.unwrap().is_none());
    assert!(store.check_password(&app.id, "", "").await.unwrap().is_none());
    assert_eq!(store.user(&app.id, &ann.id).await.unwrap().unwrap().password_stamp, ann.password_stamp);
    store.set_password(&app.id, &ann.id, "password-2").await.unwrap();
    assert!(store.check_password(&app.id, "ann@example.test", "password-1").await.unwrap().is_none());
    let changed = store.check_password(&app.id, "ann@example.test", "password-2").await.unwrap().unwrap();
    assert_ne!(changed.password_stamp, ann.password_stamp, "a new password, a new stamp");
    store.set_password(&app.id, &ann.id, "password-2").await.unwrap();
    let again = store.user(&app.id, &ann.id).await.unwrap().unwrap();
    assert_ne!(again.password_stamp, changed.password_stamp, "even the same password again (a new salt)");
    let err = store.set_password(&app.id, &ann.id, "short").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    let invited = store.create_user(&app.id, new_user("bob@example.test", None)).await.unwrap();
    assert!(store.check_password(&app.id, "bob@example.test", "").await.unwrap().is_none(), "no password, no login");
    let err = store.set_password(&app.id, "000000000000000000000000", "password-3").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    store.set_password(&app.id, &invited.id, "password-3").await.unwrap();
    assert!(store.check_password(&app.id, "bob@example.test", "password-3").await.unwrap().is_some());
}

pub async fn user_updates_merge_custom_fields(store: Store) {
    let app = app(&store).await;
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    let mut data = serde_json::Map::new();
    data.insert("bio".into(), json!("hi"));
    data.insert("prefs".into(), json!({"dark": true}));
    let update = crate::UserUpdate { is_verified: Some(true), data, ..Default::default() };
    let updated = store.update_user(&app.id, &ann.id, update).await.unwrap();
    assert!(updated.is_verified);
    assert_eq!(updated.data["prefs"], json!({"dark": true}));
    assert!(updated.updated_at >= ann.updated_at);
    let mut data = serde_json::Map::new();
    data.insert("bio".into(), json!("changed"));
    let update = crate::UserUpdate {
        role: Some(crate::UserRole::Admin),
        full_name: Some(None),
        disabled: Some(true),
        data,
        ..Default::default()
    };
    let updated = store.update_user(&app.id, &ann.id, update).await.unwrap();
    assert_eq!((updated.role, updated.full_name.as_deref(), updated.disabled), (crate::UserRole::Admin, None, true));
    assert_eq!(updated.data["bio"], "changed");
    assert_eq!(updated.data["prefs"], json!({"dark": true}), "other fields stay");
    assert_eq!(store.user(&app.id, &ann.id).await.unwrap().unwrap(), updated);
}

pub async fn codes_are_single_use_expiring_and_limited(store: Store) {
    use crate::{CodeCheck, CodePurpose};
    let app = app(&store).await;
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    let take = |code: &'static str| store.take_code(&app.id, &ann.id, CodePurpose::Verify, code);
    assert_eq!(take("123456").await.unwrap(), CodeCheck::Invalid, "no code yet");
    store.put_code(&app.id, &ann.id, CodePurpose::Verify, "123456", 60_000).await.unwrap();
    assert_eq!(take("654321").await.unwrap(), CodeCheck::Invalid);
    assert_eq!(
        store.take_code(&app.id, &ann.id, CodePurpose::Reset, "123456").await.unwrap(),
        CodeCheck::Invalid,
        "codes are bound to their purpose"
    );
    assert_eq!(take("123456").await.unwrap(), CodeCheck::Valid);
    assert_eq!(take("123456").await.unwrap(), CodeCheck::Invalid, "single use");
    // A new code replaces the old one.
    store.put_code(&app.id, &ann.id, CodePurpose::Verify, "111111", 60_000).await.unwrap();
    store.put_code(&app.id, &ann.id, CodePurpose::Verify, "222222", 60_000).await.unwrap();
    assert_eq!(take("111111").await.unwrap(), CodeCheck::Invalid);
    assert_eq!(take("222222").await.unwrap(), CodeCheck::Valid);
    // Expired.
    store.put_code(&app.id, &ann.id, CodePurpose::Verify, "333333", -1).await.unwrap();
    assert_eq!(take("333333").await.unwrap(), CodeCheck::Invalid);
    // Too many wrong guesses void the code, even the right one afterwards.
    store.put_code(&app.id, &ann.id, CodePurpose::Verify, "444444", 60_000).await.unwrap();
    for _ in 0..crate::MAX_CODE_ATTEMPTS {
        assert_eq!(take("000000").await.unwrap(), CodeCheck::Invalid);
    }
    assert_eq!(take("444444").await.unwrap(), CodeCheck::Invalid);
    // A new code brings no new guesses: the spent count (and its expiry) carry over.
    store.put_code(&app.id, &ann.id, CodePurpose::Verify, "555555", 60_000).await.unwrap();
    assert_eq!(take("555555").await.unwrap(), CodeCheck::Invalid, "resending does not restore the guesses");
    // Nor does a resend in the middle: two guesses, a new code, three more and it is spent.
    let bob = store.create_user(&app.id, new_user("bob@example.test", Some("password-1"))).await.unwrap();
    let take_bob = |code: &'static str| store.take_code(&app.id, &bob.id, CodePurpose::Verify, code);
    store.put_code(&app.id, &bob.id, CodePurpose::Verify, "121212", 60_000).await.unwrap();
    for _ in 0..2 {
        assert_eq!(take_bob("000000").await.unwrap(), CodeCheck::Invalid);
    }
    store.put_code(&app.id, &bob.id, CodePurpose::Verify, "343434", 60_000).await.unwrap();
    for _ in 2..crate::MAX_CODE_ATTEMPTS {
        assert_eq!(take_bob("000000").await.unwrap(), CodeCheck::Invalid);
    }
    assert_eq!(take_bob("343434").await.unwrap(), CodeCheck::Invalid, "the count carried over the resend");
    // A new code does not shorten the spent one's wait either.
    store.put_code(&app.id, &bob.id, CodePurpose::Verify, "565656", -1).await.unwrap();
    assert_eq!(take_bob("565656").await.unwrap(), CodeCheck::Invalid, "a spent code keeps its expiry");
    let err = store.put_code(&app.id, "000000000000000000000000", CodePurpose::Verify, "1", 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn reset_tokens_are_single_use_and_voided_by_a_new_password(store: Store) {
    let app = app(&store).await;
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    let token = store.new_reset_token(&app.id, &ann.id, 60_000).await.unwrap();
    assert!(token.starts_with(&ann.id) && token.len() > 80, "{token}");
    for bad in ["", "x", "nodot", &format!("{}.ffff", ann.id), &token[..token.len() - 1]] {
        assert_eq!(store.take_reset_token(&app.id, bad).await.unwrap(), None, "{bad}");
    }
    let other = app_named(&store, "other").await;
    assert_eq!(store.take_reset_token(&other.id, &token).await.unwrap(), None, "bound to the app");
    assert_eq!(store.take_reset_token(&app.id, &token).await.unwrap().unwrap().id, ann.id);
    assert_eq!(store.take_reset_token(&app.id, &token).await.unwrap(), None, "single use");
    let token = store.new_reset_token(&app.id, &ann.id, 60_000).await.unwrap();
    store.set_password(&app.id, &ann.id, "password-2").await.unwrap();
    assert_eq!(store.take_reset_token(&app.id, &token).await.unwrap(), None, "a new password voids it");
    let token = store.new_reset_token(&app.id, &ann.id, -1).await.unwrap();
    assert_eq!(store.take_reset_token(&app.id, &token).await.unwrap(), None, "expired");
}

pub async fn ensure_app_and_auth_settings(store: Store) {
    let app = store.ensure_app("my-project_1", "My project").await.unwrap();
    assert_eq!((app.id.as_str(), app.name.as_str()), ("my-project_1", "My project"));
    assert_eq!(store.ensure_app("my-project_1", "Renamed").await.unwrap(), app, "idempotent");
    for bad in ["", "a b", "a/b"] {
        assert!(matches!(store.ensure_app(bad, "x").await.unwrap_err(), StoreError::Invalid { .. }), "{bad}");
    }
    assert_eq!(store.require_verification(&app.id).await.unwrap(), None);
    store.set_require_verification(&app.id, false).await.unwrap();
    assert_eq!(store.require_verification(&app.id).await.unwrap(), Some(false));
    store.set_require_verification(&app.id, true).await.unwrap();
    assert_eq!(store.require_verification(&app.id).await.unwrap(), Some(true));
    let err = store.set_require_verification("000000000000000000000000", true).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn a_failed_user_write_changes_nothing(store: Store) {
    let app = app(&store).await;
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    store.set_before_commit_hook(|op: &str| {
        if matches!(op, "create_user" | "set_password" | "update_user" | "delete_user") {
            Err("injected failure".into())
        } else {
            Ok(())
        }
    });
    assert!(store.create_user(&app.id, new_user("bob@example.test", Some("password-1"))).await.is_err());
    assert!(store.set_password(&app.id, &ann.id, "password-2").await.is_err());
    let update = crate::UserUpdate { role: Some(crate::UserRole::Admin), ..Default::default() };
    assert!(store.update_user(&app.id, &ann.id, update).await.is_err());
    let disable = crate::UserUpdate { disabled: Some(true), ..Default::default() };
    assert!(store.update_user(&app.id, &ann.id, disable).await.is_err());
    assert!(store.delete_user(&app.id, &ann.id).await.is_err());
    store.clear_before_commit_hook();
    assert_eq!(store.list_users(&app.id).await.unwrap(), [ann]);
    assert!(store.check_password(&app.id, "ann@example.test", "password-1").await.unwrap().is_some());
}

pub async fn function_net_allow_is_per_app_and_replaced_whole(store: Store) {
    let app = app(&store).await;
    let other = app_named(&store, "other").await;
    assert_eq!(store.function_net_allow(&app.id).await.unwrap(), Vec::<String>::new(), "never set");
    let entries = vec!["10.0.0.5".to_string(), "192.168.1.0/24".to_string()];
    store.set_function_net_allow(&app.id, entries.clone()).await.unwrap();
    assert_eq!(store.function_net_allow(&app.id).await.unwrap(), entries);
    assert!(store.function_net_allow(&other.id).await.unwrap().is_empty(), "per app");
    store.set_function_net_allow(&app.id, vec!["*".into()]).await.unwrap();
    assert_eq!(store.function_net_allow(&app.id).await.unwrap(), ["*"], "replaced whole");
    store.set_function_net_allow(&app.id, Vec::new()).await.unwrap();
    assert!(store.function_net_allow(&app.id).await.unwrap().is_empty(), "emptied");
    let err = store.set_function_net_allow("000000000000000000000000", vec!["*".into()]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let too_many = vec!["10.0.0.1".to_string(); crate::MAX_NET_ALLOW_ENTRIES + 1];
    assert!(matches!(store.set_function_net_allow(&app.id, too_many).await.unwrap_err(), StoreError::Invalid { .. }));
    assert!(matches!(
        store.set_function_net_allow(&app.id, vec![" ".into()]).await.unwrap_err(),
        StoreError::Invalid { .. }
    ));
}

pub async fn disabling_a_user_changes_its_stamp_for_good(store: Store) {
    let app = app(&store).await;
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    let update = |disabled: Option<bool>, role: Option<crate::UserRole>| crate::UserUpdate {
        disabled,
        role,
        ..Default::default()
    };
    let admin = store.update_user(&app.id, &ann.id, update(None, Some(crate::UserRole::Admin))).await.unwrap();
    assert_eq!(admin.password_stamp, ann.password_stamp, "other changes keep the stamp");
    let disabled = store.update_user(&app.id, &ann.id, update(Some(true), None)).await.unwrap();
    assert!(disabled.disabled);
    assert_ne!(disabled.password_stamp, ann.password_stamp, "disabling voids the tokens");
    assert_eq!(store.user(&app.id, &ann.id).await.unwrap().unwrap().password_stamp, disabled.password_stamp);
    let again = store.update_user(&app.id, &ann.id, update(Some(true), None)).await.unwrap();
    assert_eq!(again.password_stamp, disabled.password_stamp, "disabling a disabled user changes nothing");
    let enabled = store.update_user(&app.id, &ann.id, update(Some(false), None)).await.unwrap();
    assert!(!enabled.disabled);
    assert_eq!(enabled.password_stamp, disabled.password_stamp, "enabling does not bring old tokens back");
    assert_ne!(enabled.password_stamp, ann.password_stamp);
    let found = store.check_password(&app.id, "ann@example.test", "password-1").await.unwrap().unwrap();
    assert_eq!(found.password_stamp, enabled.password_stamp, "login mints tokens with the new stamp");
    let twice = store.update_user(&app.id, &ann.id, update(Some(true), None)).await.unwrap();
    assert_ne!(twice.password_stamp, enabled.password_stamp, "each disabling is a new epoch");
}

pub async fn deleting_a_user_removes_it_and_its_codes(store: Store) {
    let app = app(&store).await;
    let other = app_named(&store, "other").await;
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    let twin = store.create_user(&other.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    let token = store.new_reset_token(&app.id, &ann.id, 60_000).await.unwrap();
    assert!(!store.delete_user(&other.id, &ann.id).await.unwrap(), "bound to its app");
    assert!(store.delete_user(&app.id, &ann.id).await.unwrap());
    assert_eq!(store.user(&app.id, &ann.id).await.unwrap(), None);
    assert!(store.check_password(&app.id, "ann@example.test", "password-1").await.unwrap().is_none());
    assert_eq!(store.take_reset_token(&app.id, &token).await.unwrap(), None);
    assert!(!store.delete_user(&app.id, &ann.id).await.unwrap(), "already gone");
    assert_eq!(store.user(&other.id, &twin.id).await.unwrap().as_ref(), Some(&twin), "the other app's user stays");
    let again = store.create_user(&app.id, new_user("ann@example.test", Some("password-2"))).await.unwrap();
    assert_ne!(again.id, ann.id, "the address is free again, as a new account");
}

pub async fn sign_in_changes_are_announced(store: Store) {
    use std::sync::{Arc, Mutex};
    let app = app(&store).await;
    let heard: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = heard.clone();
    store.on_user_change(move |change| {
        let heard = match change {
            crate::UserChange::User { app_id, user_id } => (app_id.to_string(), user_id.to_string()),
            crate::UserChange::Everything => ("everything".to_string(), String::new()),
        };
        sink.lock().unwrap().push(heard);
    });
    let take = || std::mem::take(&mut *heard.lock().unwrap());
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    let me = || vec![(app.id.clone(), ann.id.clone())];
    assert_eq!(take(), [], "a new user has nothing to invalidate");
    store.set_password(&app.id, &ann.id, "password-2").await.unwrap();
    assert_eq!(take(), me(), "a new password");
    let fields = crate::UserUpdate { full_name: Some(Some("Ann".into())), ..Default::default() };
    store.update_user(&app.id, &ann.id, fields).await.unwrap();
    assert_eq!(take(), [], "other fields");
    let disable = crate::UserUpdate { disabled: Some(true), ..Default::default() };
    store.update_user(&app.id, &ann.id, disable).await.unwrap();
    assert_eq!(take(), me(), "disabled");
    let enable = crate::UserUpdate { disabled: Some(false), ..Default::default() };
    store.update_user(&app.id, &ann.id, enable).await.unwrap();
    assert_eq!(take(), me(), "enabled");
    assert!(store.set_password(&app.id, "000000000000000000000000", "password-3").await.is_err());
    assert_eq!(take(), [], "a failed write is not announced");
    assert!(store.delete_user(&app.id, &ann.id).await.unwrap());
    assert_eq!(take(), me(), "deleted");
}

// ---- cross-node primitives ----

pub async fn the_function_limit_is_checked_by_the_deploy(store: Store) {
    let app = app(&store).await;
    for name in ["a", "b", "c"] {
        store
            .deploy_with_limit(&app.id, name, crate::PreparedDeployment::new(version(name)).unwrap(), 3)
            .await
            .unwrap();
    }
    let before = stats(&store).await;
    let err = store
        .deploy_with_limit(&app.id, "d", crate::PreparedDeployment::new(version("d")).unwrap(), 3)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::TooManyFunctions { count: 3, limit: 3 });
    assert_eq!((err.status(), err.code()), (422, "too_many_functions"));
    assert_eq!(stats(&store).await, before, "nothing of the refused deploy is stored");
    // Existing functions still deploy and roll back at the limit.
    assert_eq!(
        store
            .deploy_with_limit(&app.id, "a", crate::PreparedDeployment::new(version("a2")).unwrap(), 3)
            .await
            .unwrap()
            .status,
        DeployStatus::Deployed
    );
    assert_eq!(
        store
            .deploy_with_limit(&app.id, "b", crate::PreparedDeployment::new(version("b")).unwrap(), 3)
            .await
            .unwrap()
            .status,
        DeployStatus::Unchanged
    );
    // The limit is per app, and a deleted function frees its place.
    let other = app_named(&store, "other").await;
    store.deploy_with_limit(&other.id, "d", crate::PreparedDeployment::new(version("d")).unwrap(), 3).await.unwrap();
    assert!(store.delete_function(&app.id, "c").await.unwrap());
    store.deploy_with_limit(&app.id, "d", crate::PreparedDeployment::new(version("d")).unwrap(), 3).await.unwrap();
    assert_eq!(store.function_count(&app.id).await.unwrap(), 3);
    // `deploy` itself sets no limit.
    store.deploy(&app.id, "e", version("e")).await.unwrap();
}

pub async fn concurrent_deploys_cannot_pass_the_function_limit(store: Store) {
    let app = app(&store).await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (store, app_id) = (store.clone(), app.id.clone());
            tokio::spawn(async move {
                store
                    .deploy_with_limit(
                        &app_id,
                        &format!("f{i}"),
                        crate::PreparedDeployment::new(version(&i.to_string())).unwrap(),
                        5,
                    )
                    .await
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => passed += 1,
            Err(StoreError::TooManyFunctions { limit: 5, .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(passed, 5);
    assert_eq!(store.function_count(&app.id).await.unwrap(), 5);
}

pub async fn concurrent_deploys_of_one_function_all_land_in_order(store: Store) {
    let app = app(&store).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, app_id) = (store.clone(), app.id.clone());
            tokio::spawn(async move { store.deploy(&app_id, "f", version(&i.to_string())).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap().unwrap().deployment_id);
    }
    let history = store.history(&app.id, "f").await.unwrap();
    let sequences: Vec<i64> = history.iter().map(|h| h.sequence).collect();
    assert_eq!(sequences, (1..=8).rev().collect::<Vec<_>>(), "one activation each, numbered in order");
    let listed: HashSet<String> = history.iter().map(|h| h.deployment_id.clone()).collect();
    assert_eq!(listed, ids);
    let active = store.function(&app.id, "f").await.unwrap().unwrap();
    assert_eq!(active.deployment_id, history[0].deployment_id, "the last activation is the active one");
}

/// The next change, waiting at most 10 seconds.
async fn next_change(changes: &mut crate::Changes) -> Change {
    tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv())
        .await
        .expect("a change is announced within 10 s")
        .expect("the store is open")
}

pub async fn committed_changes_are_announced(store: Store) {
    let mut changes = store.subscribe_changes().await.unwrap();
    let app = app(&store).await;
    let change = |kind| Change { app_id: app.id.clone(), kind, function: None, user: None };
    let function = |kind| Change { function: Some("email/send".into()), ..change(kind) };
    assert_eq!(next_change(&mut changes).await, change(ChangeKind::App));
    store.deploy(&app.id, "email/send", version("1")).await.unwrap();
    assert_eq!(next_change(&mut changes).await, function(ChangeKind::Deploy));
    // Nothing changes, nothing is announced: an unchanged deploy, failed writes.
    store.deploy(&app.id, "email/send", version("1")).await.unwrap();
    store.set_before_commit_hook(|_: &str| Err("injected failure".into()));
    assert!(store.deploy(&app.id, "email/send", version("2")).await.is_err());
    assert!(store.set_secrets(&app.id, secret_map(&[("A", "1")])).await.is_err());
    store.clear_before_commit_hook();
    store.deploy(&app.id, "email/send", version("2")).await.unwrap();
    assert_eq!(next_change(&mut changes).await, function(ChangeKind::Deploy), "the first deploy of version 2");
    store.rollback(&app.id, "email/send", None).await.unwrap();
    assert_eq!(next_change(&mut changes).await, function(ChangeKind::Rollback));
    store.set_secrets(&app.id, secret_map(&[("A", "1")])).await.unwrap();
    assert_eq!(next_change(&mut changes).await, change(ChangeKind::Secrets));
    assert!(store.delete_secret(&app.id, "A").await.unwrap());
    assert_eq!(next_change(&mut changes).await, change(ChangeKind::Secrets));
    let ann = store.create_user(&app.id, new_user("ann@example.test", Some("password-1"))).await.unwrap();
    let user = |kind| Change { user: Some(ann.id.clone()), ..change(kind) };
    assert_eq!(next_change(&mut changes).await, user(ChangeKind::Users));
    store.set_password(&app.id, &ann.id, "password-2").await.unwrap();
    assert_eq!(next_change(&mut changes).await, user(ChangeKind::SignIn));
    let profile = crate::UserUpdate { full_name: Some(Some("Ann".into())), ..Default::default() };
    store.update_user(&app.id, &ann.id, profile).await.unwrap();
    assert_eq!(next_change(&mut changes).await, user(ChangeKind::Users), "a profile change");
    store
        .update_user(&app.id, &ann.id, crate::UserUpdate { disabled: Some(true), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(next_change(&mut changes).await, user(ChangeKind::SignIn), "disabled");
    store.set_require_verification(&app.id, true).await.unwrap();
    assert_eq!(next_change(&mut changes).await, change(ChangeKind::Users), "auth settings: no user");
    assert!(!store.delete_user(&app.id, "000000000000000000000000").await.unwrap());
    assert!(store.delete_user(&app.id, &ann.id).await.unwrap());
    assert_eq!(next_change(&mut changes).await, user(ChangeKind::SignIn), "deleted; nothing for a no-op delete");
    store.set_function_net_allow(&app.id, vec!["10.0.0.5".into()]).await.unwrap();
    assert_eq!(next_change(&mut changes).await, change(ChangeKind::NetAllow));
    let (key, _) = store.create_key(KeyScope::App(app.id.clone()), "ci").await.unwrap();
    assert_eq!(next_change(&mut changes).await, change(ChangeKind::Keys));
    assert!(store.revoke_key(&key.id).await.unwrap());
    assert_eq!(next_change(&mut changes).await, change(ChangeKind::Keys));
    assert!(!store.delete_secret(&app.id, "A").await.unwrap());
    assert!(store.delete_function(&app.id, "email/send").await.unwrap());
    assert_eq!(next_change(&mut changes).await, function(ChangeKind::DeleteFunction), "no event for a no-op delete");
    // Another app's changes carry its own id; a second subscriber sees them too.
    let mut second = store.subscribe_changes().await.unwrap();
    let other = app_named(&store, "other").await;
    for stream in [&mut changes, &mut second] {
        assert_eq!(
            next_change(stream).await,
            Change { app_id: other.id.clone(), kind: ChangeKind::App, function: None, user: None }
        );
    }
    assert_eq!(changes.try_recv(), None, "nothing else was announced");
}

// ---- app data (entities) ----

fn schemas(list: &[(&str, serde_json::Value)]) -> homebase_entities::Schemas {
    homebase_entities::Schemas::parse(list.iter().map(|(n, v)| (*n, v))).unwrap()
}

fn task_schema() -> homebase_entities::Schemas {
    schemas(&[(
        "Task",
        json!({"properties": {"title": {"type": "string"}, "n": {"type": "number"}, "tags": {"type": "array"}}}),
    )])
}

fn new_record(data: serde_json::Value, by: Option<&str>) -> crate::NewRecord {
    crate::NewRecord {
        data: data.as_object().unwrap().clone(),
        created_by: by.map(String::from),
        created_by_id: by.map(|b| format!("id-{b}")),
        is_sample: false,
    }
}

fn filter(query: serde_json::Value) -> homebase_entities::Filter {
    homebase_entities::Filter::parse(&query).unwrap()
}

/// Every change from the start, once at least `n` are readable. On PostgreSQL a committed
/// change becomes readable when every transaction older than it has ended (other tests' ones
/// included), which takes a moment on a busy server.
async fn changes_at_least(store: &Store, n: usize) -> Vec<crate::EntityChange> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let changes = store.entity_changes(crate::ChangeCursor::default(), 10_000).await.unwrap();
        if changes.len() >= n || std::time::Instant::now() > deadline {
            return changes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub async fn entity_schemas_are_replaced_whole(store: Store) {
    let app = app(&store).await;
    let first = schemas(&[("Task", json!({"properties": {"a": {"type": "string"}}})), ("Note", json!({}))]);
    let changes = store.set_entity_schemas(&app.id, &first).await.unwrap();
    assert_eq!(
        (changes.created, changes.updated, changes.deleted),
        (vec!["Note".into(), "Task".into()], vec![], vec![])
    );
    let second =
        schemas(&[("task", json!({"properties": {"a": {"type": "number"}}})), ("Note", json!({})), ("Tag", json!({}))]);
    let changes = store.set_entity_schemas(&app.id, &second).await.unwrap();
    assert_eq!(changes.created, ["Tag"]);
    assert_eq!(changes.updated, ["task"], "a new name's case or schema is an update");
    assert!(changes.deleted.is_empty());
    let changes = store.set_entity_schemas(&app.id, &schemas(&[("Tag", json!({}))])).await.unwrap();
    assert_eq!((changes.created.len(), changes.updated.len()), (0, 0));
    let mut deleted = changes.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, ["Note", "task"]);
    let stored = store.entity_schemas(&app.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored.get("TAG").is_some());
    assert!(store.entity_schemas("other").await.unwrap().is_empty());
    assert!(matches!(store.set_entity_schemas("nope", &first).await, Err(StoreError::NotFound { .. })));
}

pub async fn records_are_created_read_counted_and_deleted(store: Store) {
    let app = app(&store).await;
    let other = app_named(&store, "Other").await;
    let set = task_schema();
    store.set_entity_schemas(&app.id, &set).await.unwrap();
    let task = set.get("task").unwrap();
    let made = store
        .create_records(
            &app.id,
            task,
            vec![
                new_record(json!({"title": "a", "n": 1}), Some("ann@x.test")),
                new_record(json!({"title": "b"}), None),
            ],
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 2);
    assert_eq!(made[0].id.len(), 24);
    assert_ne!(made[0].id, made[1].id);
    assert!(made[0].created_date.ends_with('Z') && made[0].created_date == made[0].updated_date);
    let got = store.get_record(&app.id, task, &made[0].id, &homebase_entities::Filter::True).await.unwrap().unwrap();
    assert_eq!(got, made[0]);
    assert!(
        store.get_record(&other.id, task, &made[0].id, &homebase_entities::Filter::True).await.unwrap().is_none(),
        "apps are apart"
    );
    let hidden = filter(json!({"created_by": "bob@x.test"}));
    assert!(
        store.get_record(&app.id, task, &made[0].id, &hidden).await.unwrap().is_none(),
        "a record the filter refuses is missing"
    );
    assert_eq!(store.count_records(&app.id, task, &homebase_entities::Filter::True).await.unwrap(), 2);
    assert_eq!(store.count_records(&app.id, task, &filter(json!({"created_by": null}))).await.unwrap(), 1);
    assert!(store.delete_record(&app.id, task, &made[0].id, &hidden).await.unwrap().is_none());
    assert_eq!(
        store.delete_record(&app.id, task, &made[0].id, &homebase_entities::Filter::True).await.unwrap().unwrap().id,
        made[0].id
    );
    assert!(store.delete_record(&app.id, task, &made[0].id, &homebase_entities::Filter::True).await.unwrap().is_none());
    let gone = store.delete_records(&app.id, task, &homebase_entities::Filter::True).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(store.count_records(&app.id, task, &homebase_entities::Filter::True).await.unwrap(), 0);
}

pub async fn record_queries_filter_sort_and_page_in_the_database(store: Store) {
    let app = app(&store).await;
    let set = task_schema();
    store.set_entity_schemas(&app.id, &set).await.unwrap();
    let task = set.get("Task").unwrap();
    let mut new = Vec::new();
    for i in 0..20 {
        new.push(new_record(json!({"title": format!("t{i:02}"), "n": i % 5, "tags": if i % 2 == 0 { json!(["even"]) } else { json!(["odd"]) }}), None));
    }
    store.create_records(&app.id, task, new).await.unwrap();
    let list = |q: serde_json::Value, sort: &str, limit: u64, skip: u64| {
        let store = store.clone();
        let app = app.id.clone();
        let task = task.clone();
        let sort = sort.to_string();
        async move {
            let query = homebase_entities::ListQuery {
                filter: filter(q),
                sort: homebase_entities::Sort::parse(&sort).unwrap(),
                limit: Some(limit),
                skip,
            };
            store
                .list_records(&app, &task, &query)
                .await
                .unwrap()
                .iter()
                .map(|r| r.data["title"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(json!({"n": {"$gte": 3}, "tags": "even"}), "title", 10, 0).await, ["t04", "t08", "t14", "t18"]);
    assert_eq!(list(json!({}), "-n,title", 3, 1).await, ["t09", "t14", "t19"]);
    assert_eq!(list(json!({"title": {"$regex": "^t1[0-2]$"}}), "-title", 10, 0).await, ["t12", "t11", "t10"]);
    assert_eq!(
        list(json!({"$or": [{"n": 0}, {"title": "t01"}]}), "title", 10, 0).await,
        ["t00", "t01", "t05", "t10", "t15"]
    );
    assert_eq!(store.count_records(&app.id, task, &filter(json!({"tags": {"$ne": "even"}}))).await.unwrap(), 10);
}

pub async fn record_updates_merge_under_their_filter(store: Store) {
    let app = app(&store).await;
    let set = task_schema();
    store.set_entity_schemas(&app.id, &set).await.unwrap();
    let task = set.get("Task").unwrap();
    let made = store
        .create_records(&app.id, task, vec![new_record(json!({"title": "a", "n": 1}), Some("ann@x.test"))])
        .await
        .unwrap();
    let id = made[0].id.clone();
    let merged = store
        .update_record::<String, _>(&app.id, task, &id, &homebase_entities::Filter::True, |r| {
            let mut data = r.data.clone();
            data.insert("n".into(), json!(2));
            Ok(data)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(merged.data, *json!({"title": "a", "n": 2}).as_object().unwrap());
    assert_eq!(
        (merged.created_date.as_str(), merged.created_by.as_deref()),
        (made[0].created_date.as_str(), Some("ann@x.test"))
    );
    assert!(merged.updated_date >= made[0].updated_date);
    let refused =
        store
            .update_record::<String, _>(&app.id, task, &id, &filter(json!({"created_by": "bob@x.test"})), |_| {
                Ok(Map::new())
            })
            .await;
    assert_eq!(refused, Ok(None));
    let rejected =
        store.update_record(&app.id, task, &id, &homebase_entities::Filter::True, |_| Err("no".to_string())).await;
    assert_eq!(rejected, Err(crate::WriteError::Rejected("no".to_string())));
    assert_eq!(
        store.get_record(&app.id, task, &id, &homebase_entities::Filter::True).await.unwrap().unwrap().data["n"],
        2
    );
    // Concurrent merges of different fields of one record all land.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, app, task, id) = (store.clone(), app.id.clone(), task.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            store
                .update_record::<String, _>(&app, &task, &id, &homebase_entities::Filter::True, move |r| {
                    let mut data = r.data.clone();
                    data.insert(format!("f{i}"), json!(i));
                    Ok(data)
                })
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let last = store.get_record(&app.id, task, &id, &homebase_entities::Filter::True).await.unwrap().unwrap();
    for i in 0..8 {
        assert_eq!(last.data[&format!("f{i}")], i, "{:?}", last.data);
    }
}

pub async fn every_record_write_appends_one_change(store: Store) {
    let app = app(&store).await;
    let set = task_schema();
    store.set_entity_schemas(&app.id, &set).await.unwrap();
    let task = set.get("task").unwrap();
    let made = store
        .create_records(
            &app.id,
            task,
            vec![new_record(json!({"title": "a"}), None), new_record(json!({"title": "b"}), None)],
        )
        .await
        .unwrap();
    store
        .update_record::<String, _>(&app.id, task, &made[0].id, &homebase_entities::Filter::True, |r| {
            let mut d = r.data.clone();
            d.insert("n".into(), json!(5));
            Ok(d)
        })
        .await
        .unwrap();
    store.delete_records(&app.id, task, &homebase_entities::Filter::True).await.unwrap();
    let changes = changes_at_least(&store, 5).await;
    assert_eq!(changes.len(), 5);
    let ops: Vec<(crate::ChangeOp, &str)> = changes.iter().map(|c| (c.operation, c.record_id.as_str())).collect();
    use crate::ChangeOp::*;
    assert_eq!(
        &ops[..3],
        &[(Create, made[0].id.as_str()), (Create, made[1].id.as_str()), (Update, made[0].id.as_str())]
    );
    let mut deletes: Vec<&str> = ops[3..]
        .iter()
        .map(|(op, id)| {
            assert_eq!(*op, Delete);
            *id
        })
        .collect();
    deletes.sort();
    let mut ids = vec![made[0].id.as_str(), made[1].id.as_str()];
    ids.sort();
    assert_eq!(deletes, ids);
    assert!(changes.iter().all(|c| c.app_id == app.id && c.entity == "Task"), "the declared name");
    assert_eq!(changes[0].after.as_ref().unwrap()["title"], "a");
    assert!(changes[0].before.is_none());
    assert_eq!(changes[2].before.as_ref().unwrap()["n"], serde_json::Value::Null);
    assert_eq!(changes[2].after.as_ref().unwrap()["n"], 5);
    assert!(changes[3].after.is_none() && changes[3].before.is_some());
    assert!(changes.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let rest = store.entity_changes(changes[1].cursor, 100).await.unwrap();
    assert_eq!(rest, changes[2..].to_vec(), "reading on from a cursor");
}

pub async fn a_failed_record_write_leaves_no_record_and_no_change(store: Store) {
    let app = app(&store).await;
    let set = task_schema();
    store.set_entity_schemas(&app.id, &set).await.unwrap();
    let task = set.get("task").unwrap();
    let kept = store.create_records(&app.id, task, vec![new_record(json!({"title": "keep"}), None)]).await.unwrap();
    assert_eq!(changes_at_least(&store, 1).await.len(), 1);
    store.set_before_commit_hook(|op: &str| {
        if op.ends_with("_record") || op.ends_with("_records") { Err("injected failure".into()) } else { Ok(()) }
    });
    assert!(store.create_records(&app.id, task, vec![new_record(json!({"title": "x"}), None)]).await.is_err());
    let update = store
        .update_record::<String, _>(&app.id, task, &kept[0].id, &homebase_entities::Filter::True, |_| Ok(Map::new()))
        .await;
    assert!(matches!(update, Err(crate::WriteError::Store(_))), "{update:?}");
    assert!(store.delete_records(&app.id, task, &homebase_entities::Filter::True).await.is_err());
    store.clear_before_commit_hook();
    // A write after the failed ones: once its change is readable, any of theirs would be too.
    let other = set.get("task").unwrap();
    let marker =
        store.create_records(&app.id, other, vec![new_record(json!({"title": "marker"}), None)]).await.unwrap();
    let changes = changes_at_least(&store, 2).await;
    let ids: Vec<&str> = changes.iter().map(|c| c.record_id.as_str()).collect();
    assert_eq!(ids, [kept[0].id.as_str(), marker[0].id.as_str()], "no change of a failed write");
    store.delete_record(&app.id, other, &marker[0].id, &homebase_entities::Filter::True).await.unwrap();
    let left = store
        .list_records(
            &app.id,
            task,
            &homebase_entities::ListQuery {
                filter: homebase_entities::Filter::True,
                sort: homebase_entities::Sort::newest_first(),
                limit: None,
                skip: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(left, kept);
}

pub async fn concurrent_record_writers_never_lose_or_duplicate_a_change(store: Store) {
    const WRITERS: usize = 6;
    const ROUNDS: usize = 12;
    let app = app(&store).await;
    let set = task_schema();
    store.set_entity_schemas(&app.id, &set).await.unwrap();
    let task = set.get("task").unwrap().clone();
    // How many changes the writers made, once they are done (0 until then).
    let target = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // A reader follows the outbox while the writers write, keeping its cursor, until it has
    // seen as many changes as were made (or for at most 30 s).
    let reader = {
        let (store, target) = (store.clone(), target.clone());
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (crate::ChangeCursor::default(), Vec::new());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let batch = store.entity_changes(cursor, 7).await.unwrap();
                if let Some(last) = batch.last() {
                    cursor = last.cursor;
                }
                let empty = batch.is_empty();
                seen.extend(batch);
                let wanted = target.load(std::sync::atomic::Ordering::SeqCst);
                if (wanted > 0 && seen.len() >= wanted) || std::time::Instant::now() > deadline {
                    // Anything more would be a duplicate: one last look.
                    seen.extend(store.entity_changes(cursor, 100).await.unwrap());
                    break;
                }
                if empty {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
            seen
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, app, task) = (store.clone(), app.id.clone(), task.clone());
        writers.push(tokio::spawn(async move {
            let mut writes = 0;
            for round in 0..ROUNDS {
                let made = store
                    .create_records(
                        &app,
                        &task,
                        vec![
                            new_record(json!({"title": format!("w{w}r{round}a")}), None),
                            new_record(json!({"title": format!("w{w}r{round}b")}), None),
                        ],
                    )
                    .await
                    .unwrap();
                writes += 2;
                store
                    .update_record::<String, _>(&app, &task, &made[0].id, &homebase_entities::Filter::True, |r| {
                        let mut d = r.data.clone();
                        d.insert("n".into(), json!(1));
                        Ok(d)
                    })
                    .await
                    .unwrap()
                    .unwrap();
                writes += 1;
                if round % 3 == 0 {
                    writes += store
                        .delete_records(&app, &task, &filter(json!({"title": format!("w{w}r{round}b")})))
                        .await
                        .unwrap()
                        .len();
                }
            }
            writes
        }));
    }
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    target.store(total, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let stored = changes_at_least(&store, total).await;
    assert_eq!(stored.len(), total, "one change per write");
    assert_eq!(seen.len(), total, "the follower saw every change");
    let mut cursors: Vec<_> = seen.iter().map(|c| c.cursor).collect();
    cursors.dedup();
    assert_eq!(cursors.len(), total, "no change twice");
    let mut as_stored: Vec<_> = stored.iter().map(|c| c.cursor).collect();
    as_stored.sort();
    let mut as_seen = cursors.clone();
    as_seen.sort();
    assert_eq!(as_seen, as_stored);
    // Each record's changes come in the order they were made: create, update, delete.
    let mut per_record: BTreeMap<&str, Vec<crate::ChangeOp>> = BTreeMap::new();
    for change in &seen {
        per_record.entry(change.record_id.as_str()).or_default().push(change.operation);
    }
    use crate::ChangeOp::*;
    for (id, ops) in per_record {
        assert!(matches!(ops.as_slice(), [Create] | [Create, Update] | [Create, Delete]), "{id}: {ops:?}");
    }
}

pub async fn many_records_update_in_one_batch(store: Store) {
    let app = app(&store).await;
    let set = task_schema();
    store.set_entity_schemas(&app.id, &set).await.unwrap();
    let task = set.get("task").unwrap();
    let new = (0..5).map(|i| new_record(json!({"title": format!("t{i}"), "n": i}), None)).collect();
    store.create_records(&app.id, task, new).await.unwrap();
    let bump = |r: &homebase_entities::Record| -> Result<Map<String, serde_json::Value>, String> {
        let mut d = r.data.clone();
        d.insert("n".into(), json!(d["n"].as_i64().unwrap() + 10));
        Ok(d)
    };
    let (updated, more) =
        store.update_records(&app.id, task, &filter(json!({"n": {"$lt": 3}})), 2, bump).await.unwrap();
    assert_eq!((updated.len(), more), (2, true));
    let (updated, more) =
        store.update_records(&app.id, task, &filter(json!({"n": {"$lt": 3}})), 2, bump).await.unwrap();
    assert_eq!((updated.len(), more), (1, false));
    assert_eq!(store.count_records(&app.id, task, &filter(json!({"n": {"$gte": 10}}))).await.unwrap(), 3);
    // A refusal of one record writes nothing.
    let refuse =
        |r: &homebase_entities::Record| if r.data["n"] == 12 { Err("no".to_string()) } else { Ok(r.data.clone()) };
    let refused = store.update_records(&app.id, task, &homebase_entities::Filter::True, 10, refuse).await;
    assert_eq!(refused, Err(crate::WriteError::Rejected("no".to_string())));
    let changes = changes_at_least(&store, 8).await;
    assert_eq!(changes.iter().filter(|c| c.operation == crate::ChangeOp::Update).count(), 3);
}

fn counter(key: &str, max: u32, refuse: bool) -> crate::LimitCounter {
    crate::LimitCounter { key: key.into(), max, refuse }
}

pub async fn limits_count_refuse_give_back_and_reset(store: Store) {
    use crate::LimitHit;
    use std::time::Duration;
    let window = Duration::from_secs(600);
    let (account, address) = (counter("account", 2, true), counter("address", 3, false));
    let both = [account.clone(), address.clone()];
    for _ in 0..2 {
        assert_eq!(store.hit_limits(&both, window).await.unwrap(), LimitHit::Counted { over: vec![None, None] });
    }
    // The account is at its limit: refused, and nothing counted (the address stays at 2).
    let LimitHit::Refused { index: 0, retry_after } = store.hit_limits(&both, window).await.unwrap() else {
        panic!("the account refuses")
    };
    assert!(retry_after > Duration::from_secs(590) && retry_after <= window, "{retry_after:?}");
    let other = [counter("other", 2, true), address.clone()];
    assert_eq!(store.hit_limits(&other, window).await.unwrap(), LimitHit::Counted { over: vec![None, None] });
    // The address is at 3 now: counted anyway, and reported over.
    let LimitHit::Counted { over } = store.hit_limits(&other, window).await.unwrap() else { panic!("counted") };
    assert!(over[0].is_none() && over[1].is_some(), "{over:?}");
    // A hit given back makes room once; a reset starts the counter over.
    store.give_back_limit("account").await.unwrap();
    assert!(matches!(
        store.hit_limits(std::slice::from_ref(&account), window).await.unwrap(),
        LimitHit::Counted { .. }
    ));
    assert!(matches!(
        store.hit_limits(std::slice::from_ref(&account), window).await.unwrap(),
        LimitHit::Refused { .. }
    ));
    store.reset_limit("account").await.unwrap();
    assert!(matches!(
        store.hit_limits(std::slice::from_ref(&account), window).await.unwrap(),
        LimitHit::Counted { .. }
    ));
    store.give_back_limit("never-hit").await.unwrap();
    store.reset_limit("never-hit").await.unwrap();
    assert!(store.hit_limits(&[counter("", 1, true)], window).await.is_err(), "an empty key");
}

pub async fn limit_windows_end_and_are_swept(store: Store) {
    use crate::LimitHit;
    use std::time::Duration;
    let short = Duration::from_millis(300);
    let one = [counter("short", 1, true)];
    assert!(matches!(store.hit_limits(&one, short).await.unwrap(), LimitHit::Counted { .. }));
    assert!(matches!(store.hit_limits(&one, short).await.unwrap(), LimitHit::Refused { .. }));
    let long = [counter("long", 1, true)];
    assert!(matches!(store.hit_limits(&long, Duration::from_secs(600)).await.unwrap(), LimitHit::Counted { .. }));
    // The window has no signal of its end: wait it out.
    tokio::time::sleep(short + Duration::from_millis(50)).await;
    assert_eq!(store.sweep_limits().await.unwrap(), 1, "the ended window only");
    assert!(matches!(store.hit_limits(&one, short).await.unwrap(), LimitHit::Counted { .. }), "a new window");
    assert!(matches!(store.hit_limits(&long, Duration::from_secs(600)).await.unwrap(), LimitHit::Refused { .. }));
}

/// The check and the count are one step: of many concurrent hits, exactly the limit pass.
pub async fn concurrent_hits_never_pass_a_limit(store: Store) {
    use crate::LimitHit;
    use std::time::Duration;
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                // Half name the counters in the other order: locks must not deadlock.
                let pair = [counter("shared", 5, true), counter(&format!("own-{i}"), 5, true)];
                let pair = if i % 2 == 0 { pair } else { [pair[1].clone(), pair[0].clone()] };
                store.hit_limits(&pair, Duration::from_secs(600)).await.unwrap()
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        if let LimitHit::Counted { .. } = task.await.unwrap() {
            passed += 1;
        }
    }
    assert_eq!(passed, 5);
}

/// A node reads a deployment's files only when its folder is missing.
pub async fn function_heads_name_files_and_materialize_only_what_is_missing(store: Store) {
    let app = app(&store).await;
    let nested = deployment(&[("entry.ts", "import '../../shared/a.ts';"), ("../../shared/a.ts", "export {}")]);
    let id = store.deploy(&app.id, "email/send", nested).await.unwrap().deployment_id;
    store.deploy(&app.id, "b", version("b")).await.unwrap();
    let heads = store.function_heads(&app.id).await.unwrap();
    let names: Vec<&str> = heads.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["b", "email/send"]);
    let head = &heads[1];
    assert_eq!((head.deployment_id.as_str(), head.entry.as_str()), (id.as_str(), "entry.ts"));
    assert_eq!(head.paths, ["../../shared/a.ts", "entry.ts"]);
    let dir = tempfile::tempdir().unwrap();
    let entry = store.materialize_function(head, dir.path()).await.unwrap();
    assert_eq!(entry, store.materialize(&id, dir.path()).await.unwrap(), "the same layout as materialize");
    assert_eq!(std::fs::read_to_string(&entry).unwrap(), "import '../../shared/a.ts';");
    // Gone from the store (deleted and collected), the deployment still runs from its folder.
    assert!(store.delete_function(&app.id, "email/send").await.unwrap());
    assert!(matches!(store.materialize(&id, dir.path()).await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.materialize_function(head, dir.path()).await.unwrap(), entry, "read nothing");
    let other = tempfile::tempdir().unwrap();
    assert!(store.materialize_function(head, other.path()).await.is_err(), "a missing folder is read from the store");
}

/// An app's digest changes with what its workers run, and only then.
pub async fn app_digests_change_with_what_workers_run(store: Store) {
    let (one, two) = (app_named(&store, "one").await, app_named(&store, "two").await);
    let digests = store.app_digests().await.unwrap();
    assert_eq!(digests.len(), 2, "every app, also one with nothing deployed");
    let mut last = digests.clone();
    let mut changed = |now: std::collections::BTreeMap<String, String>, what: &str| {
        assert_eq!(now[&two.id], last[&two.id], "{what}: the other app is untouched");
        let differs = now[&one.id] != last[&one.id];
        last = now;
        differs
    };
    store.deploy(&one.id, "f", version("1")).await.unwrap();
    assert!(changed(store.app_digests().await.unwrap(), "a deploy"));
    store.deploy(&one.id, "f", version("2")).await.unwrap();
    assert!(changed(store.app_digests().await.unwrap(), "another deploy"));
    store.rollback(&one.id, "f", None).await.unwrap();
    assert!(changed(store.app_digests().await.unwrap(), "a rollback"));
    let secret = BTreeMap::from([("KEY".to_string(), "value-1".to_string())]);
    store.set_secrets(&one.id, secret.clone()).await.unwrap();
    assert!(changed(store.app_digests().await.unwrap(), "a new secret"));
    store.set_secrets(&one.id, secret).await.unwrap();
    assert!(changed(store.app_digests().await.unwrap(), "a secret set again"));
    store.set_function_net_allow(&one.id, vec!["10.0.0.1".into()]).await.unwrap();
    assert!(changed(store.app_digests().await.unwrap(), "a net-allow list"));
    store.create_key(KeyScope::App(one.id.clone()), "ci").await.unwrap();
    assert!(!changed(store.app_digests().await.unwrap(), "a key"));
    store.delete_function(&one.id, "f").await.unwrap();
    assert!(changed(store.app_digests().await.unwrap(), "a deletion"));
}
