from __future__ import annotations

from pathlib import Path

import pytest

from vrm_tui.core.errors import SettingsError
from vrm_tui.core.split import Split
from vrm_tui.settings import load


def test_defaults_are_the_seeds(tmp_path: Path) -> None:
    s = load(environ={}, deploy_dir=tmp_path)
    assert s.split == Split(10)
    assert (s.proxy_port, s.rust_port, s.ts_port) == (3000, 3001, 3002)
    assert (s.prometheus_port, s.grafana_port) == (9090, 3003)
    assert s.max_vram_gb == 20.0
    assert s.state_dir == tmp_path / ".vrm" and s.runtime is None  # None: detect it


def test_precedence_flags_over_environment_over_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# comment\nexport PROXY_PORT=4000\nVISION_MANAGER_PORT='4001'\n"
        "RUST_BACKEND_WEIGHT=20\nTS_BACKEND_WEIGHT=80  # inline comment\n"
    )
    from_file = load(environ={}, deploy_dir=tmp_path)
    assert (from_file.proxy_port, from_file.rust_port, from_file.split) == (4000, 4001, Split(20))
    from_env = load(environ={"PROXY_PORT": "5000"}, deploy_dir=tmp_path)
    assert from_env.proxy_port == 5000
    from_flag = load({"RUST_BACKEND_WEIGHT": "60"},
                     environ={"RUST_BACKEND_WEIGHT": "30", "TS_BACKEND_WEIGHT": "70"},
                     deploy_dir=tmp_path)
    assert from_flag.split == Split(60), "a flag weight is the whole split"


def test_ts_weight_alone_sets_the_split(tmp_path: Path) -> None:
    assert load(environ={"TS_BACKEND_WEIGHT": "75"}, deploy_dir=tmp_path).split == Split(25)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RUST_BACKEND_WEIGHT": "abc"}, "RUST_BACKEND_WEIGHT='abc'"),
        ({"RUST_BACKEND_WEIGHT": "50.5"}, "RUST_BACKEND_WEIGHT='50.5'"),
        ({"RUST_BACKEND_WEIGHT": "101"}, "RUST_BACKEND_WEIGHT='101'"),
        ({"RUST_BACKEND_WEIGHT": "-1"}, "RUST_BACKEND_WEIGHT='-1'"),
        ({"RUST_BACKEND_WEIGHT": "40", "TS_BACKEND_WEIGHT": "40"}, "add up to 80"),
        ({"PROXY_PORT": "70000"}, "PROXY_PORT='70000'"),
        ({"PROXY_PORT": "3001"}, "=3001: the same port as"),
        ({"MAX_VRAM_GB": "nan"}, "MAX_VRAM_GB='nan'"),
        ({"MAX_VRAM_GB": "0"}, "MAX_VRAM_GB='0'"),
        ({"VRM_RUNTIME": "k8s"}, "VRM_RUNTIME='k8s'"),
        ({"BACKEND_PREFERENCE": "go"}, "BACKEND_PREFERENCE='go'"),
        ({"BACKEND_PREFERENCE": "typescript"}, "BACKEND_PREFERENCE=typescript has no effect"),
        ({"PROXY_RATE_LIMIT": "lots"}, "PROXY_RATE_LIMIT='lots'"),
        ({"PROXY_BIND": "everywhere"}, "PROXY_BIND='everywhere'"),
        ({"RUST_BACKEND_URL": "10.0.0.5:3001"}, "RUST_BACKEND_URL='10.0.0.5:3001'"),
        ({"VRM_KEYMAP": "vrm.logs L"}, "VRM_KEYMAP: 'vrm.logs L'"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=None) as caught:
        load(environ=env, deploy_dir=tmp_path)
    assert named in str(caught.value)


def test_bad_env_file_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PROXY_PORT=3000\nthis is not a setting\n")
    with pytest.raises(SettingsError, match=r"\.env:2"):
        load(environ={}, deploy_dir=tmp_path)


def test_external_backend_urls_become_upstream_addresses(tmp_path: Path) -> None:
    s = load(environ={"RUST_BACKEND_URL": "http://10.0.0.5:8080/", "TS_BACKEND_URL":
                      "http://ts.internal"}, deploy_dir=tmp_path)
    assert s.rust_address == "10.0.0.5:8080" and s.ts_address == "ts.internal:80"
    assert s.backend_url("rust") == "http://10.0.0.5:8080"


def test_relative_state_dir_is_under_the_deploy_dir(tmp_path: Path) -> None:
    s = load(environ={"VRM_STATE_DIR": "run/state"}, deploy_dir=tmp_path)
    assert s.state_dir == tmp_path / "run" / "state"


def test_nginx_binary_comes_from_settings_including_the_env_file(tmp_path: Path) -> None:
    """VRM_NGINX_BIN goes through Settings like every variable: a `.env` entry counts."""
    (tmp_path / ".env").write_text("VRM_NGINX_BIN=/opt/nginx/sbin/nginx\n")
    assert load(environ={}, deploy_dir=tmp_path).nginx_bin == "/opt/nginx/sbin/nginx"
    assert load(environ={}, deploy_dir=tmp_path / "elsewhere").nginx_bin is None


def test_compose_project_is_the_deployments_own(tmp_path: Path) -> None:
    """Two state dirs on one host get two compose projects (and two subnets); an explicit
    COMPOSE_PROJECT_NAME wins and must be one compose accepts."""
    from vrm_tui.stack.compose import subnet

    one = load(environ={"VRM_STATE_DIR": str(tmp_path / "a")}, deploy_dir=tmp_path)
    two = load(environ={"VRM_STATE_DIR": str(tmp_path / "b")}, deploy_dir=tmp_path)
    assert one.compose_project.startswith("vrm-") and one.compose_project != two.compose_project
    assert one.compose_project == load(environ={"VRM_STATE_DIR": str(tmp_path / "a")},
                                       deploy_dir=tmp_path).compose_project
    assert subnet(one.compose_project).subnet_of(subnet("x").supernet(new_prefix=16))
    named = load(environ={"COMPOSE_PROJECT_NAME": "vision-prod"}, deploy_dir=tmp_path)
    assert named.compose_project == "vision-prod"
    for bad in ("Vision", "-x", "a b", "a;b"):
        with pytest.raises(SettingsError, match="COMPOSE_PROJECT_NAME="):
            load(environ={"COMPOSE_PROJECT_NAME": bad}, deploy_dir=tmp_path)


@pytest.mark.parametrize(("line", "known"), [
    ("RUST_BACKEND_WIEGHT=50", "RUST_BACKEND_WEIGHT"),
    ("PROXY_PROT=4000", "PROXY_PORT"),
    ("VRM_STAT_DIR=/tmp/x", "VRM_STATE_DIR"),
    ("rust_backend_weight=50", "RUST_BACKEND_WEIGHT"),
])
def test_a_misspelt_env_key_names_the_known_one(tmp_path: Path, line: str, known: str) -> None:
    (tmp_path / ".env").write_text(f"PROXY_PORT=3000\n{line}\n")
    with pytest.raises(SettingsError) as caught:
        load(environ={}, deploy_dir=tmp_path)
    message = str(caught.value)
    assert ".env:2" in message and line.split("=")[0] in message and known in message, message


def test_env_keys_far_from_vrms_are_left_alone(tmp_path: Path) -> None:
    """`.env` is shared with compose and other tools: only near-misses of vrm's keys are
    errors, and the shipped template has none."""
    (tmp_path / ".env").write_text("COMPOSE_FILE=x.yml\nMY_APP_TOKEN=abc\nTZ=UTC\n")
    assert load(environ={}, deploy_dir=tmp_path).proxy_port == 3000
    from vrm_tui.cli import ENV_TEMPLATE

    (tmp_path / ".env").write_text(ENV_TEMPLATE.read_text())
    load(environ={}, deploy_dir=tmp_path)


def test_an_env_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    with pytest.raises(SettingsError, match=r"\.env: is a directory"):
        load(environ={}, deploy_dir=tmp_path)


def test_the_keymap_rebinds_by_binding_id(tmp_path: Path) -> None:
    found = load(environ={"VRM_KEYMAP": "vrm.logs=L; vrm.rust-up=u,U;"}, deploy_dir=tmp_path)
    assert found.keymap == (("vrm.logs", "L"), ("vrm.rust-up", "u,U"))
    assert load(environ={}, deploy_dir=tmp_path).keymap == ()


def test_the_migration_plan_is_a_setting_for_both_faces(tmp_path: Path) -> None:
    """Issue 22: `m` always started configs/migration.yaml (300 s bakes); VRM_MIGRATION_PLAN
    (relative to the deploy dir) is what `m` and `vrm migrate` start, --plan still wins."""
    from vrm_tui.console import Console

    (tmp_path / "quick.yaml").write_text("steps: [20, 100]\nbake_seconds: 30\n")
    settings = load(environ={"VRM_MIGRATION_PLAN": "quick.yaml"}, deploy_dir=tmp_path)
    assert settings.migration_plan == tmp_path / "quick.yaml"
    plan = Console(settings).load_plan()
    assert list(plan.steps) == [20, 100] and plan.bake_seconds == 30
    assert load(environ={}, deploy_dir=tmp_path).migration_plan is None
