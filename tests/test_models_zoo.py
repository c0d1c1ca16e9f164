import json

import pytest
import torch

from g2l.models import (
    ModelUnavailableError,
    UnknownModelError,
    build_model,
    embed,
    known_models,
    weights_sha256,
)


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(UnknownModelError) as err:
        build_model("vit_no_such_model_xyz")
    msg = str(err.value)
    assert "vit_no_such_model_xyz" in msg
    for name in ("tiny-vit-teacher", "hf-hub:bioptimus/H-optimus-0", "hf-hub:paige-ai/Virchow2"):
        assert name in msg


def test_registry_names_teachers_students_and_tiny_models():
    names = known_models()
    for name in ("hf-hub:bioptimus/H-optimus-0", "hf-hub:MahmoodLab/UNI2-h", "hf-hub:paige-ai/Virchow2",
                 "hf-hub:prov-gigapath/prov-gigapath", "vit_large_patch14_reg4_dinov2",
                 "hf-hub:MahmoodLab/UNI", "hibou-L", "tiny-vit-teacher", "tiny-vit-student"):
        assert name in names


@pytest.mark.parametrize("name", ["hf-hub:bioptimus/H-optimus-0", "hf-hub:paige-ai/Virchow2", "hibou-L"])
def test_offline_or_gated_model_says_how_to_provide_weights(name):
    with pytest.raises(ModelUnavailableError) as err:
        build_model(name, offline=True)
    msg = str(err.value)
    assert name in msg and "--weights" in msg and "HF_HOME" in msg


def test_gated_hub_model_mentions_token():
    with pytest.raises(ModelUnavailableError, match="HF_TOKEN"):
        build_model("hf-hub:MahmoodLab/UNI2-h", offline=True)


def test_tiny_models_are_seeded_identically_in_every_build():
    a, b = build_model("tiny-vit-teacher"), build_model("tiny-vit-teacher")
    assert a.weights_sha256 == b.weights_sha256 == weights_sha256(b.model)
    assert a.embed_dim == 64 and build_model("tiny-vit-student").embed_dim == 48
    state = torch.random.get_rng_state()
    build_model("tiny-vit-student")
    assert torch.equal(state, torch.random.get_rng_state())  # building leaves the caller's RNG alone


def test_h_optimus_preprocessing_uses_its_own_mean_std():
    # weights file of a randomly initialised model of the same architecture keeps this offline and fast:
    # the H-optimus-0 architecture is 1.1B parameters, so check the spec-driven preprocessing on a meta build.
    from g2l.models import get_spec

    spec = get_spec("hf-hub:bioptimus/H-optimus-0")
    assert spec.mean == (0.707223, 0.578729, 0.703617) and spec.std == (0.211883, 0.230117, 0.177517)
    assert spec.kwargs["init_values"] == 1e-5 and spec.kwargs["dynamic_img_size"] is False


def test_embed_returns_cls_or_cls_plus_mean_patch_token():
    m = build_model("tiny-vit-teacher")
    x = m.preprocess(torch.randint(0, 255, (3, 224, 224, 3), dtype=torch.uint8))
    with torch.inference_mode():
        cls = embed(m, x)
        both = embed(m, x, kind="cls_mean")
        tokens = m.model.forward_features(x)
    assert cls.shape == (3, 64) and both.shape == (3, 128)
    torch.testing.assert_close(cls, tokens[:, 0])
    torch.testing.assert_close(both[:, 64:], tokens[:, 1:].mean(1))
    assert build_model("tiny-vit-teacher", embedding="cls_mean").embed_dim == 128


def test_cls_mean_excludes_register_tokens(tmp_path):
    from safetensors.torch import save_file

    d = tmp_path / "regs"
    d.mkdir()
    args = {"img_size": 224, "patch_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2, "reg_tokens": 4,
            "num_classes": 0}
    (d / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "model_args": args,
                                               "embedding": "cls_mean"}))
    import timm

    save_file(timm.create_model("vit_tiny_patch16_224", **args).state_dict(), str(d / "model.safetensors"))
    m = build_model(str(d))  # Virchow2-style pooling, from the directory's config
    x = m.preprocess(torch.randint(0, 255, (2, 224, 224, 3), dtype=torch.uint8))
    with torch.inference_mode():
        e, tokens = embed(m, x), m.model.forward_features(x)
    assert m.embed_dim == 64 and tokens.shape[1] == 1 + 4 + 49
    torch.testing.assert_close(e[:, 32:], tokens[:, 5:].mean(1))


def test_local_directory_checkpoint_round_trips(tmp_path):
    from safetensors.torch import save_file

    src = build_model("tiny-vit-student")
    with torch.no_grad():
        next(src.model.parameters()).add_(0.5)  # "trained" weights differ from the seeded init
    d = tmp_path / "student"
    d.mkdir()
    save_file(src.model.state_dict(), str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({"architecture": "tiny-vit-student", "name": "my-student"}))
    loaded = build_model(str(d))
    assert loaded.name == "my-student" and loaded.embed_dim == 48
    assert loaded.weights_sha256 == weights_sha256(src.model)
    assert loaded.weights_sha256 != build_model("tiny-vit-student").weights_sha256
    # the same file given as --weights for the registered architecture
    again = build_model("tiny-vit-student", weights=d / "model.safetensors")
    assert again.weights_sha256 == loaded.weights_sha256


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    torch.save(build_model("tiny-vit-student").model.state_dict(), tmp_path / "s.pt")
    with pytest.raises(ValueError, match="s.pt"):
        build_model("tiny-vit-teacher", weights=tmp_path / "s.pt")
