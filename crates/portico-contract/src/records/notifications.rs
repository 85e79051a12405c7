//! The `Notifications` port.

use portico_core::Notifications;
use portico_core::domain::Notification;
use serde_json::json;

use super::{at, walk};

/// Notifications: a redelivered id is stored once, lists are newest first per user, and the
/// first read time is kept.
pub async fn redelivery_order_and_reads(notifications: &dyn Notifications) {
    let note = |n: i64, user: &str| Notification {
        id: format!("n-{n}"),
        user_id: user.into(),
        kind: "instrument_alert".into(),
        title: format!("Alert {n}"),
        body: "Door open".into(),
        data: json!({"serial": "SN-1", "n": n}),
        created_at: at(300 + n),
        read_at: None,
    };
    let batch: Vec<Notification> = (0..5).map(|n| note(n, "u-1")).collect();
    let new = notifications.insert_notifications(&batch).await.unwrap();
    assert_eq!(new, vec!["n-0", "n-1", "n-2", "n-3", "n-4"]);
    // Redelivered, with a changed title: the first stays, and only the new one is new.
    let mut again = note(2, "u-1");
    again.title = "changed".into();
    let new = notifications.insert_notifications(&[again, note(9, "u-2")]).await.unwrap();
    assert_eq!(new, vec!["n-9"]);
    let listed =
        walk(2, |p| async move { notifications.list_notifications("u-1", &p).await }).await;
    let ids: Vec<&str> = listed.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, vec!["n-4", "n-3", "n-2", "n-1", "n-0"]);
    assert_eq!(listed[2].title, "Alert 2");
    assert_eq!(listed[2].data, json!({"serial": "SN-1", "n": 2}));

    let read = |id: &'static str, when: i64| async move {
        let marked = notifications.mark_notification_read("u-1", id, at(when)).await;
        marked.unwrap().map(|n| n.read_at)
    };
    assert_eq!(read("n-2", 400).await, Some(Some(at(400))));
    // Read again later: the first read time stays.
    assert_eq!(read("n-2", 500).await, Some(Some(at(400))));
    // Another user's notification is not found through this user, nor is one never stored.
    assert_eq!(read("n-9", 400).await, None);
    assert_eq!(read("n-404", 400).await, None);
}
