"""Deploy gate: may MyNet ship pruned to half its weights?

Compares robustprune's WT and FT at ratio 0.5 and our own pruned checkpoint
(torch.nn.utils.prune, made by train.py) against the same parent, on clean data
and under noise. `robustprune run robustness/deploy_gate.py --export exported`
writes every network that passes to exported/<case id>/.
"""

from robustprune import DeployGate, Suite

suite = Suite(
    models=["mynet"],
    datasets=["mydigits"],
    methods=["wt", "ft"],
    shifts=["noise@3", "uniform_noise@0.1,0.2"],
    ratios=[0.3, 0.5],
    retrain_epochs=3,
    plugins=["robustprune_local"],
    dataset_params={"mydigits": {"root": "../data"}},
    parent_checkpoints={"mynet": "../checkpoints/parent.pt"},
    pruned_checkpoints={"ours": {"model": "mynet", "path": "../checkpoints/pruned.pt"}},
    gate=DeployGate(
        ratio={"wt": 0.5, "ft": 0.5, "ours": 0.5},  # for "ours": at least half of the weights must be zero
        shifts=["nominal", "noise@3"],               # uniform noise is reported, not gated
        mode="every",                                # every member of noise@3 on its own
        max_accuracy_loss=0.02,                      # 2 points against the parent on each gated shift
        max_delta_excess_error=0.05,                 # and at most 5 points of added shift error
    ),
)


def test_clean_accuracy(case):
    """Whatever the gate says, a deployed network must stay above 90 % on clean data."""
    assert case.accuracy() >= 0.90
