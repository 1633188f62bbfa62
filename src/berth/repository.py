"""The model repository: a folder of models, plus models named in ``berth.yaml``.

Two layouts are recognised under the repository root::

    models/<name>/config.yaml          optional per-model settings (ModelConfig keys)
    models/<name>/<version>/model.<ext>  one folder per integer version
    models/<name>.<ext>                zero-config: one file, version "1"

Every name must match :data:`~berth.config.MODEL_NAME_PATTERN`, every version is an
integer, and every path is resolved and must stay inside the root: a symlink that
points out of the repository is refused (and logged), never followed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import BerthConfig, ModelConfig, valid_model_name
from .runtimes import backend_for_path
from .runtimes.lm import is_lm_folder

log = logging.getLogger("berth.repository")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load one model: where its files are and its settings."""

    name: str
    backend: str
    versions: dict[str, Path]
    default_version: str
    settings: ModelConfig
    problems: tuple[str, ...] = field(default=())

    def path_for(self, version: str | None) -> Path | None:
        return self.versions.get(version or self.default_version)


class RepositoryError(ValueError):
    pass


def _contained(path: Path, root: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise RepositoryError(f"'{path.name}' resolves outside the repository; refused")
    return resolved


def _model_file(version_dir: Path, root: Path) -> Path | None:
    candidates = sorted(p for p in version_dir.iterdir() if p.stem == "model" and backend_for_path(p))
    if not candidates:
        # a Hugging Face causal-LM folder (config.json + *.safetensors) is the model itself
        return _contained(version_dir, root) if is_lm_folder(version_dir) else None
    return _contained(candidates[0], root)


def _version_key(version: str) -> int:
    return int(version)


def _read_model_config(path: Path, name: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RepositoryError(f"model '{name}': config.yaml unreadable: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise RepositoryError(f"model '{name}': config.yaml must hold a mapping")
    return loaded


def _settings(name: str, *layers: dict[str, Any]) -> ModelConfig:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    try:
        return ModelConfig.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        reason = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise RepositoryError(f"model '{name}': {key}: {reason}") from None


def _spec_from_folder(name: str, folder: Path, root: Path, overrides: dict[str, Any]) -> ModelSpec:
    config_file = folder / "config.yaml"
    repo_settings = _read_model_config(_contained(config_file, root), name) if config_file.exists() else {}
    versions: dict[str, Path] = {}
    for child in folder.iterdir():
        if child.is_dir() and child.name.isdigit():
            model_file = _model_file(_contained(child, root), root)
            if model_file is not None:
                versions[str(int(child.name))] = model_file
    if not versions:
        # a folder holding model.<ext> directly counts as version 1
        direct = _model_file(folder, root)
        if direct is None:
            raise RepositoryError(f"model '{name}': no <version>/model.<ext> file found")
        versions["1"] = direct
    settings = _settings(name, repo_settings, overrides)
    return _make_spec(name, versions, settings)


def _make_spec(name: str, versions: dict[str, Path], settings: ModelConfig) -> ModelSpec:
    default = settings.default_version or max(versions, key=_version_key)
    if default not in versions:
        raise RepositoryError(f"model '{name}': default_version {default} has no files")
    backend = settings.backend or backend_for_path(versions[default]) or ("lm" if versions[default].is_dir() else None)
    if backend is None:
        raise RepositoryError(f"model '{name}': cannot tell the backend from '{versions[default].suffix}'")
    return ModelSpec(name=name, backend=backend, versions=versions, default_version=default, settings=settings)


class Repository:
    """Finds models on disk and in config; rescans cheaply when asked about a new name."""

    def __init__(self, config: BerthConfig) -> None:
        self._config = config
        root = config.repository_path
        self.root: Path | None = root.resolve() if root is not None else None
        self.problems: dict[str, str] = {}

    def scan(self) -> dict[str, ModelSpec]:
        specs: dict[str, ModelSpec] = {}
        self.problems.clear()
        if self.root is not None:
            if not self.root.is_dir():
                raise RepositoryError(f"repository folder {self.root} does not exist")
            for entry in sorted(self.root.iterdir()):
                name = entry.stem if entry.is_file() else entry.name
                if name.startswith(".") or name in specs:
                    continue
                if self._configured_path(name):
                    continue  # berth.yaml's model_path wins, as in find()
                spec = self._scan_entry(name, entry)
                if spec is not None:
                    specs[name] = spec
        for name in self._config.models:
            if name in specs:
                continue
            spec = self._from_config(name)
            if spec is not None:
                specs[name] = spec
        return specs

    def find(self, name: str) -> ModelSpec | None:
        """Look for one model by name, on disk and in config (for loads of new models)."""
        if not valid_model_name(name):
            return None
        if self._configured_path(name):
            return self._from_config(name)
        if self.root is not None:
            for entry in (self.root / name, *self.root.glob(f"{name}.*")):
                if entry.exists() and (entry.is_dir() or backend_for_path(entry)):
                    return self._scan_entry(name, entry)
        return None

    def _configured_path(self, name: str) -> bool:
        entry = self._config.models.get(name)
        return bool(entry is not None and entry.model_path)

    def _overrides(self, name: str) -> dict[str, Any]:
        entry = self._config.models.get(name)
        return entry.model_dump(exclude_unset=True) if entry else {}

    def _scan_entry(self, name: str, entry: Path) -> ModelSpec | None:
        if not valid_model_name(name):
            log.warning("repository entry '%s' skipped: name does not match the model name pattern", entry.name)
            return None
        assert self.root is not None
        try:
            _contained(entry, self.root)
            if entry.is_dir():
                return _spec_from_folder(name, entry, self.root, self._overrides(name))
            if entry.is_file() and backend_for_path(entry):
                settings = _settings(name, self._overrides(name))
                return _make_spec(name, {"1": entry.resolve()}, settings)
        except (RepositoryError, OSError) as exc:
            self.problems[name] = str(exc)
            log.warning("repository entry '%s' refused: %s", name, exc)
        return None

    def _from_config(self, name: str) -> ModelSpec | None:
        settings = self._config.models[name]
        if not settings.model_path:
            self.problems[name] = f"model '{name}' is configured but has no model_path and no repository entry"
            log.warning("%s", self.problems[name])
            return None
        path = self._config.resolve(settings.model_path)
        try:
            if path.is_dir():
                return _spec_from_folder(name, path, path, self._overrides(name))
            if not path.is_file():
                raise RepositoryError(f"model '{name}': model_path {settings.model_path} does not exist")
            return _make_spec(name, {"1": path}, settings)
        except (RepositoryError, OSError) as exc:
            self.problems[name] = str(exc)
            log.warning("model '%s' refused: %s", name, exc)
            return None
