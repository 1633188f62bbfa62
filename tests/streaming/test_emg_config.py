"""The ``emg`` config section: seed 001's plain ``EMG_*`` variables, berth's own
``BERTH_EMG__*`` ones, and the ``TENSORRT_ENGINE`` model."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.config import EMG_ACCELERATED_MODEL, load_config
from berth.errors import ConfigError


def test_seed_variables_fill_the_emg_section(tmp_path: Path) -> None:
    config = load_config(environ={"EMG_MODE": "realtime", "EMG_PORT": "/dev/ttyUSB0", "EMG_WIN": "100", "EMG_CH": "8", "EMG_FS": "1000"})
    emg = config.emg
    assert (emg.mode, emg.port, emg.window, emg.channels, emg.fs) == ("realtime", "/dev/ttyUSB0", 100, 8, 1000)


def test_precedence_file_then_seed_variables_then_berth_variables(tmp_path: Path) -> None:
    path = tmp_path / "berth.yaml"
    path.write_text("emg:\n  win: 50\n  ch: 4\n  max_streams: 7\n")
    config = load_config(path, environ={"EMG_WIN": "60", "BERTH_EMG__WINDOW": "70"})
    assert (config.emg.window, config.emg.channels, config.emg.max_streams) == (70, 4, 7)
    assert load_config(path, environ={}).emg.window == 50


def test_bad_emg_settings_stop_the_server_with_the_key() -> None:
    with pytest.raises(ConfigError, match="needs emg.port"):
        load_config(environ={"EMG_MODE": "realtime"})
    with pytest.raises(ConfigError, match="emg.mode"):
        load_config(environ={"EMG_MODE": "bluetooth"})
    with pytest.raises(ConfigError, match="emg.fs"):
        load_config(environ={"EMG_FS": "-1"})


def test_tensorrt_engine_is_served_as_a_model(tmp_path: Path) -> None:
    config = load_config(environ={"TENSORRT_ENGINE": str(tmp_path / "model_fp16.onnx")})
    assert config.emg.tensorrt_engine == str(tmp_path / "model_fp16.onnx")
    assert config.models[EMG_ACCELERATED_MODEL].model_path == str(tmp_path / "model_fp16.onnx")
    assert EMG_ACCELERATED_MODEL not in load_config(environ={}).models
