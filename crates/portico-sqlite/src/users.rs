//! The `Users` port on SQLite. A `user_roles` index serves "who holds role X".

use anyhow::Context;
use async_trait::async_trait;
use portico_core::domain::{Role, SignIn, User, sub_key};
use portico_core::graph::Change;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result, Users};
use rusqlite::{OptionalExtension, Row, params};

use crate::rows::{Decoded, conflict_or, corrupt, json_row, parse_timestamp, timestamp, values};
use crate::store::Order;
use crate::{SqliteStore, changes};

const COLUMNS: &str = "seq, id, sub, email, display_name, account_id, roles, created_at";

#[async_trait]
impl Users for SqliteStore {
    async fn insert_user(&self, user: &User) -> Result<()> {
        let u = user.clone();
        self.db
            .transaction("user", move |tx| {
                let created_at = timestamp(u.created_at)?;
                // Cached: the writer thread runs this for every user added.
                tx.prepare_cached(
                    "INSERT INTO users (id, sub, sub_key, email, display_name, account_id, roles, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        u.id,
                        u.sub,
                        sub_key(&u.sub),
                        u.email,
                        u.display_name,
                        u.account_id,
                        roles_text(&u.roles),
                        created_at
                    ])
                })
                .map_err(|e| {
                    conflict_or(
                        e,
                        format!("a user with sub `{}` already exists", u.sub),
                        "inserting user",
                    )
                })?;
                index_roles(tx, &u.id, u.account_id.as_deref(), &u.roles)?;
                changes::record(tx, &Change::User(u))
            })
            .await
    }

    async fn user_by_sub(&self, sub: &str) -> Result<Option<User>> {
        let key = sub_key(sub);
        let sql = format!("SELECT {COLUMNS} FROM users WHERE sub_key = ?1");
        self.one(&sql, params![key], user_row, "reading user")
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
        self.one(&sql, params![id], user_row, "reading user")
    }

    async fn set_user_roles(&self, user_id: &str, roles: &[Role]) -> Result<()> {
        let id = user_id.to_string();
        let roles = roles.to_vec();
        self.db
            .transaction("roles", move |tx| {
                let account_id: Option<Option<String>> = tx
                    .query_row(
                        "UPDATE users SET roles = ?2 WHERE id = ?1 RETURNING account_id",
                        params![id, roles_text(&roles)],
                        |row| row.get(0),
                    )
                    .optional()
                    .context("updating user roles")?;
                let Some(account_id) = account_id else {
                    return Err(Error::NotFound(format!("user `{id}` not found")));
                };
                tx.execute("DELETE FROM user_roles WHERE user_id = ?1", params![id])
                    .context("clearing role index")?;
                index_roles(tx, &id, account_id.as_deref(), &roles)?;
                let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
                let (_, user) =
                    tx.query_row(&sql, params![id], user_row).context("rereading user")?;
                changes::record(tx, &Change::User(user?))
            })
            .await
    }

    async fn list_users(&self, account_id: &str, page: &PageRequest) -> Result<Page<User>> {
        let select = format!("SELECT {COLUMNS} FROM users WHERE account_id = ?2");
        self.listing(&select, &[&account_id], user_row, page, Order::OldestFirst, "listing users")
    }

    async fn users_with_role(&self, account_id: Option<&str>, role: Role) -> Result<Vec<User>> {
        let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
        let sql = format!(
            "SELECT {} FROM user_roles r JOIN users u ON u.id = r.user_id
             WHERE r.role = ?1 AND (?2 IS NULL OR r.account_id = ?2) ORDER BY u.seq",
            columns.join(", ")
        );
        let params = params![role.as_str(), account_id];
        self.all(&sql, params, user_row, "listing users by role")
    }

    async fn record_sign_in(&self, sign_in: &SignIn) -> Result<bool> {
        let sql = "INSERT INTO sign_ins (id, user_id, body) VALUES (?1, ?2, ?3)
                   ON CONFLICT (id) DO NOTHING";
        let body = serde_json::to_string(sign_in).context("encoding sign-in")?;
        let values = values![sign_in.id.clone(), sign_in.user_id.clone(), body];
        self.record_once(sql, values, Change::SignIn(sign_in.clone()), "recording sign-in").await
    }

    async fn list_sign_ins(&self, page: &PageRequest) -> Result<Page<SignIn>> {
        let select = "SELECT seq, body FROM sign_ins WHERE TRUE";
        self.listing(select, &[], json_row::<SignIn>, page, Order::OldestFirst, "listing sign-ins")
    }
}

/// Keeps the role index in step with a user's roles (inside the caller's transaction).
fn index_roles(
    tx: &rusqlite::Connection,
    user_id: &str,
    account_id: Option<&str>,
    roles: &[Role],
) -> Result<()> {
    for role in roles {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO user_roles (role, user_id, account_id) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut insert| insert.execute(params![role.as_str(), user_id, account_id]))
        .context("indexing user role")?;
    }
    Ok(())
}

fn user_row(row: &Row<'_>) -> rusqlite::Result<Decoded<User>> {
    let seq: i64 = row.get(0)?;
    let (id, sub, email, display_name): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    let account_id: Option<String> = row.get(5)?;
    let (roles, created): (String, String) = (row.get(6)?, row.get(7)?);
    let user = parse_roles(&roles).and_then(|roles| {
        Ok(User {
            id,
            sub,
            email,
            display_name,
            account_id,
            roles,
            created_at: parse_timestamp(&created)?,
        })
    });
    Ok((seq, user))
}

fn roles_text(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

fn parse_roles(text: &str) -> Result<Vec<Role>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Role::parse(s).ok_or_else(|| corrupt(format!("unknown role {s:?}"))))
        .collect()
}
