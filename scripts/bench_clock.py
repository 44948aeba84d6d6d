"""The step clock of ``scripts/bench_overhead.py``: a passive TrainerCallback added to every Trainer a process builds.

The bench copies this file as ``sitecustomize.py`` into its work folder and puts that folder on the children's
``PYTHONPATH``, so Python runs it at start-up in every child: the plain TRL script and both of rlft's processes
(the pipeline and the stage it spawns, which inherits the environment). With ``RLFT_BENCH_CLOCK=<file>`` set it
waits, importing nothing, until ``transformers.trainer`` is imported, then wraps ``Trainer.__init__`` so that each
trainer gets one more callback. The callback appends one JSON line per event to that file:

    begin   at on_train_begin: the TrainingArguments (``to_dict()``) and the model's LoRA config, if any
    step    at every on_step_end (after each optimizer step): ``time.time()`` and ``time.perf_counter()``
    tokens  at every log holding TRL's ``num_tokens`` (real, non-padding tokens seen so far)
    end     at on_train_end: this process's peak RSS

It changes nothing the trainer does. Imports stay at ``os``/``sys``/``json``/``time`` so that Python's start-up
costs both arms the same few milliseconds.
"""

import json
import os
import sys
import time

ENV = "RLFT_BENCH_CLOCK"


def install() -> None:
    """Add the step clock to every Trainer this process builds, once ``transformers.trainer`` is imported."""

    class TrainerHook:  # a sys.meta_path finder that acts on one module only
        def find_spec(self, name, path=None, target=None):
            if name != "transformers.trainer":
                return None
            import importlib.util

            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.loader is not None:
                exec_module = spec.loader.exec_module

                def exec_and_clock(module):
                    exec_module(module)
                    clock_trainers(module.Trainer, os.environ[ENV])

                spec.loader.exec_module = exec_and_clock
            return spec

    sys.meta_path.insert(0, TrainerHook())


def clock_trainers(trainer_cls, path: str) -> None:
    """Wrap ``trainer_cls.__init__`` so that every trainer also gets a ``StepClock`` writing to ``path``."""
    import functools
    import resource

    from transformers.trainer_callback import TrainerCallback

    def write(event: dict) -> None:
        with open(path, "a") as f:
            f.write(json.dumps(event, default=lambda o: sorted(o) if isinstance(o, set) else str(o)) + "\n")

    class StepClock(TrainerCallback):
        def __init__(self):
            self.id = f"{os.getpid()}-{id(self)}"

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            peft = getattr(model, "peft_config", None) or {}
            write({"event": "begin", "trainer": self.id, "t": time.time(), "args": args.to_dict(),
                   "peft": {k: v.to_dict() for k, v in peft.items()}})  # fmt: skip

        def on_step_end(self, args, state, control, **kwargs):
            write({"event": "step", "trainer": self.id, "step": state.global_step, "t": time.time(), "pc": time.perf_counter()})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                write({"event": "tokens", "trainer": self.id, "step": state.global_step, "num_tokens": logs["num_tokens"]})

        def on_train_end(self, args, state, control, **kwargs):
            write({"event": "end", "trainer": self.id, "t": time.time(), "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})

    init = trainer_cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(StepClock())

    trainer_cls.__init__ = __init__


if os.environ.get(ENV):
    install()
