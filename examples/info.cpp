// minillm-info: print a model's config and its exact parameter count, per module.
//   minillm-info --preset minimind2_small
//   minillm-info --config path/to/config.json
#include <CLI/CLI.hpp>
#include <iomanip>
#include <iostream>

#include <minillm/model.hpp>

#include "stdout_status.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Print a model's configuration and exact parameter count (total, and active per token for MoE)."};
  std::string preset, config_path;
  bool list = false, json_only = false;
  auto* p = app.add_option("--preset", preset, "preset name (see --list)");
  auto* c = app.add_option("--config", config_path, "HF-style config.json")->check(CLI::ExistingFile);
  p->excludes(c);
  app.add_flag("--list", list, "list presets and architectures, then exit");
  app.add_flag("--json", json_only, "print only the resolved config as JSON");
  CLI11_PARSE(app, argc, argv);

  try {
    if (list) {
      std::cout << "presets:";
      for (const auto& n : minillm::preset_names()) std::cout << ' ' << n;
      std::cout << "\narchitectures:";
      for (const auto& n : minillm::architecture_names()) std::cout << ' ' << n;
      std::cout << '\n';
      return stdout_status(0);
    }
    if (preset.empty() && config_path.empty()) {
      std::cerr << "error: give --preset NAME or --config FILE (see --help)\n";
      return 2;
    }
    minillm::ModelConfig cfg = preset.empty() ? minillm::load_config(config_path) : minillm::preset_config(preset);
    cfg.architecture = minillm::resolve_architecture(cfg);
    // Built on the meta device: shapes and counts without allocating or initialising weights,
    // after validation has bounded every size (a config error names the file).
    std::unique_ptr<minillm::AnyCausalLM> model;
    try {
      model = minillm::make_model(cfg, at::TensorOptions().device(at::kMeta));
    } catch (const minillm::ConfigError& e) {
      if (config_path.empty()) throw;
      throw minillm::ConfigError(config_path + ": " + e.what());
    }
    if (json_only) {
      std::cout << nlohmann::json(model->config()).dump(2) << '\n';
      return stdout_status(0);
    }
    const auto report = minillm::report_parameters(model->module(), model->config());

    std::cout << "architecture: " << model->architecture() << "\nconfig:\n"
              << nlohmann::json(model->config()).dump(2) << "\n\n";
    std::cout << std::left << std::setw(48) << "module" << std::right << std::setw(14) << "each" << std::setw(6) << "x"
              << std::setw(16) << "total" << '\n';
    for (const auto& g : report.groups)
      std::cout << std::left << std::setw(48) << g.name << std::right << std::setw(14) << minillm::with_commas(g.each)
                << std::setw(6) << g.count << std::setw(16) << minillm::with_commas(g.total()) << '\n';
    if (model->config().tie_word_embeddings) std::cout << "(lm_head is tied to model.embed_tokens)\n";
    auto print_count = [](const char* label, int64_t n) {
      std::cout << label << n << " (" << minillm::with_commas(n) << "; " << std::fixed << std::setprecision(2)
                << n / 1e6 << "M)\n";
    };
    print_count("\ntotal parameters: ", report.total);
    if (report.active_per_token != report.total) print_count("active per token: ", report.active_per_token);
    if (report.mtp > 0) {
      print_count("multi-token prediction: ", report.mtp);
      print_count("without multi-token prediction: ", report.total - report.mtp);
    }
    // The cache's size per token, from a cache made on the meta device (nothing allocated).
    const auto per_token = model->make_cache(1, 1).bytes_per_token();
    std::cout << "KV cache per token: " << per_token << " bytes in fp32, " << per_token / 2 << " in bf16 ("
              << minillm::with_commas(per_token / 2 * 4096) << " bytes for 4096 tokens in bf16)\n";
    if (report.frozen > 0)
      std::cout << "(the total includes " << report.frozen
                << " values trained outside autograd, such as DeepSeek's router selection bias, counted as Mini-LLM "
                   "counts them; transformers keeps them as buffers and counts "
                << minillm::with_commas(report.total - report.frozen) << ")\n";
    return stdout_status(0);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
