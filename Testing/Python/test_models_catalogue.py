"""The model catalogue: one name per model across the four pillars, listed without torch."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vfmlab.cli import main
from vfmlab.errors import InputError
from vfmlab.models import CATALOGUE, FAMILIES, builder, get, load, names


def test_the_catalogue_and_the_listing_import_no_torch():
    code = ("import sys; import vfmlab.models, vfmlab.models.listing, vfmlab.models.commands, vfmlab.cli; "
            "from vfmlab.models.listing import model_rows; rows = model_rows(); "
            "heavy = [m for m in ('torch', 'monai', 'timm', 'segment_anything') if m in sys.modules]; "
            "print(len(rows), heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= len(CATALOGUE) and out[1] == "[]", out


def test_models_json_lists_every_family_and_sam_vit_b_once_with_both_roles(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    listed = [row["name"] for row in rows]
    assert len(listed) == len(set(listed)), "one name per model"
    assert {family for row in rows for family in row["families"]} == set(FAMILIES)
    sam = [row for row in rows if row["name"].startswith("sam_vit")]
    assert [(row["name"], row["families"]) for row in sam] == [("sam_vit_b", ["segmenter", "probe"])]
    status = {row["name"]: row["status"] for row in rows}
    assert status["litemedsam"] == "packaged" and status["lookup"] == "trained here"
    assert status["dino_vits16"] == "missing"  # the test session's weights folder is empty
    assert main(["models", "--family", "dvr"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table] == list(names("dvr"))


def test_every_pillar_reads_its_names_from_the_catalogue():
    from vfmlab.btvae.registry import MODEL_NAMES
    from vfmlab.dvr.models import model_names
    from vfmlab.probes.registry import PROBES
    from vfmlab.models.listing import segmenter_names

    assert list(PROBES) == list(names("probe")) == ["litemedsam", "dino_vits16", "dino_vitb16", "clip_vitb16",
                                                    "sam_vit_b"]
    assert model_names() == list(names("dvr")) == ["lookup", "mlp", "vnet4-4", "vnetl16-4", "vnetl16-17", "dvrnet"]
    assert MODEL_NAMES == names("btvae") == ("btvae", "vae", "unet", "bt-unet")
    assert segmenter_names()[:5] == ["litemedsam", "hq_litemedsam", "sam_vit_b", "hq_sam_vit_b", "hq_sam_vit_tiny"]


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_every_role_points_at_real_code(name):
    for role in CATALOGUE[name].roles:
        assert callable(load(role.builder)), role.builder
        if role.config:
            assert isinstance(load(role.config), type), role.config
        if "model_class" in role.options:
            assert callable(load(role.options["model_class"]))


def test_models_are_built_through_the_catalogue():
    from vfmlab.btvae.config import ModelConfig
    from vfmlab.dvr.models import DVRModel, model_config

    assert isinstance(builder("dvrnet", "dvr")("dvrnet", model_config("dvrnet", "small")), DVRModel)
    vae = builder("btvae", "btvae")("btvae", ModelConfig())
    assert vae.probabilistic


def test_unknown_names_and_wrong_roles_say_what_exists():
    with pytest.raises(InputError, match="unknown probe model 'lookup'; choose one of litemedsam, dino_vits16"):
        get("lookup", "probe")
    with pytest.raises(InputError, match="not a dvr model; it is: segmenter, probe"):
        get("sam_vit_b").role("dvr")
    # the probe name of SAM ViT-B before the catalogue still reads (old command lines, probe records)
    assert get("sam_vitb", "probe").name == "sam_vit_b"
    from vfmlab.probes.registry import parse_models

    assert parse_models("sam_vitb,litemedsam,sam_vit_b") == ["sam_vit_b", "litemedsam"]
