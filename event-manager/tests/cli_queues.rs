//! End-to-end tests of `event-manager queues list|dead-letters|replay|migrate|delete` against a real
//! RabbitMQ (`AMQP_URL`, default the local broker): output lines and exit codes (0 success,
//! 1 operational failure, 2 usage error). Each test works in a namespace of its own and
//! deletes every queue and exchange it created.
#![cfg(all(feature = "cli", feature = "testing", feature = "amqp"))]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use event_manager::{Bus, HandlerError, RetryPolicy, Service};

use common::{ORDER, Order, amqp_url, unique_namespace};
use serde_json::{Value, json};

/// The service whose queues the tests manage.
const SERVICE: &str = "billing_order";
/// Its retry delays (naming its wait queues), as given to `--retry-delays`.
const DELAYS_ARG: &str = "200ms,1s";

/// What the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_event-manager"));
    command.args(args).env_remove("AMQP_URL");
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().expect("run event-manager");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A RabbitMQ bus in a namespace of its own; deletes the service's queues and the order
/// exchange on drop, even when the test fails.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    bus: Bus,
    namespace: String,
    url: String,
}

impl Fixture {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let url = amqp_url();
        let bus = runtime.block_on(Bus::connect(&url)).unwrap_or_else(|e| {
            panic!("RabbitMQ is required for this test and could not be reached: {e}")
        });
        let namespace = unique_namespace("cli");
        Self {
            runtime,
            bus: bus.with_namespace(&namespace),
            namespace,
            url,
        }
    }

    /// The service, with the retry policy `--retry-delays 200ms,1s` describes, refusing every
    /// order with a permanent error.
    fn service(&self) -> Service {
        let mut service = self.bus.service(SERVICE);
        service.retry(RetryPolicy::new(
            3,
            vec![Duration::from_millis(200), Duration::from_secs(1)],
        ));
        service.on(Order::SUBMIT, |_: Order, _| async {
            Err::<(), _>(HandlerError::permanent(std::io::Error::other(
                "refused by\tthe test\nservice",
            )))
        });
        service
    }

    /// Runs `event-manager queues <command> --service … --namespace … <extra>` with the
    /// broker URL in `AMQP_URL`.
    fn queues(&self, command: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "queues",
            command,
            "--service",
            SERVICE,
            "--namespace",
            &self.namespace,
        ];
        args.extend_from_slice(extra);
        run(&args, &[("AMQP_URL", &self.url)])
    }

    /// Ready messages per queue of the service, from the library.
    fn lengths(&self) -> Vec<(String, u64)> {
        self.runtime
            .block_on(self.service().queues().lengths())
            .expect("queue lengths")
    }

    fn length(&self, queue: &str) -> u64 {
        self.lengths()
            .into_iter()
            .find(|(name, _)| name == queue)
            .map(|(_, ready)| ready)
            .unwrap_or_else(|| panic!("no queue {queue}"))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let queues = self.service().queues();
        let exchange = self.bus.topology().exchange_name(ORDER);
        let transport = event_manager::testing::transport(&self.bus);
        self.runtime.block_on(async {
            let _ = queues.delete().await;
            let _ = transport.delete_exchange(&exchange).await;
            self.bus.close().await;
        });
    }
}

#[test]
fn list_dead_letters_replay_and_delete_a_services_queues() {
    let fixture = Fixture::new();
    let queues = fixture.service().queues();
    let (queue, dlq) = (
        queues.queue().to_owned(),
        queues.dead_letter_queue().to_owned(),
    );
    assert_eq!(queue, format!("{}.{SERVICE}", fixture.namespace));

    // Two orders, refused at once: two dead letters.
    let ids = fixture.runtime.block_on(async {
        let running = fixture.service().start().await.expect("start the service");
        let mut ids = Vec::new();
        for id in [7, 8] {
            let published = fixture
                .bus
                .publish(Order::SUBMIT, &Order { id })
                .await
                .expect("publish");
            ids.push(published.message_id);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while queues.lengths().await.expect("lengths")[2].1 < 2 {
            assert!(
                Instant::now() < deadline,
                "the orders were not dead-lettered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running.shutdown().await.expect("shutdown");
        ids
    });

    // list: every queue with its ready count, in the order of `ServiceQueues::names`.
    let list = fixture.queues("list", &["--retry-delays", DELAYS_ARG]);
    assert_eq!(list.code, 0, "stderr: {}", list.stderr);
    let listed: Vec<(String, u64)> = list
        .lines()
        .iter()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next().expect("name").to_owned();
            let ready = fields.next().expect("count").parse().expect("a count");
            assert_eq!(fields.next(), None, "line {line:?}");
            (name, ready)
        })
        .collect();
    assert_eq!(listed.len(), 5, "{}", list.stdout);
    assert_eq!(
        listed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        queues.names()
    );
    assert_eq!(listed, fixture.lengths());
    assert!(listed.contains(&(dlq.clone(), 2)), "{}", list.stdout);
    assert!(listed.contains(&(queue.clone(), 0)), "{}", list.stdout);
    assert!(listed.iter().any(|(n, _)| n.ends_with(".wait.200ms")));
    assert!(listed.iter().any(|(n, _)| n.ends_with(".wait.1000ms")));

    // Without --retry-delays the library's default wait queues are looked for: missing.
    let default_delays = fixture.queues("list", &[]);
    assert_eq!(default_delays.code, 1, "stdout: {}", default_delays.stdout);
    assert!(
        default_delays.stderr.contains("does not exist")
            && default_delays.stderr.contains("--retry-delays"),
        "{}",
        default_delays.stderr
    );

    // dead-letters: one tab-separated line per dead letter, left in the queue.
    let letters = fixture.queues("dead-letters", &["--retry-delays", DELAYS_ARG]);
    assert_eq!(letters.code, 0, "stderr: {}", letters.stderr);
    assert_eq!(letters.lines().len(), 2, "{}", letters.stdout);
    for (line, id) in letters.lines().iter().zip(&ids) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 6, "{line:?}");
        assert_eq!(fields[0], id);
        assert_eq!(fields[1], "order.v1.submit");
        assert_eq!(fields[2], "permanent-error");
        assert_eq!(fields[3], "1");
        assert!(fields[4].starts_with("20"), "failed-at {:?}", fields[4]);
        assert!(
            fields[5].contains("refused by the test service"),
            "{line:?}"
        );
    }
    let limited = fixture.queues("dead-letters", &["--limit", "1"]);
    assert_eq!(limited.code, 0, "stderr: {}", limited.stderr);
    assert_eq!(limited.lines().len(), 1, "{}", limited.stdout);
    assert_eq!(
        fixture.length(&dlq),
        2,
        "reading must not remove dead letters"
    );

    // dead-letters --json: one object per line, with the body.
    let json_run = fixture.queues("dead-letters", &["--json"]);
    assert_eq!(json_run.code, 0, "stderr: {}", json_run.stderr);
    let objects: Vec<Value> = json_run
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 2, "{}", json_run.stdout);
    let first = objects
        .iter()
        .find(|o| o["message_id"] == json!(ids[0]))
        .expect("the first order's dead letter");
    assert_eq!(first["kind"], "permanent-error");
    assert_eq!(first["routing_key"], "order.v1.submit");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["body"], json!({"id": 7}));
    assert!(first["reason"].as_str().unwrap().contains("refused"));
    assert!(first["failed_at"].is_string());

    // replay: back to the service queue.
    let replay_one = fixture.queues("replay", &["--limit", "1"]);
    assert_eq!(replay_one.code, 0, "stderr: {}", replay_one.stderr);
    assert!(
        replay_one.stdout.contains("replayed 1 dead letter(s)"),
        "{}",
        replay_one.stdout
    );
    assert_eq!(fixture.length(&dlq), 1);
    assert_eq!(fixture.length(&queue), 1);
    let replay_rest = fixture.queues("replay", &[]);
    assert_eq!(replay_rest.code, 0, "stderr: {}", replay_rest.stderr);
    assert!(
        replay_rest.stdout.contains("replayed 1 dead letter(s)"),
        "{}",
        replay_rest.stdout
    );
    assert_eq!(fixture.length(&dlq), 0);
    assert_eq!(fixture.length(&queue), 2);
    let empty = fixture.queues("dead-letters", &[]);
    assert_eq!(empty.code, 0, "stderr: {}", empty.stderr);
    assert_eq!(empty.stdout, "");

    // delete: refused without --yes, nothing deleted.
    let refused = fixture.queues("delete", &["--retry-delays", DELAYS_ARG]);
    assert_eq!(refused.code, 2, "stdout: {}", refused.stdout);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert_eq!(fixture.length(&queue), 2);

    let deleted = fixture.queues("delete", &["--retry-delays", DELAYS_ARG, "--yes"]);
    assert_eq!(deleted.code, 0, "stderr: {}", deleted.stderr);
    for name in queues.names() {
        assert!(deleted.stdout.contains(name), "{}", deleted.stdout);
    }
    let gone = fixture
        .runtime
        .block_on(queues.lengths())
        .expect_err("the queues are deleted");
    assert!(gone.to_string().contains("does not exist"), "{gone}");

    // Once deleted, the service is missing: an operational failure.
    let missing = fixture.queues("list", &["--retry-delays", DELAYS_ARG]);
    assert_eq!(missing.code, 1, "stdout: {}", missing.stdout);
    assert!(
        missing
            .stderr
            .contains(&format!("queue `{queue}` does not exist")),
        "{}",
        missing.stderr
    );
    let again = fixture.queues("delete", &["--retry-delays", DELAYS_ARG, "--yes"]);
    assert_eq!(again.code, 1, "stdout: {}", again.stdout);
    assert!(again.stderr.contains("does not exist"), "{}", again.stderr);
}

#[test]
fn an_unreachable_broker_is_an_operational_failure_and_the_password_is_never_shown() {
    let url = "amqp://guest:s3cr3t-pw@127.0.0.1:1/%2f";
    for command in ["list", "dead-letters", "replay"] {
        let failed = run(
            &["queues", command, "--service", SERVICE, "--url", url],
            &[],
        );
        assert_eq!(failed.code, 1, "{command}: stdout {}", failed.stdout);
        assert!(
            failed.stderr.contains("cannot connect"),
            "{command}: {}",
            failed.stderr
        );
        let all = format!("{}{}", failed.stdout, failed.stderr);
        assert!(!all.contains("s3cr3t-pw"), "{command}: {all}");
    }
    // A percent-encoded password, neither as written nor decoded.
    let encoded = "amqp://guest:s3cr3t%40pw@127.0.0.1:1/%2f";
    let failed = run(
        &["queues", "list", "--service", SERVICE, "--url", encoded],
        &[],
    );
    assert_eq!(failed.code, 1, "stdout {}", failed.stdout);
    let all = format!("{}{}", failed.stdout, failed.stderr);
    assert!(!all.contains("s3cr3t"), "{all}");
    // The same through AMQP_URL.
    let failed = run(
        &["queues", "delete", "--service", SERVICE, "--yes"],
        &[("AMQP_URL", url)],
    );
    assert_eq!(failed.code, 1, "stdout {}", failed.stdout);
    assert!(!failed.stderr.contains("s3cr3t-pw"), "{}", failed.stderr);
}

#[test]
fn usage_errors_exit_with_status_2() {
    let url = "amqp://guest:guest@127.0.0.1:1/%2f";
    let cases: [&[&str]; 6] = [
        // No broker URL: neither --url nor AMQP_URL.
        &["queues", "list", "--service", SERVICE],
        // No service.
        &["queues", "list", "--url", url],
        // Unparsable retry delays.
        &[
            "queues",
            "list",
            "--service",
            SERVICE,
            "--url",
            url,
            "--retry-delays",
            "1s,soon",
        ],
        // Not a number.
        &[
            "queues",
            "dead-letters",
            "--service",
            SERVICE,
            "--url",
            url,
            "--limit",
            "many",
        ],
        // delete without --yes is refused before connecting (the broker here is unreachable).
        &["queues", "delete", "--service", SERVICE, "--url", url],
        // No such subcommand.
        &["queues", "purge", "--service", SERVICE, "--url", url],
    ];
    for args in cases {
        let failed = run(args, &[]);
        assert_eq!(failed.code, 2, "{args:?}: stderr {}", failed.stderr);
        assert!(!failed.stderr.is_empty(), "{args:?}");
        assert_eq!(failed.stdout, "", "{args:?}");
    }
    let refused = run(
        &["queues", "delete", "--service", SERVICE, "--url", url],
        &[],
    );
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    let no_url = run(&["queues", "list", "--service", SERVICE], &[]);
    assert!(no_url.stderr.contains("AMQP_URL"), "{}", no_url.stderr);
}

#[test]
fn migrate_moves_a_classic_services_queues_to_quorum_queues() {
    let fixture = Fixture::new();
    let queues = fixture.service().queues();
    let bind = [
        "--retry-delays",
        DELAYS_ARG,
        "--bind",
        "order=order.v1.submit",
    ];

    // Deployed with classic queues, holding five orders.
    fixture.runtime.block_on(async {
        let mut classic = fixture.service();
        classic.queue_kind(event_manager::transport::QueueKind::Classic);
        classic
            .declare()
            .await
            .expect("declare the classic service");
        for id in 0..5 {
            fixture
                .bus
                .publish(Order::SUBMIT, &Order { id })
                .await
                .expect("publish");
        }
        let refused = fixture
            .service()
            .declare()
            .await
            .expect_err("classic queues");
        assert!(
            refused.to_string().contains("event-manager queues migrate"),
            "{refused}"
        );
    });

    // Usage errors: no binding, a binding that does not parse.
    for bad in [&[][..], &["--bind", "order"], &["--bind", "or.der=order.#"]] {
        let mut args = vec!["--retry-delays", DELAYS_ARG];
        args.extend_from_slice(bad);
        let failed = fixture.queues("migrate", &args);
        assert_eq!(failed.code, 2, "{bad:?}: {}", failed.stderr);
        assert_eq!(failed.stdout, "", "{bad:?}");
    }
    assert_eq!(fixture.length(queues.queue()), 5, "nothing moved yet");

    // One line per recreated queue, the service queue with its five orders.
    let migrated = fixture.queues("migrate", &bind);
    assert_eq!(migrated.code, 0, "stderr: {}", migrated.stderr);
    assert_eq!(
        migrated.lines().len(),
        queues.names().len(),
        "{}",
        migrated.stdout
    );
    for name in queues.names() {
        let moved = if name == queues.queue() { 5 } else { 0 };
        let line = format!("migrated {name}: moved {moved} message(s) (`");
        assert!(
            migrated.lines().iter().any(|l| l.starts_with(&line)),
            "no `{line}` in:\n{}",
            migrated.stdout
        );
    }
    fixture.runtime.block_on(async {
        fixture
            .service()
            .declare()
            .await
            .expect("quorum queues now");
        let published = fixture.bus.publish(Order::SUBMIT, &Order { id: 5 }).await;
        assert!(published.expect("bound again").routed);
    });
    assert_eq!(fixture.length(queues.queue()), 6);

    // Once done there is nothing left to migrate; an unknown service is an error.
    let again = fixture.queues("migrate", &bind);
    assert_eq!(again.code, 0, "stderr: {}", again.stderr);
    assert!(
        again.stdout.starts_with("nothing to migrate"),
        "{}",
        again.stdout
    );
    let mut args = vec![
        "queues",
        "migrate",
        "--service",
        "no_such_service",
        "--namespace",
        &fixture.namespace,
    ];
    args.extend_from_slice(&bind);
    let unknown = run(&args, &[("AMQP_URL", &fixture.url)]);
    assert_eq!(unknown.code, 1, "stdout: {}", unknown.stdout);
    assert!(
        unknown.stderr.contains("does not exist"),
        "{}",
        unknown.stderr
    );
}
