"""Who may deploy a calibrated parameter set (SPEC §9 "Human filter", "Versioning").

A calibration ends in ``record_calibration``: the proposal becomes one MLflow run (params = the
full set, metrics = in-sample / walk-forward / every baseline, artifacts = agent zips with their
normalization statistics and the data/config hash, plots) and one version of the registered
parameter set, and then the gate decides:

* **needs a person** (``gate_reasons``: a renormalized β moved by more than 20% relative to the
  current champion, Position_Weight > 0.8, or leverage above its bound) → status
  ``pending_approval`` and alias ``challenger``; predictions keep the champion;
* otherwise it becomes **champion** only if it beat the current champion out of sample
  (walk-forward Sharpe strictly higher, both finite);
* otherwise status ``not_promoted``.

A person then calls ``approve`` (→ champion) or ``reject`` (through ``quant-genesis approve`` /
``reject`` or the Dagster ``approval_job``). Every outcome is a decision record on the version
(``decision/<action>/by|at|why``, ``registry.decision_tags``); a request that is not allowed is a
one-line ``QGError`` and changes nothing, in particular not the champion.

Pure logic plus calls on a ``ParamStore`` (MLflow is imported by the store, lazily); no Dagster.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quant_genesis_dagster.domain.params import BETA_KEYS, ParamSet, ranges
from quant_genesis_dagster.domain.registry import (
    CHALLENGER,
    CHAMPION,
    STATUS_APPROVED,
    STATUS_CANDIDATE,
    STATUS_NOT_PROMOTED,
    STATUS_PENDING,
    STATUS_REJECTED,
    SYSTEM_USER,
    ParamStore,
    ParamVersion,
    decision_tags,
)
from quant_genesis_dagster.errors import QGError

#: ``walk_forward_sharpe`` keys of the proposal and of the current champion.
RL = "rl"
CHAMPION_KEY = "champion"
#: Run metric of each walk-forward candidate's Sharpe (beside its other walk-forward metrics).
WF_METRIC = "walk_forward/{}/sharpe"
#: Decision actions recorded on versions (besides the aliases ``champion`` / ``challenger``).
CALIBRATION = "calibration"
APPROVE = "approve"
REJECT = "reject"
#: Statuses a person may reject (a pending version, or one no rule deployed).
REJECTABLE = (STATUS_PENDING, STATUS_CANDIDATE, STATUS_NOT_PROMOTED)
#: Version tags of a calibration: the gate it passed through, the champion it was compared with.
TAG_GATE = "qg/gate"
TAG_COMPARED = "qg/compared_with"
#: A relative β change within this of the bound counts as "at the bound" (float noise).
_EPS = 1e-9
_PRECEDENCE = {CALIBRATION: 0, APPROVE: 2, REJECT: 2}  # others (the aliases): 1
_CANDIDATE_NAME = re.compile(r"^[A-Za-z0-9_.\- ]+$")


@dataclass(frozen=True)
class GateSettings:
    """When a calibrated version needs a person before it may be deployed.

    * ``beta_rel_change``: largest allowed relative move of any renormalized β against the
      champion's, |new − old| / old (0.20 = 20%); a β switched on from 0 always needs a person.
    * ``position_weight_max``: Position_Weight above this needs a person (share of capital).
    * ``leverage_max``: leverage above this needs a person. Default 1.0: any borrowing (gross
      exposure above the capital) needs approval — a risk-conscious PM signs off on leverage,
      while de-risking (leverage below 1) never waits for anyone.
    """

    beta_rel_change: float = 0.20
    position_weight_max: float = 0.80
    leverage_max: float = 1.0

    def __post_init__(self) -> None:
        bounds = ranges()
        checks = {
            "beta_rel_change": (0.0, 10.0),
            "position_weight_max": bounds["position_weight"],
            "leverage_max": bounds["leverage"],
        }
        for name, (lo, hi) in checks.items():
            v = getattr(self, name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or not lo <= v <= hi:
                raise QGError(f"gate setting {name}={v!r} must be a number in [{lo}, {hi}]")

    def describe(self) -> str:
        return (
            f"beta_rel_change={self.beta_rel_change:g}, "
            f"position_weight_max={self.position_weight_max:g}, leverage_max={self.leverage_max:g}"
        )


@dataclass(frozen=True)
class CalibrationDecision:
    """What ``record_calibration`` did with a proposal."""

    version: ParamVersion  # the registered version, as read after the decision
    status: str  # pending_approval | approved | not_promoted
    reasons: tuple[str, ...]  # why a person must decide (empty: the gate let it through)
    promoted: bool  # it is the champion now
    why: str  # the recorded explanation of the outcome
    compared_with: int  # the champion version the proposal was measured against


@dataclass(frozen=True)
class Decision:
    """One recorded decision on a version (``last_decision``)."""

    action: str  # champion, challenger, approve, reject, calibration, ...
    by: str
    at: str  # ISO 8601 UTC
    why: str


# ------------------------------------------------------------------------------------ the gate
def gate_reasons(
    proposal: ParamSet, champion: ParamSet, settings: GateSettings | None = None
) -> list[str]:
    """The reasons ``proposal`` needs a person before it may replace ``champion``, one readable
    line each naming the number and the bound; empty = no person needed."""
    settings = GateSettings() if settings is None else settings
    for label, value in (("proposal", proposal), ("champion", champion)):
        if not isinstance(value, ParamSet):
            raise QGError(f"gate: {label} must be a ParamSet, got {type(value).__name__}")
    if not isinstance(settings, GateSettings):
        raise QGError(f"gate: settings must be GateSettings, got {type(settings).__name__}")
    bound = settings.beta_rel_change
    reasons: list[str] = []
    for key, new, old in zip(BETA_KEYS, proposal.betas, champion.betas, strict=True):
        if old <= 0:
            if new > 0:
                reasons.append(
                    f"{key} (renormalized) moves from 0 to {new:.4f}: switching on a factor "
                    f"the champion does not use counts as more than the {bound:.0%} bound"
                )
            continue
        change = abs(new - old) / old
        if change > bound + _EPS:
            reasons.append(
                f"{key} (renormalized) moves {change:.1%} ({old:.4f} -> {new:.4f}), more than "
                f"the {bound:.0%} bound"
            )
    if proposal.position_weight > settings.position_weight_max:
        reasons.append(
            f"position_weight {proposal.position_weight:g} is above the bound "
            f"{settings.position_weight_max:g}"
        )
    if proposal.leverage > settings.leverage_max:
        reasons.append(
            f"leverage {proposal.leverage:g} is above the bound {settings.leverage_max:g}"
        )
    return reasons


# ---------------------------------------------------------------------------- a calibration
def record_calibration(
    store: ParamStore,
    proposal: ParamSet | Mapping[str, Any],
    *,
    champion: ParamVersion,
    walk_forward_sharpe: Mapping[str, float],
    metrics: Mapping[str, float] | None = None,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str = "",
    dagster_run_id: str | None = None,
    partition_key: str | None = None,
    gate: GateSettings | None = None,
    who: str = SYSTEM_USER,
) -> CalibrationDecision:
    """Register ``proposal`` as a new version (one run: params, ``metrics`` plus every
    walk-forward Sharpe as ``walk_forward/<candidate>/sharpe``, ``artifacts``) and apply the
    gate (module docstring).

    ``champion`` is the version the calibration started from and was evaluated against;
    ``walk_forward_sharpe`` maps candidate → out-of-sample Sharpe and must hold ``"rl"`` (the
    proposal) and ``"champion"`` (plus any baselines: static, rolling_ls, equal_weight, ...).
    A non-finite Sharpe never promotes. If the champion changed while the calibration ran, the
    comparison is stale and the proposal is not promoted (the gate is always checked against
    the champion deployed now). Everything is checked before anything is written.
    """
    gate = GateSettings() if gate is None else gate
    params = _as_params(proposal)
    if not isinstance(champion, ParamVersion):
        raise QGError(
            f"record_calibration: champion must be the ParamVersion the calibration started "
            f"from (ParamStore.champion()), got {type(champion).__name__}"
        )
    sharpe = _walk_forward(walk_forward_sharpe)
    run_metrics = _metrics(metrics, sharpe)
    if not isinstance(who, str) or not who.strip():
        raise QGError("record_calibration: `who` is required for the audit record")
    who = who.strip()

    deployed = store.champion()  # fails clearly when there is none (nothing to compare with)
    reasons = gate_reasons(params, deployed.params, gate)
    rl, base = sharpe[RL], sharpe[CHAMPION_KEY]
    versus = f"walk-forward Sharpe {rl:.4g} (rl) vs {base:.4g} (champion v{champion.version})"
    run_tags = {
        **dict(tags or {}),
        TAG_GATE: gate.describe(),
        TAG_COMPARED: str(champion.version),
    }
    register_args: dict[str, Any] = dict(
        description=description,
        tags=run_tags,
        dagster_run_id=dagster_run_id,
        partition_key=partition_key,
        metrics=run_metrics,
        artifacts=artifacts,
        run_name=f"calibration {partition_key}" if partition_key else "calibration",
    )

    if reasons:
        why = "needs approval: " + "; ".join(reasons) + f" ({versus})"
        pv = store.register(
            params,
            status=STATUS_PENDING,
            version_tags=decision_tags(CALIBRATION, who=who, why=why),
            **register_args,
        )
        pv = store.set_alias(CHALLENGER, pv.version, who=who, why=why)
        return CalibrationDecision(pv, STATUS_PENDING, tuple(reasons), False, why, champion.version)

    if deployed.version != champion.version:
        why = (
            f"not promoted: the champion changed from v{champion.version} to "
            f"v{deployed.version} while the calibration ran, so its {versus} is stale; "
            "calibrate again against the current champion"
        )
    elif math.isfinite(rl) and math.isfinite(base) and rl > base:
        why = f"promoted: {versus}: better out of sample, within the gate ({gate.describe()})"
        pv = store.register(params, status=STATUS_CANDIDATE, **register_args)
        pv = store.promote(
            pv.version, who=who, why=why, tags=decision_tags(CALIBRATION, who=who, why=why)
        )
        return CalibrationDecision(pv, STATUS_APPROVED, (), True, why, champion.version)
    elif not (math.isfinite(rl) and math.isfinite(base)):
        why = f"not promoted: {versus}: a non-finite walk-forward result never promotes"
    else:
        why = f"not promoted: {versus}: not better out of sample"
    pv = store.register(
        params,
        status=STATUS_NOT_PROMOTED,
        version_tags=decision_tags(CALIBRATION, who=who, why=why),
        **register_args,
    )
    return CalibrationDecision(pv, STATUS_NOT_PROMOTED, (), False, why, champion.version)


# ----------------------------------------------------------------------- a person's decision
def approve(
    store: ParamStore, version: int, *, who: str, why: str, via: str | None = None
) -> ParamVersion:
    """A person approves a version pending approval: it becomes the champion (``approved``),
    the decision is recorded (``decision/approve/by|at|why(|via)`` and the champion decision)
    and the ``challenger`` alias is removed if it pointed at it. Anything else — an unknown
    version, a rejected one, the champion itself, one that never waited for approval — is a
    ``QGError`` and changes nothing."""
    decision_tags(APPROVE, who=who, why=why)  # who and why first: nothing is anonymous
    store.check_exists()
    pv = store.get(version)
    champion = store.alias(CHAMPION)
    if champion is not None and champion.version == pv.version:
        raise QGError(f"cannot approve {pv.id}: it is already the champion; nothing changed")
    if pv.status == STATUS_REJECTED:
        raise QGError(
            f"cannot approve {pv.id}: it was rejected{_by(pv, REJECT)}; a rejected version is "
            "never deployed, calibrate again for a new one"
        )
    if pv.status != STATUS_PENDING:
        raise QGError(
            f"cannot approve {pv.id}: its status is {pv.status!r}, only versions pending "
            f"approval ({STATUS_PENDING!r}) can be approved; `quant-genesis versions` lists them"
        )
    record = decision_tags(APPROVE, who=who, why=why, via=via or "")
    store.promote(pv.version, who=who, why=f"approved: {why.strip()}", tags=record)
    store.remove_alias(
        CHALLENGER, who=who, why=f"approved as champion: {why.strip()}", version=pv.version
    )
    return store.get(pv.version)


def reject(
    store: ParamStore, version: int, *, who: str, why: str, via: str | None = None
) -> ParamVersion:
    """A person rejects a version (pending approval, or a candidate / not promoted one): status
    ``rejected``, ``decision/reject/by|at|why(|via)``, and the ``challenger`` alias removed if it
    pointed at it. The champion cannot be rejected (approve another version instead); a
    rejected or unknown version is a ``QGError``; nothing changes then."""
    decision_tags(REJECT, who=who, why=why)  # who and why first: nothing is anonymous
    store.check_exists()
    pv = store.get(version)
    champion = store.alias(CHAMPION)
    if champion is not None and champion.version == pv.version:
        raise QGError(
            f"cannot reject {pv.id}: it is the champion predictions use; approve another "
            "version to replace it"
        )
    if pv.status == STATUS_REJECTED:
        raise QGError(f"cannot reject {pv.id}: it was already rejected{_by(pv, REJECT)}")
    if pv.status not in REJECTABLE:
        raise QGError(
            f"cannot reject {pv.id}: its status is {pv.status!r}; only versions with status "
            f"{', '.join(REJECTABLE)} can be rejected"
        )
    record = decision_tags(REJECT, who=who, why=why, via=via or "")
    store.set_status(pv.version, STATUS_REJECTED, tags=record)
    store.remove_alias(CHALLENGER, who=who, why=f"rejected: {why.strip()}", version=pv.version)
    return store.get(pv.version)


def pending(store: ParamStore) -> list[ParamVersion]:
    """The versions waiting for a person's decision, oldest first."""
    store.check_exists()
    return store.versions(status=STATUS_PENDING)


def last_decision(pv: ParamVersion) -> Decision | None:
    """The most recent decision recorded on ``pv`` (by its ``at`` time, to the second; within
    the same second a person's approve / reject before the alias change it caused, before the
    calibration's own record), or None."""
    found: list[Decision] = []
    for key, at in pv.tags.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "decision" and parts[2] == "at":
            d = pv.decision(parts[1])
            found.append(Decision(parts[1], d.get("by", "?"), at, d.get("why", "")))
    return max(found, key=lambda d: (d.at, _PRECEDENCE.get(d.action, 1)), default=None)


# ------------------------------------------------------------------------------------ helpers
def _as_params(proposal: ParamSet | Mapping[str, Any]) -> ParamSet:
    if isinstance(proposal, ParamSet):
        return proposal
    if isinstance(proposal, Mapping):
        return ParamSet.from_dict(dict(proposal))  # names the parameter out of range
    raise QGError(
        f"record_calibration: proposal must be a ParamSet or a mapping of parameters, got "
        f"{type(proposal).__name__}"
    )


def _walk_forward(values: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise QGError("record_calibration: walk_forward_sharpe must map candidate -> Sharpe")
    missing = [k for k in (RL, CHAMPION_KEY) if k not in values]
    if missing:
        raise QGError(
            f"record_calibration: walk_forward_sharpe lacks {', '.join(map(repr, missing))} "
            f"(has {', '.join(map(repr, values)) or 'nothing'}); give the proposal's ('rl') and "
            "the champion's ('champion') out-of-sample Sharpe"
        )
    out: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not _CANDIDATE_NAME.match(name):
            raise QGError(
                f"record_calibration: walk-forward candidate name {name!r} must use letters, "
                "digits, '_', '-', '.' or spaces"
            )
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise QGError(
                f"record_calibration: walk-forward Sharpe of {name!r} is {value!r}, not a number"
            ) from None
    return out


def _metrics(metrics: Mapping[str, float] | None, sharpe: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise QGError(f"record_calibration: metric {key}={value!r} is not a number") from None
    for name, value in sharpe.items():
        key = WF_METRIC.format(name)
        if key in out and not (out[key] == value or (math.isnan(out[key]) and math.isnan(value))):
            raise QGError(
                f"record_calibration: metric {key!r} = {out[key]} contradicts "
                f"walk_forward_sharpe[{name!r}] = {value}; leave it to walk_forward_sharpe"
            )
        out[key] = value
    return out


def _by(pv: ParamVersion, action: str) -> str:
    d = pv.decision(action)
    if not d:
        return ""
    why = f": {d['why']}" if d.get("why") else ""
    return f" by {d.get('by', '?')} at {d.get('at', '?')}{why}"
