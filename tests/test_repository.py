"""The model repository: both layouts, versions, settings, config entries, containment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from berth.config import load_config
from berth.repository import Repository

from models import write_linear_softmax


def repo_for(base: Path, config: dict[str, Any] | None = None) -> Repository:
    config = {"repository": "models", **(config or {})}
    path = base / "berth.yaml"
    path.write_text(yaml.safe_dump(config))
    return Repository(load_config(path, environ={}))


def model_file(path: Path) -> Path:
    write_linear_softmax(path)
    return path


def test_folder_layout_versions_and_default(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for version in ("1", "2", "10"):
        model_file(models / "alpha" / version / "model.onnx")
    specs = repo_for(tmp_path).scan()
    spec = specs["alpha"]
    assert spec.backend == "onnx"
    assert set(spec.versions) == {"1", "2", "10"}
    assert spec.default_version == "10"  # numeric, not lexical
    assert spec.path_for(None) == (models / "alpha" / "10" / "model.onnx").resolve()
    assert spec.path_for("2") == (models / "alpha" / "2" / "model.onnx").resolve()
    assert spec.path_for("3") is None


def test_bare_file_layout(tmp_path: Path) -> None:
    model_file(tmp_path / "models" / "beta.onnx")
    spec = repo_for(tmp_path).scan()["beta"]
    assert spec.backend == "onnx"
    assert spec.versions == {"1": (tmp_path / "models" / "beta.onnx").resolve()}
    assert spec.default_version == "1"


def test_both_layouts_side_by_side(tmp_path: Path) -> None:
    model_file(tmp_path / "models" / "alpha" / "1" / "model.onnx")
    model_file(tmp_path / "models" / "beta.onnx")
    (tmp_path / "models" / "README.txt").write_text("not a model")
    (tmp_path / "models" / ".hidden.onnx").write_bytes(b"")
    repo = repo_for(tmp_path)
    assert sorted(repo.scan()) == ["alpha", "beta"]


def test_default_version_override(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for version in ("1", "2", "3"):
        model_file(models / "alpha" / version / "model.onnx")
    (models / "alpha" / "config.yaml").write_text("default_version: 2\n")  # a YAML int
    assert repo_for(tmp_path).scan()["alpha"].default_version == "2"
    # berth.yaml beats the repository's config.yaml
    spec = repo_for(tmp_path, {"models": {"alpha": {"default_version": "1"}}}).scan()["alpha"]
    assert spec.default_version == "1"


def test_default_version_without_files_is_a_problem(tmp_path: Path) -> None:
    model_file(tmp_path / "models" / "alpha" / "1" / "model.onnx")
    (tmp_path / "models" / "alpha" / "config.yaml").write_text("default_version: '7'\n")
    repo = repo_for(tmp_path)
    assert "alpha" not in repo.scan()
    assert "default_version" in repo.problems["alpha"]


def test_config_yaml_settings_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "alpha"
    model_file(folder / "1" / "model.onnx")
    (folder / "config.yaml").write_text(
        "max_batch_size: 8\nmax_queue_delay_ms: 5\nmax_concurrency: 2\nqueue_size: 17\n"
        "pinned: true\ndescription: tiny\nlabels: [a, b, c]\nmemory_estimate_mb: 12\n"
    )
    settings = repo_for(tmp_path).scan()["alpha"].settings
    assert settings.max_batch_size == 8
    assert settings.max_queue_delay_ms == 5
    assert settings.max_concurrency == 2
    assert settings.queue_size == 17
    assert settings.pinned is True
    assert settings.description == "tiny"
    assert settings.labels == ["a", "b", "c"]
    assert settings.memory_estimate_mb == 12


def test_berth_yaml_overrides_config_yaml_key_by_key(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "alpha"
    model_file(folder / "1" / "model.onnx")
    (folder / "config.yaml").write_text("max_batch_size: 8\nqueue_size: 17\n")
    settings = repo_for(tmp_path, {"models": {"alpha": {"max_batch_size": 2, "preload": True}}}).scan()["alpha"].settings
    assert settings.max_batch_size == 2
    assert settings.queue_size == 17
    assert settings.preload is True


def test_bad_config_yaml_refuses_only_that_model(tmp_path: Path) -> None:
    model_file(tmp_path / "models" / "alpha" / "1" / "model.onnx")
    model_file(tmp_path / "models" / "beta" / "1" / "model.onnx")
    (tmp_path / "models" / "alpha" / "config.yaml").write_text("max_batch_size: lots\n")
    (tmp_path / "models" / "beta" / "config.yaml").write_text("max_batchsize: 4\n")
    model_file(tmp_path / "models" / "gamma.onnx")
    repo = repo_for(tmp_path)
    assert sorted(repo.scan()) == ["gamma"]
    assert "max_batch_size" in repo.problems["alpha"]
    assert "max_batchsize" in repo.problems["beta"] and "unknown key" in repo.problems["beta"]


def test_berth_yaml_model_path_file_and_folder(tmp_path: Path) -> None:
    outside = tmp_path / "weights"
    model_file(outside / "single.onnx")
    model_file(outside / "multi" / "1" / "model.onnx")
    model_file(outside / "multi" / "4" / "model.onnx")
    (outside / "multi" / "config.yaml").write_text("max_batch_size: 3\n")
    repo = repo_for(
        tmp_path,
        {
            "repository": None,
            "models": {
                "one": {"model_path": "weights/single.onnx", "max_batch_size": 5},  # relative to berth.yaml
                "many": {"model_path": str(outside / "multi")},
            },
        },
    )
    specs = repo.scan()
    assert specs["one"].versions == {"1": (outside / "single.onnx").resolve()}
    assert specs["one"].settings.max_batch_size == 5
    assert specs["many"].default_version == "4"
    assert set(specs["many"].versions) == {"1", "4"}
    assert specs["many"].settings.max_batch_size == 3
    # find() answers the same for a configured model
    found = repo.find("one")
    assert found is not None and found.versions == specs["one"].versions


def test_configured_model_path_must_exist(tmp_path: Path) -> None:
    repo = repo_for(tmp_path, {"repository": None, "models": {"ghost": {"model_path": "nope.onnx"}}})
    assert repo.scan() == {}
    assert "does not exist" in repo.problems["ghost"]


def test_configured_model_path_wins_over_a_repository_entry(tmp_path: Path) -> None:
    model_file(tmp_path / "models" / "alpha" / "1" / "model.onnx")
    model_file(tmp_path / "elsewhere" / "alpha.onnx")
    repo = repo_for(tmp_path, {"models": {"alpha": {"model_path": "elsewhere/alpha.onnx"}}})
    expected = (tmp_path / "elsewhere" / "alpha.onnx").resolve()
    assert repo.scan()["alpha"].versions == {"1": expected}
    found = repo.find("alpha")
    assert found is not None and found.versions == {"1": expected}


@pytest.mark.parametrize("name", ["bad name", "-leading", "semi;colon", "x" * 70, "ünïcode"])
def test_invalid_names_are_skipped(tmp_path: Path, name: str) -> None:
    model_file(tmp_path / "models" / name / "1" / "model.onnx")
    model_file(tmp_path / "models" / f"{name}.onnx")
    model_file(tmp_path / "models" / "good" / "1" / "model.onnx")
    repo = repo_for(tmp_path)
    assert sorted(repo.scan()) == ["good"]
    assert repo.find(name) is None


def test_symlinked_model_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "evil"
    model_file(outside / "1" / "model.onnx")
    models = tmp_path / "models"
    model_file(models / "good" / "1" / "model.onnx")
    os.symlink(outside, models / "evil", target_is_directory=True)
    repo = repo_for(tmp_path)
    assert sorted(repo.scan()) == ["good"]
    assert "outside the repository" in repo.problems["evil"]
    assert str(tmp_path) not in repo.problems["evil"]
    assert repo.find("evil") is None


def test_symlinked_model_file_pointing_outside_is_refused(tmp_path: Path) -> None:
    target = model_file(tmp_path / "outside" / "secret.onnx")
    models = tmp_path / "models"
    (models / "evil" / "1").mkdir(parents=True)
    os.symlink(target, models / "evil" / "1" / "model.onnx")
    os.symlink(target, models / "bare.onnx")
    model_file(models / "good.onnx")
    repo = repo_for(tmp_path)
    assert sorted(repo.scan()) == ["good"]
    assert "outside the repository" in repo.problems["evil"]
    assert "outside the repository" in repo.problems["bare"]
    assert repo.find("evil") is None and repo.find("bare") is None


def test_symlinked_version_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "v"
    model_file(outside / "model.onnx")
    models = tmp_path / "models"
    model_file(models / "alpha" / "1" / "model.onnx")
    os.symlink(outside, models / "alpha" / "2", target_is_directory=True)
    repo = repo_for(tmp_path)
    specs = repo.scan()
    assert "alpha" not in specs and "outside the repository" in repo.problems["alpha"]


def test_symlinked_config_yaml_pointing_outside_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "config.yaml"
    secret.parent.mkdir()
    secret.write_text("max_batch_size: 4\n")
    models = tmp_path / "models"
    model_file(models / "alpha" / "1" / "model.onnx")
    os.symlink(secret, models / "alpha" / "config.yaml")
    repo = repo_for(tmp_path)
    assert "alpha" not in repo.scan()
    assert "outside the repository" in repo.problems["alpha"]


def test_symlink_inside_the_repository_is_fine(tmp_path: Path) -> None:
    models = tmp_path / "models"
    target = model_file(models / "alpha" / "1" / "model.onnx")
    os.symlink(target, models / "alias.onnx")
    specs = repo_for(tmp_path).scan()
    assert specs["alias"].versions == {"1": target.resolve()}


def test_unknown_backend_suffix_is_ignored(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "weird" / "1").mkdir(parents=True)
    (models / "weird" / "1" / "model.xyz").write_bytes(b"\x00")
    (models / "blob.xyz").write_bytes(b"\x00")
    (models / "notes.txt").write_text("hello")
    model_file(models / "good.onnx")
    # a known suffix wins over an unknown one in the same version folder
    model_file(models / "mixed" / "1" / "model.onnx")
    (models / "mixed" / "1" / "model.bin").write_bytes(b"\x00")
    repo = repo_for(tmp_path)
    specs = repo.scan()
    assert sorted(specs) == ["good", "mixed"]
    assert specs["mixed"].versions["1"].name == "model.onnx"
    assert repo.find("blob") is None
    assert repo.find("weird") is None


def test_other_backends_by_suffix(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "py" / "1").mkdir(parents=True)
    (models / "py" / "1" / "model.py").write_text("class Model: ...\n")
    (models / "para.json").write_text("{}")
    specs = repo_for(tmp_path).scan()
    assert specs["py"].backend == "python"
    assert specs["para"].backend == "paragon"


def test_explicit_backend_setting(tmp_path: Path) -> None:
    models = tmp_path / "models"
    model_file(models / "alpha" / "1" / "model.onnx")
    (models / "alpha" / "config.yaml").write_text("backend: onnx\n")
    assert repo_for(tmp_path).scan()["alpha"].backend == "onnx"


def test_non_integer_version_folders_are_ignored(tmp_path: Path) -> None:
    models = tmp_path / "models"
    model_file(models / "alpha" / "1" / "model.onnx")
    model_file(models / "alpha" / "latest" / "model.onnx")
    model_file(models / "alpha" / "v2" / "model.onnx")
    assert set(repo_for(tmp_path).scan()["alpha"].versions) == {"1"}


def test_find_picks_up_a_model_added_after_the_scan(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    repo = repo_for(tmp_path)
    assert repo.scan() == {}
    model_file(tmp_path / "models" / "late" / "3" / "model.onnx")
    spec = repo.find("late")
    assert spec is not None and spec.default_version == "3"
    assert repo.find("../models/late") is None
    assert repo.find("nothing") is None


def test_missing_repository_folder(tmp_path: Path) -> None:
    repo = repo_for(tmp_path)  # models/ was never created
    with pytest.raises(ValueError, match="does not exist"):
        repo.scan()
