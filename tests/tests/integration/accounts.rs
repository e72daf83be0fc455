//! Accounts, login, tokens and devices, through real HTTP against a real server.

use kith::config::RegistrationMode;
use kith_tests::TestServer;
use serde_json::json;

#[tokio::test]
async fn registered_user_can_log_in_and_whoami_names_them() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 200);
    assert_eq!(body["user_id"], "@alice:kith.test");

    let (status, body) = server.login("alice", "password").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:kith.test");
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() > 20));
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_is_forbidden_and_repeated_failures_are_rate_limited() {
    let server = TestServer::start().await;
    server.register("bob").await;
    let (status, body) = server.login("bob", "nope").await;
    assert_eq!(status, 403);
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    for _ in 0..4 {
        server.login("bob", "nope").await;
    }
    let (status, body) = server.login("bob", "password").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));
}

#[tokio::test]
async fn unknown_and_missing_tokens_are_rejected() {
    let server = TestServer::start().await;
    let anon = server.anonymous();
    let (status, body) = anon.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN"))
    );
    let mut forged = anon.clone();
    forged.token = Some("kith_not_a_real_token".to_owned());
    let (status, body) = forged.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN"))
    );
}

#[tokio::test]
async fn expired_access_token_is_a_soft_logout_and_refresh_gives_a_working_one() {
    let server = TestServer::builder()
        .config(|c| c.limits.refreshable_token_lifetime_secs = 5)
        .start()
        .await;
    let anon = server.anonymous();
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "carol", "password": "pw", "refresh_token": true, "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in_ms"], 5000);
    let carol = anon.with_login(&body);
    let refresh_token = body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let (status, body) = carol.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 401);
    assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
    assert_eq!(body["soft_logout"], true);

    let (status, body) = anon
        .post(
            "/_matrix/client/v3/refresh",
            json!({ "refresh_token": refresh_token }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refreshed = carol
        .with_login(&json!({ "access_token": body["access_token"], "user_id": carol.user_id }));
    let (status, _) = refreshed.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 200);
    // A refresh token works once.
    let (status, _) = anon
        .post(
            "/_matrix/client/v3/refresh",
            json!({ "refresh_token": refresh_token }),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn registration_is_closed_by_default_and_token_mode_needs_a_valid_token() {
    let closed = TestServer::builder()
        .registration(RegistrationMode::Closed)
        .start()
        .await;
    let (status, body) = closed
        .anonymous()
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "x", "password": "p", "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    let server = TestServer::builder()
        .registration(RegistrationMode::Token)
        .start()
        .await;
    let anon = server.anonymous();
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "dave", "password": "p" }),
        )
        .await;
    assert_eq!(status, 401, "first request gets the flows: {body}");
    assert_eq!(body["flows"][0]["stages"][0], "m.login.registration_token");
    let session = body["session"].as_str().expect("session").to_owned();
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "dave", "password": "p", "auth": { "type": "m.login.registration_token", "token": "wrong", "session": session } }),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    let token = server
        .server()
        .services()
        .users
        .create_registration_token(Some(1))
        .await
        .expect("token");
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "dave", "password": "p", "auth": { "type": "m.login.registration_token", "token": token, "session": session } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@dave:kith.test");
}

#[tokio::test]
async fn taken_and_invalid_usernames_are_reported() {
    let server = TestServer::start().await;
    server.register("erin").await;
    let anon = server.anonymous();
    let (status, body) = anon
        .get("/_matrix/client/v3/register/available?username=erin")
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_USER_IN_USE"))
    );
    let (status, body) = anon
        .get("/_matrix/client/v3/register/available?username=fresh")
        .await;
    assert_eq!((status, body["available"].as_bool()), (200, Some(true)));
    let (status, body) = anon
        .get("/_matrix/client/v3/register/available?username=bad%20name")
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_USERNAME"))
    );
}

#[tokio::test]
async fn devices_are_listed_renamed_and_deleted_with_password_auth() {
    let server = TestServer::start().await;
    let frank = server.register("frank").await;
    let (_, second) = server.login("frank", "password").await;
    let second_device = second["device_id"].as_str().expect("device").to_owned();
    let (status, body) = frank.get("/_matrix/client/v3/devices").await;
    assert_eq!(status, 200);
    assert_eq!(body["devices"].as_array().map(Vec::len), Some(2));

    let path = format!("/_matrix/client/v3/devices/{second_device}");
    let (status, _) = frank.put(&path, json!({ "display_name": "Phone" })).await;
    assert_eq!(status, 200);
    let (_, device) = frank.get(&path).await;
    assert_eq!(device["display_name"], "Phone");

    let (status, body) = frank.delete(&path, json!({})).await;
    assert_eq!(status, 401, "deletion needs UIA: {body}");
    let session = body["session"].as_str().expect("session");
    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "frank" }, "password": "password", "session": session } });
    let (status, body) = frank.delete(&path, auth).await;
    assert_eq!(status, 200, "{body}");
    let second_client = frank.with_login(&second);
    let (status, _) = second_client.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 401, "the deleted device's token no longer works");
}

#[tokio::test]
async fn password_change_logs_out_other_devices_and_the_new_password_works() {
    let server = TestServer::start().await;
    let gina = server.register("gina").await;
    let (_, other) = server.login("gina", "password").await;
    let other = gina.with_login(&other);
    let body = json!({
        "new_password": "new-password",
        "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "@gina:kith.test" }, "password": "password" }
    });
    let (status, response) = gina.post("/_matrix/client/v3/account/password", body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(other.get("/_matrix/client/v3/account/whoami").await.0, 401);
    assert_eq!(gina.get("/_matrix/client/v3/account/whoami").await.0, 200);
    assert_eq!(server.login("gina", "password").await.0, 403);
    assert_eq!(server.login("gina", "new-password").await.0, 200);
}

#[tokio::test]
async fn logout_and_logout_all_revoke_tokens_and_deactivation_blocks_login() {
    let server = TestServer::start().await;
    let hank = server.register("hank").await;
    let (status, _) = hank.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(hank.get("/_matrix/client/v3/account/whoami").await.0, 401);

    let (_, a) = server.login("hank", "password").await;
    let (_, b) = server.login("hank", "password").await;
    let (a, b) = (hank.with_login(&a), hank.with_login(&b));
    assert_eq!(
        a.post("/_matrix/client/v3/logout/all", json!({})).await.0,
        200
    );
    assert_eq!(b.get("/_matrix/client/v3/account/whoami").await.0, 401);

    let (_, c) = server.login("hank", "password").await;
    let c = hank.with_login(&c);
    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "hank" }, "password": "password" } });
    let (status, body) = c.post("/_matrix/client/v3/account/deactivate", auth).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.login("hank", "password").await.0, 403);
}
