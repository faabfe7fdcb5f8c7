// `homebase exec`: runs the user's script with a pre-authenticated Base44 client as the global
// `base44`. Homebase passes everything through the environment:
//   HOMEBASE_EXEC_SCRIPT   file URL of the script to import
//   BASE44_APP_ID          the app
//   BASE44_APP_BASE_URL    where the app's API is served
//   BASE44_ACCESS_TOKEN    the token to act with
//   HOMEBASE_EXEC_ROLE     "service" when the token is a service token, else a user token
//   BASE44_DATA_ENV        optional data environment (sent as X-Data-Env)
import { createClient } from "npm:@base44/sdk@0.8";

const env = (name) => Deno.env.get(name) ?? "";
const headers = {};
if (env("BASE44_DATA_ENV")) headers["X-Data-Env"] = env("BASE44_DATA_ENV");
const service = env("HOMEBASE_EXEC_ROLE") === "service";
const client = createClient({
  appId: env("BASE44_APP_ID"),
  serverUrl: env("BASE44_APP_BASE_URL"),
  headers,
  ...(service ? { serviceToken: env("BASE44_ACCESS_TOKEN") } : { token: env("BASE44_ACCESS_TOKEN") }),
});
globalThis.base44 = service ? client.asServiceRole : client;

let failed = false;
try {
  await import(env("HOMEBASE_EXEC_SCRIPT"));
} catch (error) {
  console.error(error);
  failed = true;
} finally {
  client.cleanup?.();
}
if (failed) Deno.exit(1);
