//! The inference pool gives a job every core only when it starts alone. A file of its own: the
//! test sets tract's process-wide executor, which no other test in this process may see.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use image_predict::pool::{InferencePool, PoolGauges};
use prometheus::IntGauge;
use tract_linalg::multithread::{Executor, current_tract_executor, set_default_executor};

fn on_one_thread() -> bool {
    matches!(current_tract_executor(), Executor::SingleThread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_spreads_over_the_cores_only_when_it_starts_alone() {
    set_default_executor(Executor::multithread(2));
    let gauges = PoolGauges {
        waiting: IntGauge::new("waiting", "waiting").unwrap(),
        running: IntGauge::new("running", "running").unwrap(),
    };
    let pool = Arc::new(InferencePool::start(2, 2, gauges.clone()));

    assert!(
        !pool.run(on_one_thread).await.unwrap(),
        "a job alone in the pool gets the process's threads"
    );

    // A job that holds its worker until released...
    let released = Arc::new(AtomicBool::new(false));
    let holding = {
        let (pool, released) = (Arc::clone(&pool), Arc::clone(&released));
        tokio::spawn(async move {
            pool.run(move || {
                let alone = !on_one_thread();
                while !released.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                alone
            })
            .await
        })
    };
    while gauges.running.get() == 0 {
        tokio::task::yield_now().await;
    }
    // ...so the next one starts while another is running and keeps to its worker thread.
    let next = pool.run(on_one_thread).await.unwrap();
    released.store(true, Ordering::Release);
    assert!(
        next,
        "a job started beside another runs on its worker thread only"
    );
    assert!(
        holding.await.unwrap().unwrap(),
        "the job that started alone kept the process's threads"
    );

    // Alone again once the others are done.
    assert!(!pool.run(on_one_thread).await.unwrap());
}
