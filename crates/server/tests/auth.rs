//! App users, tokens and the identity functions see, end to end over HTTP: `serve`
//! ([`TestPlatform`], verification on, mail through an in-test SMTP server) and `dev`
//! ([`TestServer`], verification off), with real Deno running the official SDK in the fixture
//! functions `whoami`, `call-whoami` and `service-call`.

use std::time::Duration;

use homebase_server::auth::LoginLimits;
use homebase_server::mail::{Mailer, SmtpConfig};
use homebase_server::token::TokenMinter;
use homebase_testkit::{
    ADMIN_KEY, PlatformOptions, ReceivedMail, TestPlatform, TestServer, fixture, json_of, smtp_sink,
};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

async fn platform_with_mail() -> (TestPlatform, UnboundedReceiver<ReceivedMail>, tempfile::TempDir) {
    let (port, mails) = smtp_sink().await;
    let smtp = SmtpConfig::parse(&format!("smtp://127.0.0.1:{port}"), "Homebase <no-reply@homebase.test>").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = PlatformOptions {
        mailer: Mailer::Smtp(smtp),
        limits: LoginLimits { per_account: 3, per_address: 6, window: Duration::from_secs(600) },
        ..Default::default()
    };
    let platform = TestPlatform::start_with(dir.path(), options).await;
    (platform, mails, dir)
}

async fn create_app(platform: &TestPlatform, name: &str) -> String {
    let response = platform
        .client()
        .post(platform.at("/api/apps"))
        .header("api_key", ADMIN_KEY)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    json_of(response).await["id"].as_str().unwrap().to_string()
}

async fn post(platform: &TestPlatform, path: &str, body: Value) -> (u16, Value) {
    let response = platform.client().post(platform.at(path)).json(&body).send().await.unwrap();
    (response.status().as_u16(), json_of(response).await)
}

async fn get_with(url: String, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), json_of(response).await)
}

/// The first run of six digits in the next mail to `to`.
async fn next_code(mails: &mut UnboundedReceiver<ReceivedMail>, to: &str) -> String {
    let (recipient, data) = tokio::time::timeout(Duration::from_secs(15), mails.recv()).await.unwrap().unwrap();
    assert_eq!(recipient, to);
    data.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {data}"))
        .into()
}

/// The reset token in the next mail to `to`: the line that looks like `<24 hex>.<64 hex>`.
async fn next_reset_token(mails: &mut UnboundedReceiver<ReceivedMail>, to: &str) -> String {
    let (recipient, data) = tokio::time::timeout(Duration::from_secs(15), mails.recv()).await.unwrap().unwrap();
    assert_eq!(recipient, to);
    data.lines().map(str::trim).find(|l| l.len() == 89 && l.as_bytes()[24] == b'.').unwrap().to_string()
}

#[tokio::test]
async fn register_verify_login_me_and_update_me() {
    let (platform, mut mails, _dir) = platform_with_mail().await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    let (status, body) = post(
        &platform,
        &format!("{base}/auth/register"),
        json!({"email": "Ann@Example.test", "password": "pw-123456"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["requires_verification"], true);
    assert!(body.get("access_token").is_none(), "no token before verification");
    let code = next_code(&mut mails, "ann@example.test").await;

    // Not verified yet: the right password still cannot sign in.
    let login = json!({"email": "ann@example.test", "password": "pw-123456"});
    let (status, body) = post(&platform, &format!("{base}/auth/login"), login.clone()).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("email_not_verified")), "{body}");

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) =
        post(&platform, &format!("{base}/auth/verify-otp"), json!({"email": "ann@example.test", "otp_code": wrong}))
            .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")), "{body}");
    let (status, body) =
        post(&platform, &format!("{base}/auth/verify-otp"), json!({"email": "ann@example.test", "otp_code": code}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["is_verified"], true);
    let (status, _) =
        post(&platform, &format!("{base}/auth/verify-otp"), json!({"email": "ann@example.test", "otp_code": code}))
            .await;
    assert_eq!(status, 400, "a code works once");

    let (status, body) = post(&platform, &format!("{base}/auth/login"), login).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(body["user"]["email"], "ann@example.test");

    let (status, me) = get_with(platform.at(&format!("{base}/entities/User/me")), &token).await;
    assert_eq!(status, 200, "{me}");
    for field in
        ["id", "email", "full_name", "role", "is_verified", "disabled", "app_id", "created_date", "updated_date"]
    {
        assert!(me.get(field).is_some(), "me lacks {field}: {me}");
    }
    assert_eq!(
        (me["role"].as_str(), me["app_id"].as_str(), me["is_service"].as_bool()),
        (Some("user"), Some(&*app), Some(false))
    );

    let put = |body: Value| {
        platform.client().put(platform.at(&format!("{base}/entities/User/me"))).bearer_auth(&token).json(&body).send()
    };
    let response = put(json!({"bio": "hello", "email": "ann@example.test"})).await.unwrap();
    assert_eq!(response.status(), 200);
    let updated = json_of(response).await;
    assert_eq!(updated["bio"], "hello");
    for (field, value) in [("role", json!("admin")), ("email", json!("eve@example.test")), ("id", json!("x"))] {
        let response = put(json!({ field: value })).await.unwrap();
        assert_eq!(response.status(), 400, "{field}");
        let body = json_of(response).await;
        assert!(body["message"].as_str().unwrap().contains(field) && body["detail"].is_string(), "{body}");
    }
    let (_, me) = get_with(platform.at(&format!("{base}/entities/User/me")), &token).await;
    assert_eq!((me["role"].as_str(), me["bio"].as_str()), (Some("user"), Some("hello")));
    platform.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_account_answer_alike_and_logins_are_rate_limited() {
    let (platform, _mails, _dir) = platform_with_mail().await;
    let app = create_app(&platform, "Shop").await;
    let login = format!("/api/apps/{app}/auth/login");
    platform.store.set_require_verification(&app, false).await.unwrap();
    let (status, _) = post(
        &platform,
        &format!("/api/apps/{app}/auth/register"),
        json!({"email": "ann@example.test", "password": "pw-123456"}),
    )
    .await;
    assert_eq!(status, 200);
    let (wrong_status, wrong) =
        post(&platform, &login, json!({"email": "ann@example.test", "password": "nope-nope"})).await;
    let (unknown_status, unknown) =
        post(&platform, &login, json!({"email": "bob@example.test", "password": "nope-nope"})).await;
    assert_eq!((wrong_status, &wrong), (unknown_status, &unknown));
    assert_eq!(wrong_status, 401);
    assert!(wrong["message"].is_string() && wrong["detail"].is_string(), "{wrong}");

    // Three failures per account (one above): the fourth try is refused, even with the right password.
    let (status, _) = post(&platform, &login, json!({"email": "ann@example.test", "password": "nope-nope"})).await;
    assert_eq!(status, 401);
    let (status, _) = post(&platform, &login, json!({"email": "ann@example.test", "password": "nope-nope"})).await;
    assert_eq!(status, 401);
    let response = platform
        .client()
        .post(platform.at(&login))
        .json(&json!({"email": "ANN@example.test", "password": "pw-123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    // The address has six: two more failures on other accounts use them up.
    for email in ["carl@example.test", "dora@example.test"] {
        let (status, _) = post(&platform, &login, json!({"email": email, "password": "nope-nope"})).await;
        assert_eq!(status, 401);
    }
    let (status, body) = post(&platform, &login, json!({"email": "erin@example.test", "password": "nope-nope"})).await;
    assert_eq!(status, 429, "{body}");
    platform.stop().await;
}

#[tokio::test]
async fn spoofed_forged_expired_and_foreign_tokens_fail_closed() {
    let (platform, _mails, dir) = platform_with_mail().await;
    let app = create_app(&platform, "Shop").await;
    let other = create_app(&platform, "Other").await;
    let user = platform.auth.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let good = platform.auth.user_token(&user);
    let me = platform.at(&format!("/api/apps/{app}/entities/User/me"));
    assert_eq!(get_with(me.clone(), &good).await.0, 200, "the probe works with a good token");

    let key = TokenMinter::from_key_file(&dir.path().join("auth.key"), Duration::from_secs(60)).unwrap();
    let forged = TokenMinter::new(b"someone else's key", Duration::from_secs(60)).mint_user(
        &app,
        &user.id,
        &user.email,
        Duration::from_secs(600),
    );
    let expired = key.mint_user(&app, &user.id, &user.email, Duration::ZERO);
    let foreign = key.mint_user(&other, &user.id, &user.email, Duration::from_secs(600));
    let mut tampered = good.clone();
    tampered.insert(good.len() / 2, 'x');
    for (what, token) in [("forged", &forged), ("expired", &expired), ("other app", &foreign), ("malformed", &tampered)]
    {
        let (status, body) = get_with(me.clone(), token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body["message"].is_string() && body["detail"].is_string(), "{body}");
        assert_eq!(body["error"], "Unauthorized");
    }
    let (status, _) = get_with(platform.at(&format!("/api/apps/{app}/entities/User/me")), "").await;
    assert_eq!(status, 401, "no token");

    // A user token is no API key: management routes refuse it.
    for path in [format!("/api/apps/{app}"), format!("/api/apps/{app}/auth/token"), "/api/apps".into()] {
        let (status, body) = get_with(platform.at(&path), &good).await;
        assert_eq!(status, 401, "{path}: {body}");
    }

    // A user token on the function routes is checked too (before the function is even looked up).
    for token in [&forged, &expired, &foreign] {
        let response = platform
            .client()
            .post(platform.at(&format!("/api/apps/{app}/functions/anything")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    platform.stop().await;
}

fn new_user(email: &str) -> homebase_store::NewUser {
    homebase_store::NewUser {
        email: email.into(),
        password: Some("pw-123456".into()),
        full_name: Some("Ann".into()),
        role: homebase_store::UserRole::User,
        is_verified: true,
    }
}

#[tokio::test]
async fn reset_and_change_password_and_invite() {
    let (platform, mut mails, _dir) = platform_with_mail().await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    let user = platform.store.create_user(&app, new_user("ann@example.test")).await.unwrap();

    let (status, same) =
        post(&platform, &format!("{base}/auth/reset-password-request"), json!({"email": "nobody@example.test"})).await;
    assert_eq!(status, 200);
    let (status, body) =
        post(&platform, &format!("{base}/auth/reset-password-request"), json!({"email": "ann@example.test"})).await;
    assert_eq!((status, &body), (200, &same), "known and unknown accounts answer alike");
    let token = next_reset_token(&mut mails, "ann@example.test").await;
    let (status, body) =
        post(&platform, &format!("{base}/auth/reset-password"), json!({"reset_token": token, "new_password": "short"}))
            .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(
        &platform,
        &format!("{base}/auth/reset-password"),
        json!({"reset_token": token, "new_password": "pw-new-1234"}),
    )
    .await;
    assert_eq!(status, 200, "a too-short password did not spend the token: {body}");
    let (status, _) = post(
        &platform,
        &format!("{base}/auth/reset-password"),
        json!({"reset_token": token, "new_password": "pw-new-5678"}),
    )
    .await;
    assert_eq!(status, 400, "single use");
    let (status, body) =
        post(&platform, &format!("{base}/auth/login"), json!({"email": "ann@example.test", "password": "pw-new-1234"}))
            .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_string();

    let change = |current: &str, new: &str| {
        platform
            .client()
            .post(platform.at(&format!("{base}/auth/change-password")))
            .bearer_auth(&access)
            .json(&json!({"user_id": user.id, "current_password": current, "new_password": new}))
            .send()
    };
    assert_eq!(change("wrong-password", "pw-other-123").await.unwrap().status(), 400);
    assert_eq!(change("pw-new-1234", "pw-other-123").await.unwrap().status(), 200);
    assert!(platform.store.check_password(&app, "ann@example.test", "pw-other-123").await.unwrap().is_some());

    // A plain user may invite users, not admins; the invitee sets a password with the mailed token.
    let invite = |email: &str, role: &str| {
        platform
            .client()
            .post(platform.at(&format!("{base}/users/invite-user")))
            .bearer_auth(&access)
            .json(&json!({"user_email": email, "role": role}))
            .send()
    };
    assert_eq!(invite("boss@example.test", "admin").await.unwrap().status(), 403);
    assert_eq!(invite("bob@example.test", "user").await.unwrap().status(), 200);
    let token = next_reset_token(&mut mails, "bob@example.test").await;
    let (status, _) = post(
        &platform,
        &format!("{base}/auth/reset-password"),
        json!({"reset_token": token, "new_password": "pw-bob-1234"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) =
        post(&platform, &format!("{base}/auth/login"), json!({"email": "bob@example.test", "password": "pw-bob-1234"}))
            .await;
    assert_eq!((status, body["user"]["is_verified"].as_bool()), (200, Some(true)), "{body}");
    platform.stop().await;
}

#[tokio::test]
async fn exec_endpoints_mint_tokens_for_key_holders_only() {
    let (platform, _mails, _dir) = platform_with_mail().await;
    let app = create_app(&platform, "Shop").await;
    let user = platform.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let token_url = |query: &str| platform.at(&format!("/api/apps/{app}/auth/token{query}"));
    let (status, body) = get_with(token_url(""), ADMIN_KEY).await;
    assert_eq!(status, 200, "{body}");
    let service = body["token"].as_str().unwrap().to_string();
    assert_eq!(platform.auth.tokens.verify_service(&service).unwrap().app_id, app);
    let (status, me) = get_with(platform.at(&format!("/api/apps/{app}/entities/User/me")), &service).await;
    assert_eq!((status, me["is_service"].as_bool()), (200, Some(true)), "{me}");

    let (status, body) = get_with(token_url("?user=ANN@example.test"), ADMIN_KEY).await;
    assert_eq!(status, 200, "{body}");
    let (_, me) =
        get_with(platform.at(&format!("/api/apps/{app}/entities/User/me")), body["token"].as_str().unwrap()).await;
    assert_eq!(me["id"], user.id.as_str());
    let (status, body) = get_with(token_url("?user=nobody@example.test"), ADMIN_KEY).await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = get_with(platform.at(&format!("/api/apps/platform/{app}/published-url")), ADMIN_KEY).await;
    assert_eq!((status, body["url"].as_str()), (200, Some(platform.url.as_str())));
    let response = reqwest::get(token_url("")).await.unwrap();
    assert_eq!(response.status(), 401, "no key, no token");
    platform.stop().await;
}

/// What `whoami` saw, called through `path` with `token` (or none) and extra headers.
async fn whoami(server: &TestServer, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Value {
    let mut request = server.client().post(server.at(path)).json(&json!({}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = json_of(response).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn functions_see_their_caller_through_the_official_sdk() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let app = server.app.app_id().to_string();
    let user = server.auth.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let token = server.auth.user_token(&user);
    let invoke = format!("/api/apps/{app}/functions/whoami");

    // A user through the SDK route: their bearer reaches the function and `me()` is them.
    let seen = whoami(&server, &invoke, Some(&token), &[("base44-service-authorization", "Bearer forged")]).await;
    assert_eq!((seen["authorization"].as_str(), seen["service"].as_bool()), (Some("Bearer"), Some(true)));
    assert_eq!((seen["me"]["id"].as_str(), seen["meStatus"].as_i64()), (Some(user.id.as_str()), Some(200)), "{seen}");
    assert_eq!((seen["appId"].as_str(), seen["apiUrl"].as_str()), (Some(app.as_str()), Some(server.url.as_str())));

    // Anonymous, over the SDK route and the webhook URL (whose bearer never reaches the function).
    for (path, token) in [(invoke.as_str(), None), ("/functions/whoami", Some(token.as_str()))] {
        let seen = whoami(&server, path, token, &[("x-app-id", &app)]).await;
        assert_eq!(seen["authorization"], Value::Null, "{path}: {seen}");
        assert_eq!((seen["meStatus"].as_i64(), seen["service"].as_bool()), (Some(401), Some(true)), "{path}: {seen}");
    }
    let webhook = server
        .client()
        .post(server.at("/functions/whoami"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(webhook).await["authorization"], Value::Null, "a non-Bearer Authorization is dropped");

    // One function invoking another keeps the caller.
    let seen = whoami(&server, &format!("/api/apps/{app}/functions/call-whoami"), Some(&token), &[]).await;
    assert_eq!(seen["callee"]["me"]["id"].as_str(), Some(user.id.as_str()), "{seen}");
    // The service role works for anonymous and webhook callers; the callee sees the service.
    for path in [format!("/api/apps/{app}/functions/service-call"), "/functions/service-call".to_string()] {
        let seen = whoami(&server, &path, None, &[]).await;
        assert_eq!(seen["callee"]["me"]["is_service"], true, "{path}: {seen}");
    }
    // An invalid bearer on an SDK route is refused, not downgraded to anonymous.
    let response = server.client().post(server.at(&invoke)).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(response.status(), 401);
    server.stop().await;
}
