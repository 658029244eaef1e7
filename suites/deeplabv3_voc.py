"""The paper's DeepLabV3 / Pascal VOC setup ("Lost in Pruning", Liebenwein et al., MLSys 2021, section 4).

DeepLabV3 with a ResNet-50 backbone segmenting Pascal VOC 2011 (21 classes),
trained twice (two parents, the config's ``numNets: 2``) with the paper's
recipe (torchprune's training/voc/deeplab.yaml: SGD, lr 0.02, 45 epochs, a
poly schedule approximated by steps; see plugins/models/segmentation.py),
each pruned in a cascade by WT and SiPP (unstructured) and FT and PFP
(structured; FT and PFP keep the ASPP head's concatenated branches
consistent) over the paper's grid (keep ratios geometric from 0.8 down to
0.03, 15 ratios), retraining after every step. Every network is scored by
mean IoU on VOC 2011 ``val`` and on the 19 corruptions at severity 3, the
test distributions of the paper's hyperparameter file
(paper/lost/param/hyperparameters/voc/deeplabv3_resnet50.yaml); prune
potential at delta = 0.5 % of mIoU.

Needs Pascal VOC 2011 on disk (``VOCdevkit/VOC2011`` under the data root:
plugins/datasets/voc.py says what it reads and how it differs from the
paper's SBD split); without it the module is skipped with a reason that names
the folder looked at and how to point robustprune at it:

    robustprune run suites/deeplabv3_voc.py --data /data --device cuda
    ROBUSTPRUNE_DATA=/data pytest suites/deeplabv3_voc.py --rp-device cuda

A GPU-sized run: 2 parents and 4 x 15 retrains of 45 epochs each on 513 x 513
images. Give trained parents with ``parent_checkpoints`` to skip their training.
"""

from robustprune import Suite, paper_grid, skip_unless_data

suite = Suite(
    models=["deeplabv3_resnet50"],
    datasets=["voc"],
    methods=["wt", "sipp", "ft", "pfp"],
    shifts=["corruptions@3"],
    ratios=paper_grid("deeplabv3_resnet50"),
    delta=0.005,
    repeats=2,
    dataset_params={"voc": {"year": "2011"}},
)

skip_unless_data(suite)


def test_nominal_prune_potential(case):
    """Pruning must be worth it on clean data: at least 30 % of the weights can go within 0.5 points of mIoU
    (a limit of this suite, not a number from the paper)."""
    assert case.prune_potential() >= 0.3


def test_delta_excess_error_at_gate(shift_case):
    """At the gate ratio (the largest grid ratio not above 0.5), pruning adds at most 2 points of mIoU loss under
    any single corruption beyond what the corruption costs the parent."""
    assert shift_case.delta_excess_error <= 0.02
