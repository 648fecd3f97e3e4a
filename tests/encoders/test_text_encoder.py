"""TextEncoder: pooling and masking, dropout views, encode, and the sentence-transformers
export (loaded back by sentence-transformers itself)."""

from __future__ import annotations

import json

import pytest
import torch

from contrastkit.encoders.text import TextEncoder, mean_pool
from tests.text_models import tiny_bert_folder

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = ["a man is playing a guitar .", "the cat sits", "a woman reads a big red book ."]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_folder(tmp_path_factory.mktemp("bert"))


def test_mean_pool_averages_only_the_valid_tokens():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0, 0], [0, 0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))
    assert mean_pool(hidden.to(torch.bfloat16), mask).dtype == torch.float32


def test_mean_pool_refuses_bad_shapes_and_empty_rows():
    with pytest.raises(ValueError, match=r"hidden \[B, T, D\] and mask \[B, T\]"):
        mean_pool(torch.zeros(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="no valid token"):
        mean_pool(torch.zeros(2, 3, 4), torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_a_sentence_embeds_the_same_alone_and_padded_in_a_batch(bert_dir):
    encoder = TextEncoder.from_pretrained(bert_dir)
    together = encoder.encode(SENTENCES)
    alone = torch.cat([encoder.encode([s]) for s in SENTENCES])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    assert together.shape == (3, 16)


def test_pooling_follows_the_hidden_states(bert_dir):
    for pooling in ("mean", "cls"):
        encoder = TextEncoder.from_pretrained(bert_dir, pooling=pooling).eval()
        batch = encoder.tokenize(SENTENCES)
        with torch.no_grad():
            hidden = encoder.model(**batch).last_hidden_state
            z = encoder(batch["input_ids"], batch["attention_mask"])
        if pooling == "cls":
            expected = hidden[:, 0]
        else:
            m = batch["attention_mask"].unsqueeze(-1).float()
            expected = (hidden * m).sum(1) / m.sum(1)
        torch.testing.assert_close(z, expected)


def test_dropout_gives_two_views_in_training_mode_only(bert_dir):
    encoder = TextEncoder.from_pretrained(bert_dir, dropout=0.3)
    batch = encoder.tokenize(SENTENCES)
    encoder.train()
    a, b = encoder(**batch), encoder(**batch)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(encoder.encode(SENTENCES), encoder.encode(SENTENCES))
    assert encoder.training


def test_the_export_loads_in_sentence_transformers_with_the_same_embeddings(bert_dir, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    for pooling, normalize in (("mean", False), ("cls", True)):
        encoder = TextEncoder.from_pretrained(bert_dir, pooling=pooling, normalize=normalize)
        folder = encoder.save_sentence_transformers(tmp_path / f"{pooling}")
        loaded = sentence_transformers.SentenceTransformer(str(folder), device="cpu")
        theirs = loaded.encode(SENTENCES, convert_to_tensor=True)
        torch.testing.assert_close(theirs, encoder.encode(SENTENCES), rtol=1e-5, atol=1e-6)
        again = TextEncoder.from_pretrained(folder)  # read back: pooling, normalize, length
        assert (again.pooling, again.normalize, again.max_length) == (pooling, normalize, 64)
        torch.testing.assert_close(again.encode(SENTENCES), encoder.encode(SENTENCES))


def test_from_pretrained_reads_pooling_from_modules_json(bert_dir, tmp_path):
    folder = TextEncoder.from_pretrained(bert_dir, pooling="cls").save_sentence_transformers(
        tmp_path / "st"
    )
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"]
    assert TextEncoder.from_pretrained(folder).pooling == "cls"
    assert TextEncoder.from_pretrained(folder, pooling="mean").pooling == "mean"


def test_bad_arguments_are_named(bert_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        TextEncoder.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="pooling must be one of"):
        TextEncoder.from_pretrained(bert_dir, pooling="max")
    with pytest.raises(ValueError, match="dropout must be in"):
        TextEncoder.from_pretrained(bert_dir, dropout=1.5)
    encoder = TextEncoder.from_pretrained(bert_dir)
    with pytest.raises(TypeError, match="sequence of strings"):
        encoder.tokenize("one string")
    with pytest.raises(ValueError, match="empty"):
        encoder.tokenize([])
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(SENTENCES, batch_size=0)


def test_the_default_length_is_the_models_limit_and_a_longer_one_is_refused(bert_dir):
    assert TextEncoder.from_pretrained(bert_dir).max_length == 64  # max_position_embeddings
    assert TextEncoder.from_pretrained(bert_dir, max_length=16).max_length == 16
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings=64"):
        TextEncoder.from_pretrained(bert_dir, max_length=100)


def test_a_long_sentence_is_truncated_to_max_length(bert_dir):
    encoder = TextEncoder.from_pretrained(bert_dir, max_length=6)
    batch = encoder.tokenize(["a man is playing a big red guitar on the mat ."])
    assert batch["input_ids"].shape == (1, 6)


def test_sentence_transformers_folders_it_cannot_reproduce_are_refused(bert_dir, tmp_path):
    folder = TextEncoder.from_pretrained(bert_dir).save_sentence_transformers(tmp_path / "st")
    modules = json.loads((folder / "modules.json").read_text())
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    (folder / "modules.json").write_text(json.dumps([*modules, dense]))
    with pytest.raises(ValueError, match="Dense' is not supported"):
        TextEncoder.from_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(
        '{"max_seq_length": 8, "do_lower_case": true}'
    )
    with pytest.raises(ValueError, match="do_lower_case=true"):
        TextEncoder.from_pretrained(folder)


def test_a_dropout_override_the_config_cannot_take_is_refused(tmp_path):
    import transformers

    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=40)
    transformers.GPT2Model(config).save_pretrained(tmp_path / "gpt")
    with pytest.raises(ValueError, match="has none of"):
        TextEncoder.from_pretrained(tmp_path / "gpt", dropout=0.1)
