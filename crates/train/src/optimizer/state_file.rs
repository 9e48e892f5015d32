//! AdamW's state in a checkpoint: the step count and each group's moments, flat, with the ids
//! of the parameters in buffer order (those of the model saved beside it), in burn's record
//! format at full precision. Checkpoints saved before the buffers were flat hold burn's own
//! AdamW records, one file a group; they are read into the flat buffers, so those runs resume.
//! States saved before the parameters started at CUDA's alignment (2026-12-04) are moved into
//! the current layout ([`Layout::former`]).

use super::{
    layout::{Group, Layout, Source, GROUPS},
    GroupedAdamW, Moments,
};
use anyhow::{bail, Context, Result};
use burn::{
    module::{Param, ParamId},
    optim::{adaptor::OptimizerAdaptor, AdamW as BurnAdamW},
    prelude::*,
    record::{FullPrecisionSettings, NamedMpkFileRecorder, Record, Recorder},
    tensor::backend::AutodiffBackend,
};
use gpt2::Gpt2;
use std::{path::Path, sync::Arc};

const FILE: &str = "adamw";

#[derive(Record)]
struct AdamWRecord<B: Backend> {
    steps: u64,
    /// Empty before the first step.
    groups: Vec<GroupRecord<B>>,
}

#[derive(Record)]
struct GroupRecord<B: Backend> {
    params: Vec<u64>,
    first_moment: Tensor<B, 1>,
    second_moment: Tensor<B, 1>,
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

impl<B: AutodiffBackend> GroupedAdamW<B> {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let groups = match (&self.layout, &self.moments) {
            (Some(layout), Some(moments)) => GROUPS
                .iter()
                .zip(moments)
                .map(|(&group, moments)| GroupRecord {
                    params: layout.ids(group).iter().map(ParamId::val).collect(),
                    first_moment: moments.first.clone(),
                    second_moment: moments.second.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let record = AdamWRecord::<B::InnerBackend> { steps: self.steps, groups };
        recorder().record(record, dir.join(FILE)).context("saving the optimizer state")
    }

    /// The state saved in `dir` beside `model`, the model loaded from there.
    pub fn load(mut self, dir: &Path, model: &Gpt2<B>, device: &B::Device) -> Result<Self> {
        let file = dir.join(FILE).with_extension("mpk");
        if !file.exists() && dir.join(format!("{}.mpk", old::DECAYED_FILE)).exists() {
            return old::load(self, dir, model, device);
        }
        let record: AdamWRecord<B::InnerBackend> = recorder()
            .load(file.clone(), device)
            .with_context(|| format!("loading the optimizer state {}", file.display()))?;
        self.steps = record.steps;
        if record.groups.is_empty() {
            return Ok(self);
        }
        let Ok(groups) = <[GroupRecord<B::InnerBackend>; 2]>::try_from(record.groups) else {
            bail!("{}: the optimizer state has the wrong number of parameter groups", file.display())
        };
        let layout = Layout::of(model);
        let moments = match layout_differs(&groups, &layout) {
            None => groups.map(GroupRecord::into_moments),
            Some(group) => {
                let former = Layout::former(model);
                if layout_differs(&groups, &former).is_some() {
                    bail!(
                        "{}: the optimizer state is not that of the model saved beside it (its {group:?} parameters differ)",
                        file.display()
                    );
                }
                // Saved before the parameters' starts moved to CUDA's alignment.
                relaid(groups.map(GroupRecord::into_moments), &former, &layout, model, device)
            }
        };
        self.moments = Some(moments);
        self.layout = Some(Arc::new(layout));
        Ok(self)
    }
}

impl<B: Backend> GroupRecord<B> {
    fn into_moments(self) -> Moments<B> {
        Moments { first: self.first_moment, second: self.second_moment }
    }
}

/// Each group's moments, laid out as `from`, laid out as `to`: each parameter's moments moved
/// to where it starts there.
fn relaid<B: AutodiffBackend>(
    moments: [Moments<B::InnerBackend>; 2],
    from: &Layout,
    to: &Layout,
    model: &Gpt2<B>,
    device: &B::Device,
) -> [Moments<B::InnerBackend>; 2] {
    let [decayed, not_decayed] = moments;
    let [decayed_first, not_decayed_first] = to.relaid(model, from, [decayed.first, not_decayed.first], device);
    let [decayed_second, not_decayed_second] = to.relaid(model, from, [decayed.second, not_decayed.second], device);
    [
        Moments { first: decayed_first, second: decayed_second },
        Moments { first: not_decayed_first, second: not_decayed_second },
    ]
}

/// The first group whose saved parameters or moments' lengths are not `layout`'s.
fn layout_differs<B: Backend>(groups: &[GroupRecord<B>; 2], layout: &Layout) -> Option<Group> {
    GROUPS.into_iter().zip(groups).find_map(|(group, saved)| {
        let ids: Vec<u64> = layout.ids(group).iter().map(ParamId::val).collect();
        let len = layout.groups[group as usize].len;
        let same = saved.params == ids && saved.first_moment.dims() == [len] && saved.second_moment.dims() == [len];
        (!same).then_some(group)
    })
}

/// Checkpoints of versions that used burn's AdamW, one optimizer a group.
mod old {
    use super::*;

    pub const DECAYED_FILE: &str = "adamw-decayed";
    const NOT_DECAYED_FILE: &str = "adamw-not-decayed";

    type Records<B> = <OptimizerAdaptor<BurnAdamW, Gpt2<B>, B> as burn::optim::Optimizer<Gpt2<B>, B>>::Record;

    pub fn load<B: AutodiffBackend>(
        mut optimizer: GroupedAdamW<B>,
        dir: &Path,
        model: &Gpt2<B>,
        device: &B::Device,
    ) -> Result<GroupedAdamW<B>> {
        let mut records = Records::<B>::new();
        for file in [DECAYED_FILE, NOT_DECAYED_FILE] {
            let path = dir.join(file);
            let group: Records<B> = recorder()
                .load(path.clone(), device)
                .with_context(|| format!("loading the optimizer state {}", path.display()))?;
            records.extend(group);
        }
        if records.is_empty() {
            return Ok(optimizer);
        }
        let layout = Layout::of(model);
        let mut first = OldMoments { records: &records, second: false, steps: None };
        let first_moments = layout.gather(model, &mut first, device);
        let mut second = OldMoments { records: &records, second: true, steps: None };
        let second_moments = layout.gather(model, &mut second, device);
        let Some(steps) = first.steps else {
            bail!("{}: the optimizer state is not that of the model saved beside it", dir.display())
        };
        optimizer.steps = steps as u64;
        optimizer.moments = Some(
            first_moments
                .into_iter()
                .zip(second_moments)
                .map(|(first, second)| Moments { first, second })
                .collect::<Vec<_>>()
                .try_into()
                .expect("two groups"),
        );
        optimizer.layout = Some(Arc::new(layout));
        Ok(optimizer)
    }

    /// One of the moments from burn's records, parameter by parameter.
    struct OldMoments<'a, B: AutodiffBackend> {
        records: &'a Records<B>,
        second: bool,
        /// burn counts steps per parameter; they are all the same.
        steps: Option<usize>,
    }

    impl<B: AutodiffBackend> Source<B> for OldMoments<'_, B> {
        fn get<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) -> Option<Tensor<B::InnerBackend, D>> {
            let momentum = self.records.get(&param.id)?.clone().into_state::<D>().momentum;
            self.steps = Some(momentum.time);
            Some(if self.second { momentum.moment_2 } else { momentum.moment_1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{model, step, values, B, SETTINGS};
    use super::*;

    #[test]
    fn a_state_saved_in_the_former_layout_resumes_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let mut optimizer = GroupedAdamW::new(SETTINGS);
        let (trained, _) = step(&mut optimizer, model(), &[0], 1.0);
        let device = Default::default();
        let (layout, former) = (Layout::of(&trained), Layout::former(&trained));
        assert_ne!(layout.groups.each_ref().map(|group| group.len), former.groups.each_ref().map(|group| group.len));
        let moments = relaid(optimizer.moments.clone().unwrap(), &layout, &former, &trained, &device);
        let saved_before = GroupedAdamW::<B> {
            steps: optimizer.steps,
            layout: Some(Arc::new(former)),
            moments: Some(moments),
            ..GroupedAdamW::new(SETTINGS)
        };
        saved_before.save(dir.path()).unwrap();

        let mut resumed = GroupedAdamW::new(SETTINGS).load(dir.path(), &trained, &device).unwrap();
        let (ours, _) = step(&mut resumed, trained.clone(), &[1], 1.0);
        let (theirs, _) = step(&mut optimizer, trained.clone(), &[1], 1.0);
        assert_eq!(values(&ours), values(&theirs), "resumed bit for bit");
    }
}
