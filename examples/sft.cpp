// minillm-sft: supervised fine-tuning on MiniMind's conversation jsonl, loss on assistant spans only.
//   minillm-sft --init runs/tiny/checkpoint-00002000 --tokenizer tok/ --data sft_train.jsonl --val sft_val.jsonl --out runs/sft
//   minillm-sft ... --pack               several conversations per row (block-diagonal mask, positions restart)
//   minillm-sft ... --resume             continue from the newest complete checkpoint in --out, exactly
//   minillm-sft ... --overwrite          start afresh in a used --out (else it is refused)
#include "training_cli.hpp"

#include <minillm/data/sft_dataset.hpp>
#include <minillm/tokenizer/jinja_templates.hpp>

int main(int argc, char** argv) {
  CLI::App app{"Supervised fine-tuning on conversations (MiniMind jsonl), with checkpoints that resume exactly."};
  training_cli::Options cli;
  cli.lr = 1e-4;
  cli.seq_len = 512;
  std::vector<std::string> train_files, val_files;
  std::string template_name;
  bool pack = false;
  size_t max_examples = 0;
  cli.add_to(app, "start from this checkpoint directory (HF layout), e.g. a pretraining checkpoint");
  app.add_option("--data", train_files, "training conversations (.jsonl)")->required()->check(CLI::ExistingFile);
  app.add_option("--val", val_files, "validation conversations (.jsonl)")->check(CLI::ExistingFile);
  app.add_option("--template", template_name, "chat template (minimind3, minimind2, llama3); default: the tokenizer's");
  app.add_flag("--pack", pack, "pack several conversations into each row");
  app.add_option("--max-examples", max_examples, "read at most this many training conversations (0: all)");
  CLI11_PARSE(app, argc, argv);

  try {
    minillm::set_num_threads(cli.threads);
    training_cli::install_stop_handler();
    const auto tok = minillm::tokenizer::BpeTokenizer::from_file(std::filesystem::path(cli.tokenizer) / "tokenizer.json");
    minillm::data::SftOptions so;
    so.seq_len = cli.seq_len;
    so.pack = pack;
    so.seed = cli.seed;
    so.format = minillm::tokenizer::chat_format_of(cli.tokenizer, template_name);
    so.max_examples = max_examples;
    so.progress = [](size_t lines) { std::fprintf(stderr, "\rreading conversations: %zu", lines); };
    cli.record_setup(train_files, {{"pack", pack}, {"max_examples", max_examples},
                                   {"template", template_name}});
    cli.prepare_output();
    minillm::data::SftDataset data({train_files.begin(), train_files.end()}, tok, so);
    std::fprintf(stderr, "\r%llu training conversations, %llu tokens (%llu dropped: no assistant token within %lld)\n",
                 static_cast<unsigned long long>(data.size()), static_cast<unsigned long long>(data.num_tokens()),
                 static_cast<unsigned long long>(data.dropped()), static_cast<long long>(cli.seq_len));
    std::optional<minillm::data::SftDataset> val;
    if (!val_files.empty()) {
      so.pack = false;
      so.max_examples = static_cast<size_t>(cli.eval_batches * cli.batch);
      so.progress = {};
      val.emplace(std::vector<std::filesystem::path>(val_files.begin(), val_files.end()), tok, so);
    }
    auto model = cli.make_model(tok);
    minillm::train::Trainer<minillm::AnyCausalLM> trainer(*model, cli.trainer_options());
    if (const auto cursor = cli.maybe_resume(*model, trainer)) data.set_cursor(*cursor);
    training_cli::print_model(*model);

    const auto loop = cli.loop_options();
    std::function<double()> validate;
    if (val) {
      const auto n = static_cast<size_t>((val->size() + cli.batch - 1) / cli.batch);
      validate = [&, n] {
        return minillm::train::mean_loss(
            *model, [&](size_t i) { return val->batch_in_order(i * static_cast<uint64_t>(cli.batch), cli.batch); }, n,
            loop.device, trainer.options().precision);
      };
    }
    const auto r = minillm::train::run_training(
        *model, trainer, {[&](int64_t rows) { return data.next_batch(rows); }, [&] { return data.cursor(); }}, validate,
        loop);
    return r.stopped_early ? 130 : 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
