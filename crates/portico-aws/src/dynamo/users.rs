//! The `Users` port on the table. A user is two items written in one transaction: the record, and
//! the claim on its subject that keeps subjects unique.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use portico_core::domain::{Role, SignIn, User};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result, Users};

use super::keys::{self, GSI1, GSI2, ONE};
use super::{DynamoStore, Item, corrupt, item, record, s};
use crate::error::sdk_error;

#[async_trait]
impl Users for DynamoStore {
    async fn insert_user(&self, user: &User) -> Result<()> {
        let sort = keys::order(user.created_at, &user.id);
        let user_item = item(
            keys::user(&user.id),
            ONE,
            user,
            &[
                (GSI1, keys::account_users(user.account_id.as_deref()), sort.clone()),
                (GSI2, keys::USERS.into(), sort),
            ],
        )?;
        let mut claim = Item::new();
        claim.insert("pk".into(), s(keys::sub_claim(&user.sub)));
        claim.insert("sk".into(), s(ONE));
        claim.insert("user_id".into(), s(user.id.clone()));
        let put = |item: Item| -> Result<TransactWriteItem> {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| Error::Unexpected(anyhow::anyhow!("building write: {e}")))?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        // Both or neither: the user, and the claim that makes its sub unique.
        let written = self
            .client
            .transact_write_items()
            .transact_items(put(user_item)?)
            .transact_items(put(claim)?)
            .send()
            .await;
        let error = match written {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        else {
            return Err(sdk_error("adding user", error));
        };
        let reasons: Vec<&str> =
            cancelled.cancellation_reasons().iter().filter_map(|r| r.code()).collect();
        if reasons.contains(&"ConditionalCheckFailed") {
            Err(Error::Conflict(format!("a user with id `{}` or this sub already exists", user.id)))
        } else {
            Err(Error::Unavailable(format!(
                "adding user: transaction cancelled ({})",
                reasons.join(", ")
            )))
        }
    }

    async fn user_by_sub(&self, sub: &str) -> Result<Option<User>> {
        let Some(claim) = self.get(keys::sub_claim(sub), ONE).await? else {
            return Ok(None);
        };
        let user_id = claim
            .get("user_id")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt("sub claim without user"))?;
        self.user_by_id(user_id).await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        self.get_record(keys::user(id), ONE).await
    }

    async fn set_user_roles(&self, user_id: &str, roles: &[Role]) -> Result<()> {
        let updated = self
            .update(keys::user(user_id), ONE, |user: &mut User| {
                user.roles = roles.to_vec();
                true
            })
            .await?;
        match updated {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("user `{user_id}` not found"))),
        }
    }

    async fn list_users(&self, account_id: &str, page: &PageRequest) -> Result<Page<User>> {
        let partition = keys::account_users(Some(account_id));
        self.page(GSI1, partition, false, page).await
    }

    async fn users_with_role(&self, account_id: Option<&str>, role: Role) -> Result<Vec<User>> {
        let items = match account_id {
            Some(account) => self.all(GSI1, keys::account_users(Some(account))).await?,
            None => self.all(GSI2, keys::USERS.into()).await?,
        };
        let mut users = Vec::new();
        for item in &items {
            let user: User = record(item)?;
            if user.has_role(role) {
                users.push(user);
            }
        }
        Ok(users)
    }

    async fn record_sign_in(&self, sign_in: &SignIn) -> Result<bool> {
        let sort = keys::order(sign_in.signed_in_at, &sign_in.id);
        let record =
            item(keys::sign_in(&sign_in.id), ONE, sign_in, &[(GSI1, keys::SIGN_INS.into(), sort)])?;
        self.create_once(record).await
    }

    async fn list_sign_ins(&self, page: &PageRequest) -> Result<Page<SignIn>> {
        self.page(GSI1, keys::SIGN_INS.into(), false, page).await
    }
}
