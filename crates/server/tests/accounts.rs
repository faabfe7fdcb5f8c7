//! Account locks and token invalidation against `serve` ([`TestPlatform`]) and real Deno: a
//! token issued before a password reset or change, and the token of a disabled or deleted user,
//! are refused on the function routes too (the function never runs), without a store read per
//! request; a completed reset lifts the account's login lock.

use std::time::Duration;

use homebase_identity::LoginLimits;
use homebase_identity::mail::{Mailer, SmtpConfig};
use homebase_testkit::{ADMIN_KEY, PlatformOptions, ReceivedMail, TestPlatform, json_of, smtp_sink};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

/// A function that reports the scheme of the `Authorization` it received.
const WHO: &str = r#"Deno.serve((req) => Response.json({
  function: "who",
  authorization: req.headers.get("authorization")?.split(" ")[0] ?? null,
}));
"#;

struct Setup {
    platform: TestPlatform,
    mails: UnboundedReceiver<ReceivedMail>,
    app: String,
    _dir: tempfile::TempDir,
}

/// A platform with mail caught by an SMTP sink, an app without e-mail verification, the `who`
/// function deployed and `ann@example.test` registered with `pw-123456`.
async fn setup(limits: LoginLimits) -> Setup {
    let (port, mails) = smtp_sink().await;
    let smtp = SmtpConfig::parse(&format!("smtp://127.0.0.1:{port}"), "Homebase <no-reply@homebase.test>").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = PlatformOptions { mailer: Mailer::Smtp(smtp), limits, ..Default::default() };
    let platform = TestPlatform::start_with(dir.path(), options).await;
    let (status, body) = admin(&platform, Method::POST, "/api/apps", json!({ "name": "Shop" })).await;
    assert_eq!(status, 201, "{body}");
    let app = body["id"].as_str().unwrap().to_string();
    let path = format!("/api/apps/{app}/auth/settings");
    let (status, body) = admin(&platform, Method::PUT, &path, json!({ "require_verification": false })).await;
    assert_eq!(status, 200, "{body}");
    let deploy = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": WHO }], "automations": [] });
    let (status, body) = admin(&platform, Method::PUT, &format!("/api/apps/{app}/backend-functions/who"), deploy).await;
    assert_eq!(status, 200, "{body}");
    let setup = Setup { platform, mails, app, _dir: dir };
    let (status, body) =
        setup.post("auth/register", json!({"email": "ann@example.test", "password": "pw-123456"})).await;
    assert_eq!(status, 200, "{body}");
    setup
}

async fn admin(platform: &TestPlatform, method: Method, path: &str, body: Value) -> (u16, Value) {
    let mut request = platform.client().request(method, platform.at(path)).header("api_key", ADMIN_KEY);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Setup {
    /// `POST /api/apps/{app}/{route}` with a JSON body.
    async fn post(&self, route: &str, body: Value) -> (u16, Value) {
        let url = self.platform.at(&format!("/api/apps/{}/{route}", self.app));
        let response = self.platform.client().post(url).json(&body).send().await.unwrap();
        (response.status().as_u16(), json_of(response).await)
    }

    async fn login(&self, password: &str) -> (u16, Value) {
        self.post("auth/login", json!({"email": "ann@example.test", "password": password})).await
    }

    async fn token(&self, password: &str) -> String {
        let (status, body) = self.login(password).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// The `who` function called with `token` through both SDK function routes; the answer of
    /// each, which must agree.
    async fn call_who(&self, token: &str) -> (u16, Value) {
        let client = self.platform.client();
        let invoke = client
            .post(self.platform.at(&format!("/api/apps/{}/functions/who", self.app)))
            .bearer_auth(token)
            .json(&json!({}));
        let fetch = client.get(self.platform.at("/api/functions/who")).header("x-app-id", &self.app).bearer_auth(token);
        let mut answers = Vec::new();
        for request in [invoke, fetch] {
            let response = request.send().await.unwrap();
            answers.push((response.status().as_u16(), json_of(response).await));
        }
        assert_eq!(answers[0].0, answers[1].0, "invoke and fetch agree: {answers:?}");
        answers.remove(0)
    }

    async fn me(&self, token: &str) -> u16 {
        let url = self.platform.at(&format!("/api/apps/{}/entities/User/me", self.app));
        self.platform.client().get(url).bearer_auth(token).send().await.unwrap().status().as_u16()
    }

    async fn user_id(&self) -> String {
        let user = self.platform.store.user_by_email(&self.app, "ann@example.test").await.unwrap().unwrap();
        user.id
    }

    /// Asks for a reset and takes the mailed token.
    async fn reset_token(&mut self) -> String {
        let (status, _) = self.post("auth/reset-password-request", json!({"email": "ann@example.test"})).await;
        assert_eq!(status, 200);
        let (to, data) = tokio::time::timeout(Duration::from_secs(15), self.mails.recv()).await.unwrap().unwrap();
        assert_eq!(to, "ann@example.test");
        data.lines().map(str::trim).find(|l| l.len() == 89 && l.as_bytes()[24] == b'.').unwrap().to_string()
    }
}

/// Asserts a refusal by Homebase (the function did not answer it).
fn assert_refused(what: &str, (status, body): &(u16, Value)) {
    assert_eq!(*status, 401, "{what}: {body}");
    assert_eq!(body["code"], "unauthorized", "{what}: {body}");
    assert!(body["message"].is_string() && body["detail"].is_string(), "{what}: {body}");
    assert!(body.get("function").is_none(), "{what}: the function ran: {body}");
}

fn assert_ran(what: &str, (status, body): &(u16, Value)) {
    assert_eq!(*status, 200, "{what}: {body}");
    assert_eq!((body["function"].as_str(), body["authorization"].as_str()), (Some("who"), Some("Bearer")), "{what}");
}

#[tokio::test]
async fn tokens_from_before_a_password_reset_or_change_are_refused_on_function_routes() {
    let mut setup = setup(LoginLimits::default()).await;
    let before = setup.token("pw-123456").await;
    assert_ran("a fresh token", &setup.call_who(&before).await);
    assert_eq!(setup.platform.auth.users.len(), 1, "the user's state is cached after its first call");

    // The attack: a stolen token keeps working after the owner resets the password.
    let reset = setup.reset_token().await;
    let (status, body) =
        setup.post("auth/reset-password", json!({"reset_token": reset, "new_password": "pw-new-1234"})).await;
    assert_eq!(status, 200, "{body}");
    let refused = setup.call_who(&before).await;
    assert_refused("the token from before the reset", &refused);
    assert!(refused.1["message"].as_str().unwrap().contains("password changed"), "{}", refused.1);
    assert_eq!(setup.me(&before).await, 401, "and on the user routes");

    let after = setup.token("pw-new-1234").await;
    assert_ran("a token from after the reset", &setup.call_who(&after).await);

    // change-password: the other tokens end, the one it answers with works.
    let url = setup.platform.at(&format!("/api/apps/{}/auth/change-password", setup.app));
    let body = json!({"current_password": "pw-new-1234", "new_password": "pw-third-123"});
    let response = setup.platform.client().post(url).bearer_auth(&after).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let changed = json_of(response).await["access_token"].as_str().unwrap().to_string();
    assert_refused("the token from before the change", &setup.call_who(&after).await);
    assert_ran("the token the change answered with", &setup.call_who(&changed).await);
    setup.platform.stop().await;
}

#[tokio::test]
async fn disabled_and_deleted_users_are_refused_on_function_routes() {
    let setup = setup(LoginLimits::default()).await;
    let user_id = setup.user_id().await;
    let token = setup.token("pw-123456").await;
    assert_ran("enabled", &setup.call_who(&token).await);
    let user_path = format!("/api/apps/{}/users/{user_id}", setup.app);

    // Disabled through the management API: refused at once, everywhere.
    let (status, body) = admin(&setup.platform, Method::PATCH, &user_path, json!({ "disabled": true })).await;
    assert_eq!((status, body["disabled"].as_bool()), (200, Some(true)), "{body}");
    let refused = setup.call_who(&token).await;
    assert_refused("a disabled user's token", &refused);
    assert_eq!(setup.me(&token).await, 401);
    let (status, body) = setup.login("pw-123456").await;
    assert_eq!((status, body["code"].as_str()), (403, Some("user_disabled")), "{body}");

    // Enabled again: the old token stays void (disabling signed it out for good).
    let (status, body) = admin(&setup.platform, Method::PATCH, &user_path, json!({ "disabled": false })).await;
    assert_eq!(status, 200, "{body}");
    assert_refused("a token from before the disabling", &setup.call_who(&token).await);
    let token = setup.token("pw-123456").await;
    assert_ran("a new token", &setup.call_who(&token).await);

    // Disabled by another path into the store: the same.
    let disable = homebase_store::UserUpdate { disabled: Some(true), ..Default::default() };
    setup.platform.store.update_user(&setup.app, &user_id, disable).await.unwrap();
    assert_refused("disabled in the store", &setup.call_who(&token).await);
    let enable = homebase_store::UserUpdate { disabled: Some(false), ..Default::default() };
    setup.platform.store.update_user(&setup.app, &user_id, enable).await.unwrap();
    let token = setup.token("pw-123456").await;
    assert_ran("enabled again, signed in again", &setup.call_who(&token).await);

    // Deleted: refused; a second delete is a 404 with a JSON body.
    let (status, _) = admin(&setup.platform, Method::DELETE, &user_path, Value::Null).await;
    assert_eq!(status, 204);
    assert_refused("a deleted user's token", &setup.call_who(&token).await);
    let (status, body) = admin(&setup.platform, Method::DELETE, &user_path, Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("user_not_found")), "{body}");
    let (status, body) = admin(&setup.platform, Method::PATCH, &user_path, json!({ "disabled": true })).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = admin(&setup.platform, Method::PATCH, &user_path, json!({ "banned": true })).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_json")), "{body}");

    // Anonymous and service-role calls are not affected.
    let url = setup.platform.at(&format!("/api/apps/{}/functions/who", setup.app));
    let response = setup.platform.client().post(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let service = setup.platform.auth.tokens.mint_service(&setup.app);
    let response = setup.platform.client().post(url).bearer_auth(service).send().await.unwrap();
    assert_eq!(response.status(), 200);
    setup.platform.stop().await;
}

#[tokio::test]
async fn a_completed_password_reset_lifts_the_login_lock() {
    let limits = LoginLimits { per_account: 3, per_address: 100, ..LoginLimits::default() };
    let mut setup = setup(limits).await;
    // Someone guesses until the account is locked: the right password is refused too.
    for _ in 0..3 {
        assert_eq!(setup.login("wrong-password").await.0, 401);
    }
    let (status, body) = setup.login("pw-123456").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_attempts")), "{body}");

    // An unfinished reset (a request, a wrong token) changes nothing.
    let reset = setup.reset_token().await;
    let (status, _) =
        setup.post("auth/reset-password", json!({"reset_token": "nope.nope", "new_password": "pw-new-1234"})).await;
    assert_eq!(status, 400);
    assert_eq!(setup.login("pw-123456").await.0, 429, "still locked");

    // The owner resets the password: the lock is lifted at once.
    let (status, body) =
        setup.post("auth/reset-password", json!({"reset_token": reset, "new_password": "pw-new-1234"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = setup.login("pw-new-1234").await;
    assert_eq!(status, 200, "{body}");
    assert_ran("the new token", &setup.call_who(body["access_token"].as_str().unwrap()).await);
    // The count started over: a new run of failures locks it again only at the limit.
    for _ in 0..3 {
        assert_eq!(setup.login("wrong-password").await.0, 401);
    }
    assert_eq!(setup.login("pw-new-1234").await.0, 429);
    setup.platform.stop().await;
}
