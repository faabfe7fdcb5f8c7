//! The routes of the Base44 API that Homebase does not serve yet: each answers
//! `501 not_implemented` with a JSON body whose `message` names the feature and whose `detail`
//! says what works instead and whether it is planned, rather than a bare `404 route_not_found`.
//!
//! Two sets, so that every path is registered once: [`sdk_routes`], what the SDK calls (from a
//! browser, under the CORS layer of [`crate::sdk`], or from a function), and
//! [`management_routes`], what the official CLI calls (merged into `serve`'s router with the
//! management API). They never shadow a route Homebase serves: static segments win over
//! parameters (`/entities/User/me` is the users API, `/entities/Task/aggregate` lands here), and no path
//! here is one of Homebase's own. `OPTIONS` is left out of the SDK set so that preflights are
//! answered as on every other SDK route (allowed origins by the CORS layer, others
//! `403 origin_not_allowed`). The answers need no key: they say only what this build lacks.
//!
//! Reference: `base44-protocol.md` §3 (entities, realtime), §4 (integrations, connectors, files,
//! and the other runtime endpoints) and §5 (the CLI's management endpoints).

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, any, on};

use crate::error::{ApiError, ErrorCode};

/// A feature Homebase lacks: what its `501` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// Names the feature: "Entities are not supported by Homebase yet".
    pub message: &'static str,
    /// What works instead, and whether it is planned.
    pub detail: &'static str,
}

impl Feature {
    pub fn error(&self) -> ApiError {
        ApiError::new(ErrorCode::NotImplemented, self.message, self.detail)
    }
}

/// What the entity routes serve, for the details of the entity methods Homebase lacks.
const ENTITY_ALTERNATIVES: &str = "Served: list and filter (q, sort, limit, skip, fields), cursor pages, get, \
     create, update, updateMany, delete, bulkCreate, deleteMany and count under \
     /api/apps/{app_id}/entities/{Entity}; the missing methods are planned.";

pub const ENTITY_DISTINCT: Feature = Feature {
    message: "Distinct values of an entity field (list with distinct) are not supported by Homebase yet",
    detail: "List the records (with fields=<field> to fetch only that field) and take the distinct values from \
             them; distinct is planned.",
};

pub const ENTITY_AGGREGATE: Feature = Feature {
    message: "Aggregating entities (aggregate) is not supported by Homebase yet",
    detail: ENTITY_ALTERNATIVES,
};

pub const ENTITY_BULK_UPDATE: Feature = Feature {
    message: "Updating entity records in bulk (bulkUpdate) is not supported by Homebase yet",
    detail: ENTITY_ALTERNATIVES,
};

pub const ENTITY_UPSERT: Feature = Feature {
    message: "Upserting entity records (upsert) is not supported by Homebase yet",
    detail: ENTITY_ALTERNATIVES,
};

pub const ENTITY_IMPORT: Feature = Feature {
    message: "Importing entity records from a file (importEntities) is not supported by Homebase yet",
    detail: ENTITY_ALTERNATIVES,
};

pub const REALTIME: Feature = Feature {
    message: "Realtime subscriptions are not supported by Homebase yet",
    detail: "The socket.io endpoint /ws-user-apps/socket.io/ (entities' subscribe(), agent conversations) is not \
             served; it is planned together with entities. Functions and app users work without it.",
};

pub const INTEGRATIONS: Feature = Feature {
    message: "Integrations are not supported by Homebase yet",
    detail: "Core integrations (InvokeLLM, SendEmail, UploadFile, GenerateImage, ExtractDataFromUploadedFile, \
             UploadPrivateFile, CreateFileSignedUrl), installable and custom integrations are planned. Until \
             then call the provider's API from a function with fetch, its key stored as a secret.",
};

pub const CONNECTORS: Feature = Feature {
    message: "Connectors are not supported by Homebase yet",
    detail: "OAuth connectors (external-auth tokens, connector calls) are planned. Until then store the \
             service's token as a secret and call its API from a function.",
};

pub const FILES: Feature = Feature {
    message: "Files are not supported by Homebase yet",
    detail: "Homebase stores and serves no uploaded files (/media/…); file storage is planned with the \
             integrations. Until then keep files in a storage service your functions call.",
};

pub const OAUTH_SIGN_IN: Feature = Feature {
    message: "Signing in with OAuth providers and single sign-on is not supported by Homebase",
    detail: "App users sign in with e-mail and password: POST /api/apps/{app_id}/auth/login \
             (base44.auth.loginViaEmailPassword), after POST …/auth/register and …/auth/verify-otp. \
             Signing out is forgetting the token (base44.auth.logout clears it in the browser).",
};

pub const CLI_LOGIN: Feature = Feature {
    message: "Signing in to the CLI with the device flow is not supported by Homebase",
    detail: "Use an API key of this server instead: set BASE44_API_KEY (and BASE44_API_URL) for the official \
             CLI, or run `homebase login`. An admin creates keys with POST /api/apps/{app_id}/keys.",
};

pub const APP_SETTINGS: Feature = Feature {
    message: "Public app settings are not supported by Homebase",
    detail: "Homebase has no public settings per app (visibility, login page). App users' sign-up settings \
             are read and set by key holders at /api/apps/{app_id}/auth/settings.",
};

pub const ANALYTICS: Feature = Feature {
    message: "Analytics and in-app usage logs are not supported by Homebase",
    detail: "Events sent with base44.analytics and base44.appLogs are not recorded. What functions print is \
             kept in the function logs (GET /api/apps/{app_id}/functions-mgmt/logs, `homebase logs`).",
};

pub const AI_GATEWAY: Feature = Feature {
    message: "The AI gateway is not supported by Homebase",
    detail: "Call the model provider's API from a function with fetch or its npm package, its key stored as a \
             secret.",
};

pub const AGENTS: Feature = Feature {
    message: "Agents are not supported by Homebase",
    detail: "Agent configurations and skills cannot be pushed or run here. Functions deploy with \
             `base44 functions deploy` or `homebase functions deploy`.",
};

pub const ACTORS: Feature = Feature {
    message: "Actors are not supported by Homebase",
    detail: "Homebase runs backend functions only; deploy the code as a function with \
             `base44 functions deploy` or `homebase functions deploy`.",
};

pub const WORKFLOWS: Feature = Feature {
    message: "Workflows and automations are not run by Homebase yet",
    detail: "Automations declared in function.jsonc are validated and kept with each deployment, but nothing \
             fires them yet; schedules and entity-event triggers are planned. Until then call the function's \
             webhook (/functions/{name}) from an external scheduler.",
};

pub const PAYMENTS: Feature = Feature {
    message: "Payments (Stripe) are not supported by Homebase",
    detail: "Call Stripe from a function (npm:stripe), its key stored as a secret.",
};

pub const SITE: Feature = Feature {
    message: "Hosting the app's site is not supported by Homebase",
    detail: "Serve the built front end with any static web server or CDN and point its SDK at this server \
             (serverUrl); add its origin to cors-origins.",
};

pub const AUTH_CONFIG: Feature = Feature {
    message: "Pushing an auth configuration is not supported by Homebase",
    detail: "Key holders set app users' sign-up settings with PUT /api/apps/{app_id}/auth/settings.",
};

pub const SANDBOX: Feature = Feature {
    message: "The sandbox bridge is not supported by Homebase",
    detail: "Run scripts against this server with `homebase exec`.",
};

pub const APP_MANAGEMENT: Feature = Feature {
    message: "This app management endpoint is not supported by Homebase",
    detail: "Branches, workspaces and ejecting an app do not exist here. Homebase's apps are created and listed \
             at /api/apps; `homebase functions pull` (or `base44 functions pull`) writes deployed functions \
             back to a project folder.",
};

/// The SDK's paths, under CORS.
const SDK: &[(&str, Feature)] = &[
    ("/api/apps/{app_id}/entities/{entity}/aggregate", ENTITY_AGGREGATE),
    ("/api/apps/{app_id}/entities/{entity}/upsert", ENTITY_UPSERT),
    ("/api/apps/{app_id}/entities/{entity}/import", ENTITY_IMPORT),
    ("/ws-user-apps/{*rest}", REALTIME),
    ("/api/apps/{app_id}/integration-endpoints/{*rest}", INTEGRATIONS),
    ("/api/apps/{app_id}/integrations/{*rest}", INTEGRATIONS),
    ("/api/apps/{app_id}/external-auth/{*rest}", CONNECTORS),
    ("/api/apps/{app_id}/connectors/{*rest}", CONNECTORS),
    ("/media/{*rest}", FILES),
    ("/api/apps/auth/{*rest}", OAUTH_SIGN_IN),
    ("/api/apps/{app_id}/auth/sso/{*rest}", OAUTH_SIGN_IN),
    ("/api/apps/public/{*rest}", APP_SETTINGS),
    ("/api/apps/{app_id}/analytics/{*rest}", ANALYTICS),
    ("/api/app-logs/{app_id}/{*rest}", ANALYTICS),
    ("/api/apps/{app_id}/ai/{*rest}", AI_GATEWAY),
];

/// The CLI's paths (reference §5), outside CORS.
const MANAGEMENT: &[(&str, Feature)] = &[
    ("/api/apps/{app_id}/agent-configs", AGENTS),
    ("/api/apps/{app_id}/agent-configs/{*rest}", AGENTS),
    ("/api/apps/{app_id}/agent-skills", AGENTS),
    ("/api/apps/{app_id}/agent-skills/{*rest}", AGENTS),
    ("/api/apps/{app_id}/actors", ACTORS),
    ("/api/apps/{app_id}/actors/{*rest}", ACTORS),
    ("/api/apps/{app_id}/workflows", WORKFLOWS),
    ("/api/apps/{app_id}/workflows/{*rest}", WORKFLOWS),
    ("/api/apps/{app_id}/payments/{*rest}", PAYMENTS),
    ("/api/apps/{app_id}/deploy-dist", SITE),
    ("/api/apps/{app_id}/deployments", SITE),
    ("/api/apps/{app_id}/deployment/{*rest}", AUTH_CONFIG),
    ("/api/apps/{app_id}/sandbox-bridge/{*rest}", SANDBOX),
    ("/api/apps/{app_id}/eject", APP_MANAGEMENT),
    ("/api/apps/{app_id}/branches", APP_MANAGEMENT),
    ("/api/apps/{app_id}/metadata/{*rest}", APP_MANAGEMENT),
    ("/api/workspace/{*rest}", APP_MANAGEMENT),
    ("/oauth/{*rest}", CLI_LOGIN),
];

/// Every method but `OPTIONS` (and `CONNECT`/`TRACE`, which no SDK sends).
fn sdk_methods() -> MethodFilter {
    MethodFilter::GET
        .or(MethodFilter::HEAD)
        .or(MethodFilter::POST)
        .or(MethodFilter::PUT)
        .or(MethodFilter::PATCH)
        .or(MethodFilter::DELETE)
}

/// How much of a request's body is read (and dropped) before the answer: the body limit of the
/// other API routes.
const DRAIN_LIMIT: usize = 2 * 1024 * 1024;

/// The handler of `feature`'s routes, for a router that serves other methods of the same path.
pub fn handler(feature: Feature) -> impl Fn(Request) -> BoxFuture<Response> + Clone + Send + Sync + 'static {
    answer(feature)
}

/// The handler of `feature`'s routes. It reads the request's body first: answering before a
/// client has sent it makes the connection close under the client, which then sees a write
/// error (`EPIPE`) instead of the answer. A body past [`DRAIN_LIMIT`] is left unread.
fn answer(feature: Feature) -> impl Fn(Request) -> BoxFuture<Response> + Clone + Send + Sync + 'static {
    move |request: Request| {
        Box::pin(async move {
            let _ = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT).await;
            feature.error().into_response()
        })
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The SDK's routes Homebase lacks; [`crate::sdk::router`] puts them under CORS.
pub fn sdk_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SDK.iter().fold(Router::new(), |router, (path, feature)| {
        let route: MethodRouter<S> = on(sdk_methods(), answer(*feature));
        router.route(path, route)
    })
}

/// The CLI's management routes Homebase lacks; `serve`'s router merges them.
pub fn management_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    MANAGEMENT.iter().fold(Router::new(), |router, (path, feature)| router.route(path, any(answer(*feature))))
}

/// Every path of both sets with its feature, for tests and documentation.
pub fn all() -> impl Iterator<Item = (&'static str, Feature)> {
    SDK.iter().chain(MANAGEMENT).copied()
}
