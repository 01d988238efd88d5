//! A fixed set of OS threads that run the CPU-heavy work (decode, model, thumbnail), fed by a
//! bounded queue. The async reactor threads never run a model; when the queue is full, a request
//! is refused at once ([`PoolError::Busy`], answered 503 with `Retry-After`) instead of waiting
//! without bound.
//!
//! A job that starts alone may spread its model runs over every core (tract's process-wide
//! executor); one that starts while others are admitted runs on its worker thread only. Under
//! load every core then counts its own photo, with no work split, handed over and waited for,
//! and no idle pool thread spinning while the other photo's threads want its core.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use prometheus::IntGauge;
use tokio::sync::oneshot;
use tract_linalg::multithread::{Executor, multithread_tract_scope};

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("all {workers} inference workers are busy and {queued} photos are already waiting")]
    Busy { workers: usize, queued: usize },
    #[error("the inference pool has stopped")]
    Stopped,
    #[error("the inference job panicked")]
    Panicked,
}

/// Gauges the pool keeps current; exported on `/metrics`, and the signal to autoscale on.
#[derive(Clone)]
pub struct PoolGauges {
    /// Jobs accepted but not yet started.
    pub waiting: IntGauge,
    /// Jobs running now.
    pub running: IntGauge,
}

pub struct InferencePool {
    sender: Mutex<Option<SyncSender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    worker_count: usize,
    queue_capacity: usize,
    /// Jobs accepted and not finished (waiting or running). Admission is decided on this count,
    /// not on the channel's free slots: a worker that has not yet taken its job off the channel
    /// would otherwise make a running job look like a waiting one.
    admitted: Arc<AtomicUsize>,
    gauges: PoolGauges,
}

impl InferencePool {
    /// Starts `workers` threads sharing a queue that holds at most `queue_capacity` waiting jobs.
    pub fn start(workers: usize, queue_capacity: usize, gauges: PoolGauges) -> Self {
        let workers = workers.max(1);
        // Room for every admitted job, so that a send after admission never finds it full.
        let (sender, receiver) = sync_channel::<Job>(workers + queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let handles = (0..workers)
            .map(|i| {
                let receiver = Arc::clone(&receiver);
                let gauges = gauges.clone();
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || worker_loop(&receiver, &gauges))
                    .expect("spawning an inference thread")
            })
            .collect();
        Self {
            sender: Mutex::new(Some(sender)),
            workers: Mutex::new(handles),
            worker_count: workers,
            queue_capacity,
            admitted: Arc::new(AtomicUsize::new(0)),
            gauges,
        }
    }

    pub fn worker_count(&self) -> usize {
        self.worker_count
    }

    /// Runs `job` on a worker and waits (asynchronously) for its result.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let gauges = self.gauges.clone();
        let admitted = Arc::clone(&self.admitted);
        let job: Job = Box::new(move || {
            gauges.waiting.dec();
            gauges.running.inc();
            let alone = admitted.load(Ordering::Acquire) == 1;
            let job = std::panic::AssertUnwindSafe(job);
            let outcome = std::panic::catch_unwind(move || {
                if alone {
                    job()
                } else {
                    multithread_tract_scope(Executor::SingleThread, job)
                }
            });
            gauges.running.dec();
            admitted.fetch_sub(1, Ordering::AcqRel);
            let _ = done.send(outcome);
        });
        {
            let sender = self.sender.lock().expect("pool sender lock");
            let sender = sender.as_ref().ok_or(PoolError::Stopped)?;
            let limit = self.worker_count + self.queue_capacity;
            if self
                .admitted
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                })
                .is_err()
            {
                return Err(PoolError::Busy {
                    workers: self.worker_count,
                    queued: self.queue_capacity,
                });
            }
            self.gauges.waiting.inc();
            match sender.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    // Full cannot happen (the channel holds every admitted job); Disconnected
                    // means the pool is stopping.
                    self.gauges.waiting.dec();
                    self.admitted.fetch_sub(1, Ordering::AcqRel);
                    return Err(PoolError::Stopped);
                }
            }
        }
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_panic)) => Err(PoolError::Panicked),
            Err(_) => Err(PoolError::Stopped),
        }
    }

    /// Stops taking jobs, lets the queued ones finish, and joins the threads.
    pub fn shutdown(&self) {
        self.sender.lock().expect("pool sender lock").take();
        let handles = std::mem::take(&mut *self.workers.lock().expect("pool workers lock"));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

impl Drop for InferencePool {
    fn drop(&mut self) {
        self.sender.lock().map(|mut s| s.take()).ok();
    }
}

fn worker_loop(receiver: &Mutex<Receiver<Job>>, _gauges: &PoolGauges) {
    loop {
        // The lock is held only while waiting for the next job, not while running it.
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // the sender is gone: the pool is shutting down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn gauges() -> PoolGauges {
        PoolGauges {
            waiting: IntGauge::new("w", "w").unwrap(),
            running: IntGauge::new("r", "r").unwrap(),
        }
    }

    #[tokio::test]
    async fn runs_jobs_off_the_reactor_and_returns_results() {
        let pool = InferencePool::start(2, 4, gauges());
        let caller = std::thread::current().id();
        let (value, thread) = pool
            .run(move || (21 * 2, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert_ne!(thread, caller);
    }

    #[tokio::test]
    async fn refuses_when_workers_and_queue_are_full() {
        let gauges = gauges();
        let pool = Arc::new(InferencePool::start(1, 1, gauges.clone()));
        let gate = Arc::new(Barrier::new(2));
        // One job blocks the only worker...
        let blocking = {
            let (pool, gate) = (Arc::clone(&pool), Arc::clone(&gate));
            tokio::spawn(async move { pool.run(move || gate.wait()).await })
        };
        while gauges.running.get() == 0 {
            tokio::task::yield_now().await;
        }
        // ...one waits in the queue...
        let queued = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(|| 7).await })
        };
        while gauges.waiting.get() == 0 {
            tokio::task::yield_now().await;
        }
        // ...and the next is refused at once.
        assert_eq!(
            pool.run(|| 0).await,
            Err(PoolError::Busy {
                workers: 1,
                queued: 1
            })
        );
        gate.wait();
        blocking.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap(), Ok(7));
        assert_eq!(gauges.waiting.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admits_exactly_workers_plus_queue_jobs_at_once() {
        let pool = Arc::new(InferencePool::start(1, 1, gauges()));
        // Every admitted job holds its worker until the test lets go, so none finishes early.
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let runs: Vec<_> = (0..8)
            .map(|i| {
                let (pool, released) = (Arc::clone(&pool), Arc::clone(&released));
                tokio::spawn(async move {
                    pool.run(move || {
                        while !released.load(Ordering::Acquire) {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        i
                    })
                    .await
                })
            })
            .collect();
        // The refusals answer at once; the two admitted jobs wait for the guard.
        let refusals = async {
            while runs.iter().filter(|r| r.is_finished()).count() < 6 {
                tokio::task::yield_now().await;
            }
        };
        let answered = tokio::time::timeout(std::time::Duration::from_secs(10), refusals).await;
        released.store(true, Ordering::Release);
        assert!(answered.is_ok(), "more than two jobs were admitted");
        let mut counted = 0;
        for run in runs {
            match run.await.unwrap() {
                Ok(_) => counted += 1,
                Err(e) => assert!(matches!(e, PoolError::Busy { .. }), "{e}"),
            }
        }
        assert_eq!(counted, 2, "one running and one waiting job are admitted");
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_dead_worker() {
        let pool = InferencePool::start(1, 1, gauges());
        assert_eq!(
            pool.run(|| -> u32 { panic!("boom") }).await,
            Err(PoolError::Panicked)
        );
        assert_eq!(pool.run(|| 5).await, Ok(5));
    }
}
