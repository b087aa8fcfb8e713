# minillm-sft from the pretraining test's checkpoint (2 packed steps, then --resume to 3), bad SFT
# input refused with file:line and nothing saved lost, then minillm-chat --prompt on the result.
# Arguments: TOOLS (dir of the programs), DATA (tests/data), INIT (a checkpoint), WORK.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)
set(tok "${DATA}/tokenizer/minimind")
set(common --init "${INIT}" --tokenizer "${tok}" --data "${DATA}/text/sft.jsonl" --val "${DATA}/text/sft.jsonl"
           --out "${WORK}/sft" --batch-size 2 --seq-len 96 --pack --eval-interval 1 --eval-batches 2 --log-interval 1
           --save-interval 2 --precision bf16)
run("${TOOLS}/minillm-sft" ${common} --steps 2)
if(NOT last_output MATCHES "6 training conversations" OR NOT last_output MATCHES "validation loss [0-9.]+")
  message(FATAL_ERROR "unexpected minillm-sft output:\n${last_output}")
endif()
run("${TOOLS}/minillm-sft" ${common} --steps 3 --resume)
if(NOT last_output MATCHES "resumed from .*checkpoint-00000002 at step 2")
  message(FATAL_ERROR "did not resume from step 2:\n${last_output}")
endif()
foreach(f config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json)
  if(NOT EXISTS "${WORK}/sft/checkpoint-00000003/${f}")
    message(FATAL_ERROR "checkpoint-00000003 lacks ${f}")
  endif()
endforeach()
if(NOT EXISTS "${WORK}/sft/tb")
  message(FATAL_ERROR "no TensorBoard directory")
endif()

# Bad input: a broken line is named, and the existing checkpoints stay as they were.
file(WRITE "${WORK}/bad.jsonl" "{\"conversations\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n{oops\n")
fails("bad.jsonl:2: not valid JSON" "${TOOLS}/minillm-sft" --init "${INIT}" --tokenizer "${tok}" --data "${WORK}/bad.jsonl" --out "${WORK}/sft" --steps 9 --resume)
fails("unknown preset \"nope\"" "${TOOLS}/minillm-sft" --preset nope --tokenizer "${tok}" --data "${DATA}/text/sft.jsonl" --out "${WORK}/x")
fails("contradicts the requested model" "${TOOLS}/minillm-sft" --preset medium --tokenizer "${tok}" --data "${DATA}/text/sft.jsonl" --out "${WORK}/sft" --steps 9 --resume)
fails("missing.jsonl" "${TOOLS}/minillm-sft" --init "${INIT}" --tokenizer "${tok}" --data "${WORK}/missing.jsonl" --out "${WORK}/y")
if(NOT EXISTS "${WORK}/sft/checkpoint-00000003/model.safetensors")
  message(FATAL_ERROR "a refused run touched the saved checkpoint")
endif()

# Chat, one-shot and from stdin.
run("${TOOLS}/minillm-chat" --model "${WORK}/sft/checkpoint-00000003" --prompt "背诵《静夜思》。" --temperature 0 --max-new-tokens 8)
if(NOT last_output MATCHES "tokens/s")
  message(FATAL_ERROR "unexpected minillm-chat output:\n${last_output}")
endif()
execute_process(COMMAND "${TOOLS}/minillm-chat" --model "${WORK}/sft/checkpoint-00000003" --max-new-tokens 4 --seed 1
                INPUT_FILE "${DATA}/text/chat_session.txt" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "history cleared" OR NOT out MATCHES "/reset")
  message(FATAL_ERROR "interactive chat failed (${rc}):\n${out}\n${err}")
endif()
fails("max-new-tokens" "${TOOLS}/minillm-chat" --model "${WORK}/sft/checkpoint-00000003" --prompt hi --max-new-tokens 0)
fails("does not fit the model's context" "${TOOLS}/minillm-chat" --model "${WORK}/sft/checkpoint-00000003" --prompt hi --max-new-tokens 5000)
message(STATUS "SFT and chat CLI: train, resume, bad input, chat: ok")
