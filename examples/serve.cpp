// minillm-serve: an OpenAI-compatible HTTP server for a checkpoint.
//   minillm-serve --model runs/sft/checkpoint-00000500 [--host 127.0.0.1] [--port 8000] [--api-key KEY]
// Routes: POST /v1/chat/completions (stream: SSE chunks ending with "data: [DONE]"),
// POST /v1/completions, GET /v1/models, GET /health. Requests are validated and answered with
// OpenAI-style error JSON; generations run one at a time in arrival order (the rest wait, up to
// --max-queue); a streaming client that disconnects stops its generation.
#include "inference_cli.hpp"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace {

using json = nlohmann::ordered_json;
namespace infer = minillm::infer;
namespace tk = minillm::tokenizer;

// A request the server refuses: HTTP status, OpenAI error type, message and the offending field.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, const std::string& message, std::string param = {})
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)) {}
  int status;
  std::string type, param;
};

ApiError invalid(const std::string& message, const std::string& param = {}) {
  return {400, "invalid_request_error", message, param};
}

std::string error_body(const std::string& message, const std::string& type, const std::string& param = {}) {
  return json{{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? json() : json(param)}, {"code", nullptr}}}}
      .dump();
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// First come, first served: each generation takes a ticket and waits for its turn.
class FairQueue {
 public:
  explicit FairQueue(size_t max_waiting) : max_waiting_(max_waiting) {}
  class Turn {
   public:
    explicit Turn(FairQueue& q) : q_(q) {
      std::unique_lock lock(q_.mutex_);
      if (q_.next_ticket_ - q_.serving_ > q_.max_waiting_)
        throw ApiError(503, "server_error", "too many requests are waiting (" + std::to_string(q_.max_waiting_) + "); retry later");
      ticket_ = q_.next_ticket_++;
      q_.turn_.wait(lock, [&] { return q_.serving_ == ticket_; });
    }
    ~Turn() {
      std::lock_guard lock(q_.mutex_);
      ++q_.serving_;
      q_.turn_.notify_all();
    }

   private:
    FairQueue& q_;
    uint64_t ticket_ = 0;
  };

 private:
  std::mutex mutex_;
  std::condition_variable turn_;
  uint64_t next_ticket_ = 0, serving_ = 0;
  size_t max_waiting_;
};

// The generation a request asks for, validated.
struct Request {
  std::vector<int32_t> prompt;
  infer::GenerationOptions options;
  bool stream = false;
};

template <class T>
T number_field(const json& body, const char* key, T lo, T hi, T fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  const auto& v = body[key];
  const bool ok = std::is_integral_v<T> ? v.is_number_integer() : v.is_number();
  if (!ok) throw invalid(std::string("'") + key + "' must be " + (std::is_integral_v<T> ? "an integer" : "a number"), key);
  const T x = v.get<T>();
  if (!(x >= lo && x <= hi))
    throw invalid(std::string("'") + key + "' is " + v.dump() + "; it must be between " + json(lo).dump() + " and " +
                      json(hi).dump(),
                  key);
  return x;
}

// Fields every completion request shares: sampling, max_tokens, stop, seed, stream, n.
Request common_fields(const json& body, const inference_cli::Session& s, const inference_cli::Options& defaults,
                      int64_t prompt_tokens) {
  Request r;
  r.options = s.generation(defaults);
  auto& g = r.options;
  const int64_t room = s.context() - prompt_tokens;
  if (room < 1) throw invalid("the prompt (" + std::to_string(prompt_tokens) + " tokens) fills the model's context (" +
                              std::to_string(s.context()) + " tokens)", "messages");
  const char* max_key = body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  g.max_new_tokens = number_field<int64_t>(body, max_key, 1, room, std::min(defaults.max_new_tokens, room));
  g.sampling.temperature = number_field<double>(body, "temperature", 0.0, 2.0, g.sampling.temperature);
  g.sampling.top_p = number_field<double>(body, "top_p", 0.0, 1.0, g.sampling.top_p);
  if (g.sampling.top_p == 0.0) throw invalid("'top_p' must be greater than 0", "top_p");
  g.sampling.top_k = number_field<int64_t>(body, "top_k", 0, 1 << 20, g.sampling.top_k);
  g.sampling.min_p = number_field<double>(body, "min_p", 0.0, 1.0, g.sampling.min_p);
  g.sampling.repetition_penalty = number_field<double>(body, "repetition_penalty", 0.01, 10.0, g.sampling.repetition_penalty);
  if (body.contains("seed") && !body["seed"].is_null()) {
    if (!body["seed"].is_number_integer()) throw invalid("'seed' must be an integer", "seed");
    g.seed = body["seed"].get<uint64_t>();
  }
  if (number_field<int64_t>(body, "n", 1, 1, 1) != 1) throw invalid("only n = 1 is supported", "n");
  if (body.contains("stop") && !body["stop"].is_null()) {
    const auto& stop = body["stop"];
    if (stop.is_string()) {
      g.stop_strings.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4) {
      for (const auto& x : stop) {
        if (!x.is_string()) throw invalid("'stop' must be a string or an array of up to 4 strings", "stop");
        g.stop_strings.push_back(x.get<std::string>());
      }
    } else {
      throw invalid("'stop' must be a string or an array of up to 4 strings", "stop");
    }
    for (const auto& x : g.stop_strings)
      if (x.empty()) throw invalid("'stop' strings must not be empty", "stop");
  }
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) throw invalid("'stream' must be a boolean", "stream");
    r.stream = body["stream"].get<bool>();
  }
  return r;
}

// One line per finished generation on stderr (the server's log).
void log_generation(const std::string& id, const infer::Generation& g, std::chrono::steady_clock::time_point start) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "%s: %zu tokens in %.2f s, %s\n", id.c_str(), g.tokens.size(), secs,
               std::string(infer::finish_reason_name(g.finish)).c_str());
}

json parse_body(const httplib::Request& req) {
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::exception& e) {
    throw invalid(std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw invalid("the request body must be a JSON object");
  return body;
}

class Server {
 public:
  Server(inference_cli::Session& session, inference_cli::Options defaults, std::string api_key, size_t max_queue)
      : s_(session), defaults_(std::move(defaults)), api_key_(std::move(api_key)), queue_(max_queue) {}

  void routes(httplib::Server& http) {
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (api_key_.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") == "Bearer " + api_key_) return httplib::Server::HandlerResponse::Unhandled;
      res.status = 401;
      res.set_content(error_body("invalid or missing API key (Authorization: Bearer KEY)", "invalid_request_error"),
                      "application/json");
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string message = res.status == 404   ? "no such route"
                                  : res.status == 413 ? "the request body is too large"
                                                      : "request failed (HTTP " + std::to_string(res.status) + ")";
      res.set_content(error_body(message, res.status >= 500 ? "server_error" : "invalid_request_error"), "application/json");
    });
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      const json models = {{"object", "list"},
                           {"data", json::array({{{"id", s_.name}, {"object", "model"}, {"created", started_}, {"owned_by", "minillm"}}})}};
      res.set_content(models.dump(), "application/json");
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle(res, [&] { return chat_request(parse_body(req)); }, true);
    });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle(res, [&] { return completion_request(parse_body(req)); }, false);
    });
  }

 private:
  Request chat_request(const json& body) const {
    if (!body.contains("messages")) throw invalid("'messages' is required", "messages");
    if (!body["messages"].is_array() || body["messages"].empty())
      throw invalid("'messages' must be a non-empty array of {role, content} objects", "messages");
    std::vector<tk::ChatMessage> messages;
    try {
      messages = tk::chat_messages_from_json(body["messages"]);
    } catch (const std::exception& e) {
      throw invalid(std::string("'messages': ") + e.what(), "messages");
    }
    for (size_t i = 0; i < body["messages"].size(); ++i)
      if (!body["messages"][i].contains("content") || !body["messages"][i]["content"].is_string())
        throw invalid("'messages': message " + std::to_string(i) + " needs a \"content\" string", "messages");
    std::string text;
    try {
      text = s_.chat_template.render(messages, {.add_generation_prompt = true});
    } catch (const minillm::jinja::TemplateError& e) {  // the template refuses this conversation (raise_exception)
      throw invalid(std::string("'messages': ") + e.what(), "messages");
    }
    const auto ids = s_.tokenizer.encode(text);
    auto r = common_fields(body, s_, defaults_, static_cast<int64_t>(ids.size()));
    r.prompt = ids;
    return r;
  }

  Request completion_request(const json& body) const {
    if (!body.contains("prompt") || !body["prompt"].is_string() || body["prompt"].get<std::string>().empty())
      throw invalid("'prompt' must be a non-empty string", "prompt");
    const auto ids = s_.tokenizer.encode(body["prompt"].get<std::string>());
    auto r = common_fields(body, s_, defaults_, static_cast<int64_t>(ids.size()));
    r.prompt = ids;
    return r;
  }

  template <class Parse>
  void handle(httplib::Response& res, Parse parse, bool chat) {
    try {
      auto r = std::make_shared<Request>(parse());
      const auto id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id_++);
      if (r->stream) {
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider("text/event-stream", [this, r, id, chat](size_t, httplib::DataSink& sink) {
          stream(*r, id, chat, sink);
          return true;
        });
      } else {
        res.set_content(complete(*r, id, chat).dump(), "application/json");
      }
    } catch (const ApiError& e) {
      res.status = e.status;
      res.set_content(error_body(e.what(), e.type, e.param), "application/json");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(error_body(e.what(), "server_error"), "application/json");
    }
  }

  json envelope(const std::string& id, bool chat, bool chunk) const {
    return {{"id", id}, {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
            {"created", unix_time()}, {"model", s_.name}};
  }

  json complete(const Request& r, const std::string& id, bool chat) {
    infer::Generation g;
    {
      FairQueue::Turn turn(queue_);
      const auto start = std::chrono::steady_clock::now();
      g = generator_.generate(r.prompt, r.options);
      log_generation(id, g, start);
    }
    auto out = envelope(id, chat, false);
    json choice = {{"index", 0}};
    if (chat) choice["message"] = {{"role", "assistant"}, {"content", g.text}};
    else choice["text"] = g.text;
    choice["finish_reason"] = std::string(infer::finish_reason_name(g.finish));
    out["choices"] = json::array({choice});
    const auto prompt = static_cast<int64_t>(r.prompt.size()), completion = static_cast<int64_t>(g.tokens.size());
    out["usage"] = {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
    return out;
  }

  void stream(const Request& r, const std::string& id, bool chat, httplib::DataSink& sink) {
    auto send = [&](const json& choice) {
      auto chunk = envelope(id, chat, true);
      chunk["choices"] = json::array({choice});
      const auto line = "data: " + chunk.dump() + "\n\n";
      return sink.write(line.data(), line.size());
    };
    auto piece_choice = [&](std::string_view piece) {
      json c = {{"index", 0}};
      if (chat) c["delta"] = {{"content", std::string(piece)}};
      else c["text"] = std::string(piece);
      c["finish_reason"] = nullptr;
      return c;
    };
    try {
      FairQueue::Turn turn(queue_);
      const auto start = std::chrono::steady_clock::now();
      if (chat && !send({{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}})) return;
      // A failed write means the client has gone: the callback's false stops the generation.
      const auto g = generator_.generate(r.prompt, r.options, [&](size_t, std::string_view piece) { return send(piece_choice(piece)); });
      log_generation(id, g, start);
      if (g.finish == infer::FinishReason::cancelled) return;
      json last = {{"index", 0}};
      if (chat) last["delta"] = json::object();
      else last["text"] = "";
      last["finish_reason"] = std::string(infer::finish_reason_name(g.finish));
      if (!send(last)) return;
      const std::string done = "data: [DONE]\n\n";
      sink.write(done.data(), done.size());
    } catch (const ApiError& e) {
      const auto line = "data: " + error_body(e.what(), e.type) + "\n\n";
      sink.write(line.data(), line.size());
    }
    sink.done();
  }

  inference_cli::Session& s_;
  inference_cli::Options defaults_;
  std::string api_key_;
  FairQueue queue_;
  // Used by one request at a time (the queue's turn); it keeps the recorded CUDA decode step.
  infer::Generator<minillm::AnyCausalLM> generator_{*s_.model, s_.tokenizer};
  std::atomic<uint64_t> next_id_{1};
  int64_t started_ = unix_time();
};

httplib::Server* running = nullptr;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Serve a minillm checkpoint over an OpenAI-compatible HTTP API."};
  inference_cli::Options o;
  std::string host = "127.0.0.1", api_key;
  int port = 8000;
  size_t max_body = 1 << 20, max_queue = 64;
  o.max_new_tokens = 256;
  o.add_to(app);
  app.add_option("--host", host, "address to bind (0.0.0.0 for every interface)")->capture_default_str();
  app.add_option("--port", port, "TCP port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  app.add_option("--api-key", api_key, "require 'Authorization: Bearer KEY' on /v1/ routes (default: $MINILLM_API_KEY)");
  app.add_option("--max-body", max_body, "largest request body in bytes")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-queue", max_queue, "requests that may wait for the model before 503")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (api_key.empty())
    if (const char* env = std::getenv("MINILLM_API_KEY")) api_key = env;

  try {
    minillm::set_num_threads(o.threads);
    auto session = inference_cli::load_session(o);
    Server server(session, o, api_key, max_queue);
    httplib::Server http;
    http.set_payload_max_length(max_body);
    server.routes(http);
    const int bound = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
    if (bound < 0) throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port));
    running = &http;
    std::signal(SIGINT, [](int) { running->stop(); });
    std::signal(SIGTERM, [](int) { running->stop(); });
    std::printf("minillm-serve: %s on http://%s:%d (OpenAI API under /v1)%s\n", session.name.c_str(), host.c_str(), bound,
                api_key.empty() ? "" : ", API key required");
    std::fflush(stdout);
    http.listen_after_bind();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
