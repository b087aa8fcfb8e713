// minillm's front door: every policy, architecture and preset, CausalLM, the registry for
// architectures chosen at run time, and parameter reports.
//
//   #include <minillm/model.hpp>
//   minillm::MiniMind2Small model(minillm::presets::minimind2_small::config());
//   auto out = model->forward(ids, {.labels = ids});
#pragma once

#include "minillm/arch.hpp"
#include "minillm/block.hpp"
#include "minillm/causal_lm.hpp"
#include "minillm/concepts.hpp"
#include "minillm/config.hpp"
#include "minillm/core/device.hpp"
#include "minillm/core/threads.hpp"
#include "minillm/info.hpp"
#include "minillm/presets.hpp"
#include "minillm/registry.hpp"
#include "minillm/io/pretrained.hpp"
#include "minillm/io/safetensors.hpp"
