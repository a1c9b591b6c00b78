//! The README's commands, run as a reader would run them, so that a README
//! whose commands rot fails CI.
//!
//! Every line of its `sh` blocks, and every inline `rserpool ...` example
//! without a placeholder (an upper-case word such as FILE, or `...`), is
//! collected and run: the quick start's daemons together in a network
//! namespace of their own (so that the well-known ports are free), a line
//! typed into the pool user must come back, and the one-shot commands must
//! exit 0 (those that need the running scope run inside it). `cargo build
//! --release` and `./scripts/test.sh` are what CI itself runs, so they are
//! only checked to be there.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{BIN, Cluster, args};

fn readme() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(p).expect("README.md")
}

/// Lines of ```sh blocks (comments stripped) and inline `rserpool ...`
/// examples, in order, without duplicates.
fn commands(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |c: &str| {
        let c = c.trim().to_string();
        if !c.is_empty() && !out.contains(&c) {
            out.push(c);
        }
    };
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if in_sh {
            push(line.split(" #").next().unwrap_or(""));
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            let s = span.trim();
            let is_example = i % 2 == 1
                && (s.starts_with("rserpool ") || s.starts_with("./target/release/rserpool "));
            if is_example && !has_placeholder(s) {
                push(s);
            }
        }
    }
    out
}

fn has_placeholder(s: &str) -> bool {
    s.contains("...")
        || s.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_uppercase()))
}

/// The words of an `rserpool` command after the program name, with `~`
/// in redirections and arguments put under `home`; `None` for other programs.
fn rserpool_args(c: &str, home: &Path) -> Option<(Vec<String>, Option<PathBuf>)> {
    let rest = c
        .strip_prefix("./target/release/rserpool")
        .or_else(|| c.strip_prefix("rserpool"))?;
    let (argv, redirect) = match rest.split_once('>') {
        Some((a, to)) => (a, Some(to.trim())),
        None => (rest, None),
    };
    let home_of = |w: &str| match w.strip_prefix("~/") {
        Some(p) => home.join(p).to_string_lossy().into_owned(),
        None => w.to_string(),
    };
    let argv = argv.split_whitespace().map(home_of).collect();
    Some((argv, redirect.map(|r| PathBuf::from(home_of(r)))))
}

fn ip(a: &str) -> bool {
    Command::new("ip")
        .args(args(a))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A network namespace with loopback up, removed when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Option<Self> {
        let name = format!("rsprd{}", std::process::id() % 100_000);
        ip(&format!("netns del {name}"));
        if !ip(&format!("netns add {name}")) {
            return None;
        }
        let ns = Netns(name);
        assert!(ip(&format!("-n {} link set lo up", ns.0)));
        Some(ns)
    }

    fn prefix(&self) -> Vec<String> {
        args(&format!("ip netns exec {}", self.0))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&format!("netns del {}", self.0));
    }
}

/// Runs a one-shot command (through `prefix`) and requires exit 0.
fn run_once(prefix: &[String], argv: &[String], redirect: Option<&Path>, home: &Path) {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    if let Some(to) = redirect {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        cmd.stdout(std::fs::File::create(to).unwrap());
    }
    // README commands are run from the repository root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = cmd
        .args(argv)
        .current_dir(root)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("run rserpool");
    assert!(
        out.status.success(),
        "README command `rserpool {}` failed ({}):\n{}{}",
        argv.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(to) = redirect {
        assert!(
            std::fs::metadata(to).is_ok_and(|m| m.len() > 0),
            "`rserpool {}` wrote nothing to {}",
            argv.join(" "),
            to.display()
        );
    }
}

fn is_daemon(argv: &[String]) -> bool {
    match argv.first().map(String::as_str) {
        Some("registrar" | "pe") => true,
        Some("pu") => !argv.iter().any(|a| a == "--resolve"),
        _ => false,
    }
}

/// Needs the quick start's scope to be running.
fn needs_scope(argv: &[String]) -> bool {
    matches!(
        argv.first().map(String::as_str),
        Some("pu" | "hsdump" | "monitor")
    )
}

#[test]
fn every_readme_command_runs() {
    let text = readme();
    let all = commands(&text);
    assert!(all.len() >= 10, "README commands not found: {all:?}");
    let home = tempfile::tempdir().unwrap();
    let mut daemons = Vec::new();
    let mut in_scope = Vec::new();
    let mut checked = Vec::new();
    for c in &all {
        match rserpool_args(c, home.path()) {
            Some((argv, _)) if is_daemon(&argv) => daemons.push(argv),
            Some((argv, redirect)) if needs_scope(&argv) => in_scope.push((argv, redirect)),
            Some((argv, redirect)) => {
                run_once(&[], &argv, redirect.as_deref(), home.path());
                checked.push(c.clone());
            }
            None if c == "cargo build --release" || c == "./scripts/test.sh" => {
                // What CI runs; the binary under test is its debug build.
                let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
                assert!(root.join("scripts/test.sh").exists());
                checked.push(c.clone());
            }
            None if c.starts_with("cargo install --path crates/cli") => {
                // The same install, into a scratch root, reusing this
                // build's artifacts.
                let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
                let target = Path::new(BIN).parent().unwrap().parent().unwrap();
                let out = Command::new(env!("CARGO"))
                    .args(["install", "--path", "crates/cli", "--debug", "--offline"])
                    .args(["--locked", "--root"])
                    .arg(home.path().join("cargo"))
                    .current_dir(&root)
                    .env("CARGO_TARGET_DIR", target)
                    .output()
                    .expect("run cargo install");
                assert!(
                    out.status.success(),
                    "`{c}` failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(home.path().join("cargo/bin/rserpool").exists());
                checked.push(c.clone());
            }
            None => panic!("README command `{c}` is not known to this test: run it here"),
        }
    }

    // The quick start: its daemons in the order given, in a namespace.
    let Some(ns) = Netns::new() else {
        eprintln!("SKIPPED the quick start: cannot create a network namespace here");
        return;
    };
    assert!(
        daemons.iter().any(|d| d[0] == "registrar") && daemons.iter().any(|d| d[0] == "pu"),
        "the quick start has a registrar and a terminal: {daemons:?}"
    );
    let mut c = Cluster::default();
    c.prefix = ns.prefix();
    let mut terminal = None;
    for argv in &daemons {
        let name = argv.join(" ");
        if argv[0] == "pu" {
            terminal = Some(c.spawn_with_input(&name, argv));
            continue;
        }
        let i = c.spawn(&name, argv);
        let what = if argv[0] == "registrar" {
            "ready: serving"
        } else {
            " registered"
        };
        c.wait_until(Duration::from_secs(15), &format!("`{name}` is up"), |c| {
            c.procs[i].stderr().iter().any(|l| l.contains(what))
        });
    }
    for (argv, redirect) in &in_scope {
        run_once(&ns.prefix(), argv, redirect.as_deref(), home.path());
    }
    let pu = terminal.expect("a terminal");
    c.procs[pu].send_line("hello");
    c.wait_until(Duration::from_secs(15), "the line comes back", |c| {
        c.procs[pu].stdout().iter().any(|l| l == "hello")
    });
    c.procs[pu].close_stdin();
    assert_eq!(c.procs[pu].wait_exit(Duration::from_secs(15)), Some(0));
}
