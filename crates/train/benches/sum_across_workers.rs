//! The sums a data-parallel step makes (`train --devices`): a model's flat gradients summed
//! across CPU workers, as burn's collective sums them. With a step's time (metrics.jsonl), the
//! sums' share of a step; scripts/bench/data_parallel.sh runs both.
//!
//! cargo bench -p train --bench sum_across_workers [-- PARAMETERS]   (default: gpt2's 124M)

use burn::prelude::*;
use gpt2::Cpu;
use std::time::{Duration, Instant};
use train::workers;

/// gpt2 (124M): its parameters, as the optimizer's two flat buffers hold them.
const GPT2_PARAMETERS: usize = 124_439_808;
const REPEATS: usize = 5;

fn main() {
    let parameters = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .map_or(GPT2_PARAMETERS, |arg| arg.parse().expect("PARAMETERS: a number"));
    for count in [2, 3] {
        let devices = vec![Default::default(); count];
        let times = workers::run::<Cpu, _, _>(&devices, vec![(); count], |peer, device, ()| {
            let gradients = Tensor::<Cpu, 1>::ones([parameters], device);
            let mut times = Vec::with_capacity(REPEATS);
            for _ in 0..REPEATS {
                let started = Instant::now();
                let sum = peer.sum(gradients.clone())?;
                // The CPU backend computes as it goes: the sum is there once the call returns.
                assert_eq!(sum.slice(0..1).into_scalar(), count as f32);
                times.push(started.elapsed());
            }
            Ok(times)
        })
        .expect("the workers sum");
        let mut first: Vec<Duration> = times[0].clone();
        first.sort();
        println!(
            "{count} CPU workers, {parameters} f32 gradients: sum across workers {:.3} s (median of {REPEATS})",
            first[REPEATS / 2].as_secs_f64()
        );
    }
}
