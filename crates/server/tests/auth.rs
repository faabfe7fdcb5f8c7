//! App users, tokens and the identity functions see, end to end over HTTP: `serve`
//! ([`TestPlatform`], verification on, mail through an in-test SMTP server) and `dev`
//! ([`TestServer`], verification off), with real Deno running the official SDK in the fixture
//! functions `whoami`, `call-whoami` and `service-call`.

use std::time::Duration;

use homebase_identity::LoginLimits;
use homebase_identity::TokenMinter;
use homebase_identity::mail::{Mailer, SmtpConfig};
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
        limits: LoginLimits {
            per_account: 3,
            per_address: 6,
            window: Duration::from_secs(600),
            ..LoginLimits::default()
        },
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
    let stamp = &user.password_stamp;
    let forged = TokenMinter::new(b"someone else's key", Duration::from_secs(60)).mint_user(
        &app,
        &user.id,
        &user.email,
        stamp,
        Duration::from_secs(600),
    );
    let expired = key.mint_user(&app, &user.id, &user.email, stamp, Duration::ZERO);
    let foreign = key.mint_user(&other, &user.id, &user.email, stamp, Duration::from_secs(600));
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
    let response = change("pw-new-1234", "pw-other-123").await.unwrap();
    assert_eq!(response.status(), 200);
    let changed = json_of(response).await;
    assert!(platform.store.check_password(&app, "ann@example.test", "pw-other-123").await.unwrap().is_some());
    // The change signed out the old token; the answer carries a new one.
    let me = platform.at(&format!("{base}/entities/User/me"));
    let (status, body) = get_with(me.clone(), &access).await;
    assert_eq!(status, 401, "the token from before the change: {body}");
    assert!(body["message"].as_str().unwrap().contains("password changed"), "{body}");
    let access = changed["access_token"].as_str().unwrap().to_string();
    assert_eq!(get_with(me, &access).await.0, 200);

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
    // A webhook caller's non-Bearer Authorization never reaches the function: the SDK there
    // would throw on it (meStatus -1); dropped, `me()` is the anonymous 401.
    let webhook = server
        .client()
        .post(server.at("/functions/whoami"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 200, "the function ran");
    let seen = json_of(webhook).await;
    assert_eq!(seen["authorization"], Value::Null, "a non-Bearer Authorization is dropped: {seen}");
    assert_eq!(seen["meStatus"].as_i64(), Some(401), "the SDK did not throw on the header: {seen}");

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

/// A platform with SMTP mail and the limits given (everything else as the defaults).
async fn platform_with_limits(
    limits: LoginLimits,
) -> (TestPlatform, UnboundedReceiver<ReceivedMail>, tempfile::TempDir) {
    let (port, mails) = smtp_sink().await;
    let smtp = SmtpConfig::parse(&format!("smtp://127.0.0.1:{port}"), "Homebase <no-reply@homebase.test>").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = PlatformOptions { mailer: Mailer::Smtp(smtp), limits, ..Default::default() };
    let platform = TestPlatform::start_with(dir.path(), options).await;
    (platform, mails, dir)
}

/// Many wrong passwords at once: the account's limit holds, because each attempt is counted
/// before its password is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_logins_cannot_exceed_the_account_limit() {
    let limits = LoginLimits { per_account: 3, per_address: 1000, ..LoginLimits::default() };
    let (platform, _mails, _dir) = platform_with_limits(limits).await;
    let app = create_app(&platform, "Shop").await;
    platform.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let url = platform.at(&format!("/api/apps/{app}/auth/login"));
    let attempts: Vec<_> = (0..24)
        .map(|i| {
            let (client, url) = (platform.client(), url.clone());
            tokio::spawn(async move {
                let body = json!({"email": "ann@example.test", "password": format!("guess-{i:04}")});
                client.post(url).json(&body).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    let evaluated = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((evaluated, limited), (3, 21), "{statuses:?}");
    // The right password is refused too until the window passes.
    let (status, body) = post(
        &platform,
        &format!("/api/apps/{app}/auth/login"),
        json!({"email": "ann@example.test", "password": "pw-123456"}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    platform.stop().await;
}

/// The review's lockout (issue 9): anonymous failed logins for made-up accounts from one address
/// (a proxy in front of Homebase, or functions signing users in through the API socket: everyone
/// shares it) made every sign-in of the app answer 429, the right password and a fresh reset
/// included, with a hint to reset the password that did not help. Now a right password passes
/// the address's limit; a wrong one is told to wait; the account's own limit still locks it, and
/// a completed reset lifts that lock.
#[tokio::test]
async fn failures_from_a_shared_address_never_refuse_the_right_password() {
    let limits =
        LoginLimits { per_account: 3, per_address: 5, window: Duration::from_secs(600), ..LoginLimits::default() };
    let (platform, mut mails, _dir) = platform_with_limits(limits).await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    let login = format!("{base}/auth/login");
    platform.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let sign_in = |password: &str| json!({"email": "ann@example.test", "password": password});

    // The attack: failures for made-up accounts, from the one address everyone shares.
    for i in 0..5 {
        let (status, body) =
            post(&platform, &login, json!({"email": format!("x{i}@example.test"), "password": "guess-123"})).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = post(&platform, &login, json!({"email": "x9@example.test", "password": "guess-123"})).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_attempts")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("from this address"), "{body}");

    // The real user still signs in.
    let (status, body) = post(&platform, &login, sign_in("pw-123456")).await;
    assert_eq!(status, 200, "the right password passes the address's limit: {body}");
    assert!(body["access_token"].is_string(), "{body}");
    // A wrong password is told to wait, truthfully: the right one is still accepted.
    let (status, body) = post(&platform, &login, sign_in("typo-typo")).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("right password is still accepted"), "{body}");

    // The account's limit is unchanged: two more failures lock it, the right password too…
    for _ in 0..2 {
        assert_eq!(post(&platform, &login, sign_in("typo-typo")).await.0, 429);
    }
    let (status, body) = post(&platform, &login, sign_in("pw-123456")).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["message"].as_str().unwrap().contains("for this account"), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("reset"), "{body}");
    // …and a completed reset lifts that lock, whatever the address's count.
    let (status, _) =
        post(&platform, &format!("{base}/auth/reset-password-request"), json!({"email": "ann@example.test"})).await;
    assert_eq!(status, 200);
    let token = next_reset_token(&mut mails, "ann@example.test").await;
    let reset = json!({"reset_token": token, "new_password": "pw-new-1234"});
    assert_eq!(post(&platform, &format!("{base}/auth/reset-password"), reset).await.0, 200);
    let (status, body) = post(&platform, &login, sign_in("pw-new-1234")).await;
    assert_eq!(status, 200, "{body}");
    platform.stop().await;
}

/// Resending a code brings no new guesses, and verification is limited per account.
#[tokio::test]
async fn verification_guesses_survive_resends_and_are_limited() {
    let limits = LoginLimits { otp_per_account: 5, mail_per_account: 10, ..LoginLimits::default() };
    let (platform, mut mails, _dir) = platform_with_limits(limits).await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    let email = "ann@example.test";
    let (status, _) =
        post(&platform, &format!("{base}/auth/register"), json!({"email": email, "password": "pw-123456"})).await;
    assert_eq!(status, 201);
    let first = next_code(&mut mails, email).await;
    let wrong = |code: &str| if code == "000000" { "111111".to_string() } else { "000000".to_string() };
    for _ in 0..3 {
        let (status, body) =
            post(&platform, &format!("{base}/auth/verify-otp"), json!({"email": email, "otp_code": wrong(&first)}))
                .await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")), "{body}");
    }
    let (status, _) = post(&platform, &format!("{base}/auth/resend-otp"), json!({"email": email})).await;
    assert_eq!(status, 200);
    let second = next_code(&mut mails, email).await;
    for _ in 0..2 {
        let (status, _) =
            post(&platform, &format!("{base}/auth/verify-otp"), json!({"email": email, "otp_code": wrong(&second)}))
                .await;
        assert_eq!(status, 400);
    }
    // Five wrong guesses over two codes: the right code is refused until the window passes.
    let (status, _) = post(&platform, &format!("{base}/auth/resend-otp"), json!({"email": email})).await;
    assert_eq!(status, 200);
    let third = next_code(&mut mails, email).await;
    let response = platform
        .client()
        .post(platform.at(&format!("{base}/auth/verify-otp")))
        .json(&json!({"email": email, "otp_code": third}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body = json_of(response).await;
    assert!(body["message"].is_string() && body["detail"].is_string(), "{body}");
    platform.stop().await;
}

/// Resend and verify are limited per client address too, across accounts.
#[tokio::test]
async fn verification_is_limited_per_address() {
    let limits = LoginLimits { otp_per_address: 3, mail_per_address: 2, ..LoginLimits::default() };
    let (platform, _mails, _dir) = platform_with_limits(limits).await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    for (i, expected) in [200, 200, 429].into_iter().enumerate() {
        let (status, body) =
            post(&platform, &format!("{base}/auth/resend-otp"), json!({"email": format!("u{i}@example.test")})).await;
        assert_eq!(status, expected, "resend {i}: {body}");
    }
    for (i, expected) in [400, 400, 400, 429].into_iter().enumerate() {
        let body = json!({"email": format!("v{i}@example.test"), "otp_code": "123456"});
        let (status, body) = post(&platform, &format!("{base}/auth/verify-otp"), body).await;
        assert_eq!(status, expected, "verify {i}: {body}");
    }
    platform.stop().await;
}

/// An invited account (no password yet) is sent no code and cannot verify one; a disabled
/// account cannot sign in through verify-otp.
#[tokio::test]
async fn invited_and_disabled_accounts_cannot_sign_in_with_a_code() {
    let (platform, mut mails, _dir) = platform_with_mail().await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    let invited = platform
        .store
        .create_user(
            &app,
            homebase_store::NewUser {
                email: "boss@example.test".into(),
                password: None,
                full_name: None,
                role: homebase_store::UserRole::Admin,
                is_verified: false,
            },
        )
        .await
        .unwrap();
    let (status, _) = post(&platform, &format!("{base}/auth/resend-otp"), json!({"email": "boss@example.test"})).await;
    assert_eq!(status, 200, "the same answer as for any address");
    // A code planted in the store (as one sent before this fix could be) does not sign in.
    let code = homebase_store::CodePurpose::Verify;
    platform.store.put_code(&app, &invited.id, code, "123456", 600_000).await.unwrap();
    let (status, body) = post(
        &platform,
        &format!("{base}/auth/verify-otp"),
        json!({"email": "boss@example.test", "otp_code": "123456"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")), "{body}");
    assert!(body.get("access_token").is_none(), "{body}");

    // The only mail so far: the one asked for next, not a code to the invitee.
    let (status, _) = post(
        &platform,
        &format!("{base}/auth/register"),
        json!({"email": "dora@example.test", "password": "pw-123456"}),
    )
    .await;
    assert_eq!(status, 201);
    let (recipient, _) = tokio::time::timeout(Duration::from_secs(15), mails.recv()).await.unwrap().unwrap();
    assert_eq!(recipient, "dora@example.test", "no code went to the invited account");

    // Disabled: the right code does not sign in.
    let dora = platform.store.user_by_email(&app, "dora@example.test").await.unwrap().unwrap();
    let disable = homebase_store::UserUpdate { disabled: Some(true), ..Default::default() };
    platform.store.update_user(&app, &dora.id, disable).await.unwrap();
    platform.store.put_code(&app, &dora.id, code, "654321", 600_000).await.unwrap();
    let (status, body) = post(
        &platform,
        &format!("{base}/auth/verify-otp"),
        json!({"email": "dora@example.test", "otp_code": "654321"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("user_disabled")), "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    platform.stop().await;
}

/// Registering, asking for codes and reset tokens, and inviting are limited per address, per
/// recipient and per inviting user.
#[tokio::test]
async fn mail_sending_requests_are_rate_limited() {
    let limits = LoginLimits { mail_per_account: 2, mail_per_address: 4, ..LoginLimits::default() };
    let (platform, _mails, _dir) = platform_with_limits(limits).await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    // Per recipient: the third reset request for one address is refused.
    for expected in [200, 200, 429] {
        let (status, body) =
            post(&platform, &format!("{base}/auth/reset-password-request"), json!({"email": "ann@example.test"})).await;
        assert_eq!(status, expected, "{body}");
    }
    // Per address: two registrations use up the address's four.
    for (i, expected) in [201, 201, 429].into_iter().enumerate() {
        let body = json!({"email": format!("new{i}@example.test"), "password": "pw-123456"});
        let (status, body) = post(&platform, &format!("{base}/auth/register"), body).await;
        assert_eq!(status, expected, "register {i}: {body}");
    }
    platform.stop().await;

    // Per inviting user.
    let (platform, _mails, _dir) = platform_with_limits(LoginLimits { mail_per_account: 2, ..limits }).await;
    let app = create_app(&platform, "Shop").await;
    let user = platform.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let token = platform.auth.user_token(&user);
    for (i, expected) in [200, 200, 429].into_iter().enumerate() {
        let response = platform
            .client()
            .post(platform.at(&format!("/api/apps/{app}/users/invite-user")))
            .bearer_auth(&token)
            .json(&json!({"user_email": format!("friend{i}@example.test"), "role": "user"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "invite {i}");
    }
    platform.stop().await;
}

/// A password reset or a disabled account signs out existing tokens on the user routes; a
/// token without the password stamp is refused.
#[tokio::test]
async fn tokens_end_with_a_password_reset_or_a_disabled_account() {
    let (platform, mut mails, _dir) = platform_with_mail().await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    let user = platform.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let token = platform.auth.user_token(&user);
    let me = platform.at(&format!("{base}/entities/User/me"));
    let one = platform.at(&format!("{base}/entities/User/{}", user.id));
    assert_eq!(get_with(me.clone(), &token).await.0, 200);
    assert_eq!(get_with(one.clone(), &token).await.0, 200);

    let (status, _) =
        post(&platform, &format!("{base}/auth/reset-password-request"), json!({"email": "ann@example.test"})).await;
    assert_eq!(status, 200);
    let reset = next_reset_token(&mut mails, "ann@example.test").await;
    let (status, _) = post(
        &platform,
        &format!("{base}/auth/reset-password"),
        json!({"reset_token": reset, "new_password": "pw-new-1234"}),
    )
    .await;
    assert_eq!(status, 200);
    for url in [&me, &one] {
        let (status, body) = get_with(url.clone(), &token).await;
        assert_eq!(status, 401, "{url}: {body}");
        assert!(body["message"].is_string() && body["detail"].is_string(), "{body}");
    }

    // No stamp (a token of an earlier version, or minted without one): refused.
    let key = &platform.auth.tokens;
    let unstamped = key.mint_user(&app, &user.id, &user.email, "", Duration::from_secs(600));
    assert_eq!(get_with(me.clone(), &unstamped).await.0, 401);

    // Disabled: the fresh token stops working at once.
    let (status, body) =
        post(&platform, &format!("{base}/auth/login"), json!({"email": "ann@example.test", "password": "pw-new-1234"}))
            .await;
    assert_eq!(status, 200, "{body}");
    let fresh = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(get_with(one.clone(), &fresh).await.0, 200);
    let disable = homebase_store::UserUpdate { disabled: Some(true), ..Default::default() };
    platform.store.update_user(&app, &user.id, disable).await.unwrap();
    for url in [&me, &one] {
        assert_eq!(get_with(url.clone(), &fresh).await.0, 401, "{url}");
    }
    platform.stop().await;
}

/// Addresses are checked before anything else: an oversized one is a short 400 (not echoed, not
/// kept by the limiter), and header-like syntax is refused with a clear message.
#[tokio::test]
async fn malformed_addresses_are_refused_clearly() {
    let (platform, _mails, _dir) = platform_with_mail().await;
    let app = create_app(&platform, "Shop").await;
    let base = format!("/api/apps/{app}");
    let huge = format!("{}@example.test", "a".repeat(1_000_000));
    let (status, body) =
        post(&platform, &format!("{base}/auth/login"), json!({"email": huge, "password": "pw-123456"})).await;
    let shown: String = body.to_string().chars().take(300).collect();
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_email")), "{shown}");
    assert!(body.to_string().len() < 500, "the address is not echoed back");
    for email in ["Ann <ann@example.test>", "ann@example.test, eve@example.test", "\"ann\"@example.test", "a;b@c.test"]
    {
        let (status, body) =
            post(&platform, &format!("{base}/auth/register"), json!({"email": email, "password": "pw-123456"})).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_email")), "{email}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("is not an e-mail address") && body["detail"].is_string(),
            "{body}"
        );
    }
    platform.stop().await;
}
