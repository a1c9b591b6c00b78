//! `calcapp`: computations that take a while, done in steps and
//! checkpointed in cookies, so that a pool user that fails over gets the
//! same result from the next PE.
//!
//! A request holds the number of steps (at most 10^9). Each step mixes the
//! step number into a 64-bit value; every [`CHUNK`] steps the PE pauses
//! for [`PAUSE`] (the "work") and sends a checkpoint cookie. The answer is
//! `result STEPS VALUE` with the value in hex.
//!
//! After a failover the new PE first gets the last checkpoint (cookie echo)
//! and resumes the computation from it; the pool user then resends the
//! request it has no answer for, which the PE recognises as the one it is
//! already computing (or has finished: then it answers again).

use super::checkpoint::{Checkpoint, restore};
use super::request_text;
use rserpool::CookieSigner;
use rserpool::pe::{Received, Session};
use std::collections::VecDeque;
use std::time::Duration;

const NAME: &str = "calcapp";
/// Steps between checkpoints.
pub const CHUNK: u64 = 10_000;
/// The pause per chunk that makes a computation take time.
pub const PAUSE: Duration = Duration::from_millis(20);
const MAX_STEPS: u64 = 1_000_000_000;

/// One step of the computation.
pub fn step(value: u64, i: u64) -> u64 {
    (value ^ i)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

/// A computation and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    request: String,
    steps: u64,
    done: u64,
    value: u64,
}

impl Job {
    fn new(request: String) -> Self {
        let steps = request.parse::<u64>().unwrap_or(0).min(MAX_STEPS);
        Self {
            request,
            steps,
            done: 0,
            value: 0,
        }
    }

    fn finished(&self) -> bool {
        self.done >= self.steps
    }

    fn answer(&self) -> String {
        if self.steps == 0 {
            return format!("error: `{}` is not a number of steps", self.request);
        }
        format!("result {} {:#018x}", self.steps, self.value)
    }

    fn checkpoint(&self, signer: &CookieSigner) -> bytes::Bytes {
        Checkpoint::new(NAME)
            .set("request", &self.request)
            .set("steps", self.steps)
            .set("done", self.done)
            .set("value", self.value)
            .seal(signer)
    }

    fn restore(c: &Checkpoint) -> Option<Self> {
        Some(Self {
            request: c.get("request")?.to_string(),
            steps: c.number("steps")?.min(MAX_STEPS),
            done: c.number("done")?,
            value: c.number("value")?,
        })
    }
}

pub async fn serve(mut session: Session, signer: &CookieSigner) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    // After a cookie echo: the restored job, whose request the pool user
    // sends again as the first message.
    let mut resumed: Option<String> = None;
    let mut ppid = rserpool::pe::DEFAULT_PPID;
    loop {
        let working = queue.front().is_some_and(|j| !j.finished());
        let received = if working {
            tokio::select! {
                biased;
                r = session.recv() => Some(r),
                () = tokio::time::sleep(PAUSE) => None,
            }
        } else {
            Some(session.recv().await)
        };
        match received {
            Some(None) => return,
            Some(Some(Received::CookieEcho(cookie))) => {
                if let Some(job) = restore(&cookie, signer, NAME)
                    .as_ref()
                    .and_then(Job::restore)
                {
                    tracing::info!(
                        "{} resumes `{}` at step {} of {}",
                        session.id(),
                        job.request,
                        job.done,
                        job.steps
                    );
                    resumed = Some(job.request.clone());
                    queue.push_front(job);
                }
            }
            Some(Some(Received::Data { ppid: p, data })) => {
                ppid = p;
                let request = request_text(&data);
                if resumed.take().as_ref() == Some(&request) {
                    // The resend of the job restored from the cookie.
                    continue;
                }
                queue.push_back(Job::new(request));
            }
            Some(Some(Received::BusinessCard { .. })) => {}
            None => {
                // A chunk of work on the current job.
                if let Some(job) = queue.front_mut() {
                    let end = (job.done + CHUNK).min(job.steps);
                    for i in job.done..end {
                        job.value = step(job.value, i);
                    }
                    job.done = end;
                    if session.set_cookie(job.checkpoint(signer)).await.is_err() {
                        return;
                    }
                }
            }
        }
        // Answer what is finished, in order.
        while queue.front().is_some_and(Job::finished) {
            if let Some(job) = queue.pop_front() {
                if session.send_with(ppid, job.answer(), false).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The answer an undisturbed computation of `steps` steps gives.
#[cfg(test)]
pub fn expected(steps: u64) -> String {
    let value = (0..steps).fold(0, step);
    format!("result {steps} {value:#018x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_resumed_from_its_checkpoint_ends_where_an_undisturbed_one_does() {
        let signer = CookieSigner::new(b"k");
        let mut job = Job::new("25000".into());
        for i in 0..CHUNK {
            job.value = step(job.value, i);
        }
        job.done = CHUNK;
        let cookie = job.checkpoint(&signer);
        let mut resumed = Job::restore(&Checkpoint::open(&cookie, &signer, NAME).unwrap()).unwrap();
        for i in resumed.done..resumed.steps {
            resumed.value = step(resumed.value, i);
        }
        resumed.done = resumed.steps;
        assert_eq!(resumed.answer(), expected(25_000));
    }

    #[test]
    fn a_cookie_of_another_key_or_service_is_refused() {
        let job = Job::new("5".into());
        let cookie = job.checkpoint(&CookieSigner::new(b"other"));
        assert!(Checkpoint::open(&cookie, &CookieSigner::new(b"k"), NAME).is_err());
        let cookie = Checkpoint::new("pingpong").seal(&CookieSigner::new(b"k"));
        assert!(Checkpoint::open(&cookie, &CookieSigner::new(b"k"), NAME).is_err());
    }
}
