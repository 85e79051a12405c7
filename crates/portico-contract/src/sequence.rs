//! `SequenceGenerator`: values in the region's range, increasing, never repeated.

use std::collections::HashSet;
use std::sync::Arc;

use portico_core::ports::SequenceRange;
use portico_core::{Error, SequenceGenerator};

/// `make(range)` returns a generator for a fresh, empty backing store region handing out `range`.
/// Called twice with different ranges on the same store: the second stands for an operator
/// moving the region to a new range.
pub async fn values_stay_in_range_and_increase<F>(make: F)
where
    F: Fn(SequenceRange) -> Arc<dyn SequenceGenerator>,
{
    let seq = make(SequenceRange { start: 10, end: 13 });
    assert_eq!(seq.next("a").await.unwrap(), 10);
    assert_eq!(seq.next("a").await.unwrap(), 11);
    // Sequences count on their own.
    assert_eq!(seq.next("b").await.unwrap(), 10);
    assert_eq!(seq.next("a").await.unwrap(), 12);
    assert!(
        matches!(seq.next("a").await, Err(Error::Unavailable(_))),
        "an exhausted range is Unavailable"
    );
    let moved = make(SequenceRange { start: 100, end: 200 });
    assert_eq!(moved.next("a").await.unwrap(), 100);
}

/// Concurrent callers on `generators` (several instances sharing one region's store) never get
/// the same value, and each caller sees its own values increase.
pub async fn concurrent_callers_never_share_a_value(
    generators: Vec<Arc<dyn SequenceGenerator>>,
    range: SequenceRange,
    per_task: usize,
) {
    let mut tasks = Vec::new();
    for generator in generators {
        for _ in 0..2 {
            let generator = generator.clone();
            tasks.push(tokio::spawn(async move {
                let mut values = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    values.push(generator.next("concurrent").await.unwrap());
                }
                values
            }));
        }
    }
    let mut all = HashSet::new();
    let mut count = 0;
    for task in tasks {
        let values = task.await.unwrap();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
        for v in values {
            assert!((range.start..range.end).contains(&v), "{v} outside {range:?}");
            assert!(all.insert(v), "{v} handed out twice");
            count += 1;
        }
    }
    assert_eq!(all.len(), count);
}
