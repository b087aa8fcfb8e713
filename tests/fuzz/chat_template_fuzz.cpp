// libFuzzer target for the Jinja chat-template engine (no LibTorch needed): any input, parsed as a
// template and rendered over a fixed conversation with tools, must either render or throw
// TemplateError — no crash, no hang past the step budget, no output past the size cap.
//   scripts/fuzz.sh chat-template [seconds]
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "minillm/tokenizer/jinja.hpp"

namespace {
const minillm::jinja::json& variables() {
  static const auto v = minillm::jinja::json::parse(R"({
    "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": true, "documents": null,
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "天气？ <tool_response>x</tool_response>"},
                 {"role": "assistant", "content": null, "reasoning_content": "hm",
                  "tool_calls": [{"type": "function", "function": {"name": "get", "arguments": {"city": "北京", "n": 1.5}}}]},
                 {"role": "tool", "content": "3"}, {"role": "assistant", "content": "<think>a</think>\n\nok"}],
    "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object", "required": ["city"]}}}]})");
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  try {
    const minillm::jinja::Template t(source, "fuzz", {.max_steps = 20000, .max_output = 1 << 16, .max_depth = 16, .max_parse_depth = 64});
    const auto out = t.render(variables());
    if (out.size() > (1u << 16)) std::abort();  // the output cap let more through
  } catch (const minillm::jinja::TemplateError&) {
  }
  return 0;
}
