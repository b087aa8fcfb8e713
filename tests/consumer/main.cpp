// Uses the installed package: builds a preset and prints its parameter count.
#include <iostream>

#include <minillm/model.hpp>

int main() {
  auto cfg = minillm::presets::tiny::config();
  minillm::Tiny model(cfg, at::TensorOptions().device(at::kMeta));
  const auto report = minillm::report_parameters(*model, cfg);
  std::cout << "tiny: " << report.total << " parameters\n";
  return report.total > 0 ? 0 : 1;
}
