// The narrow set of LibTorch headers the library needs (not <torch/torch.h>: it costs ~13 s and
// ~1.1 GB of compiler memory per translation unit), plus version gates for the 1.13 / 2.x split.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <torch/version.h>

#define MINILLM_TORCH_AT_LEAST(MAJ, MIN) \
  (TORCH_VERSION_MAJOR > (MAJ) || (TORCH_VERSION_MAJOR == (MAJ) && TORCH_VERSION_MINOR >= (MIN)))

namespace minillm {

// For the fallback branch of tag-dispatched templates: GCC 12 rejects static_assert(false) even in
// discarded branches.
template <class...>
inline constexpr bool dependent_false = false;

}  // namespace minillm
