//! `trusted-proxies` against a real `serve` ([`TestPlatform`]): the login and mail limits count
//! per client address. A client that is not a trusted proxy cannot choose its address with
//! `X-Forwarded-For` or `Forwarded`; through a trusted proxy (the test's own connections, from
//! 127.0.0.1) they count the client the proxy names, and not what the client wrote itself. A
//! function calling the API over the socket names no address either, even when loopback is
//! trusted.

use std::time::Duration;

use homebase_identity::LoginLimits;
use homebase_testkit::{ADMIN_KEY, PlatformOptions, TestPlatform, json_of};
use reqwest::Method;
use serde_json::{Value, json};

/// Three failed logins and three mail-sending requests per address; accounts are never limited
/// here (each attempt names another one).
const LIMITS: LoginLimits = LoginLimits {
    per_account: 100,
    per_address: 3,
    window: Duration::from_secs(600),
    otp_per_account: 100,
    otp_per_address: 100,
    mail_per_account: 100,
    mail_per_address: 3,
};

struct Setup {
    platform: TestPlatform,
    app: String,
    _dir: tempfile::TempDir,
}

async fn setup(trusted_proxies: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let options = PlatformOptions {
        limits: LIMITS,
        trusted_proxies: trusted_proxies.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    let platform = TestPlatform::start_with(dir.path(), options).await;
    let response = platform
        .client()
        .post(platform.at("/api/apps"))
        .header("api_key", ADMIN_KEY)
        .json(&json!({ "name": "Shop" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let app = json_of(response).await["id"].as_str().unwrap().to_string();
    Setup { platform, app, _dir: dir }
}

impl Setup {
    /// `POST /api/apps/{app}/{route}` with `headers`.
    async fn post(&self, route: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
        let mut request = self.platform.client().post(self.platform.at(&format!("/api/apps/{}/{route}", self.app)));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.json(&body).send().await.unwrap();
        (response.status().as_u16(), json_of(response).await)
    }

    /// A failed login for a made-up account `n`.
    async fn wrong_login(&self, n: usize, headers: &[(&str, &str)]) -> (u16, Value) {
        let body = json!({"email": format!("nobody{n}@example.test"), "password": "guess-1234"});
        self.post("auth/login", headers, body).await
    }

    /// A registration of a new account `n` (it sends a verification code).
    async fn register(&self, n: usize, headers: &[(&str, &str)]) -> (u16, Value) {
        let body = json!({"email": format!("new{n}@example.test"), "password": "pw-123456"});
        self.post("auth/register", headers, body).await
    }
}

fn assert_address_limited(what: &str, (status, body): &(u16, Value)) {
    assert_eq!((*status, body["code"].as_str()), (429, Some("too_many_attempts")), "{what}: {body}");
    assert!(body["message"].is_string() && body["detail"].is_string(), "{what}: {body}");
}

fn assert_passed(what: &str, (status, body): &(u16, Value), expected: u16) {
    assert_eq!(*status, expected, "{what}: {body}");
}

/// Every attempt names another address in both headers: from a peer that is not trusted (no
/// list, or a list without it) they all count under the peer's own address.
#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    for trusted in [&[][..], &["10.0.0.0/8", "::1"][..]] {
        let setup = setup(trusted).await;
        let spoof =
            |n: usize| [("x-forwarded-for", format!("203.0.113.{n}")), ("forwarded", format!("for=198.51.100.{n}"))];
        for n in 0..3 {
            let headers = spoof(n);
            let headers: Vec<_> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_passed("a failed login", &setup.wrong_login(n, &headers).await, 401);
            assert_passed("a registration", &setup.register(n, &headers).await, 201);
        }
        let headers = spoof(99);
        let headers: Vec<_> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let what = format!("trusted {trusted:?}: a fourth login under a new spoofed address");
        assert_address_limited(&what, &setup.wrong_login(99, &headers).await);
        let what = format!("trusted {trusted:?}: a fourth registration under a new spoofed address");
        assert_address_limited(&what, &setup.register(99, &headers).await);
        setup.platform.stop().await;
    }
}

/// From a trusted proxy (127.0.0.1), the limits count the client it names: the rightmost
/// address of `X-Forwarded-For` that is not a trusted proxy, or `Forwarded`'s `for=`. What a
/// client wrote left of that does not move it to another bucket.
#[tokio::test]
async fn through_a_trusted_proxy_the_limits_count_the_forwarded_client() {
    let setup = setup(&["127.0.0.1", "10.0.0.0/8"]).await;
    // One client, behind two proxies, prepending a new address of its own each time.
    for n in 0..3 {
        let chain = format!("192.0.2.{n}, 203.0.113.7, 10.1.1.1");
        assert_passed("a failed login", &setup.wrong_login(n, &[("x-forwarded-for", &chain)]).await, 401);
    }
    let chain = "192.0.2.99, 203.0.113.7, 10.1.1.1";
    assert_address_limited("the client's fourth login", &setup.wrong_login(3, &[("x-forwarded-for", chain)]).await);
    // Another client of the same proxy is not limited, nor is the proxy's own address.
    let other = [("x-forwarded-for", "203.0.113.8")];
    assert_passed("another client's login", &setup.wrong_login(4, &other).await, 401);
    assert_passed("a login without the header", &setup.wrong_login(5, &[]).await, 401);

    // The mail limit, with RFC 7239 `Forwarded`.
    let forwarded = [("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")];
    for n in 0..3 {
        assert_passed("a registration", &setup.register(n, &forwarded).await, 201);
    }
    assert_address_limited("the client's fourth registration", &setup.register(3, &forwarded).await);
    let other = [("forwarded", "for=\"[2001:db8:0:1::8]\"")];
    assert_passed("another client's registration", &setup.register(4, &other).await, 201);
    setup.platform.stop().await;
}

/// Calls `auth/login` through `Base44-Api-Url` (the API socket in `serve`) for the made-up
/// account `n`, naming the client `203.0.113.<n>` in `X-Forwarded-For`; answers the status.
const LOGIN_FROM_FUNCTION: &str = r#"Deno.serve(async (req) => {
  const { n } = await req.json();
  const appId = req.headers.get("base44-app-id");
  const response = await fetch(`${req.headers.get("base44-api-url")}/api/apps/${appId}/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-forwarded-for": `203.0.113.${n}` },
    body: JSON.stringify({ email: `fn${n}@example.test`, password: "guess-1234" }),
  });
  await response.body?.cancel();
  return Response.json({ status: response.status });
});
"#;

/// Functions reach the API over a socket whose requests count under the server's own address;
/// with loopback trusted, a function still cannot name its own client address.
#[tokio::test]
async fn a_function_cannot_name_an_address_through_the_api_socket() {
    let setup = setup(&["127.0.0.1", "::1"]).await;
    let deploy = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": LOGIN_FROM_FUNCTION }], "automations": [] });
    let response = setup
        .platform
        .client()
        .request(Method::PUT, setup.platform.at(&format!("/api/apps/{}/backend-functions/login", setup.app)))
        .header("api_key", ADMIN_KEY)
        .json(&deploy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let mut statuses = Vec::new();
    for n in 0..4 {
        let url = setup.platform.at(&format!("/api/apps/{}/functions/login", setup.app));
        let response = setup.platform.client().post(url).json(&json!({ "n": n })).send().await.unwrap();
        assert_eq!(response.status(), 200);
        statuses.push(json_of(response).await["status"].as_u64().unwrap());
    }
    assert_eq!(statuses, [401, 401, 401, 429], "every call counted under one address");
    setup.platform.stop().await;
}
