//! The fixedset part: a server set without ZooKeeper, behind the same
//! `Watcher` trait.

use std::time::{Duration, Instant};

use serversets_core::Watcher;
use serversets_fixedset::FixedSet;
use xtask::ui::human;

use crate::context::Demo;
use crate::{Result, StepFuture};

pub fn fixedset_show(demo: &mut Demo) -> Result<()> {
    demo.say("FixedSet::new([...]) serves a static list through the same Watcher trait");
    demo.say("as a ZooKeeper watch, so every balancer runs without ZooKeeper too");
    let set = FixedSet::new(["10.0.0.2:8080", "10.0.0.1:8080", "10.0.0.3:8080"])?;
    let snap = set.snapshot();
    demo.say(&format!(
        "snapshot v{}: {}",
        snap.version(),
        demo.members(&snap)
    ));
    let sorted = snap
        .iter()
        .map(|m| m.addr().to_string())
        .collect::<Vec<_>>()
        == ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"];
    demo.check(sorted, "three members, sorted by address")?;
    match FixedSet::new(["10.0.0.1:8080", "10.0.0.4"]) {
        Err(e) => demo.ok(&format!("a bad entry is refused: {e}")),
        Ok(_) => return Err("\"10.0.0.4\" (no port) was accepted".into()),
    }
    demo.fixed = Some(set);
    Ok(())
}

pub fn fixedset_change(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let set = demo.fixed()?;
        let before = set.snapshot();
        let mut changes = set.subscribe();
        let waiter = tokio::spawn(async move {
            let next = changes.changed().await;
            (next, Instant::now())
        });
        // Let the subscriber park in changed() before the change is made.
        tokio::time::sleep(Duration::from_millis(50)).await;
        demo.say("a subscriber waits for the next change; now replace 10.0.0.2 by 10.0.0.4");
        let sent = Instant::now();
        set.set_addresses(["10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.4:8080"])?;
        let (next, woke) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .map_err(|_| "the subscriber was not woken within 5 s")??;
        let waited = woke.saturating_duration_since(sent);
        let next = next.ok_or("the subscription ended instead of waking")?;
        demo.say(&format!(
            "woken after {}: snapshot v{}: {}",
            human(waited),
            next.version(),
            demo.members(&next)
        ));
        let diff = next.diff(&before);
        let ids = |ms: &[serversets_core::Member]| {
            ms.iter().map(|m| m.id().to_string()).collect::<Vec<_>>()
        };
        demo.say(&format!(
            "diff: added {:?}, removed {:?}",
            ids(&diff.added),
            ids(&diff.removed)
        ));
        demo.check(
            ids(&diff.added) == ["10.0.0.4:8080"] && ids(&diff.removed) == ["10.0.0.2:8080"],
            "the diff names exactly the member that came and the one that left",
        )?;
        demo.check(
            next.version() > before.version(),
            "the version moved forward",
        )
    })
}

pub fn fixedset_close(demo: &mut Demo) -> StepFuture<'_> {
    Box::pin(async move {
        let set = demo.fixed()?;
        let mut changes = set.subscribe();
        set.close();
        let ended = tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .map_err(|_| "a waiting subscriber was not released by close")?;
        demo.check(
            ended.is_none(),
            "a waiting subscriber is released with None",
        )?;
        demo.check(set.is_closed(), "is_closed() is true")?;
        demo.check(
            set.set_addresses(["10.0.0.9:8080"]).is_err(),
            "a closed set refuses new lists",
        )?;
        demo.check(set.snapshot().len() == 3, "the last list stays readable")
    })
}
