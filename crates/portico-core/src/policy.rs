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
    if can_see_account(caller, account_id) { Ok(()) } else { Err(not_found_account(account_id)) }
}

/// List an account's users: admins and the account's members.
pub fn list_account_users(caller: &Caller, account_id: &str) -> Result<()> {
    read_account(caller, account_id)?;
    if caller.has_role(Role::Admin) || caller.is_member_of(account_id) {
        Ok(())
    } else {
        Err(Error::Forbidden("only admins and the account's members may list its users".into()))
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

/// Which accounts' records a listing shows the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every account's (platform staff).
    All,
    /// One account's: the caller's own.
    Account(String),
    /// None: the caller belongs to no account.
    Nothing,
}

/// Lists of accounts, instruments and shipments: admins and support see every account's;
/// members see their own account's; anyone else an empty list.
pub fn list_scope(caller: &Caller) -> Result<Scope> {
    require_provisioned(caller)?;
    Ok(if caller.sees_all_accounts() { Scope::All } else { own_account_scope(caller) })
}

fn own_account_scope(caller: &Caller) -> Scope {
    match caller.account_id() {
        Some(account) => Scope::Account(account.to_string()),
        None => Scope::Nothing,
    }
}

/// Read an instrument of `account_id`: whoever may see that account; others get 404.
pub fn read_instrument(caller: &Caller, serial: &str, account_id: &str) -> Result<()> {
    require_provisioned(caller)?;
    if can_see_account(caller, account_id) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("instrument `{serial}` not found")))
    }
}

/// Read a document of `account_id`: the account's members, and platform admins. Support staff do
/// not: documents are customers' lab data (run files, reports), and support's job (instrument
/// alerts, service) does not need them; a customer who wants support to look shares the file.
/// Everyone else gets 404.
pub fn read_document(caller: &Caller, document_id: &str, account_id: &str) -> Result<()> {
    require_provisioned(caller)?;
    if caller.has_role(Role::Admin) || caller.is_member_of(account_id) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("document `{document_id}` not found")))
    }
}

/// List documents: a member sees their account's; platform staff, who belong to no account,
/// read documents by id only (admins) or not at all (support).
pub fn list_documents(caller: &Caller) -> Result<Scope> {
    require_provisioned(caller)?;
    Ok(own_account_scope(caller))
}

/// Upload a document: into the caller's own account, so only account members may; answers the
/// account.
pub fn upload_document(caller: &Caller) -> Result<&str> {
    require_provisioned(caller)?;
    caller.account_id().ok_or_else(|| {
        Error::Forbidden("documents belong to an account, and you are not a member of one".into())
    })
}

/// Read a lot (and its certificate): platform staff see every lot; members see the lots shipped
/// to their account (`received`); others get 404.
pub fn read_lot(caller: &Caller, lot_number: &str, received: bool) -> Result<()> {
    require_provisioned(caller)?;
    if caller.sees_all_accounts() || (caller.account_id().is_some() && received) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("lot `{lot_number}` not found")))
    }
}

/// Record a shipment: admins record any; a distributor's `account_admin` records onward
/// shipments from their own account (`from_account_id`). Others are forbidden: shipments are
/// visible to members, so this is not hidden.
pub fn create_shipment(caller: &Caller, from_account_id: Option<&str>) -> Result<()> {
    require_provisioned(caller)?;
    if caller.has_role(Role::Admin) {
        return Ok(());
    }
    match from_account_id {
        Some(from) if caller.is_member_of(from) && caller.has_role(Role::AccountAdmin) => Ok(()),
        Some(_) => Err(Error::Forbidden(
            "only admins and the sending account's account admins may record an onward shipment"
                .into(),
        )),
        None => Err(Error::Forbidden("only platform admins may do this".into())),
    }
}

/// A lot's trace (where it went, who used it): platform staff only; to anyone else the trace
/// does not exist (404), since it names other accounts.
pub fn trace_lot(caller: &Caller, lot_number: &str) -> Result<()> {
    require_provisioned(caller)?;
    if caller.sees_all_accounts() {
        Ok(())
    } else {
        Err(Error::NotFound(format!("lot `{lot_number}` not found")))
    }
}

/// Recall a lot: admins; support see the trace but may not recall (403); others 404.
pub fn recall_lot(caller: &Caller, lot_number: &str) -> Result<()> {
    trace_lot(caller, lot_number)?;
    if caller.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(Error::Forbidden("only platform admins may recall a lot".into()))
    }
}

/// The logs: platform staff only (they name every account); members are forbidden.
pub fn read_logs(caller: &Caller) -> Result<()> {
    require_provisioned(caller)?;
    if caller.sees_all_accounts() {
        Ok(())
    } else {
        Err(Error::Forbidden("only platform staff may read the logs".into()))
    }
}

/// The audit trail: platform staff read all of it; an account admin reads their own account's
/// records (answered as the account to restrict to); everyone else is forbidden.
pub fn read_audit(caller: &Caller) -> Result<Option<String>> {
    staff_or_own_account_admin(caller, "the audit trail")
}

/// Platform staff: every account (`None`); an account admin: their own account; anyone else is
/// forbidden to read `what`.
fn staff_or_own_account_admin(caller: &Caller, what: &str) -> Result<Option<String>> {
    require_provisioned(caller)?;
    if caller.sees_all_accounts() {
        return Ok(None);
    }
    match caller.account_id() {
        Some(account) if caller.has_role(Role::AccountAdmin) => Ok(Some(account.to_string())),
        _ => {
            Err(Error::Forbidden(format!("only platform staff and account admins may read {what}")))
        }
    }
}

/// The warehouse's reports: platform staff see every account; an account admin sees the same
/// reports limited to their account (answered as the account to restrict to); everyone else
/// is forbidden.
pub fn read_reports(caller: &Caller) -> Result<Option<String>> {
    staff_or_own_account_admin(caller, "reports")
}

/// Who in an account a lot reached is told of the lot's recall: its lab managers and account
/// admins.
pub fn told_of_recall(roles: &[Role]) -> bool {
    roles.iter().any(|r| matches!(r, Role::LabManager | Role::AccountAdmin))
}

/// Notifications are their owner's alone: answers the owner's user id. Listing needs a user
/// record (every provisioned caller has one).
pub fn own_notifications(caller: &Caller) -> Result<&str> {
    require_provisioned(caller)?;
    caller.user_id().ok_or_else(|| Error::Forbidden("you have no notifications".into()))
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
    fn onward_shipments_are_the_sender_account_admins() {
        let admin = caller(None, &[Role::Admin]);
        let distributor_admin = caller(Some("d"), &[Role::AccountAdmin]);
        let distributor_lab = caller(Some("d"), &[Role::LabManager]);
        assert!(create_shipment(&admin, None).is_ok());
        assert!(create_shipment(&admin, Some("d")).is_ok());
        assert!(create_shipment(&distributor_admin, Some("d")).is_ok());
        assert!(matches!(create_shipment(&distributor_admin, None), Err(Error::Forbidden(_))));
        assert!(matches!(
            create_shipment(&distributor_admin, Some("other")),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(create_shipment(&distributor_lab, Some("d")), Err(Error::Forbidden(_))));
    }

    #[test]
    fn traces_are_staff_only_and_recalls_admin_only() {
        let support = caller(None, &[Role::Support]);
        let scientist = caller(Some("a"), &[Role::Scientist]);
        let account_admin = caller(Some("a"), &[Role::AccountAdmin]);
        assert!(trace_lot(&support, "L").is_ok());
        assert!(matches!(trace_lot(&scientist, "L"), Err(Error::NotFound(_))));
        assert!(matches!(trace_lot(&account_admin, "L"), Err(Error::NotFound(_))));
        assert!(matches!(recall_lot(&support, "L"), Err(Error::Forbidden(_))));
        assert!(recall_lot(&caller(None, &[Role::Admin]), "L").is_ok());
        assert!(told_of_recall(&[Role::Scientist, Role::LabManager]));
        assert!(!told_of_recall(&[Role::Scientist]));
    }

    #[test]
    fn reports_are_staff_wide_and_account_admin_narrow() {
        let admin = caller(Some("acc-1"), &[Role::AccountAdmin]);
        assert_eq!(read_reports(&admin).ok().flatten(), Some("acc-1".to_string()));
        assert!(matches!(read_reports(&caller(None, &[Role::Support])), Ok(None)));
        assert!(matches!(read_reports(&caller(None, &[Role::Admin])), Ok(None)));
        for role in [Role::LabManager, Role::Scientist] {
            assert!(matches!(
                read_reports(&caller(Some("acc-1"), &[role])),
                Err(Error::Forbidden(_))
            ));
        }
    }

    #[test]
    fn unprovisioned_callers_are_forbidden() {
        let nobody = Caller { sub: "x".into(), user: None };
        assert!(matches!(read_account(&nobody, "a"), Err(Error::Forbidden(_))));
    }

    #[test]
    fn other_accounts_are_hidden_not_forbidden() {
        let scientist = caller(Some("a"), &[Role::Scientist]);
        assert!(read_account(&scientist, "a").is_ok());
        assert!(matches!(read_account(&scientist, "b"), Err(Error::NotFound(_))));
        assert!(matches!(
            add_account_user(&scientist, "b", &[Role::Scientist]),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn account_admins_grant_account_roles_only() {
        let aa = caller(Some("a"), &[Role::AccountAdmin]);
        assert!(add_account_user(&aa, "a", &[Role::LabManager]).is_ok());
        assert!(matches!(add_account_user(&aa, "a", &[Role::Admin]), Err(Error::Forbidden(_))));
        let lm = caller(Some("a"), &[Role::LabManager]);
        assert!(matches!(add_account_user(&lm, "a", &[Role::Scientist]), Err(Error::Forbidden(_))));
    }

    #[test]
    fn support_reads_all_accounts_but_not_their_users() {
        let support = caller(None, &[Role::Support]);
        assert!(read_account(&support, "any").is_ok());
        assert!(matches!(list_account_users(&support, "any"), Err(Error::Forbidden(_))));
        assert!(matches!(require_admin(&support), Err(Error::Forbidden(_))));
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        Allow,
        /// 404: the caller may not know the thing exists.
        Hide,
        /// 403: the caller may see it, but not do this.
        Forbid,
    }
    use Answer::{Allow as A, Forbid as F, Hide as H};

    fn answer<T>(result: Result<T>) -> Answer {
        match result {
            Ok(_) => A,
            Err(Error::NotFound(_)) => H,
            Err(Error::Forbidden(_)) => F,
            Err(e) => panic!("the policy answered {e:?}"),
        }
    }

    /// Every role x every action x own account (`a`) / another (`b`), as one table. Platform
    /// staff belong to no account; `a` is just some account to them.
    #[test]
    fn the_whole_policy_as_one_table() {
        let callers = [
            caller(None, &[Role::Admin]),
            caller(None, &[Role::Support]),
            caller(Some("a"), &[Role::AccountAdmin]),
            caller(Some("a"), &[Role::LabManager]),
            caller(Some("a"), &[Role::Scientist]),
            Caller { sub: "stranger".into(), user: None },
        ];
        type Action = fn(&Caller) -> Answer;
        #[rustfmt::skip]
        let rows: &[(&str, Action, [Answer; 6])] = &[
            // (action, how it is asked, answer to [admin, support, account admin, lab manager, scientist, stranger])
            ("read own account", |c| answer(read_account(c, "a")),                       [A, A, A, A, A, F]),
            ("read other account", |c| answer(read_account(c, "b")),                     [A, A, H, H, H, F]),
            ("list own users", |c| answer(list_account_users(c, "a")),                   [A, F, A, A, A, F]),
            ("list other users", |c| answer(list_account_users(c, "b")),                 [A, F, H, H, H, F]),
            ("add own user", |c| answer(add_account_user(c, "a", &[Role::Scientist])),   [A, F, A, F, F, F]),
            ("add other user", |c| answer(add_account_user(c, "b", &[Role::Scientist])), [A, F, H, H, H, F]),
            ("grant admin", |c| answer(add_account_user(c, "a", &[Role::Admin])),        [A, F, F, F, F, F]),
            ("register own instrument", |c| answer(register_instrument(c, "a")),         [A, F, A, F, F, F]),
            ("register other instrument", |c| answer(register_instrument(c, "b")),       [A, F, H, H, H, F]),
            ("read own instrument", |c| answer(read_instrument(c, "SN", "a")),           [A, A, A, A, A, F]),
            ("read other instrument", |c| answer(read_instrument(c, "SN", "b")),         [A, A, H, H, H, F]),
            ("read own document", |c| answer(read_document(c, "d", "a")),                [A, H, A, A, A, F]),
            ("read other document", |c| answer(read_document(c, "d", "b")),              [A, H, H, H, H, F]),
            ("upload a document", |c| answer(upload_document(c)),                        [F, F, A, A, A, F]),
            ("read a received lot", |c| answer(read_lot(c, "L1", true)),                 [A, A, A, A, A, F]),
            ("read another lot", |c| answer(read_lot(c, "L1", false)),                   [A, A, H, H, H, F]),
            ("own notifications", |c| answer(own_notifications(c)),                      [A, A, A, A, A, F]),
            ("catalogue, outbox", |c| answer(require_admin(c)),                          [A, F, F, F, F, F]),
        ];
        for (action, decide, expected) in rows {
            let got: Vec<Answer> = callers.iter().map(decide).collect();
            assert_eq!(got, expected.to_vec(), "{action}");
        }
        let scopes: Vec<Option<Scope>> = callers.iter().map(|c| list_scope(c).ok()).collect();
        let own = Some(Scope::Account("a".into()));
        assert_eq!(
            scopes,
            vec![Some(Scope::All), Some(Scope::All), own.clone(), own.clone(), own.clone(), None]
        );
        let documents: Vec<Option<Scope>> =
            callers.iter().map(|c| list_documents(c).ok()).collect();
        assert_eq!(
            documents,
            vec![Some(Scope::Nothing), Some(Scope::Nothing), own.clone(), own.clone(), own, None]
        );
    }
}
