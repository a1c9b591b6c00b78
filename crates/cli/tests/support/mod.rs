//! Running `rserpool` processes in tests: children whose output is
//! collected line by line, all killed when the test ends (pass or fail),
//! with their logs printed on failure or with RSERPOOL_TEST_LOGS=1.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rserpool");

type Lines = Arc<Mutex<Vec<String>>>;

/// A child process whose output is collected line by line.
pub struct Proc {
    pub name: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    stderr: Lines,
}

fn collect(r: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let l = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

impl Proc {
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The last status line (registrars).
    pub fn status(&self) -> String {
        self.stdout()
            .into_iter()
            .rev()
            .find(|l| l.starts_with("status "))
            .unwrap_or_default()
    }

    /// Writes a line to the child's standard input.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().unwrap();
    }

    /// Closes the child's standard input (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this test owns.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill {} failed", self.name);
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not exit within {within:?}", self.name);
    }
}

/// Owns every child; kills them all when dropped, and on failure prints
/// what each said.
#[derive(Default)]
pub struct Cluster {
    pub procs: Vec<Proc>,
    /// Run every child through this command first (`ip netns exec NS`).
    pub prefix: Vec<String>,
}

impl Cluster {
    pub fn spawn(&mut self, name: &str, args: &[String]) -> usize {
        self.spawn_in(name, &self.prefix.clone(), args, false)
    }

    /// Spawns with standard input open for [`Proc::send_line`].
    pub fn spawn_with_input(&mut self, name: &str, args: &[String]) -> usize {
        self.spawn_in(name, &self.prefix.clone(), args, true)
    }

    /// Spawns through `prefix` (a command that runs the binary, such as
    /// `ip netns exec NS`).
    pub fn spawn_in(
        &mut self,
        name: &str,
        prefix: &[String],
        args: &[String],
        input: bool,
    ) -> usize {
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(if input { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rserpool");
        let stdin = child.stdin.take();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            stdin,
            stdout,
            stderr,
        });
        self.procs.len() - 1
    }

    /// Polls `cond` every 20 ms for at most `within`; the time it took.
    pub fn wait_until(
        &self,
        within: Duration,
        what: &str,
        cond: impl Fn(&Self) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if cond(self) {
                return start.elapsed();
            }
            if start.elapsed() > within {
                panic!("timed out after {within:?} waiting until {what}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if thread::panicking() || std::env::var_os("RSERPOOL_TEST_LOGS").is_some() {
            for p in &self.procs {
                eprintln!("----- {} stdout (last 10) -----", p.name);
                for l in p.stdout().iter().rev().take(10).rev() {
                    eprintln!("{l}");
                }
                eprintln!("----- {} stderr -----", p.name);
                for l in p.stderr() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// A /24 of loopback of this process's own, so that concurrent runs are
/// unlikely to collide; `test` (0..8) tells the tests of one binary apart.
pub fn loopback_net(test: u32) -> String {
    assert!(test < 8);
    let pid = std::process::id();
    format!("127.{}.{}", 100 + pid % 100, (pid / 100) % 30 * 8 + test)
}

/// Registrars 1 (ENRP at .2) and 2 (ENRP at .4), peered; PEs at .5 and .6
/// registered with registrar 1, at .7 with registrar 2. Returns the
/// indices of the registrars and of the PEs.
pub fn peered_scope(c: &mut Cluster, net: &str) -> ([usize; 2], [usize; 3]) {
    let ip = |host: u8| format!("{net}.{host}");
    let registrar = |id: u32, asap: u8, enrp: u8, peer: u8| {
        args(&format!(
            "registrar --transport udp --id {id} --addr {} --enrp-addr {} --peer {} \
             --enrp-allow {net}.0/28 --status-interval 200ms --mentor-discovery-timeout 1s",
            ip(asap),
            ip(enrp),
            ip(peer)
        ))
    };
    let r1 = c.spawn("registrar 1", &registrar(1, 1, 2, 4));
    let r2 = c.spawn("registrar 2", &registrar(2, 3, 4, 2));
    c.wait_until(Duration::from_secs(10), "the registrars are peered", |c| {
        [r1, r2].iter().all(|&r| {
            let s = c.procs[r].status();
            s.contains("ready=yes") && s.contains("peers=1 ")
        })
    });
    let pes = [(5, 1), (6, 1), (7, 3)].map(|(host, registrar)| {
        c.spawn(
            &format!("pe {host}"),
            &args(&format!(
                "pe --transport udp --pool echo --registrar {} --local {} --service echo",
                ip(registrar),
                ip(host)
            )),
        )
    });
    c.wait_until(Duration::from_secs(15), "both hold the three PEs", |c| {
        [r1, r2]
            .iter()
            .all(|&r| c.procs[r].status().contains("pes=3 "))
    });
    ([r1, r2], pes)
}
