//! Example services run as child processes: the binaries next to the suite's own executable
//! (`target/<profile>/examples/`), with their output in files and a kill on drop.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::broker;
use crate::report::{Ctx, Res};
use crate::scope::Scope;

/// A running example service.
pub struct Child {
    process: std::process::Child,
    pub handled_log: PathBuf,
    output: PathBuf,
}

/// The directory of the example binaries: the suite's own.
fn examples_dir() -> Res<PathBuf> {
    let exe = std::env::current_exe().ctx("locating the suite's executable")?;
    exe.parent()
        .map(PathBuf::from)
        .ok_or_else(|| "the suite's executable has no directory".into())
}

impl Child {
    /// Starts consuming service `binary` (e.g. `billing_service`) with `args`, its broker and
    /// namespace from `scope`, [`crate::scope::CONFIRM_TIMEOUT`] as confirm timeout, extra
    /// `env`, and `--handled-log` pointing at its own file.
    pub fn consumer(
        scope: &Scope,
        label: &str,
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Res<Self> {
        Self::spawn(scope, label, binary, args, env, true)
    }

    /// Starts `binary` (e.g. `order_service`) like [`Child::consumer`], without a handled log.
    pub fn publisher(scope: &Scope, label: &str, binary: &str, args: &[&str]) -> Res<Self> {
        Self::publisher_with(scope, label, binary, args, &[])
    }

    /// [`Child::publisher`] with extra `env`.
    pub fn publisher_with(
        scope: &Scope,
        label: &str,
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Res<Self> {
        Self::spawn(scope, label, binary, args, env, false)
    }

    fn spawn(
        scope: &Scope,
        label: &str,
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: bool,
    ) -> Res<Self> {
        let path = examples_dir()?.join(binary);
        if !path.exists() {
            return Err(format!(
                "{} is missing: build the examples first (cargo build --examples)",
                path.display()
            ));
        }
        let handled_log = scope.dir.join(format!("{}-{label}.handled", scope.token));
        let output = scope.dir.join(format!("{}-{label}.out", scope.token));
        let _ = std::fs::remove_file(&handled_log);
        let out = std::fs::File::create(&output).ctx("creating the output file")?;
        let err = out.try_clone().ctx("creating the output file")?;
        let timeout = format!("{}s", crate::scope::CONFIRM_TIMEOUT.as_secs());
        let mut command = Command::new(&path);
        command.args(args);
        if log {
            command.arg("--handled-log").arg(&handled_log);
        }
        command
            .env("AMQP_URL", &scope.url)
            .env("EVENT_MANAGER_NAMESPACE", &scope.token)
            .env("AMQP_CONFIRM_TIMEOUT", timeout)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (name, value) in env {
            command.env(name, value);
        }
        let process = command
            .spawn()
            .ctx(&format!("starting {}", path.display()))?;
        Ok(Self {
            process,
            handled_log,
            output,
        })
    }

    /// Sends `SIG<name>` (`TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        broker::signal(self.process.id(), name);
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().ok().flatten()
    }

    /// Waits at most `limit` for the process to exit.
    pub async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The order ids it logged as handled.
    pub fn handled(&self) -> HashSet<String> {
        std::fs::read_to_string(&self.handled_log)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Everything it wrote to standard output and error.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// The last lines of its output, on one line, for a report.
    pub fn tail(&self) -> String {
        let text = self.output();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(4);
        lines[start..].join(" | ")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}
