//! The official `@base44/sdk` (from npm, see `homebase_testkit::official_sdk`) in Node against
//! the dev server with e-mail verification switched on and mail caught by an in-test SMTP
//! server: `tests/node/sdk_auth.mjs` does the flows and the assertions.

use std::path::Path;

use homebase_identity::mail::{Mailer, SmtpConfig};
use homebase_testkit::{TestServer, fixture, official_sdk, smtp_sink};

#[tokio::test]
async fn the_official_sdk_registers_signs_in_and_calls_functions_as_each_caller() {
    let sdk = official_sdk().await;
    let (port, mut mails) = smtp_sink().await;
    let smtp = SmtpConfig::parse(&format!("smtp://127.0.0.1:{port}"), "no-reply@homebase.test").unwrap();
    let project = fixture("functions");
    let server = TestServer::start_with_mail(project.path(), TestServer::config(), Mailer::Smtp(smtp)).await;
    let app = server.app.app_id().to_string();
    server.auth.store.set_require_verification(&app, true).await.unwrap();

    let mail_dir = tempfile::tempdir().unwrap();
    let folder = mail_dir.path().to_path_buf();
    tokio::spawn(async move {
        while let Some((to, data)) = mails.recv().await {
            // Written beside and renamed, so the script never reads half a mail.
            let partial = folder.join(format!(".{to}"));
            std::fs::write(&partial, data).unwrap();
            std::fs::rename(&partial, folder.join(to)).unwrap();
        }
    });

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/sdk_auth.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .env("SDK_URL", &sdk)
        .env("SERVER_URL", &server.url)
        .env("APP_ID", &app)
        .env("MAIL_DIR", mail_dir.path())
        .output()
        .await
        .expect("the SDK test needs node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Node SDK script failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(r#""ok":true"#), "{stdout}");
    server.stop().await;
}
