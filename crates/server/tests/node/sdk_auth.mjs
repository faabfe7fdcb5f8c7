// The official @base44/sdk against Homebase's dev server: register (with a mailed code),
// verify, sign in, read and update `me`, and invoke fixture functions as a user, anonymously
// and over direct HTTP, checking what each function saw. Run by tests/sdk_node.rs, which passes
// SDK_URL (the SDK's entry module), SERVER_URL, APP_ID and MAIL_DIR (one file per recipient,
// written as mail arrives at the test's SMTP server).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const { createClient } = await import(process.env.SDK_URL);
const serverUrl = process.env.SERVER_URL;
const appId = process.env.APP_ID;

/** The six-digit code in the mail to `email`, waiting for it for up to 15 s. */
async function codeFor(email) {
  const file = join(process.env.MAIL_DIR, email);
  for (let i = 0; i < 750 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 20));
  const match = readFileSync(file, "utf8").match(/\b(\d{6})\b/);
  assert.ok(match, "the mail carries a code");
  return match[1];
}

const email = "sdk-user@example.test";
const password = "sdk-pass-1234";
const client = createClient({ serverUrl, appId });

const registered = await client.auth.register({ email, password });
assert.equal(registered.requires_verification, true);
assert.equal(registered.access_token, undefined);
await assert.rejects(client.auth.loginViaEmailPassword(email, password), (e) => e.status === 403);
const verified = await client.auth.verifyOtp({ email, otpCode: await codeFor(email) });
assert.ok(verified.access_token, "verification signs in");

const login = await client.auth.loginViaEmailPassword(email, password);
assert.equal(login.user.email, email);
const me = await client.auth.me();
assert.equal(me.email, email);
assert.equal(me.role, "user");
const updated = await client.auth.updateMe({ nickname: "sdk" });
assert.equal(updated.nickname, "sdk");
assert.equal((await client.auth.me()).nickname, "sdk");
await assert.rejects(client.auth.updateMe({ role: "admin" }), (e) => e.status === 400);

// As the user: the function's own SDK client knows them, and passes them on to another function.
const asUser = (await client.functions.invoke("whoami", {})).data;
assert.equal(asUser.me?.id, me.id, JSON.stringify(asUser));
assert.equal(asUser.authorization, "Bearer");
assert.equal(asUser.service, true);
const chained = (await client.functions.invoke("call-whoami", {})).data;
assert.equal(chained.callee.me?.id, me.id, JSON.stringify(chained));

// Anonymously: no Authorization reaches the function, and its `me()` gets the SDK's 401.
const anonymous = createClient({ serverUrl, appId });
const anon = (await anonymous.functions.invoke("whoami", {})).data;
assert.equal(anon.authorization, null);
assert.equal(anon.meStatus, 401);
assert.equal(anon.service, true);
const viaService = (await anonymous.functions.invoke("service-call", {})).data;
assert.equal(viaService.callee.me?.is_service, true, JSON.stringify(viaService));

// Direct HTTP (the webhook URL), even with the user's token: no user context.
const direct = await fetch(`${serverUrl}/functions/whoami`, {
  method: "POST",
  headers: { authorization: `Bearer ${login.access_token}`, "x-app-id": appId },
  body: "{}",
});
const seen = await direct.json();
assert.equal(seen.authorization, null);
assert.equal(seen.meStatus, 401);

// A token of another server (or a forged one) fails closed.
const forged = createClient({ serverUrl, appId, token: login.access_token.slice(0, -2) + "xx" });
await assert.rejects(forged.auth.me(), (e) => e.status === 401);
await assert.rejects(forged.functions.invoke("whoami", {}), (e) => e.response?.status === 401);

console.log(JSON.stringify({ ok: true, user: me.id }));
