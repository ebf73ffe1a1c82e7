"""Forgetting a model's modules while other load threads import."""

from __future__ import annotations

import sys
import threading
import types

from servoir.runtimes.python_import import forget_modules


def test_forgetting_modules_while_others_import() -> None:
    stop = threading.Event()

    def importing() -> None:  # another load thread: sys.modules keeps changing
        names = [f"_servoir_test_other_{i}" for i in range(50)]
        while not stop.is_set():
            for name in names:
                sys.modules[name] = types.ModuleType(name)
            for name in names:
                sys.modules.pop(name, None)

    other = threading.Thread(target=importing)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: the race shows within the loop
    other.start()
    try:
        for i in range(3000):
            sys.modules[f"_servoir_test_model_{i}"] = types.ModuleType("m")
            sys.modules[f"_servoir_test_model_{i}.helper"] = types.ModuleType("h")
            forget_modules(f"_servoir_test_model_{i}")
            assert f"_servoir_test_model_{i}.helper" not in sys.modules
    finally:
        stop.set()
        other.join()
        sys.setswitchinterval(interval)
