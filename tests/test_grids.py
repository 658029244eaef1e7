"""The paper's grids, derived from the config definitions exactly as torchprune derives them (with numpy here)."""

from __future__ import annotations

import numpy as np
import pytest

from robustprune import paper_grid
from robustprune.core.grids import PAPER_GRIDS


def _numpy_grid(grid) -> list[float]:
    """torchprune's rule with numpy: geomspace/linspace segments, array_split into retrain chunks."""
    spaced = {"geometric": np.geomspace, "linear": np.linspace}
    keeps = np.concatenate([spaced[s.kind](s.maximum, s.minimum, s.points) for s in grid.spacing])
    count = len(keeps) if grid.retrain_iterations < 1 else grid.retrain_iterations
    return sorted(round(1 - float(chunk[-1]), 6) for chunk in np.array_split(keeps, count))


@pytest.mark.parametrize("network", sorted(PAPER_GRIDS))
def test_every_grid_matches_the_config_definition(network):
    grid = PAPER_GRIDS[network]
    assert list(paper_grid(network)) == _numpy_grid(grid)
    keeps = np.concatenate([{"geometric": np.geomspace, "linear": np.linspace}[s.kind](s.maximum, s.minimum, s.points)
                            for s in grid.spacing])
    assert np.allclose(grid.keep_ratios(), keeps, rtol=0, atol=1e-12)


def test_resnet20_retrains_at_23_of_69_points_and_at_the_papers_085():
    grid = PAPER_GRIDS["resnet20"]
    assert len(grid.keep_ratios()) == 69 and [len(c) for c in grid.chunks()] == [3] * 23
    ratios = paper_grid("resnet20")
    assert len(ratios) == 23 and 0.85 in ratios  # the paper's WT and SiPP prune potential is a grid point
    assert ratios[0] == 0.15 and ratios[-1] == 0.98 and list(ratios) == sorted(set(ratios))


def test_imagenet_grids_retrain_at_every_point():
    assert len(paper_grid("resnet18")) == 18 and len(paper_grid("resnet101")) == 16


def test_an_unknown_grid_lists_the_known_ones():
    with pytest.raises(ValueError, match="no paper grid for 'resnet21'; grids: resnet20, "):
        paper_grid("resnet21")
