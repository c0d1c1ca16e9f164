"""The demo teacher shipped in g2l: its pinned digest, loading through the zoo, and that it knows tissue."""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import g2l
from g2l.models import ModelError, build_model, embed, get_spec
from g2l.models.build import packaged_weights

#: sha256 of g2l/synth/weights/demo-vit-teacher.safetensors as trained by
#: `python -m g2l.synth.train_teacher --out g2l/synth/weights/demo-vit-teacher.safetensors` (2 threads).
SHIPPED_TEACHER_SHA256 = "bac7596226a0bbe9c45c22df77f5ea19ef9dfa64a489a78c14640b1cceaf69fb"


def test_the_shipped_teacher_file_matches_its_pinned_digest():
    spec = get_spec("demo-vit-teacher")
    path = Path(g2l.__file__).parent / spec.weights_file
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHIPPED_TEACHER_SHA256
    assert spec.weights_file_sha256 == SHIPPED_TEACHER_SHA256
    assert path.stat().st_size < 5 * 2**20  # a few MB, fine in git
    # The zoo entry and the trainer's own docs name the command that regenerates the file.
    from g2l.synth import train_teacher

    command = f"python -m g2l.synth.train_teacher --out g2l/{spec.weights_file}"
    assert command in " ".join(spec.notes.split()) and command in (train_teacher.__doc__ or "")


def test_the_zoo_loads_the_shipped_teacher_and_refuses_a_changed_copy(tmp_path):
    teacher = build_model("demo-vit-teacher")
    assert teacher.source == "package:synth/weights/demo-vit-teacher.safetensors"
    assert teacher.embed_dim == 96 and teacher.preprocess.input_px == 112
    assert teacher.weights_sha256 == build_model("demo-vit-teacher").weights_sha256  # the same every time
    assert teacher.weights_sha256 != build_model("demo-vit-teacher", pretrained=False).weights_sha256

    spec = get_spec("demo-vit-teacher")
    original = Path(g2l.__file__).parent / spec.weights_file
    changed = tmp_path / "changed.safetensors"
    data = bytearray(original.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    changed.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="not the pinned") as err:  # an absolute weights_file is taken as is
        packaged_weights(dataclasses.replace(spec, weights_file=str(changed)))
    assert "train_teacher" in str(err.value)  # says how to get the file back


def test_the_shipped_teacher_recognises_tissue_at_sites_it_never_saw():
    # The teacher's pool used random stains, never the cohort's sites: nearest neighbours across sites
    # must still share the tissue class for the trained teacher, and mostly not for its random init.
    from g2l.synth.tissue import CLASSES, SITES, render_tile

    tiles, labels, sites = [], [], []
    for s, site in enumerate(("A1", "A2", "B6")):
        for c, label in enumerate(CLASSES):
            for t in range(3):
                tiles.append(render_tile(label, SITES[site], px=112, mpp=1.0, supersample=2, seed=77,
                                         region_hash=1000 * s + 10 * c + t, origin=(5000 * t, 7000 * c)))
                labels.append(c)
                sites.append(s)
    labels, sites = np.array(labels), np.array(sites)

    def cross_site_nn_accuracy(model) -> float:
        with torch.inference_mode():
            f = embed(model, model.preprocess(torch.from_numpy(np.stack(tiles)))).numpy()
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        sim = f @ f.T
        sim[sites[:, None] == sites[None, :]] = -np.inf  # neighbours from other sites only
        return float((labels[sim.argmax(1)] == labels).mean())

    assert cross_site_nn_accuracy(build_model("demo-vit-teacher")) >= 0.9
    assert cross_site_nn_accuracy(build_model("demo-vit-teacher", pretrained=False)) <= 0.6


def test_the_regenerate_command_trains_and_writes_a_loadable_teacher(tmp_path):
    from g2l.synth.train_teacher import main

    out = tmp_path / "teacher.safetensors"
    args = ["--out", str(out), "--cache", str(tmp_path / "pool"), "--threads", "1", "--tiles-per-class", "4",
            "--held-out-per-class", "1", "--epochs", "1", "--batch", "8", "--warmup-steps", "1"]
    assert main(args) == 0
    trained = build_model("demo-vit-teacher", weights=out)
    assert trained.embed_dim == 96
    assert trained.weights_sha256 != build_model("demo-vit-teacher", pretrained=False).weights_sha256
