//! Where each parameter lives in the optimizer's flat buffers: one buffer a parameter group,
//! each parameter a contiguous stretch of it, in the order the model visits them.
//!
//! Flat, the update is one kernel a group and the clip's norm one reduction, where a
//! tensor at a time they are hundreds of launches. Between steps the model's parameters are
//! views into the buffers, and the gradients are summed into buffers of the same layout.

use burn::{
    module::{ModuleMapper, ModuleVisitor, Param, ParamId},
    prelude::*,
    tensor::{backend::AutodiffBackend, ops::FloatTensor, FloatDType, TensorPrimitive},
};
use gpt2::{Gpt2, Gpt2Backend, RoundedWeights, NORM_ROWS};
use std::{
    collections::{HashMap, HashSet},
    ops::Range,
};

/// The parameter groups of PyTorch's usual GPT-2 AdamW: weight decay on the weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The token embedding (also the LM head) and every linear layer's weight.
    Decayed = 0,
    /// Biases, LayerNorms and the position embedding.
    NotDecayed = 1,
}

pub const GROUPS: [Group; 2] = [Group::Decayed, Group::NotDecayed];

/// Each parameter starts at a multiple of this many elements (1 KiB of f32, and 512 bytes of
/// its bf16 copy: CUDA's alignment in cubecl-cuda), so that on CubeCL a view of it is the
/// buffer at an offset, not a copy.
const ALIGN: usize = 256;

/// The alignment of optimizer states saved before 2026-12-04 (256 bytes of f32), off which
/// every matrix after gpt2-xl's token embedding started.
const FORMER_ALIGN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub id: ParamId,
    pub shape: Vec<usize>,
    /// Where it starts in its group's buffer.
    pub start: usize,
}

impl Slot {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn range(&self) -> Range<usize> {
        self.start..self.start + self.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupLayout {
    pub slots: Vec<Slot>,
    /// The buffer's length, padding included (padding holds zeros, which AdamW keeps at zero).
    pub len: usize,
}

impl GroupLayout {
    /// Each parameter's start and shape, in buffer order: the views of the buffer.
    fn stretches(&self) -> Vec<(usize, Shape)> {
        self.slots.iter().map(|slot| (slot.start, Shape::from(slot.shape.clone()))).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub groups: [GroupLayout; 2],
    /// Group and index into its slots, by parameter.
    index: HashMap<ParamId, (Group, usize)>,
}

impl Layout {
    /// The layout of `model`'s parameters. Parameter ids change when a checkpoint is loaded, so
    /// the decayed ones are found afresh from the model's structure.
    pub fn of<B: Backend>(model: &Gpt2<B>) -> Self {
        Self::aligned(model, ALIGN)
    }

    /// The layout of optimizer states saved before 2026-12-04.
    pub fn former<B: Backend>(model: &Gpt2<B>) -> Self {
        Self::aligned(model, FORMER_ALIGN)
    }

    fn aligned<B: Backend>(model: &Gpt2<B>, align: usize) -> Self {
        let decayed = weight_matrices(model);
        let mut layout = Self { groups: Default::default(), index: HashMap::new() };
        model.visit(&mut AddSlots { decayed: &decayed, align, layout: &mut layout });
        for group in &mut layout.groups {
            // For the norm's sums down columns on the CPU; checkpoints' optimizer records
            // hold buffers of these lengths.
            group.len = group.len.next_multiple_of(NORM_ROWS);
        }
        layout
    }

    /// The parameter ids of `group`, in buffer order.
    pub fn ids(&self, group: Group) -> Vec<ParamId> {
        self.groups[group as usize].slots.iter().map(|slot| slot.id).collect()
    }

    pub fn slot(&self, id: ParamId) -> Option<(Group, &Slot)> {
        self.index.get(&id).map(|&(group, i)| (group, &self.groups[group as usize].slots[i]))
    }

    /// One flat buffer a group of what `source` gives for each parameter of `model`; zeros
    /// where it gives nothing.
    pub fn gather<B: AutodiffBackend>(
        &self,
        model: &Gpt2<B>,
        source: &mut impl Source<B>,
        device: &B::Device,
    ) -> [Tensor<B::InnerBackend, 1>; 2] {
        let mut gather = Gather { layout: self, buffers: self.zeros(device).map(Some), source };
        model.visit(&mut gather);
        gather.buffers.map(|buffer| buffer.expect("put back after each parameter"))
    }

    /// `buffers`, laid out as `from` (the same parameters), laid out as this layout.
    pub fn relaid<B: AutodiffBackend>(
        &self,
        model: &Gpt2<B>,
        from: &Layout,
        buffers: [Tensor<B::InnerBackend, 1>; 2],
        device: &B::Device,
    ) -> [Tensor<B::InnerBackend, 1>; 2] {
        self.gather(model, &mut Stretches { layout: from, buffers }, device)
    }

    /// `model` with each parameter a view of its stretch of `buffers` (ids kept).
    pub fn scatter<B: AutodiffBackend>(&self, model: Gpt2<B>, buffers: &[Tensor<B::InnerBackend, 1>; 2]) -> Gpt2<B>
    where
        B::InnerBackend: Gpt2Backend,
    {
        let mut views = HashMap::new();
        for (group, buffer) in self.groups.iter().zip(buffers) {
            let tensors = B::InnerBackend::views(buffer.clone(), group.stretches());
            views.extend(group.slots.iter().map(|slot| slot.id).zip(tensors));
        }
        model.map(&mut Scatter::<B> { views })
    }

    /// The weight matrices (the decayed group: every weight a product reads) rounded to
    /// `operands`, from that group's buffer `decayed`: one cast of the buffer, and each matrix
    /// a view of the copy.
    pub fn rounded_weights<B: AutodiffBackend>(
        &self,
        decayed: &Tensor<B::InnerBackend, 1>,
        operands: FloatDType,
    ) -> RoundedWeights<B>
    where
        B::InnerBackend: Gpt2Backend,
    {
        let group = &self.groups[Group::Decayed as usize];
        let views = B::InnerBackend::views(decayed.clone().cast(operands), group.stretches());
        RoundedWeights::new(group.slots.iter().zip(views).map(|(slot, view)| {
            let view = Tensor::<B::InnerBackend, 2>::from_primitive(TensorPrimitive::Float(view));
            (slot.id, Tensor::from_inner(view))
        }))
    }

    pub fn zeros<B: Backend>(&self, device: &B::Device) -> [Tensor<B, 1>; 2] {
        GROUPS.map(|group| Tensor::zeros([self.groups[group as usize].len], device))
    }
}

/// The parameters weight decay applies to: the token embedding (also the LM head) and every
/// linear layer's weight.
fn weight_matrices<B: Backend>(model: &Gpt2<B>) -> HashSet<ParamId> {
    let mut ids = HashSet::from([model.wte.weight.id]);
    for block in &model.h {
        for linear in [&block.attn.c_attn, &block.attn.c_proj, &block.mlp.c_fc, &block.mlp.c_proj] {
            ids.insert(linear.weight.id);
        }
    }
    ids
}

struct AddSlots<'a> {
    decayed: &'a HashSet<ParamId>,
    align: usize,
    layout: &'a mut Layout,
}

impl<B: Backend> ModuleVisitor<B> for AddSlots<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let group = if self.decayed.contains(&param.id) { Group::Decayed } else { Group::NotDecayed };
        let slots = &mut self.layout.groups[group as usize];
        let slot = Slot { id: param.id, shape: param.shape().dims::<D>().to_vec(), start: slots.len };
        slots.len = (slot.start + slot.len()).next_multiple_of(self.align);
        self.layout.index.insert(param.id, (group, slots.slots.len()));
        slots.slots.push(slot);
    }
}

/// A tensor for each parameter, to be gathered into flat buffers.
pub trait Source<B: AutodiffBackend> {
    fn get<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) -> Option<Tensor<B::InnerBackend, D>>;
}

/// The parameters' values.
pub struct Values;

impl<B: AutodiffBackend> Source<B> for Values {
    fn get<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) -> Option<Tensor<B::InnerBackend, D>> {
        Some(param.val().inner())
    }
}

/// Each parameter's stretch of buffers laid out as `layout`.
struct Stretches<'a, B: AutodiffBackend> {
    layout: &'a Layout,
    buffers: [Tensor<B::InnerBackend, 1>; 2],
}

impl<B: AutodiffBackend> Source<B> for Stretches<'_, B> {
    fn get<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) -> Option<Tensor<B::InnerBackend, D>> {
        let (group, slot) = self.layout.slot(param.id)?;
        let stretch = self.buffers[group as usize].clone().slice(slot.range());
        Some(stretch.reshape(Shape::from(slot.shape.clone())))
    }
}

struct Gather<'a, B: AutodiffBackend, S> {
    layout: &'a Layout,
    /// Each taken while a parameter is written into it: a buffer still referred to elsewhere
    /// would be copied whole by each write.
    buffers: [Option<Tensor<B::InnerBackend, 1>>; 2],
    source: &'a mut S,
}

impl<B: AutodiffBackend, S: Source<B>> ModuleVisitor<B> for Gather<'_, B, S> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let (group, slot) = self.layout.slot(param.id).expect("the layout was made from this model");
        if let Some(values) = self.source.get(param) {
            let buffer = &mut self.buffers[group as usize];
            *buffer = buffer.take().map(|buffer| buffer.slice_assign(slot.range(), values.reshape([-1])));
        }
    }
}

/// Each parameter replaced by its view, made beforehand for all of a buffer at once.
struct Scatter<B: AutodiffBackend> {
    views: HashMap<ParamId, FloatTensor<B::InnerBackend>>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Scatter<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let view = self.views.remove(&id).expect("the layout was made from this model");
        let view = Tensor::<B::InnerBackend, D>::from_primitive(TensorPrimitive::Float(view));
        let value = Tensor::from_inner(view).set_require_grad(tensor.is_require_grad());
        Param::from_mapped_value(id, value, mapper)
    }
}
