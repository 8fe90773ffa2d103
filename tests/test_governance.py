"""Governance of calibrated parameter versions (domain.calibration.governance): the human
filter, promotion only when better out of sample, approve / reject through the API, the CLI and
the Dagster ``approval_job``, on a real MLflow SQLite store.

One store per module (a fresh MLflow database costs ~2-3 s). The API tests isolate themselves
with a registered model name of their own; the CLI and job tests use the default name (what the
Dagster resource and the CLI open) and look their versions up instead of assuming numbers.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quant_genesis_dagster import cli
from quant_genesis_dagster.domain import registry
from quant_genesis_dagster.domain.calibration import governance
from quant_genesis_dagster.domain.calibration.governance import GateSettings, gate_reasons
from quant_genesis_dagster.domain.params import DEFAULTS
from quant_genesis_dagster.domain.registry import CHALLENGER, CHAMPION, ParamStore
from quant_genesis_dagster.errors import QGError
from quant_genesis_dagster.settings import Settings

BETTER = {"rl": 1.3, "champion": 0.9, "static": 0.7, "rolling_ls": 0.8, "equal_weight": 0.5}
SMALL = DEFAULTS.replace(beta_c=0.44, t_fear=18.0)  # betas move ~6%: no person needed


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """QG_HOME of the module's store: the CLI and the Dagster resource find it from here."""
    return tmp_path_factory.mktemp("qg_gov")


@pytest.fixture(scope="module")
def settings(home: Path) -> Settings:
    return Settings.from_env({"QG_HOME": str(home)})


@pytest.fixture
def store(settings: Settings) -> ParamStore:
    """A registered model of its own (the database is shared), bootstrapped: v1 = champion."""
    s = ParamStore(
        settings.mlflow_tracking_uri, settings.mlflow_artifacts, name=f"qg_{uuid.uuid4().hex[:8]}"
    )
    s.ensure_defaults()
    return s


@pytest.fixture(scope="module")
def default_store(settings: Settings) -> ParamStore:
    """The registered model the CLI and the Dagster job work on."""
    s = ParamStore(settings.mlflow_tracking_uri, settings.mlflow_artifacts)
    s.ensure_defaults()
    return s


@pytest.fixture(scope="module")
def client(settings: Settings):
    from mlflow import MlflowClient

    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _record(store: ParamStore, proposal=SMALL, wf=None, **kwargs) -> governance.CalibrationDecision:
    return governance.record_calibration(
        store,
        proposal,
        champion=store.champion(),
        walk_forward_sharpe=BETTER if wf is None else wf,
        **kwargs,
    )


def _pending_version(store: ParamStore) -> int:
    """A fresh version waiting for approval (Position_Weight above the bound)."""
    decision = _record(store, store.champion().params.replace(position_weight=0.85))
    assert decision.status == registry.STATUS_PENDING
    return decision.version.version


# ------------------------------------------------------------------------------- the gate
@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"beta_c": 0.9}, "beta_c (renormalized) moves 50.0% (0.4000 -> 0.6000)"),
        ({"beta_s": 0.0}, "beta_s (renormalized) moves 100.0%"),
        ({"position_weight": 0.85}, "position_weight 0.85 is above the bound 0.8"),
        ({"leverage": 1.3}, "leverage 1.3 is above the bound 1"),
    ],
)
def test_gate_names_the_number_and_the_bound(changes, needle):
    reasons = gate_reasons(DEFAULTS.replace(**changes), DEFAULTS)
    assert any(needle in r for r in reasons), reasons
    assert all("\n" not in r for r in reasons)


def test_gate_lets_small_changes_and_de_risking_through():
    assert gate_reasons(SMALL, DEFAULTS) == []
    # the betas are compared renormalized: scaling all three is no change at all
    assert gate_reasons(DEFAULTS.replace(beta_c=0.8, beta_s=0.6, beta_d=0.6), DEFAULTS) == []
    # leverage below 1 and position_weight at the bound wait for nobody
    assert gate_reasons(DEFAULTS.replace(leverage=0.4, position_weight=0.8), DEFAULTS) == []


def test_gate_beta_switched_on_from_zero_needs_a_person():
    champion = DEFAULTS.replace(beta_d=0.0)
    (reason,) = gate_reasons(champion.replace(beta_d=0.01), champion)
    assert reason.startswith("beta_d (renormalized) moves from 0 to")


def test_gate_settings_are_validated_and_change_the_bounds():
    assert (
        gate_reasons(DEFAULTS.replace(leverage=1.3), DEFAULTS, GateSettings(leverage_max=1.5)) == []
    )
    for bad in (
        {"beta_rel_change": -0.1},
        {"leverage_max": 3.0},
        {"position_weight_max": math.nan},
    ):
        with pytest.raises(QGError, match="gate setting"):
            GateSettings(**bad)


# ----------------------------------------------------------------------- record_calibration
@pytest.mark.parametrize(
    "changes, needle",
    [({"beta_c": 0.9}, "beta_c"), ({"position_weight": 0.85}, "position_weight"),
     ({"leverage": 1.3}, "leverage")],
)  # fmt: skip
def test_gated_version_becomes_pending_challenger_and_the_champion_stays(
    store: ParamStore, changes, needle
):
    decision = _record(store, DEFAULTS.replace(**changes), who="calibration-bot")

    assert (decision.status, decision.promoted, decision.compared_with) == (
        registry.STATUS_PENDING, False, 1,
    )  # fmt: skip
    assert any(needle in r for r in decision.reasons)
    pv = decision.version
    assert (pv.version, pv.status, pv.aliases) == (2, "pending_approval", (CHALLENGER,))
    assert store.champion().version == 1
    assert store.alias(CHALLENGER).version == 2
    record = pv.decision(CHALLENGER)
    assert record["by"] == "calibration-bot" and needle in record["why"]
    assert "walk-forward Sharpe 1.3 (rl) vs 0.9 (champion v1)" in pv.decision("calibration")["why"]
    assert [v.version for v in governance.pending(store)] == [2]


def test_small_change_better_out_of_sample_becomes_champion(store: ParamStore):
    decision = _record(store)
    assert (decision.status, decision.promoted, decision.reasons) == ("approved", True, ())
    champ = store.champion()
    assert (champ.version, champ.params, champ.status) == (2, SMALL, "approved")
    why = champ.decision(CHAMPION)["why"]
    assert "1.3 (rl)" in why and "0.9 (champion v1)" in why
    assert champ.decision(CHAMPION)["replaced"] == "1"
    assert store.alias(CHALLENGER) is None


@pytest.mark.parametrize(
    "wf, needle",
    [
        ({"rl": 0.5, "champion": 0.9}, "not better out of sample"),
        ({"rl": 0.9, "champion": 0.9}, "not better out of sample"),
        ({"rl": math.nan, "champion": 0.9}, "non-finite"),
        ({"rl": math.inf, "champion": 0.9}, "non-finite"),
        ({"rl": 1.0, "champion": math.nan}, "non-finite"),
    ],
)
def test_not_better_or_not_finite_is_not_promoted(store: ParamStore, wf, needle):
    decision = _record(store, wf=wf)
    assert (decision.status, decision.promoted) == ("not_promoted", False)
    pv = decision.version
    assert pv.status == "not_promoted" and pv.aliases == ()
    assert needle in pv.decision("calibration")["why"]
    assert store.champion().version == 1


def test_stale_champion_is_not_promoted(store: ParamStore):
    started_from = store.champion()
    other = store.register(DEFAULTS.replace(t_fear=15.0))
    store.promote(other.version, who="alice", why="manual")
    decision = governance.record_calibration(
        store, SMALL, champion=started_from, walk_forward_sharpe=BETTER
    )
    assert decision.status == "not_promoted"
    assert "champion changed from v1 to v2" in decision.why
    assert store.champion().version == other.version


def test_metrics_artifacts_and_tags_are_on_the_versions_run(store: ParamStore, client, tmp_path):
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "supervisor.zip").write_bytes(b"zip")
    (agents / "vecnormalize.pkl").write_bytes(b"stats")
    (agents / "data_hash.json").write_text('{"sha256": "abc"}')
    plot = tmp_path / "equity_curve.png"
    plot.write_bytes(b"\x89PNG")

    decision = _record(
        store,
        metrics={"in_sample/sharpe": 2.1, "in_sample/mdd": 0.08, "walk_forward/rl/sharpe": 1.3},
        artifacts={"agents": agents, "plots": plot},
        tags={"agent": "ppo"},
        description="weekly calibration",
        dagster_run_id="dg-run-7",
        partition_key="2024-03-08",
    )
    run = client.get_run(decision.version.run_id)
    assert run.data.metrics == {
        "in_sample/sharpe": 2.1,
        "in_sample/mdd": 0.08,
        **{f"walk_forward/{k}/sharpe": v for k, v in BETTER.items()},
    }
    assert {float(v) for v in run.data.params.values()} >= {0.44, 18.0}
    assert set(run.data.params) == set(DEFAULTS.to_dict())  # the full set, nothing else
    assert run.data.tags["agent"] == "ppo" and run.data.tags["dagster/run_id"] == "dg-run-7"
    assert run.data.tags["qg/gate"].startswith("beta_rel_change=0.2")
    files = {f.path for f in client.list_artifacts(run.info.run_id, "agents")}
    assert files == {"agents/supervisor.zip", "agents/vecnormalize.pkl", "agents/data_hash.json"}
    assert [f.path for f in client.list_artifacts(run.info.run_id, "plots")] == [
        "plots/equity_curve.png"
    ]
    # the version's source still downloads just the parameter file
    assert [f.path for f in client.list_artifacts(run.info.run_id, "params")] == [
        "params/params.json"
    ]


def test_nan_walk_forward_is_stored_as_a_metric(store: ParamStore, client):
    decision = _record(store, wf={"rl": math.nan, "champion": 0.4})
    metrics = client.get_run(decision.version.run_id).data.metrics
    assert math.isnan(metrics["walk_forward/rl/sharpe"])


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"proposal": {**SMALL.to_dict(), "beta_c": 1.5}}, "parameter beta_c=1.5 is outside"),
        ({"wf": {"rl": 1.0}}, "lacks 'champion'"),
        ({"wf": {"rl": "good", "champion": 1.0}}, "not a number"),
        ({"metrics": {"in_sample/sharpe": "high"}}, "not a number"),
        ({"metrics": {"walk_forward/rl/sharpe": 9.0}}, "contradicts walk_forward_sharpe['rl']"),
        ({"artifacts": {"agents": "/nonexistent/agents.zip"}}, "does not exist"),
        ({"artifacts": {"params": "/"}}, "the version's own parameter file"),
        ({"who": " "}, "`who` is required"),
    ],
)
def test_bad_calibration_input_is_one_line_and_registers_nothing(store: ParamStore, kwargs, needle):
    with pytest.raises(QGError) as err:
        _record(store, **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert [v.version for v in store.versions()] == [1]


# ------------------------------------------------------------------------ approve / reject
def test_approve_a_pending_version_makes_it_champion_and_records_the_decision(store: ParamStore):
    version = _pending_version(store)
    before = datetime.now(UTC).replace(microsecond=0)
    pv = governance.approve(store, version, who="alice", why="PM sign-off", via="test")

    champ = store.champion()
    assert champ == pv
    assert (champ.version, champ.status, champ.aliases) == (version, "approved", (CHAMPION,))
    record = champ.decision("approve")
    assert (record["by"], record["why"], record["via"]) == ("alice", "PM sign-off", "test")
    assert before <= datetime.fromisoformat(record["at"]) <= datetime.now(UTC)
    assert champ.decision(CHAMPION)["by"] == "alice"
    assert champ.decision(CHAMPION)["replaced"] == "1"
    # the challenger alias pointed at it: gone, and its removal is recorded too
    assert store.alias(CHALLENGER) is None
    assert champ.decision(CHALLENGER)["removed_by"] == "alice"
    assert governance.pending(store) == []
    assert governance.last_decision(champ).by == "alice"


def test_reject_records_the_decision_and_removes_the_challenger(store: ParamStore):
    version = _pending_version(store)
    pv = governance.reject(store, version, who="bob", why="too much exposure")
    assert pv.status == "rejected" and pv.aliases == ()
    record = pv.decision("reject")
    assert (record["by"], record["why"]) == ("bob", "too much exposure")
    assert datetime.fromisoformat(record["at"]).tzinfo is not None
    assert store.alias(CHALLENGER) is None and store.champion().version == 1

    # rejecting leaves an unrelated challenger alone
    other = _pending_version(store)
    not_promoted = _record(store, wf={"rl": 0.1, "champion": 0.9}).version.version
    governance.reject(store, not_promoted, who="bob", why="weak")
    assert store.alias(CHALLENGER).version == other


@pytest.mark.parametrize(
    "setup, action, needle",
    [
        ("unknown", "approve", "no parameter version"),
        ("rejected", "approve", "it was rejected by bob at"),
        ("rejected", "reject", "already rejected"),
        ("champion", "approve", "already the champion"),
        ("champion", "reject", "it is the champion"),
        ("not_promoted", "approve", "its status is 'not_promoted'"),
        ("pending", "approve-anonymous", "`who` is required"),
    ],
)
def test_bad_decisions_are_one_line_errors_and_change_nothing(
    store: ParamStore, setup, action, needle
):
    if setup == "unknown":
        version = 99
    elif setup == "champion":
        version = 1
    elif setup == "not_promoted":
        version = _record(store, wf={"rl": 0.1, "champion": 0.9}).version.version
    else:
        version = _pending_version(store)
        if setup == "rejected":
            governance.reject(store, version, who="bob", why="no")
    before = {v.version: (v.status, v.aliases, v.tags) for v in store.versions()}

    with pytest.raises(QGError) as err:
        if action == "approve-anonymous":
            governance.approve(store, version, who="", why="x")
        elif action == "approve":
            governance.approve(store, version, who="carol", why="try")
        else:
            governance.reject(store, version, who="carol", why="try")
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert store.champion().version == 1
    assert {v.version: (v.status, v.aliases, v.tags) for v in store.versions()} == before


def test_missing_mlflow_store_is_a_clear_error_and_creates_nothing(tmp_path: Path):
    db = tmp_path / "nowhere" / "mlflow.db"
    missing = ParamStore(f"sqlite:///{db}")
    for call in (governance.approve, governance.reject):
        with pytest.raises(QGError, match=r"^no MLflow store at sqlite:///.*quant-genesis demo"):
            call(missing, 2, who="alice", why="x")
    with pytest.raises(QGError, match="no MLflow store"):
        governance.pending(missing)
    assert not db.exists()


# ------------------------------------------------------------------------------ CLI
@pytest.fixture
def cli_env(home: Path, monkeypatch: pytest.MonkeyPatch, default_store: ParamStore) -> ParamStore:
    monkeypatch.setenv("QG_HOME", str(home))
    monkeypatch.setenv("QG_USER", "dana")
    return default_store


def test_cli_approve_and_reject_round_trip(cli_env: ParamStore, capsys):
    store = cli_env
    first, second = _pending_version(store), _pending_version(store)

    assert cli.main(["approve", f"v{first}", "--why", "signed off"]) == 0
    out = capsys.readouterr().out
    assert f"approved quant_genesis_params/v{first} by dana" in out
    champ = store.champion()
    assert champ.version == first and champ.decision("approve")["by"] == "dana"
    assert champ.decision("approve")["via"] == "quant-genesis CLI"

    assert (
        cli.main(["reject", f"quant_genesis_params/v{second}", "--why", "no", "--by", "eve"]) == 0
    )
    assert f"rejected quant_genesis_params/v{second} by eve" in capsys.readouterr().out
    assert store.get(second).status == "rejected"

    assert cli.main(["versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith(f"v{first} "))
    assert "approved" in row and "champion" in row and "by dana" in row
    row = next(line for line in lines if line.startswith(f"v{second} "))
    assert "rejected" in row and "reject by eve" in row

    # rejected, then approve: refused, the champion stays
    assert cli.main(["approve", str(second), "--why", "changed my mind"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot approve") and "rejected" in err and "\n" not in err
    assert store.champion().version == first


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["approve", "v999", "--why", "x"], "no parameter version quant_genesis_params/v999"),
        (["approve", "latest", "--why", "x"], "is not a parameter version"),
        (["reject", "other_model/v2", "--why", "x"], "belongs to registered model 'other_model'"),
        (["approve", "1", "--why", " "], "--why must say why"),
        (["versions", "--status", "it's"], "invalid status"),
    ],
)
def test_cli_bad_requests_exit_2_with_one_line(cli_env: ParamStore, capsys, argv, needle):
    champion = cli_env.champion().version
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err
    assert cli_env.champion().version == champion


def test_cli_without_a_store_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("QG_HOME", str(tmp_path))
    assert cli.main(["approve", "2", "--why", "x", "--by", "dana"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no MLflow store at sqlite:///") and "\n" not in err
    assert not (tmp_path / "mlflow").exists()


def test_cli_version_forms():
    name = registry.REGISTERED_NAME
    assert [cli.parse_version(v, name) for v in ("3", "v3", "V3", f"{name}/v3", " 3 ")] == [3] * 5
    for bad in ("0", "v", "-1", "3.0"):
        with pytest.raises(QGError):
            cli.parse_version(bad, name)


# ------------------------------------------------------------------------------ Dagster job
def _run_approval_job(home: Path, **config):
    import dagster as dg

    from quant_genesis_dagster.definitions import defs

    job = defs.resolve_job_def("approval_job")
    with dg.instance_for_test() as instance:
        return job.execute_in_process(
            run_config={
                "ops": {"decide_param_version": {"config": config}},
                "resources": {"param_store": {"config": {"home": str(home)}}},
            },
            instance=instance,
            raise_on_error=False,
        )


def test_approval_job_approves_and_rejects(home: Path, default_store: ParamStore):
    store = default_store
    version = _pending_version(store)
    result = _run_approval_job(home, version=version, decision="approve", by="frank", why="ok")
    assert result.success
    champ = store.champion()
    assert champ.version == version
    record = champ.decision("approve")
    assert record["by"] == "frank" and record["via"] == f"dagster run {result.run_id}"
    assert result.output_for_node("decide_param_version") == champ.id

    other = _pending_version(store)
    result = _run_approval_job(home, version=other, decision="reject", by="frank", why="no")
    assert result.success and store.get(other).status == "rejected"
    assert store.champion().version == version


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"decision": "maybe"}, "decision 'maybe' is not one of approve, reject"),
        ({"version": 999}, "no parameter version quant_genesis_params/v999"),
        ({"why": ""}, "`why` is required"),
    ],
)
def test_approval_job_bad_request_fails_with_one_line(
    home: Path, default_store: ParamStore, config, needle
):
    from quant_genesis_dagster.demo import _failure_message

    champion = default_store.champion().version
    request = {"version": champion, "decision": "approve", "by": "frank", "why": "x", **config}
    result = _run_approval_job(home, **request)
    assert not result.success
    msg = _failure_message(result)
    assert needle in msg and "\n" not in msg
    assert default_store.champion().version == champion
