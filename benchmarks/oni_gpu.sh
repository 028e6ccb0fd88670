#!/usr/bin/env bash
# ONI with a real LLM judge on one GPU machine, sized for a 15-minute slot (not run in CI).
#
#   MODEL=/models/Llama-3.1-8B-Instruct bash benchmarks/oni_gpu.sh
#
# 1. starts vLLM's OpenAI-compatible server on the local model directory (nothing is downloaded),
# 2. trains ONI-retrieval and ONI-classification on nethack/score-extended with the learner on the GPU
#    for STEPS env steps each (default 300k: about 4 minutes each at ~1.5k steps/s with 16 CPU workers),
# 3. prints the annotator's counters (requests, labels/s, latency, failures) and each run's evaluation.
# Needs: pip install vllm (its own CUDA torch: use a separate venv for the server, VLLM_PY), zoo-rl[nethack].
set -euo pipefail
MODEL=${MODEL:?set MODEL to a local instruct model directory}
STEPS=${STEPS:-300000}
PORT=${PORT:-8000}
OUT=${OUT:-runs/oni-gpu}
VLLM_PY=${VLLM_PY:-python}
mkdir -p "$OUT"
"$VLLM_PY" -m vllm.entrypoints.openai.api_server --model "$MODEL" --served-model-name judge --port "$PORT" \
    --gpu-memory-utilization 0.5 --max-model-len 4096 > "$OUT/vllm.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" > /dev/null && break
  sleep 2
done
for RM in retrieval classification; do
  zoo train ONI --env nethack/score-extended --steps "$STEPS" --device cuda --out "$OUT/$RM" \
      --set reward_model=$RM --set annotator=openai --set llm_url=http://127.0.0.1:$PORT/v1 \
      --set llm_model=judge --set num_envs=64 --set num_workers=16 --eval-episodes 4 --no-progress
  tail -n 1 "$OUT/$RM/progress.csv" | tr ',' '\n' | paste -d= <(head -n 1 "$OUT/$RM/progress.csv" | tr ',' '\n') - \
      | grep -E "annotator_|intrinsic|return_mean|sps" || true
done
