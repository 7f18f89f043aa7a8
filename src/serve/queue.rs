//! The one queue between the HTTP side and the encoder. Each accepted request is a job
//! of documents already tokenized; the queue is bounded in encoder tokens, so that its
//! memory is bounded under any load. One inference thread drains it: whenever the
//! encoder is free it takes every waiting job, oldest first, up to a chunk budget, and
//! runs them as one chunk, so concurrent requests share encoder batches. Nothing waits
//! for a batch to fill: an idle server starts on a single short document at once.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::infer::ReadyDocument;
use crate::output::record::Record;

/// What a job's requester hears back: its records in order, or why the chunk failed.
pub type Reply = Result<Vec<Record>, String>;

pub struct Job {
    pub documents: Vec<ReadyDocument>,
    /// Encoder tokens of all its documents.
    pub tokens: usize,
    pub reply: oneshot::Sender<Reply>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds too many tokens now: try again later.
    Full { queued_tokens: usize },
    /// The job alone is larger than the whole queue may hold.
    TooLarge { max_tokens: usize },
    /// The server is shutting down.
    Closed,
}

/// Documents and tokens waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub documents: usize,
    pub tokens: usize,
}

pub struct Queue {
    state: Mutex<State>,
    changed: Condvar,
    max_tokens: usize,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    depth: Depth,
    closed: bool,
}

impl Queue {
    pub fn new(max_tokens: usize) -> Self {
        Self { state: Mutex::new(State::default()), changed: Condvar::new(), max_tokens }
    }

    pub fn push(&self, job: Job) -> Result<(), Refused> {
        if job.tokens > self.max_tokens {
            return Err(Refused::TooLarge { max_tokens: self.max_tokens });
        }
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.depth.tokens + job.tokens > self.max_tokens {
            return Err(Refused::Full { queued_tokens: state.depth.tokens });
        }
        state.depth.tokens += job.tokens;
        state.depth.documents += job.documents.len();
        state.jobs.push_back(job);
        self.changed.notify_one();
        Ok(())
    }

    /// Waits for work and takes the oldest jobs up to `budget_tokens` (at least one job).
    /// Jobs whose requester has gone (disconnected, or past its deadline) are dropped
    /// unprocessed and counted in the second value. `None` once closed and empty.
    pub fn take(&self, budget_tokens: usize) -> Option<(Vec<Job>, usize)> {
        let mut state = self.lock();
        loop {
            let mut taken = Vec::new();
            let (mut tokens, mut abandoned) = (0, 0);
            while let Some(job) = state.jobs.front() {
                if !taken.is_empty() && tokens + job.tokens > budget_tokens {
                    break;
                }
                let job = state.jobs.pop_front().expect("a front job");
                state.depth.tokens -= job.tokens;
                state.depth.documents -= job.documents.len();
                if job.reply.is_closed() {
                    abandoned += 1;
                    continue;
                }
                tokens += job.tokens;
                taken.push(job);
            }
            if !taken.is_empty() || abandoned > 0 {
                return Some((taken, abandoned));
            }
            if state.closed {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more jobs are accepted; those queued are still handed out.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub fn depth(&self) -> Depth {
        self.lock().depth
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tokens: usize) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, receiver) = oneshot::channel();
        (Job { documents: Vec::new(), tokens, reply }, receiver)
    }

    #[test]
    fn bounded_in_tokens() {
        let queue = Queue::new(100);
        let (a, _ra) = job(60);
        queue.push(a).unwrap();
        let (b, _rb) = job(50);
        assert_eq!(queue.push(b).unwrap_err(), Refused::Full { queued_tokens: 60 });
        let (c, _rc) = job(101);
        assert_eq!(queue.push(c).unwrap_err(), Refused::TooLarge { max_tokens: 100 });
        let (d, _rd) = job(40);
        queue.push(d).unwrap();
        assert_eq!(queue.depth().tokens, 100);
    }

    #[test]
    fn takes_oldest_jobs_within_the_budget_and_skips_abandoned_ones() {
        let queue = Queue::new(1000);
        let (a, _ra) = job(30);
        let (b, rb) = job(30);
        let (c, _rc) = job(30);
        let (d, _rd) = job(30);
        for j in [a, b, c, d] {
            queue.push(j).unwrap();
        }
        drop(rb);
        let (taken, abandoned) = queue.take(70).unwrap();
        assert_eq!((taken.len(), abandoned), (2, 1), "a and c; b's requester left");
        let (taken, _) = queue.take(10).unwrap();
        assert_eq!(taken.len(), 1, "one job even above the budget");
        assert_eq!(queue.depth(), Depth::default());
        queue.close();
        assert!(queue.take(10).is_none());
        let (e, _re) = job(1);
        assert_eq!(queue.push(e).unwrap_err(), Refused::Closed);
    }
}
