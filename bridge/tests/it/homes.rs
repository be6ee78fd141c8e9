//! Homes and members over real HTTP: invites, roles, another user's home,
//! owner transfer, parting, moving devices between homes, the location and
//! members' location state, and bad input as 4xx.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::common::*;
use crate::homes_support::*;

#[tokio::test]
async fn an_invite_is_good_once_and_until_it_expires() {
    let t = setup().await;
    let h = &t.h;
    let token = t.invite().await;
    assert!(token.len() >= 4 + 32, "at least 128 random bits: {token}");
    let shown = h.get_as(&t.bob, &format!("/1/invites/{token}")).await.ok();
    assert_eq!(shown["home"]["id"], t.home.as_str());
    assert_eq!(shown["user"]["id"], h.user_id.as_str());
    h.post_as(&t.alice, &format!("/1/invites/{token}"), &[])
        .await
        .assert_error(409001);
    h.post_as(&t.bob, &format!("/1/invites/{token}"), &[])
        .await
        .ok();
    let (carol, _) = h.other_user().await;
    let carol = self::token(h, &carol).await;
    h.post_as(&carol, &format!("/1/invites/{token}"), &[])
        .await
        .assert_error(400001);
    h.get_as(&carol, &format!("/1/invites/{token}"))
        .await
        .assert_error(400001);
    let late = t.invite().await;
    h.client()
        .await
        .execute(
            "UPDATE home_invites SET expires_at = now() - interval '1 second'
             WHERE used_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    h.post_as(&carol, &format!("/1/invites/{late}"), &[])
        .await
        .assert_error(400001);
    h.post_as(
        &carol,
        "/1/invites/inv_00000000000000000000000000000000",
        &[],
    )
    .await
    .assert_error(404001);
    h.get_as(&carol, "/1/invites/a%00b")
        .await
        .assert_error(400001);
    assert!(t.device_ids(&carol).await.is_empty());
    t.h.stop().await;
}

#[tokio::test]
async fn another_users_home_answers_like_an_unknown_one_and_members_are_not_owners() {
    let t = setup().await;
    let h = &t.h;
    for home in [t.home.as_str(), "no-such-home"] {
        let p = |tail: &str| format!("/1/homes/{home}{tail}");
        h.get_as(&t.bob, &p("/devices")).await.assert_error(404001);
        h.get_as(&t.bob, &p("/users")).await.assert_error(404001);
        for (tail, form) in [
            ("", vec![("name", "mine")]),
            ("/delete", vec![]),
            ("/invites", vec![]),
            ("/kick", vec![("user", h.user_id.as_str())]),
            ("/part", vec![]),
            ("/owner", vec![("user", t.bob_id.as_str())]),
            (
                "/location",
                vec![("latitude", "1"), ("longitude", "1"), ("radius", "100")],
            ),
            ("/location/delete", vec![]),
            ("/location_state/update", vec![("state", "home")]),
        ] {
            h.post_as(&t.bob, &p(tail), &form)
                .await
                .assert_error(404001);
        }
    }
    let bobs_home = h.get_as(&t.bob, "/1/homes").await.ok()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.post_as(
        &t.alice,
        &t.path(&format!("/transfer/{bobs_home}")),
        &[("devices", "remo-1")],
    )
    .await
    .assert_error(404001);
    t.bob_joins().await;
    for (tail, form) in [
        ("", vec![("name", "mine")]),
        ("/delete", vec![]),
        ("/invites", vec![]),
        ("/kick", vec![("user", h.user_id.as_str())]),
        ("/owner", vec![("user", t.bob_id.as_str())]),
        (
            "/location",
            vec![("latitude", "1"), ("longitude", "1"), ("radius", "100")],
        ),
    ] {
        h.post_as(&t.bob, &t.path(tail), &form)
            .await
            .assert_error(403001);
    }
    h.post_as(&t.bob, "/1/devices/remo-1/delete", &[])
        .await
        .assert_error(403001);
    assert_eq!(t.device_ids(&t.alice).await, ["remo-1"]);
    let basic_only = kumo_bridge::create_token(&h.pool, &h.user_id, ALL, "basic")
        .await
        .unwrap();
    h.get_as(&basic_only, "/1/homes").await.assert_error(403001);
    t.h.stop().await;
}

#[tokio::test]
async fn ownership_moves_to_a_member_who_then_can_kick_the_previous_owner() {
    let t = setup().await;
    let h = &t.h;
    h.client()
        .await
        .execute(
            "INSERT INTO readings (device_id, sensor, val, at) VALUES ('remo-1', 'te', 21.5, now())",
            &[],
        )
        .await
        .unwrap();
    h.post_as(&t.alice, &t.path("/owner"), &[("user", &t.bob_id)])
        .await
        .assert_error(400001);
    t.bob_joins().await;
    let home = h
        .post_as(&t.alice, &t.path("/owner"), &[("user", &t.bob_id)])
        .await
        .ok();
    let roles: Vec<(&str, &str)> = home["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [(t.bob_id.as_str(), "owner"), (h.user_id.as_str(), "member")]
    );
    let device = &h.get_as(&t.bob, "/1/devices").await.ok()[0];
    assert_eq!(
        device["users"][0]["id"],
        t.bob_id.as_str(),
        "the account is the owner's"
    );
    assert_eq!(
        device["newest_events"]["te"]["val"], 21.5,
        "nothing is reset"
    );
    h.post_as(&t.alice, &t.path("/kick"), &[("user", &t.bob_id)])
        .await
        .assert_error(403001);
    h.post_as(&t.bob, &t.path("/part"), &[])
        .await
        .assert_error(400001);
    h.post_as(&t.bob, &t.path("/kick"), &[("user", &h.user_id)])
        .await
        .ok();
    assert!(t.device_ids(&t.alice).await.is_empty());
    assert_eq!(t.device_ids(&t.bob).await, ["remo-1"]);
    t.h.stop().await;
}

#[tokio::test]
async fn a_member_parts_and_leaves_the_devices_behind() {
    let t = setup().await;
    let h = &t.h;
    t.bob_joins().await;
    assert_eq!(t.device_ids(&t.bob).await, ["remo-1"]);
    h.post_as(&t.bob, &t.path("/part"), &[]).await.ok();
    assert!(t.device_ids(&t.bob).await.is_empty());
    h.post_as(&t.bob, &t.path("/part"), &[])
        .await
        .assert_error(404001);
    h.post_as(&t.alice, &t.path("/part"), &[])
        .await
        .assert_error(400001);
    h.post_as(&t.alice, &t.path("/kick"), &[("user", &t.bob_id)])
        .await
        .assert_error(400001);
    t.h.stop().await;
}

#[tokio::test]
async fn devices_move_between_the_owners_homes_and_start_afresh_there() {
    let t = setup().await;
    let h = &t.h;
    t.bob_joins().await;
    h.client()
        .await
        .execute(
            "INSERT INTO readings (device_id, sensor, val, at) VALUES ('remo-1', 'te', 21.5, now())",
            &[],
        )
        .await
        .unwrap();
    let flat = h
        .post_as(&t.alice, "/1/homes", &[("name", " Flat ")])
        .await
        .ok();
    assert_eq!(flat["name"], "Flat");
    assert_eq!(flat["users"][0]["role"], "owner");
    let flat = flat["id"].as_str().unwrap().to_string();
    let to_flat = t.path(&format!("/transfer/{flat}"));
    h.post_as(&t.alice, &to_flat, &[("devices", "remo-1,nope")])
        .await
        .assert_error(400001);
    h.post_as(
        &t.alice,
        &t.path(&format!("/transfer/{}", t.home)),
        &[("devices", "remo-1")],
    )
    .await
    .assert_error(400001);
    h.post_as(&t.alice, &t.path("/delete"), &[])
        .await
        .assert_error(409001);
    h.post_as(&t.alice, &to_flat, &[("devices", "remo-1")])
        .await
        .ok();
    assert!(
        t.device_ids(&t.bob).await.is_empty(),
        "Bob is not in the flat"
    );
    let moved = h
        .get_as(&t.alice, &format!("/1/homes/{flat}/devices"))
        .await
        .ok();
    assert_eq!(moved[0]["id"], "remo-1");
    assert_eq!(
        moved[0]["newest_events"],
        json!({}),
        "a new home starts afresh"
    );
    assert_eq!(
        h.get_as(&t.alice, &t.path("/devices")).await.ok(),
        json!([])
    );
    h.post_as(&t.alice, &t.path("/delete"), &[]).await.ok();
    let homes = h.get_as(&t.alice, "/1/homes").await.ok();
    assert_eq!(homes.as_array().unwrap().len(), 1);
    assert!(t.device_ids(&t.bob).await.is_empty());
    t.h.stop().await;
}

#[tokio::test]
async fn the_home_location_and_each_members_location_state_are_kept() {
    let t = setup().await;
    let h = &t.h;
    t.bob_joins().await;
    let home = h
        .post_as(
            &t.alice,
            &t.path("/location"),
            &[
                ("latitude", "35.68"),
                ("longitude", "139.76"),
                ("radius", "150"),
            ],
        )
        .await
        .ok();
    assert_eq!(
        home["location"],
        json!({"latitude": 35.68, "longitude": 139.76, "radius": 150})
    );
    for bad in [
        [("latitude", "91"), ("longitude", "0"), ("radius", "1")],
        [("latitude", "0"), ("longitude", "181"), ("radius", "1")],
        [("latitude", "0"), ("longitude", "0"), ("radius", "0")],
        [("latitude", "x"), ("longitude", "0"), ("radius", "1")],
    ] {
        h.post_as(&t.alice, &t.path("/location"), &bad)
            .await
            .assert_error(400001);
    }
    h.post_as(
        &t.bob,
        &t.path("/location_state/update"),
        &[("state", "home")],
    )
    .await
    .ok();
    h.post_as(
        &t.bob,
        &t.path("/location_state/update"),
        &[("state", "in")],
    )
    .await
    .assert_error(400001);
    h.post_as(&t.bob, &t.path("/location_state/update"), &[])
        .await
        .assert_error(400001);
    let homes = h.get_as(&t.alice, "/1/homes").await.ok();
    let states: Vec<&str> = homes[0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["location_state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["unknown", "home"]);
    let home = h
        .post_as(&t.alice, &t.path("/location/delete"), &[])
        .await
        .ok();
    assert!(home["location"].is_null());
    t.h.stop().await;
}

#[tokio::test]
async fn bad_home_names_are_refused_with_a_400() {
    let t = setup().await;
    let h = &t.h;
    let long = "x".repeat(65);
    for name in ["", "   ", "a\u{0}b", "a\u{7}b", long.as_str()] {
        h.post_as(&t.alice, "/1/homes", &[("name", name)])
            .await
            .assert_error(400001);
        h.post_as(&t.alice, &t.path(""), &[("name", name)])
            .await
            .assert_error(400001);
    }
    h.post_as(&t.alice, "/1/homes", &[])
        .await
        .assert_error(400001);
    let raw = h
        .send(
            h.http
                .post(format!("{}/1/homes", h.base))
                .bearer_auth(&t.alice)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("name=%FF%FE"),
        )
        .await;
    raw.assert_error(400001);
    h.get_as(&t.alice, "/1/homes/a%00b/devices")
        .await
        .assert_error(400001);
    h.post_as(&t.alice, &t.path("/transfer/x"), &[("devices", ",,")])
        .await
        .assert_error(400001);
    let renamed = h
        .post_as(&t.alice, &t.path(""), &[("name", "家")])
        .await
        .ok();
    assert_eq!(renamed["name"], "家");
    t.h.stop().await;
}
