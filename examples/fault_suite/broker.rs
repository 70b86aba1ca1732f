//! The local RabbitMQ as the fault injector sees it: `rabbitmqctl` commands with deadlines,
//! queue statistics, and a restore of everything a fault changed that runs whatever happens.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::report::{Ctx, Res};

/// The memory watermark the broker runs with normally.
pub const NORMAL_WATERMARK: &str = "0.4";
/// A watermark so low that the memory alarm goes off at once.
pub const ALARM_WATERMARK: &str = "0.0000001";
/// The free disk space limit the broker runs with normally (RabbitMQ's default).
pub const NORMAL_DISK_LIMIT: &str = "50MB";
/// A free disk space limit so high that the disk alarm goes off at once.
pub const ALARM_DISK_LIMIT: &str = "1000000GB";

/// A resource alarm of the broker: both block every publishing connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// `set_vm_memory_high_watermark`.
    Memory,
    /// `set_disk_free_limit`.
    Disk,
}

impl Alarm {
    /// The `rabbitmqctl` arguments that raise the alarm, or put the setting back.
    fn command(self, raised: bool) -> [&'static str; 3] {
        match (self, raised) {
            (Self::Memory, true) => ["-q", "set_vm_memory_high_watermark", ALARM_WATERMARK],
            (Self::Memory, false) => ["-q", "set_vm_memory_high_watermark", NORMAL_WATERMARK],
            (Self::Disk, true) => ["-q", "set_disk_free_limit", ALARM_DISK_LIMIT],
            (Self::Disk, false) => ["-q", "set_disk_free_limit", NORMAL_DISK_LIMIT],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
        }
    }
}

/// Runs `program args` and returns its standard output; fails on a non-zero exit or after
/// `limit` (the process is then killed).
pub fn run(program: &str, args: &[&str], limit: Duration) -> Res<String> {
    let shown = format!("{program} {}", args.join(" "));
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(&format!("cannot start `{shown}`"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => Err(format!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Ok(Err(e)) => Err(format!("`{shown}`: {e}")),
        Err(_) => {
            signal(pid, "KILL");
            Err(format!("`{shown}` did not finish within {limit:?}"))
        }
    }
}

/// Sends `SIG<name>` to process `pid` with `kill`.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `rabbitmqctl args`, within `limit`.
pub fn ctl(args: &[&str], limit: Duration) -> Res<String> {
    run("rabbitmqctl", args, limit)
}

/// [`ctl`] off the async runtime.
pub async fn ctl_async(args: &[&str], limit: Duration) -> Res<String> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(&args, limit)
    })
    .await
    .ctx("rabbitmqctl task")?
}

/// One queue as `rabbitmqctl list_queues` reports it.
#[derive(Debug, Clone)]
pub struct QueueStat {
    pub name: String,
    /// Every message in the queue; on a quorum queue also those expired or rejected and
    /// waiting in its at-least-once dead-letter stage.
    pub messages: u64,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
    /// Whether the broker gave the counts: a quorum queue that is still recovering after a
    /// broker restart is listed without them.
    pub known: bool,
}

impl QueueStat {
    /// Messages still in the queue: ready, delivered and unacknowledged, or waiting to be
    /// dead-lettered. A queue listed without counts holds at least one, as far as anyone
    /// can tell: it is never taken for empty.
    pub fn held(&self) -> u64 {
        if !self.known {
            return self.messages.max(self.ready + self.unacked).max(1);
        }
        self.messages.max(self.ready + self.unacked)
    }

    /// Messages a quorum queue holds in its dead-letter stage (neither ready nor delivered).
    pub fn dead_letter_stage(&self) -> u64 {
        self.messages.saturating_sub(self.ready + self.unacked)
    }
}

/// Every queue whose name contains one of `needles`.
pub async fn queues(needles: &[String]) -> Res<Vec<QueueStat>> {
    let out = ctl_async(
        &[
            "-q",
            "list_queues",
            "name",
            "messages",
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
            "--formatter",
            "json",
        ],
        Duration::from_secs(30),
    )
    .await?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim()).ctx("list_queues")?;
    let number = |row: &serde_json::Value, key: &str| row[key].as_u64().unwrap_or(0);
    Ok(rows
        .iter()
        .filter_map(|row| {
            let name = row["name"].as_str()?;
            needles
                .iter()
                .any(|n| name.contains(n.as_str()))
                .then(|| QueueStat {
                    name: name.to_owned(),
                    messages: number(row, "messages"),
                    ready: number(row, "messages_ready"),
                    unacked: number(row, "messages_unacknowledged"),
                    consumers: number(row, "consumers"),
                    known: row["messages"].is_u64(),
                })
        })
        .collect())
}

/// The queue named exactly `name`, if it exists.
pub async fn queue(name: &str) -> Res<Option<QueueStat>> {
    Ok(queues(&[name.to_owned()])
        .await?
        .into_iter()
        .find(|q| q.name == name))
}

/// Every exchange whose name contains `needle`.
pub async fn exchanges(needle: &str) -> Res<Vec<String>> {
    let out = ctl_async(
        &["-q", "list_exchanges", "name", "--formatter", "json"],
        Duration::from_secs(30),
    )
    .await?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim()).ctx("list_exchanges")?;
    Ok(rows
        .iter()
        .filter_map(|row| row["name"].as_str())
        .filter(|name| name.contains(needle))
        .map(str::to_owned)
        .collect())
}

/// Whether the broker reports a resource alarm.
pub async fn alarm_active() -> bool {
    let args = ["-q", "check_alarms"];
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let result = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("rabbitmq-diagnostics", &args, Duration::from_secs(30))
    })
    .await;
    !matches!(result, Ok(Ok(_)))
}

/// The faults this run put on the broker, so that [`Broker::restore`] undoes exactly those
/// (and always the ones whose command was issued, even if it timed out).
#[derive(Debug, Default)]
pub struct Broker {
    app_stopped: AtomicBool,
    memory_alarm_set: AtomicBool,
    disk_alarm_set: AtomicBool,
    policies: Mutex<Vec<String>>,
}

impl Broker {
    /// `rabbitmqctl stop_app`: the broker goes away, the Erlang node stays.
    pub async fn stop_app(&self) -> Res<()> {
        self.app_stopped.store(true, Ordering::SeqCst);
        ctl_async(&["-q", "stop_app"], Duration::from_secs(60)).await?;
        Ok(())
    }

    /// `rabbitmqctl start_app`, then waits until the broker is up.
    pub async fn start_app(&self) -> Res<()> {
        ctl_async(&["-q", "start_app"], Duration::from_secs(120)).await?;
        ctl_async(&["-q", "await_startup"], Duration::from_secs(120)).await?;
        self.app_stopped.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn alarm_set(&self, alarm: Alarm) -> &AtomicBool {
        match alarm {
            Alarm::Memory => &self.memory_alarm_set,
            Alarm::Disk => &self.disk_alarm_set,
        }
    }

    /// Sets the memory watermark so low that the memory alarm goes off, and waits until the
    /// broker reports it (at most 20 s).
    pub async fn raise_memory_alarm(&self) -> Res<()> {
        self.raise_alarm(Alarm::Memory).await
    }

    /// Puts the memory watermark back and waits until the alarm is gone (at most 20 s).
    pub async fn clear_memory_alarm(&self) -> Res<()> {
        self.clear_alarm(Alarm::Memory).await
    }

    /// Sets the broker's limit so that `alarm` goes off, and waits until the broker reports
    /// it (at most 20 s).
    pub async fn raise_alarm(&self, alarm: Alarm) -> Res<()> {
        self.alarm_set(alarm).store(true, Ordering::SeqCst);
        ctl_async(&alarm.command(true), Duration::from_secs(30)).await?;
        wait_for_alarm(true).await
    }

    /// Puts the limit of `alarm` back and waits until no alarm is left (at most 20 s).
    pub async fn clear_alarm(&self, alarm: Alarm) -> Res<()> {
        ctl_async(&alarm.command(false), Duration::from_secs(30)).await?;
        self.alarm_set(alarm).store(false, Ordering::SeqCst);
        wait_for_alarm(false).await
    }

    /// `rabbitmqctl set_policy name pattern definition --apply-to queues`.
    pub async fn set_policy(&self, name: &str, pattern: &str, definition: &str) -> Res<()> {
        self.policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_owned());
        ctl_async(
            &[
                "-q",
                "set_policy",
                name,
                pattern,
                definition,
                "--apply-to",
                "queues",
            ],
            Duration::from_secs(30),
        )
        .await?;
        // Policies are applied asynchronously; give the queue a moment to take it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    /// `rabbitmqctl clear_policy name`.
    pub async fn clear_policy(&self, name: &str) -> Res<()> {
        ctl_async(&["-q", "clear_policy", name], Duration::from_secs(30)).await?;
        self.policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| p != name);
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    /// `rabbitmqctl close_all_connections`: every client connection of the broker is closed.
    pub async fn close_all_connections(&self, reason: &str) -> Res<()> {
        ctl_async(
            &["-q", "close_all_connections", reason],
            Duration::from_secs(30),
        )
        .await?;
        Ok(())
    }

    /// `rabbitmqctl delete_queue name`, as an operator would; false when there was no such
    /// queue.
    pub async fn delete_queue(&self, name: &str) -> Res<bool> {
        match ctl_async(&["-q", "delete_queue", name], Duration::from_secs(30)).await {
            Ok(_) => Ok(true),
            Err(e) if e.contains("not found") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Undoes every fault still in place: starts the app, clears the alarms, removes
    /// policies. Blocking; returns what could not be undone.
    pub fn restore(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let limit = Duration::from_secs(120);
        if self.app_stopped.load(Ordering::SeqCst) {
            match ctl(&["-q", "start_app"], limit)
                .and_then(|_| ctl(&["-q", "await_startup"], limit))
            {
                Ok(_) => self.app_stopped.store(false, Ordering::SeqCst),
                Err(e) => failures.push(format!("restore: {e}")),
            }
        }
        for alarm in [Alarm::Memory, Alarm::Disk] {
            if self.alarm_set(alarm).load(Ordering::SeqCst) {
                match ctl(&alarm.command(false), limit) {
                    Ok(_) => self.alarm_set(alarm).store(false, Ordering::SeqCst),
                    Err(e) => failures.push(format!("restore: {e}")),
                }
            }
        }
        let policies =
            std::mem::take(&mut *self.policies.lock().unwrap_or_else(|p| p.into_inner()));
        for name in policies {
            if let Err(e) = ctl(&["-q", "clear_policy", &name], limit) {
                failures.push(format!("restore: {e}"));
            }
        }
        failures
    }

    /// [`Broker::restore`] off the async runtime.
    pub async fn restore_async(self: &std::sync::Arc<Self>) -> Vec<String> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.restore())
            .await
            .unwrap_or_else(|e| vec![format!("restore task: {e}")])
    }
}

impl Drop for Broker {
    /// Last line of defence (a panic, an early return): the broker is never left broken.
    fn drop(&mut self) {
        for failure in self.restore() {
            eprintln!("fault-suite: {failure}");
        }
    }
}

async fn wait_for_alarm(on: bool) -> Res<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while alarm_active().await != on {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the memory alarm did not {} within 20 s",
                if on { "go off" } else { "clear" }
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// `name` as a regular expression matching exactly that name (for policies).
pub fn exact_pattern(name: &str) -> String {
    let mut pattern = String::from("^");
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' && c != '-' {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('$');
    pattern
}
