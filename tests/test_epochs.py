"""The epoch curve: one training, every epoch's prompts kept in the run store and evaluated."""
from __future__ import annotations

import pytest
import torch

from anomclip.data.synth import make_synthetic
from anomclip.engine.epochs import epoch_curve
from anomclip.engine.features import FeatureCache, extract_features
from anomclip.engine.loading import build_model
from anomclip.engine.runner import DataSpec, run_experiment, run_folder
from anomclip.engine.train import train
from anomclip.recipes import smoke


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    roots = make_synthetic(tmp_path_factory.mktemp("synth"), n_normal=2, n_anomalous=2, size=96)
    cache = FeatureCache(tmp_path_factory.mktemp("features"))
    train_on = DataSpec(str(roots["textures"]), "textures", categories=("dots", "grid"))
    target = DataSpec(str(roots["objects"]), "objects", categories=("disc",))
    return train_on, target, cache


def test_each_epoch_equals_a_separate_training_of_that_many_epochs_and_trains_once(data, tmp_path):
    train_on, target, cache = data
    recipe = smoke("official", epochs=15)
    trained = []
    curve = epoch_curve(recipe, train_on, [target], tmp_path, epochs=2, device="cpu", cache=cache,
                        on_epoch=lambda e, n: trained.append((e, n)))
    assert trained == [(1, 1), (2, 2)]  # two epochs trained in all, not 1 + 2
    assert sorted(curve.runs) == [1, 2] and curve.epochs == 2
    for k in (1, 2):  # independent: train() itself, k epochs from the initialisation, same seed
        model = build_model(recipe.with_(epochs=k))
        train(model, extract_features(model, train_on.samples(), cache, progress=False), progress=False)
        want = model.prompt_learner.state_dict()
        got = torch.load(curve.runs[k].checkpoint, weights_only=True)["prompt_learner"]
        assert all(torch.equal(want[n], got[n]) for n in want), k
        # keyed as any run of that recipe: the runner reads it back, nothing trained again
        again = run_experiment(recipe.with_(epochs=k), train_on, [target], tmp_path, device="cpu", cache=cache,
                               progress=False, on_epoch=lambda e, n: trained.append(e))
        assert again.reused and again.key == curve.runs[k].key
        assert curve.runs[k].folder == run_folder(recipe.with_(epochs=k), train_on, tmp_path, cache)
    assert len(trained) == 2
    frame = curve.frame()
    auroc = frame[frame.metric == "pixel_auroc"].set_index("epoch")["value"]
    assert [auroc[k] for k in (1, 2)] == [curve.runs[k].results["objects"]["mean"]["pixel_auroc"] for k in (1, 2)]
    assert len(curve.losses()) == 2
    # read back whole: a second curve trains nothing
    again = epoch_curve(recipe, train_on, [target], tmp_path, epochs=2, device="cpu", cache=cache,
                        on_epoch=lambda e, n: trained.append(e))
    assert len(trained) == 2 and all(again.runs[k].key == curve.runs[k].key for k in (1, 2))
