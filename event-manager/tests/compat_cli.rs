//! End-to-end tests of `event-manager compat` and `event-manager compat-dir`: output lines and
//! exit codes (0 sufficient, 1 insufficient, 2 unreadable input).
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "event-manager-compat-cli-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, content).expect("write scratch file");
        path
    }

    fn write_json(&self, name: &str, value: &Value) -> PathBuf {
        self.write(name, &value.to_string())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&Path]) -> (i32, String, String) {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_event-manager"))
        .args(args)
        .output()
        .expect("run event-manager");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn p(text: &str) -> &Path {
    Path::new(text)
}

fn order(version: &str, with_id: bool, with_note: bool) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    if with_id {
        properties.insert("id".into(), json!({"type": "string"}));
        required.push("id");
    }
    properties.insert("total".into(), json!({"type": "integer"}));
    required.push("total");
    if with_note {
        properties.insert("note".into(), json!({"type": ["string", "null"]}));
    }
    json!({
        "x-event-version": version,
        "type": "object",
        "properties": properties,
        "required": required
    })
}

#[test]
fn compat_sufficient_bump_exits_0() {
    let dir = Scratch::new("ok");
    let old = dir.write_json("old.json", &order("1.2.0", true, false));
    let new = dir.write_json("new.json", &order("1.3.0", true, true));
    let (code, stdout, stderr) = run(&[p("compat"), &old, &new]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "/properties/note: property added (optional) — compatible",
            "verdict: compatible change(s) under full mode; requires minor bump \
             (1.2.0 -> 1.3.0), got minor (1.2.0 -> 1.3.0): OK",
        ]
    );
}

#[test]
fn compat_insufficient_bump_exits_1() {
    let dir = Scratch::new("insufficient");
    let old = dir.write_json("old.json", &order("1.2.0", true, false));
    let new = dir.write_json("new.json", &order("1.3.0", false, false));
    let (code, stdout, _) = run(&[p("compat"), &old, &new]);
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "/properties/id: property removed (required) — breaking (forward)",
            "verdict: breaking change(s) under full mode; requires major bump \
             (1.2.0 -> 2.0.0 or a new routing key), got minor (1.2.0 -> 1.3.0): INSUFFICIENT",
        ]
    );
}

#[test]
fn compat_mode_changes_the_verdict() {
    let dir = Scratch::new("mode");
    let old = dir.write_json("old.json", &order("1.2.0", true, false));
    let new = dir.write_json("new.json", &order("1.3.0", false, false));
    let (code, stdout, _) = run(&[p("compat"), &old, &new, p("--mode"), p("backward")]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("under backward mode; requires minor bump"),
        "{stdout}"
    );
    let (code, _, _) = run(&[p("compat"), &old, &new, p("--mode"), p("forward")]);
    assert_eq!(code, 1);
}

#[test]
fn compat_same_version_with_a_change_exits_1() {
    let dir = Scratch::new("same");
    let old = dir.write_json("old.json", &order("1.2.0", true, false));
    let mut described = order("1.2.0", true, false);
    described["description"] = json!("An order.");
    let new = dir.write_json("new.json", &described);
    let (code, stdout, _) = run(&[p("compat"), &old, &new]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.ends_with(
            "verdict: annotation-only change(s); requires patch bump (1.2.0 -> 1.2.1), \
             got none (1.2.0 -> 1.2.0): INSUFFICIENT\n"
        ),
        "{stdout}"
    );
}

#[test]
fn compat_version_flags_override_the_files() {
    let dir = Scratch::new("override");
    let old = dir.write_json("old.json", &json!({"type": "string"}));
    let new = dir.write_json("new.json", &json!({"type": "integer"}));
    let (code, stdout, stderr) = run(&[
        p("compat"),
        &old,
        &new,
        p("--old-version"),
        p("1.0.0"),
        p("--new-version"),
        p("2.0.0"),
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("got major (1.0.0 -> 2.0.0): OK"),
        "{stdout}"
    );
}

#[test]
fn compat_unreadable_input_exits_2() {
    let dir = Scratch::new("unreadable");
    let good = dir.write_json("good.json", &order("1.0.0", true, false));
    let invalid = dir.write("invalid.json", "{ not json");
    let unversioned = dir.write_json("unversioned.json", &json!({"type": "object"}));
    let bad_version = dir.write_json("bad-version.json", &json!({"x-event-version": "one"}));
    let missing = dir.path("missing.json");

    let (code, stdout, stderr) = run(&[p("compat"), &good, &missing]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.contains("cannot read") && stderr.contains("missing.json"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&[p("compat"), &invalid, &good]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("invalid.json") && stderr.contains("not valid JSON"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&[p("compat"), &good, &unversioned]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unversioned.json") && stderr.contains("x-event-version"),
        "{stderr}"
    );
    assert!(stderr.contains("--new-version"), "{stderr}");

    let (code, _, stderr) = run(&[p("compat"), &bad_version, &good]);
    assert_eq!(code, 2);
    assert!(stderr.contains("\"one\""), "{stderr}");

    let (code, _, _) = run(&[p("compat"), &good, &good, p("--mode"), p("sideways")]);
    assert_eq!(code, 2);
    let (code, _, _) = run(&[p("compat"), &good, &good, p("--old-version"), p("1.x")]);
    assert_eq!(code, 2);
    let (code, _, _) = run(&[p("compat"), &good]);
    assert_eq!(code, 2);
}

#[test]
fn compat_json_that_is_not_a_schema_exits_2() {
    let dir = Scratch::new("not-a-schema");
    let good = dir.write_json("good.json", &order("1.0.0", true, false));
    let array = dir.write_json("array.json", &json!([{"type": "object"}]));
    let text = dir.write_json("text.json", &json!("{\"type\": \"object\"}"));
    let versions = [
        p("--old-version"),
        p("1.0.0"),
        p("--new-version"),
        p("1.1.0"),
    ];

    for (old, new, culprit) in [
        (&array, &good, "array.json"),
        (&good, &array, "array.json"),
        (&good, &text, "text.json"),
    ] {
        let mut args = vec![p("compat"), old.as_path(), new.as_path()];
        args.extend(versions);
        let (code, stdout, stderr) = run(&args);
        assert_eq!((code, stdout.as_str()), (2, ""), "{culprit}: {stderr}");
        assert!(
            stderr.contains(culprit) && stderr.contains("is not a JSON Schema"),
            "{stderr}"
        );
    }

    // Boolean schemas are schemas.
    let yes = dir.write_json("true.json", &json!(true));
    let mut args = vec![p("compat"), yes.as_path(), yes.as_path()];
    args.extend(versions);
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");

    dir.write_json("old/order.json", &order("1.0.0", true, false));
    dir.write_json("new/order.json", &json!([order("1.1.0", true, false)]));
    let (code, _, stderr) = run(&[p("compat-dir"), &dir.path("old"), &dir.path("new")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a JSON Schema"), "{stderr}");
}

#[test]
fn compat_internally_tagged_newtype_field_retyped_exits_1() {
    // schemars writes the newtype variant as `$ref` next to the tag: the sibling keywords must
    // not hide the target's fields.
    let schema = |version: &str, a: &str| {
        json!({
            "x-event-version": version,
            "oneOf": [{"$ref": "#/$defs/Inner", "type": "object",
                       "properties": {"kind": {"type": "string", "const": "Newtype"}},
                       "required": ["kind"]}],
            "$defs": {"Inner": {"type": "object", "properties": {"a": {"type": a}}, "required": ["a"]}}
        })
    };
    let dir = Scratch::new("newtype");
    let old = dir.write_json("old.json", &schema("1.0.0", "integer"));
    let new = dir.write_json("new.json", &schema("1.1.0", "string"));
    let (code, stdout, _) = run(&[p("compat"), &old, &new]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("/properties/a: type changed from integer to string"),
        "{stdout}"
    );
}

#[test]
fn help_exits_0() {
    let (code, stdout, _) = run(&[p("--help")]);
    assert_eq!(code, 0);
    assert!(stdout.contains("compat-dir"), "{stdout}");
}

#[test]
fn compat_dir_all_sufficient_exits_0() {
    let dir = Scratch::new("dir-ok");
    dir.write_json("old/order.json", &order("1.2.0", true, false));
    dir.write_json("new/order.json", &order("1.3.0", true, true));
    dir.write_json("new/payment.json", &order("1.0.0", true, false));
    // Not a contract: skipped even though it is not valid JSON.
    dir.write("old/asyncapi.json", "not json");
    dir.write("new/asyncapi.json", "not json either");
    dir.write("new/README.md", "ignored");
    let (code, stdout, stderr) = run(&[p("compat-dir"), &dir.path("old"), &dir.path("new")]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "order.json: verdict: compatible change(s) under full mode; requires minor bump \
             (1.2.0 -> 1.3.0), got minor (1.2.0 -> 1.3.0): OK",
            "payment.json: new contract (1.0.0): OK",
            "summary: 0 of 2 contract(s) insufficient under full mode: OK",
        ]
    );
}

#[test]
fn compat_dir_reports_insufficient_changes_and_removed_contracts() {
    let dir = Scratch::new("dir-bad");
    dir.write_json("old/order.json", &order("1.2.0", true, false));
    dir.write_json("new/order.json", &order("1.3.0", false, false));
    dir.write_json("old/refund.json", &order("1.0.0", true, false));
    let (code, stdout, _) = run(&[p("compat-dir"), &dir.path("old"), &dir.path("new")]);
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "order.json: verdict: breaking change(s) under full mode; requires major bump \
             (1.2.0 -> 2.0.0 or a new routing key), got minor (1.2.0 -> 1.3.0): INSUFFICIENT",
            "order.json: /properties/id: property removed (required) — breaking (forward); \
             requires major bump",
            "refund.json: contract removed (was 1.0.0): its consumers lose it; keep the file \
             until the contract is retired deliberately: INSUFFICIENT",
            "summary: 2 of 2 contract(s) insufficient under full mode: INSUFFICIENT",
        ]
    );

    let (code, stdout, _) = run(&[
        p("compat-dir"),
        &dir.path("old"),
        &dir.path("new"),
        p("--mode"),
        p("backward"),
    ]);
    assert_eq!(code, 1, "the removed contract still fails: {stdout}");
    assert!(stdout.contains("order.json: verdict: compatible change(s) under backward mode"));
}

#[test]
fn compat_dir_unreadable_input_exits_2() {
    let dir = Scratch::new("dir-unreadable");
    dir.write_json("old/order.json", &order("1.2.0", true, false));
    dir.write("new/order.json", "{");
    let (code, stdout, stderr) = run(&[p("compat-dir"), &dir.path("old"), &dir.path("new")]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.contains("order.json") && stderr.contains("not valid JSON"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&[p("compat-dir"), &dir.path("old"), &dir.path("nowhere")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot list directory"), "{stderr}");

    dir.write_json("new/order.json", &json!({"type": "object"}));
    let (code, _, stderr) = run(&[p("compat-dir"), &dir.path("old"), &dir.path("new")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("x-event-version"), "{stderr}");

    // A contract the gate cannot read is not skipped: a removed contract behind a dangling
    // link, or under a name that is not UTF-8, used to pass.
    dir.write_json("new/order.json", &order("1.2.0", true, false));
    std::os::unix::fs::symlink(dir.path("gone.json"), dir.path("old/refund.json")).unwrap();
    let (code, _, stderr) = run(&[p("compat-dir"), &dir.path("old"), &dir.path("new")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("refund.json"), "{stderr}");
    std::fs::remove_file(dir.path("old/refund.json")).unwrap();
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"old/r\xffefund.json");
    std::fs::write(
        dir.path("").join(odd),
        order("1.0.0", true, false).to_string(),
    )
    .unwrap();
    let (code, _, stderr) = run(&[p("compat-dir"), &dir.path("old"), &dir.path("new")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not UTF-8"), "{stderr}");
}

/// A report that cannot be written (a full disk) is a failure, not a success with nothing
/// written; a closed pipe (`| head`) is not.
#[test]
fn an_unwritable_stdout_is_a_failure() {
    let dir = Scratch::new("full");
    let old = dir.write_json("old.json", &order("1.2.0", true, false));
    let new = dir.write_json("new.json", &order("1.3.0", true, true));
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let output = Command::new(env!("CARGO_BIN_EXE_event-manager"))
        .args([p("compat"), &old, &new])
        .stdout(full)
        .output()
        .expect("run event-manager");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("writing the output failed"), "{stderr}");
}
