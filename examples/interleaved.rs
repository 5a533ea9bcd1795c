//! Interleaved overhead checks (`cargo run --release -p concurrency-examples --example interleaved`).
//!
//! Criterion measures one side of a comparison, then the other; on a VM whose speed
//! drifts, that drift shows up as a ratio. Here the two sides alternate in one loop,
//! so both see the same machine. Each row prints each side's median over the rounds
//! and the min, median and max of the per-round ratios (`ROUNDS=n`, default 6).

use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use concurrency_runtime::{cpu_task, io_task, run_concurrently};

#[path = "support/rounds.rs"]
mod rounds;
use rounds::{Table, alternate, alternate_async};

async fn io_body(n: u64) -> u64 {
    tokio::task::yield_now().await;
    black_box(n)
}

fn cpu_body(n: u64) -> u64 {
    (0..black_box(1_000)).fold(n, |acc, i| acc.wrapping_mul(31).wrapping_add(black_box(i)))
}

#[io_task]
async fn io_task(n: u64) -> u64 {
    io_body(n).await
}

#[io_task]
fn blocking_task(n: u64) -> u64 {
    black_box(n)
}

#[cpu_task]
fn cpu_task(n: u64) -> u64 {
    cpu_body(n)
}

/// What a join that isolates each task's panic does by hand, the guarantee a group
/// gives: each poll of each future inside `catch_unwind`, each outcome kept apart.
async fn guarded_join3<A: Future, B: Future, C: Future>(
    a: A,
    b: B,
    c: C,
) -> (
    std::thread::Result<A::Output>,
    std::thread::Result<B::Output>,
    std::thread::Result<C::Output>,
) {
    fn guarded<F: Future>(
        future: Pin<&mut F>,
        slot: &mut Option<std::thread::Result<F::Output>>,
        cx: &mut Context<'_>,
    ) -> bool {
        if slot.is_none() {
            match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                Ok(Poll::Ready(value)) => *slot = Some(Ok(value)),
                Ok(Poll::Pending) => {}
                Err(payload) => *slot = Some(Err(payload)),
            }
        }
        slot.is_some()
    }
    let (mut a, mut b, mut c) = (pin!(a), pin!(b), pin!(c));
    let (mut first, mut second, mut third) = (None, None, None);
    poll_fn(|cx| {
        let done = guarded(a.as_mut(), &mut first, cx)
            & guarded(b.as_mut(), &mut second, cx)
            & guarded(c.as_mut(), &mut third, cx);
        match (done, first.take(), second.take(), third.take()) {
            (true, Some(a), Some(b), Some(c)) => Poll::Ready((a, b, c)),
            (_, a, b, c) => {
                (first, second, third) = (a, b, c);
                Poll::Pending
            }
        }
    })
    .await
}

fn main() {
    // Built with `--features tracing`: `TRACE_SUBSCRIBER=1` installs a subscriber that
    // takes nothing, so that the blocking detector times every poll (its cost with a
    // subscriber); without it, the detector only checks that there is none.
    #[cfg(feature = "tracing")]
    if std::env::var_os("TRACE_SUBSCRIBER").is_some() {
        tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default())
            .expect("the only subscriber");
    }
    // `TRACE_RECORDING=1` (with `--features tracing`): a recording is open during each
    // round (its cost; the large rows pass its two million events and count the rest as
    // dropped, so read the small-group rows).
    #[cfg(feature = "tracing")]
    let recording = std::env::var_os("TRACE_RECORDING").is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let handle = runtime.handle().clone();
    let rounds = rounds::rounds(6);
    let mut table = Table::default();
    for round in 1..=rounds {
        eprint!("round {round}/{rounds}\r");
        #[cfg(feature = "tracing")]
        let open = recording.then(concurrency_runtime::observe::Recording::start);

        // 10,000 async tasks, both inside a spawned task of the runtime.
        let async10k = runtime.block_on(async {
            tokio::spawn(alternate_async(
                40,
                1,
                || run_concurrently!(async; for (0..10_000).map(io_task)),
                || async {
                    let mut set = tokio::task::JoinSet::new();
                    for n in 0..10_000 {
                        set.spawn(io_body(n));
                    }
                    while let Some(joined) = set.join_next().await {
                        black_box(joined.expect("join"));
                    }
                },
            ))
            .await
            .expect("spawned check")
        });
        table.record("10,000 async tasks, async caller", "JoinSet", async10k);

        // 3 async tasks, polled in one `block_on` by both sides.
        let three = || run_concurrently!(async; io_task(1), io_task(2), io_task(3));
        let guarded = || guarded_join3(io_body(1), io_body(2), io_body(3));
        let async3 = runtime.block_on(alternate_async(200, 1_000, three, guarded));
        table.record(
            "3 async tasks, async caller (block_on)",
            "guarded join",
            async3,
        );
        let joined = runtime.block_on(alternate_async(200, 1_000, three, || async {
            tokio::join!(io_body(1), io_body(2), io_body(3))
        }));
        table.record(
            "3 async tasks, async caller (block_on)",
            "tokio::join!",
            joined,
        );
        // The same inside a spawned task, where `yield_now` goes through the scheduler.
        let spawned = runtime.block_on(async move {
            tokio::spawn(alternate_async(200, 1_000, three, guarded))
                .await
                .expect("spawned")
        });
        table.record(
            "3 async tasks, async caller (spawned task)",
            "guarded join",
            spawned,
        );

        let sync3 = alternate(
            20_000,
            Duration::ZERO,
            || {
                black_box(run_concurrently!(io_task(1), io_task(2), io_task(3)));
            },
            || {
                let _ =
                    black_box(handle.block_on(guarded_join3(io_body(1), io_body(2), io_body(3))));
            },
        );
        table.record(
            "3 async tasks, sync caller",
            "block_on(guarded join)",
            sync3,
        );

        let blocking = alternate(
            30,
            Duration::ZERO,
            || {
                black_box(run_concurrently!(for (0..1_000).map(blocking_task)));
            },
            || {
                handle.block_on(async {
                    let handles: Vec<_> = (0..1_000u64)
                        .map(|n| tokio::task::spawn_blocking(move || black_box(n)))
                        .collect();
                    for joined in handles {
                        black_box(joined.await.expect("join"));
                    }
                });
            },
        );
        table.record(
            "1,000 blocking tasks, sync caller",
            "spawn_blocking",
            blocking,
        );

        let mixed = alternate(
            2_000,
            Duration::ZERO,
            || {
                black_box(run_concurrently!(io_task(1), blocking_task(2), cpu_task(3)));
            },
            || {
                black_box(handle.block_on(async {
                    let blocking = tokio::task::spawn_blocking(|| black_box(2u64));
                    let (sender, receiver) = tokio::sync::oneshot::channel();
                    rayon::spawn(move || {
                        let _ = sender.send(cpu_body(3));
                    });
                    let (a, b, c) = tokio::join!(io_body(1), blocking, receiver);
                    (a, b.expect("join"), c.expect("rayon"))
                }));
            },
        );
        table.record(
            "async + blocking + cpu, sync caller",
            "join! by hand",
            mixed,
        );

        let cpu = alternate(
            2_000,
            Duration::ZERO,
            || {
                black_box(run_concurrently!(cpu_task(1), cpu_task(2), cpu_task(3)));
            },
            || {
                black_box(rayon::join(
                    || cpu_body(1),
                    || rayon::join(|| cpu_body(2), || cpu_body(3)),
                ));
            },
        );
        table.record("3 small cpu tasks, sync caller", "rayon::join", cpu);
        #[cfg(feature = "tracing")]
        if let Some(open) = open {
            let timeline = open.finish();
            eprintln!(
                "round {round}: {} attempts recorded, {} events dropped",
                timeline.attempts().len(),
                timeline.dropped_events()
            );
        }
    }
    table.print(rounds);
}
