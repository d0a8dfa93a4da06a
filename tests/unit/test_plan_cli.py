"""`linepool plan` as a user runs it: a subprocess on manifest files, its table, JSON, plot and errors."""

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

POOL = textwrap.dedent("""\
    apiVersion: linepool.dev/v1alpha1
    kind: LinePool
    metadata: {name: web}
    spec:
      metrics: {prometheusURL: "http://prometheus:9090"}
      quotas: {messagesPerServerPerDay: 5000, newConversationsPerLinePerDay: 50}
      scaling: {linesPerServer: 4, maxServers: 20, cooldown: 1h}
      inventory: ["+14155550100", "+14155550101", "+14155550102", "+14155550103",
                  "+14155550104", "+14155550105", "+14155550106", "+14155550107"]
    """)
SERVER = textwrap.dedent("""\
    ---
    apiVersion: linepool.dev/v1alpha1
    kind: MessagingServer
    metadata: {name: web-0}
    spec:
      pool: web
      endpoint: http://web-0:8080
      lines: [{id: "+14155550200"}, {id: "+14155550201"}, {id: "+14155550202"}, {id: "+14155550203"}]
    """)
MODEL = ["--new-users-per-day", "200", "--growth", "5%/week", "--messages-per-user-per-day", "4"]
SUMMARY_KEYS = {"firstScaleUpDay", "inventoryExhaustedDay", "serversNeededAtEnd", "linesNeededAtEnd",
                "linesToOrder", "orderBy", "days"}


def run_plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linepool", "plan", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def pool_file(tmp_path: Path) -> Path:
    path = tmp_path / "pool.yaml"
    path.write_text(POOL + SERVER)
    return path


def test_table_per_day(pool_file: Path) -> None:
    result = run_plan("-f", str(pool_file), *MODEL, "--days", "14")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["day", "date", "users"]
    assert len([line for line in lines[1:15] if line.split() and line.split()[0].isdigit()]) == 14
    assert "first scale-up:" in result.stdout and "inventory runs out:" in result.stdout
    assert "order:" in result.stdout


def test_table_per_week_beyond_30_days(pool_file: Path) -> None:
    result = run_plan("-f", str(pool_file), *MODEL, "--days", "60")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("week (days)")
    assert "56-59" in result.stdout  # 60 days: 8 weeks and a 4-day remainder


def test_json_carries_the_summary_keys(pool_file: Path) -> None:
    result = run_plan("-f", str(pool_file), *MODEL, "--days", "40", "--output", "json", "--lead-time", "3d")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert set(plan) == SUMMARY_KEYS
    assert len(plan["days"]) == 40
    assert plan["firstScaleUpDay"] is not None
    assert plan["inventoryExhaustedDay"] is not None and plan["linesToOrder"] > 0
    assert isinstance(plan["orderBy"], str)
    assert plan["linesNeededAtEnd"] == 4 * plan["serversNeededAtEnd"]


def test_servers_from_the_template(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(POOL)
    result = run_plan("-f", str(path), *MODEL, "--days", "3", "--servers", "3", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["days"][0]["servers"] == 3


def test_plot_is_a_png_of_the_figure_size(pool_file: Path, tmp_path: Path) -> None:
    png = tmp_path / "plan.png"
    result = run_plan("-f", str(pool_file), *MODEL, "--days", "90", "--churn", "2%/week", "--plot", str(png))
    assert result.returncode == 0, result.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1000, 700)  # figsize 10x7 inches at 100 dpi
    import matplotlib.image

    assert matplotlib.image.imread(str(png)).shape[:2] == (700, 1000)


@pytest.mark.parametrize(("args", "message"), [
    (["--growth", "150%/week"], "--growth: '150%/week' is more than 100% a week"),
    (["--growth=-5%/week"], "--growth: '-5%/week' must not be negative"),
    (["--churn", "lots"], "--churn: 'lots' is not a rate"),
    (["--messages-per-user-per-day", "6000"], "--messages-per-user-per-day: '6000' is more than 5,000 a day"),
    (["--new-users-per-day=-3"], "--new-users-per-day: '-3' must not be negative"),
    (["--messages-per-user-per-day", "4/week"], "--messages-per-user-per-day: '4/week' is not a number per day"),
    (["--inbound-first", "120%"], "--inbound-first: '120%' is more than 100%"),
    (["--days", "0"], "--days: must be between 1 and 730, not 0"),
    (["--days", "731"], "--days: must be between 1 and 730, not 731"),
    (["--lead-time", "soon"], "--lead-time: 'soon' is not a duration"),
    (["--servers", "2"], "--servers: "),
    (["--plot", "plan.jpg"], "--plot: 'plan.jpg' must be a .png file"),
])
def test_bad_flags_exit_2_with_a_message(pool_file: Path, args: list[str], message: str) -> None:
    # The bad flag comes last, so it overrides the good model's value.
    result = run_plan("-f", str(pool_file), *MODEL, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_manifest_gets_the_operators_message(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(POOL.replace("maxServers: 20", "maxServers: 0") + SERVER)
    result = run_plan("-f", str(path), *MODEL)
    assert result.returncode == 2
    assert "LinePool web: spec.scaling.maxServers: must be between 1 and 1000, not 0" in result.stderr
    bad_server = SERVER.replace('"+14155550203"', '"not-a-line"')
    path.write_text(POOL + bad_server)
    result = run_plan("-f", str(path), *MODEL)
    assert result.returncode == 2
    assert "MessagingServer web-0: spec.lines[3].id: 'not-a-line' is neither" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    result = run_plan("-f", str(tmp_path / "absent.yaml"), *MODEL)
    assert result.returncode == 2 and "cannot read the file" in result.stderr
    path = tmp_path / "broken.yaml"
    path.write_text("kind: LinePool\nspec: [unclosed\n")
    result = run_plan("-f", str(path), *MODEL)
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["--from-cluster", "web"], "must be NAMESPACE/POOL"),
    (["--from-cluster", "messaging/web", "--new-users-per-day", "200"], "come from the pool's history"),
    (["--from-cluster", "messaging/web", "--growth", "5%/week"], "come from the pool's history"),
])
def test_from_cluster_refuses_a_model_and_a_bad_name(args: list[str], words: str) -> None:
    result = run_plan(*args, "--days", "30")
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr
