"""Benchmark: where a training step of the engine's reference sweep spends its time, op by op.

Runs the reference sweep of ``benchmarks/sweep.py`` (MLP 64-128-128-10 tanh, batch 64,
SGD with momentum 0.9, learning rates 1e-3..1, 4 seeds) through ``lab.sweep.run_sweep``
once to compile and warm up, times it, then runs it again under ``jax.profiler`` and reads
the trace back.  Each compiled operation's self time (its own duration less that of the
operations it contains) is summed by name and divided by the number of device steps, and
the operations are put in classes read from the compiled program's text:

* ``matmul``: dots, and fusions around one (XLA's names ``dot.*``, ``ynn_fusion.*`` with
  a ``dot_general`` in their source);
* ``freeze``: the divergence freeze's ``lax.cond`` and what runs inside its branches
  (on a CPU, the copy of the new state out of the branch that keeps it);
* ``copy``: other copies (loop-carried parameters XLA copies every step);
* ``gather``: the mini-batch gathered from the data set;
* ``elementwise``: every other fusion (activations, softmax, the optimizer update).

The profiler's buffer drops events on long runs, so times are means per execution.  The
rate those times make with every device computing back to back, next to the untraced
sweep's, shows how much the host loop costs (tracing slows the operations a little).

    python benchmarks/sweep_profile.py              # 256 runs, 300 steps, all devices
    python benchmarks/sweep_profile.py --runs 64 --steps 100 --top 20
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CLASSES = ("matmul", "elementwise", "freeze", "copy", "gather")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=256, help="runs in the sweep (a multiple of 4 seeds)")
    p.add_argument("--steps", type=int, default=300, help="steps per run")
    p.add_argument("--host-devices", type=int, default=0, help="XLA CPU devices to split the host into (0 = one per core)")
    p.add_argument("--top", type=int, default=12, help="operations listed one by one")
    return p.parse_args(argv)


def classify(hlo: str) -> dict:
    """Instruction name -> class, from the text of a compiled module."""
    computations, current = {}, None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%(\S+) ", line)
        if header:
            current = computations.setdefault(header.group(1), [])
        elif current is not None and re.match(r"^  (?:ROOT )?%", line):
            current.append(line.replace("  ROOT %", "  %", 1))
    in_branch = set()
    for lines in computations.values():
        for line in lines:
            if " conditional(" in line:
                named = re.findall(r"(?:branch_computations=\{[^}]*\}|true_computation=\S+|false_computation=\S+)", line)
                for name in re.findall(r"%([\w.\-]+)", " ".join(named)):
                    in_branch.update(re.match(r"  %(\S+) ", ln).group(1) for ln in computations.get(name, []))
    kinds = {}
    for lines in computations.values():
        for line in lines:
            name = re.match(r"  %(\S+) ", line).group(1)
            if name in in_branch or " conditional(" in line:
                kinds[name] = "freeze"
            elif " dot(" in line or any(" dot(" in ln for called in re.findall(r"calls=%([\w.\-]+)", line)
                                          for ln in computations.get(called, [])):
                kinds[name] = "matmul"
            elif " copy(" in line:
                kinds[name] = "copy"
            elif "gather" in name:
                kinds[name] = "gather"
            else:
                kinds[name] = "elementwise"
    return kinds


def self_times(trace: dict, names) -> dict:
    """Per operation name ``[executions, summed self time in us]``, counting the events
    named in ``names`` (the compiled program's instructions) or, when none is (an
    accelerator's trace names its kernels), every timed event but Python frames and the
    runtime's own markers.  Loops are left out: their time is their body's."""
    timed = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("dur", 0) > 0]
    keep = [e for e in timed if e["name"] in names]
    if not keep:
        keep = [e for e in timed if not e["name"].startswith("$") and "Execute" not in e["name"]
                and "Pjit" not in e["name"] and "Threadpool" not in e["name"]]
    by_name = collections.defaultdict(lambda: [0, 0.0])
    threads = collections.defaultdict(list)
    for e in keep:
        threads[(e["pid"], e["tid"])].append(e)
    for events in threads.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []   # (end, event) of the enclosing operations
        own = {}
        for e in events:
            while stack and stack[-1][0] <= e["ts"]:
                stack.pop()
            own[id(e)] = e["dur"]
            if stack:
                own[id(stack[-1][1])] -= e["dur"]
            stack.append((e["ts"] + e["dur"], e))
        for e in events:
            if e["name"].startswith("while"):
                continue
            by_name[e["name"]][0] += 1
            by_name[e["name"]][1] += own[id(e)]
    return by_name


def main(argv=None) -> int:
    args = parse(argv)
    from lab.sweep import run_sweep, use_cpu_cores
    use_cpu_cores(args.host_devices or None)

    import jax
    from machine import describe
    from sweep import reference

    from lab.sweep import program as prog

    ref = reference()
    spec = ref.spec(args.runs, args.steps)
    print(describe(), flush=True)
    rates = []
    for _ in range(3):
        result = run_sweep(spec, store=":memory:", progress=False)
        rates.append(args.runs * args.steps / result.timings["run_seconds"])
    with tempfile.TemporaryDirectory() as out:
        jax.profiler.start_trace(out)
        traced = run_sweep(spec, store=":memory:", progress=False)
        jax.profiler.stop_trace()
        files = glob.glob(os.path.join(out, "plugins", "profile", "*", "*.trace.json.gz"))
        if not files:
            raise SystemExit(f"jax.profiler wrote no trace under {out}")
        with gzip.open(files[0]) as fh:
            trace = json.load(fh)
    hlo = "\n".join(entry["calls"][0].as_text() for entry in prog._COMPILED.values())
    kinds = classify(hlo)
    by_name = self_times(trace, kinds)
    per_device = traced.execution["runs_per_device"]["0"]
    steps = max(count for count, _ in by_name.values())   # executions of the loop body's ops (dropped events aside)
    step_ops = {name: total / count for name, (count, total) in by_name.items() if count >= steps // 2}
    step_us = sum(step_ops.values())
    n_devices = len(jax.local_devices())
    on = f"{n_devices} device" + ("s" if n_devices > 1 else "")

    print(f"{args.runs} runs x {args.steps} steps on {on}, {per_device} runs per device; "
          f"untraced best {max(rates):,.0f} run-steps/s, traced {args.runs * args.steps / traced.timings['run_seconds']:,.0f}")
    print(f"one device step: {step_us:.0f} us of operations ({per_device} runs, "
          f"{per_device * ref.flops / step_us / 1e3:.0f} GFLOP/s of matmul work per device); back to back on "
          f"{on} these times make {n_devices * per_device / step_us * 1e6:,.0f} run-steps/s")
    print("\n| class | us per device step | share |\n|---|---:|---:|")
    shares = collections.Counter()
    for name, us in step_ops.items():
        shares[kinds.get(name, "elementwise")] += us
    for cls in CLASSES:
        print(f"| {cls} | {shares[cls]:.0f} | {100 * shares[cls] / step_us:.1f}% |")
    print("\n| operation | class | us per step | share |\n|---|---|---:|---:|")
    for name, us in sorted(step_ops.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"| {name} | {kinds.get(name, '?')} | {us:.1f} | {100 * us / step_us:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
