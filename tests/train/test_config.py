import pytest

from contrastkit.train.config import (
    ConfigError,
    RunConfig,
    config_difference,
    config_from_dict,
    load_config,
)


def test_defaults_yaml_round_trip(tmp_path):
    config = RunConfig()
    path = tmp_path / "c.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


def test_file_then_overrides_and_aliases(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\nloss:\n  name: dcl\n")
    config = load_config(path, ["views=2", "train.batch_size=64", "temperature=0.3", "lr=1"])
    assert config.train.epochs == 7 and config.loss.name == "dcl"
    assert config.views.views == 2 and config.train.batch_size == 64
    assert config.loss.temperature == 0.3 and config.loss.params == {}
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)


def test_unknown_key_suggests_the_near_miss(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown config key 'train.epoch' \(did you mean train.epochs\?\)"
    ):
        load_config(None, ["train.epoch=3"])
    path = tmp_path / "c.yaml"
    path.write_text("trian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config(path)


def test_wrong_types_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=r"config key train\.epochs must be int"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="must be int; got True"):
        config_from_dict({"train": {"epochs": True}})
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)


def test_optional_fields_accept_none_and_values():
    config = config_from_dict({"data": {"train_limit": None, "root": "/x"}, "views": {"size": 8}})
    assert config.data.train_limit is None and config.data.root == "/x" and config.views.size == 8


def test_config_difference():
    a, b = RunConfig(), load_config(None, ["train.epochs=99", "loss.name=dcl"])
    assert config_difference(a, b) == ["loss.name", "train.epochs"]
    assert config_difference(a, b, ignore=("train.epochs",)) == ["loss.name"]


def test_the_dataset_alias_follows_the_recipe_and_image_only_aliases_are_refused():
    """``--dataset`` is ``<recipe>.dataset`` outside the images recipe (it used to set the
    images key ``data.name``, which those recipes ignore); ``--views`` / ``--backbone`` are
    refused there instead of being ignored."""
    seqrec = load_config(None, ["recipe=seqrec", "dataset=toys"])
    assert seqrec.seqrec.dataset == "toys" and seqrec.data.name == load_config().data.name
    graph = load_config(None, ["recipe=graphrec", "dataset=ml100k"])
    assert graph.graphrec.dataset == "ml100k"
    assert load_config(None, ["dataset=digits"]).data.name == "digits"  # images: unchanged
    with pytest.raises(ConfigError, match="configures the images recipe"):
        load_config(None, ["recipe=seqrec", "views=4"])
    with pytest.raises(ConfigError, match="has no dataset key"):
        load_config(None, ["recipe=text", "dataset=stsb"])


def test_a_bad_seqrec_valid_metric_is_refused_before_training():
    with pytest.raises(ConfigError, match=r"seqrec\.valid_metric"):
        load_config(None, ["recipe=seqrec", "seqrec.valid_metric=AUC"])
    assert load_config(None, ["recipe=seqrec", "seqrec.valid_metric=NDCG@20"])


def test_a_file_graph_dataset_error_says_how_to_clear_the_ml100k_keys():
    with pytest.raises(ConfigError, match=r"graphrec\.test_fraction=null"):
        load_config(
            None, ["graphrec.dataset=file", "graphrec.path=/tmp", "graphrec.test_fraction=0.2"]
        )


@pytest.mark.parametrize("value", ["-1", ".nan", ".inf"])
def test_checkpoint_minutes_must_be_a_finite_non_negative_number(value):
    with pytest.raises(ConfigError, match=r"train\.checkpoint_minutes"):
        load_config(None, [f"train.checkpoint_minutes={value}"])
    assert load_config(None, ["train.checkpoint_minutes=0"]).train.checkpoint_minutes == 0.0
