"""bf16 autocast on CUDA, fp32 on CPU; the precision is part of the embedding store key."""

import dataclasses

import numpy as np
import pytest

from g2l.evaluate.models import ModelSpecError, load_model, resolve_precision


def test_auto_precision_is_bf16_on_cuda_and_fp32_on_cpu():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ModelSpecError, match="precision"):
        resolve_precision("fp16", "cuda")


def test_the_store_key_changes_with_the_precision(tmp_path):
    from g2l.evaluate.embed import store_key

    class Bench:
        content_sha256 = "c" * 64

    model = load_model("teacher", "tiny-vit-teacher", device="cpu")
    assert model.precision == "fp32"
    assert store_key(model, Bench()) != store_key(dataclasses.replace(model, precision="bf16"), Bench())


@pytest.mark.gpu
def test_bf16_autocast_on_cuda_stays_close_to_fp32():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    tiles = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(16)]
    cpu = load_model("teacher", "tiny-vit-teacher", device="cpu").embed_tiles(tiles)
    gpu = load_model("teacher", "tiny-vit-teacher", device="cuda")
    assert gpu.precision == "bf16"
    seen = []
    gpu.loaded.model.blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = gpu.embed_tiles(tiles)
    assert seen == [torch.bfloat16] and out.dtype == np.float32
    cos = (out * cpu).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(cpu, axis=1)
    assert cos.min() > 0.99
