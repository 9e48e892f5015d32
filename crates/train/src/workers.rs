//! Data parallelism on one machine: one worker thread a device, each with its own replica of the
//! model, and sums across the workers through burn's collective (docs/data-parallel.md).
//!
//! A worker waiting in a sum waits for every other worker, so a worker that fails must not leave
//! the others waiting: its failure resets the collective, which releases them with an error, and
//! the run reports the failure itself rather than theirs.

use anyhow::{anyhow, Result};
use burn::{
    collective::{self, CollectiveConfig, PeerId, ReduceOperation},
    prelude::*,
    tensor::TensorPrimitive,
};
use std::{
    fmt,
    marker::PhantomData,
    panic::{self, AssertUnwindSafe},
    thread,
};

/// One worker's place in the run: its rank among `count` workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub rank: usize,
    pub count: usize,
}

impl Peer {
    /// The worker of a run on one device.
    pub const ALONE: Peer = Peer { rank: 0, count: 1 };

    /// The worker that reports progress and writes metrics, checkpoints and the export.
    pub fn is_first(&self) -> bool {
        self.rank == 0
    }

    /// Whether the `index`-th micro-batch of a step is this worker's: every `count`-th one,
    /// starting at `rank`.
    pub fn takes(&self, index: usize) -> bool {
        index % self.count == self.rank
    }

    /// `tensor` summed over the workers; every worker gets the same sum. Every worker must ask
    /// for the same sums, of the same shapes, in the same order.
    pub fn sum<B: Backend>(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        if self.count == 1 {
            return Ok(tensor);
        }
        let summed = collective::all_reduce::<B>(self.id(), tensor.into_primitive().tensor(), ReduceOperation::Sum)
            .map_err(|error| anyhow!(Released(format!("{error:?}"))))?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }

    fn id(&self) -> PeerId {
        PeerId::from(self.rank)
    }
}

/// A worker's error when a sum was abandoned because another worker failed: that other failure
/// is the one to report.
#[derive(Debug)]
struct Released(String);

impl fmt::Display for Released {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "another worker failed, so this one was released from a sum ({})", self.0)
    }
}

impl std::error::Error for Released {}

/// Runs `work` once for each of `devices` with its input (its replica of the model, moved in so
/// that no other copy is kept), each on its own thread as its [`Peer`], and returns what each
/// returned, in the order of `devices`. One device runs on the calling thread. The first failure
/// is returned (a panic is resumed) once every worker has stopped.
///
/// `B` is the backend the sums run on: the autodiff backend's inner one.
pub fn run<B: Backend, I: Send, T: Send>(
    devices: &[B::Device],
    inputs: Vec<I>,
    work: impl Fn(Peer, &B::Device, I) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let count = devices.len();
    assert_eq!(inputs.len(), count, "an input a device");
    if count == 1 {
        let input = inputs.into_iter().next().expect("one input");
        return Ok(vec![work(Peer::ALONE, &devices[0], input)?]);
    }
    let outcomes: Vec<thread::Result<Result<T>>> = thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = devices
            .iter()
            .zip(inputs)
            .enumerate()
            .map(|(rank, (device, input))| {
                scope.spawn(move || {
                    let peer = Peer { rank, count };
                    // First, before anything that can fail: registering waits for every worker,
                    // and a reset does not release a worker waiting there.
                    let config = CollectiveConfig::default().with_num_devices(count);
                    collective::register::<B>(peer.id(), device.clone(), config)
                        .map_err(|error| anyhow!("worker {rank} could not join the others: {error:?}"))?;
                    let guard = ResetOnFailure::<B>(PhantomData);
                    let result = panic::catch_unwind(AssertUnwindSafe(|| work(peer, device, input)));
                    match &result {
                        Ok(Ok(_)) => {
                            std::mem::forget(guard);
                            collective::finish_collective::<B>(peer.id())
                                .map_err(|error| anyhow!("worker {rank} could not leave the others: {error:?}"))?;
                        }
                        _ => drop(guard),
                    }
                    result.unwrap_or_else(|payload| panic::resume_unwind(payload))
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join()).collect()
    });
    let mut results = Vec::with_capacity(count);
    let mut panicked = None;
    for outcome in outcomes {
        match outcome {
            Ok(result) => results.push(result),
            Err(payload) => panicked = panicked.or(Some(payload)),
        }
    }
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
    if results.iter().any(Result::is_err) {
        let mut errors: Vec<anyhow::Error> = results.into_iter().filter_map(Result::err).collect();
        let first_cause = errors.iter().position(|error| !error.is::<Released>()).unwrap_or(0);
        return Err(errors.swap_remove(first_cause));
    }
    Ok(results.into_iter().map(|result| result.expect("no errors")).collect())
}

/// Resets the collective when dropped, as a worker that fails or panics is: the workers waiting
/// in a sum are released with an error, and later sums fail at once.
struct ResetOnFailure<B: Backend>(PhantomData<B>);

impl<B: Backend> Drop for ResetOnFailure<B> {
    fn drop(&mut self) {
        collective::reset_collective::<B>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use gpt2::Cpu;
    use std::{
        sync::Mutex,
        time::{Duration, Instant},
    };

    /// The collective is one per process: tests that use it take turns.
    static COLLECTIVE: Mutex<()> = Mutex::new(());

    fn cpus(count: usize) -> Vec<Device<Cpu>> {
        vec![Default::default(); count]
    }

    #[test]
    fn sums_reach_every_worker_and_micro_batches_are_shared_out() {
        let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
        for count in [2, 3] {
            let sums = run::<Cpu, _, _>(&cpus(count), vec![(); count], |peer, device, ()| {
                let mine: Vec<usize> = (0..7).filter(|&i| peer.takes(i)).collect();
                let value = Tensor::<Cpu, 1>::from_floats([peer.rank as f32 + 1.0, 10.0], device);
                let sum = peer.sum(value)?.into_data().to_vec::<f32>().unwrap();
                Ok((mine, sum))
            })
            .unwrap();
            let expected_first = (1..=count).sum::<usize>() as f32;
            for (rank, (mine, sum)) in sums.iter().enumerate() {
                assert_eq!(sum, &[expected_first, 10.0 * count as f32], "{count} workers, worker {rank}");
                assert!(mine.iter().all(|i| i % count == rank), "{mine:?}");
            }
            let taken: usize = sums.iter().map(|(mine, _)| mine.len()).sum();
            assert_eq!(taken, 7, "every micro-batch taken once");
        }
    }

    #[test]
    fn a_failing_worker_stops_the_others_with_its_own_error() {
        let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let result = run::<Cpu, _, ()>(&cpus(3), vec![(); 3], |peer, device, ()| {
            for step in 0..5 {
                if peer.rank == 1 && step == 2 {
                    anyhow::bail!("worker 1 found a bad row at step 2");
                }
                peer.sum(Tensor::<Cpu, 1>::ones([4], device))?;
            }
            Ok(())
        });
        let error = result.unwrap_err().to_string();
        assert_eq!(error, "worker 1 found a bad row at step 2");
        assert!(started.elapsed() < Duration::from_secs(30), "the others waited {:?}", started.elapsed());

        // The collective is usable again by the next run.
        let sums = run::<Cpu, _, _>(&cpus(2), vec![(); 2], |peer, device, ()| {
            Ok(peer.sum(Tensor::<Cpu, 1>::ones([1], device))?.into_scalar())
        })
        .unwrap();
        assert_eq!(sums, [2.0, 2.0]);
    }

    #[test]
    fn a_worker_that_panics_is_resumed_as_a_panic() {
        let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = panic::catch_unwind(|| {
            run::<Cpu, _, ()>(&cpus(2), vec![(); 2], |peer, device, ()| {
                if peer.rank == 0 {
                    panic!("out of memory");
                }
                peer.sum(Tensor::<Cpu, 1>::ones([4], device))?;
                Ok(())
            })
        });
        let payload = outcome.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"out of memory"));
    }
}
