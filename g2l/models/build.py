"""Build teachers and students: registered names, any timm name, hub snapshots or local checkpoints."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from g2l.models.checkpoint import WEIGHT_FILES, load_state_dict_file
from g2l.models.digest import weights_sha256
from g2l.models.errors import ModelError, ModelUnavailableError, UnknownModelError
from g2l.models.hf_config import is_hf_dinov2_config, timm_from_hf_config
from g2l.models.layouts import LayoutError, to_timm
from g2l.models.preprocess import Preprocess, from_timm_config
from g2l.models.zoo import EMBEDDINGS, ModelSpec, canonical_name, get_spec, known_models

__all__ = ["WEIGHT_FILES", "LoadedModel", "ModelError", "ModelUnavailableError", "UnknownModelError",
           "build_model", "embed", "load_state_dict_file", "resolve_kwargs", "skeleton"]

_ARCH_KEYS = ("architecture", "arch", "timm_name", "model_name")
_KWARGS_KEYS = ("model_args", "kwargs", "timm_kwargs")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class LoadedModel:
    """A built model plus what the rest of g2l needs to use and identify it."""

    model: torch.nn.Module
    name: str
    embed_dim: int
    preprocess: Preprocess
    weights_sha256: str
    source: str
    embedding: str = "cls"
    arch: str = ""
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """JSON-friendly description (timm arch, kwargs, preprocessing), e.g. for a config.json."""
        return {"name": self.name, "architecture": self.arch, "model_args": dict(self.kwargs),
                "embed_dim": self.embed_dim, "embedding": self.embedding,
                "preprocess": self.preprocess.to_dict(), "weights_sha256": self.weights_sha256}


_CLASS_KWARGS = ("mlp_layer", "act_layer", "norm_layer", "embed_layer")


def resolve_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted class paths in a spec ('timm.layers.SwiGLUPacked') into the classes timm expects."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _CLASS_KWARGS and isinstance(value, str) and "." in value:
            module, _, attr = value.rpartition(".")
            out[key] = getattr(importlib.import_module(module), attr)
        else:
            out[key] = value
    return out


def _offline_default() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _unavailable(spec: ModelSpec, why: str) -> ModelUnavailableError:
    repo = spec.hub_repo or spec.name
    gated = (f" {repo} is gated: accept its licence on https://huggingface.co/{repo} and set HF_TOKEN."
             if spec.gated else "")
    return ModelUnavailableError(
        f"model {spec.name!r}: weights are not available ({why}). Provide them with --weights PATH "
        f"(a safetensors or torch state dict, or a directory with config.json + model.safetensors), "
        f"or put the hub snapshot in the Hugging Face cache (`hf download {repo}` on a machine with "
        f"access; HF_HOME / HF_HUB_CACHE point at it).{gated}"
    )


def _unknown(name: str) -> UnknownModelError:
    return UnknownModelError(
        f"unknown model {name!r}. Known models: {', '.join(known_models())}; or any timm model name "
        f"(timm.list_models()), an hf-hub:<org>/<repo> timm repo, or a local directory with config.json "
        f"+ model.safetensors."
    )


def timm_state(path: str | Path, name: str) -> tuple[dict[str, torch.Tensor], str]:
    """A checkpoint's tensors in timm names (published DINOv2/transformers layouts converted), its layout."""
    try:
        return to_timm(load_state_dict_file(path))
    except LayoutError as exc:
        raise ModelError(f"{path}: weights for model {name!r} do not follow their layout: {exc}") from exc


def fit_report(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> tuple[list[str], ...]:
    """(missing, unexpected, mis-shaped) tensor names of `found` against `expected` (both timm names)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}" for k in sorted(expected)
              if k in found and found[k].shape != expected[k].shape]
    return missing, unexpected, shapes


def _load_weights(model: torch.nn.Module, path: str | Path, name: str) -> None:
    """Load a checkpoint (any published layout) into an already built model, strictly."""
    state, layout = timm_state(path, name)
    expected = model.state_dict()
    missing, unexpected, shapes = fit_report(expected, state)
    if missing or unexpected or shapes:
        raise ModelError(f"{path}: weights ({layout} layout) do not fit model {name!r}: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {shapes[:3]}")
    model.load_state_dict({k: state[k].to(expected[k].dtype) for k in expected}, strict=True)


def skeleton(arch: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    """The architecture on the meta device: every parameter's name and shape, no memory, no init cost."""
    import timm

    with torch.device("meta"):
        return timm.create_model(arch, pretrained=False, **resolve_kwargs(kwargs))


def _create_with_weights(arch: str, kwargs: dict[str, Any], path: str | Path, name: str) -> torch.nn.Module:
    """Build `arch` straight from a checkpoint: the skeleton on the meta device, weights assigned.

    Skips the random initialisation (tens of seconds and twice the memory for a ViT-g) and gives the
    same module as building then loading: checkpoint tensors are cast to the model's dtypes first.
    Checkpoints in a published non-timm layout (Hibou-L's DINOv2 or transformers names) are converted.
    """
    import itertools

    state, layout = timm_state(path, name)
    model = skeleton(arch, kwargs)
    expected = model.state_dict()
    missing, unexpected, shapes = fit_report(expected, state)
    if missing or unexpected or shapes:
        raise ModelError(
            f"{path}: weights ({layout} layout) do not fit model {name!r}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}, shape mismatches {shapes[:3]}. "
            f"Check --teacher/--weights belong together (`g2l models check {name} --weights {path}` "
            f"lists every difference)."
        )
    # contiguous: converted tensors may be views (pos_embed = pos[:, 1:]); assigned as parameters they
    # would keep odd strides (DDP's gradient buckets then warn and copy)
    model.load_state_dict({k: state[k].to(expected[k].dtype).contiguous() for k in expected}, strict=True,
                          assign=True)
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        # non-persistent buffers (not in any checkpoint) need a real build; rare for ViTs
        model = _create(arch, kwargs, seed=0)
        _load_weights(model, path, name)
    return model


def packaged_weights(spec: ModelSpec) -> Path:
    """The weights file shipped inside g2l for a `source: package` spec, checked against its pinned sha256."""
    import hashlib

    import g2l

    path = Path(g2l.__file__).resolve().parent / str(spec.weights_file)
    if not path.is_file():
        raise _unavailable(spec, f"its packaged weights {path} are missing from this installation "
                                 f"({spec.notes or 'reinstall g2l'})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if spec.weights_file_sha256 and digest != spec.weights_file_sha256:
        raise ModelError(f"model {spec.name!r}: {path} has sha256 {digest}, not the pinned "
                         f"{spec.weights_file_sha256}; restore the file from the repository ({spec.notes})")
    return path


def _create(arch: str, kwargs: dict[str, Any], seed: int) -> torch.nn.Module:
    import timm

    # A private RNG stream: every process builds the same weights and the caller's RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(arch, pretrained=False, **resolve_kwargs(kwargs))


def _read_dir_config(path: Path) -> dict[str, Any]:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelError(f"{path}: a model directory needs config.json (timm architecture + model_args)")
    cfg = json.loads(cfg_file.read_text())
    if isinstance(cfg, dict) and is_hf_dinov2_config(cfg):
        return cfg
    if not isinstance(cfg, dict) or not any(k in cfg for k in _ARCH_KEYS):
        raise ModelError(f"{cfg_file}: needs one of the keys {', '.join(_ARCH_KEYS)} "
                         f"naming the timm architecture")
    return cfg


def _hf_preprocess(path: Path) -> dict[str, Any] | None:
    """Normalisation of a transformers snapshot, from its preprocessor_config.json (when present)."""
    file = path / "preprocessor_config.json"
    if not file.is_file():
        return None
    cfg = json.loads(file.read_text())
    if not isinstance(cfg, dict) or "image_mean" not in cfg or "image_std" not in cfg:
        return None
    crop = cfg.get("crop_size")
    size = crop.get("height") if isinstance(crop, dict) else crop
    # transformers' resample codes are PIL's: 2 bilinear, 3 bicubic
    interpolation = {2: "bilinear", 3: "bicubic"}.get(int(cfg.get("resample") or 0))
    out: dict[str, Any] = {"mean": cfg["image_mean"], "std": cfg["image_std"]}
    if size:
        out["input_px"] = int(size)
    if interpolation:
        out["interpolation"] = interpolation
    return out


def _spec_from_dir(path: Path, base: ModelSpec | None, name: str | None) -> tuple[ModelSpec, dict[str, Any]]:
    cfg = _read_dir_config(path)
    if is_hf_dinov2_config(cfg):  # a transformers snapshot (histai/hibou-L): its config decides the shapes
        arch, kwargs = timm_from_hf_config(cfg, str(path / "config.json"))
        registered = None
    else:
        arch = next(cfg[k] for k in _ARCH_KEYS if k in cfg)
        kwargs = dict(next((cfg[k] for k in _KWARGS_KEYS if k in cfg), {}) or {})
        registered = get_spec(arch)
    if registered is not None:  # config.json names a registered model (e.g. a tiny student): its arch
        kwargs = {**registered.kwargs, **kwargs}
        base = base or registered
        arch = registered.arch
    if base is not None and not is_hf_dinov2_config(cfg):
        # class-valued kwargs never appear in a hub config.json; take them from the spec
        kwargs = {**{k: v for k, v in base.kwargs.items() if k not in kwargs}, **kwargs}
    kwargs.setdefault("num_classes", 0)
    size = (cfg.get("pretrained_cfg") or {}).get("input_size")
    if "img_size" not in kwargs and isinstance(size, list | tuple) and len(size) == 3:
        # timm's hub configs (H-optimus-0's) give the input size only in pretrained_cfg; timm builds
        # the model at that size, so its position embedding fits the published weights
        kwargs["img_size"] = int(size[-1])
    pre = cfg.get("preprocess") or _hf_preprocess(path) or {}
    if not pre and base is None and is_hf_dinov2_config(cfg):
        pre = {"input_px": kwargs["img_size"]}
    spec = ModelSpec(
        name=name or cfg.get("name") or str(path),
        arch=arch,
        kwargs=kwargs,
        role=base.role if base else "any",
        source="local",
        input_px=int(pre.get("input_px") or (base.input_px if base else 224)),
        mean=tuple(pre["mean"]) if "mean" in pre else (base.mean if base else None),  # type: ignore[arg-type]
        std=tuple(pre["std"]) if "std" in pre else (base.std if base else None),  # type: ignore[arg-type]
        interpolation=pre.get("interpolation") or (base.interpolation if base else None),
        embedding=cfg.get("embedding") or (base.embedding if base else "cls"),
        layouts=base.layouts if base else (
            ("hf-dinov2", "dinov2") if is_hf_dinov2_config(cfg) else ("timm",)),
        pretrained=base.pretrained if base else False,
    )
    return spec, cfg


def _finish(model: torch.nn.Module, spec: ModelSpec, source: str, device: str | torch.device,
            embedding: str | None, pretrained_cfg: dict[str, Any] | None = None) -> LoadedModel:
    import timm.data

    kind = embedding or spec.embedding
    if kind not in EMBEDDINGS:
        raise ModelError(f"embedding kind {kind!r} for {spec.name!r} is not one of {EMBEDDINGS}")
    if pretrained_cfg:
        merged = dict(getattr(model, "pretrained_cfg", {}) or {})
        merged.update(pretrained_cfg)
        model.pretrained_cfg = merged  # type: ignore[assignment]
    data_cfg = timm.data.resolve_data_config(model=model)
    pre = from_timm_config(data_cfg, input_px=spec.input_px or None, mean=spec.mean, std=spec.std,
                           interpolation=spec.interpolation)
    model.eval()
    digest = weights_sha256(model)  # before moving: identical whatever the device
    model.to(device)
    dim = int(getattr(model, "num_features", 0) or getattr(model, "embed_dim", 0))
    return LoadedModel(model=model, name=spec.name, embed_dim=dim * (2 if kind == "cls_mean" else 1),
                       preprocess=pre, weights_sha256=digest, source=source, embedding=kind,
                       arch=spec.arch, kwargs=dict(spec.kwargs))


def _hub_snapshot(spec: ModelSpec, offline: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub ships with timm
        raise _unavailable(spec, "huggingface_hub is not installed: pip install huggingface_hub") from exc
    repo = spec.hub_repo or spec.name
    try:
        # safetensors first; only repos without it (e.g. UNI) fetch pytorch_model.bin - never both
        path = Path(snapshot_download(repo, allow_patterns=["config.json", "model.safetensors",
                                                                 "preprocessor_config.json"],
                                      local_files_only=offline))
        if not (path / "model.safetensors").is_file():
            path = Path(snapshot_download(repo, allow_patterns=["config.json", "pytorch_model.bin"],
                                          local_files_only=offline))
        return path
    except Exception as exc:  # offline, gated (401/403), missing repo: all mean "bring the weights"
        why = "offline and not in the Hugging Face cache" if offline else f"{type(exc).__name__}: {exc}"
        raise _unavailable(spec, why.splitlines()[0]) from exc


def build_model(
    name: str,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    pretrained: bool = True,
    offline: bool | None = None,
    embedding: str | None = None,
) -> LoadedModel:
    """Build a model by registered name, timm name, `hf-hub:` name or local directory.

    `weights` (a state-dict file or directory) replaces any download. `pretrained=False` gives the
    architecture with seeded random weights (benchmarks). `offline` (default: $HF_HUB_OFFLINE) only
    uses the local Hugging Face cache. `embedding` overrides the model's pooling ("cls" | "cls_mean").
    """
    offline = _offline_default() if offline is None else offline
    local = Path(name).expanduser()
    if local.is_dir():
        dir_spec, cfg = _spec_from_dir(local, None, None)
        model = _create_with_weights(dir_spec.arch, dir_spec.kwargs, weights or local, dir_spec.name)
        source = f"file:{weights or local}"
        return _finish(model, dir_spec, source, device, embedding, cfg.get("pretrained_cfg"))
    if local.is_file() and local.suffix in (".safetensors", ".pt", ".pth", ".bin"):
        raise ModelError(f"{name}: a bare weights file needs a model name: pass --teacher NAME "
                         f"--weights {name} (known: {', '.join(known_models())}) "
                         f"or a directory with config.json")

    spec = get_spec(name)
    if spec is None:
        import timm

        canonical = canonical_name(name)
        if canonical.startswith("hf-hub:"):
            spec = ModelSpec(name=canonical, arch="", hub_repo=canonical[len("hf-hub:"):], role="any")
        elif timm.is_model(canonical):
            spec = ModelSpec(name=canonical, arch=canonical, kwargs={"num_classes": 0}, source="timm",
                             role="any", input_px=0)
        else:
            raise _unknown(name)

    if weights is not None:
        if not spec.arch:
            raise ModelError(f"{spec.name}: unregistered hub model; pass a directory with config.json "
                             f"as --weights or the hub snapshot directory as the model name")
        if Path(weights).is_dir() and (Path(weights) / "config.json").is_file():
            spec, cfg = _spec_from_dir(Path(weights), spec, spec.name)
        else:
            cfg = {}
        model = _create_with_weights(spec.arch, spec.kwargs, weights, spec.name)
        return _finish(model, spec, f"file:{weights}", device, embedding, cfg.get("pretrained_cfg"))

    if spec.source == "package" and pretrained:
        model = _create_with_weights(spec.arch, spec.kwargs, packaged_weights(spec), spec.name)
        return _finish(model, spec, f"package:{spec.weights_file}", device, embedding)
    if spec.source == "seeded" or not pretrained:
        seed = spec.seed if spec.seed is not None else 0
        model = _create(spec.arch, spec.kwargs, seed=seed)
        return _finish(model, spec, f"seeded:{seed}", device, embedding)
    if spec.source == "local":
        raise _unavailable(spec, "it is not downloadable as a timm model")
    if spec.source == "timm":
        import timm

        if offline:
            raise _unavailable(spec, "offline (HF_HUB_OFFLINE) and timm downloads pretrained weights")
        try:
            with torch.random.fork_rng(devices=[]):
                model = timm.create_model(spec.arch, pretrained=True, **resolve_kwargs(spec.kwargs))
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise _unavailable(spec, f"{type(exc).__name__}: {first}") from exc
        return _finish(model, spec, f"timm:{spec.arch}", device, embedding)
    snapshot = _hub_snapshot(spec, offline)
    spec2, cfg = _spec_from_dir(snapshot, spec if spec.arch else None, spec.name)
    spec2 = dataclasses.replace(spec2, source="hf-hub", hub_repo=spec.hub_repo, gated=spec.gated)
    model = _create_with_weights(spec2.arch, spec2.kwargs, snapshot, spec.name)
    return _finish(model, spec2, f"hf-hub:{spec.hub_repo}", device, embedding, cfg.get("pretrained_cfg"))


def embed(model: LoadedModel | torch.nn.Module, x: torch.Tensor, kind: str | None = None) -> torch.Tensor:
    """Embeddings [B, dim] of a preprocessed batch: the CLS token, or CLS ++ mean patch token ("cls_mean").

    Uses `forward_features` (final norm applied) and picks tokens itself, so the result does not depend
    on how the model's own head pools. Register tokens are excluded from the patch mean. Models without
    tokens (CNNs) fall back to the head's pre-logits features.
    """
    module = model.model if isinstance(model, LoadedModel) else model
    kind = kind or (model.embedding if isinstance(model, LoadedModel) else "cls")
    feats = module.forward_features(x)  # type: ignore[operator]
    if feats.ndim != 3:
        return module.forward_head(feats, pre_logits=True)  # type: ignore[operator]
    cls = feats[:, 0]
    if kind == "cls":
        return cls
    prefix = int(getattr(module, "num_prefix_tokens", 1))
    return torch.cat([cls, feats[:, prefix:].mean(dim=1)], dim=-1)
