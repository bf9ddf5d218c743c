#!/usr/bin/env bash
# The fidelity study of issues 12 and 13 on a 2-core CPU: one 12-config sample (the space-filling sample of
# the distinct v2 networks in 150M..300M MACs) scored at both rungs of the CPU ladder (quick, smoke), with two
# seeds at the first, and at the reference fidelity (every training image, 6.3x smoke's; 4 epochs, scored on
# every val image). Two queues, one per core, one torch thread each.
# Queues C and D answer two questions of per-CPU-second ranking on the same sample: C scores every epoch of the
# smoke schedule (the scores a promotion that continues from a checkpoint would screen with), D keeps the full
# resolution and cuts the images instead (2 epochs x 75 a class at 1.0x: the MACs of smoke's 4 x 150 at 0.5x).
# Queues E, F and G measure the seed-to-seed noise of smoke-e1 and smoke-e2 (smoke stopped after epoch 1 or 2: the
# rung 0 of a ladder that continues smoke's schedule) and how they rank against the reference.
# Usage: [CORE=n] benchmarks/fidelity_study.sh A|B|C|D|E|F|G   (A and B, or C and D, in two shells; resumable: re-running
# skips done rows)
set -euo pipefail
cd "$(dirname "$0")/.."
B=benchmarks
S=(--configs 12 --min-macs 150M --max-macs 300M --quiet)
table() { PYTHONPATH="${SNAPSHOT:-$PWD}" OMP_NUM_THREADS=1 taskset -c "${CORE:-$core}" python3 -m archsearch bench-table "${S[@]}" "$@"; }
case "${1:-}" in
  A) core=0
     table --profile quick --seed 0 --out $B/table_v2_rung_quick_s0.csv
     table --profile smoke --seed 0 --out $B/table_v2_rung_smoke_s0.csv
     table --profile smoke --seed 1 --out $B/table_v2_rung_smoke_s1.csv ;;
  B) core=1
     table --profile quick --seed 1 --out $B/table_v2_rung_quick_s1.csv
     table --profile reference --out $B/table_v2_reference.csv ;;
  C) core=0
     table --profile smoke --seed 0 --curve --out $B/table_v2_rung_smoke_curve_s0.csv ;;
  D) core=1
     table --profile '{"base": "smoke", "name": "smoke-fullres", "resolution_scale": 1.0, "epochs": 2, "train_per_class": 75}' \
           --seed 0 --curve --out $B/table_v2_smoke_fullres_s0.csv ;;
  E) core=1  # the noise of the continued ladder's rung 0 (smoke-e1): seeds 1 and 2 against C's epoch 1 (seed 0)
     table --profile smoke-e1 --seed 1 --out $B/table_v2_rung_smoke-e1_s1.csv
     table --profile smoke-e1 --seed 2 --out $B/table_v2_rung_smoke-e1_s2.csv ;;
  F) core=0  # the same for smoke-e2 (the first two epochs of smoke's four), seed 1, against C's epoch 2
     table --profile smoke-e2 --seed 1 --out $B/table_v2_rung_smoke-e2_s1.csv ;;
  G) core=1
     table --profile smoke-e2 --seed 2 --out $B/table_v2_rung_smoke-e2_s2.csv ;;
  *) echo "usage: $0 A|B|C|D|E|F|G" >&2; exit 2 ;;
esac
