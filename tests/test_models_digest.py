import torch
from safetensors.torch import save_file

from g2l.models import build_model, load_state_dict_file, state_dict_sha256, weights_sha256


def test_digest_is_stable_across_safetensors_and_torch_save(tmp_path):
    m = build_model("tiny-vit-teacher").model
    save_file(m.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(m.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in m.state_dict().items()}}, tmp_path / "ckpt.pth")
    files = ("w.safetensors", "w.pt", "ckpt.pth")
    digests = {state_dict_sha256(load_state_dict_file(tmp_path / f)) for f in files}
    assert digests == {weights_sha256(m)}


def test_digest_ignores_key_order_but_changes_with_any_weight():
    m = build_model("tiny-vit-teacher").model
    state = m.state_dict()
    reordered = dict(reversed(list(state.items())))
    assert state_dict_sha256(reordered) == weights_sha256(m)
    changed = dict(state)
    name = sorted(changed)[-1]
    changed[name] = changed[name].clone()
    changed[name].view(-1)[0] += 1e-3
    assert state_dict_sha256(changed) != weights_sha256(m)
    as_half = {k: v.half() for k, v in state.items()}
    assert state_dict_sha256(as_half) != weights_sha256(m)  # dtype is part of the identity


def test_checkpoint_build_equals_build_then_load(tmp_path):
    from g2l.models import embed
    from g2l.models.build import _create, _load_weights

    src = build_model("tiny-vit-student")
    with torch.no_grad():
        next(src.model.parameters()).add_(0.3)
    save_file({k: v.half() for k, v in src.model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    fast = build_model("tiny-vit-student", weights=tmp_path / "w.safetensors")  # meta skeleton + assign
    slow = _create(fast.arch, fast.kwargs, seed=0)
    _load_weights(slow, tmp_path / "w.safetensors", "tiny-vit-student")
    assert fast.weights_sha256 == weights_sha256(slow)  # fp16 file cast to the model's fp32 either way
    assert all(p.requires_grad and p.dtype == torch.float32 for p in fast.model.parameters())
    x = fast.preprocess(torch.randint(0, 255, (2, 224, 224, 3), dtype=torch.uint8))
    with torch.no_grad():
        assert torch.equal(embed(fast, x), embed(slow, x))
