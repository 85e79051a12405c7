//! Accounts and users, with every role, through the HTTP API.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{fields, id, spawn_app};

#[tokio::test]
async fn admins_create_accounts_and_members_see_only_their_own() {
    let app = spawn_app().await;
    let acme = app.create_account("Acme Labs").await;
    let globex = app.create_account("Globex").await;
    assert!(acme["account_number"].as_str().is_some_and(|n| n.parse::<u64>().is_ok()));

    let scientist = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let (status, me) = app.get("/v1/me", &scientist).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["account_id"], acme["id"]);
    assert_eq!(me["roles"], json!(["scientist"]));

    let (status, own) = app.get(&format!("/v1/accounts/{}", id(&acme)), &scientist).await;
    assert_eq!((status, own["name"].as_str()), (StatusCode::OK, Some("Acme Labs")));
    // Another account is not forbidden but invisible.
    let (status, problem) = app.get(&format!("/v1/accounts/{}", id(&globex)), &scientist).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["status"], 404);
    let (status, list) = app.get("/v1/accounts", &scientist).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    // Members cannot create accounts.
    let (status, _) =
        app.post("/v1/accounts", &scientist, json!({"name": "Mine", "kind": "customer"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Support reads every account but not their users.
    let support = app.support_token();
    let (status, list) = app.get("/v1/accounts", &support).await;
    assert_eq!((status, list["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
    let (status, _) = app.get(&format!("/v1/accounts/{}/users", id(&acme)), &support).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn strangers_only_learn_who_they_are() {
    let app = spawn_app().await;
    let acme = app.create_account("Acme Labs").await;
    let stranger = app.token("mallory@example.com", &["some-other-group"]);
    let (status, me) = app.get("/v1/me", &stranger).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], serde_json::Value::Null);
    assert_eq!(me["roles"], json!([]));
    for path in [
        "/v1/accounts".to_string(),
        format!("/v1/accounts/{}", id(&acme)),
        format!("/v1/accounts/{}/users", id(&acme)),
    ] {
        let (status, _) = app.get(&path, &stranger).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn account_admins_manage_their_own_account_only() {
    let app = spawn_app().await;
    let acme = app.create_account("Acme Labs").await;
    let globex = app.create_account("Globex").await;
    let alice = app.add_user(&acme, "alice@acme.example", &["account_admin"]).await;
    let users = format!("/v1/accounts/{}/users", id(&acme));

    let (status, bob) = app
        .post(&users, &alice, json!({"sub": "bob@acme.example", "email": "bob@acme.example", "display_name": "Bob", "roles": ["lab_manager", "scientist"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bob}");
    assert_eq!(bob["roles"], json!(["lab_manager", "scientist"]));

    // Granting a platform role is an escalation: refused, and nothing is created.
    let (status, problem) = app
        .post(&users, &alice, json!({"sub": "eve@acme.example", "email": "eve@acme.example", "display_name": "Eve", "roles": ["admin"]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, eve) = app.get("/v1/me", &app.token("eve@acme.example", &[])).await;
    assert_eq!((status, eve["id"].clone()), (StatusCode::OK, serde_json::Value::Null));
    let (_, list) = app.get(&users, &alice).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));

    // Another account's users are out of reach.
    let (status, _) = app
        .post(&format!("/v1/accounts/{}/users", id(&globex)), &alice, json!({"sub": "x@g.example", "email": "x@g.example", "display_name": "X", "roles": ["scientist"]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A lab manager cannot add users.
    let bob = app.token("bob@acme.example", &[]);
    let (status, _) = app
        .post(&users, &bob, json!({"sub": "y@acme.example", "email": "y@acme.example", "display_name": "Y", "roles": ["scientist"]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Even admins cannot hand out platform roles through the API.
    let (status, problem) = app
        .post(&users, &app.admin_token(), json!({"sub": "z@acme.example", "email": "z@acme.example", "display_name": "Z", "roles": ["support"]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "roles[0]");
}

#[tokio::test]
async fn duplicate_subjects_conflict_case_insensitively() {
    let app = spawn_app().await;
    let acme = app.create_account("Acme Labs").await;
    let other = app.create_account("Other").await;
    app.add_user(&acme, "Carol@Acme.example", &["scientist"]).await;
    for account in [&acme, &other] {
        let (status, problem) = app
            .post(
                &format!("/v1/accounts/{}/users", id(account)),
                &app.admin_token(),
                json!({"sub": "carol@ACME.example", "email": "c@acme.example", "display_name": "C", "roles": ["scientist"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    }
    let (_, list) = app.get(&format!("/v1/accounts/{}/users", id(&acme)), &app.admin_token()).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn look_alike_subjects_are_other_people() {
    let app = spawn_app().await;
    let beta = app.create_account("Beta").await;
    let karl = app.add_user(&beta, "karl@beta.example", &["lab_manager"]).await;
    let (_, me) = app.get("/v1/me", &karl).await;
    let karl_id = me["id"].as_str().expect("karl has an id").to_string();
    // ASCII case still folds: Okta subjects are often e-mail addresses typed in any case.
    let (_, me) = app.get("/v1/me", &app.token("KARL@Beta.Example", &[])).await;
    assert_eq!(me["id"], karl_id.as_str());
    // A Kelvin sign, a trailing or leading space, a dotless i: other subjects, not aliases.
    for sub in [
        "\u{212A}arl@beta.example",
        "karl@beta.example ",
        " karl@beta.example",
        "karl@beta.example\t",
        "kar\u{131}@beta.example",
    ] {
        let token = app.token(sub, &[]);
        let (status, me) = app.get("/v1/me", &token).await;
        assert_eq!(status, StatusCode::OK);
        assert!(me["id"].is_null(), "{sub:?} logged in as {me}");
        let (status, _) = app.get(&format!("/v1/accounts/{}", id(&beta)), &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{sub:?}");
    }
    // And none of them can be added as a user either.
    for sub in [" karl@beta.example", "karl@beta.example ", "ka\u{0007}rl@beta.example"] {
        let (status, problem) = app
            .post(
                &format!("/v1/accounts/{}/users", id(&beta)),
                &app.admin_token(),
                json!({"sub": sub, "email": "k@beta.example", "display_name": "K", "roles": ["scientist"]}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sub:?}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "sub", "{problem}");
    }
}

#[tokio::test]
async fn validation_names_every_bad_field_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    let (status, problem) = app
        .post("/v1/accounts", &admin, json!({"name": "  ", "kind": "martian", "region": "eu west"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), vec!["name", "kind", "region"]);
    let (status, _) = app
        .post("/v1/accounts", &admin, json!({"name": "x".repeat(201), "kind": "customer"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let acme = app.create_account("Acme").await;
    let (status, problem) = app
        .post(
            &format!("/v1/accounts/{}/users", id(&acme)),
            &admin,
            json!({"sub": "has space", "email": "not-an-email", "display_name": "", "roles": ["scientist", "wizard", "scientist"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), vec!["sub", "email", "display_name", "roles[1]", "roles[2]"]);

    let (_, list) = app.get("/v1/accounts", &admin).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (_, users) = app.get(&format!("/v1/accounts/{}/users", id(&acme)), &admin).await;
    assert_eq!(users["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn lists_page_with_opaque_cursors() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    for n in 0..7 {
        app.create_account(&format!("Lab {n}")).await;
    }
    let accounts = app.every_item("/v1/accounts?limit=3", &admin).await;
    let names: Vec<&str> = accounts.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, (0..7).map(|n| format!("Lab {n}")).collect::<Vec<_>>());
    for bad in [
        "/v1/accounts?limit=0",
        "/v1/accounts?limit=1000",
        "/v1/accounts?limit=ten",
        "/v1/accounts?cursor=bogus",
    ] {
        let (status, problem) = app.get(bad, &admin).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
    }
}

#[tokio::test]
async fn platform_roles_follow_the_groups() {
    let app = spawn_app().await;
    let (status, me) =
        app.get("/v1/me", &app.token("ops@portico.example", &["portico-admins"])).await;
    assert_eq!((status, me["roles"].clone()), (StatusCode::OK, json!(["admin"])));
    // The group was removed at the identity provider: the role goes with it.
    let demoted = app.token("ops@portico.example", &[]);
    let (_, me) = app.get("/v1/me", &demoted).await;
    assert_eq!(me["roles"], json!([]));
    let (status, _) = app.get("/v1/accounts", &demoted).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
