"""robustprune's view of this project: the model and the dataset, registered by a local plugin module.

No packaging: the suite names this module in Suite(plugins=["robustprune_local"]),
and robustprune imports it from the suite's folder. It imports the project's own
modules (pytest.ini puts the repository root on the path).
"""

from __future__ import annotations

from robustprune import DatasetRequest, DatasetSpec, DataSplits, ImageSet, ModelSpec, Recipe, hookimpl

__version__ = "1"  # bump when what this module registers changes: it enters robustprune's store keys


def load_mydigits(request: DatasetRequest) -> DataSplits:
    """The project's .npy arrays from the data root (Suite.dataset_params root, or --data)."""
    from mydata import load_arrays, mean_std

    if request.root is None:
        raise ValueError("mydigits needs a data root: Suite(dataset_params={'mydigits': {'root': 'data'}}) "
                         "or --data DIR")
    arrays = load_arrays(request.root)
    mean, std = mean_std(arrays["train_images"])
    return DataSplits(
        train=ImageSet(arrays["train_images"], arrays["train_labels"]),
        test=ImageSet(arrays["test_images"], arrays["test_labels"]),
        num_classes=int(arrays["train_labels"].max()) + 1,
        mean=mean,
        std=std,
    )


def check_mydigits(request: DatasetRequest) -> str | None:
    """Cheap: are the files there? (robustprune.skip_unless_data uses it.)"""
    from mydata import missing

    if request.root is None:
        return "no data root given"
    absent = missing(request.root)
    return f"{request.root} lacks {', '.join(absent)}" if absent else None


@hookimpl
def robustprune_register_models(register):
    from mynet import MyNet

    register(ModelSpec(
        name="mynet",
        build=lambda num_classes, input_shape: MyNet(num_classes, in_channels=input_shape[0]),
        # how robustprune retrains after each prune step (the parent itself comes from a checkpoint)
        recipe=Recipe(epochs=15, batch_size=64, lr=0.05, weight_decay=5e-4, warmup=0.1, augment="none"),
        description="the project's MyNet",
    ))


@hookimpl
def robustprune_register_datasets(register):
    register(DatasetSpec(name="mydigits", load=load_mydigits, check=check_mydigits,
                         description="the project's digits, .npy arrays"))
