// Learning-rate schedules, as functions of the optimiser step.
//   minimind_cosine  MiniMind's get_lr: lr * (0.1 + 0.45 * (1 + cos(pi * step / total))), no warmup:
//                    lr at step 0, 0.1 lr at the end
//   warmup_cosine    linear warmup to lr over warmup_steps, then cosine down to min_lr_ratio * lr
//   constant         lr
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <stdexcept>
#include <string>
#include <string_view>

namespace minillm::train {

enum class LrSchedule { minimind_cosine, warmup_cosine, constant };

inline LrSchedule lr_schedule_from_name(std::string_view name) {
  if (name == "minimind_cosine") return LrSchedule::minimind_cosine;
  if (name == "warmup_cosine") return LrSchedule::warmup_cosine;
  if (name == "constant") return LrSchedule::constant;
  throw std::invalid_argument("unknown lr schedule \"" + std::string(name) +
                              "\"; known: minimind_cosine, warmup_cosine, constant");
}

struct ScheduleOptions {
  LrSchedule kind = LrSchedule::minimind_cosine;
  double lr = 5e-4;
  int64_t total_steps = 1000;
  int64_t warmup_steps = 0;    // warmup_cosine only
  double min_lr_ratio = 0.1;   // warmup_cosine: the floor, as a fraction of lr
};

inline double learning_rate(const ScheduleOptions& s, int64_t step) {
  if (s.total_steps < 1) throw std::invalid_argument("total_steps (" + std::to_string(s.total_steps) + ") must be positive");
  const double pi = std::numbers::pi;
  switch (s.kind) {
    case LrSchedule::constant:
      return s.lr;
    case LrSchedule::minimind_cosine:
      return s.lr * (0.1 + 0.45 * (1.0 + std::cos(pi * static_cast<double>(step) / static_cast<double>(s.total_steps))));
    case LrSchedule::warmup_cosine: {
      if (step < s.warmup_steps) return s.lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
      const double span = std::max<int64_t>(1, s.total_steps - s.warmup_steps);
      const double progress = std::clamp(static_cast<double>(step - s.warmup_steps) / span, 0.0, 1.0);
      const double floor = s.lr * s.min_lr_ratio;
      return floor + (s.lr - floor) * 0.5 * (1.0 + std::cos(pi * progress));
    }
  }
  return s.lr;
}

}  // namespace minillm::train
