#!/usr/bin/env bash
# Every method on Split Fashion-MNIST (5 tasks x 2 classes, real data) with the same splits, seeds and epochs:
# CACL; PackNet, HAT, progressive networks (PNN) and GPM; GT-RIPL's fine-tuning (NormalNN), L2, EWC, online EWC, SI,
# MAS, Naive_Rehearsal and GEM; separate models (--ind_models) and joint training (--offline_training); then the
# report (figures and summary.md) over all of them.
# The protocol is the one scripts/compare_protocol_search.sh chose by its rule (the cheapest setting in which
# fine-tuning forgets): 2 epochs on the first 1000 training samples of each task, whole test sets, batch 128, Adam at
# lr 0.001, seeds 1, 2, 3. Each method's own settings are its authors' (README, "Comparison on Split Fashion-MNIST").
# Every run also scores the test samples without their task label (--task_agnostic), which the report sets beside
# the task-aware accuracy.
# On a CPU it runs COMPARE_JOBS (default 2) methods at once, each on nproc / COMPARE_JOBS threads; each method's
# output goes to ${COMPARE_NAME:-compare}_logs/<method>.log. Extra flags are passed on to every run, after the
# defaults, e.g. on a GPU with the full data:
#   COMPARE_JOBS=1 ./scripts/compare_fashionmnist.sh --gpuid 0 --max_train_samples 0 --schedule 10 --overwrite
# Experiments are named ${COMPARE_NAME:-compare}_<method>_...; the report goes to ${COMPARE_NAME:-compare}_report/.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/find_fashion_mnist.sh"
NAME=${COMPARE_NAME:-compare}
JOBS=${COMPARE_JOBS:-2}
if ! [[ $JOBS =~ ^[1-9][0-9]*$ ]]; then
  echo "error: COMPARE_JOBS must be a positive number of methods run at once, not '$JOBS'" >&2
  exit 2
fi
THREADS=$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))
COMMON=(--dataset FashionMNIST --first_split_size 2 --other_split_size 2 --max_train_samples 1000 --schedule 2
        --batch_size 128 --optimizer Adam --lr 0.001 --repeat 3 --seed 1 --gpuid -1 --task_agnostic)
DENSE=(--model_type customnet --model_name Net)
MEMORY=(--memory_size 200)
EXTRA=("$@")
LOGS="${NAME}_logs"
mkdir -p "$LOGS"

# The methods, the slowest first so that the lanes finish together: a name, then its flags.
METHODS=(
  "pnn ${DENSE[*]} --agent_type pnn --agent_name PNN"
  "gem ${DENSE[*]} ${MEMORY[*]} --agent_type exp_replay --agent_name GEM --reg_coef 0.5"
  "cacl --sparse_wt 0.4 -e 0.001 --grow_network"
  "packnet ${DENSE[*]} --agent_type packnet --agent_name PackNet --prune_perc_per_layer 0.5 --post_prune_epochs 1"
  "hat ${DENSE[*]} --agent_type hat --agent_name HAT"
  "gpm ${DENSE[*]} --agent_type gpm --agent_name GPM"
  "ewc ${DENSE[*]} --agent_type regularization --agent_name EWC --reg_coef 100"
  "ewc_online ${DENSE[*]} --agent_type regularization --agent_name EWC_online --reg_coef 400"
  "mas ${DENSE[*]} --agent_type regularization --agent_name MAS --reg_coef 1"
  "rehearsal ${DENSE[*]} ${MEMORY[*]} --agent_type exp_replay --agent_name Naive_Rehearsal"
  "si ${DENSE[*]} --agent_type regularization --agent_name SI --reg_coef 300"
  "l2 ${DENSE[*]} --agent_type regularization --agent_name L2 --reg_coef 0.01"
  "separate ${DENSE[*]} --agent_type default --agent_name NormalNN --ind_models"
  "finetune ${DENSE[*]} --agent_type default --agent_name NormalNN"
  "joint ${DENSE[*]} --agent_type default --agent_name NormalNN --offline_training"
)

run_method() {  # run_method NAME FLAGS...: one iBatchLearn run, its output in $LOGS/NAME.log
  local name=$1
  shift
  OMP_NUM_THREADS=$THREADS "$PY" "$ROOT/iBatchLearn.py" "${COMMON[@]}" --exp_name "${NAME}_$name" "$@" "${EXTRA[@]}" \
    >"$LOGS/$name.log" 2>&1
}

started=$SECONDS
declare -A RUNNING=()
failed=()
finish_one() {  # wait for any running method; note it, and whether it failed
  local pid status=0 name
  wait -n -p pid || status=$?
  name=${RUNNING[$pid]}
  unset "RUNNING[$pid]"
  if [ "$status" -ne 0 ]; then
    failed+=("$name")
    echo "=== $name FAILED (exit $status): the end of $LOGS/$name.log" >&2
    tail -n 5 "$LOGS/$name.log" >&2
  else
    echo "=== $name done ($(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s in)" >&2
  fi
}
for entry in "${METHODS[@]}"; do
  read -r -a words <<<"$entry"
  while [ "${#RUNNING[@]}" -ge "$JOBS" ]; do finish_one; done
  run_method "${words[@]}" &
  RUNNING[$!]=${words[0]}
done
while [ "${#RUNNING[@]}" -gt 0 ]; do finish_one; done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "error: ${failed[*]} failed (their logs are in $LOGS/); no report made" >&2
  exit 1
fi
PYTHONPATH="$ROOT" "$PY" -m evaluation.report results/"${NAME}"_*/ --out "${NAME}_report"
echo "all methods and the report: $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
