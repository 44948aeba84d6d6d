"""Resolve the reward references of a recipe into checked, named, picklable reward callables.

A reference is a registered name (``math_accuracy``), ``module:function`` (``rewards.format:TagFormat``)
or ``file.py:function`` with an explicit colon (``./my_rewards.py:polite``, relative to the recipe).
Resolution imports only what the reference names, and checks that the target has TRL's signature
``(prompts, completions, **kwargs)`` before any model loads. Every call runs under the reference's
``timeout_s`` (``time_limit``), so a reward that hangs stops the stage with its name instead of hanging it.
Every call also hands the reward its completions in the shape TRL's trainers do (``trl_shaped``), so one
function sees one shape in training, the scorecard, the eval stage, win rates and ``rlft rewards test``.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import math
import numbers
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rlft.errors import RlftError

CONTRACT = "fn(prompts, completions, **kwargs) -> list[float | None]"


def is_conversation(prompt) -> bool:
    """A prompt in TRL's conversational format: a list of ``{"role", "content"}`` messages."""
    return isinstance(prompt, list) and bool(prompt) and all(isinstance(m, dict) for m in prompt)


def trl_shaped(prompts, completions) -> list:
    """Completions as TRL's trainers pass them to a reward: ``[{"role": "assistant", "content": text}]`` when the
    prompt is a conversation, the plain text when the prompt is text.

    Generation for held-out scoring yields text; without this a reward written the way TRL's docs write one
    (``completion[0]["content"]``) crashes at the first scorecard, and a reward model trained on whole chats
    scores held-out answers without the end-of-turn tokens it learnt from (on the bundled support pairs that
    ranked 0.77 of held-out pairs right instead of 0.91). Completions already in message form pass unchanged.
    """
    return [
        [{"role": "assistant", "content": c}] if isinstance(c, str) and is_conversation(p) else c
        for p, c in zip(prompts, completions, strict=True)
    ]


class _OutOfTime(BaseException):
    """rlft's reward timer went off: a BaseException, so that a reward's own ``except Exception`` cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str):
    """Raise ``RlftError`` naming ``what`` if the body runs longer than ``seconds`` of wall-clock time (None: no limit).

    No thread is started: SIGALRM's real-time timer interrupts the main thread (a call stuck inside C code
    stops when it returns to Python). An enclosing limit keeps its deadline: it fires first if it is nearer,
    and is re-armed with what is left of it on exit. Off the main thread there is no limit.
    """
    if seconds is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    start, outer_left, armed, mine = time.monotonic(), signal.getitimer(signal.ITIMER_REAL)[0], [True], _OutOfTime()

    def expire(signum, frame):
        if not armed[0]:
            return  # went off as the body finished
        if outer_left and outer_left < seconds and callable(previous):
            previous(signum, frame)  # the enclosing limit's deadline: its handler raises
        raise mine

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left else seconds)
    try:
        try:
            yield
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _OutOfTime as exc:
        if exc is not mine:
            raise
        raise RlftError(
            f"{what} did not return within {seconds:g} s",
            fix="make it faster, or give it more time: `timeout_s:` on this reward in the recipe (null: no limit)",
        ) from None
    finally:
        signal.signal(signal.SIGALRM, previous)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - start), 1e-3))


class Reward:
    """A reward callable with a display name, its kwargs bound, and its outputs checked.

    Picklable (holds the target, not a closure). Raises ``RlftError`` naming the reward and the
    sample when the target returns the wrong number of values or a NaN/inf — never a silent zero —
    and when one call takes longer than ``timeout_s`` seconds (None: no limit; see ``time_limit``).
    """

    def __init__(self, name: str, target, kwargs: dict | None = None, timeout_s: float | None = None):
        self.__name__ = name
        self.target = target
        self.kwargs = dict(kwargs or {})
        self.timeout_s = timeout_s

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        completions = trl_shaped(prompts, completions)
        try:
            with time_limit(self.timeout_s, f"reward {self.__name__} (one call on {len(completions)} completions)"):
                values = self.target(prompts=prompts, completions=completions, **columns, **self.kwargs)  # TRL calls by keyword
        except RlftError:
            raise
        except Exception as exc:
            raise RlftError(f"reward {self.__name__} raised {type(exc).__name__}: {exc}", fix=_fix_for(exc, completions)) from exc
        values = list(values) if values is not None else []
        if len(values) != len(completions):
            raise RlftError(
                f"reward {self.__name__} returned {len(values)} values for {len(completions)} completions",
                fix="return one float (or None) per completion",
            )
        for i, v in enumerate(values):
            if v is None:
                continue
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
                raise RlftError(
                    f"reward {self.__name__} gave {v!r} for sample {i} (completion {str(completions[i])[:80]!r})",
                    fix="return a finite float, or None when the reward does not apply",
                )
        return [None if v is None else float(v) for v in values]


def _fix_for(exc: Exception, completions: list) -> str:
    """The fix for a reward that raised; a type error on completions of the other shape says which shape it got."""
    fix = "fix the reward function; call it on a few samples by hand to reproduce"
    if not isinstance(exc, TypeError | AttributeError) or not completions:
        return fix
    if is_conversation(completions[0]):
        shape = (
            'each completion is a list of chat messages, [{"role": "assistant", "content": ...}], in training as here '
            "(rlft makes text prompts chat messages)"
        )
    else:
        shape = "each completion is plain text here, as TRL passes it when the prompt is text"
    read = 'read its text with rewards.text(completion), which takes either shape, or completion[0]["content"] for messages'
    return f"{shape}: {read}; {fix}"


@dataclass(frozen=True)
class ResolvedReward:
    reward: Reward
    weight: float
    required_columns: tuple[str, ...]
    source: str  # where it is defined, for messages and `rlft rewards list`


def _close(name: str, options) -> str:
    near = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f"did you mean {', '.join(near)}? " if near else ""


def _load_file(path_str: str, base_dir: Path):
    path = Path(path_str).expanduser()
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    if not path.exists():
        raise RlftError(f"reward file {path} does not exist", fix="give the path relative to the recipe file, e.g. ./my_rewards.py:fn")
    mod_name = f"rlft_user_rewards_{abs(hash(str(path)))}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # so rewards defined there pickle
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise RlftError(f"importing reward file {path} failed: {type(exc).__name__}: {exc}", fix="fix the error in that file") from exc
    return module


def _lookup(ref: str, base_dir: Path):
    """Return (object, source) for a reference string."""
    import rewards

    if ":" not in ref:
        if ref not in rewards.REGISTRY and ref in rewards.BUILTINS:
            importlib.import_module(rewards.BUILTINS[ref])
        if ref in rewards.REGISTRY:
            info = rewards.REGISTRY[ref]
            return info.fn, info.module
        names = sorted(set(rewards.BUILTINS) | set(rewards.REGISTRY))
        raise RlftError(
            f"unknown reward {ref!r}",
            fix=f"{_close(ref, names)}registered rewards: {', '.join(names)}; or use module:function / ./file.py:function",
        )
    where, _, attr = ref.rpartition(":")
    if where.endswith(".py"):
        module = _load_file(where, base_dir)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            raise RlftError(
                f"reward module {where!r} cannot be imported ({exc})", fix="check the module path, or use ./file.py:function for a file"
            ) from exc
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise RlftError(f"{where} has no reward {attr!r}", fix=f"{_close(attr, public)}callables there: {', '.join(public[:12])}")
    return getattr(module, attr), where


def _check_signature(obj, ref: str) -> tuple[str, ...]:
    """Check TRL's contract; return the dataset columns the function requires."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ()
    params = list(sig.parameters.values())
    names = [p.name for p in params]
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    if "completions" not in names or not has_var_kw:
        raise RlftError(
            f"reward {ref} has signature {obj.__name__ if hasattr(obj, '__name__') else ''}{sig}, which does not fit TRL's contract",
            fix=f"define it as {CONTRACT} (dataset columns arrive as keyword arguments)",
        )
    return tuple(
        p.name
        for p in params
        if p.name not in ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is p.empty
    )


def resolve_reward(
    ref: str, *, weight: float = 1.0, kwargs: dict | None = None, base_dir: Path | None = None, timeout_s: float | None = None
) -> ResolvedReward:
    """Resolve one reference into a ``ResolvedReward`` (raises ``RlftError`` with a fix); ``timeout_s`` limits each call."""
    base_dir = base_dir or Path.cwd()
    obj, source = _lookup(ref, base_dir)
    kwargs = dict(kwargs or {})
    if inspect.isclass(obj):
        try:
            obj = obj(**kwargs)
        except TypeError as exc:
            raise RlftError(f"reward {ref} does not accept kwargs {kwargs}: {exc}", fix="check the kwargs: of this reward") from exc
        kwargs = {}
    if not callable(obj):
        raise RlftError(f"reward {ref} is not callable", fix=f"point at a function or callable class with {CONTRACT}")
    required = _check_signature(obj, ref)
    if kwargs:
        unknown = [k for k in kwargs if k not in inspect.signature(obj).parameters]
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(obj).parameters.values()):
            raise RlftError(f"reward {ref} takes no kwargs {unknown}", fix="remove them")
        required = tuple(c for c in required if c not in kwargs)
    display = ref.rsplit(":", 1)[-1] if ":" in ref else ref
    return ResolvedReward(Reward(display, obj, kwargs, timeout_s), float(weight), required, source)


def _reward_model_path(ref: str, base_dir: Path, stage_models: dict[str, str | None]) -> str:
    """A ``model:`` reference: an earlier reward_model stage, a local folder, or a hub id."""
    if ref in stage_models:
        return stage_models[ref] or f"<output of stage {ref}>"  # None while only checking a recipe
    path = Path(ref).expanduser()
    if not path.is_absolute() and not path.exists():
        path = base_dir / path
    if ref.startswith((".", "/", "~")) or path.exists():
        if not (path / "config.json").exists():
            raise RlftError(
                f"reward model {ref} is not a folder with config.json",
                fix=f"name an earlier reward_model stage ({', '.join(stage_models) or 'none in this recipe'}), a saved model folder, or a hub id",
            )
        return str(path)
    return ref  # a hub id; loading it needs the network or the local hub cache


def resolve_ref(ref, *, base_dir: Path | None = None, stage_models: dict[str, str | None] | None = None) -> ResolvedReward:
    """Resolve a recipe ``RewardRef`` (``name``, ``model`` or ``ensemble``) into a checked reward.

    ``stage_models`` maps earlier reward_model stages to their saved folders (None while only checking).
    """
    base_dir = base_dir or Path.cwd()
    stage_models = stage_models or {}
    if ref.name is not None:
        return resolve_reward(ref.name, weight=ref.weight, kwargs=ref.kwargs, base_dir=base_dir, timeout_s=ref.timeout_s)
    if ref.model is not None:
        from rewards.model import RewardModelScorer

        path = _reward_model_path(ref.model, base_dir, stage_models)
        scorer = RewardModelScorer(path, batch_size=ref.batch_size, normalize=ref.normalize, name=ref.label)
        return ResolvedReward(Reward(ref.label, scorer, timeout_s=ref.timeout_s), float(ref.weight), (), f"reward model {path}")
    from rewards.ensemble import Ensemble

    members = [resolve_ref(m, base_dir=base_dir, stage_models=stage_models) for m in ref.ensemble]
    ensemble = Ensemble([m.reward for m in members], [m.weight for m in members], reduce=ref.reduce, k=ref.k, name=ref.label)
    required = tuple(dict.fromkeys(c for m in members for c in m.required_columns))
    return ResolvedReward(
        Reward(ref.label, ensemble, timeout_s=ref.timeout_s),
        float(ref.weight),
        required,
        "ensemble of " + ", ".join(m.source for m in members),
    )


def require_columns(rewards: list, columns, *, rows: str, where: str, fix: str) -> None:
    """Refuse, naming it, the first resolved reward that needs a column ``rows`` (e.g. "the held-out rows") lack."""
    for r in rewards:
        missing = [c for c in r.required_columns if c not in columns]
        if missing:
            raise RlftError(
                f"reward {r.reward.__name__} needs column(s) {missing}, which {rows} lack",
                where=where,
                fix=f"their columns are {sorted(columns)}; {fix}",
            )
