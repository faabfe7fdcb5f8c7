//! App data over HTTP (reference §3.1), as the SDK's `entities` module calls it, under
//! `/api/apps/{app_id}/entities/{Entity}`: list and filter (`q`, `sort`, `limit`, `skip`,
//! `fields`, and any other parameter as an equality filter), cursor pages (`v2/list`), get,
//! create (201), update (a merge of the top-level fields), update-many (the update operators of
//! §3.2, up to [`MAX_BULK`] records per call), delete, bulk create, delete-many (the query in the
//! body) and count.
//! The other methods of §3.1 answer `501 not_implemented` naming the method
//! ([`crate::unsupported`]). `User` has routes of its own ([`crate::users_api`]).
//!
//! * **Callers** are the SDK's: a user token, the service role (a function's `asServiceRole`,
//!   with or without `on-behalf-of`), or nobody. Access rules (`homebase-entities`' `rules`)
//!   apply to users and anonymous callers and are compiled into the query, so limits and counts
//!   are right; admins and the service role bypass them. A record a caller may not read,
//!   update or delete answers as missing (404); a create the rules refuse answers 403.
//! * **Schemas** come from the store (`serve`: pushed with `PUT …/entity-schemas`; `dev`:
//!   loaded from `base44/entities`). Names match ignoring case. Records are validated
//!   (`homebase-entities`' `validate`): a failure is a 422 in the body of §3.3.
//! * **Pages** hold at most `entity-page-cap` records (5,000 by default, as Base44); a page cut
//!   at the cap logs a warning, so nobody loses rows without a trace.
//! * **Limits**: at most [`MAX_BULK`] records per bulk call.

// The handlers' helpers fail with the `Response` to send.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use homebase_entities::rules::Write;
use homebase_entities::{
    Access, EntitySchema, Filter, ListQuery, Principal, QueryError, Record, Sort, ValidationError,
};
use homebase_store::{NewRecord, WriteError};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use homebase_identity::auth::Identity;

use crate::error::{ApiError, ErrorCode, store_error};
use crate::unsupported;
use crate::users_api::{Auth, token_user, user_json};

/// The most records one bulk call takes (reference §8).
pub const MAX_BULK: usize = 500;
/// Base44's page cap, the default of `entity-page-cap`.
pub const DEFAULT_PAGE_CAP: usize = 5000;

/// What the entity routes need.
pub struct EntitiesApi {
    pub auth: Arc<Auth>,
    /// The most records one list call answers.
    pub page_cap: usize,
}

pub fn router(api: Arc<EntitiesApi>) -> Router {
    Router::new()
        .route("/api/apps/{app_id}/entities/{entity}", get(list).post(create).delete(delete_many))
        .route("/api/apps/{app_id}/entities/{entity}/count", get(count))
        .route("/api/apps/{app_id}/entities/{entity}/v2/list", get(cursor_page))
        .route("/api/apps/{app_id}/entities/{entity}/update-many", axum::routing::patch(update_many))
        .route(
            "/api/apps/{app_id}/entities/{entity}/bulk",
            post(bulk_create).put(unsupported::handler(unsupported::ENTITY_BULK_UPDATE)),
        )
        .route("/api/apps/{app_id}/entities/{entity}/{id}", get(get_one).put(update).delete(delete_one))
        .with_state(api)
}

/// Unwraps a `Result<_, Response>` in a handler that returns `Response`.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return response,
        }
    };
}

/// The caller as the rules see it, and who a record it creates is by.
struct Caller {
    principal: Principal,
    /// `(email, id)` of the user the request acts for.
    by: Option<(String, String)>,
}

async fn caller(auth: &Auth, headers: &HeaderMap, app_id: &str) -> Result<Caller, Response> {
    let identity = crate::users_api::identify(auth, headers, app_id)?;
    let user = match identity.as_ref().and_then(Identity::user) {
        Some(token) => Some(token_user(auth, app_id, token).await?),
        None => None,
    };
    let by = user.as_ref().map(|u| (u.email.clone(), u.id.clone()));
    let principal = match (&identity, user) {
        (Some(Identity::Service { .. }), _) => Principal::service(),
        (_, Some(user)) => Principal::user(user_json(&user)),
        _ => Principal::anonymous(),
    };
    Ok(Caller { principal, by })
}

/// The app's canonical id and the entity's schema; 404 for either unknown.
async fn entity(api: &EntitiesApi, app: &str, name: &str) -> Result<(String, EntitySchema), Response> {
    let app_id = api.auth.app_id(app).map_err(IntoResponse::into_response)?;
    let schemas = api.auth.store.entity_schemas(&app_id).await.map_err(|e| store_error(e).into_response())?;
    match schemas.get(name) {
        Some(schema) => Ok((app_id, schema.clone())),
        None => {
            let known: Vec<&str> = schemas.iter().map(|s| s.name.as_str()).collect();
            let detail = if known.is_empty() {
                "The app has no entities. Declare them in base44/entities/<Name>.jsonc and push them (`base44 \
                 entities push`; `homebase dev` loads them itself)."
                    .to_string()
            } else {
                format!("The app's entities are: {}. Names match ignoring case.", known.join(", "))
            };
            Err(ApiError::new(ErrorCode::EntityNotFound, format!("The app has no entity '{name}'"), detail)
                .into_response())
        }
    }
}

fn query_error(error: QueryError) -> Response {
    ApiError::new(ErrorCode::InvalidQuery, error.message, error.hint).into_response()
}

/// A 422 in the body of reference §3.3, with Homebase's `detail` and `code`.
fn invalid_record(error: ValidationError) -> Response {
    let body = json!({
        "error_type": "ValidationError",
        "message": error.to_string(),
        "detail": format!("Fix '{}' to fit the entity's schema and send the record again.", error.field),
        "code": "validation_error",
        "request_id": null,
        "traceback": "",
    });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

fn not_found(entity: &str, id: &str) -> Response {
    ApiError::new(
        ErrorCode::RecordNotFound,
        format!("Entity {entity} with ID {id} not found"),
        "The record does not exist, or the entity's access rules do not let you see or change it.",
    )
    .into_response()
}

fn permission_denied(detail: String) -> Response {
    let body = json!({ "error": "Permission denied", "message": "Permission denied", "detail": detail, "code": "permission_denied" });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

fn bad_request(message: impl Into<String>, detail: impl Into<String>) -> Response {
    ApiError::new(ErrorCode::BadRequest, message, detail).into_response()
}

fn json_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request("The request body is not JSON", e.to_string()))
}

/// A record as this caller sees it: fields it may not read left out, then only `fields` (and
/// `id`) when asked.
fn shown(access: &Access<'_>, record: &Record, fields: Option<&[String]>) -> Result<Value, Response> {
    let mut json = record.to_json();
    access.hide_fields(&mut json).map_err(query_error)?;
    if let (Some(fields), Value::Object(map)) = (fields, &mut json) {
        map.retain(|key, _| key == "id" || fields.iter().any(|f| f == key));
    }
    Ok(json)
}

/// The parameters the list route reads itself; any other is an equality filter.
const LIST_PARAMS: [&str; 6] = ["q", "sort", "limit", "skip", "fields", "cursor"];

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Response> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| bad_request(format!("'{name}' must be a whole number, 0 or more"), format!("Got '{text}'."))),
    }
}

/// The filter of a list or count request: `q` and the other parameters as equalities.
fn request_filter(params: &HashMap<String, String>) -> Result<Filter, Response> {
    let mut filter = match params.get("q").map(|q| q.trim()).filter(|q| !q.is_empty()) {
        Some(q) => Filter::parse_text(q).map_err(query_error)?,
        None => Filter::True,
    };
    let mut extra: Vec<(&String, &String)> =
        params.iter().filter(|(k, _)| !LIST_PARAMS.contains(&k.as_str())).collect();
    extra.sort();
    for (key, value) in extra {
        let mut doc = Map::new();
        doc.insert(key.clone(), Value::String(value.clone()));
        filter = filter.and(Filter::parse(&Value::Object(doc)).map_err(query_error)?);
    }
    Ok(filter)
}

async fn list(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let access = Access::new(&schema, &who.principal);
    let filter = tri!(access.readable(tri!(request_filter(&params))).map_err(query_error));
    let sort = match params.get("sort") {
        Some(text) => tri!(Sort::parse(text).map_err(query_error)),
        None => Sort::newest_first(),
    };
    let asked = tri!(number(&params, "limit")).filter(|l| *l > 0);
    let cap = api.page_cap as u64;
    let limit = asked.unwrap_or(cap).min(cap);
    let skip = tri!(number(&params, "skip")).unwrap_or(0);
    let fields: Option<Vec<String>> = params
        .get("fields")
        .map(|f| f.split(',').map(str::trim).filter(|f| !f.is_empty()).map(String::from).collect())
        .filter(|f: &Vec<String>| !f.is_empty());
    // One more than the page, to know whether the cap cut it.
    let query = ListQuery { filter, sort, limit: Some(limit + 1), skip };
    let mut records =
        tri!(api.auth.store.list_records(&app_id, &schema, &query).await.map_err(|e| store_error(e).into_response()));
    if records.len() as u64 > limit {
        records.truncate(limit as usize);
        if asked.is_none_or(|a| a > cap) {
            tracing::warn!(
                app_id,
                entity = schema.name,
                asked = asked.map(|a| a.to_string()).unwrap_or_else(|| "no limit".into()),
                cap,
                "a list of {} was cut at {cap} records (entity-page-cap); ask for pages with limit and skip",
                schema.name
            );
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for record in &records {
        out.push(tri!(shown(&access, record, fields.as_deref())));
    }
    Json(out).into_response()
}

/// The most records one cursor page holds, and the default (reference §3.1).
pub const MAX_CURSOR_PAGE: u64 = 5000;
const DEFAULT_CURSOR_PAGE: u64 = 100;

/// What a cursor is bound to: the app, the entity, the caller and the query, sort and fields
/// (a hash of them).
fn cursor_binding(app_id: &str, entity: &str, who: &Caller, params: &HashMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let caller =
        who.by.as_ref().map(|(_, id)| id.as_str()).unwrap_or(if who.principal.bypass { "service" } else { "" });
    let mut hash = Sha256::new();
    for part in [app_id, &entity.to_ascii_lowercase(), caller] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let mut keys: Vec<(&String, &String)> =
        params.iter().filter(|(k, _)| !["limit", "cursor"].contains(&k.as_str())).collect();
    keys.sort();
    for (key, value) in keys {
        hash.update(key.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// `base64url(JSON {o: offset, b: binding})`.
fn encode_cursor(offset: u64, binding: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({ "o": offset, "b": binding }).to_string())
}

fn decode_cursor(cursor: &str, binding: &str) -> Result<u64, Response> {
    use base64::Engine;
    let bad = |why: &str| {
        bad_request(
            format!("The cursor is not valid: {why}"),
            "Pass back the next_cursor of the previous page, with the same q, sort and fields; start again without a \
             cursor to change them.",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad("it is not one this server made"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad("it is not one this server made"))?;
    if value["b"].as_str() != Some(binding) {
        return Err(bad("it belongs to another query, caller or entity"));
    }
    value["o"].as_u64().ok_or_else(|| bad("it is not one this server made"))
}

/// `GET …/v2/list`: one page of records and the cursor of the next, `{items, next_cursor,
/// has_more}`. The cursor is bound to the query, sort, fields, caller and entity; a changed
/// query with an old cursor is a 400. `distinct` is not served yet (501).
async fn cursor_page(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if params.contains_key("distinct") {
        return unsupported::ENTITY_DISTINCT.error().into_response();
    }
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let access = Access::new(&schema, &who.principal);
    let query_params: HashMap<String, String> =
        params.iter().filter(|(k, _)| k.as_str() != "cursor").map(|(k, v)| (k.clone(), v.clone())).collect();
    let filter = tri!(access.readable(tri!(request_filter(&query_params))).map_err(query_error));
    let sort = match params.get("sort") {
        Some(text) => tri!(Sort::parse(text).map_err(query_error)),
        None => Sort::newest_first(),
    };
    let limit = tri!(number(&params, "limit")).filter(|l| *l > 0).unwrap_or(DEFAULT_CURSOR_PAGE).min(MAX_CURSOR_PAGE);
    let binding = cursor_binding(&app_id, &schema.name, &who, &params);
    let offset = match params.get("cursor").filter(|c| !c.is_empty()) {
        Some(cursor) => tri!(decode_cursor(cursor, &binding)),
        None => 0,
    };
    let fields: Option<Vec<String>> = params
        .get("fields")
        .map(|f| f.split(',').map(str::trim).filter(|f| !f.is_empty()).map(String::from).collect())
        .filter(|f: &Vec<String>| !f.is_empty());
    let query = ListQuery { filter, sort, limit: Some(limit + 1), skip: offset };
    let mut records =
        tri!(api.auth.store.list_records(&app_id, &schema, &query).await.map_err(|e| store_error(e).into_response()));
    let has_more = records.len() as u64 > limit;
    records.truncate(limit as usize);
    let mut items = Vec::with_capacity(records.len());
    for record in &records {
        items.push(tri!(shown(&access, record, fields.as_deref())));
    }
    let next_cursor = has_more.then(|| encode_cursor(offset + limit, &binding));
    Json(json!({ "items": items, "next_cursor": next_cursor, "has_more": has_more })).into_response()
}

async fn count(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let access = Access::new(&schema, &who.principal);
    let filter = tri!(access.readable(tri!(request_filter(&params))).map_err(query_error));
    let count =
        tri!(api.auth.store.count_records(&app_id, &schema, &filter).await.map_err(|e| store_error(e).into_response()));
    Json(json!({ "count": count })).into_response()
}

async fn get_one(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let access = Access::new(&schema, &who.principal);
    let filter = tri!(access.records(None).map_err(query_error));
    match tri!(
        api.auth.store.get_record(&app_id, &schema, &id, &filter).await.map_err(|e| store_error(e).into_response())
    ) {
        Some(record) => Json(tri!(shown(&access, &record, None))).into_response(),
        None => not_found(&schema.name, &id),
    }
}

/// Checks one record to create: its data, and that the caller may create it.
fn prepare(access: &Access<'_>, who: &Caller, input: &Value) -> Result<NewRecord, Response> {
    let data = homebase_entities::validate::create(access.schema, input).map_err(invalid_record)?;
    let new = NewRecord {
        data,
        created_by: who.by.as_ref().map(|(email, _)| email.clone()),
        created_by_id: who.by.as_ref().map(|(_, id)| id.clone()),
        is_sample: homebase_entities::validate::is_sample(input),
    };
    // The record as it would be stored, for the rules to look at.
    let preview = Record {
        id: String::new(),
        created_date: String::new(),
        updated_date: String::new(),
        created_by: new.created_by.clone(),
        created_by_id: new.created_by_id.clone(),
        is_sample: new.is_sample,
        data: new.data.clone(),
    }
    .to_json();
    if !access.may_create(&preview).map_err(query_error)? {
        return Err(permission_denied(format!(
            "The access rules of {} do not let you create this record.",
            access.schema.name
        )));
    }
    if let Some(field) =
        access.forbidden_field(Write::Create, new.data.keys().map(String::as_str), &preview).map_err(query_error)?
    {
        return Err(permission_denied(format!(
            "The access rules of {} do not let you set '{field}'.",
            access.schema.name
        )));
    }
    Ok(new)
}

async fn create(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let access = Access::new(&schema, &who.principal);
    let input = tri!(json_body(&body));
    let new = tri!(prepare(&access, &who, &input));
    let records = tri!(
        api.auth.store.create_records(&app_id, &schema, vec![new]).await.map_err(|e| store_error(e).into_response())
    );
    (StatusCode::CREATED, Json(tri!(shown(&access, &records[0], None)))).into_response()
}

async fn bulk_create(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let access = Access::new(&schema, &who.principal);
    let Value::Array(items) = tri!(json_body(&body)) else {
        return bad_request("bulkCreate needs a JSON array of records", "Send [{…}, {…}].");
    };
    if items.len() > MAX_BULK {
        return bad_request(
            format!("{} records is too many for one bulk call; at most {MAX_BULK} are allowed", items.len()),
            format!("Send them in batches of {MAX_BULK}."),
        );
    }
    let mut new = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match prepare(&access, &who, item) {
            Ok(record) => new.push(record),
            Err(response) if response.status() == StatusCode::UNPROCESSABLE_ENTITY => {
                let error = homebase_entities::validate::create(&schema, item).unwrap_err();
                return invalid_record(ValidationError::new(format!("[{i}].{}", error.field), error.problem));
            }
            Err(response) => return response,
        }
    }
    let records =
        tri!(api.auth.store.create_records(&app_id, &schema, new).await.map_err(|e| store_error(e).into_response()));
    let mut out = Vec::with_capacity(records.len());
    for record in &records {
        out.push(tri!(shown(&access, record, None)));
    }
    (StatusCode::CREATED, Json(out)).into_response()
}

/// Why an update was refused inside its transaction.
enum Refusal {
    Invalid(ValidationError),
    Forbidden(String),
    Rules(QueryError),
}

async fn update(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let patch = tri!(json_body(&body));
    if !patch.is_object() {
        return bad_request("An update needs a JSON object of the fields to change", "Send {\"field\": value}.");
    }
    let filter = tri!(Access::new(&schema, &who.principal).records(Some(Write::Update)).map_err(query_error));
    let (rules_schema, principal) = (schema.clone(), who.principal.clone());
    let change = move |before: &Record| -> Result<Map<String, Value>, Refusal> {
        let access = Access::new(&rules_schema, &principal);
        let data =
            homebase_entities::validate::update(&rules_schema, &before.data, &patch).map_err(Refusal::Invalid)?;
        let changed = patch.as_object().into_iter().flat_map(|m| m.keys()).filter(|k| data.contains_key(k.as_str()));
        match access.forbidden_field(Write::Update, changed.map(String::as_str), &before.to_json()) {
            Ok(None) => Ok(data),
            Ok(Some(field)) => Err(Refusal::Forbidden(field.to_string())),
            Err(e) => Err(Refusal::Rules(e)),
        }
    };
    match api.auth.store.update_record(&app_id, &schema, &id, &filter, change).await {
        Ok(Some(record)) => Json(tri!(shown(&Access::new(&schema, &who.principal), &record, None))).into_response(),
        Ok(None) => not_found(&schema.name, &id),
        Err(WriteError::Store(e)) => store_error(e).into_response(),
        Err(WriteError::Rejected(Refusal::Invalid(e))) => invalid_record(e),
        Err(WriteError::Rejected(Refusal::Rules(e))) => query_error(e),
        Err(WriteError::Rejected(Refusal::Forbidden(field))) => {
            permission_denied(format!("The access rules of {} do not let you change '{field}'.", schema.name))
        }
    }
}

/// `PATCH …/update-many` with `{query, data}`: `data` in the update operators of reference §3.2
/// (a plain object is a `$set`), applied to up to [`MAX_BULK`] records the query and the update
/// rule select, in one transaction. `{success, updated, has_more}`: call again while `has_more`.
async fn update_many(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let body = tri!(json_body(&body));
    let query = body.get("query").cloned().unwrap_or(Value::Null);
    let Some(data) = body.get("data") else {
        return bad_request("updateMany needs data", "Send {\"query\": {…}, \"data\": {\"$set\": {…}}}.");
    };
    let update = tri!(homebase_entities::Update::parse(data).map_err(query_error));
    let access = Access::new(&schema, &who.principal);
    let filter = tri!(access.guard_fields(tri!(Filter::parse(&query).map_err(query_error))).map_err(query_error));
    let filter = filter.and(tri!(access.records(Some(Write::Update)).map_err(query_error)));
    let (rules_schema, principal) = (schema.clone(), who.principal.clone());
    let now = homebase_entities::record::iso_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
    );
    let fields = update.fields();
    let change = move |before: &Record| -> Result<Map<String, Value>, Refusal> {
        let access = Access::new(&rules_schema, &principal);
        let data = update.apply(&before.data, &now).map_err(Refusal::Invalid)?;
        let data = homebase_entities::validate::replace(&rules_schema, data).map_err(Refusal::Invalid)?;
        match access.forbidden_field(Write::Update, fields.iter().map(String::as_str), &before.to_json()) {
            Ok(None) => Ok(data),
            Ok(Some(field)) => Err(Refusal::Forbidden(field.to_string())),
            Err(e) => Err(Refusal::Rules(e)),
        }
    };
    match api.auth.store.update_records(&app_id, &schema, &filter, MAX_BULK as u64, change).await {
        Ok((updated, has_more)) => {
            Json(json!({ "success": true, "updated": updated.len(), "has_more": has_more })).into_response()
        }
        Err(WriteError::Store(e)) => store_error(e).into_response(),
        Err(WriteError::Rejected(Refusal::Invalid(e))) => invalid_record(e),
        Err(WriteError::Rejected(Refusal::Rules(e))) => query_error(e),
        Err(WriteError::Rejected(Refusal::Forbidden(field))) => {
            permission_denied(format!("The access rules of {} do not let you change '{field}'.", schema.name))
        }
    }
}

async fn delete_one(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let filter = tri!(Access::new(&schema, &who.principal).records(Some(Write::Delete)).map_err(query_error));
    match tri!(
        api.auth.store.delete_record(&app_id, &schema, &id, &filter).await.map_err(|e| store_error(e).into_response())
    ) {
        Some(_) => Json(json!({ "success": true })).into_response(),
        None => not_found(&schema.name, &id),
    }
}

async fn delete_many(
    State(api): State<Arc<EntitiesApi>>,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (app_id, schema) = tri!(entity(&api, &app, &name).await);
    let who = tri!(caller(&api.auth, &headers, &app_id).await);
    let access = Access::new(&schema, &who.principal);
    let query = if body.iter().all(u8::is_ascii_whitespace) { Value::Null } else { tri!(json_body(&body)) };
    if query.as_object().is_none_or(Map::is_empty) {
        return bad_request(
            "deleteMany needs a query that is not empty",
            "Send the query in the body, e.g. {\"status\": \"done\"}; to delete everything on purpose send \
             {\"id\": {\"$exists\": true}}.",
        );
    }
    let filter = tri!(Filter::parse(&query).map_err(query_error));
    let filter =
        tri!(access.guard_fields(filter).map_err(query_error)).and(tri!(access.records(None).map_err(query_error)));
    let filter = filter.and(tri!(access.records(Some(Write::Delete)).map_err(query_error)));
    let deleted = tri!(
        api.auth.store.delete_records(&app_id, &schema, &filter).await.map_err(|e| store_error(e).into_response())
    );
    Json(json!({ "success": true, "deleted": deleted.len() })).into_response()
}

/// `PUT /api/apps/{app_id}/entity-schemas` (reference §5.5): the official CLI's
/// `entities push`, for holders of a key of the app (or an admin key). The body
/// `{entityNameToSchema: {Name: schema}}` replaces the app's whole set; the answer is
/// `{created, updated, deleted}` (names).
pub fn schemas_router(store: homebase_store::Store) -> Router {
    Router::new().route("/api/apps/{app_id}/entity-schemas", axum::routing::put(push_schemas)).with_state(store)
}

async fn push_schemas(
    State(store): State<homebase_store::Store>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = tri!(crate::manage::Caller::authenticate(&store, &headers).await.map_err(IntoResponse::into_response));
    tri!(caller.require_app(&app_id).map_err(IntoResponse::into_response));
    let body = tri!(json_body(&body));
    let Some(map) = body.get("entityNameToSchema").and_then(Value::as_object) else {
        return bad_request(
            "The body needs entityNameToSchema",
            "Send {\"entityNameToSchema\": {\"Task\": {\"type\": \"object\", \"properties\": {…}}}}.",
        );
    };
    let schemas = match homebase_entities::Schemas::parse(map.iter().map(|(name, schema)| (name.as_str(), schema))) {
        Ok(schemas) => schemas,
        Err(e) => return bad_request(e.to_string(), "Fix the schema and push again."),
    };
    match store.set_entity_schemas(&app_id, &schemas).await {
        Ok(changes) => Json(changes).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// Loads `base44/entities` of the project at `root` into the store for `app_id` (`homebase
/// dev`, at start and after every change). Schemas that do not parse are left out with a
/// warning; records are kept whatever the new schemas say.
pub async fn load_project_schemas(store: &homebase_store::Store, root: &std::path::Path, app_id: &str) {
    let project = match homebase_project::Project::find(root) {
        Ok(project) => project,
        Err(e) => return tracing::warn!("entities were not reloaded: {e}"),
    };
    let discovery = project.load_entities();
    for problem in &discovery.problems {
        tracing::warn!("entity schema left out: {problem}");
    }
    let mut schemas = homebase_entities::Schemas::default();
    for entity in &discovery.entities {
        match EntitySchema::from_project(entity) {
            Ok(schema) => schemas.insert(schema),
            Err(e) => tracing::warn!("entity schema left out: {}: {e}", entity.file.display()),
        }
    }
    if let Err(e) = store.set_entity_schemas(app_id, &schemas).await {
        tracing::warn!("the entity schemas could not be stored: {e}");
    }
}
