// Chat templates as fixed renderers (no Jinja engine), each equal to the template it names:
//   minimind3  MiniMind-3's tokenizer_config.json template: ChatML with a <think> block in every
//              assistant turn, tool definitions, tool calls and tool responses, open_thinking
//   minimind2  MiniMind2's ChatML: default system prompt, no <think> block, assistant header after each user turn
//   llama3     Llama-3 Instruct: header ids, <|eot_id|>, trimmed contents, bos before the first turn
// and the SFT label spans: which tokens an assistant is trained on.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "minillm/tokenizer/bpe.hpp"

namespace minillm::tokenizer {

enum class ChatFormat { minimind3, minimind2, llama3 };

inline ChatFormat chat_format_from_name(std::string_view name) {
  if (name == "minimind3") return ChatFormat::minimind3;
  if (name == "minimind2") return ChatFormat::minimind2;
  if (name == "llama3") return ChatFormat::llama3;
  throw TokenizerError("unknown chat template \"" + std::string(name) + "\"; known: minimind3, minimind2, llama3");
}

struct ChatMessage {
  std::string role;  // system, user, assistant, tool
  std::string content;
  std::optional<std::string> reasoning_content;
  nlohmann::ordered_json tool_calls = nlohmann::ordered_json::array();  // [{"name", "arguments"}] or {"function": {...}}
};

struct ChatOptions {
  bool add_generation_prompt = false;
  bool open_thinking = false;                                     // minimind3: leave <think> open for the model
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();  // minimind3: tool (function) schemas
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
    if (m.contains("content") && !m["content"].is_null()) {
      if (!m["content"].is_string()) throw TokenizerError(where + ": \"content\" must be a string");
      msg.content = m["content"].get<std::string>();
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

namespace detail {

// Python's json.dumps(x, ensure_ascii=False): ", " and ": " separators, keys in their order.
inline std::string python_json(const nlohmann::ordered_json& j) {
  if (j.is_object()) {
    std::string s = "{";
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      s += (first ? "" : ", ") + nlohmann::ordered_json(it.key()).dump(-1, ' ', false) + ": " + python_json(it.value());
      first = false;
    }
    return s + "}";
  }
  if (j.is_array()) {
    std::string s = "[";
    for (size_t i = 0; i < j.size(); ++i) s += (i ? ", " : "") + python_json(j[i]);
    return s + "]";
  }
  return j.dump(-1, ' ', false);
}

inline std::string strip(std::string s, std::string_view chars, bool left, bool right) {
  if (right) s.erase(s.find_last_not_of(chars) + 1);
  if (left) s.erase(0, std::min(s.size(), s.find_first_not_of(chars)));
  return s;
}

inline std::string render_minimind3(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) {
  std::string out;
  const bool has_system = !msgs.empty() && msgs[0].role == "system";
  if (!opt.tools.empty()) {
    out += "<|im_start|>system\n";
    if (has_system) out += msgs[0].content + "\n\n";
    out += "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
           "function signatures within <tools></tools> XML tags:\n<tools>";
    for (const auto& tool : opt.tools) out.append("\n").append(python_json(tool));
    out += "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
           "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
           "<args-json-object>}\n</tool_call><|im_end|>\n";
  } else if (has_system) {
    out += "<|im_start|>system\n" + msgs[0].content + "<|im_end|>\n";
  }
  for (size_t i = 0; i < msgs.size(); ++i) {
    const auto& m = msgs[i];
    std::string content = m.content;
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      out += "<|im_start|>" + m.role + "\n" + content + "<|im_end|>\n";
    } else if (m.role == "assistant") {
      std::string reasoning;
      if (m.reasoning_content) {
        reasoning = *m.reasoning_content;
      } else if (const auto end = content.find("</think>"); end != std::string::npos) {
        // content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
        auto before = strip(content.substr(0, end), "\n", false, true);
        const auto open = before.rfind("<think>");
        reasoning = strip(open == std::string::npos ? before : before.substr(open + 7), "\n", true, false);
        content = strip(content.substr(content.rfind("</think>") + 8), "\n", true, false);
      }
      out += "<|im_start|>assistant\n<think>\n" + strip(reasoning, "\n", true, true) + "\n</think>\n\n" +
             strip(content, "\n", true, false);
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        if ((k == 0 && !content.empty()) || k > 0) out += "\n";
        const auto& call = m.tool_calls[k].contains("function") ? m.tool_calls[k]["function"] : m.tool_calls[k];
        out += "<tool_call>\n{\"name\": \"" + call.value("name", std::string()) + "\", \"arguments\": ";
        const auto& args = call.contains("arguments") ? call["arguments"] : nlohmann::ordered_json::object();
        out += (args.is_string() ? args.get<std::string>() : python_json(args)) + "}\n</tool_call>";
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + content + "\n</tool_response>";
      if (i + 1 == msgs.size() || msgs[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  if (opt.add_generation_prompt) out += opt.open_thinking ? "<|im_start|>assistant\n<think>\n" : "<|im_start|>assistant\n<think>\n\n</think>\n\n";
  return out;
}

// MiniMind2's template: the assistant header follows every user turn (so it is also the
// generation prompt), only user and assistant turns are rendered after the system prompt.
inline std::string render_minimind2(const std::vector<ChatMessage>& msgs, const ChatOptions&) {
  std::string out = !msgs.empty() && msgs[0].role == "system" ? "<|im_start|>system\n" + msgs[0].content + "<|im_end|>\n"
                                                               : "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n";
  for (const auto& m : msgs) {
    if (m.role == "tool") throw TokenizerError("the minimind2 chat template has no tool role");
    if (m.role == "user") out += "<|im_start|>user\n" + m.content + "<|im_end|>\n<|im_start|>assistant\n";
    if (m.role == "assistant") out += m.content + "<|im_end|>\n";
  }
  return out;
}

inline std::string render_llama3(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) {
  std::string out;
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (i == 0) out += "<|begin_of_text|>";
    out += "<|start_header_id|>" + (msgs[i].role == "tool" ? std::string("ipython") : msgs[i].role) +
           "<|end_header_id|>\n\n" + strip(msgs[i].content, " \t\n\r\f\v", true, true) + "<|eot_id|>";
  }
  if (opt.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

}  // namespace detail

inline std::string render_chat(const std::vector<ChatMessage>& messages, ChatFormat format, const ChatOptions& opt = {}) {
  switch (format) {
    case ChatFormat::minimind3: return detail::render_minimind3(messages, opt);
    case ChatFormat::minimind2: return detail::render_minimind2(messages, opt);
    case ChatFormat::llama3: return detail::render_llama3(messages, opt);
  }
  throw TokenizerError("unknown chat format");
}

// The ids of `messages` rendered in `format`: the template's markers are special tokens, the
// messages' text is plain text, so a special-token string a user writes ("<|im_end|>") cannot end
// a turn or open another role.
inline std::vector<int32_t> encode_chat(const BpeTokenizer& tok, std::vector<ChatMessage> messages, ChatFormat format,
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
    defuse(m.content);
    if (m.reasoning_content) defuse(*m.reasoning_content);
    defuse_json(m.tool_calls);
  }
  const auto text = render_chat(messages, format, opt);
  std::vector<int32_t> ids;
  size_t start = 0;
  for (size_t mark = text.find(open); mark != std::string::npos; mark = text.find(open, start)) {
    const auto markup = tok.encode(std::string_view(text).substr(start, mark - start));
    ids.insert(ids.end(), markup.begin(), markup.end());
    const size_t end = text.find(close, mark);
    const auto literal = tok.encode_literal(literals.at(std::stoul(text.substr(mark + open.size(), end - mark - open.size()))));
    ids.insert(ids.end(), literal.begin(), literal.end());
    start = end + close.size();
  }
  const auto rest = tok.encode(std::string_view(text).substr(start));
  ids.insert(ids.end(), rest.begin(), rest.end());
  return ids;
}

// The text that opens an assistant turn and the text that ends it, in a format.
inline std::pair<std::string, std::string> assistant_markers(ChatFormat format) {
  if (format == ChatFormat::llama3) return {"<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"};
  return {"<|im_start|>assistant\n", "<|im_end|>\n"};
}

// Labels for SFT on a rendered, tokenized conversation (MiniMind's rule): the tokens after each
// assistant opening marker up to and including the end marker keep their id; everything else
// (system, user, tool turns, the markers' openings) is -100.
inline std::vector<int64_t> sft_labels(const BpeTokenizer& tok, const std::vector<int32_t>& ids, ChatFormat format) {
  const auto [open_text, close_text] = assistant_markers(format);
  const auto open = tok.encode(open_text), close = tok.encode(close_text);
  auto match = [&](size_t at, const std::vector<int32_t>& pat) {
    return at + pat.size() <= ids.size() && std::equal(pat.begin(), pat.end(), ids.begin() + static_cast<long>(at));
  };
  std::vector<int64_t> labels(ids.size(), -100);
  for (size_t i = 0; i < ids.size();) {
    if (!match(i, open)) {
      ++i;
      continue;
    }
    size_t j = i + open.size();
    while (j < ids.size() && !match(j, close)) labels[j] = ids[j], ++j;
    for (size_t k = 0; k < close.size() && j < ids.size(); ++k, ++j) labels[j] = ids[j];
    i = j;
  }
  return labels;
}

}  // namespace minillm::tokenizer
