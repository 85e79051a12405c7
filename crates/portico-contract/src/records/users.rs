//! The `Users` port.

use portico_core::domain::{Role, SignIn, User};
use portico_core::{Accounts, Error, Users};

use super::{at, two_accounts, user, walk};

/// Users: subs unique after ASCII case folding (and nothing else), roles replaced, listed per account oldest first, and
/// found by role within an account or platform-wide.
pub async fn subjects_and_roles(accounts: &dyn Accounts, users: &dyn Users) {
    two_accounts(accounts).await;
    let ada = user(1, Some("acc-1"), &[Role::LabManager, Role::Scientist]);
    users.insert_user(&ada).await.unwrap();
    let twin = User { id: "u-twin".into(), sub: "user1@example.COM".into(), ..ada.clone() };
    assert!(matches!(users.insert_user(&twin).await, Err(Error::Conflict(_))));
    assert_eq!(users.user_by_id("u-twin").await.unwrap(), None);
    assert_eq!(users.user_by_sub("USER1@example.com").await.unwrap(), Some(ada.clone()));
    assert_eq!(users.user_by_id("u-1").await.unwrap(), Some(ada.clone()));
    // Only ASCII case folds: look-alikes are other subjects, and may be other users.
    for other in [
        "user1@example.com ",
        " user1@example.com",
        "\u{1D5CE}ser1@example.com",
        "USER1@EXAMPLE.CO\u{041C}",
    ] {
        assert_eq!(users.user_by_sub(other).await.unwrap(), None, "{other:?}");
    }
    let spaced = User {
        id: "u-spaced".into(),
        sub: "user1@example.com ".into(),
        account_id: Some("acc-2".into()),
        roles: vec![Role::Scientist],
        ..ada.clone()
    };
    users.insert_user(&spaced).await.unwrap();
    assert_eq!(users.user_by_sub("USER1@example.com ").await.unwrap(), Some(spaced.clone()));

    for n in 2..6 {
        users.insert_user(&user(n, Some("acc-1"), &[Role::Scientist])).await.unwrap();
    }
    users.insert_user(&user(6, Some("acc-2"), &[Role::LabManager])).await.unwrap();
    users.insert_user(&user(7, None, &[Role::Support])).await.unwrap();

    let ids: Vec<String> = walk(2, |p| async move { users.list_users("acc-1", &p).await })
        .await
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, vec!["u-1", "u-2", "u-3", "u-4", "u-5"]);

    users.set_user_roles("u-2", &[Role::LabManager, Role::AccountAdmin]).await.unwrap();
    let changed = users.user_by_id("u-2").await.unwrap().unwrap();
    assert_eq!(changed.roles, vec![Role::LabManager, Role::AccountAdmin]);
    assert!(matches!(
        users.set_user_roles("u-404", &[Role::Scientist]).await,
        Err(Error::NotFound(_))
    ));

    let holding = |account: Option<&'static str>, role: Role| async move {
        let found = users.users_with_role(account, role).await.unwrap();
        let mut ids: Vec<String> = found.into_iter().map(|u| u.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(holding(Some("acc-1"), Role::LabManager).await, ["u-1", "u-2"]);
    assert_eq!(holding(None, Role::LabManager).await, ["u-1", "u-2", "u-6"]);
    let support = users.users_with_role(None, Role::Support).await.unwrap();
    assert_eq!(support.len(), 1);
    assert_eq!(support[0].id, "u-7");

    // Sign-ins: each once by its id, listed oldest first.
    let sign_in = |id: &str, n: i64| SignIn {
        id: id.into(),
        user_id: "u-1".into(),
        account_id: Some("acc-1".into()),
        signed_in_at: at(400 + n),
    };
    assert!(users.record_sign_in(&sign_in("in-1", 1)).await.unwrap());
    assert!(!users.record_sign_in(&sign_in("in-1", 1)).await.unwrap());
    assert!(users.record_sign_in(&sign_in("in-2", 2)).await.unwrap());
    let sign_ins = walk(1, |p| async move { users.list_sign_ins(&p).await }).await;
    assert_eq!(sign_ins, vec![sign_in("in-1", 1), sign_in("in-2", 2)]);
}
