#!/usr/bin/env bash
# The fidelity study of issues 12 and 13 on a 2-core CPU: one 12-config sample (the space-filling sample of
# the distinct v2 networks in 150M..300M MACs) scored at both rungs of the CPU ladder (quick, smoke), with two
# seeds at the first, and at the reference fidelity (every training image, 6.3x smoke's; 4 epochs, scored on
# every val image). Two queues, one per core, one torch thread each.
# Usage: benchmarks/fidelity_study.sh A|B   (run both, in two shells; resumable: re-running skips done rows)
set -euo pipefail
cd "$(dirname "$0")/.."
B=benchmarks
S=(--configs 12 --min-macs 150M --max-macs 300M --quiet)
table() { PYTHONPATH="${SNAPSHOT:-$PWD}" OMP_NUM_THREADS=1 taskset -c "$core" python3 -m archsearch bench-table "${S[@]}" "$@"; }
case "${1:-}" in
  A) core=0
     table --profile quick --seed 0 --out $B/table_v2_rung_quick_s0.csv
     table --profile smoke --seed 0 --out $B/table_v2_rung_smoke_s0.csv
     table --profile smoke --seed 1 --out $B/table_v2_rung_smoke_s1.csv ;;
  B) core=1
     table --profile quick --seed 1 --out $B/table_v2_rung_quick_s1.csv
     table --profile reference --out $B/table_v2_reference.csv ;;
  *) echo "usage: $0 A|B" >&2; exit 2 ;;
esac
