"""The parameter store: versioned ``ParamSet``s in MLflow tracking + model registry (SPEC §9).

Layout in MLflow (tracking URI = registry URI):

* every parameter set is one **run** in experiment ``quant_genesis/params``: params = the full
  set (every ``ParamSet`` field), metrics (e.g. in-sample / walk-forward results of a
  calibration), the set as the JSON artifact ``params/params.json``, and tags
  (``dagster/run_id``, ``dagster/partition_key``, ``qg/registered_model``, the caller's);
* and one **version** of the registered model ``quant_genesis_params`` whose source is that
  artifact directory (``runs:/<run_id>/params``, so ``models:/quant_genesis_params@champion``
  downloads ``params.json``), with the version tag ``status`` (``STATUSES``: ``candidate``,
  ``approved``, ``pending_approval``, ``not_promoted``, ``rejected``);
* other artifacts of the run (agent zips with their normalization statistics, the data/config
  hash, plots) under their own directories beside ``params/`` (``register(artifacts=...)``);
* **aliases**: ``champion`` is the set predictions use, ``challenger`` the one under evaluation
  (a version pending a person's approval). Every alias decision is recorded on the version as
  tags ``decision/<alias>/by|at|why`` (and ``.../replaced``: the version that held the alias
  before; ``.../removed_by|removed_at|removed_why`` when the alias was taken away), and so is
  every other decision (``decision/<action>/...``, see ``decision_tags``); which decisions are
  allowed when is ``domain.calibration.governance``.

Reading a version takes its params from the version's run (two small calls, ~10 ms on the
SQLite store), not from the artifact; ``ParamSet.from_dict`` validates the ranges, so an
out-of-range value stored in MLflow is a ``QGError`` naming the parameter. Its ``id``
(``quant_genesis_params/v3``) is what prediction rows store as ``param_version``.

MLflow is imported lazily inside the methods (``import mlflow`` takes 1-2 s; the CLI, the
sidecar and Dagster's code loading must not pay for it), and constructing a ``ParamStore`` does
no I/O. The first MLflow call in a process opens the stores (SQLite: ~0.8 s, or ~2 s when it
creates a fresh database); later reads are fast.

Passwords: a tracking URI may carry one (``https://user:secret@host``). Messages show the URI
through ``safe_uri`` and MLflow error texts are scrubbed of it; nothing here logs environment
values.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from quant_genesis_dagster.domain.params import DEFAULTS, ParamSet
from quant_genesis_dagster.errors import QGError

if TYPE_CHECKING:  # pragma: no cover - typing only, never imported at run time here
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

REGISTERED_NAME = "quant_genesis_params"
CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "quant_genesis/params"
#: Artifact directory of a parameter run (the model version's source) and the file in it.
ARTIFACT_DIR = "params"
ARTIFACT_FILE = "params.json"

STATUS_TAG = "status"
#: Values of the ``status`` version tag.
STATUS_CANDIDATE = "candidate"  # registered, no decision yet
STATUS_APPROVED = "approved"  # champion now or before (promoted by the system or a person)
STATUS_PENDING = "pending_approval"  # the human filter stopped it: waits for approve / reject
STATUS_NOT_PROMOTED = "not_promoted"  # no human needed, but it did not beat the champion
STATUS_REJECTED = "rejected"  # a person said no: never becomes champion
STATUSES = (STATUS_CANDIDATE, STATUS_APPROVED, STATUS_PENDING, STATUS_NOT_PROMOTED, STATUS_REJECTED)
#: Version tag of the version registered by ``ensure_defaults`` (finds it again after a race).
BOOTSTRAP_TAG = "qg/bootstrap"
TAG_DAGSTER_RUN = "dagster/run_id"
TAG_PARTITION = "dagster/partition_key"
TAG_REGISTERED_MODEL = "qg/registered_model"
#: ``who`` of the decisions the system takes itself (the defaults becoming the first champion).
SYSTEM_USER = "quant-genesis"
#: How long ``ensure_defaults`` waits for another process bootstrapping the same SQLite store.
LOCK_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ParamVersion:
    """One registered parameter set."""

    name: str
    version: int
    params: ParamSet
    run_id: str
    status: str
    tags: dict[str, str]
    #: The aliases pointing at this version when it was read (``champion``, ``challenger``).
    aliases: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """``<registered model>/v<version>``: stored on every prediction row as ``param_version``."""
        return f"{self.name}/v{self.version}"

    def decision(self, alias: str) -> dict[str, str]:
        """The recorded decision for ``alias`` (or another action: ``approve``, ``reject``,
        ``calibration``) on this version: keys by, at, why (, replaced, via, removed_...)."""
        prefix = f"decision/{alias}/"
        return {k[len(prefix) :]: v for k, v in self.tags.items() if k.startswith(prefix)}


def decision_tags(action: str, *, who: str, why: str, **extra: str) -> dict[str, str]:
    """The audit record of one decision as version tags: ``decision/<action>/by`` (who),
    ``.../at`` (now, ISO 8601 UTC), ``.../why`` and ``.../<key>`` for every ``extra`` value that
    is not empty. ``QGError`` when ``who`` or ``why`` is blank: a decision is never anonymous."""
    if not isinstance(action, str) or not action.strip() or "/" in action:
        raise QGError(f"decision: action {action!r} must be a non-empty word without '/'")
    for label, value in (("who", who), ("why", why)):
        if not isinstance(value, str) or not value.strip():
            raise QGError(f"{action}: `{label}` is required for the audit record")
    record = {
        f"decision/{action}/by": who.strip(),
        f"decision/{action}/at": _now_iso(),
        f"decision/{action}/why": why.strip(),
    }
    record.update({f"decision/{action}/{k}": str(v) for k, v in extra.items() if v})
    return record


def parse_version_id(version_id: str) -> tuple[str, int]:
    """``"<name>/v<version>"`` (``ParamVersion.id``) → (name, version); QGError otherwise."""
    name, sep, number = version_id.rpartition("/v")
    if not sep or not name or not number.isdigit():
        raise QGError(
            f"parameter version id {version_id!r} is not of the form <registered model>/v<N>"
        )
    return name, int(number)


# ------------------------------------------------------------------------------------ helpers
def safe_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return "<unparsable URI>"
    if not password:
        return uri
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _password(uri: str) -> str | None:
    try:
        return urlsplit(uri).password or None
    except ValueError:
        return None


def _import_mlflow() -> None:
    """Prepare the one environment setting MLflow needs here; call before importing it.

    MLflow 3 starts a telemetry client when it is imported, which looks up and contacts a
    telemetry host from a background thread (see docs MLFLOW_SB3.md): on an offline machine
    that is a stray network attempt, and it sends usage data out of a trading system.
    ``setdefault`` so that a deliberate user setting (``MLFLOW_DISABLE_TELEMETRY=false``) wins.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _mlflow_exception() -> type[Exception]:
    _import_mlflow()
    from mlflow.exceptions import MlflowException

    return MlflowException


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for anything else / memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :].split("?", 1)[0]
    if rest in ("", ":memory:"):
        return None
    return Path(unquote(rest))


def _artifact_uri(location: str | os.PathLike[str] | None) -> str | None:
    """A plain path becomes an absolute ``file://`` URI; URIs (``s3://``, ``file:``) pass."""
    if location is None:
        return None
    text = os.fspath(location).strip()
    if not text:
        return None
    scheme = urlsplit(text).scheme
    if len(scheme) > 1:  # a real scheme, not a Windows drive letter
        return text
    return Path(text).expanduser().resolve().as_uri()


@contextlib.contextmanager
def _file_lock(path: Path | None, *, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` across processes (and threads: every call opens the
    file anew). No-op without a path or without ``fcntl`` (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise QGError(
                        f"parameter store: waited {timeout:.0f} s for the lock {path} held by "
                        "another process; wait for it to finish or stop it"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_missing(err: Exception) -> bool:
    """MLflow's "no such registered model / version / alias" errors."""
    code = getattr(err, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    # A missing alias is INVALID_PARAMETER_VALUE "Registered model alias champion not found."
    return code == "INVALID_PARAMETER_VALUE" and "not found" in str(err)


def _artifact_items(
    artifacts: Mapping[str, str | os.PathLike[str]] | None, what: str
) -> list[tuple[str, Path]]:
    """``{artifact dir in the run: local path}`` checked: relative dirs, not the version's own
    ``params/``, existing paths. Nothing is written before every entry passed."""
    items: list[tuple[str, Path]] = []
    for key, local in (artifacts or {}).items():
        where = key.strip().strip("/") if isinstance(key, str) else ""
        parts = where.split("/")
        if not where or any(p in ("", ".", "..") for p in parts) or key.strip().startswith("/"):
            raise QGError(
                f"{what}: artifact path {key!r} must be a relative directory in the run "
                "(e.g. 'agents' or 'plots/equity')"
            )
        if parts[0] == ARTIFACT_DIR:
            raise QGError(
                f"{what}: artifact path {key!r} is inside {ARTIFACT_DIR + '/'!r}, the version's "
                "own parameter file; choose another directory (e.g. 'agents')"
            )
        try:
            path = Path(os.fspath(local)).expanduser()
        except TypeError:
            raise QGError(f"{what}: artifact {key!r}: {local!r} is not a path") from None
        if not path.exists():
            raise QGError(f"{what}: artifact {key!r}: {path} does not exist; nothing was logged")
        items.append((where, path))
    return items


def _log_files(client: MlflowClient, run_id: str, items: list[tuple[str, Path]]) -> None:
    for where, path in items:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=where)
        else:
            client.log_artifact(run_id, str(path), artifact_path=where)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _str_tags(tags: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (tags or {}).items():
        if not isinstance(k, str) or not k.strip():
            raise QGError(f"parameter store: {what} key {k!r} must be a non-empty string")
        out[k] = v if isinstance(v, str) else str(v)
    return out


# -------------------------------------------------------------------------------------- store
class ParamStore:
    """Versioned parameter sets in MLflow. Constructing one is free (no import, no I/O); the
    MLflow client is created on the first call and shared by the instance's later calls."""

    def __init__(
        self,
        tracking_uri: str,
        artifact_location: str | os.PathLike[str] | None = None,
        name: str = REGISTERED_NAME,
    ) -> None:
        if not isinstance(tracking_uri, str) or not tracking_uri.strip():
            raise QGError(
                "parameter store: empty MLflow tracking URI; set MLFLOW_TRACKING_URI or leave "
                "it unset for the SQLite store under QG_HOME"
            )
        if not name or not name.strip() or "'" in name or '"' in name:
            raise QGError(f"parameter store: invalid registered model name {name!r}")
        self.tracking_uri = tracking_uri.strip()
        self.artifact_location = _artifact_uri(artifact_location)
        self.name = name
        self._client_obj: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._model_ready = False
        self._init_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ParamStore({self.where!r}, name={self.name!r})"

    @property
    def where(self) -> str:
        """The tracking URI with its password hidden."""
        return safe_uri(self.tracking_uri)

    # ------------------------------------------------------------------ reading
    def champion(self) -> ParamVersion:
        """The current champion (the parameter set predictions use), validated."""
        mv = self._alias_version(CHAMPION)
        if mv is None:
            raise QGError(self._no_champion_message())
        return self._to_version(mv)

    def get(self, version: int) -> ParamVersion:
        """Version ``version`` of the registered model, validated."""
        return self._to_version(self._model_version(version))

    def versions(self, status: str | None = None) -> list[ParamVersion]:
        """Every (not deleted) version, oldest first; only those with ``status`` when given."""
        if status is not None and (
            not isinstance(status, str) or not status.strip() or "'" in status
        ):
            raise QGError(f"versions: invalid status {status!r}; one of {', '.join(STATUSES)}")
        found = self._model_versions(status.strip() if status else None)
        if not found:
            return []
        held = self._aliases()
        return [
            self._to_version(mv, aliases=tuple(sorted(held.get(int(mv.version), ()))))
            for mv in found
        ]

    def check_exists(self) -> None:
        """``QGError`` when the tracking URI is a SQLite file that does not exist (nothing was
        ever registered there; MLflow would silently create an empty store). Other stores are
        checked by their first call."""
        db = _sqlite_path(self.tracking_uri)
        if db is not None and not db.exists():
            raise QGError(
                f"no MLflow store at {self.where} (the file does not exist); run `quant-genesis "
                "demo` or the daily job first, or set MLFLOW_TRACKING_URI to your tracking store"
            )

    def alias(self, alias: str) -> ParamVersion | None:
        """The version holding ``alias`` (e.g. ``CHALLENGER``), or None."""
        mv = self._alias_version(alias)
        return None if mv is None else self._to_version(mv)

    def run_url(self, pv: ParamVersion) -> str | None:
        """Link to ``pv``'s run in the MLflow UI when tracking is an http(s) server, else None.
        The link never carries credentials."""
        parts = urlsplit(self.tracking_uri)
        if parts.scheme not in ("http", "https"):
            return None
        hostport = parts.netloc.rpartition("@")[2]
        base = urlunsplit((parts.scheme, hostport, parts.path.rstrip("/"), "", ""))
        with self._errors(f"reading run {pv.run_id}"):
            experiment_id = self._client().get_run(pv.run_id).info.experiment_id
        return f"{base}/#/experiments/{experiment_id}/runs/{pv.run_id}"

    # ------------------------------------------------------------------ writing
    def ensure_defaults(
        self, defaults: ParamSet = DEFAULTS, *, tags: dict[str, str] | None = None
    ) -> ParamVersion:
        """Register ``defaults`` as version 1 and make it champion when the registered model has
        no versions; otherwise change nothing and return the champion (``QGError`` when there
        is none: someone removed it on purpose, so it is not silently put back).

        Concurrency: on a SQLite store the whole check-and-create runs under an exclusive file
        lock next to the database, so a second process waits and then finds version 1. Without
        a lock (an MLflow server), two callers can both find no versions and both register; each
        then keeps only the lowest-numbered bootstrap version: the loser deletes its own version
        and run, and whoever gets there first sets the champion alias (both would set the same
        version). A bootstrap version without a champion decision (its process is still between
        the two calls, or died there) is finished by the next caller.
        """
        if not isinstance(defaults, ParamSet):
            raise QGError(f"ensure_defaults: defaults must be a ParamSet, got {type(defaults)}")
        self._client()  # open the stores first (their own lock; not re-entrant with this one)
        with _file_lock(self._lock_path()):
            self._ensure_registered_model()
            existing = self._model_versions()
            if existing:
                return self._champion_or_finish_bootstrap(existing)
            version, run_id = self._create_version(
                defaults,
                description="defaults (ParamSet DEFAULTS), registered by ensure_defaults",
                tags=tags,
                status=STATUS_APPROVED,
                run_name="defaults",
                version_tags={BOOTSTRAP_TAG: "defaults"},
            )
            log.info("registered the default parameters as %s/v%s", self.name, version)
            return self._settle_bootstrap(version, run_id)

    def register(
        self,
        params: ParamSet,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        status: str = STATUS_CANDIDATE,
        dagster_run_id: str | None = None,
        partition_key: str | None = None,
        metrics: dict[str, float] | None = None,
        artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
        version_tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
    ) -> ParamVersion:
        """A new run (params, metrics, ``params/params.json``, tags, ``artifacts``; named
        ``run_name`` in the UI, MLflow picks a random name when None) and a new
        model version pointing at its ``params/`` artifact, with version tag ``status`` and
        ``version_tags`` (tags of the version only, e.g. decision records). No alias changes.

        ``artifacts``: artifact directory in the run → a local file (logged into that directory)
        or directory (its contents logged under it), e.g. ``{"agents": zip_dir, "plots":
        equity_png}``. Every path is checked before anything is written; ``params`` is the
        version's own directory and cannot be used."""
        if not isinstance(params, ParamSet):
            raise QGError(f"register: params must be a ParamSet, got {type(params).__name__}")
        if not isinstance(status, str) or not status.strip():
            raise QGError("register: status must be a non-empty string (e.g. candidate)")
        files = _artifact_items(artifacts, "register")
        version, _ = self._create_version(
            params,
            description=description,
            tags=tags,
            status=status.strip(),
            dagster_run_id=dagster_run_id,
            partition_key=partition_key,
            metrics=metrics,
            artifacts=files,
            version_tags=_str_tags(version_tags, "version tag"),
            run_name=run_name,
        )
        return self.get(version)

    def set_status(
        self, version: int, status: str, *, tags: Mapping[str, str] | None = None
    ) -> ParamVersion:
        """Set the ``status`` version tag (and ``tags``, e.g. ``decision_tags(...)``) of
        ``version``. No alias changes; the rules of which status may follow which are the
        governance's (``domain.calibration.governance``)."""
        if not isinstance(status, str) or not status.strip():
            raise QGError(f"set_status: status must be a non-empty string ({', '.join(STATUSES)})")
        values = {**_str_tags(tags, "version tag"), STATUS_TAG: status.strip()}
        self._model_version(version)  # exists
        client = self._client()
        with self._errors(f"setting the status of {self.name}/v{version} to {status.strip()!r}"):
            for key, value in values.items():
                self._retry(client.set_model_version_tag, self.name, str(version), key, value)
        return self.get(version)

    def remove_alias(
        self, alias: str, *, who: str, why: str, version: int | None = None
    ) -> int | None:
        """Take ``alias`` away (only if it points at ``version``, when given) and record it on
        the version that held it (``decision/<alias>/removed_by|removed_at|removed_why``).
        Returns that version, or None when nothing was removed. The champion alias cannot be
        removed: predictions always need one (promote another version instead)."""
        if not isinstance(alias, str) or not alias.strip():
            raise QGError("remove_alias: alias must be a non-empty string (e.g. challenger)")
        alias = alias.strip()
        if alias == CHAMPION:
            raise QGError(
                f"the {CHAMPION!r} alias of {self.name} cannot be removed: predictions always use "
                "the champion; promote (approve) another version to replace it"
            )
        record = {
            k.replace(f"decision/{alias}/", f"decision/{alias}/removed_"): v
            for k, v in decision_tags(alias, who=who, why=why).items()
        }
        mv = self._alias_version(alias)
        if mv is None or (version is not None and int(mv.version) != version):
            return None
        held = int(mv.version)
        client = self._client()
        with self._errors(f"removing alias {alias!r} of {self.name} from v{held}"):
            self._retry(client.delete_registered_model_alias, self.name, alias)
            for key, value in record.items():
                self._retry(client.set_model_version_tag, self.name, str(held), key, value)
        log.info("%s/v%s is no longer %s (by %s)", self.name, held, alias, who.strip())
        return held

    def set_alias(self, alias: str, version: int, *, who: str, why: str) -> ParamVersion:
        """Point ``alias`` at ``version`` and record the decision on that version
        (``decision/<alias>/by``, ``.../at`` ISO UTC, ``.../why``, ``.../replaced``)."""
        self._set_alias(alias, version, who=who, why=why)
        return self.get(version)

    def promote(
        self, version: int, *, who: str, why: str, tags: Mapping[str, str] | None = None
    ) -> ParamVersion:
        """Make ``version`` the champion (recorded like ``set_alias``; ``status=approved``; and
        ``tags``, e.g. the record of the approval that led to it, written with them)."""
        extra = {**_str_tags(tags, "version tag"), STATUS_TAG: STATUS_APPROVED}
        self._set_alias(CHAMPION, version, who=who, why=why, tags=extra)
        return self.get(version)

    # ------------------------------------------------------------------ internals
    def _client(self) -> MlflowClient:
        if self._client_obj is not None:
            return self._client_obj
        with self._init_lock:
            if self._client_obj is None:
                _import_mlflow()
                from mlflow import MlflowClient

                # A fresh SQLite database gets its tables on first open: serialize that too.
                with _file_lock(self._lock_path()), self._errors("opening the store", broad=True):
                    client = MlflowClient(
                        tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                    )
                    client.search_registered_models(max_results=1)  # opens the registry store
                self._client_obj = client
        return self._client_obj

    def _set_alias(
        self, alias: str, version: int, *, who: str, why: str, tags: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(alias, str) or not alias.strip():
            raise QGError("set_alias: alias must be a non-empty string (champion, challenger)")
        for label, value in (("who", who), ("why", why)):
            if not isinstance(value, str) or not value.strip():
                raise QGError(f"set_alias {alias}: `{label}` is required for the audit record")
        self.get(version)  # exists, and its params are valid: never alias a broken version
        previous = self._alias_version(alias)
        client = self._client()
        replaced = ""
        if previous is not None and int(previous.version) != version:
            replaced = str(previous.version)
        record = decision_tags(alias, who=who, why=why, replaced=replaced)
        with self._errors(f"setting alias {alias!r} of {self.name} to v{version}"):
            self._retry(client.set_registered_model_alias, self.name, alias, str(version))
            for key, value in {**record, **(tags or {})}.items():
                self._retry(client.set_model_version_tag, self.name, str(version), key, value)
        log.info("%s/v%s is now %s (by %s)", self.name, version, alias, who.strip())

    @staticmethod
    def _retry(call: Any, *args: Any, attempts: int = 3) -> Any:
        """An idempotent registry write, retried: MLflow's SQL store upserts tags and aliases by
        read-then-insert, so two writers of the same key can collide (UNIQUE constraint)."""
        MlflowException = _mlflow_exception()
        for attempt in range(attempts):
            try:
                return call(*args)
            except MlflowException as err:
                if _is_missing(err) or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _lock_path(self) -> Path | None:
        db = _sqlite_path(self.tracking_uri)
        return None if db is None else db.with_name(db.name + ".qg-lock")

    @contextlib.contextmanager
    def _errors(self, doing: str, *, broad: bool = False) -> Iterator[None]:
        """MLflow failures (and, with ``broad``, any failure) → one-line ``QGError``."""
        MlflowException = _mlflow_exception()
        try:
            yield
        except QGError:
            raise
        except MlflowException as err:
            raise self._error(doing, err) from None
        except Exception as err:
            if not broad:
                raise
            raise self._error(doing, err) from None

    def _error(self, doing: str, err: Exception) -> QGError:
        text = str(err).strip() or type(err).__name__
        password = _password(self.tracking_uri)
        if password:
            for form in {password, unquote(password)}:
                text = text.replace(form, "***")
        first = text.splitlines()[0]
        return QGError(f"MLflow at {self.where}: {doing} failed: {first}")

    def _no_champion_message(self) -> str:
        return (
            f"no champion parameter version in MLflow at {self.where} (registered model "
            f"{self.name!r} has no {CHAMPION!r} alias); run the daily job once to register the "
            f"defaults as version 1 (ParamStore.ensure_defaults), or approve a version (promote "
            f"it, or set the {CHAMPION!r} alias in the MLflow UI)"
        )

    def _model_version(self, version: int) -> ModelVersion:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise QGError(f"parameter version must be a positive integer, got {version!r}")
        MlflowException = _mlflow_exception()
        client = self._client()
        try:
            return client.get_model_version(self.name, str(version))
        except MlflowException as err:
            if _is_missing(err):
                raise QGError(
                    f"no parameter version {self.name}/v{version} in MLflow at {self.where}; "
                    "list the versions with `quant-genesis versions`, ParamStore.versions() or "
                    "in the MLflow UI"
                ) from None
            raise self._error(f"reading {self.name}/v{version}", err) from None

    def _aliases(self) -> dict[int, list[str]]:
        """Version → the aliases pointing at it (a version search does not return them)."""
        MlflowException = _mlflow_exception()
        client = self._client()
        try:
            model = client.get_registered_model(self.name)
        except MlflowException as err:
            if _is_missing(err):
                return {}
            raise self._error(f"reading the aliases of {self.name}", err) from None
        held: dict[int, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            held.setdefault(int(version), []).append(alias)
        return held

    def _alias_version(self, alias: str) -> ModelVersion | None:
        MlflowException = _mlflow_exception()
        client = self._client()
        try:
            return client.get_model_version_by_alias(self.name, alias)
        except MlflowException as err:
            if _is_missing(err):
                return None
            raise self._error(f"reading alias {alias!r} of {self.name}", err) from None

    def _model_versions(self, status: str | None = None) -> list[ModelVersion]:
        client = self._client()
        found: list[ModelVersion] = []
        token: str | None = None
        query = f"name='{self.name}'"
        if status is not None:
            query += f" and tags.{STATUS_TAG}='{status}'"
        with self._errors(f"listing the versions of {self.name}"):
            while True:
                page = client.search_model_versions(query, page_token=token)
                found.extend(page)
                token = getattr(page, "token", None)
                if not token:
                    break
        return sorted(found, key=lambda mv: int(mv.version))

    def _to_version(self, mv: ModelVersion, aliases: tuple[str, ...] | None = None) -> ParamVersion:
        label = f"{self.name}/v{mv.version}"
        if not mv.run_id:
            raise QGError(
                f"parameter version {label} in MLflow at {self.where} has no run; register "
                "parameter sets with ParamStore.register"
            )
        with self._errors(f"reading the run of {label}"):
            run = self._client().get_run(mv.run_id)
        stored = dict(run.data.params)
        known = set(DEFAULTS.to_dict())
        if not known & set(stored):
            raise QGError(
                f"parameter version {label} (run {mv.run_id}) in MLflow at {self.where} has no "
                "parameters; register parameter sets with ParamStore.register"
            )
        try:
            params = ParamSet.from_dict(stored)
        except QGError as err:
            raise QGError(
                f"parameter version {label} (run {mv.run_id}) in MLflow at {self.where}: {err}"
            ) from None
        tags = dict(mv.tags or {})
        return ParamVersion(
            name=self.name,
            version=int(mv.version),
            params=params,
            run_id=mv.run_id,
            status=tags.get(STATUS_TAG, "unknown"),
            tags=tags,
            aliases=tuple(sorted(mv.aliases or ())) if aliases is None else aliases,
        )

    def _experiment(self) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        MlflowException = _mlflow_exception()
        client = self._client()
        with self._errors(f"opening experiment {EXPERIMENT!r}"):
            exp = client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                if self.artifact_location and self.artifact_location.startswith("file:"):
                    local = Path(unquote(urlsplit(self.artifact_location).path))
                    local.mkdir(parents=True, exist_ok=True)
                try:
                    experiment_id = client.create_experiment(
                        EXPERIMENT, artifact_location=self.artifact_location
                    )
                except MlflowException as err:  # created meanwhile by another process
                    if err.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    exp = client.get_experiment_by_name(EXPERIMENT)
                    if exp is None:
                        raise
                    experiment_id = exp.experiment_id
            elif exp.lifecycle_stage == "deleted":
                raise QGError(
                    f"MLflow at {self.where}: experiment {EXPERIMENT!r} is deleted; restore it "
                    f"(MLflow UI, or `mlflow experiments restore --experiment-id "
                    f"{exp.experiment_id}`)"
                )
            else:
                experiment_id = exp.experiment_id
        self._experiment_id = experiment_id
        return experiment_id

    def _ensure_registered_model(self) -> None:
        if self._model_ready:
            return
        MlflowException = _mlflow_exception()
        client = self._client()
        try:
            client.create_registered_model(
                self.name,
                description="Quant Genesis parameter sets (SPEC §9); alias 'champion' is the "
                "set predictions use.",
            )
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise self._error(f"creating registered model {self.name}", err) from None
        self._model_ready = True

    def _create_version(
        self,
        params: ParamSet,
        *,
        description: str,
        tags: Mapping[str, Any] | None,
        status: str,
        dagster_run_id: str | None = None,
        partition_key: str | None = None,
        metrics: Mapping[str, float] | None = None,
        run_name: str | None = None,
        version_tags: Mapping[str, str] | None = None,
        artifacts: list[tuple[str, Path]] | None = None,
    ) -> tuple[int, str]:
        _import_mlflow()
        from mlflow.entities import Metric, Param

        user_tags = _str_tags(tags, "tag")
        system = {TAG_REGISTERED_MODEL: self.name}
        if dagster_run_id:
            system[TAG_DAGSTER_RUN] = str(dagster_run_id)
        if partition_key:
            system[TAG_PARTITION] = str(partition_key)
        run_tags = {**user_tags, **system}
        if description:
            run_tags["mlflow.note.content"] = description
        now_ms = int(time.time() * 1000)
        metric_rows = []
        for key, value in (metrics or {}).items():
            try:
                metric_rows.append(Metric(str(key), float(value), now_ms, 0))
            except (TypeError, ValueError):
                raise QGError(f"register: metric {key}={value!r} is not a number") from None
        values = params.to_dict()

        experiment_id = self._experiment()
        client = self._client()
        with self._errors(f"registering a parameter version of {self.name}"):
            run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
            run_id = run.info.run_id
            try:
                client.log_batch(
                    run_id,
                    params=[Param(k, repr(float(v))) for k, v in values.items()],
                    metrics=metric_rows,
                )
                client.log_dict(run_id, values, f"{ARTIFACT_DIR}/{ARTIFACT_FILE}")
                _log_files(client, run_id, artifacts or [])
            except BaseException:
                client.set_terminated(run_id, "FAILED")
                raise
            client.set_terminated(run_id, "FINISHED")
            self._ensure_registered_model()
            mv = client.create_model_version(
                self.name,
                source=f"runs:/{run_id}/{ARTIFACT_DIR}",
                run_id=run_id,
                tags={**user_tags, **system, **(version_tags or {}), STATUS_TAG: status},
                description=description or None,
            )
        return int(mv.version), run_id

    def _settle_bootstrap(self, mine: int, run_id: str) -> ParamVersion:
        """After registering the defaults: keep only the lowest bootstrap version (see
        ``ensure_defaults``) and make sure it is champion."""
        versions = self._model_versions()
        boots = [int(mv.version) for mv in versions if mv.tags.get(BOOTSTRAP_TAG)]
        winner = min(boots, default=mine)
        if winner != mine:
            log.info(
                "%s/v%s was registered concurrently; deleting the duplicate v%s",
                self.name,
                winner,
                mine,
            )
            client = self._client()
            with self._errors(f"deleting the duplicate {self.name}/v{mine}"):
                client.delete_model_version(self.name, str(mine))
                client.delete_run(run_id)
            versions = [mv for mv in versions if int(mv.version) != mine]
        return self._champion_or_finish_bootstrap(versions)

    def _champion_or_finish_bootstrap(self, versions: list[ModelVersion]) -> ParamVersion:
        mv = self._alias_version(CHAMPION)
        if mv is not None:
            return self._to_version(mv)
        boots = [v for v in versions if v.tags.get(BOOTSTRAP_TAG)]
        if boots:
            first = min(boots, key=lambda v: int(v.version))
            if f"decision/{CHAMPION}/at" not in (first.tags or {}):
                # Registered by a bootstrap that has not set the alias yet (still running, or
                # died in between): finish it. Setting the same alias twice is harmless.
                return self.promote(
                    int(first.version),
                    who=SYSTEM_USER,
                    why="defaults registered as the first parameter version",
                )
        raise QGError(self._no_champion_message())
