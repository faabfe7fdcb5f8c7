//! App users, their one-time codes and auth settings on PostgreSQL (the rules are in
//! [`crate::users`]).

use serde_json::Value;
use tokio_postgres::Row;

use super::apps::ensure_app;
use super::{Postgres, execute, pg, query, query_opt};
use crate::changes::{Change, ChangeKind};
use crate::error::{Result, StoreError};
use crate::users::{
    CodeCheck, CodePurpose, MAX_CODE_ATTEMPTS, User, UserRole, UserUpdate, constant_time_eq, not_found, password_stamp,
    update_kind,
};

const USER_COLUMNS: &str = "SELECT id, app_id, email, full_name, role, is_verified, disabled, data, created_at, \
                            updated_at, password_hash, session_epoch FROM users";

fn user_from_row(r: &Row) -> (User, Option<String>) {
    let (user, hash, _) = user_row(r);
    (user, hash)
}

/// A user, its password hash and its session epoch.
fn user_row(r: &Row) -> (User, Option<String>, i64) {
    let role: String = r.get(4);
    let data: String = r.get(7);
    let hash: Option<String> = r.get(10);
    let epoch: i64 = r.get(11);
    let id: String = r.get(0);
    let user = User {
        password_stamp: password_stamp(&id, hash.as_deref(), epoch),
        id,
        app_id: r.get(1),
        email: r.get(2),
        full_name: r.get(3),
        role: if role == "admin" { UserRole::Admin } else { UserRole::User },
        is_verified: r.get(5),
        disabled: r.get(6),
        has_password: hash.is_some(),
        data: serde_json::from_str(&data).unwrap_or_default(),
        created_at: r.get(8),
        updated_at: r.get(9),
    };
    (user, hash, epoch)
}

impl Postgres {
    pub(crate) async fn insert_user(&self, user: User, hash: Option<String>) -> Result<User> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        ensure_app(&tx, &user.app_id).await?;
        // A concurrent insert of the same address waits for this one and then finds it.
        let inserted = execute(
            &tx,
            "INSERT INTO users (id, app_id, email, password_hash, full_name, role, is_verified, disabled, data,
                                created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (app_id, lower(email)) DO NOTHING",
            &[
                &user.id,
                &user.app_id,
                &user.email,
                &hash,
                &user.full_name,
                &user.role.as_str(),
                &user.is_verified,
                &user.disabled,
                &Value::Object(user.data.clone()).to_string(),
                &user.created_at,
                &user.updated_at,
            ],
        )
        .await?;
        if inserted == 0 {
            return Err(StoreError::conflict(format!("A user with the e-mail '{}' already exists", user.email)));
        }
        self.finish(tx, "create_user", true, Some(Change::user(&user.app_id, ChangeKind::Users, &user.id))).await?;
        Ok(user)
    }

    /// By `column` (`id` or `email`).
    pub(crate) async fn find_user(
        &self,
        app_id: String,
        column: &'static str,
        value: String,
    ) -> Result<Option<(User, Option<String>)>> {
        let client = self.client().await?;
        let sql = format!("{USER_COLUMNS} WHERE app_id = $1 AND {column} = $2");
        Ok(query_opt(&client, &sql, &[&app_id, &value]).await?.as_ref().map(user_from_row))
    }

    pub(crate) async fn list_users(&self, app_id: String) -> Result<Vec<User>> {
        let client = self.client().await?;
        let sql = format!("{USER_COLUMNS} WHERE app_id = $1 ORDER BY created_at, rowid");
        Ok(query(&client, &sql, &[&app_id]).await?.iter().map(|r| user_from_row(r).0).collect())
    }

    pub(crate) async fn set_password(&self, app_id: String, user_id: String, hash: String, now: i64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let n = execute(
            &tx,
            "UPDATE users SET password_hash = $3, updated_at = $4 WHERE app_id = $1 AND id = $2",
            &[&app_id, &user_id, &hash, &now],
        )
        .await?;
        if n == 0 {
            return Err(not_found(&user_id));
        }
        // A new password voids an outstanding reset token.
        execute(&tx, "DELETE FROM user_codes WHERE user_id = $1 AND purpose = 'reset'", &[&user_id]).await?;
        self.finish(tx, "set_password", true, Some(Change::user(&app_id, ChangeKind::SignIn, &user_id))).await
    }

    pub(crate) async fn update_user(
        &self,
        app_id: String,
        user_id: String,
        update: UserUpdate,
        now: i64,
    ) -> Result<User> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let kind = update_kind(&update);
        // FOR UPDATE: two concurrent updates merge their custom fields one after the other, and
        // two concurrent disablings bump the epoch once.
        let sql = format!("{USER_COLUMNS} WHERE app_id = $1 AND id = $2 FOR UPDATE");
        let (mut user, hash, epoch) = query_opt(&tx, &sql, &[&app_id, &user_id])
            .await?
            .as_ref()
            .map(user_row)
            .ok_or_else(|| not_found(&user_id))?;
        // Disabling ends every session for good: a new epoch, a new stamp.
        let epoch = if update.disabled == Some(true) && !user.disabled { epoch + 1 } else { epoch };
        user.password_stamp = password_stamp(&user.id, hash.as_deref(), epoch);
        if let Some(name) = update.full_name {
            user.full_name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        }
        user.role = update.role.unwrap_or(user.role);
        user.is_verified = update.is_verified.unwrap_or(user.is_verified);
        user.disabled = update.disabled.unwrap_or(user.disabled);
        user.data.extend(update.data);
        user.updated_at = now;
        execute(
            &tx,
            "UPDATE users SET full_name = $3, role = $4, is_verified = $5, disabled = $6, data = $7, updated_at = $8,
                              session_epoch = $9
             WHERE app_id = $1 AND id = $2",
            &[
                &app_id,
                &user_id,
                &user.full_name,
                &user.role.as_str(),
                &user.is_verified,
                &user.disabled,
                &Value::Object(user.data.clone()).to_string(),
                &now,
                &epoch,
            ],
        )
        .await?;
        self.finish(tx, "update_user", true, Some(Change::user(&app_id, kind, &user_id))).await?;
        Ok(user)
    }

    /// Deletes the user; its codes go with it (`ON DELETE CASCADE`).
    pub(crate) async fn delete_user(&self, app_id: String, user_id: String) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let n = execute(&tx, "DELETE FROM users WHERE app_id = $1 AND id = $2", &[&app_id, &user_id]).await?;
        self.finish(tx, "delete_user", n > 0, Some(Change::user(&app_id, ChangeKind::SignIn, &user_id))).await?;
        Ok(n > 0)
    }

    pub(crate) async fn put_code(
        &self,
        user_id: String,
        purpose: CodePurpose,
        hash: String,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // A verification code keeps the guesses of a live earlier one, and the expiry of a
        // spent one: resending is no way to more guesses.
        let n = execute(
            &tx,
            "INSERT INTO user_codes (user_id, purpose, code_hash, expires_at, attempts)
             SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BIGINT, 0 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)
             ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = excluded.code_hash,
                 expires_at = CASE WHEN $6 AND user_codes.expires_at > $5 AND user_codes.attempts >= $7
                                   THEN user_codes.expires_at ELSE excluded.expires_at END,
                 attempts = CASE WHEN $6 AND user_codes.expires_at > $5
                                 THEN user_codes.attempts ELSE 0 END",
            &[
                &user_id,
                &purpose.as_str(),
                &hash,
                &expires_at,
                &now,
                &(purpose == CodePurpose::Verify),
                &MAX_CODE_ATTEMPTS,
            ],
        )
        .await?;
        if n == 0 {
            return Err(not_found(&user_id));
        }
        self.finish(tx, "put_code", true, None).await
    }

    pub(crate) async fn take_code(
        &self,
        user_id: String,
        purpose: CodePurpose,
        hash: String,
        now: i64,
    ) -> Result<CodeCheck> {
        let purpose_name = purpose.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // FOR UPDATE: concurrent guesses count one after the other.
        let stored = query_opt(
            &tx,
            "SELECT code_hash, expires_at, attempts FROM user_codes WHERE user_id = $1 AND purpose = $2 FOR UPDATE",
            &[&user_id, &purpose_name],
        )
        .await?;
        let Some(stored) = stored else {
            self.finish(tx, "take_code", false, None).await?;
            return Ok(CodeCheck::Invalid);
        };
        let (stored, expires_at, attempts): (String, i64, i64) = (stored.get(0), stored.get(1), stored.get(2));
        let delete = "DELETE FROM user_codes WHERE user_id = $1 AND purpose = $2";
        let (check, wrote) = if expires_at <= now {
            execute(&tx, delete, &[&user_id, &purpose_name]).await?;
            (CodeCheck::Invalid, true)
        } else if attempts >= MAX_CODE_ATTEMPTS {
            // A spent verification code stays until it expires, carrying its count.
            if purpose == CodePurpose::Verify {
                (CodeCheck::Invalid, false)
            } else {
                execute(&tx, delete, &[&user_id, &purpose_name]).await?;
                (CodeCheck::Invalid, true)
            }
        } else if constant_time_eq(stored.as_bytes(), hash.as_bytes()) {
            execute(&tx, delete, &[&user_id, &purpose_name]).await?;
            (CodeCheck::Valid, true)
        } else {
            execute(
                &tx,
                "UPDATE user_codes SET attempts = attempts + 1 WHERE user_id = $1 AND purpose = $2",
                &[&user_id, &purpose_name],
            )
            .await?;
            (CodeCheck::Invalid, true)
        };
        self.finish(tx, "take_code", wrote, None).await?;
        Ok(check)
    }

    pub(crate) async fn require_verification(&self, app_id: String) -> Result<Option<bool>> {
        let client = self.client().await?;
        Ok(query_opt(&client, "SELECT require_verification FROM auth_settings WHERE app_id = $1", &[&app_id])
            .await?
            .map(|r| r.get(0)))
    }

    pub(crate) async fn set_require_verification(&self, app_id: String, required: bool) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        ensure_app(&tx, &app_id).await?;
        execute(
            &tx,
            "INSERT INTO auth_settings (app_id, require_verification) VALUES ($1, $2)
             ON CONFLICT (app_id) DO UPDATE SET require_verification = excluded.require_verification",
            &[&app_id, &required],
        )
        .await?;
        self.finish(tx, "set_auth_settings", true, Some(Change::app(&app_id, ChangeKind::Users))).await
    }
}
