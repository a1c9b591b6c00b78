//! `rserpool sim run FILE.toml` run as a process: every scenario file of
//! scenarios/ runs (shortened with --duration) and prints a summary; a file
//! with an unknown key or a bad value fails with one line and exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rserpool"))
        .arg("sim")
        .arg("run")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run rserpool")
}

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_scenario_file_runs_and_prints_a_summary() {
    let files = scenarios();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        // Long enough for the first outage (at 60 s) to start.
        let o = run(&[f.to_str().expect("a UTF-8 path"), "--duration", "90s"]);
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{}: {:?}\n{err}", f.display(), o.status);
        let summary = out
            .split("\nsummary:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{}: no summary in\n{out}", f.display()));
        assert!(
            summary.contains("  final (90 s): "),
            "{}: {summary}",
            f.display()
        );
        assert!(
            summary.contains("  PEs lost: "),
            "{}: {summary}",
            f.display()
        );
        assert!(
            summary.contains("  re-homing: "),
            "{}: {summary}",
            f.display()
        );
    }
}

/// The CSV rows, each cut after `columns` fields.
fn columns(csv: &[u8], columns: usize) -> Vec<String> {
    String::from_utf8_lossy(csv)
        .lines()
        .map(|l| l.split(',').take(columns).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn the_draft_scenario_matches_sim_takeover() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/draft-5x1000.toml");
    let a = run(&[file.to_str().unwrap(), "--duration", "120s", "--csv"]);
    let b = Command::new(env!("CARGO_BIN_EXE_rserpool"))
        .args(["sim", "takeover", "--duration", "120s", "--csv"])
        .output()
        .expect("run rserpool");
    assert!(a.status.success() && b.status.success());
    assert!(!a.stdout.is_empty());
    // `sim run` adds the registrars' message rates after the columns of
    // `sim takeover` (5 registrars: 12 columns).
    assert_eq!(columns(&a.stdout, 12), columns(&b.stdout, usize::MAX));
}

#[test]
fn the_csv_has_each_registrars_messages_per_second() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/draft-5x1000.toml");
    let o = run(&[file.to_str().unwrap(), "--duration", "90s", "--csv"]);
    assert!(o.status.success());
    // Not a terminal: no progress bar, nothing at all on stderr.
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8(o.stdout).expect("UTF-8");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let rates: Vec<String> = (0..5).map(|i| format!("msgs_per_s_pr{i}")).collect();
    assert_eq!(
        rows[0][12..],
        rates.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(rows[1][12..], ["-"; 5], "no interval before the first row");
    let rate = |row: &[&str], i: usize| -> f64 { row[12 + i].parse().expect("a number") };
    // At 50 s every registrar serves PEs; from 60 s pr3 and pr4 are cut
    // off and hear nothing (what they still try to send stays).
    let at_50 = &rows[6];
    assert_eq!(at_50[0], "50.0");
    assert!((0..5).all(|i| rate(at_50, i) > 1.0), "{at_50:?}");
    let at_80 = &rows[9];
    assert_eq!((at_80[0], at_80[1]), ("80.0", "outage"));
    let survivor = rate(at_80, 0);
    assert!(survivor > 10.0, "{at_80:?}");
    assert!(
        rate(at_80, 3) < survivor / 10.0 && rate(at_80, 4) < survivor / 10.0,
        "{at_80:?}"
    );
}

/// Runs a file with `text`; returns the exit code and stderr.
fn bad(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write the file");
    let o = run(&[path.to_str().unwrap()]);
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8(o.stderr).expect("UTF-8");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("error: {}: ", path.display())),
        "{err}"
    );
    (o.status.code(), err)
}

#[test]
fn an_unknown_key_fails_naming_it() {
    let (code, err) = bad("seed = 1\n[pes]\ncount = 10\nt5 = \"30s\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("`t5`"), "{err}");
    let (code, err) = bad(
        "[[events]]\nat = \"60s\"\nkind = \"cut\"\nregistrars = [1]\nfor = \"10s\"\nperiod = \"1s\"\n",
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("`period`"), "{err}");
}

#[test]
fn bad_values_fail_with_one_line() {
    let (code, err) = bad("policy = \"sometimes\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("sometimes"), "{err}");
    let (code, err) = bad(
        "[[events]]\nat = \"60s\"\nkind = \"cut\"\nregistrars = [0, 1, 2, 3, 4]\nfor = \"10s\"\n",
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("events[0].registrars"), "{err}");
    let (code, err) = bad("duration = \"forever\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("duration") || err.contains("forever"), "{err}");
}

#[test]
fn per_registrar_lists_must_have_one_value_per_registrar() {
    let (code, err) = bad("[registrars]\ncount = 5\ncapacities = [2, 1, 1]\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("registrars.capacities has 3 values for 5 registrars"),
        "{err}"
    );
    let (code, err) = bad("[registrars]\ncount = 2\npolicies = [\"xor\"]\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("registrars.policies has 1 values for 2 registrars"),
        "{err}"
    );
    let (code, err) = bad("[registrars]\ncount = 2\ncapacities = [1, 0]\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("at least 1"), "{err}");
    let (code, err) = bad("[balance]\nrate = 0\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("balance.rate"), "{err}");
    let (code, err) = bad("[balance]\nsettle = \"10s\"\nflap = 1\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("`flap`"), "{err}");
}

#[test]
fn the_unequal_capacities_scenario_gives_the_big_registrar_its_share() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/unequal-capacities.toml");
    let o = run(&[file.to_str().unwrap(), "--duration", "300s"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "capacities per registrar: 3 1 1 1 1 (fair shares 428.6 142.9 142.9 142.9 142.9)"
        ),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("  final count over fair share per registrar: "))
        .unwrap_or_else(|| panic!("no fair share line in\n{out}"));
    let ratios: Vec<f64> = line
        .rsplit(": ")
        .next()
        .unwrap()
        .split(' ')
        .map(|r| r.parse().expect("a number"))
        .collect();
    assert_eq!(ratios.len(), 5);
    assert!(ratios.iter().all(|r| (0.85..=1.1).contains(r)), "{line}");
}
