"""The parameter store on a real MLflow SQLite tracking store + registry (domain.registry).

One store per module (creating a fresh MLflow database costs ~2-3 s); every test isolates itself
with its own registered model name in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from quant_genesis_dagster.domain import registry
from quant_genesis_dagster.domain.params import DEFAULTS, ParamSet
from quant_genesis_dagster.domain.registry import (
    CHAMPION,
    REGISTERED_NAME,
    ParamStore,
    ParamVersion,
    safe_uri,
)
from quant_genesis_dagster.errors import QGError
from quant_genesis_dagster.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def uri(mlflow_dir: Path) -> str:
    return f"sqlite:///{mlflow_dir}/mlflow.db"


@pytest.fixture(scope="module")
def artifacts(mlflow_dir: Path) -> Path:
    return mlflow_dir / "artifacts"


@pytest.fixture
def name() -> str:
    """A registered model of its own for every test (the database is shared)."""
    return f"qg_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store(uri: str, artifacts: Path, name: str) -> ParamStore:
    return ParamStore(uri, artifacts, name=name)


@pytest.fixture(scope="module")
def client(uri: str):  # the raw MLflow client, to look behind the store and to tamper
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _runs_of(client, name: str) -> list:
    exp = client.get_experiment_by_name(registry.EXPERIMENT)
    from mlflow.entities import ViewType

    return client.search_runs(
        [exp.experiment_id],
        f"tags.`{registry.TAG_REGISTERED_MODEL}` = '{name}'",
        run_view_type=ViewType.ALL,
    )


# ------------------------------------------------------------------ defaults / bootstrap
def test_defaults_become_version_1_champion(store: ParamStore, client, name: str, artifacts: Path):
    pv = store.ensure_defaults(tags={"origin": "test"})

    assert (pv.name, pv.version, pv.status) == (name, 1, "approved")
    assert pv.params == DEFAULTS
    assert pv.id == f"{name}/v1"
    assert store.champion() == pv
    # The decision is recorded like any other.
    assert pv.decision(CHAMPION)["by"] == registry.SYSTEM_USER
    assert pv.tags[registry.BOOTSTRAP_TAG] == "defaults"

    run = client.get_run(pv.run_id)
    # Every ParamSet field is an MLflow param of the run, with its exact value.
    assert set(run.data.params) == set(DEFAULTS.to_dict())
    assert {k: float(v) for k, v in run.data.params.items()} == DEFAULTS.to_dict()
    assert run.data.tags["origin"] == "test"
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "quant_genesis/params"
    assert run.info.artifact_uri.startswith(artifacts.as_uri())
    # The set as JSON, which is also what the model version's source points at.
    local = client.download_artifacts(pv.run_id, "params/params.json", str(artifacts.parent))
    assert json.loads(Path(local).read_text()) == DEFAULTS.to_dict()
    mv = client.get_model_version(name, "1")
    assert mv.source == f"runs:/{pv.run_id}/params"
    assert mv.aliases == [CHAMPION]


def test_ensure_defaults_again_creates_nothing(store: ParamStore, uri: str, client, name: str):
    first = store.ensure_defaults()
    assert store.ensure_defaults() == first
    # Another instance (another process's view) with other "defaults": still version 1.
    other = ParamStore(uri, name=name)
    assert other.ensure_defaults(DEFAULTS.replace(beta_c=0.9)) == first
    assert [v.version for v in store.versions()] == [1]
    assert len(_runs_of(client, name)) == 1


def test_duplicate_bootstrap_after_a_race_is_removed(
    store: ParamStore, uri: str, client, name: str, monkeypatch: pytest.MonkeyPatch
):
    """Without the file lock (an MLflow server), a second caller may find no versions and
    register the defaults too: it must delete its duplicate and return version 1."""
    monkeypatch.setattr(store, "_lock_path", lambda: None)
    late = ParamStore(uri, name=name)
    monkeypatch.setattr(late, "_lock_path", lambda: None)
    first = store.ensure_defaults()

    real = late._model_versions
    looks = []

    def model_versions():  # late's first look saw an empty registry (before `store` registered)
        looks.append(1)
        return [] if len(looks) == 1 else real()

    monkeypatch.setattr(late, "_model_versions", model_versions)
    assert late.ensure_defaults() == first

    assert [v.version for v in store.versions()] == [1]
    runs = {r.info.run_id: r.info.lifecycle_stage for r in _runs_of(client, name)}
    assert runs.pop(first.run_id) == "active"
    assert list(runs.values()) == ["deleted"]  # the duplicate's run


def test_bootstrap_left_half_done_is_finished(store: ParamStore, name: str):
    """A process that registered the defaults but died before setting the alias."""
    store._ensure_registered_model()
    store._create_version(
        DEFAULTS, description="", tags=None, status="approved",
        version_tags={registry.BOOTSTRAP_TAG: "defaults"},
    )  # fmt: skip
    with pytest.raises(QGError, match="no champion"):
        store.champion()
    pv = store.ensure_defaults()
    assert (pv.version, pv.decision(CHAMPION)["by"]) == (1, registry.SYSTEM_USER)


def test_two_processes_bootstrap_one_version(uri: str, artifacts: Path, name: str):
    """Two processes racing to bootstrap the same registered model: one version, both get it.
    (The shared database already has its tables; opening a fresh one is serialized by the same
    lock, but creating one costs seconds.)"""
    code = textwrap.dedent(f"""
        from quant_genesis_dagster.domain.registry import ParamStore
        store = ParamStore({uri!r}, {str(artifacts)!r}, name={name!r})
        store._client()  # both open their stores first, then race in ensure_defaults
        print(store.ensure_defaults().version)
    """)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out.split()[-1] == "1"
    assert [v.version for v in ParamStore(uri, name=name).versions()] == [1]


# ------------------------------------------------------------------ register / promote
def test_register_and_promote(store: ParamStore, client, name: str):
    store.ensure_defaults()
    tuned = DEFAULTS.replace(beta_c=0.55, t_fear=14.0)
    before = datetime.now(UTC).replace(microsecond=0)
    v2 = store.register(
        tuned,
        description="weekly calibration",
        tags={"agent": "ppo"},
        dagster_run_id="dg-run-1",
        partition_key="2024-03-08",
        metrics={"sharpe_30d": 1.25, "wf_sharpe": 0.8},
    )
    assert (v2.version, v2.status, v2.params) == (2, "candidate", tuned)
    assert store.champion().version == 1  # registering changes no alias

    run = client.get_run(v2.run_id)
    assert run.data.tags["dagster/run_id"] == "dg-run-1"
    assert run.data.tags["dagster/partition_key"] == "2024-03-08"
    assert run.data.tags["agent"] == "ppo"
    assert run.data.tags["mlflow.note.content"] == "weekly calibration"
    assert run.data.metrics == {"sharpe_30d": 1.25, "wf_sharpe": 0.8}
    assert v2.tags["dagster/run_id"] == "dg-run-1" and v2.tags["status"] == "candidate"

    promoted = store.promote(2, who="alice", why="better out of sample")
    champ = store.champion()
    assert champ == promoted
    assert (champ.version, champ.params, champ.status) == (2, tuned, "approved")
    decision = champ.decision(CHAMPION)
    assert (decision["by"], decision["why"], decision["replaced"]) == (
        "alice",
        "better out of sample",
        "1",
    )
    at = datetime.fromisoformat(decision["at"])
    assert at.tzinfo is not None and at.utcoffset().total_seconds() == 0
    assert before <= at <= datetime.now(UTC)
    assert [v.version for v in store.versions()] == [1, 2]
    assert store.get(1).params == DEFAULTS


def test_challenger_alias(store: ParamStore):
    store.ensure_defaults()
    v2 = store.register(DEFAULTS.replace(leverage=0.8))
    assert store.alias(registry.CHALLENGER) is None
    pv = store.set_alias(registry.CHALLENGER, v2.version, who="bob", why="shadow test")
    assert pv.decision(registry.CHALLENGER)["by"] == "bob"
    assert store.alias(registry.CHALLENGER) == pv
    assert store.champion().version == 1
    with pytest.raises(QGError, match="`who` is required"):
        store.set_alias(registry.CHALLENGER, v2.version, who=" ", why="x")
    with pytest.raises(QGError, match=r"no parameter version .*/v9 in MLflow"):
        store.promote(9, who="bob", why="x")


def test_second_store_instance_sees_the_same_champion(store: ParamStore, uri: str, name: str):
    store.ensure_defaults()
    v2 = store.register(DEFAULTS.replace(position_weight=0.4))
    store.promote(v2.version, who="carol", why="lower exposure")
    assert ParamStore(uri, name=name).champion() == store.champion()


# ------------------------------------------------------------------ failures
def test_missing_champion(store: ParamStore, client, uri: str, name: str):
    # No registered model at all.
    with pytest.raises(QGError) as err:
        store.champion()
    assert str(err.value).startswith(f"no champion parameter version in MLflow at {uri} ")
    assert "ensure_defaults" in str(err.value) and "\n" not in str(err.value)

    store.ensure_defaults()
    client.delete_registered_model_alias(name, CHAMPION)
    with pytest.raises(QGError, match="^no champion parameter version in MLflow at "):
        store.champion()
    # Versions exist, the champion was removed on purpose: ensure_defaults does not put it back.
    with pytest.raises(QGError, match="^no champion parameter version"):
        store.ensure_defaults()


def test_out_of_range_value_in_mlflow(store: ParamStore, client, name: str):
    store.ensure_defaults()
    exp = client.get_experiment_by_name(registry.EXPERIMENT)
    run = client.create_run(exp.experiment_id)
    client.log_param(run.info.run_id, "beta_c", "1.5")  # range [0, 1]
    client.log_param(run.info.run_id, "t_fear", "20")
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(name, source="x", run_id=run.info.run_id)
    client.set_registered_model_alias(name, CHAMPION, mv.version)

    with pytest.raises(QGError, match=rf"{name}/v2 .*parameter beta_c=1.5 is outside its range"):
        store.champion()
    with pytest.raises(QGError, match="beta_c"):
        store.get(2)
    with pytest.raises(QGError, match="beta_c"):  # never alias a broken version
        store.set_alias(registry.CHALLENGER, 2, who="x", why="y")


def test_version_without_parameters(store: ParamStore, client, name: str):
    store.ensure_defaults()
    exp = client.get_experiment_by_name(registry.EXPERIMENT)
    run = client.create_run(exp.experiment_id)
    mv = client.create_model_version(name, source="x", run_id=run.info.run_id)
    with pytest.raises(QGError, match="has no parameters"):
        store.get(int(mv.version))
    with pytest.raises(QGError, match="positive integer"):
        store.get(0)


# ------------------------------------------------------------------ URIs, secrets, import cost
def test_param_version_id():
    pv = ParamVersion(REGISTERED_NAME, 12, DEFAULTS, "r", "candidate", {})
    assert pv.id == "quant_genesis_params/v12"


def test_safe_uri_hides_passwords():
    assert safe_uri("https://ann:s3cr%40t@mlflow.example:5000/x") == (
        "https://ann:***@mlflow.example:5000/x"
    )
    assert safe_uri("postgresql://u:pw@db/mlflow") == "postgresql://u:***@db/mlflow"
    assert safe_uri("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
    assert safe_uri("http://token@host") == "http://token@host"  # no password part
    assert "s3cret" not in repr(ParamStore("https://u:s3cret@h"))


class _Stub:
    """Stands in for an MLflow client talking to a server (no server in the tests)."""

    def __init__(self, error: Exception | None = None):
        self.error = error

    def get_model_version_by_alias(self, name, alias):
        raise self.error

    def get_run(self, run_id):
        return SimpleNamespace(info=SimpleNamespace(experiment_id="7"))


def test_server_messages_and_run_url_carry_no_password():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    server = ParamStore("https://ann:s3cret@mlflow.example:5000/")
    server._client_obj = _Stub(MlflowException("nope", error_code=RESOURCE_DOES_NOT_EXIST))
    with pytest.raises(QGError) as err:
        server.champion()
    assert "at https://ann:***@mlflow.example:5000/ " in str(err.value)
    assert "s3cret" not in str(err.value)

    leaky = "API request to https://ann:s3cret@mlflow.example:5000/api failed\nTraceback ..."
    server._client_obj = _Stub(MlflowException(leaky))
    with pytest.raises(QGError) as err:
        server.champion()
    assert "s3cret" not in str(err.value) and "\n" not in str(err.value)
    assert "reading alias 'champion'" in str(err.value)

    pv = ParamVersion(REGISTERED_NAME, 3, DEFAULTS, "abc123", "candidate", {})
    assert server.run_url(pv) == "https://mlflow.example:5000/#/experiments/7/runs/abc123"
    assert ParamStore("sqlite:////tmp/none.db").run_url(pv) is None


def test_import_and_construction_do_not_import_mlflow(tmp_path: Path):
    code = (
        "import sys\n"
        "from quant_genesis_dagster.domain.registry import ParamStore\n"
        f"ParamStore('sqlite:///{tmp_path}/m.db', {str(tmp_path)!r})\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    assert not (tmp_path / "m.db").exists()  # and no I/O


def test_settings_mlflow_locations(tmp_path: Path):
    s = Settings.from_env({"QG_HOME": str(tmp_path)})
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert s.mlflow_artifacts == tmp_path.resolve() / "mlflow" / "artifacts"
    remote = Settings.from_env(
        {"QG_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": " https://u:pw@mlflow:5000 "}
    )
    assert remote.mlflow_tracking_uri == "https://u:pw@mlflow:5000"
    assert "pw" not in repr(remote)
    assert Settings(home=tmp_path, database_url=None).mlflow_uri is None  # old callers unchanged


def test_fresh_param_set_round_trip_is_exact(store: ParamStore):
    odd = ParamSet.from_dict({"beta_c": 0.1 + 0.2, "alpha": -1e-5, "t_runup_dev": 1 / 3})
    assert store.register(odd).params == odd
