//! Who may do what. Every function asks here; no host or adapter decides access.
//!
//! The rule for hiding: a caller who may not see a thing gets `NotFound`, never `Forbidden`, so
//! that ids cannot be probed. `Forbidden` is for things the caller can see but not change.

use crate::domain::{Caller, Role};
use crate::error::{Error, Result};

/// Every route but `GET /v1/me` needs the caller to hold at least one role.
pub fn require_provisioned(caller: &Caller) -> Result<()> {
    if caller.roles().is_empty() {
        return Err(Error::Forbidden(
            "you are not a member of any account yet; ask an account admin to add you".into(),
        ));
    }
    Ok(())
}

pub fn require_admin(caller: &Caller) -> Result<()> {
    require_provisioned(caller)?;
    if !caller.has_role(Role::Admin) {
        return Err(Error::Forbidden("only platform admins may do this".into()));
    }
    Ok(())
}

/// May the caller see this account at all?
pub fn can_see_account(caller: &Caller, account_id: &str) -> bool {
    caller.sees_all_accounts() || caller.is_member_of(account_id)
}

/// Read one account: admins and support see all; members see their own; others get 404.
pub fn read_account(caller: &Caller, account_id: &str) -> Result<()> {
    require_provisioned(caller)?;
    if can_see_account(caller, account_id) {
        Ok(())
    } else {
        Err(not_found_account(account_id))
    }
}

/// List an account's users: admins and the account's members.
pub fn list_account_users(caller: &Caller, account_id: &str) -> Result<()> {
    read_account(caller, account_id)?;
    if caller.has_role(Role::Admin) || caller.is_member_of(account_id) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only admins and the account's members may list its users".into(),
        ))
    }
}

/// Add a user with `roles` to an account: admins, and that account's `account_admin`s, who may
/// grant account roles only.
pub fn add_account_user(caller: &Caller, account_id: &str, roles: &[Role]) -> Result<()> {
    read_account(caller, account_id)?;
    let is_admin = caller.has_role(Role::Admin);
    let is_account_admin = caller.is_member_of(account_id) && caller.has_role(Role::AccountAdmin);
    if !is_admin && !is_account_admin {
        return Err(Error::Forbidden(
            "only admins and the account's account_admins may add users".into(),
        ));
    }
    if let Some(role) = roles.iter().find(|r| r.is_platform())
        && !is_admin
    {
        return Err(Error::Forbidden(format!(
            "an account_admin cannot grant the platform role `{}`",
            role.as_str()
        )));
    }
    Ok(())
}

/// Register an instrument to an account: admins and that account's `account_admin`s.
pub fn register_instrument(caller: &Caller, account_id: &str) -> Result<()> {
    read_account(caller, account_id)?;
    if caller.has_role(Role::Admin)
        || (caller.is_member_of(account_id) && caller.has_role(Role::AccountAdmin))
    {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only admins and the account's account_admins may register instruments".into(),
        ))
    }
}

pub fn not_found_account(account_id: &str) -> Error {
    Error::NotFound(format!("account `{account_id}` not found"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::User;
    use time::OffsetDateTime;

    fn caller(account: Option<&str>, roles: &[Role]) -> Caller {
        Caller {
            sub: "someone".into(),
            user: Some(User {
                id: "u1".into(),
                sub: "someone".into(),
                email: "someone@example.com".into(),
                display_name: "Someone".into(),
                account_id: account.map(str::to_owned),
                roles: roles.to_vec(),
                created_at: OffsetDateTime::UNIX_EPOCH,
            }),
        }
    }

    #[test]
    fn unprovisioned_callers_are_forbidden() {
        let nobody = Caller {
            sub: "x".into(),
            user: None,
        };
        assert!(matches!(
            read_account(&nobody, "a"),
            Err(Error::Forbidden(_))
        ));
    }

    #[test]
    fn other_accounts_are_hidden_not_forbidden() {
        let scientist = caller(Some("a"), &[Role::Scientist]);
        assert!(read_account(&scientist, "a").is_ok());
        assert!(matches!(
            read_account(&scientist, "b"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            add_account_user(&scientist, "b", &[Role::Scientist]),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn account_admins_grant_account_roles_only() {
        let aa = caller(Some("a"), &[Role::AccountAdmin]);
        assert!(add_account_user(&aa, "a", &[Role::LabManager]).is_ok());
        assert!(matches!(
            add_account_user(&aa, "a", &[Role::Admin]),
            Err(Error::Forbidden(_))
        ));
        let lm = caller(Some("a"), &[Role::LabManager]);
        assert!(matches!(
            add_account_user(&lm, "a", &[Role::Scientist]),
            Err(Error::Forbidden(_))
        ));
    }

    #[test]
    fn support_reads_all_accounts_but_not_their_users() {
        let support = caller(None, &[Role::Support]);
        assert!(read_account(&support, "any").is_ok());
        assert!(matches!(
            list_account_users(&support, "any"),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(require_admin(&support), Err(Error::Forbidden(_))));
    }
}
