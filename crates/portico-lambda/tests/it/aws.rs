//! The AWS backend end to end, against moto: the HTTP API composed on DynamoDB, S3, SQS and IoT;
//! a client uploads to S3 with the presigned URL; S3's event notification reaches SQS; the
//! queue workers `portico worker` runs (backend = aws) take it and the document becomes ready.
//! Built only with `--features aws`.

use reqwest::StatusCode;
use serde_json::json;

use portico_testkit::{TestApp, kinds, put, request, settled, spawn_api, test_config};

/// moto keeps each region apart; S3 notifications go to queues of the bucket's region, and a
/// bucket created without a location is in us-east-1.
const REGION: &str = "us-east-1";

/// Stops the worker when the test ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Resources {
    env: Vec<(&'static str, String)>,
}

impl Resources {
    /// A test configuration on these resources, with `data_dir` (the dev issuer's key).
    fn config(&self, data_dir: &std::path::Path) -> portico_config::Config {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        test_config(data_dir, &env)
    }
}

/// A table, the upload queue with its dead-letter queue, and a bucket that notifies the queue.
async fn resources() -> Resources {
    let endpoint = portico_contract::moto::endpoint();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let settings = portico_aws::AwsSettings {
        region: REGION.into(),
        endpoint_url: Some(endpoint.clone()),
        iot_endpoint: None,
        table: format!("portico-{run}"),
        bucket: format!("portico-{}", &run[..20]),
        queue_prefix: format!("p{}-", &run[..12]),
    };
    let sdk = portico_aws::sdk_config(&settings).await;
    portico_aws::provision::table(&portico_aws::dynamodb(&sdk), &settings.table)
        .await
        .expect("table");
    let queue_arn = portico_aws::provision::queue(
        &portico_aws::sqs(&sdk),
        &settings.queue_prefix,
        "document-uploads",
        3,
    )
    .await
    .expect("queue");
    let client = reqwest::Client::new();
    let bucket_url = format!("{endpoint}/{}", settings.bucket);
    let created = client.put(&bucket_url).send().await.expect("bucket");
    assert!(created.status().is_success(), "{}", created.status());
    let notification = format!(
        r#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><QueueConfiguration><Id>portico-document-uploads</Id><Queue>{queue_arn}</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>"#
    );
    let configured = client
        .put(format!("{bucket_url}?notification"))
        .header("content-type", "application/xml")
        .body(notification)
        .send()
        .await
        .expect("notification");
    assert!(configured.status().is_success(), "{}", configured.status());
    Resources {
        env: vec![
            ("PORTICO_BACKEND", "aws".into()),
            ("PORTICO_AWS_REGION", REGION.into()),
            ("PORTICO_AWS_ENDPOINT_URL", endpoint),
            ("PORTICO_AWS_TABLE", settings.table),
            ("PORTICO_AWS_BUCKET", settings.bucket),
            ("PORTICO_AWS_QUEUE_PREFIX", settings.queue_prefix),
        ],
    }
}

/// The HTTP API composed on fresh AWS resources, as the Lambda host runs it, with its data dir
/// (which holds the dev issuer's key).
async fn api_on_aws() -> (Resources, tempfile::TempDir, TestApp) {
    let resources = resources().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_api(resources.config(dir.path())).await;
    (resources, dir, app)
}

#[tokio::test]
async fn an_upload_to_s3_reaches_the_worker_through_sqs_and_the_document_is_ready() {
    let (resources, dir, app) = api_on_aws().await;

    let acme = app.create_account("Acme Labs").await;
    assert_eq!(acme["account_number"], "100000", "{acme}");
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let body = b"time,temp\n2026-11-27T10:00:00Z,21.5\n2026-11-27T10:01:00Z,21.7\n".to_vec();
    let (status, ticket) = request(&app, &carol, "run.csv", "text/csv", body.len()).await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    let upload_url = ticket["upload_url"].as_str().expect("url");
    // A presigned S3 URL, not one of the local host's routes.
    assert!(upload_url.contains("X-Amz-Signature="), "{upload_url}");
    let document_id = ticket["document_id"].as_str().expect("id").to_string();
    let (status, _) = put(&app, upload_url, "text/csv", body.clone()).await;
    assert!(status.is_success(), "{status}");

    // The worker, as `portico worker` runs it on EC2 / ECS: the queue workers on the composition
    // that `backend = "aws"` wires (the binary's own `worker` command is tested in the CLI's
    // tests).
    let worker_config = resources.config(dir.path());
    let composition =
        portico_local::compose_backend(&worker_config).await.expect("the AWS backend composes");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let mut settings = portico_local::worker_settings(&worker_config);
    settings.visibility = std::time::Duration::from_secs(10);
    let _worker =
        AbortOnDrop(tokio::spawn(portico_local::worker::run(composition, settings, stopped)));

    let doc = settled(&app, &carol, &document_id).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["metadata"]["csv"]["rows"], 2, "{doc}");
    assert_eq!(doc["size"], body.len());

    // The download link is presigned S3 too, and gives the bytes back.
    let download = doc["download_url"].as_str().expect("download url");
    let got = app.client.get(download).send().await.expect("download");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), body.as_slice());

    // The upload link creates the object once: S3 refuses a second PUT (If-None-Match: * is
    // signed into it), so the bytes the worker checked stay the bytes users download.
    assert_eq!(ticket["upload_headers"]["If-None-Match"], "*", "{ticket}");
    assert_eq!(ticket["upload_headers"]["Content-Type"], "text/csv", "{ticket}");
    let mut swapped = body.clone();
    swapped[0] = b'X';
    let (status, _) = put(&app, upload_url, "text/csv", swapped).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let got = app.client.get(download).send().await.expect("download");
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), body.as_slice());

    // The ready notification was stored in DynamoDB for the uploader.
    let (_, notes) = app.get("/v1/notifications", &carol).await;
    assert_eq!(kinds(&notes), vec!["document_ready"], "{notes}");

    // S3 holds the client to the signed Content-Length (moto does not check signatures), and the
    // worker checks the size too.
    let (_, ticket) = request(&app, &carol, "small.csv", "text/csv", 4).await;
    let sneaky = ticket["document_id"].as_str().expect("id").to_string();
    let url = ticket["upload_url"].as_str().expect("url");
    let (status, _) = put(&app, url, "text/csv", b"a,b\n1,2\n3,4\n".to_vec()).await;
    assert!(status.is_success(), "{status}");
    let doc = settled(&app, &carol, &sneaky).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert!(
        doc["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("larger than the 4 bytes declared")),
        "{doc}"
    );
}

#[tokio::test]
async fn api_gateway_events_get_the_local_gateways_answers_on_the_aws_backend() {
    let (_resources, _dir, app) = api_on_aws().await;
    crate::events::same_answers_both_ways(&app).await;
}

#[tokio::test]
async fn an_instrument_alert_notifies_through_iot_core_and_queues_e_mail_in_dynamodb() {
    let (resources, dir, app) = api_on_aws().await;
    let config = resources.config(dir.path());
    let acme = app.create_account("Acme").await;
    let bob = app.add_user(&acme, "bob@acme.example", &["lab_manager"]).await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    app.register_instrument(&acme, "SN-AWS-1").await;

    // What the IoT rule hands the Lambda, twice (IoT Core delivers at least once).
    let payload = json!({"severity": "critical", "message": "Door open", "serial": "SN-AWS-1", "event_id": "e-1"});
    for _ in 0..2 {
        portico_lambda::iot::handle(&app.composition.context, "instrument_alert", payload.clone())
            .await
            .expect("handled");
    }
    let (_, notes) = app.get("/v1/notifications", &bob).await;
    assert_eq!(notes["items"].as_array().map(Vec::len), Some(1), "{notes}");
    assert_eq!(notes["items"][0]["kind"], "instrument_alert");
    let (_, none) = app.get("/v1/notifications", &carol).await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0), "{none}");

    // The critical alert's e-mail waits in the DynamoDB outbox (beside the welcome e-mails);
    // one pass of the scheduled sender delivers everything due.
    let settings = portico_local::worker_settings(&config);
    let mut claimed = 0;
    loop {
        let n = portico_local::worker::send_due_emails(&app.composition.context, settings).await;
        if n == 0 {
            break;
        }
        claimed += n;
    }
    let (status, outbox) = app.get("/v1/outbox?limit=50", &app.admin_token()).await;
    assert_eq!(status, StatusCode::OK, "{outbox}");
    let entries = outbox["items"].as_array().expect("items");
    assert_eq!(claimed, entries.len(), "{outbox}");
    assert!(
        entries
            .iter()
            .any(|e| e["category"] == "instrument_alert" && e["to"] == "bob@acme.example"),
        "{outbox}"
    );
    assert!(entries.iter().all(|e| e["status"] == "sent"), "{outbox}");
}

/// An item as a stream's `NewImage` (DynamoDB JSON: `{"S": ...}` and so on).
fn image(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> serde_json::Value {
    use aws_sdk_dynamodb::types::AttributeValue;
    fn value(v: &AttributeValue) -> serde_json::Value {
        match v {
            AttributeValue::S(s) => json!({ "S": s }),
            AttributeValue::N(n) => json!({ "N": n }),
            AttributeValue::Bool(b) => json!({ "BOOL": b }),
            AttributeValue::M(m) => {
                json!({ "M": m.iter().map(|(k, v)| (k.clone(), value(v))).collect::<serde_json::Map<_, _>>() })
            }
            AttributeValue::L(l) => json!({ "L": l.iter().map(value).collect::<Vec<_>>() }),
            _ => json!({ "NULL": true }),
        }
    }
    serde_json::Value::Object(item.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

#[tokio::test]
async fn the_graph_projector_turns_the_tables_stream_into_the_graph() {
    let resources = resources().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = resources.config(dir.path());
    let composition = portico_local::compose_backend(&config).await.expect("composes");
    let ctx = &composition.context;
    let seeded = portico_local::world::seed(ctx, &portico_local::world::World::demo())
        .await
        .expect("seeded");
    let event = json!({"type": "lot_loaded", "lot_number": "L2026-0042", "serial": "SN-ACME-001", "event_id": "e-1"});
    portico_functions::trace::record_lot_use(ctx, &event).await.expect("recorded").expect("a use");
    // Without a Neptune endpoint the AWS backend's traces are unavailable, never empty.
    let unavailable = portico_functions::trace::impact(ctx, &seeded.admin, "L2026-0042").await;
    assert!(matches!(unavailable, Err(portico_core::Error::Unavailable(_))), "{unavailable:?}");

    // The table read back as its stream would deliver it: every item a new image, in order.
    let table =
        resources.env.iter().find(|(k, _)| *k == "PORTICO_AWS_TABLE").expect("table").1.clone();
    let endpoint = portico_contract::moto::endpoint();
    let settings = portico_aws::AwsSettings {
        region: REGION.into(),
        endpoint_url: Some(endpoint),
        iot_endpoint: None,
        table: table.clone(),
        bucket: String::new(),
        queue_prefix: String::new(),
    };
    let client = portico_aws::dynamodb(&portico_aws::sdk_config(&settings).await);
    let scanned = client.scan().table_name(&table).send().await.expect("scan");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut records: Vec<serde_json::Value> = scanned
        .items()
        .iter()
        .enumerate()
        .map(|(n, item)| {
            json!({"eventID": n.to_string(), "eventName": "INSERT", "eventSource": "aws:dynamodb",
                   "dynamodb": {"ApproximateCreationDateTime": now, "NewImage": image(item),
                                "SequenceNumber": format!("{:021}", 4_000_000_000u64 + n as u64),
                                "StreamViewType": "NEW_AND_OLD_IMAGES"}})
        })
        .collect();
    records
        .push(json!({"eventID": "x", "eventName": "MODIFY", "dynamodb": {"SequenceNumber": "1"}}));
    records
        .push(json!({"eventID": "y", "eventName": "REMOVE", "dynamodb": {"SequenceNumber": "2"}}));

    let db = portico_sqlite::Database::open(&dir.path().join("graph.db")).expect("db");
    let graph = portico_sqlite::SqliteGraph::new(db);
    let outcome =
        portico_lambda::graph::handle(&graph, &json!({ "Records": records.clone() })).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert_eq!(outcome.skipped.len(), 1, "the record without an image: {outcome:?}");
    assert_eq!(outcome.response(), json!({"batchItemFailures": []}));
    let trace = portico_core::GraphStore::trace(&graph, "L2026-0042").await.expect("trace");
    let names: Vec<&str> = trace.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{trace:?}");
    for name in ["Acme Research Labs", "Globex Diagnostics", "Initech Distribution"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let globex = trace.accounts.iter().find(|a| a.name == "Globex Diagnostics").expect("globex");
    let initech =
        trace.accounts.iter().find(|a| a.name == "Initech Distribution").expect("initech");
    assert_eq!(globex.paths, vec![vec![initech.account_id.clone(), globex.account_id.clone()]]);
    let serials: Vec<&str> = trace.instruments.iter().map(|i| i.serial.as_str()).collect();
    assert_eq!(serials, ["SN-ACME-001"]);

    // Redelivered, backwards: the same graph.
    records.reverse();
    portico_lambda::graph::handle(&graph, &json!({ "Records": records })).await;
    assert_eq!(portico_core::GraphStore::trace(&graph, "L2026-0042").await.expect("trace"), trace);
}

#[tokio::test]
async fn log_batches_shipped_to_opensearch_are_searched_with_get_v1_logs_on_aws() {
    let cluster = portico_testkit::opensearch::OpenSearchStandIn::start().await;
    let mut resources = resources().await;
    resources.env.extend([
        ("PORTICO_LOGS_OPENSEARCH_URL", cluster.url.clone()),
        ("PORTICO_LOGS_OPENSEARCH_USERNAME", "portico".to_string()),
        ("PORTICO_LOGS_OPENSEARCH_PASSWORD", "s3cret".to_string()),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = resources.config(dir.path());
    let app = spawn_api(config.clone()).await;

    // What the `logs` handler does with a CloudWatch Logs subscription batch.
    let payload: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cloudwatch_logs_data.json"
        ))
        .expect("fixture"),
    )
    .expect("json");
    let batch = portico_lambda::logs::decode(&payload).expect("decodes").expect("data");
    let sink = portico_app::opensearch_sink(&config).await.expect("sink").expect("configured");
    let shipped = portico_lambda::logs::ship(
        &sink,
        app.composition.context.queue.as_ref(),
        &batch,
        &config.logs.opensearch_index_prefix,
    )
    .await
    .expect("shipped");
    assert_eq!(shipped.created, 2);

    let admin = app.admin_token();
    let (status, page) = app.get("/v1/logs?q=status:200%20AND%20level:INFO", &admin).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["message"], "request");
    assert_eq!(items[0]["fields"]["log_group"], "/aws/lambda/portico-http");
    let (status, page) = app.get("/v1/logs?q=%22plain%20text%22", &admin).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["highlight"], "<mark>plain text</mark> line", "{page}");

    // Members of an account may not read the platform's logs, on AWS as locally.
    let acme = app.create_account("Acme Labs").await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let (status, _) = app.get("/v1/logs?q=*", &carol).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The AWS backend's warehouse: `portico export rebuild`'s work reloads Snowflake (the SQL API
/// stand-in) from the table's records, the reports answer from there through the API's port,
/// and `export status` finds the stream-poller's checkpoint in the table (none yet).
#[tokio::test]
async fn the_warehouse_on_aws_is_rebuilt_from_the_table_and_reports_answer_from_snowflake() {
    use portico_core::warehouse::{Report, ReportQuery};
    use portico_testkit::snowflake::{ACCOUNT, SnowflakeStandIn, USER};

    let resources = resources().await;
    let standin = SnowflakeStandIn::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env: Vec<(&str, &str)> = resources.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("PORTICO_SNOWFLAKE_ACCOUNT", ACCOUNT),
        ("PORTICO_SNOWFLAKE_USER", USER),
        ("PORTICO_SNOWFLAKE_PRIVATE_KEY", standin.private_key_pem.as_str()),
        ("PORTICO_SNOWFLAKE_BASE_URL", standin.url.as_str()),
    ]);
    let config = test_config(dir.path(), &env);
    let composition =
        portico_local::compose_backend(&config).await.expect("the AWS backend composes");
    let ctx = composition.context.clone();
    portico_local::world::seed(&ctx, &portico_local::world::World::demo())
        .await
        .expect("demo seeded");

    let (rebuilt, merged) =
        portico_local::warehouse::rebuild_snowflake(&ctx, &config).await.expect("rebuilt");
    assert_eq!(rebuilt.accounts, 3, "{rebuilt:?}");
    assert!(merged.inserted > 10, "{merged:?}");

    let today = time::OffsetDateTime::now_utc().date();
    let query = ReportQuery::new(
        Report::ShipmentsByProduct,
        Some(today - time::Duration::days(1000)),
        Some(today),
        today,
        None,
    )
    .expect("query");
    let report = ctx.warehouse.report(&query).await.expect("a report from Snowflake");
    let shipments = ctx
        .catalogue
        .list_shipments(None, None, &portico_core::PageRequest { limit: 200, cursor: None })
        .await
        .expect("shipments")
        .items;
    let quantity: i64 = shipments.iter().map(|s| i64::from(s.quantity)).sum();
    let reported: i64 = report.rows.iter().map(|r| r[3].as_int()).sum();
    assert_eq!(reported, quantity, "{report:?}");

    let (checkpoint, holder) =
        portico_local::warehouse::stream_checkpoint(&config).await.expect("status");
    assert_eq!((checkpoint, holder), (None, None));
    let status = ctx.warehouse.status().await.expect("status");
    assert!(status.rows.iter().any(|(table, n)| table == "dim_accounts" && *n == 3), "{status:?}");
}
