"""`g2l models check NAME [--weights PATH] [--json]`: the architecture from the meta device, a checkpoint
from its header only, and every tensor that does not fit named before anyone books a GPU."""

from __future__ import annotations

import functools
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from g2l.cli import app
from g2l.models.layouts import timm_to_dinov2

ROOT = Path(__file__).resolve().parents[1]
_DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2)}


def write_header_only_safetensors(path: Path, shapes: dict[str, torch.Tensor]) -> Path:
    """A valid safetensors file whose data region is a hole (sparse): full-size headers at no disk cost.

    The format (github.com/huggingface/safetensors, README "Format"): 8-byte little-endian header length,
    a JSON header {name: {dtype, shape, data_offsets}}, then the raw bytes.
    """
    header: dict[str, dict[str, object]] = {}
    offset = 0
    for name, t in shapes.items():
        code, size = _DTYPES[t.dtype]
        nbytes = t.numel() * size
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        f.truncate(8 + len(blob) + offset)
    return path


@functools.cache
def _published_hibou_state() -> dict[str, torch.Tensor]:
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    config = Dinov2WithRegistersConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                       mlp_ratio=4, use_swiglu_ffn=True, num_register_tokens=4,
                                       image_size=224, patch_size=14)
    with torch.device("meta"):
        return Dinov2WithRegistersModel(config).state_dict()


def _hibou_hf_header(mlp_hidden: int | None = None) -> dict[str, torch.Tensor]:
    state = dict(_published_hibou_state())
    if mlp_hidden is not None:  # one wrong tensor: block 7's fused SwiGLU input projection
        state["encoder.layer.7.mlp.weights_in.weight"] = torch.empty(2 * mlp_hidden, 1024, device="meta")
    return state


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["models", "check", *args])
    return result.exit_code, result.output


def test_full_size_hibou_l_checkpoint_in_the_hugging_face_layout_fits(tmp_path: Path) -> None:
    path = write_header_only_safetensors(tmp_path / "model.safetensors", _hibou_hf_header())
    assert path.stat().st_size > 1.2e9 and path.stat().st_blocks * 512 < 1e6  # full size, no disk used
    code, out = _run("hibou-L", "--weights", str(path), "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and report["ok"] and report["layout"] == "hf-dinov2"
    assert report["params"] == 303_657_216 and report["embed_dim"] == 1024
    assert report["mean"] == [0.7068, 0.5755, 0.722] and report["std"] == [0.195, 0.2316, 0.1816]
    assert report["shapes"]["blocks.0.mlp.fc1.weight"] == [5472, 1024]


def test_a_wrong_tensor_is_named_with_both_shapes(tmp_path: Path) -> None:
    path = write_header_only_safetensors(tmp_path / "model.safetensors", _hibou_hf_header(mlp_hidden=2048))
    code, out = _run("hibou-L", "--weights", str(path))
    assert code == 1
    assert "mis-shaped  blocks.7.mlp.fc1.weight: checkpoint [4096, 1024], model [5472, 1024]" in out
    assert "does NOT fit: 0 missing, 0 unexpected, 1 mis-shaped" in out


def test_the_old_gelu_layout_is_refused_tensor_by_tensor(tmp_path: Path) -> None:
    # timm's DINOv2 ViT-L/14-reg4 has a GELU MLP (4096): the layout the hibou-L entry used to build
    import timm

    with torch.device("meta"):
        gelu = timm.create_model("vit_large_patch14_reg4_dinov2", img_size=224, num_classes=0).state_dict()
    write_header_only_safetensors(tmp_path / "gelu.safetensors", gelu)
    code, out = _run("hibou-L", "--weights", str(tmp_path / "gelu.safetensors"), "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 1 and not report["ok"]
    names = {m["name"] for m in report["mismatched"]}
    assert names == {f"blocks.{i}.mlp.{p}" for i in range(24)
                     for p in ("fc1.weight", "fc1.bias", "fc2.weight")}


def test_torch_checkpoint_header_names_missing_and_unexpected(tmp_path: Path) -> None:
    # a torch file in the original DINOv2 layout (read onto the meta device: no weights loaded)
    from g2l.models import build_model

    student = build_model("tiny-vit-student")
    state = dict(student.model.state_dict())
    state.pop("blocks.1.attn.proj.bias")
    state["head.extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "tiny.pth")
    code, out = _run("tiny-vit-student", "--weights", str(tmp_path / "tiny.pth"))
    assert code == 1
    assert "missing     blocks.1.attn.proj.bias" in out and "unexpected  head.extra.weight" in out
    torch.save(timm_to_dinov2(dict(student.model.state_dict())), tmp_path / "original.pth")
    code, out = _run("tiny-vit-student", "--weights", str(tmp_path / "original.pth"))
    assert code == 0 and "(dinov2 layout)" in out and "result     fits" in out


def test_without_weights_it_describes_the_model_and_bad_input_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "g2l", "models", "check", "hf-hub:paige-ai/Virchow2"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "2560-d cls_mean" in proc.stdout and "(631.2M)" in proc.stdout
    code, out = _run("no-such-model-xyz")
    assert code == 2 and "unknown model" in out
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    code, out = _run("hibou-L", "--weights", str(tmp_path / "junk.safetensors"))
    assert code == 2 and "junk.safetensors" in out


@pytest.mark.parametrize("name", ["hibou-L", "hf-hub:bioptimus/H-optimus-0"])
def test_json_line_carries_the_fields_the_issue_names(name: str) -> None:
    code, out = _run(name, "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and {"params", "embed_dim", "mean", "std", "shapes", "input_px"} <= set(report)
