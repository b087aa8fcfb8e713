// Chat templates: a conversation rendered to text by a Jinja chat template (a model directory's
// own tokenizer_config.json "chat_template", or one of the built-in formats by name), rendered as
// transformers' apply_chat_template does (minillm/tokenizer/jinja.hpp); and the SFT label spans:
// which characters of the rendering an assistant is trained on.
#pragma once

#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "minillm/tokenizer/bpe.hpp"
#include "minillm/tokenizer/jinja.hpp"

namespace minillm::tokenizer {

struct ChatMessage {
  std::string role;  // system, user, assistant, tool
  nlohmann::ordered_json content = "";  // a string, or null (an assistant turn that only calls tools)
  std::optional<std::string> reasoning_content;
  nlohmann::ordered_json tool_calls = nlohmann::ordered_json::array();  // [{"name", "arguments"}] or {"function": {...}}
};

struct ChatOptions {
  bool add_generation_prompt = false;
  bool open_thinking = false;                                     // sets the template variable open_thinking (MiniMind-3: leave <think> open)
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();  // tool (function) schemas: the variable `tools`
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();  // more template variables (e.g. enable_thinking)
};

// Messages from OpenAI / MiniMind JSON: [{"role", "content", "reasoning_content"?, "tool_calls"?}].
// Throws naming the message index and the problem.
inline std::vector<ChatMessage> chat_messages_from_json(const nlohmann::ordered_json& j) {
  if (!j.is_array()) throw TokenizerError("messages must be a JSON array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& m = j[i];
    const auto where = "message " + std::to_string(i);
    if (!m.is_object()) throw TokenizerError(where + " is not an object");
    if (!m.contains("role") || !m["role"].is_string()) throw TokenizerError(where + " has no \"role\" string");
    ChatMessage msg;
    msg.role = m["role"].get<std::string>();
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      throw TokenizerError(where + " has unknown role \"" + msg.role + "\" (system, user, assistant, tool)");
    if (m.contains("content")) {
      if (!m["content"].is_string() && !m["content"].is_null()) throw TokenizerError(where + ": \"content\" must be a string");
      msg.content = m["content"];
    }
    if (m.contains("reasoning_content") && m["reasoning_content"].is_string())
      msg.reasoning_content = m["reasoning_content"].get<std::string>();
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      if (!m["tool_calls"].is_array()) throw TokenizerError(where + ": \"tool_calls\" must be an array");
      msg.tool_calls = m["tool_calls"];
    }
    out.push_back(std::move(msg));
  }
  return out;
}

// The messages as the template sees them: absent fields stay absent.
inline nlohmann::ordered_json chat_messages_to_json(const std::vector<ChatMessage>& messages) {
  auto out = nlohmann::ordered_json::array();
  for (const auto& m : messages) {
    nlohmann::ordered_json j = {{"role", m.role}, {"content", m.content}};
    if (m.reasoning_content) j["reasoning_content"] = *m.reasoning_content;
    if (!m.tool_calls.empty()) j["tool_calls"] = m.tool_calls;
    out.push_back(std::move(j));
  }
  return out;
}

// A compiled chat template with the variables apply_chat_template gives it besides the
// conversation: the special tokens of tokenizer_config.json (bos_token, eos_token, ...).
class ChatTemplate {
 public:
  ChatTemplate() = default;
  ChatTemplate(std::string_view source, std::string name, nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object())
      : name_(name), template_(source, std::move(name)), special_tokens_(std::move(special_tokens)) {}

  const std::string& name() const { return name_; }

  std::string render(const nlohmann::ordered_json& messages, const ChatOptions& opt = {}) const {
    return template_.render(variables(messages, opt));
  }
  std::string render(const std::vector<ChatMessage>& messages, const ChatOptions& opt = {}) const {
    return render(chat_messages_to_json(messages), opt);
  }
  jinja::Template::Result render_with_spans(const nlohmann::ordered_json& messages, const ChatOptions& opt) const {
    return template_.render_with_spans(variables(messages, opt));
  }

 private:
  std::string name_;
  jinja::Template template_;
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();

  // As transformers: the special tokens, then messages, tools (None when there are none),
  // documents, add_generation_prompt and the extra keyword arguments.
  nlohmann::ordered_json variables(const nlohmann::ordered_json& messages, const ChatOptions& opt) const {
    nlohmann::ordered_json v = special_tokens_;
    v["messages"] = messages;
    v["tools"] = opt.tools.empty() ? nlohmann::ordered_json(nullptr) : opt.tools;
    v["documents"] = nullptr;
    v["add_generation_prompt"] = opt.add_generation_prompt;
    if (opt.open_thinking) v["open_thinking"] = true;
    for (auto it = opt.variables.begin(); it != opt.variables.end(); ++it) v[it.key()] = it.value();
    return v;
  }
};

inline std::string render_chat(const std::vector<ChatMessage>& messages, const ChatTemplate& tpl, const ChatOptions& opt = {}) {
  return tpl.render(messages, opt);
}

// The ids of `messages` rendered by `tpl`: the template's markers are special tokens, the
// messages' text is plain text, so a special-token string a user writes ("<|im_end|>") cannot end
// a turn or open another role.
inline std::vector<int32_t> encode_chat(const BpeTokenizer& tok, std::vector<ChatMessage> messages, const ChatTemplate& tpl,
                                        const ChatOptions& opt = {}) {
  // Each special-token string in a message (and each U+E000, the placeholder's mark) is rendered
  // as a placeholder U+E000 <index> U+E001, then encoded as the literal text it stands for.
  static constexpr std::string_view open = "\xEE\x80\x80", close = "\xEE\x80\x81";
  std::vector<std::string> literals;
  auto next_literal = [&](std::string_view text, size_t from) {
    auto [pos, len] = tok.find_special(text, from);
    if (const auto mark = text.find(open, from); mark < pos) return std::pair{mark, open.size()};
    return std::pair{pos, len};
  };
  auto defuse = [&](std::string& text) {
    std::string out;
    size_t start = 0;
    for (auto [pos, len] = next_literal(text, 0); pos != std::string::npos; std::tie(pos, len) = next_literal(text, start)) {
      out.append(text, start, pos - start);
      out += std::string(open) + std::to_string(literals.size()) + std::string(close);
      literals.push_back(text.substr(pos, len));
      start = pos + len;
    }
    text = out + text.substr(start);
  };
  std::function<void(nlohmann::ordered_json&)> defuse_json = [&](nlohmann::ordered_json& j) {
    if (j.is_string()) defuse(j.get_ref<std::string&>());
    else if (j.is_structured())
      for (auto& x : j) defuse_json(x);
  };
  for (auto& m : messages) {
    defuse_json(m.content);
    if (m.reasoning_content) defuse(*m.reasoning_content);
    defuse_json(m.tool_calls);
  }
  const auto text = tpl.render(messages, opt);
  std::vector<int32_t> ids;
  size_t start = 0;
  for (size_t mark = text.find(open); mark != std::string::npos; mark = text.find(open, start)) {
    const auto markup = tok.encode(std::string_view(text).substr(start, mark - start));
    ids.insert(ids.end(), markup.begin(), markup.end());
    // A template that slices message text may cut a placeholder: refuse rather than guess.
    const size_t end = text.find(close, mark);
    const auto digits = std::string_view(text).substr(mark + open.size(), end == std::string::npos ? 0 : end - mark - open.size());
    size_t index = literals.size();
    if (!digits.empty() && digits.size() <= 9 && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      index = std::stoul(std::string(digits));
    if (index >= literals.size())
      throw TokenizerError(tpl.name() + ": the template cut a special-token string of a message apart; cannot encode it as text");
    const auto literal = tok.encode_literal(literals[index]);
    ids.insert(ids.end(), literal.begin(), literal.end());
    start = end + close.size();
  }
  const auto rest = tok.encode(std::string_view(text).substr(start));
  ids.insert(ids.end(), rest.begin(), rest.end());
  return ids;
}

// A rendered conversation and the byte ranges of it an assistant is trained on.
struct RenderedChat {
  std::string text;
  std::vector<jinja::Span> assistant_spans;
};

namespace detail {
inline size_t common_prefix(std::string_view a, std::string_view b) {
  return static_cast<size_t>(std::mismatch(a.begin(), a.begin() + static_cast<long>(std::min(a.size(), b.size())), b.begin()).first - a.begin());
}
}  // namespace detail

// The conversation rendered, with the spans of its assistant turns. A template with
// {% generation %} blocks marks them itself (transformers' return_assistant_tokens_mask). Any other
// template is rendered incrementally: for assistant message k, the span starts where the prompt a
// model would get for it (messages[0, k) with the generation prompt) stops agreeing with the full
// rendering, and ends where the rendering of messages[0, k] stops agreeing with it. So the label
// excludes whatever the generation prompt already supplies (an empty <think> block, say) and
// includes the turn's closing tokens. When the turn renders differently once later turns follow
// (Qwen3 drops the <think> block of earlier turns), the span ends after the longest tail of its
// last-turn rendering found at its start in the full rendering. A turn none of whose text is
// found leaves an empty span, which is an error.
inline RenderedChat render_chat_for_training(const std::vector<ChatMessage>& messages, const ChatTemplate& tpl,
                                             const ChatOptions& opt = {}) {
  const auto msgs = chat_messages_to_json(messages);
  auto full = tpl.render_with_spans(msgs, opt);
  RenderedChat out{std::move(full.text), std::move(full.generation_spans)};
  if (!out.assistant_spans.empty()) return out;
  ChatOptions prompt_opt = opt, turn_opt = opt;
  prompt_opt.add_generation_prompt = true;
  turn_opt.add_generation_prompt = false;
  for (size_t k = 0; k < messages.size(); ++k) {
    if (messages[k].role != "assistant") continue;
    const auto head = nlohmann::ordered_json(msgs.begin(), msgs.begin() + static_cast<long>(k));
    const auto upto = nlohmann::ordered_json(msgs.begin(), msgs.begin() + static_cast<long>(k + 1));
    const auto prompt = tpl.render(head, prompt_opt), turn = tpl.render(upto, turn_opt);
    const size_t begin = detail::common_prefix(prompt, out.text);
    size_t end = detail::common_prefix(turn, out.text);
    if (end < turn.size()) {
      // The turn renders differently once later turns follow (Qwen3 drops an earlier turn's <think>
      // block): it ends with the longest tail of its last-turn rendering that follows `begin`.
      const std::string_view tail = std::string_view(turn).substr(std::min(turn.size(), detail::common_prefix(prompt, turn)));
      for (size_t i = 0; i < tail.size(); ++i)
        if (out.text.compare(begin, tail.size() - i, tail, i, tail.size() - i) == 0) {
          end = begin + tail.size() - i;
          break;
        }
    }
    if (end <= begin)
      throw TokenizerError(tpl.name() + ": cannot find the text of assistant message " + std::to_string(k) +
                           " in the rendering (the template renders it differently once later turns follow); "
                           "mark it with {% generation %} or choose a built-in template with --template");
    out.assistant_spans.push_back({begin, end});
  }
  return out;
}

// Labels for SFT on the tokens of a rendered conversation: a token whose first byte lies in an
// assistant span keeps its id, every other token is -100.
inline std::vector<int64_t> sft_labels(const BpeTokenizer& tok, const std::vector<int32_t>& ids,
                                       const std::vector<jinja::Span>& spans) {
  std::vector<int64_t> labels(ids.size(), -100);
  size_t offset = 0, s = 0;
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    while (s < spans.size() && spans[s].end <= offset) ++s;
    if (s < spans.size() && spans[s].begin <= offset) labels[i] = ids[i];
    bytes.clear();
    tok.append_token_bytes(ids[i], false, bytes);
    offset += bytes.size();
  }
  return labels;
}

}  // namespace minillm::tokenizer
