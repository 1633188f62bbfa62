"""berth.yaml → BERTH_* environment → flags; the seed 003/004 keys; bad config errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from berth.config import BerthConfig, load_config
from berth.errors import ConfigError

from conftest import free_port

# ── the seeds' config blocks, verbatim but for the Windows paths ──────────────

SEED_003 = """\
server:
  port: ":50051"
  max_message_size_mb: 50
  worker_count_per_gpu: 4      # 32 total workers (8 GPUs × 4)
  queue_size: 200

gpus:
  enabled: true
  count: 8                     # 8× NVIDIA RTX 6000 Blackwell
  memory_gb_per_gpu: 96
  assignment_strategy: "round-robin"  # or "least-loaded"

capacity:
  max_models: 1200             # Conservative: 150 models per GPU
  max_memory_gb: 720           # 90GB per GPU × 8 (safety margin)
  eviction_policy: "lfu"
  idle_timeout_minutes: 60

onnx:
  library_path: "{tmp}/onnxruntime-win-x64-gpu-1.21.0/lib/onnxruntime.dll"

models:
  sanders:
    model_path: "{tmp}/Projects/webcodecstest/model/unet_328.onnx"
    preload: false
    preferred_gpu: 0           # -1 = auto assign
  
  bob:
    model_path: "{tmp}/Projects/webcodecstest/model/unet_328.onnx"
    preload: false
    preferred_gpu: 1
"""

SEED_004 = """\
capacity:
  max_models: 3              # Max simultaneous models
  max_memory_gb: 4           # GPU memory limit
  eviction_policy: "lru"     # or "lfu"
  idle_unload_minutes: 30    # Auto-unload after idle time

models:
  sanders:
    model_path: "{tmp}/Projects/.../sanders/checkpoint/model_best.onnx"
    background_dir: "{tmp}/Projects/.../sanders/frames"
    crop_rects_path: "{tmp}/Projects/.../sanders/cache/crop_rectangles.json"
    num_frames: 100
    preload: true            # Load on startup
    memory_estimate_mb: 500

  bob:
    model_path: "{tmp}/Projects/.../bob/checkpoint/model_best.onnx"
    background_dir: "{tmp}/Projects/.../bob/frames"
    crop_rects_path: "{tmp}/Projects/.../bob/cache/crop_rectangles.json"
    num_frames: 100
    preload: false           # Load on first request
    memory_estimate_mb: 500
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_003_block_loads_and_maps(tmp_path: Path) -> None:
    tmp = tmp_path.as_posix()
    config = load_config(write(tmp_path / "config.yaml", SEED_003.format(tmp=tmp)), environ={})
    assert config.server.grpc_port == 50051  # port: ":50051"
    assert config.server.max_message_size_mb == 50
    assert config.server.worker_count_per_gpu == 4
    assert config.server.queue_size == 200
    assert config.gpus.enabled is True
    assert config.gpus.count == 8
    assert config.gpus.memory_gb_per_gpu == 96
    assert config.gpus.assignment_strategy == "round-robin"
    assert config.capacity.max_models == 1200
    assert config.capacity.max_memory_gb == 720
    assert config.capacity.eviction_policy == "lfu"
    assert config.capacity.idle_unload_minutes == 60  # seed 003 wrote idle_timeout_minutes
    assert config.onnx.library_path == f"{tmp}/onnxruntime-win-x64-gpu-1.21.0/lib/onnxruntime.dll"
    assert set(config.models) == {"sanders", "bob"}
    assert config.models["sanders"].preferred_gpu == 0
    assert config.models["bob"].preferred_gpu == 1
    assert config.models["sanders"].preload is False
    assert config.models["bob"].model_path == f"{tmp}/Projects/webcodecstest/model/unet_328.onnx"
    # defaults the block does not mention stay put
    assert config.server.host == "127.0.0.1"
    assert config.models["bob"].memory_estimate_mb is None


def test_seed_004_block_loads_and_maps(tmp_path: Path) -> None:
    tmp = tmp_path.as_posix()
    config = load_config(write(tmp_path / "config.yaml", SEED_004.format(tmp=tmp)), environ={})
    assert config.capacity.max_models == 3
    assert config.capacity.max_memory_gb == 4
    assert config.capacity.eviction_policy == "lru"
    assert config.capacity.idle_unload_minutes == 30
    sanders, bob = config.models["sanders"], config.models["bob"]
    assert sanders.preload is True and bob.preload is False
    assert sanders.memory_estimate_mb == 500 and bob.memory_estimate_mb == 500
    assert sanders.num_frames == 100
    assert sanders.background_dir == f"{tmp}/Projects/.../sanders/frames"
    assert bob.crop_rects_path == f"{tmp}/Projects/.../bob/cache/crop_rectangles.json"
    assert sanders.model_path == f"{tmp}/Projects/.../sanders/checkpoint/model_best.onnx"
    assert sanders.preferred_gpu == -1  # auto


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(
        write(conf_dir / "berth.yaml", "repository: models\nmodels:\n  a:\n    model_path: weights/a.onnx\n"), environ={}
    )
    assert config.repository_path == (conf_dir / "models").resolve()
    assert config.resolve(config.models["a"].model_path or "") == (conf_dir / "weights" / "a.onnx").resolve()
    assert config.resolve(config.server.sessions_dir) == (conf_dir / "data" / "sessions").resolve()


# ── precedence ────────────────────────────────────────────────────────────────

BASE_YAML = """\
server:
  http_port: 1000
  queue_size: 7
capacity:
  max_models: 5
  eviction_policy: lfu
"""


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "berth.yaml", BASE_YAML)
    env = {"BERTH_SERVER__HTTP_PORT": "2000", "BERTH_CAPACITY__MAX_MODELS": "9"}

    only_file = load_config(path, environ={})
    assert only_file.server.http_port == 1000
    assert only_file.capacity.max_models == 5

    with_env = load_config(path, environ=env)
    assert with_env.server.http_port == 2000
    assert with_env.capacity.max_models == 9
    # env merges into the section: the file's other keys survive
    assert with_env.server.queue_size == 7
    assert with_env.capacity.eviction_policy == "lfu"

    with_flags = load_config(path, environ=env, overrides={"server": {"http_port": 3000}})
    assert with_flags.server.http_port == 3000
    assert with_flags.capacity.max_models == 9  # env still applies where no flag was given
    assert with_flags.server.queue_size == 7


def test_env_values_are_typed_and_nested(tmp_path: Path) -> None:
    config = load_config(
        None,
        environ={
            "BERTH_GPUS__ENABLED": "false",
            "BERTH_CAPACITY__MAX_MEMORY_GB": "0.5",
            "BERTH_MODELS__SANDERS__PRELOAD": "true",
            "BERTH_MODELS__SANDERS__MEMORY_ESTIMATE_MB": "123",
            "BERTH_CONFIG": "/nonexistent/berth.yaml",  # names the file, never a key
            "NOT_BERTH_X": "1",
        },
    )
    assert config.gpus.enabled is False
    assert config.capacity.max_memory_gb == 0.5
    assert config.models["sanders"].preload is True
    assert config.models["sanders"].memory_estimate_mb == 123


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_SERVER__QUEUE_SIZE", "42")
    assert load_config(None).server.queue_size == 42


def test_later_layer_wins_whatever_spelling_the_file_used(tmp_path: Path) -> None:
    """Seed aliases must not survive a merge alongside berth's own spelling."""
    path = write(tmp_path / "berth.yaml", SEED_003.format(tmp=tmp_path.as_posix()))
    config = load_config(path, environ={"BERTH_CAPACITY__IDLE_UNLOAD_MINUTES": "5"})
    assert config.capacity.idle_unload_minutes == 5

    config = load_config(path, environ={}, overrides={"server": {"workers_per_device": 2}})
    assert config.server.worker_count_per_gpu == 2

    # the file says port ":50051"; --grpc-port (an override) must win
    config = load_config(path, environ={}, overrides={"server": {"grpc_port": 6001}})
    assert config.server.grpc_port == 6001
    config = load_config(path, environ={"BERTH_SERVER__PORT": ":6002"})
    assert config.server.grpc_port == 6002


def test_model_entry_with_nothing_under_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "b.yaml", "models:\n  sanders:\n"), environ={})
    assert config.models["sanders"].preload is False


def test_default_version_may_be_written_as_a_number() -> None:
    config = load_config(None, environ={}, overrides={"models": {"a": {"default_version": 2}}})
    assert config.models["a"].default_version == "2"


# ── bad configuration ─────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("server:\n  bogus: 1\n", "server.bogus", "unknown key"),
        ("nonsense_section: {}\n", "nonsense_section", "unknown key"),
        ("models:\n  a:\n    model_pth: x.onnx\n", "models.a.model_pth", "unknown key"),
        ("server:\n  http_port: eighty\n", "server.http_port", "integer"),
        ("server:\n  http_port: 70000\n", "server.http_port", "65535"),
        ("server: 5\n", "server", "dictionary"),
        ("capacity:\n  eviction_policy: mru\n", "capacity.eviction_policy", "'lru'"),
        ("gpus:\n  assignment_strategy: random\n", "gpus.assignment_strategy", "round-robin"),
        ("capacity:\n  max_models: 0\n", "capacity.max_models", "greater than or equal to 1"),
        ("models:\n  a:\n    preferred_gpu: first\n", "models.a.preferred_gpu", "integer"),
        ("models:\n  a:\n    memory_estimate_mb: -5\n", "models.a.memory_estimate_mb", "greater than 0"),
        ("models:\n  'bad name!':\n    model_path: x.onnx\n", "models.bad name!", "must match"),
        ("models:\n  '..':\n    model_path: x.onnx\n", "models...", "must match"),
        ("server:\n  port: ':99999'\n", "server.port", ":50051"),
        ("devices:\n  - name: g0\n  - name: g0\n", "devices", "unique"),
        ("devices:\n  - name: g0\n    kind: tpu\n", "devices.0.kind", "'cuda'"),
        (
            "capacity:\n  idle_timeout_minutes: 5\n  idle_unload_minutes: 6\n",
            "capacity.idle_unload_minutes",
            "given twice",
        ),
    ],
)
def test_bad_config_names_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "berth.yaml", text), environ={})
    assert info.value.key == key
    assert reason in info.value.reason
    assert key in str(info.value)
    assert "Traceback" not in str(info.value) and "Value error" not in info.value.reason


def test_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "berth.yaml", "server:\n  http_port: [1, 2\n"), environ={})
    assert "YAML" in info.value.reason
    assert "line" in info.value.reason


def test_root_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path / "berth.yaml", "- server\n- models\n"), environ={})


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "berth.yaml", ""), environ={})
    assert config == load_config(None, environ={}, overrides={"base_dir": str(tmp_path.resolve())})
    assert isinstance(config, BerthConfig)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_bad_env_value_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"BERTH_SERVER__HTTP_PORT": "abc"})
    assert info.value.key == "server.http_port"
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"BERTH_SERVER__NO_SUCH_KEY": "1"})
    assert info.value.key == "server.no_such_key"


def test_bad_override_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={}, overrides={"capacity": {"eviction_policy": "fifo"}})
    assert info.value.key == "capacity.eviction_policy"


# ── through the command line ──────────────────────────────────────────────────


def _berth(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    environ.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "berth", *args], cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"berth {' '.join(args)} did not exit within {timeout}s (it should have refused to start)\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_cli_bad_config_exits_2_and_names_the_key(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", f"server:\n  http_port: {free_port()}\ncapacity:\n  eviction_policy: random\n")
    result = _berth(["serve", "--config", str(bad)], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "capacity.eviction_policy" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_yaml_exits_2(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "server: {http_port: 1\n")
    result = _berth(["serve", "--config", str(bad)], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "YAML" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "yaml_text"),
    [
        (["--host", "0.0.0.0"], {}, ""),
        (["-addr", "0.0.0.0:{port}"], {}, ""),
        ([], {"BERTH_SERVER__HOST": "0.0.0.0"}, ""),
        ([], {}, "server:\n  host: 0.0.0.0\n"),
    ],
    ids=["--host", "-addr", "env", "yaml"],
)
def test_non_loopback_without_insecure_refuses_to_start(tmp_path: Path, args: list[str], env: dict[str, str], yaml_text: str) -> None:
    port = free_port()
    config = write(tmp_path / "berth.yaml", yaml_text + f"{'' if 'server:' in yaml_text else 'server:' + chr(10)}  http_port: {port}\n")
    result = _berth(["serve", "--config", str(config), *[a.format(port=port) for a in args]], tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "server.host" in result.stderr
    assert "--insecure" in result.stderr
    assert "0.0.0.0" in result.stderr
