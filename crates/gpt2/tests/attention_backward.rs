//! Training's attention (its backward pass written out, `Gpt2Backend::self_attention` under
//! autodiff) against burn's operations differentiated one by one.

use burn::{backend::Autodiff, prelude::*, tensor::Distribution};
use gpt2::{causal_mask, Cpu, Documents, Dropout, DropoutMasks, Gpt2Backend, Precision};
use rand::{rngs::StdRng, SeedableRng};

type Trained = Autodiff<Cpu>;

/// The same output and q/k/v gradient, with documents packed in a row and with dropout.
#[test]
fn matches_burns_operations() {
    let (batch, time, heads, head_dim) = (2, 10, 3, 4);
    let device = Default::default();
    let documents = Documents::<Trained>::new(&[vec![4], vec![7]], time, &device);
    let mask = documents.mask(causal_mask::<Trained>(time, time, &device));
    // Seeded here: burn's own generator is one a device, which a binary's tests share and reseed.
    let mut rng = StdRng::seed_from_u64(5);
    let mut random = |dims: [usize; 2]| {
        Tensor::<Trained, 2>::from_data(
            TensorData::random::<f32, _, _>(dims, Distribution::Uniform(-1.0, 1.0), &mut rng),
            &device,
        )
    };
    for p in [0.0, 0.3] {
        let stream = DropoutMasks::new(7, 0, 0).layer(0).attention_weights();
        let dropout = (p > 0.0).then_some(Dropout { p, stream });
        let qkv = random([batch * time, 3 * heads * head_dim]).require_grad();
        let upstream = random([batch * time, heads * head_dim]);

        let ours = Trained::self_attention(qkv.clone(), heads, mask.clone(), dropout, Precision::F32);
        let by_heads = |t: Tensor<Trained, 2>| t.reshape([batch, time, heads, head_dim]).swap_dims(1, 2);
        let [q, k, v] = [0, 1, 2].map(|i| by_heads(qkv.clone().narrow(1, i * heads * head_dim, heads * head_dim)));
        let burns = Trained::masked_attention(q, k, v, mask.clone(), dropout, Precision::F32)
            .reshape([batch * time, heads * head_dim]);
        assert_close(&format!("output, dropout {p}"), ours.clone().inner(), burns.clone().inner());

        let (ours, burns) = ((ours * upstream.clone()).sum().backward(), (burns * upstream).sum().backward());
        assert_close(&format!("q/k/v gradient, dropout {p}"), qkv.grad(&ours).unwrap(), qkv.grad(&burns).unwrap());
    }
}

fn assert_close<const D: usize>(what: &str, actual: Tensor<Cpu, D>, expected: Tensor<Cpu, D>) {
    let difference = (actual - expected.clone()).abs().max().into_scalar();
    let scale = expected.abs().max().into_scalar();
    assert!(difference <= 1e-5 * scale, "{what}: max |difference| {difference} at scale {scale}");
}
