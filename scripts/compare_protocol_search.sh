#!/usr/bin/env bash
# The comparison's protocol, chosen by one rule fixed before any other method is run (README, "Comparison on Split
# Fashion-MNIST"): the cheapest setting of Split Fashion-MNIST (5 tasks of 2 classes) in which fine-tuning forgets,
# i.e. its mean BWT over seeds 1-3 is -5 points or lower. Cost = training samples a task x epochs; the candidates,
# cheapest first (at equal cost, fewer epochs first), are tried in that order and the search stops at the first that
# qualifies. Each prints fine-tuning's BWT per seed and its mean. Extra flags go to every run.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/find_fashion_mnist.sh"
CANDIDATES=("1000 1" "2000 1" "1000 2" "4000 1" "2000 2" "1000 4" "4000 2" "2000 4" "12000 1" "4000 4" "12000 2"
            "12000 4")
for candidate in "${CANDIDATES[@]}"; do
  read -r samples epochs <<<"$candidate"
  name="protocol_${samples}x${epochs}"
  "$PY" "$ROOT/iBatchLearn.py" --dataset FashionMNIST --first_split_size 2 --other_split_size 2 --gpuid -1 \
    --model_type customnet --model_name Net --agent_type default --agent_name NormalNN --batch_size 128 \
    --repeat 3 --seed 1 --max_train_samples "$samples" --schedule "$epochs" --exp_name "$name" "$@" >/dev/null
  verdict=$("$PY" - "results/${name}_reg_coef0.0" <<'EOF'
import json, os, sys
folder = sys.argv[1]
runs = [json.load(open(os.path.join(folder, f"output_run{r}.json"))) for r in range(3)]
bwt = [run["bwt"] for run in runs]
mean = sum(bwt) / len(bwt)
print(" ".join(format(value, "+.2f") for value in bwt), f"mean {mean:+.2f}", "qualifies" if mean <= -5 else "no")
EOF
)
  echo "samples ${samples} epochs ${epochs} (cost $((samples * epochs))): fine-tuning BWT by seed ${verdict}"
  if [[ $verdict == *qualifies ]]; then
    echo "chosen: --max_train_samples ${samples} --schedule ${epochs}"
    exit 0
  fi
done
echo "no candidate qualifies" >&2
exit 1
