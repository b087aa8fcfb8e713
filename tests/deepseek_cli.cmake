# DeepSeek-V3 through the programs: minillm-pretrain trains deepseek_tiny (MTP, aux-free balancing,
# expert-load metrics), minillm-eval --objective reports its terms, minillm-sft --drop-mtp starts
# from it without the MTP module, and minillm-chat answers with both (the first with --speculative).
# Arguments: TOOLS (dir of the programs), DATA (tests/data), WORK.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)
set(tok "${DATA}/tokenizer/minimind")
run("${TOOLS}/minillm-tokenizer" shard --tokenizer "${tok}" --input "${DATA}/text/poems.jsonl" --output "${WORK}/poems.bin")
run("${TOOLS}/minillm-pretrain" --preset deepseek_tiny --tokenizer "${tok}" --data "${WORK}/poems.bin" --out "${WORK}/pre"
    --batch-size 2 --seq-len 32 --steps 3 --eval-interval 0 --log-interval 1)
file(STRINGS "${WORK}/pre/metrics.jsonl" lines)
list(GET lines -1 last)
foreach(key "\"mtp_loss\":" "\"aux_loss\":" "\"expert_balance\":{\"1\":")
  string(FIND "${last}" "${key}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "metrics.jsonl lacks ${key}: ${last}")
  endif()
endforeach()
set(ckpt "${WORK}/pre/checkpoint-00000003")
run("${TOOLS}/minillm-eval" --model "${ckpt}" --ids "5 300 17 42 9 88" --objective)
if(NOT last_output MATCHES "\\{\"aux_loss\":[0-9.e-]+,\"lm_loss\":[0-9.e-]+,\"loss\":[0-9.e-]+,\"mtp_loss\":[0-9.e-]+\\}")
  message(FATAL_ERROR "unexpected --objective output:\n${last_output}")
endif()
file(READ "${ckpt}/config.json" config)
if(NOT config MATCHES "\"model_type\": \"mini_deepseekv3\"" OR NOT config MATCHES "\"num_dense_layers\": 1")
  message(FATAL_ERROR "the checkpoint is not in Mini-LLM's layout:\n${config}")
endif()
run("${TOOLS}/minillm-sft" --init "${ckpt}" --drop-mtp --tokenizer "${tok}" --data "${DATA}/text/sft.jsonl" --out "${WORK}/sft"
    --batch-size 2 --seq-len 96 --steps 2 --eval-interval 0 --log-interval 1)
file(READ "${WORK}/sft/checkpoint-00000002/config.json" config)
if(config MATCHES "use_mtp")
  message(FATAL_ERROR "--drop-mtp left the MTP module in:\n${config}")
endif()
run("${TOOLS}/minillm-chat" --model "${WORK}/sft/checkpoint-00000002" --prompt "hello" --max-new-tokens 8 --temperature 0)
# The pretrained checkpoint kept its MTP head: it drafts for speculative decoding; the SFT one has none.
run("${TOOLS}/minillm-chat" --model "${ckpt}" --prompt "hello" --max-new-tokens 8 --temperature 0 --speculative)
if(NOT last_output MATCHES "drafts accepted")
  message(FATAL_ERROR "no speculative decoding statistics:\n${last_output}")
endif()
fails("has no multi-token-prediction head" "${TOOLS}/minillm-chat" --model "${WORK}/sft/checkpoint-00000002" --prompt "hello"
      --temperature 0 --speculative)
message(STATUS "deepseek CLI: pretrain, objective, sft --drop-mtp, chat, speculative chat: ok")
