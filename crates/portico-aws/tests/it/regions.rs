//! Two regions handing out account numbers at once, their tables replicated to each other the way
//! DynamoDB global tables do it (a region's writes copied to the other, last writer wins).
//!
//! moto keeps each region's tables apart, so two moto regions stand for two AWS regions; the
//! replicator below copies every item a region owns to the other region's table while both
//! allocate. No value may be handed out twice, and each region's values stay in its range.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use portico_core::SequenceGenerator;
use portico_core::ports::SequenceRange;

use crate::harness::env;

/// Copies the sequence items `from_region` owns from its table to `to`'s, until `stop`.
async fn replicate(
    from: aws_sdk_dynamodb::Client,
    from_table: String,
    from_region: String,
    to: aws_sdk_dynamodb::Client,
    to_table: String,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut copies = 0;
    while !stop.load(Ordering::Relaxed) {
        let scan = from.scan().table_name(&from_table).send().await.unwrap();
        for item in scan.items() {
            if item.get("region") == Some(&AttributeValue::S(from_region.clone())) {
                to.put_item()
                    .table_name(&to_table)
                    .set_item(Some(item.clone()))
                    .send()
                    .await
                    .unwrap();
                copies += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    copies
}

#[tokio::test]
async fn two_regions_allocate_ten_thousand_numbers_without_a_duplicate() {
    let (east, west) = (env("us-east-1").await, env("eu-west-1").await);
    // Disjoint ranges, as an operator configures them per region.
    let east_range = SequenceRange { start: 1_000_000, end: 2_000_000 };
    let west_range = SequenceRange { start: 2_000_000, end: 3_000_000 };
    let stop = Arc::new(AtomicBool::new(false));
    let replicators = [
        tokio::spawn(replicate(
            east.dynamodb.clone(),
            east.settings.table.clone(),
            "us-east-1".into(),
            west.dynamodb.clone(),
            west.settings.table.clone(),
            stop.clone(),
        )),
        tokio::spawn(replicate(
            west.dynamodb.clone(),
            west.settings.table.clone(),
            "eu-west-1".into(),
            east.dynamodb.clone(),
            east.settings.table.clone(),
            stop.clone(),
        )),
    ];

    // Per region: three instances (Lambda containers), two with single-value claims and one
    // claiming blocks of 50; each instance serves two concurrent callers.
    let mut tasks = Vec::new();
    for (env, range) in [(&east, east_range), (&west, west_range)] {
        for block in [1, 1, 50] {
            let generator: Arc<dyn SequenceGenerator> = env.sequence(range, block);
            for _ in 0..2 {
                let generator = generator.clone();
                let per_task = if block == 1 { 625 } else { 1_250 };
                tasks.push(tokio::spawn(async move {
                    let mut values = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        values.push(generator.next("account_number").await.unwrap());
                    }
                    (range, values)
                }));
            }
        }
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        let (range, values) = task.await.unwrap();
        assert!(values.windows(2).all(|w| w[0] < w[1]));
        for v in values {
            assert!((range.start..range.end).contains(&v), "{v} outside {range:?}");
            assert!(seen.insert(v), "{v} handed out twice");
            total += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut copies = 0;
    for r in replicators {
        copies += r.await.unwrap();
    }
    assert_eq!(total, 10_000);
    assert_eq!(seen.len(), 10_000);
    assert!(copies > 0, "the replicator copied nothing");

    // After replication each table holds both regions' items, and each region still continues
    // from its own item only.
    let next_east = east.sequence(east_range, 1).next("account_number").await.unwrap();
    let next_west = west.sequence(west_range, 1).next("account_number").await.unwrap();
    assert!(!seen.contains(&next_east) && east_range.start < next_east);
    assert!(!seen.contains(&next_west) && west_range.start < next_west);
}
