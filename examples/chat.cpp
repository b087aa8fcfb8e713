// minillm-chat: talk to a checkpoint in the terminal, or answer prompts from the command line.
//   minillm-chat --model runs/sft/checkpoint-00000500                       interactive, streamed
//   minillm-chat --model DIR --prompt "背诵《静夜思》。" --temperature 0     one-shot (no TTY needed)
// In the interactive mode: /reset clears the history, /exit (or end of input) quits, /help lists
// the commands; Ctrl-C stops the answer being written.
#include "inference_cli.hpp"
#include "stdout_status.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>

namespace {

std::atomic<bool> cancel_answer{false};

struct Answer {
  std::string text;
  size_t tokens = 0;
  double seconds = 0;
  int64_t drafted = 0, accepted = 0;  // --speculative
};

Answer answer(inference_cli::Session& s, const inference_cli::Options& o, const std::vector<minillm::tokenizer::ChatMessage>& history,
              bool think) {
  size_t dropped = 0;
  const auto ids = s.prompt(history, o.max_new_tokens, think, &dropped);
  if (dropped > 0) std::fprintf(stderr, "[history trimmed: %zu oldest messages dropped to fit the context]\n", dropped);
  minillm::infer::Generator<minillm::AnyCausalLM> gen(*s.model, s.tokenizer);
  cancel_answer = false;
  const auto t0 = std::chrono::steady_clock::now();
  const auto g = gen.generate(ids, s.generation(o), [](size_t, std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  }, &cancel_answer);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  return {g.text, g.tokens.size(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), g.drafted,
          g.accepted};
}

void print_speed(const Answer& a) {
  if (a.drafted > 0)
    std::fprintf(stderr, "[%zu tokens, %.1f tokens/s, %lld of %lld drafts accepted (%.0f%%)]\n", a.tokens,
                 a.tokens / std::max(a.seconds, 1e-9), static_cast<long long>(a.accepted),
                 static_cast<long long>(a.drafted), 100.0 * static_cast<double>(a.accepted) / static_cast<double>(a.drafted));
  else
    std::fprintf(stderr, "[%zu tokens, %.1f tokens/s]\n", a.tokens, a.tokens / std::max(a.seconds, 1e-9));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Chat with a minillm checkpoint: interactive and streamed, or one-shot with --prompt."};
  inference_cli::Options o;
  std::vector<std::string> prompts;
  std::string system;
  bool think = false, quiet = false;
  o.add_to(app);
  app.add_option("--prompt", prompts, "answer this prompt and exit (repeat for several; each is its own conversation)");
  app.add_option("--system", system, "system prompt");
  app.add_flag("--think", think, "minimind3 template: let the model write its <think> block");
  app.add_flag("--quiet", quiet, "no banner and no tokens/s lines");
  CLI11_PARSE(app, argc, argv);

  try {
    minillm::set_num_threads(o.threads);
    auto s = inference_cli::load_session(o);
    std::vector<minillm::tokenizer::ChatMessage> history;
    if (!system.empty()) history.push_back({.role = "system", .content = system});

    if (!prompts.empty()) {
      for (const auto& p : prompts) {
        auto conversation = history;
        conversation.push_back({.role = "user", .content = p});
        if (prompts.size() > 1) std::printf("> %s\n", p.c_str());
        const auto a = answer(s, o, conversation, think);
        if (!quiet) print_speed(a);
        if (prompts.size() > 1) std::printf("\n");
      }
      return stdout_status(0);
    }

    std::signal(SIGINT, [](int) { cancel_answer = true; });
    if (!quiet)
      std::fprintf(stderr, "%s (%s, context %lld tokens). /help for commands.\n", s.name.c_str(),
                   std::string(s.model->architecture()).c_str(), static_cast<long long>(s.context()));
    std::string line;
    while (true) {
      std::printf("> ");
      std::fflush(stdout);
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      if (line == "/exit" || line == "/quit") break;
      if (line == "/reset") {
        history.resize(system.empty() ? 0 : 1);
        std::printf("(history cleared)\n");
        continue;
      }
      if (line == "/help" || line[0] == '/') {
        std::printf("/reset  forget the conversation\n/exit   quit\n/help   this list\nCtrl-C stops an answer.\n");
        continue;
      }
      history.push_back({.role = "user", .content = line});
      try {
        const auto a = answer(s, o, history, think);
        history.push_back({.role = "assistant", .content = a.text});
        if (!quiet) print_speed(a);
      } catch (const std::length_error& e) {
        history.pop_back();
        std::fprintf(stderr, "error: %s\n", e.what());
      }
    }
    return stdout_status(0);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
