// Exact parameter counts, grouped by module, for minillm-info and the tests.
#pragma once

#include <map>
#include <set>
#include <regex>
#include <string>
#include <vector>

#include "minillm/config.hpp"
#include "minillm/core/torch.hpp"

namespace minillm {

struct ParameterGroup {
  std::string name;     // module path with layer/expert indices replaced by '*'
  int64_t each = 0;     // parameters in one instance
  int64_t count = 0;    // instances (layers x experts)
  int64_t total() const { return each * count; }
};

struct ParameterReport {
  std::vector<ParameterGroup> groups;  // in registration order
  int64_t total = 0;
  int64_t active_per_token = 0;  // total minus the routed experts a token does not use
  int64_t mtp = 0;               // in the multi-token-prediction module (included in total)
  int64_t frozen = 0;            // parameters that take no gradient (DeepSeek's router bias; included in total)
};

inline ParameterReport report_parameters(const torch::nn::Module& m, const ModelConfig& c) {
  static const std::regex index_re(R"(\.(\d+)\.)");
  ParameterReport r;
  std::map<std::string, size_t> slot;                   // group name -> index in r.groups
  std::vector<std::set<std::string>> instances;         // concrete module paths per group
  int64_t routed = 0;
  for (const auto& item : m.named_parameters(/*recurse=*/true)) {
    const auto& key = item.key();
    const auto path = key.substr(0, key.rfind('.'));
    auto name = std::regex_replace(path + ".", index_re, ".*.");
    name.pop_back();
    auto [it, inserted] = slot.try_emplace(name, r.groups.size());
    if (inserted) {
      r.groups.push_back({name, 0, 0});
      instances.emplace_back();
    }
    const int64_t n = item.value().numel();
    r.groups[it->second].each += n;  // summed over instances here, divided below
    instances[it->second].insert(path);
    r.total += n;
    if (key.rfind("mtp.", 0) == 0) r.mtp += n;
    if (!item.value().requires_grad()) r.frozen += n;
    else if (key.find(".mlp.experts.") != std::string::npos) routed += n;
  }
  for (size_t i = 0; i < r.groups.size(); ++i) {
    r.groups[i].count = static_cast<int64_t>(instances[i].size());
    r.groups[i].each /= r.groups[i].count;
  }
  r.active_per_token = r.total;
  if (routed > 0 && c.num_experts > 0)
    r.active_per_token = r.total - routed + routed / c.num_experts * c.num_experts_per_tok;
  return r;
}

// "25,829,888"
inline std::string with_commas(int64_t v) {
  const auto digits = std::to_string(v < 0 ? -v : v);
  std::string out(v < 0 ? 1 : 0, '-');
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

}  // namespace minillm
