#!/usr/bin/env bash
# The fidelity study of issues 12 and 13 on a 2-core CPU: one 12-config sample (the space-filling sample of
# the distinct v2 networks in 150M..300M MACs) scored at every rung of the CPU ladder (smoke, short), with two
# seeds each, at the reference fidelity (every training image, 4.7x short's), and at full resolution with the
# images cut to smoke's cost (smoke-full). Two queues, one per core, one torch thread each.
# Usage: benchmarks/fidelity_study.sh A|B   (run both, in two shells; resumable: re-running skips done rows)
set -euo pipefail
cd "$(dirname "$0")/.."
B=benchmarks
S=(--configs 12 --min-macs 150M --max-macs 300M --quiet)
table() { PYTHONPATH="${SNAPSHOT:-$PWD}" OMP_NUM_THREADS=1 taskset -c "$core" python3 -m archsearch bench-table "${S[@]}" "$@"; }
case "${1:-}" in
  A) core=0
     table --profile smoke --seed 0 --out $B/table_v2_rung_smoke_s0.csv
     table --profile smoke --seed 1 --out $B/table_v2_rung_smoke_s1.csv
     table --profile '{"base": "smoke", "name": "smoke-full", "resolution_scale": 1.0, "train_per_class": 38}' \
           --out $B/table_v2_smoke_full.csv
     table --profile short --seed 1 --out $B/table_v2_rung_short_s1.csv ;;
  B) core=1
     table --profile reference --out $B/table_v2_reference.csv
     table --profile short --seed 0 --curve --out $B/table_v2_rung_short_s0.csv ;;
  *) echo "usage: $0 A|B" >&2; exit 2 ;;
esac
