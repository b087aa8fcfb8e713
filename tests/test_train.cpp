// Learning-rate schedules and the trainer's optimisation step.
#include "helpers.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <limits>
#include <map>
#include <thread>

#include <minillm/data/packed_windows.hpp>
#include <minillm/train/checkpoint.hpp>
#include <minillm/train/loop.hpp>
#include <minillm/train/tensorboard.hpp>
#include <minillm/train/trainer.hpp>
#include <torch/nn/utils/clip_grad.h>

using namespace minillm;
using namespace minillm::train;
using nlohmann::json;

TEST_CASE("train: learning-rate schedules") {
  ScheduleOptions mm{.kind = LrSchedule::minimind_cosine, .lr = 1e-3, .total_steps = 100};
  CHECK(learning_rate(mm, 0) == doctest::Approx(1e-3));
  CHECK(learning_rate(mm, 50) == doctest::Approx(0.55e-3));  // 0.1 + 0.45 * (1 + cos(pi / 2))
  CHECK(learning_rate(mm, 100) == doctest::Approx(0.1e-3));
  ScheduleOptions wc{.kind = LrSchedule::warmup_cosine, .lr = 1e-3, .total_steps = 110, .warmup_steps = 10, .min_lr_ratio = 0.1};
  CHECK(learning_rate(wc, 0) == doctest::Approx(1e-4));
  CHECK(learning_rate(wc, 9) == doctest::Approx(1e-3));
  CHECK(learning_rate(wc, 10) == doctest::Approx(1e-3));
  CHECK(learning_rate(wc, 60) == doctest::Approx(0.55e-3));
  CHECK(learning_rate(wc, 110) == doctest::Approx(1e-4));
  CHECK(learning_rate(wc, 500) == doctest::Approx(1e-4));  // stays at the floor
  CHECK_THROWS_AS(lr_schedule_from_name("linear"), std::invalid_argument);
}

TEST_CASE("train: accumulating k micro-batches equals one batch k times larger") {
  const auto cfg = test::small_config("llama");
  at::manual_seed(30);
  CausalLM<arch::Llama> a(cfg), b(cfg);
  {
    at::NoGradGuard g;
    auto src = a->named_parameters();
    for (auto& p : b->named_parameters()) p.value().copy_(src[p.key()]);
  }
  const auto batch = at::randint(0, 97, {4, 9}, at::kLong);
  TrainerOptions opt{.schedule = {.kind = LrSchedule::constant, .lr = 1e-2}, .accumulation = 2, .clip = 0.5};
  Trainer ta(a, opt);
  opt.accumulation = 1;
  Trainer tb(b, opt);
  const auto sa = ta.step({batch.narrow(0, 0, 2), batch.narrow(0, 2, 2)});
  const auto sb = tb.step({batch});
  CHECK(sa.loss == doctest::Approx(sb.loss).epsilon(1e-6));
  CHECK(sa.grad_norm == doctest::Approx(sb.grad_norm).epsilon(1e-5));
  CHECK(sa.grad_norm > 0.5);  // clipping was active
  // The accumulated (clipped) gradients are the same; they stay on the parameters after step().
  auto pb = b->named_parameters();
  double worst_grad = 0, worst_param = 0, largest_grad = 0;
  for (const auto& p : a->named_parameters()) {
    worst_grad = std::max(worst_grad, test::max_abs_diff(p.value().grad(), pb[p.key()].grad()));
    largest_grad = std::max(largest_grad, p.value().grad().abs().max().item<double>());
    worst_param = std::max(worst_param, test::max_abs_diff(p.value(), pb[p.key()]));
  }
  CHECK(worst_grad < 1e-6 * std::max(1.0, largest_grad));
  // Adam's first update is lr * g / (|g| + eps), which turns rounding in near-zero gradient
  // components into visible steps: parameters agree to a small fraction of lr (seen: 8e-6, 1.1e-5).
  CHECK(worst_param < 0.01 * 1e-2);
  CHECK(sa.tokens == 4 * 8);
}

TEST_CASE("train: a non-finite loss skips the step without touching the weights, and too many stop training") {
  at::manual_seed(31);
  auto cfg = test::small_config("llama");
  cfg.tie_word_embeddings = false;
  CausalLM<arch::Llama> m(cfg);
  Trainer trainer(m, {.schedule = {.kind = LrSchedule::constant, .lr = 1e-2}, .max_consecutive_skips = 3});
  const auto clean = at::randint(1, 97, {2, 8}, at::kLong);
  trainer.step({clean});
  // Poison token 0's embedding: a batch containing it has a NaN loss.
  {
    at::NoGradGuard g;
    m->model->embed_tokens->weight[0].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  std::map<std::string, at::Tensor> before;
  for (const auto& p : m->named_parameters()) before[p.key()] = p.value().clone();
  auto poisoned = clean.clone();
  poisoned[0][3] = 0;
  const auto s = trainer.step({poisoned});
  CHECK(s.skipped);
  CHECK(trainer.skipped_steps() == 1);
  for (const auto& p : m->named_parameters()) CHECK_MESSAGE(at::equal(p.value().nan_to_num(), before[p.key()].nan_to_num()), p.key());
  CHECK_FALSE(trainer.step({clean}).skipped);  // a clean batch trains again
  trainer.step({poisoned});
  trainer.step({poisoned});
  const auto msg = test::message_of<TrainingError>([&] { trainer.step({poisoned}); });
  CHECK_MESSAGE_CONTAINS(msg, "3 consecutive steps had a non-finite loss");
}

TEST_CASE("train: the trainer works through the registry's type-erased model too") {
  auto model = make_model(test::small_config("qwen3_moe"));
  Trainer trainer(*model, {.schedule = {.kind = LrSchedule::constant, .lr = 3e-3}});
  const auto batch = at::randint(0, 97, {2, 12}, at::kLong);
  const double first = trainer.step({batch}).loss;
  double last = first;
  for (int i = 0; i < 30; ++i) last = trainer.step({batch}).loss;
  CHECK(last < 0.5 * first);
}

TEST_CASE("train: N steps straight equal N/2 + checkpoint + load into a fresh process state + N/2") {
  const auto dir = test::temp_dir("resume");
  {
    minillm::data::ShardWriter w(dir / "data.bin", 97);
    at::manual_seed(40);
    for (int d = 0; d < 40; ++d) {
      const auto doc = at::randint(0, 97, {9}, at::kLong);
      w.add_document(std::vector<int64_t>(doc.data_ptr<int64_t>(), doc.data_ptr<int64_t>() + 9));
    }
    w.finish();
  }
  const auto cfg = test::small_config("minimind3_moe");
  const TrainerOptions opt{.schedule = {.kind = LrSchedule::minimind_cosine, .lr = 3e-3, .total_steps = 6},
                           .accumulation = 2};
  auto run = [&](int steps, minillm::AnyCausalLM& model, Trainer<minillm::AnyCausalLM>& trainer,
                 minillm::data::PackedWindows& data) {
    std::vector<double> losses;
    for (int i = 0; i < steps; ++i) losses.push_back(trainer.step({data.next_batch(2), data.next_batch(2)}).loss);
    return losses;
  };
  // Straight through.
  at::manual_seed(41);
  auto a = make_model(cfg);
  Trainer<minillm::AnyCausalLM> ta(*a, opt);
  minillm::data::PackedWindows da({dir / "data.bin"}, 16, 5);
  const auto straight = run(6, *a, ta, da);
  // Half, checkpoint, then a fresh model / trainer / loader / RNG state restored from it.
  at::manual_seed(41);
  auto b = make_model(cfg);
  Trainer<minillm::AnyCausalLM> tb(*b, opt);
  minillm::data::PackedWindows db({dir / "data.bin"}, 16, 5);
  auto first = run(3, *b, tb, db);
  const auto ckpt = save_checkpoint(dir / "out", *b, tb, db.cursor());
  CHECK(ckpt.filename() == "checkpoint-00000003");
  at::manual_seed(999);  // a different process would start from anything
  auto c = make_model(cfg);
  Trainer<minillm::AnyCausalLM> tc(*c, opt);
  minillm::data::PackedWindows dc({dir / "data.bin"}, 16, 5);
  const auto info = load_checkpoint(ckpt, *c, tc);
  dc.set_cursor(info.cursor);
  CHECK(info.step == 3);
  auto second = run(3, *c, tc, dc);
  first.insert(first.end(), second.begin(), second.end());
  CHECK(first == straight);  // bit-identical losses
  auto pa = a->module().named_parameters();
  for (const auto& p : c->module().named_parameters()) CHECK_MESSAGE(at::equal(p.value(), pa[p.key()]), p.key());

  // keep_last, an interrupted save, and a checkpoint that contradicts the model.
  for (int i = 0; i < 3; ++i) {
    tc.step({dc.next_batch(2)});
    save_checkpoint(dir / "out", *c, tc, dc.cursor(), /*keep_last=*/2);
  }
  std::filesystem::create_directories(dir / "out" / "checkpoint-00000099.tmp");  // killed mid-save
  const auto kept = list_checkpoints(dir / "out");
  REQUIRE(kept.size() == 2);
  CHECK(kept.back().filename() == "checkpoint-00000009");
  auto other = cfg;
  other.hidden_size = 32;
  other.head_dim = 8;
  auto d = make_model(other);
  Trainer<minillm::AnyCausalLM> td(*d, opt);
  CHECK_MESSAGE_CONTAINS(test::message_of<minillm::CheckpointError>([&] { load_checkpoint(kept.back(), *d, td); }),
                         "checkpoint hidden_size (64) contradicts the model being trained (32)");
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: keep-last never deletes the checkpoint just written, nor checkpoints of later steps") {
  const auto dir = test::temp_dir("retention");
  auto model = make_model(test::small_config("llama"));
  Trainer<minillm::AnyCausalLM> trainer(*model, {});
  auto save_at = [&](int64_t step) {
    trainer.set_step(step);
    return save_checkpoint(dir, *model, trainer, {0, 0}, /*keep_last=*/2);
  };
  save_at(10);  // an earlier run's, further along
  save_at(12);
  // A new run in the same directory: its checkpoints sort first, and used to be deleted as the oldest.
  CHECK(std::filesystem::exists(save_at(2)));
  CHECK(std::filesystem::exists(save_at(3)));
  CHECK(std::filesystem::exists(save_at(4)));
  std::vector<std::string> names;
  for (const auto& d : list_checkpoints(dir)) names.push_back(d.filename().string());
  CHECK(names == std::vector<std::string>{"checkpoint-00000003", "checkpoint-00000004", "checkpoint-00000010",
                                          "checkpoint-00000012"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: resume takes the newest complete checkpoint and names each damaged one by its file") {
  const auto dir = test::temp_dir("resume_point");
  auto model = make_model(test::small_config("llama"));
  Trainer<minillm::AnyCausalLM> trainer(*model, {});
  for (const int64_t step : {2, 4, 6, 8, 10}) {
    trainer.set_step(step);
    save_checkpoint(dir, *model, trainer, {0, static_cast<uint64_t>(step)});
  }
  auto state = [&](int64_t step) { return dir / minillm::train::detail::checkpoint_name(step) / "trainer_state.json"; };
  auto rewrite = [&](int64_t step, const std::function<void(json&)>& edit) {
    auto j = json::parse(std::ifstream(state(step)));
    edit(j);
    std::ofstream(state(step)) << j.dump();
  };
  std::filesystem::remove(state(10));                                // killed before it was written
  std::ofstream(state(8)) << "{\"step\": 8, \"skipped";            // cut off
  rewrite(6, [](json& j) { j["step"] = -5; });                       // nonsense
  rewrite(4, [](json& j) { j["step"] = 3; });                        // not the step its name says
  const auto point = find_resume_point(dir);
  CHECK(point.dir.filename() == "checkpoint-00000002");
  REQUIRE(point.passed_over.size() == 4);
  CHECK_MESSAGE_CONTAINS(point.passed_over[0], state(10).string() + ": missing");
  CHECK_MESSAGE_CONTAINS(point.passed_over[1], state(8).string() + ": not valid JSON");
  CHECK_MESSAGE_CONTAINS(point.passed_over[2], state(6).string() + ": \"step\" must be a non-negative integer, got -5");
  CHECK_MESSAGE_CONTAINS(point.passed_over[3], state(4).string() + ": step 3 contradicts the directory name (step 4)");
  // Loading a damaged one directly names the file too (it used to be a bare JSON parse error).
  CHECK_MESSAGE_CONTAINS(test::message_of<minillm::CheckpointError>([&] { load_checkpoint(state(8).parent_path(), *model, trainer); }),
                         state(8).string() + ": not valid JSON");
  const auto info = load_checkpoint(point.dir, *model, trainer);
  CHECK(info.step == 2);
  CHECK(info.cursor.position == 2);
  CHECK(find_resume_point(dir / "nothing_here").dir.empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: metrics.jsonl keeps each step once when a run resumes at an earlier step") {
  const auto dir = test::temp_dir("metrics");
  {
    std::ofstream out(dir / "metrics.jsonl");
    for (int step = 1; step <= 6; ++step) out << json{{"step", step}, {"loss", 1.0 / step}}.dump() << '\n';
    out << "{\"step\": 7, \"lo";  // a write cut off by a kill
  }
  truncate_metrics(dir / "metrics.jsonl", 4);
  std::ifstream in(dir / "metrics.jsonl");
  std::vector<int64_t> steps;
  for (std::string line; std::getline(in, line);) steps.push_back(json::parse(line)["step"].get<int64_t>());
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4});
  CHECK_FALSE(std::filesystem::exists(dir / "metrics.jsonl.tmp"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: a process killed while saving checkpoints leaves every listed checkpoint loadable") {
  const auto dir = test::temp_dir("killed");
  const auto cfg = test::small_config("llama");
  for (const int delay_ms : {3, 17, 41}) {
    CAPTURE(delay_ms);
    std::filesystem::remove_all(dir / "out");
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {  // saves checkpoint after checkpoint until it is killed
      at::set_num_threads(1);
      auto m = make_model(cfg);
      Trainer<minillm::AnyCausalLM> t(*m, {});
      for (int64_t step = 1;; ++step) {
        t.set_step(step);
        save_checkpoint(dir / "out", *m, t, {0, static_cast<uint64_t>(step)}, /*keep_last=*/2);
      }
    }
    // Once the first checkpoint exists, kill the child at some point of a later save.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (list_checkpoints(dir / "out").empty() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    const auto kept = list_checkpoints(dir / "out");
    REQUIRE_FALSE(kept.empty());
    auto m = make_model(cfg);
    Trainer<minillm::AnyCausalLM> t(*m, {});
    for (const auto& ckpt : kept) {
      CAPTURE(ckpt);
      const auto info = load_checkpoint(ckpt, *m, t);
      CHECK(info.cursor.position == static_cast<uint64_t>(info.step));
    }
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: bf16 autocast trains with fp32 weights and a loss close to fp32's") {
  const auto cfg = test::small_config("llama");
  at::manual_seed(50);
  const auto ids = at::randint(0, 97, {2, 16}, at::kLong);
  std::vector<double> losses;
  for (const auto precision : {minillm::Precision::fp32, minillm::Precision::bf16}) {
    at::manual_seed(51);
    auto m = make_model(cfg);
    Trainer<minillm::AnyCausalLM> t(*m, {.precision = precision});
    const auto s = t.step(std::vector<at::Tensor>{ids});
    CHECK_FALSE(s.skipped);
    losses.push_back(s.loss);
    for (const auto& p : m->module().parameters()) CHECK((p.scalar_type() == at::kFloat));
  }
  CHECK(losses[0] != losses[1]);  // bf16 really ran
  CHECK(std::abs(losses[0] - losses[1]) < 0.05);
  CHECK(minillm::precision_from_name("bf16") == minillm::Precision::bf16);
  CHECK_MESSAGE_CONTAINS(test::message_of([] { minillm::precision_from_name("fp8"); }), "\"fp8\"");
}

TEST_CASE("train: clip_gradients matches torch::nn::utils::clip_grad_norm_") {
  at::manual_seed(52);
  for (const double max_norm : {0.5, 1e3}) {  // clipping active, then inactive
    std::vector<at::Tensor> a, b;
    for (const auto& shape : {std::vector<int64_t>{7, 5}, {13}, {3, 4, 2}}) {
      a.push_back(at::randn(shape).requires_grad_(true));
      a.back().mutable_grad() = at::randn(shape);
      b.push_back(a.back().detach().clone().requires_grad_(true));
      b.back().mutable_grad() = a.back().grad().clone();
    }
    const double ours = clip_gradients(a, max_norm);
    const double reference = torch::nn::utils::clip_grad_norm_(b, max_norm);
    CHECK(ours == doctest::Approx(reference).epsilon(1e-6));
    for (size_t i = 0; i < a.size(); ++i) CHECK(test::max_abs_diff(a[i].grad(), b[i].grad()) < 1e-6);
  }
}

TEST_CASE("train: fused AdamW equals LibTorch's AdamW over 20 steps (runs where CUDA is available)") {
  if (!at::hasCUDA()) {
    MESSAGE("no CUDA device: skipped");
    return;
  }
  const auto cfg = test::small_config("llama");
  std::vector<std::vector<double>> losses;
  std::vector<std::unique_ptr<AnyCausalLM>> models;
  for (const bool fused : {false, true}) {
    at::manual_seed(53);
    models.push_back(make_model(cfg, at::TensorOptions().device(at::kCUDA)));
    Trainer<AnyCausalLM> t(*models.back(),
                           {.schedule = {.kind = LrSchedule::constant, .lr = 3e-3}, .fused_adamw = fused, .cuda_graph = false});
    at::manual_seed(54);
    losses.emplace_back();
    for (int i = 0; i < 20; ++i)
      losses.back().push_back(t.step(std::vector<at::Tensor>{at::randint(0, 97, {2, 16}, at::kLong).to(at::kCUDA)}).loss);
  }
  for (int i = 0; i < 20; ++i) CHECK(losses[0][i] == doctest::Approx(losses[1][i]).epsilon(1e-4));
  auto fused = models[1]->module().named_parameters();
  for (const auto& p : models[0]->module().named_parameters())
    CHECK(test::max_abs_diff(p.value(), fused[p.key()]) < 1e-4);
}

TEST_CASE("train: the CUDA-graph step equals the eager step over 24 steps, skips and shape changes included "
          "(runs where CUDA graphs are available)") {
  if (!kCudaGraphs || !at::hasCUDA()) {
    MESSAGE("no CUDA graphs: skipped");
    return;
  }
  auto cfg = test::small_config("llama");
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  std::vector<std::vector<StepStats>> runs;
  std::vector<std::unique_ptr<AnyCausalLM>> models;
  for (const bool graph : {false, true}) {
    at::manual_seed(61);
    models.push_back(make_model(cfg, cuda));
    auto& m = *models.back();
    Trainer<AnyCausalLM> t(m, {.schedule = {.kind = LrSchedule::minimind_cosine, .lr = 3e-3, .total_steps = 24},
                               .accumulation = 2,
                               .clip = 0.5,
                               .precision = Precision::bf16,
                               .cuda_graph = graph});
    at::manual_seed(62);
    runs.emplace_back();
    auto ids = [&](int64_t t) { return at::randint(0, cfg.vocab_size, {2, t}, at::kLong).to(at::kCUDA); };
    for (int i = 0; i < 24; ++i) {
      // Step 12: a non-finite weight makes the loss NaN; the step must change nothing.
      const auto norm = m.module().named_parameters()["model.norm.weight"].detach();  // shares the storage
      const auto kept = norm.clone();
      if (i == 12) norm.fill_(std::numeric_limits<float>::quiet_NaN());
      // The last steps: other shapes, which end the graph (eager from then on).
      const int64_t t_len = i < 22 ? 16 : 24;
      runs.back().push_back(t.step(std::vector<at::Tensor>{ids(t_len), ids(t_len)}));
      if (i == 12) norm.copy_(kept);
    }
  }
  for (int i = 0; i < 24; ++i) {
    CAPTURE(i);
    CHECK(runs[0][i].skipped == (i == 12));
    CHECK(runs[1][i].skipped == (i == 12));
    if (i == 12) continue;
    CHECK(runs[0][i].loss == doctest::Approx(runs[1][i].loss).epsilon(1e-3));
    CHECK(runs[0][i].grad_norm == doctest::Approx(runs[1][i].grad_norm).epsilon(1e-2));
    CHECK(runs[0][i].tokens == runs[1][i].tokens);
  }
  auto graphed = models[1]->module().named_parameters();
  for (const auto& p : models[0]->module().named_parameters()) {
    CAPTURE(p.key());
    CHECK(test::max_abs_diff(p.value(), graphed[p.key()]) < 2e-3);
  }
}

TEST_CASE("train: TensorBoard events are TFRecords of Event protobufs with valid CRC-32C") {
  namespace tbf = minillm::train::tensorboard;
  CHECK(tbf::crc32c("123456789") == 0xE3069283u);  // the CRC-32C check value
  CHECK(tbf::crc32c(std::string(32, '\0')) == 0x8A9136AAu);  // RFC 3720 B.4
  const auto dir = test::temp_dir("tb");
  std::filesystem::path file;
  {
    TensorBoardWriter w(dir);
    w.scalar("train/loss", 7, 2.5);
    file = w.path();
  }
  CHECK(file.filename().string().rfind("events.out.tfevents.", 0) == 0);
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  // Walk the records: length, its CRC, data, the data's CRC.
  std::vector<std::string> records;
  for (size_t at = 0; at < bytes.size();) {
    REQUIRE(at + 12 <= bytes.size());
    uint64_t n = 0;
    uint32_t len_crc = 0, data_crc = 0;
    std::memcpy(&n, bytes.data() + at, 8);
    std::memcpy(&len_crc, bytes.data() + at + 8, 4);
    CHECK(len_crc == tbf::masked_crc32c(bytes.substr(at, 8)));
    const auto data = bytes.substr(at + 12, n);
    std::memcpy(&data_crc, bytes.data() + at + 12 + n, 4);
    CHECK(data_crc == tbf::masked_crc32c(data));
    records.push_back(data);
    at += 12 + n + 4;
  }
  REQUIRE(records.size() == 2);
  CHECK(records[0].find("brain.Event:2") != std::string::npos);
  // The scalar event: step 7 (field 2, varint), tag and the float 2.5 (field 2, fixed32) in the summary value.
  const auto& e = records[1];
  CHECK(static_cast<int>(e[9]) == 0x10);
  CHECK(static_cast<int>(e[10]) == 7);
  CHECK(e.find("train/loss") != std::string::npos);
  float value = 0;
  const auto tag_end = e.find("train/loss") + 10;
  CHECK(static_cast<int>(e[tag_end]) == 0x15);
  std::memcpy(&value, e.data() + tag_end + 1, 4);
  CHECK(value == 2.5f);
  std::filesystem::remove_all(dir);
}
