//! The `dag { ... }` form against the same graphs written by hand in tokio (inline:
//! sequential awaits in one task; and one `tokio::spawn` per node) and against
//! `dagx` (a runtime DAG crate), side by side in one run: a 5-node chain, a 4-node
//! diamond, and a 1→100 fan-out joined into one node, of trivial async nodes; and a
//! diamond of mixed placements whose makespan is compared with its critical path.
//!
//! `cargo run --release -p concurrency-examples --example dag_perf` (`ROUNDS=n` for
//! more rounds).

use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use concurrency_runtime::{cpu_task, io_task, run_concurrently};
use dagx::{DagRunner, task_fn};

#[path = "support/rounds.rs"]
mod rounds;
use rounds::{Table, alternate_async, median};

#[io_task]
async fn inc(x: u64) -> u64 {
    black_box(x) + 1
}

#[io_task]
async fn add(x: u64, y: u64) -> u64 {
    black_box(x) + y
}

#[io_task]
async fn total(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

async fn inc_by_hand(x: u64) -> u64 {
    black_box(x) + 1
}

async fn add_by_hand(x: u64, y: u64) -> u64 {
    black_box(x) + y
}

async fn chain_library() -> u64 {
    run_concurrently!(async; dag {
        let a = inc(0);
        let b = inc(a);
        let c = inc(b);
        let d = inc(c);
        let e = inc(d);
        e
    })
    .await
}

async fn chain_inline() -> u64 {
    let a = inc_by_hand(0).await;
    let b = inc_by_hand(a).await;
    let c = inc_by_hand(b).await;
    let d = inc_by_hand(c).await;
    inc_by_hand(d).await
}

/// `future` with every poll inside `catch_unwind`: the guarantee each node of the
/// form gives (a panic fails that node alone, under its name), by hand.
async fn guarded<F: Future<Output = u64>>(future: F) -> u64 {
    let mut future = pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(value),
            Err(_) => Poll::Ready(0),
        },
    )
    .await
}

async fn chain_guarded() -> u64 {
    let a = guarded(inc_by_hand(0)).await;
    let b = guarded(inc_by_hand(a)).await;
    let c = guarded(inc_by_hand(b)).await;
    let d = guarded(inc_by_hand(c)).await;
    guarded(inc_by_hand(d)).await
}

async fn diamond_guarded() -> u64 {
    let a = guarded(inc_by_hand(0)).await;
    let (b, c) = tokio::join!(guarded(inc_by_hand(a)), guarded(inc_by_hand(a)));
    guarded(add_by_hand(b, c)).await
}

async fn chain_spawned() -> u64 {
    let a = tokio::spawn(inc_by_hand(0));
    let b = tokio::spawn(async move { inc_by_hand(a.await.expect("a")).await });
    let c = tokio::spawn(async move { inc_by_hand(b.await.expect("b")).await });
    let d = tokio::spawn(async move { inc_by_hand(c.await.expect("c")).await });
    let e = tokio::spawn(async move { inc_by_hand(d.await.expect("d")).await });
    e.await.expect("e")
}

async fn chain_dagx() -> u64 {
    let dag = DagRunner::new();
    let a = dag.add_task(task_fn(|_: ()| async { inc_by_hand(0).await }));
    let b = dag
        .add_task(task_fn(|x: u64| async move { inc_by_hand(x).await }))
        .depends_on(&a);
    let c = dag
        .add_task(task_fn(|x: u64| async move { inc_by_hand(x).await }))
        .depends_on(b);
    let d = dag
        .add_task(task_fn(|x: u64| async move { inc_by_hand(x).await }))
        .depends_on(c);
    let e = dag
        .add_task(task_fn(|x: u64| async move { inc_by_hand(x).await }))
        .depends_on(d);
    dag.run(|future| {
        tokio::spawn(future);
    })
    .await
    .expect("dagx run");
    dag.get(e).expect("e")
}

async fn diamond_library() -> u64 {
    run_concurrently!(async; dag {
        let a = inc(0);
        let b = inc(a);
        let c = inc(a);
        let d = add(b, c);
        d
    })
    .await
}

async fn diamond_inline() -> u64 {
    let a = inc_by_hand(0).await;
    let (b, c) = tokio::join!(inc_by_hand(a), inc_by_hand(a));
    add_by_hand(b, c).await
}

async fn diamond_spawned() -> u64 {
    let a = tokio::spawn(inc_by_hand(0)).await.expect("a");
    let b = tokio::spawn(inc_by_hand(a));
    let c = tokio::spawn(inc_by_hand(a));
    let d =
        tokio::spawn(async move { add_by_hand(b.await.expect("b"), c.await.expect("c")).await });
    d.await.expect("d")
}

async fn diamond_dagx() -> u64 {
    let dag = DagRunner::new();
    let a = dag.add_task(task_fn(|_: ()| async { inc_by_hand(0).await }));
    let b = dag
        .add_task(task_fn(|x: u64| async move { inc_by_hand(x).await }))
        .depends_on(&a);
    let c = dag
        .add_task(task_fn(|x: u64| async move { inc_by_hand(x).await }))
        .depends_on(&a);
    let d = dag
        .add_task(task_fn(|(x, y): (u64, u64)| async move {
            add_by_hand(x, y).await
        }))
        .depends_on((&b, &c));
    dag.run(|future| {
        tokio::spawn(future);
    })
    .await
    .expect("dagx run");
    dag.get(d).expect("d")
}

async fn fan_library() -> u64 {
    run_concurrently!(async; dag {
        let root = inc(0);
        let leaves = for (0..100).map(|i| add(root, i));
        let joined = total(leaves);
        joined
    })
    .await
}

async fn fan_inline() -> u64 {
    let root = inc_by_hand(0).await;
    let mut leaves = Vec::with_capacity(100);
    for i in 0..100 {
        leaves.push(add_by_hand(root, i).await);
    }
    leaves.iter().sum()
}

async fn fan_spawned() -> u64 {
    let root = tokio::spawn(inc_by_hand(0)).await.expect("root");
    let leaves: Vec<_> = (0..100)
        .map(|i| tokio::spawn(add_by_hand(root, i)))
        .collect();
    tokio::spawn(async move {
        let mut sum = 0;
        for leaf in leaves {
            sum += leaf.await.expect("leaf");
        }
        sum
    })
    .await
    .expect("join")
}

async fn fan_dagx() -> u64 {
    let dag = DagRunner::new();
    let root = dag.add_task(task_fn(|_: ()| async { inc_by_hand(0).await }));
    let mut sum = 0;
    let leaves: Vec<_> = (0..100)
        .map(|i| {
            dag.add_task(task_fn(
                move |x: u64| async move { add_by_hand(x, i).await },
            ))
            .depends_on(&root)
        })
        .collect();
    dag.run(|future| {
        tokio::spawn(future);
    })
    .await
    .expect("dagx run");
    // dagx has no node over a variable number of inputs: the join is summed here.
    for leaf in leaves {
        sum += dag.get(leaf).expect("leaf");
    }
    sum
}

// ---- a mixed-placement diamond against its critical path --------------------------------

#[io_task]
async fn wait_ms(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[io_task]
fn blocking_ms(after: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    after + ms
}

#[cpu_task]
fn spin_ms(after: u64, ms: u64) -> u64 {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    after + ms
}

#[cpu_task]
fn join_two(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var_os("DAG_PERF_PROFILE").is_some() {
        // Only the library's chain, for a profiler.
        runtime.block_on(async {
            tokio::spawn(async {
                for _ in 0..5_000_000 {
                    black_box(chain_library().await);
                }
            })
            .await
            .expect("profile loop")
        });
        return;
    }
    let rounds = rounds::rounds(6);
    let mut table = Table::default();
    for round in 1..=rounds {
        eprint!("round {round}/{rounds}\r");
        runtime
            .block_on(async {
                tokio::spawn(async {
                    let mut rows = Vec::new();
                    macro_rules! row {
                        ($name:expr, $baseline:expr, $ours:expr, $theirs:expr, $inner:expr) => {
                            rows.push((
                                $name,
                                $baseline,
                                alternate_async(30, $inner, $ours, $theirs).await,
                            ));
                        };
                    }
                    row!(
                        "5-node chain",
                        "inline awaits",
                        chain_library,
                        chain_inline,
                        2_000
                    );
                    row!(
                        "5-node chain",
                        "guarded inline awaits",
                        chain_library,
                        chain_guarded,
                        2_000
                    );
                    row!(
                        "5-node chain",
                        "spawn per node",
                        chain_library,
                        chain_spawned,
                        200
                    );
                    row!("5-node chain", "dagx 0.3", chain_library, chain_dagx, 200);
                    row!(
                        "4-node diamond",
                        "inline awaits + join!",
                        diamond_library,
                        diamond_inline,
                        2_000
                    );
                    row!(
                        "4-node diamond",
                        "guarded inline + join!",
                        diamond_library,
                        diamond_guarded,
                        2_000
                    );
                    row!(
                        "4-node diamond",
                        "spawn per node",
                        diamond_library,
                        diamond_spawned,
                        200
                    );
                    row!(
                        "4-node diamond",
                        "dagx 0.3",
                        diamond_library,
                        diamond_dagx,
                        200
                    );
                    row!(
                        "1->100 fan-out + join",
                        "inline awaits",
                        fan_library,
                        fan_inline,
                        50
                    );
                    row!(
                        "1->100 fan-out + join",
                        "spawn per node",
                        fan_library,
                        fan_spawned,
                        20
                    );
                    row!(
                        "1->100 fan-out + join",
                        "dagx 0.3",
                        fan_library,
                        fan_dagx,
                        20
                    );
                    rows
                })
                .await
                .expect("spawned rounds")
            })
            .into_iter()
            .for_each(|(name, baseline, ratio)| table.record(name, baseline, ratio));

        // Mixed placements: a 10 ms async wait, then a 10 ms blocking branch and a 50 ms
        // cpu branch, joined; against a bare 60 ms of the same sleeps and spin.
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let joined = run_concurrently!(dag {
                let first = wait_ms(10);
                let short = blocking_ms(first, 10);
                let long = spin_ms(first, 50);
                let joined = join_two(short, long);
                joined
            });
            ours.push(started.elapsed());
            black_box(joined);
            let started = Instant::now();
            runtime.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
            let until = Instant::now() + Duration::from_millis(50);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            bare.push(started.elapsed());
        }
        table.record(
            "mixed diamond, makespan",
            "its critical path, bare",
            rounds::Ratio {
                ours: median(ours),
                theirs: median(bare),
            },
        );
    }
    table.print(rounds);
}
