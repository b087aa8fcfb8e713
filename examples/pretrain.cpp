// minillm-pretrain: pretrain a model on token shards (minillm-tokenizer shard).
//   minillm-pretrain --preset tiny --tokenizer tok/ --data train.bin --val val.bin --out runs/tiny --steps 2000
//   minillm-pretrain ... --resume        continue from the newest complete checkpoint in --out, exactly
//   minillm-pretrain ... --overwrite     start afresh in a used --out (else it is refused)
#include "training_cli.hpp"

#include <minillm/data/packed_windows.hpp>
#include <minillm/eval/unigram.hpp>

int main(int argc, char** argv) {
  CLI::App app{"Pretrain a minillm model on token shards, with checkpoints that resume exactly."};
  training_cli::Options cli;
  std::vector<std::string> train_shards, val_shards;
  cli.add_to(app);
  app.add_option("--data", train_shards, "training token shards")->required()->check(CLI::ExistingFile);
  app.add_option("--val", val_shards, "validation token shards")->check(CLI::ExistingFile);
  CLI11_PARSE(app, argc, argv);

  try {
    minillm::set_num_threads(cli.threads);
    training_cli::install_stop_handler();
    cli.record_setup(train_shards);
    cli.prepare_output();
    const auto tok = minillm::tokenizer::BpeTokenizer::from_file(std::filesystem::path(cli.tokenizer) / "tokenizer.json");
    const auto vocab = static_cast<uint64_t>(tok.vocab_size());
    // Opening a shard also finds any id outside its vocabulary, so after this every id the model
    // sees is below the tokenizer's vocabulary size (the model's is at least that: make_model).
    std::vector<std::string> all_shards = train_shards;
    all_shards.insert(all_shards.end(), val_shards.begin(), val_shards.end());
    for (const auto& s : all_shards)
      if (const auto v = minillm::data::TokenShard(s).header().vocab_size; v != vocab)
        throw std::invalid_argument(s + ": shard was made with a vocabulary of " + std::to_string(v) +
                                    " tokens, the tokenizer has " + std::to_string(vocab));
    auto model = cli.make_model(tok);
    minillm::train::Trainer<minillm::AnyCausalLM> trainer(*model, cli.trainer_options());
    minillm::data::PackedWindows data({train_shards.begin(), train_shards.end()}, cli.seq_len, cli.seed);
    std::optional<minillm::data::PackedWindows> val;
    if (!val_shards.empty()) {
      val.emplace(std::vector<std::filesystem::path>(val_shards.begin(), val_shards.end()), cli.seq_len, cli.seed);
      std::fprintf(stderr, "validation: unigram entropy %.4f nats/token (the loss of token frequencies alone)\n",
                   minillm::unigram_entropy({val_shards.begin(), val_shards.end()}));
    }
    if (const auto cursor = cli.maybe_resume(*model, trainer)) data.set_cursor(*cursor);
    training_cli::print_model(*model);
    std::cerr << data.num_tokens() << " training tokens (" << data.num_windows() << " windows of " << cli.seq_len
              << "); " << cli.steps << " steps of " << cli.batch * cli.accumulation * cli.seq_len << " tokens\n";

    const auto loop = cli.loop_options();
    std::function<double()> validate;
    if (val) {
      const auto n = std::min<uint64_t>(static_cast<uint64_t>(cli.eval_batches), val->num_windows());
      validate = [&, n] {
        return minillm::train::mean_loss(*model, [&](size_t i) { return minillm::data::Batch{val->window(i)}; }, n,
                                         loop.device, trainer.options().precision);
      };
    }
    const auto r = minillm::train::run_training(
        *model, trainer,
        {[&](int64_t rows) { return minillm::data::Batch{data.next_batch(rows)}; }, [&] { return data.cursor(); }},
        validate, loop);
    return r.stopped_early ? 130 : 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
