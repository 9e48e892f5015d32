//! The learning rate of each optimizer step: transformers' schedules with warmup.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Linear,
    Cosine,
    Constant,
}

#[derive(Debug, Clone, Copy)]
pub struct LrSchedule {
    pub kind: ScheduleKind,
    pub peak: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// The rate of optimizer step `step` (counted from 0): `peak · step / warmup` during warmup,
    /// then decaying to 0 at `total_steps` (linear or cosine) or staying at `peak`. These are
    /// `get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup` and
    /// `get_constant_schedule_with_warmup` as the Trainer steps them, so step 0 of a warmup
    /// updates only Adam's moments.
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps as f64;
        }
        let progress =
            (step - self.warmup_steps) as f64 / (self.total_steps.saturating_sub(self.warmup_steps)).max(1) as f64;
        let factor = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => 1.0 - progress,
            ScheduleKind::Cosine => 0.5 * (1.0 + (PI * progress).cos()),
        };
        self.peak * factor.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> LrSchedule {
        LrSchedule { kind, peak: 1.0, warmup_steps: 4, total_steps: 12 }
    }

    #[test]
    fn warmup_rises_from_zero_then_each_kind_decays_as_transformers_does() {
        let linear = schedule(ScheduleKind::Linear);
        let rates: Vec<f64> = (0..13).map(|s| linear.at(s)).collect();
        assert_eq!(rates[..5], [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(rates[8], 0.5);
        assert_eq!(rates[12], 0.0);
        let cosine = schedule(ScheduleKind::Cosine);
        assert!((cosine.at(8) - 0.5).abs() < 1e-12 && cosine.at(12).abs() < 1e-12 && cosine.at(5) > 0.95);
        let constant = schedule(ScheduleKind::Constant);
        assert_eq!((constant.at(2), constant.at(11)), (0.5, 1.0));
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = LrSchedule { kind: ScheduleKind::Linear, peak: 2.0, warmup_steps: 0, total_steps: 4 };
        assert_eq!([s.at(0), s.at(1), s.at(3)], [2.0, 1.5, 0.5]);
    }
}
