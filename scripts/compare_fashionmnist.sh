#!/usr/bin/env bash
# Every method on Split Fashion-MNIST (5 tasks x 2 classes, real data) with the same splits, seeds and epochs:
# CACL, fine-tuning (NormalNN), L2, EWC, online EWC, SI, MAS, Naive_Rehearsal, GEM, separate models (--ind_models)
# and joint training (--offline_training); then the report (figures and summary.md) over all of them.
# The default fits within half an hour on 2 CPU cores: one epoch on the first 2000 training samples of each task
# (the test sets are whole), two repeats (seeds 1 and 2; one repeat of one epoch is noisy). Extra flags are passed
# on to every run, after the defaults, e.g.
#   ./scripts/compare_fashionmnist.sh --gpuid 0 --max_train_samples 0 --schedule 10 --repeat 3
# Experiments are named ${COMPARE_NAME:-compare}_<method>_...; the report goes to ${COMPARE_NAME:-compare}_report/.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/find_fashion_mnist.sh"
NAME=${COMPARE_NAME:-compare}
COMMON=(--dataset FashionMNIST --first_split_size 2 --other_split_size 2 --schedule 1 --repeat 2 --seed 1
        --gpuid -1 --max_train_samples 2000 --batch_size 128)
DENSE=(--model_type customnet --model_name Net)
MEMORY=(--memory_size 200)

method() {  # method NAME FLAGS...: one iBatchLearn run, its table printed
  local name=$1
  shift
  echo "=== $name" >&2
  "$PY" "$ROOT/iBatchLearn.py" "${COMMON[@]}" --exp_name "${NAME}_$name" "$@" "${EXTRA[@]}"
}

EXTRA=("$@")
started=$SECONDS
method cacl --sparse_wt 0.4 -e 0.001 --grow_network
method finetune "${DENSE[@]}" --agent_type default --agent_name NormalNN
method l2 "${DENSE[@]}" --agent_type regularization --agent_name L2 --reg_coef 0.01
method ewc "${DENSE[@]}" --agent_type regularization --agent_name EWC --reg_coef 100
method ewc_online "${DENSE[@]}" --agent_type regularization --agent_name EWC_online --reg_coef 400
method si "${DENSE[@]}" --agent_type regularization --agent_name SI --reg_coef 300
method mas "${DENSE[@]}" --agent_type regularization --agent_name MAS --reg_coef 1
method rehearsal "${DENSE[@]}" "${MEMORY[@]}" --agent_type exp_replay --agent_name Naive_Rehearsal
method gem "${DENSE[@]}" "${MEMORY[@]}" --agent_type exp_replay --agent_name GEM --reg_coef 0.5
method separate "${DENSE[@]}" --agent_type default --agent_name NormalNN --ind_models
method joint "${DENSE[@]}" --agent_type default --agent_name NormalNN --offline_training
PYTHONPATH="$ROOT" "$PY" -m evaluation.report results/"${NAME}"_*/ --out "${NAME}_report"
echo "all methods and the report: $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
