# Hostile files and setups through the programs: each must fail with a message naming the file,
# line, flag or field, or take a safe, announced course. Arguments: TOOLS (dir of the programs),
# DATA (tests/data), WORK.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)
set(tok "${DATA}/tokenizer/minimind")
set(tk "${TOOLS}/minillm-tokenizer")

# The shard written over its own input: refused, the corpus untouched (also under another spelling).
configure_file("${DATA}/text/poems.jsonl" "${WORK}/corpus.jsonl" COPYONLY)
file(SIZE "${WORK}/corpus.jsonl" before)
fails("--output .*corpus.jsonl is the input file" "${tk}" shard --tokenizer "${tok}" --input "${WORK}/corpus.jsonl" --output "${WORK}/corpus.jsonl")
fails("is the input file" "${tk}" shard --tokenizer "${tok}" --input "${WORK}/corpus.jsonl" --output "${WORK}/./corpus.jsonl")
file(SIZE "${WORK}/corpus.jsonl" after)
if(NOT before EQUAL after)
  message(FATAL_ERROR "the corpus was overwritten: ${before} -> ${after} bytes")
endif()

# Empty training input: no 0-merge tokenizer, no 0-token shard.
file(WRITE "${WORK}/empty.txt" "")
fails("--input: no text to train on" "${tk}" train --input "${WORK}/empty.txt" --vocab-size 300 --output "${WORK}/tok0")
fails("empty.bin: no documents to write" "${tk}" shard --tokenizer "${tok}" --input "${WORK}/empty.txt" --output "${WORK}/empty.bin")
if(EXISTS "${WORK}/tok0/tokenizer.json" OR EXISTS "${WORK}/empty.bin")
  message(FATAL_ERROR "an empty input left a tokenizer or a shard behind")
endif()

# Errors name the line: a bad id in decode, invalid UTF-8 in encode and in a plain-text corpus.
fails("stdin line 2: token id 999999 is not in the vocabulary" sh -c "printf '1 2\\n999999\\n' | '${tk}' decode --tokenizer '${tok}'")
fails("stdin line 2: input is not valid UTF-8" sh -c "printf 'ok\\n\\377\\n' | '${tk}' encode --tokenizer '${tok}'")
execute_process(COMMAND sh -c "printf 'good line\\nbad \\377 line\\n' > '${WORK}/bad.txt'")
fails("bad.txt:2: input is not valid UTF-8" "${tk}" shard --tokenizer "${tok}" --input "${WORK}/bad.txt" --output "${WORK}/bad.bin")

# Results written to a full stdout: a failure, not exit 0.
fails("writing the results to stdout failed" sh -c "echo '1 2' | '${tk}' decode --tokenizer '${tok}' > /dev/full")
fails("writing the results to stdout failed" sh -c "'${TOOLS}/minillm-info' --preset tiny > /dev/full")
fails("writing the results to stdout failed"
      sh -c "'${TOOLS}/minillm-eval' --model '${DATA}/hf/llama_tiny' --ids '1 2 3' --greedy 2 > /dev/full")

# minillm-eval: a bad text file names its line (invalid flag values: after training, below).
set(eval "${TOOLS}/minillm-eval" --model "${DATA}/hf/llama_tiny")
execute_process(COMMAND sh -c "printf 'bad \\377 line\\n' > '${WORK}/bad_first.txt'")
fails("bad_first.txt:1: input is not valid UTF-8" ${eval} --text "${WORK}/bad_first.txt" --tokenizer "${tok}")

# minillm-info: a config with 1e9 layers is refused by validation, naming the field.
file(WRITE "${WORK}/huge.json" "{\"model_type\": \"llama\", \"num_hidden_layers\": 1000000000}")
fails("huge.json: num_hidden_layers \\(1000000000\\) exceeds the supported maximum" "${TOOLS}/minillm-info" --config "${WORK}/huge.json")

# Training runs into one --out: a used --out is refused without --resume / --overwrite; resume
# checks --steps and the data order; a damaged newest checkpoint is passed over, said on the
# console; metrics.jsonl keeps each step once.
run("${tk}" shard --tokenizer "${tok}" --input "${DATA}/text/poems.jsonl" --output "${WORK}/poems.bin")
set(out "${WORK}/run")
set(base --preset tiny --tokenizer "${tok}" --data "${WORK}/poems.bin" --out "${out}" --batch-size 2
         --save-interval 2 --eval-interval 0 --keep-last 3 --log-interval 1)
set(common ${base} --seq-len 32)
run("${TOOLS}/minillm-pretrain" ${common} --steps 6)
fails("--out .*run is not empty .*give --resume to continue that run, --overwrite to replace it"
      "${TOOLS}/minillm-pretrain" ${common} --steps 6)
fails("--steps \\(4\\) is below the step of .*checkpoint-00000006/trainer_state.json \\(6\\)"
      "${TOOLS}/minillm-pretrain" ${common} --steps 4 --resume)
fails("checkpoint-00000006/trainer_state.json: the run was started with .*seq_len\":32.*seq_len\":16"
      "${TOOLS}/minillm-pretrain" ${base} --steps 8 --resume --seq-len 16)
file(REMOVE "${out}/checkpoint-00000006/trainer_state.json")
run("${TOOLS}/minillm-pretrain" ${common} --steps 8 --resume)
if(NOT last_output MATCHES "passing over a damaged checkpoint: [^\n]*checkpoint-00000006/trainer_state.json: missing"
   OR NOT last_output MATCHES "resumed from [^\n]*checkpoint-00000004 at step 4")
  message(FATAL_ERROR "expected checkpoint-6 passed over (named) and a resume from step 4:\n${last_output}")
endif()
file(STRINGS "${out}/metrics.jsonl" lines)
set(steps "")
foreach(line IN LISTS lines)
  string(JSON step GET "${line}" step)
  list(APPEND steps ${step})
endforeach()
if(NOT steps STREQUAL "1;2;3;4;5;6;7;8")
  message(FATAL_ERROR "metrics.jsonl steps after the resume: ${steps} (expected each of 1..8 once)")
endif()
# A checkpoint whose config.json shrank the vocabulary below the tokenizer's: refused on resume,
# naming the file (its ids would otherwise reach past the embedding only when a batch held them).
file(READ "${out}/checkpoint-00000008/config.json" config)
string(REPLACE "\"vocab_size\": 6400" "\"vocab_size\": 100" shrunk "${config}")
file(WRITE "${out}/checkpoint-00000008/config.json" "${shrunk}")
fails("checkpoint-00000008/config.json: vocab_size \\(100\\) is smaller than the tokenizer's vocabulary \\(6400\\)"
      "${TOOLS}/minillm-pretrain" ${common} --steps 10 --resume)
# --overwrite starts afresh: the earlier run's checkpoints and metrics are gone, this run's kept.
run("${TOOLS}/minillm-pretrain" ${common} --steps 2 --overwrite)
file(GLOB checkpoints LIST_DIRECTORIES true RELATIVE "${out}" "${out}/checkpoint-*")
file(STRINGS "${out}/metrics.jsonl" lines)
list(LENGTH lines n)
if(NOT checkpoints STREQUAL "checkpoint-00000002" OR NOT n EQUAL 2)
  message(FATAL_ERROR "after --overwrite: checkpoints ${checkpoints}, ${n} metrics lines (expected checkpoint-00000002, 2)")
endif()
# minillm-eval refuses invalid values naming the flag (they used to evaluate one document, or
# silently take the default window).
set(eval "${TOOLS}/minillm-eval" --model "${out}/checkpoint-00000002" --text "${DATA}/text/poems.jsonl")
fails("--max-docs: Value -1 not in range" ${eval} --max-docs -1)
fails("--window: Value 0 not in range" ${eval} --window 0)
run(${eval} --max-docs 2)
if(NOT last_output MATCHES "documents 2 ")
  message(FATAL_ERROR "unexpected minillm-eval output:\n${last_output}")
endif()
message(STATUS "hostile input through the programs: ok")
