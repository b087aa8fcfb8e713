// minillm-serve: an OpenAI-compatible HTTP server for a checkpoint.
//   minillm-serve --model runs/sft/checkpoint-00000500 [--host 127.0.0.1] [--port 8000] [--api-key KEY]
// Routes: POST /v1/chat/completions (stream: SSE chunks ending with "data: [DONE]"),
// POST /v1/completions, GET /v1/models, GET /health. Requests are validated and answered with
// OpenAI-style error JSON; generations run one at a time in arrival order (the rest wait, up to
// --max-queue, else 503); a client that disconnects stops its generation. Connections are limited
// in number and in the time a request may take to arrive (serve_connections.hpp).
#include "inference_cli.hpp"
#include "serve_connections.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
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
  // Bytes that are not UTF-8 (a message quoting the request) become U+FFFD rather than an exception.
  return json{{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? json() : json(param)}, {"code", nullptr}}}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

// What a client sees of an unexpected failure; the details go to the server's log only.
constexpr const char* kInternalError = "internal error while generating; the server log has the details";

void log_failure(const std::string& id, const char* what) { std::fprintf(stderr, "%s: failed: %s\n", id.c_str(), what); }

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// First come, first served: a request takes its place in line when it arrives (503 when
// --max-queue already wait, before any response has started) and generates when it is first.
class FairQueue {
 public:
  explicit FairQueue(size_t max_waiting) : max_waiting_(max_waiting) {}
  class Place {
   public:
    explicit Place(FairQueue& q) : q_(q) {
      std::lock_guard lock(q_.mutex_);
      if (q_.line_.size() > q_.max_waiting_)
        throw ApiError(503, "server_error", "too many requests are waiting (" + std::to_string(q_.max_waiting_) + "); retry later");
      id_ = q_.next_id_++;
      q_.line_.push_back(id_);
    }
    Place(const Place&) = delete;
    Place& operator=(const Place&) = delete;
    ~Place() {
      std::lock_guard lock(q_.mutex_);
      q_.line_.erase(std::find(q_.line_.begin(), q_.line_.end(), id_));
      q_.turn_.notify_all();
    }
    // Blocks until this place is first; false if the client hangs up before.
    bool wait() {
      auto* connection = serve::Connection::current();
      std::unique_lock lock(q_.mutex_);
      while (q_.line_.front() != id_) {
        if (connection != nullptr && connection->gone()) return false;
        q_.turn_.wait_for(lock, std::chrono::milliseconds(100));
      }
      return true;
    }

   private:
    FairQueue& q_;
    uint64_t id_ = 0;
  };

 private:
  std::mutex mutex_;
  std::condition_variable turn_;
  std::deque<uint64_t> line_;  // the first generates, the rest wait
  uint64_t next_id_ = 0;
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

const char* max_tokens_key(const json& body) {
  return body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
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
  const char* max_key = max_tokens_key(body);
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

// The path of the first string (key or value) in `j` containing U+FFFD, e.g. messages[1].content.
std::optional<std::string> path_to_replacement(const json& j, const std::string& path = {}) {
  static const std::string mark = "\xEF\xBF\xBD";
  if (j.is_string()) return j.get_ref<const std::string&>().find(mark) != std::string::npos ? std::optional(path) : std::nullopt;
  if (j.is_array())
    for (size_t i = 0; i < j.size(); ++i)
      if (auto p = path_to_replacement(j[i], path + "[" + std::to_string(i) + "]")) return p;
  if (j.is_object())
    for (const auto& [key, value] : j.items()) {
      const auto here = path.empty() ? key : path + "." + key;
      if (key.find(mark) != std::string::npos) return here;
      if (auto p = path_to_replacement(value, here)) return p;
    }
  return std::nullopt;
}

json parse_body(const std::string& text) {
  if (tk::BpeTokenizer::to_valid_utf8(text) != text) {
    // Name the field: parse with the bad bytes replaced by U+FFFD and find them.
    std::optional<std::string> where;
    try {
      where = path_to_replacement(json::parse(tk::BpeTokenizer::to_valid_utf8(text)));
    } catch (const json::exception&) {
    }
    if (!where || where->empty()) throw invalid("the request body is not valid UTF-8");
    throw invalid("'" + *where + "' is not valid UTF-8", where->substr(0, where->find_first_of(".[")));
  }
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {
    throw invalid(std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw invalid("the request body must be a JSON object");
  return body;
}

// The request's body, refused with 413 past `max_body` bytes whatever its transfer encoding
// (cpp-httplib checks Content-Length only).
std::string read_body(const httplib::ContentReader& reader, const httplib::Response& res, size_t max_body) {
  std::string body;
  bool too_large = res.status == 413;
  const bool ok = reader([&](const char* data, size_t n) {
    too_large = too_large || body.size() + n > max_body;
    if (!too_large) body.append(data, n);
    return !too_large;
  });
  if (!ok || too_large) {
    // The rest of the body stays unread: this connection cannot carry another request.
    if (auto* connection = serve::Connection::current()) connection->close_after_response();
    if (too_large || res.status == 413)
      throw ApiError(413, "invalid_request_error", "the request body is larger than --max-body (" + std::to_string(max_body) + " bytes)");
    throw invalid("the request body could not be read (cut short or too slow)");
  }
  return body;
}

class Server {
 public:
  Server(inference_cli::Session& session, inference_cli::Options defaults, std::string api_key, size_t max_queue,
         size_t max_body)
      : s_(session), defaults_(std::move(defaults)), api_key_(std::move(api_key)), queue_(max_queue), max_body_(max_body) {}

  void routes(httplib::Server& http) {
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (api_key_.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") == "Bearer " + api_key_) return httplib::Server::HandlerResponse::Unhandled;
      res.status = 401;
      res.set_content(error_body("invalid or missing API key (Authorization: Bearer KEY)", "invalid_request_error"),
                      "application/json");
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string message = res.status == 404   ? "no such route"
                                  : res.status == 413 ? "the request body is larger than --max-body (" + std::to_string(max_body_) + " bytes)"
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
    using Reader = httplib::ContentReader;
    http.Post("/v1/chat/completions", [this](const httplib::Request&, httplib::Response& res, const Reader& reader) {
      handle(res, [&] { return chat_request(parse_body(read_body(reader, res, max_body_))); }, true);
    });
    http.Post("/v1/completions", [this](const httplib::Request&, httplib::Response& res, const Reader& reader) {
      handle(res, [&] { return completion_request(parse_body(read_body(reader, res, max_body_))); }, false);
    });
    // A known route asked with another method: 405 naming the one it takes.
    for (const auto& [path, allowed] : {std::pair{"/health", "GET"}, {"/v1/models", "GET"}, {"/v1/chat/completions", "POST"},
                                        {"/v1/completions", "POST"}}) {
      const auto refuse = [allowed = std::string(allowed)](const httplib::Request& req, httplib::Response& res) {
        res.status = 405;
        res.set_header("Allow", allowed);
        res.set_content(error_body(req.method + " is not allowed here; use " + allowed, "invalid_request_error"),
                        "application/json");
      };
      if (allowed != std::string("GET")) http.Get(path, refuse);
      if (allowed != std::string("POST")) http.Post(path, refuse);
      http.Put(path, refuse);
      http.Patch(path, refuse);
      http.Delete(path, refuse);
    }
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
    // The oldest turns after the system prompt are dropped until the answer's tokens fit.
    const int64_t most = s_.context() - 1;
    const auto answer = number_field<int64_t>(body, max_tokens_key(body), 1, most, std::min(defaults_.max_new_tokens, most));
    std::vector<int32_t> ids;
    size_t dropped = 0;
    try {
      ids = s_.prompt(messages, answer, /*think=*/false, &dropped);
    } catch (const std::length_error& e) {
      throw invalid(e.what(), "messages");
    } catch (const minillm::jinja::TemplateError& e) {  // the template refuses this conversation (raise_exception)
      throw invalid(std::string("'messages': ") + e.what(), "messages");
    } catch (const tk::TokenizerError& e) {  // the template cut a special-token string of a message apart
      throw invalid(std::string("'messages': ") + e.what(), "messages");
    }
    if (dropped > 0) std::fprintf(stderr, "dropped the %zu oldest message(s) to fit the context\n", dropped);
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
    const auto id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id_++);
    try {
      auto r = std::make_shared<Request>(parse());
      auto place = std::make_shared<FairQueue::Place>(queue_);  // 503 here, before any response
      if (r->stream) {
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider("text/event-stream", [this, r, place, id, chat](size_t, httplib::DataSink& sink) {
          stream(*r, *place, id, chat, sink);
          return true;
        });
      } else {
        res.set_content(complete(*r, *place, id, chat).dump(), "application/json");
      }
    } catch (const ApiError& e) {
      res.status = e.status;
      res.set_content(error_body(e.what(), e.type, e.param), "application/json");
    } catch (const std::exception& e) {
      log_failure(id, e.what());
      res.status = 500;
      res.set_content(error_body(kInternalError, "server_error"), "application/json");
    }
  }

  json envelope(const std::string& id, bool chat, bool chunk) const {
    return {{"id", id}, {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
            {"created", unix_time()}, {"model", s_.name}};
  }

  json complete(const Request& r, FairQueue::Place& place, const std::string& id, bool chat) {
    auto* connection = serve::Connection::current();
    if (!place.wait()) throw ApiError(499, "invalid_request_error", "the client closed the connection");
    const auto start = std::chrono::steady_clock::now();
    // A client that hangs up cancels its generation (checked at every piece of text).
    const auto g = generator_.generate(r.prompt, r.options,
                                       [&](size_t, std::string_view) { return connection == nullptr || !connection->gone(); });
    log_generation(id, g, start);
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

  // Never throws: whatever fails becomes an error event and the stream ends cleanly.
  void stream(const Request& r, FairQueue::Place& place, const std::string& id, bool chat, httplib::DataSink& sink) {
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
    auto send_error = [&](const std::string& message, const std::string& type) {
      const auto line = "data: " + error_body(message, type) + "\n\n";
      sink.write(line.data(), line.size());
    };
    try {
      if (!place.wait()) return sink.done();
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
      send_error(e.what(), e.type);
    } catch (const std::exception& e) {
      log_failure(id, e.what());
      send_error(kInternalError, "server_error");
    } catch (...) {
      log_failure(id, "unknown exception");
      send_error(kInternalError, "server_error");
    }
    sink.done();
  }

  inference_cli::Session& s_;
  inference_cli::Options defaults_;
  std::string api_key_;
  FairQueue queue_;
  size_t max_body_;
  // Used by one request at a time (the queue's turn); it keeps the recorded CUDA decode step.
  infer::Generator<minillm::AnyCausalLM> generator_{*s_.model, s_.tokenizer};
  std::atomic<uint64_t> next_id_{1};
  int64_t started_ = unix_time();
};

serve::Server* running = nullptr;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Serve a minillm checkpoint over an OpenAI-compatible HTTP API."};
  inference_cli::Options o;
  std::string host = "127.0.0.1", api_key;
  int port = 8000;
  size_t max_body = 1 << 20, max_queue = 64;
  serve::ConnectionLimits limits;
  double request_timeout = 10, keep_alive = 5;
  o.max_new_tokens = 256;
  o.add_to(app);
  app.add_option("--host", host, "address to bind (0.0.0.0 for every interface)")->capture_default_str();
  app.add_option("--port", port, "TCP port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  app.add_option("--api-key", api_key, "require 'Authorization: Bearer KEY' on /v1/ routes (default: $MINILLM_API_KEY)");
  app.add_option("--max-body", max_body, "largest request body in bytes (413 past it, chunked or not)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-queue", max_queue, "requests that may wait for the model before 503")->capture_default_str();
  app.add_option("--max-connections", limits.max_connections, "connections open at once; more are answered 503")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--request-timeout", request_timeout, "seconds a request (line, headers, body) may take to arrive")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--keep-alive", keep_alive, "seconds an idle connection is kept for its next request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto millis = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
  limits.request_timeout = millis(request_timeout);
  limits.keep_alive = millis(keep_alive);
  if (api_key.empty())
    if (const char* env = std::getenv("MINILLM_API_KEY")) api_key = env;

  try {
    minillm::set_num_threads(o.threads);
    auto session = inference_cli::load_session(o);
    Server server(session, o, api_key, max_queue, max_body);
    serve::Server http(limits, error_body("too many connections (" + std::to_string(limits.max_connections) +
                                              "); retry later", "server_error"));
    http.set_payload_max_length(max_body);
    // SO_REUSEADDR only: httplib's default SO_REUSEPORT would let a second server share the port.
    http.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server.routes(http);
    errno = 0;
    const int bound = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
    if (bound < 0)
      throw std::runtime_error(errno == EADDRINUSE ? "port " + std::to_string(port) + " is in use"
                                                   : "cannot listen on " + host + ":" + std::to_string(port) +
                                                         (errno != 0 ? std::string(": ") + std::strerror(errno) : ""));
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
