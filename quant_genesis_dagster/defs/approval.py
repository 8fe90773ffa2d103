"""``approval_job``: a person approves or rejects a parameter version from the Dagster UI (the
launchpad's run config), the same decision as ``quant-genesis approve`` / ``reject``
(``domain.calibration.governance``). The run id is recorded with the decision."""

import dagster as dg
from pydantic import Field

from quant_genesis_dagster.defs.common import as_failure
from quant_genesis_dagster.defs.resources import ParamStoreResource
from quant_genesis_dagster.domain.calibration import governance
from quant_genesis_dagster.domain.registry import CHAMPION
from quant_genesis_dagster.errors import QGError

APPROVAL_JOB_NAME = "approval_job"
DECISIONS = ("approve", "reject")


class ApprovalConfig(dg.Config):
    """One decision on one parameter version."""

    version: int = Field(description="the version number (quant_genesis_params/v<N>)")
    decision: str = Field(description="approve | reject")
    by: str = Field(description="who decides (recorded)")
    why: str = Field(description="why (recorded)")


@dg.op(description="Approve (→ champion) or reject a parameter version pending approval.")
def decide_param_version(
    context: dg.OpExecutionContext, config: ApprovalConfig, param_store: ParamStoreResource
) -> dg.Output[str]:
    decision = config.decision.strip().lower()
    if decision not in DECISIONS:
        raise as_failure(
            QGError(
                f"approval_job: decision {config.decision!r} is not one of "
                f"{', '.join(DECISIONS)}; set it in the run config"
            )
        )
    decide = governance.approve if decision == "approve" else governance.reject
    store = param_store.store()
    try:
        pv = decide(
            store,
            config.version,
            who=config.by,
            why=config.why,
            via=f"dagster run {context.run_id}",
        )
        champion = store.champion()
    except QGError as err:
        raise as_failure(err) from err
    context.log.info(f"{decision}: {pv.id} is now {pv.status}; the champion is {champion.id}")
    return dg.Output(
        pv.id,
        metadata={
            "param_version": pv.id,
            "status": pv.status,
            "champion": champion.id,
            "decided_by": config.by.strip(),
            "why": config.why.strip(),
            "aliases": ", ".join(pv.aliases) or "none",
            "is_champion": CHAMPION in pv.aliases,
        },
    )


@dg.job(
    name=APPROVAL_JOB_NAME,
    description="A person's decision on a parameter version pending approval: run config "
    "`ops: {decide_param_version: {config: {version, decision: approve|reject, by, why}}}`. "
    "Approving makes it the champion predictions use; every decision is recorded in MLflow.",
)
def approval_job() -> None:
    decide_param_version()
