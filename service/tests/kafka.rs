//! Kafka publisher and stock feed consumer against a real broker (`scripts/kafka start`).
//! Skipped, with a line saying so, unless STOCKLEDGER_KAFKA_BROKERS is set; the broker
//! outage test also needs STOCKLEDGER_KAFKA_CONTROL=1 (it stops and starts the broker with
//! `scripts/kafka`). `scripts/test.d/50-kafka.sh` sets both.

mod http_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use stockledger::{Durability, Event, Ledger, Line, Options, Source};
use stockledger_service::kafka::{self, KafkaConfig, KafkaHandle, CURSOR_FILE};

// ---- helpers -----------------------------------------------------------------------------

fn brokers(test: &str) -> Option<String> {
    match std::env::var("STOCKLEDGER_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            println!(
                "skipping {test}: STOCKLEDGER_KAFKA_BROKERS is not set \
                 (scripts/test.d/50-kafka.sh starts a broker and sets it)"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The metrics recorder of this test process (installed once).
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

fn metric(name_and_labels: &str) -> f64 {
    metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create_topics(rt: &tokio::runtime::Runtime, brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, parts)| NewTopic::new(name, *parts, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in rt.block_on(admin.create_topics(&new, &opts)).unwrap() {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => panic!("create topic {t}: {e}"),
        }
    }
}

fn config(brokers: &str, events: &str, stock: &str, group: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers.into(),
        events_topic: events.into(),
        stock_topic: stock.into(),
        extra: vec![("group.id".into(), group.into())],
    }
}

fn open(dir: &Path, durability: Durability) -> Arc<Ledger> {
    Arc::new(
        Ledger::open(
            dir,
            Options {
                durability,
                ..Options::default()
            },
        )
        .unwrap(),
    )
}

fn start(
    rt: &tokio::runtime::Runtime,
    ledger: &Arc<Ledger>,
    cfg: KafkaConfig,
    dir: &Path,
) -> KafkaHandle {
    rt.block_on(kafka::start(ledger.clone(), cfg, dir.to_path_buf()))
        .unwrap()
}

fn cursor(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(CURSOR_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// One message read back from the events topic.
#[derive(Debug, Clone)]
struct Got {
    partition: i32,
    key: String,
    header_event_id: String,
    value: Value,
}

impl Got {
    fn seq(&self) -> u64 {
        self.value["seq"].as_u64().unwrap()
    }
}

/// Reads the whole topic from its beginning (every partition, in offset order per
/// partition) until it has seen `distinct` different seqs, and then until `total` messages.
fn read_topic(brokers: &str, topic: &str, distinct: u64, total: u64) -> Vec<Got> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let mut seqs = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (seqs.len() as u64) < distinct || (got.len() as u64) < total {
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}: {} messages so far",
            got.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let headers = m.headers().expect("an event_id header");
            let h = headers
                .iter()
                .find(|h| h.key == "event_id")
                .expect("an event_id header");
            let g = Got {
                partition: m.partition(),
                key: String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                header_event_id: String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                value: serde_json::from_slice(m.payload().unwrap()).unwrap(),
            };
            seqs.insert(g.seq());
            got.push(g);
        }
    }
    got
}

/// Every durable event is in the topic exactly as the ledger reports it (duplicates allowed
/// only as identical copies), and per key, first deliveries come in seq order.
fn check_delivery(ledger: &Ledger, got: &[Got], allow_duplicates: bool) {
    let mut expected: Vec<Event> = Vec::new();
    loop {
        let after = expected.last().map_or(0, |e| e.seq);
        let batch = ledger.events(after, 10_000).unwrap();
        if batch.is_empty() {
            break;
        }
        expected.extend(batch);
    }
    let last = ledger.last_seq();
    assert_eq!(expected.len() as u64, last, "the log holds every event");
    let by_seq: HashMap<u64, &Event> = expected.iter().map(|e| (e.seq, e)).collect();
    for g in got {
        let e = by_seq
            .get(&g.seq())
            .unwrap_or_else(|| panic!("unknown seq {}", g.seq()));
        assert_eq!(g.value, e.to_json(), "value of seq {}", e.seq);
        assert_eq!(g.header_event_id, e.event_id, "header of seq {}", e.seq);
        assert_eq!(g.key, e.key(), "key of seq {}", e.seq);
    }
    let seqs: HashSet<u64> = got.iter().map(Got::seq).collect();
    let missing: Vec<u64> = (1..=last).filter(|s| !seqs.contains(s)).take(10).collect();
    assert!(missing.is_empty(), "events never delivered: {missing:?}...");
    if !allow_duplicates {
        assert_eq!(got.len() as u64, last, "no event delivered twice");
    }
    // Order per key: within the key's partition, each first delivery has a higher seq than
    // every earlier one (a resend after a crash repeats, it never reorders what is new).
    let mut per_key: BTreeMap<&str, (i32, u64, HashSet<u64>)> = BTreeMap::new();
    for g in got {
        let (partition, high, seen) =
            per_key
                .entry(g.key.as_str())
                .or_insert((g.partition, 0, HashSet::new()));
        assert_eq!(*partition, g.partition, "key {} in one partition", g.key);
        if seen.insert(g.seq()) {
            assert!(
                g.seq() > *high,
                "key {}: seq {} first delivered after seq {}",
                g.key,
                g.seq(),
                high
            );
            *high = g.seq();
        }
    }
}

fn stock_ledger(ledger: &Ledger, skus: usize) {
    for i in 0..skus {
        ledger
            .set_stock(&format!("A{i}"), "kol", 1_000_000, Source::Warehouse)
            .unwrap();
    }
}

fn reserve(ledger: &Ledger, order: &str, i: usize, skus: usize) {
    let lines = [
        Line::new(format!("A{}", i % skus), "kol", 1),
        Line::new(format!("A{}", (i + 1) % skus), "kol", 2),
    ];
    let r = ledger.reserve(order, &lines, 900).unwrap();
    assert!(r.created);
}

// ---- the publisher -----------------------------------------------------------------------

#[test]
fn events_arrive_in_order_per_key_with_stable_event_ids() {
    let Some(brokers) = brokers("events_arrive_in_order_per_key_with_stable_event_ids") else {
        return;
    };
    let rt = runtime();
    let (events, stock) = (unique("events"), unique("stock"));
    create_topics(&rt, &brokers, &[(&events, 3), (&stock, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), Durability::Sync);

    // A backlog written before Kafka is on, then live traffic.
    stock_ledger(&ledger, 5);
    for i in 0..30 {
        reserve(&ledger, &format!("o-{i}"), i, 5);
    }
    let cfg = config(&brokers, &events, &stock, &unique("g"));
    let handle = start(&rt, &ledger, cfg.clone(), dir.path());
    for i in 0..30 {
        match i % 3 {
            0 => drop(ledger.commit(&format!("o-{i}")).unwrap()),
            1 => drop(ledger.release(&format!("o-{i}")).unwrap()),
            _ => {}
        }
    }
    ledger
        .adjust_stock("A1", "kol", 5, "adj-1", Some("recount"), Source::Warehouse)
        .unwrap();
    for i in 30..60 {
        reserve(&ledger, &format!("o-{i}"), i, 5);
        ledger.commit(&format!("o-{i}")).unwrap();
    }
    let last = ledger.last_seq();
    assert!(last >= 5 + 30 + 20 + 1 + 60, "last seq {last}");
    wait_for("the outbox lag to reach 0", Duration::from_secs(60), || {
        handle.lag() == 0
    });
    assert_eq!(handle.delivered(), last);
    let got = read_topic(&brokers, &events, last, last);
    check_delivery(&ledger, &got, false);
    assert_eq!(
        topic_size(&brokers, &events),
        last,
        "no event delivered twice"
    );
    rt.block_on(handle.shutdown());
    assert_eq!(
        cursor(dir.path()),
        last,
        "the cursor is recorded on shutdown"
    );

    // Reopened: the same events keep their ids, and delivery resumes after the cursor
    // (nothing already delivered is sent again).
    let before: Vec<String> = ledger
        .events(0, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    ledger.close().unwrap();
    drop(ledger);
    let ledger = open(dir.path(), Durability::Sync);
    let after: Vec<String> = ledger
        .events(0, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(before, after, "event ids are stable across a restart");
    let handle = start(&rt, &ledger, cfg, dir.path());
    assert_eq!(handle.lag(), 0);
    reserve(&ledger, "o-late", 1, 5);
    wait_for(
        "the new event to be delivered",
        Duration::from_secs(60),
        || handle.lag() == 0,
    );
    let got = read_topic(&brokers, &events, last + 1, last + 1);
    check_delivery(&ledger, &got, false);
    assert_eq!(
        topic_size(&brokers, &events),
        last + 1,
        "nothing resent after a restart"
    );
    rt.block_on(handle.shutdown());
}

#[test]
fn broker_outage_in_the_middle_of_a_load_loses_nothing() {
    let Some(brokers) = brokers("broker_outage_in_the_middle_of_a_load_loses_nothing") else {
        return;
    };
    if std::env::var("STOCKLEDGER_KAFKA_CONTROL").as_deref() != Ok("1") {
        println!(
            "skipping broker_outage_in_the_middle_of_a_load_loses_nothing: \
             STOCKLEDGER_KAFKA_CONTROL=1 is not set (the test stops and starts the broker)"
        );
        return;
    }
    let rt = runtime();
    let (events, stock) = (unique("events"), unique("stock"));
    create_topics(&rt, &brokers, &[(&events, 3), (&stock, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), Durability::Sync);
    stock_ledger(&ledger, 50);
    let handle = start(
        &rt,
        &ledger,
        config(&brokers, &events, &stock, &unique("g")),
        dir.path(),
    );

    // Writers keep reserving all along; none of their calls may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (ledger, stop, written) = (ledger.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    reserve(&ledger, &format!("w{w}-{i}"), i + w, 50);
                    written.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();
    let grown = |n: u64| {
        let from = written.load(Ordering::SeqCst);
        wait_for("writers to go on", Duration::from_secs(60), || {
            written.load(Ordering::SeqCst) >= from + n
        });
    };

    wait_for("some delivery", Duration::from_secs(60), || {
        handle.delivered() > 200
    });
    broker("stop");
    let delivered_when_down = handle.delivered();
    grown(500);
    // The producer may still have had acknowledgements in flight at the stop; after that
    // nothing is acknowledged while the broker is away, and the lag grows.
    let lag_down = handle.lag();
    assert!(lag_down >= 400, "lag while the broker is down: {lag_down}");
    broker("start");
    grown(300);
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let last = ledger.last_seq();
    wait_for(
        "every event to be delivered after the outage",
        Duration::from_secs(120),
        || handle.lag() == 0,
    );
    assert!(handle.delivered() == last && last > delivered_when_down + 800);
    let got = read_topic(&brokers, &events, last, 0);
    check_delivery(&ledger, &got, true);
    rt.block_on(handle.shutdown());
    assert_eq!(cursor(dir.path()), last);
}

fn broker(action: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
    let status = Command::new("bash")
        .arg(&script)
        .arg(action)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/kafka {action} failed");
}

/// `stockledgerd --kafka-brokers ...` on a ledger folder, its stderr to a file.
fn spawn_service(dir: &Path, brokers: &str, events: &str, stock: &str, group: &str) -> Child {
    spawn_service_with(dir, brokers, events, stock, group, &[], &[])
}

fn spawn_service_with(
    dir: &Path,
    brokers: &str,
    events: &str,
    stock: &str,
    group: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_stockledgerd"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--kafka-brokers", brokers])
        .args(["--events-topic", events])
        .args(["--stock-topic", stock])
        .args(extra)
        .env("STOCKLEDGER_RDKAFKA_CONSUMER_GROUP_ID", group)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// What the services spawned on `dir` have logged (`spawn_service_with` appends to it).
fn service_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default()
}

/// How many times a service on `dir` has started serving.
fn starts_served(dir: &Path) -> usize {
    service_log(dir).matches("stockledgerd serving").count()
}

/// SIGTERM, then the exit status.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap()
}

#[test]
fn service_killed_while_publishing_delivers_everything_after_restart() {
    let Some(brokers) =
        brokers("service_killed_while_publishing_delivers_everything_after_restart")
    else {
        return;
    };
    let rt = runtime();
    let (events, stock) = (unique("events"), unique("stock"));
    create_topics(&rt, &brokers, &[(&events, 3), (&stock, 1)]);
    let base = tempfile::tempdir().unwrap();
    let dir: PathBuf = base.path().join("data");
    {
        // A large backlog in the outbox, so the service is mid-way when it is killed.
        let ledger = open(&dir, Durability::Async);
        stock_ledger(&ledger, 100);
        std::thread::scope(|s| {
            for w in 0..2 {
                let ledger = &ledger;
                s.spawn(move || {
                    for i in 0..20_000 {
                        reserve(ledger, &format!("k{w}-{i}"), i + w, 100);
                    }
                });
            }
        });
        ledger.close().unwrap();
    }
    let group = unique("g");
    let mut child = spawn_service(&dir, &brokers, &events, &stock, &group);
    let mut seen = 0;
    wait_for(
        "the service to start delivering",
        Duration::from_secs(60),
        || {
            seen = cursor(&dir);
            seen > 0
        },
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = cursor(&dir);

    let ledger = open(&dir, Durability::Sync);
    let last = ledger.last_seq();
    assert!(
        seen < last,
        "killed mid-way: cursor {seen} (then {at_kill}) of {last}"
    );
    ledger.close().unwrap();
    drop(ledger);

    // Restarted: it resumes from the cursor and delivers the rest.
    let mut child = spawn_service(&dir, &brokers, &events, &stock, &group);
    wait_for(
        "the restarted service to deliver every event",
        Duration::from_secs(120),
        || cursor(&dir) == last,
    );
    let status = terminate(&mut child);
    assert!(
        status.success(),
        "stockledgerd exit after SIGTERM: {status}"
    );
    let ledger = open(&dir, Durability::Sync);
    let got = read_topic(&brokers, &events, last, 0);
    check_delivery(&ledger, &got, true);
    println!(
        "kill -9 at cursor {at_kill} of {last}: {} messages for {last} events",
        got.len()
    );
}

/// The frames of a segment file (after its 64-byte header): (offset, first seq, events).
fn frames_of(segment: &[u8]) -> Vec<(usize, u64, u64)> {
    let u32_at = |at: usize| u32::from_le_bytes(segment[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(segment[at..at + 8].try_into().unwrap());
    let mut frames = Vec::new();
    let mut at = 64;
    while at + 48 <= segment.len() && u32_at(at + 4) != 0 {
        frames.push((at, u64_at(at + 16), u64::from(u32_at(at + 28))));
        at += 48 + u32_at(at + 4) as usize;
    }
    frames
}

/// Defect 8 against a real broker: events already delivered to the topic are lost from the
/// end of the log (its last frames zeroed at a frame boundary, so recovery sees a clean end
/// and cuts nothing itself). On restart the publisher finds its cursor past the log's last
/// event, resumes after it and starts a new event epoch: the events that get the lost seqs
/// again carry new event_ids, so no event_id in the topic ever stands for two events.
#[test]
fn events_lost_after_delivery_are_followed_by_new_event_ids() {
    let Some(brokers) = brokers("events_lost_after_delivery_are_followed_by_new_event_ids") else {
        return;
    };
    const FIRST: u64 = 2_000;
    const LATER: u64 = 1_000;
    let rt = runtime();
    let (events, stock) = (unique("events"), unique("stock"));
    create_topics(&rt, &brokers, &[(&events, 1), (&stock, 1)]);
    let base = tempfile::tempdir().unwrap();
    let dir: PathBuf = base.path().join("data");
    {
        let ledger = open(&dir, Durability::Sync);
        stock_ledger(&ledger, FIRST as usize);
        ledger.close().unwrap();
    }
    let group = unique("g");
    let mut child = spawn_service(&dir, &brokers, &events, &stock, &group);
    wait_for("the first start to serve", Duration::from_secs(60), || {
        starts_served(&dir) == 1
    });
    wait_for("every event delivered", Duration::from_secs(120), || {
        cursor(&dir) == FIRST
    });
    assert!(terminate(&mut child).success());

    // The log loses its last quarter of events: zeros from a frame's start to the end.
    let last_segment = http_common::segments(&dir).pop().expect("a segment");
    let mut bytes = std::fs::read(&last_segment).unwrap();
    let frames = frames_of(&bytes);
    let (cut_at, kept_seq, _) = *frames
        .iter()
        .find(|(_, first_seq, _)| *first_seq > FIRST * 3 / 4)
        .expect("a frame in the last quarter");
    let kept = kept_seq - 1;
    bytes[cut_at..].fill(0);
    std::fs::write(&last_segment, &bytes).unwrap();

    // Restarted: new stock messages make new events at the seqs that were lost.
    let feed: Vec<Vec<u8>> = (0..LATER)
        .map(|i| {
            msg(
                json!({"event_id": format!("n-{i}"), "sku": format!("N{}", i % 10),
                "warehouse": "kol", "delta": 1, "reason": "inbound"}),
            )
        })
        .collect();
    produce(&brokers, &stock, &feed);
    let mut child = spawn_service(&dir, &brokers, &events, &stock, &group);
    wait_for("the restart to serve", Duration::from_secs(60), || {
        starts_served(&dir) == 2
    });
    wait_for("the new events delivered", Duration::from_secs(120), || {
        cursor(&dir) == kept + LATER
    });
    assert!(terminate(&mut child).success());
    let log = service_log(&dir);
    assert!(
        log.contains("the kafka cursor is past the log's last event"),
        "{log}"
    );

    let got = read_topic(&brokers, &events, kept + LATER, FIRST + LATER);
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    let mut ids_by_seq: BTreeMap<u64, HashSet<&str>> = BTreeMap::new();
    for g in &got {
        assert_eq!(
            g.value["event_id"].as_str(),
            Some(g.header_event_id.as_str())
        );
        let first = by_id.entry(g.header_event_id.as_str()).or_insert(&g.value);
        assert_eq!(
            *first, &g.value,
            "event_id {} names two events",
            g.header_event_id
        );
        ids_by_seq
            .entry(g.seq())
            .or_default()
            .insert(g.header_event_id.as_str());
    }
    for seq in 1..=kept + LATER {
        let ids = ids_by_seq.get(&seq).map_or(0, HashSet::len);
        let want = if seq > kept && seq <= FIRST { 2 } else { 1 };
        assert_eq!(
            ids, want,
            "event_ids of seq {seq} (the log kept {kept} of {FIRST})"
        );
    }
    let ledger = open(&dir, Durability::Sync);
    assert_eq!(ledger.last_seq(), kept + LATER);
    let reread = ledger.events(kept, 1).unwrap();
    assert!(
        reread[0].event_id.contains('.'),
        "an event after the cut carries its epoch: {}",
        reread[0].event_id
    );
}

// ---- the stock feed consumer -------------------------------------------------------------

fn produce(brokers: &str, topic: &str, messages: &[Vec<u8>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for m in messages {
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(m))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn msg(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn committed(brokers: &str, group: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    match got.elements()[0].offset() {
        Offset::Offset(o) => o,
        _ => -1,
    }
}

/// Messages in the topic, all partitions.
fn topic_size(brokers: &str, topic: &str) -> u64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let meta = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    meta.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            (high - low) as u64
        })
        .sum()
}

fn high_watermark(brokers: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
        .1
}

/// Defect 7 against a real broker: `stockledgerd --durability async` is killed with SIGKILL
/// three times while it applies the stock feed. Its offsets are committed only once the
/// changes are on disk, and a message delivered again is known by its `event_id`, so after
/// the last restart every adjustment is applied exactly once: one event each, and each
/// cell's `on_hand` is the sum of its deltas.
#[test]
fn async_service_killed_while_consuming_the_stock_feed_applies_each_message_once() {
    let Some(brokers) =
        brokers("async_service_killed_while_consuming_the_stock_feed_applies_each_message_once")
    else {
        return;
    };
    const MESSAGES: u64 = 100_000;
    const SKUS: u64 = 10;
    let rt = runtime();
    let (events, stock) = (unique("events"), unique("stock"));
    create_topics(&rt, &brokers, &[(&events, 1), (&stock, 1)]);
    let feed: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            msg(
                json!({"event_id": format!("d-{i}"), "sku": format!("F{}", i % SKUS),
                "warehouse": "kol", "delta": 1, "reason": "inbound"}),
            )
        })
        .collect();
    produce(&brokers, &stock, &feed);
    let base = tempfile::tempdir().unwrap();
    let dir: PathBuf = base.path().join("data");
    let group = unique("g");
    let args = ["--durability", "async"];
    // A member killed with SIGKILL holds its partition until its session times out (45 s by
    // default): 6 s, the broker's minimum, keeps the restarts quick.
    let env = [("STOCKLEDGER_RDKAFKA_CONSUMER_SESSION_TIMEOUT_MS", "6000")];
    let spawn = || spawn_service_with(&dir, &brokers, &events, &stock, &group, &args, &env);
    let mut kills = Vec::new();
    for k in 1..=3 {
        let before = cursor(&dir);
        // Each applied adjustment is one event; the publisher's cursor follows them.
        let kill_at = (k * MESSAGES / 5).max(before + 1).min(MESSAGES);
        let mut child = spawn();
        wait_for(
            "the feed to be applied further",
            Duration::from_secs(120),
            || cursor(&dir) >= kill_at,
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills.push(cursor(&dir));
    }
    let mut child = spawn();
    wait_for(
        "every message to be applied",
        Duration::from_secs(180),
        || cursor(&dir) >= MESSAGES,
    );
    // SIGTERM once it serves, so that it stops from a known state.
    wait_for("the last start to serve", Duration::from_secs(60), || {
        starts_served(&dir) == 4
    });
    let status = terminate(&mut child);
    let log = service_log(&dir);
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    assert!(
        status.success(),
        "exit after SIGTERM: {status} (kills at cursors {kills:?}); log ends {tail:?}"
    );
    let ledger = open(&dir, Durability::Sync);
    assert_eq!(
        ledger.last_seq(),
        MESSAGES,
        "one event per message (kills at cursors {kills:?})"
    );
    for k in 0..SKUS {
        let cell = ledger.stock(&format!("F{k}"), "kol").unwrap();
        assert_eq!(
            cell.on_hand,
            MESSAGES / SKUS,
            "F{k} (kills at cursors {kills:?})"
        );
    }
    println!("stock feed: {MESSAGES} messages, kills at cursors {kills:?}");
}

#[test]
fn stock_messages_apply_once_even_when_delivered_twice() {
    let Some(brokers) = brokers("stock_messages_apply_once_even_when_delivered_twice") else {
        return;
    };
    metrics();
    let rt = runtime();
    let (events, stock) = (unique("events"), unique("stock"));
    create_topics(&rt, &brokers, &[(&events, 1), (&stock, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), Durability::Sync);
    ledger
        .set_stock("R1", "kol", 10, Source::Warehouse)
        .unwrap();
    ledger
        .reserve("o-r", &[Line::new("R1", "kol", 8)], 900)
        .unwrap();

    let set = json!({"event_id": "w-1", "sku": "S1", "warehouse": "kol", "on_hand": 100});
    let add = json!({"event_id": "w-2", "sku": "S1", "warehouse": "kol", "delta": 5, "reason": "inbound"});
    let rejected_before = [
        metric("stockledger_stock_feed_rejected_total{reason=\"malformed\"}"),
        metric("stockledger_stock_feed_rejected_total{reason=\"below_reserved\"}"),
        metric("stockledger_stock_feed_rejected_total{reason=\"adjustment_conflict\"}"),
        metric("stockledger_stock_feed_rejected_total{reason=\"invalid_request\"}"),
    ];
    produce(
        &brokers,
        &stock,
        &[
            msg(set.clone()),
            msg(add.clone()),
            // The same messages delivered again.
            msg(set.clone()),
            msg(add.clone()),
            // Malformed or refused: logged, counted, skipped.
            b"not json".to_vec(),
            msg(json!({"event_id": "w-3", "sku": "S1", "delta": 1})),
            msg(json!({"event_id": "w-4", "sku": "S1", "warehouse": "kol", "delta": 1.5})),
            msg(json!({"event_id": "w-5", "sku": "R1", "warehouse": "kol", "delta": -5})),
            msg(json!({"event_id": "w-2", "sku": "S1", "warehouse": "kol", "delta": 7})),
            msg(json!({"event_id": "w-6", "sku": "", "warehouse": "kol", "on_hand": 1})),
            // The last one: once it is applied, everything before it was handled.
            msg(json!({"event_id": "w-7", "sku": "S2", "warehouse": "kol", "delta": 1})),
        ],
    );
    let group = unique("g");
    let handle = start(
        &rt,
        &ledger,
        config(&brokers, &events, &stock, &group),
        dir.path(),
    );
    wait_for(
        "the stock feed to be consumed",
        Duration::from_secs(60),
        || ledger.stock("S2", "kol").unwrap().on_hand == 1,
    );
    assert_eq!(ledger.stock("S1", "kol").unwrap().on_hand, 105);
    assert_eq!(ledger.stock("R1", "kol").unwrap().on_hand, 10);
    let rejected_after = [
        metric("stockledger_stock_feed_rejected_total{reason=\"malformed\"}"),
        metric("stockledger_stock_feed_rejected_total{reason=\"below_reserved\"}"),
        metric("stockledger_stock_feed_rejected_total{reason=\"adjustment_conflict\"}"),
        metric("stockledger_stock_feed_rejected_total{reason=\"invalid_request\"}"),
    ];
    let counted: Vec<f64> = rejected_after
        .iter()
        .zip(rejected_before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(counted, vec![3.0, 1.0, 1.0, 1.0], "rejections by reason");
    // Offsets are committed, skipped messages included.
    let end = high_watermark(&brokers, &stock);
    assert_eq!(end, 11);
    wait_for("offsets to be committed", Duration::from_secs(30), || {
        committed(&brokers, &group, &stock) == end
    });
    // The stock events it caused are published like any other.
    let s1_events = ledger
        .events(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.key() == "S1")
        .count();
    assert_eq!(s1_events, 2, "one stock.set and one stock.adjusted for S1");
    rt.block_on(handle.shutdown());

    // Everything delivered again to a new consumer group: nothing changes twice.
    let handle = start(
        &rt,
        &ledger,
        config(&brokers, &events, &stock, &unique("g")),
        dir.path(),
    );
    produce(
        &brokers,
        &stock,
        &[msg(
            json!({"event_id": "w-8", "sku": "S2", "warehouse": "kol", "delta": 1}),
        )],
    );
    wait_for(
        "the redelivered feed to be consumed",
        Duration::from_secs(60),
        || ledger.stock("S2", "kol").unwrap().on_hand == 2,
    );
    assert_eq!(ledger.stock("S1", "kol").unwrap().on_hand, 105);
    rt.block_on(handle.shutdown());
}

#[test]
fn stock_message_is_not_committed_while_the_ledger_is_unavailable() {
    let Some(brokers) = brokers("stock_message_is_not_committed_while_the_ledger_is_unavailable")
    else {
        return;
    };
    let rt = runtime();
    let (events, stock) = (unique("events"), unique("stock"));
    create_topics(&rt, &brokers, &[(&events, 1), (&stock, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let ledger = open(dir.path(), Durability::Sync);
    let handle = start(
        &rt,
        &ledger,
        config(&brokers, &events, &stock, &group),
        dir.path(),
    );
    produce(
        &brokers,
        &stock,
        &[msg(
            json!({"event_id": "u-1", "sku": "U1", "warehouse": "kol", "delta": 3}),
        )],
    );
    wait_for(
        "the first message to apply",
        Duration::from_secs(60),
        || ledger.stock("U1", "kol").unwrap().on_hand == 3,
    );
    wait_for(
        "its offset to be committed",
        Duration::from_secs(30),
        || committed(&brokers, &group, &stock) == 1,
    );
    // The ledger stops taking writes: the next message must stay uncommitted.
    ledger.close().unwrap();
    let retries_before = metric("stockledger_stock_feed_retries_total");
    metrics();
    produce(
        &brokers,
        &stock,
        &[msg(
            json!({"event_id": "u-2", "sku": "U1", "warehouse": "kol", "delta": 4}),
        )],
    );
    wait_for("the consumer to retry", Duration::from_secs(60), || {
        metric("stockledger_stock_feed_retries_total") >= retries_before + 2.0
    });
    assert_eq!(committed(&brokers, &group, &stock), 1);
    rt.block_on(handle.shutdown());
    assert_eq!(
        committed(&brokers, &group, &stock),
        1,
        "not committed at shutdown"
    );
    drop(ledger);

    // Back with a working ledger, the same group gets the message again and applies it.
    let ledger = open(dir.path(), Durability::Sync);
    let handle = start(
        &rt,
        &ledger,
        config(&brokers, &events, &stock, &group),
        dir.path(),
    );
    wait_for(
        "the retried message to apply",
        Duration::from_secs(60),
        || ledger.stock("U1", "kol").unwrap().on_hand == 7,
    );
    wait_for(
        "its offset to be committed",
        Duration::from_secs(30),
        || committed(&brokers, &group, &stock) == 2,
    );
    rt.block_on(handle.shutdown());
}

// ---- benchmark (run by hand) -------------------------------------------------------------

/// How fast the publisher drains a backlog into the broker, and the lag while writers
/// reserve flat out (in process, durability sync). Run:
/// `cargo test --release -p stockledger-service --test kafka -- --ignored --nocapture publisher_rates`
#[test]
#[ignore = "benchmark; run by hand against scripts/kafka start"]
fn publisher_rates() {
    let Some(brokers) = brokers("publisher_rates") else {
        return;
    };
    let backlog: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = runtime();
    let (events, stock) = (unique("bench-events"), unique("bench-stock"));
    create_topics(&rt, &brokers, &[(&events, 3), (&stock, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), Durability::Async);
    stock_ledger(&ledger, 1000);
    std::thread::scope(|s| {
        for w in 0..2 {
            let ledger = &ledger;
            s.spawn(move || {
                for i in 0..backlog / 2 {
                    reserve(ledger, &format!("b{w}-{i}"), i * 7 + w, 1000);
                }
            });
        }
    });
    ledger.close().unwrap();
    drop(ledger);
    let ledger = open(dir.path(), Durability::Sync);
    let last = ledger.last_seq();
    let t0 = Instant::now();
    let handle = start(
        &rt,
        &ledger,
        config(&brokers, &events, &stock, &unique("g")),
        dir.path(),
    );
    wait_for("the backlog to drain", Duration::from_secs(600), || {
        handle.lag() == 0
    });
    let drain = t0.elapsed();
    println!(
        "drain: {last} events in {:.2}s = {:.0} events/s",
        drain.as_secs_f64(),
        last as f64 / drain.as_secs_f64()
    );

    // Steady state: 8 writers in sync mode (group commit) for 15 s, lag sampled every 100 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (ledger, stop, written) = (ledger.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    reserve(&ledger, &format!("s{w}-{i}"), i * 13 + w, 1000);
                    written.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();
    let (d0, t0) = (handle.delivered(), Instant::now());
    let mut lags = Vec::new();
    while t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        lags.push(handle.lag());
    }
    let secs = t0.elapsed().as_secs_f64();
    let delivered = handle.delivered() - d0;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    lags.sort_unstable();
    println!(
        "steady: {:.0} reservations/s written, {:.0} events/s delivered; lag p50 {} p99 {} max {} events",
        written.load(Ordering::SeqCst) as f64 / secs,
        delivered as f64 / secs,
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100],
        lags[lags.len() - 1]
    );
    rt.block_on(handle.shutdown());
}
