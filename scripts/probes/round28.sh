#!/usr/bin/env bash
# Round 28 (session 6): the full grid of linear_scan's forward at B=2 T=65536 D=2048 (target 0.68 ms;
# the TPE studies' winner, the heuristic default, gives 0.703): does any config in the space reach it?
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cp tuned/h100.json $OUT/h100.json
timeout 520 python3 -m kernelgen.cli tune --gpu h100 --op linear_scan --kernel fwd --shapes 'B=2,T=65536,D=2048' \
  --sampler grid --storage $OUT/grid.journal --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -8
python3 - <<'PY'
import optuna, os
storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(os.environ["OUT"] + "/grid.journal"))
for summary in optuna.get_all_study_summaries(storage):
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    done = sorted((t for t in study.trials if t.value is not None), key=lambda t: t.value)
    print(summary.study_name, len(study.trials), "trials,", len(done), "measured")
    for t in done[:8]:
        print(f"{t.value:.4f}", t.user_attrs.get("config"))
PY
