#!/usr/bin/env bash
# The attack of docs/trusting-results.md, end to end: someone who can write the store (a restored CI
# cache, a shared folder) gives a failing method its parent's predictions. Without a key the gate then
# passes, and `robustprune store verify --recompute-evaluations` finds the forgery; with a key the
# forged entries are never used. Run it where robustprune is installed (your virtualenv active):
#   bash docs/demos/forged-store.sh [WORK_DIR]
set -uo pipefail
work="${1:-$(mktemp -d)}"
mkdir -p "$work" && cd "$work" || exit 2
rm -rf store-plain store-keyed
cat > suite_forged.py <<'PY'
"""Random pruning of half the weights: the gate below fails honestly."""
from robustprune import Suite

suite = Suite(models=["small_cnn"], datasets=["digits"], methods=["random"], shifts=["uniform_noise@0.1"],
              ratios=[0.5], retrain_epochs=1, delta=0.01)


def test_prune_potential(case):
    assert case.prune_potential() >= 0.5
PY
cat > forge.py <<'PY'
"""Copy the parent's predictions onto the pruned network's evaluations, as a forger without the key can."""
import re
import sys
from pathlib import Path

from robustprune.compute.store import Store

root = Path(sys.argv[1])
evaluations = {}
for line in (root / "work.log").read_text().splitlines():
    match = re.search(r" eval ([0-9a-f]{64}) \S+ network (\d+) (\S+)$", line)
    if match:
        evaluations[(match.group(2), match.group(3))] = match.group(1)
plain = Store(root, auth_key=None)  # the store's own code, without the key
for (network, shift), key in evaluations.items():
    if network != "0":
        parent = plain.load_record("eval", evaluations[("0", shift)])
        plain.save("eval", key, parent["value"], parent["spec"])
        print(f"forged eval {key[:12]} (network {network}, {shift})")
PY
say() { printf '\n$ %s\n' "$*"; }
last() { tail -n "$1"; }

say "unauthenticated store: honest run, forge, rerun, verify"
unset ROBUSTPRUNE_STORE_KEY
robustprune run suite_forged.py --store store-plain --workers 1 -q --width 0 | last 3; echo "exit status ${PIPESTATUS[0]}"
python forge.py store-plain
robustprune run suite_forged.py --store store-plain --workers 1 -q --width 0 | last 3; echo "exit status ${PIPESTATUS[0]}"
robustprune store verify --store store-plain --recompute-evaluations suite_forged.py; echo "exit status $?"

say "authenticated store: the same forgery"
export ROBUSTPRUNE_STORE_KEY="demo secret"
robustprune run suite_forged.py --store store-keyed --workers 1 -q --width 0 >/dev/null; echo "exit status $?"
python forge.py store-keyed
robustprune store verify --store store-keyed; echo "exit status $?"
robustprune run suite_forged.py --store store-keyed --workers 1 -q --width 0 2>&1 | grep -E "StoreWarning|^store:|passed|failed"
echo "exit status ${PIPESTATUS[0]}"
