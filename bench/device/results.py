"""RESULTS.md from a device run's results.json: the machine, then each step's figures under the
command that produced them. A step that failed or did not run says so where its figures would be:
the file never holds a number that was not measured in this run."""

from __future__ import annotations

from pathlib import Path

FRAME_RATE = 25


def write_results(path: Path, results: dict, cpu: bool) -> None:
    env, steps, figures = results["environment"], results["steps"], results["figures"]
    by_name = {s["name"]: s for s in steps}
    lines = [f"# Device run: {env.get('device')}", ""]
    if cpu:
        lines += ["The CPU rehearsal of the GPU run (`bench/device/run.sh --cpu`, tiny and mid presets): it shows the",
                  "script works, not how fast a GPU is.", ""]
    lines += machine(env) + [""]
    lines += tests_section(figures.get("tests"), _step(by_name, "cuda tests"))
    for key, step_name in (("engine-full", "engine full-size"), ("engine-tiny", "engine tiny"),
                           ("engine-mid", "engine mid")):
        if step_name in by_name:
            lines += engine_section(figures.get(key), by_name[step_name], env)
    serving = next((s for s in steps if s["name"].startswith("serving")), None)
    if serving:
        lines += serving_section(figures.get("serving"), serving)
    cold = next((s for s in steps if s["name"].startswith("cold start")), None)
    if cold:
        lines += cold_section(figures.get("cold"), cold)
    verify = next((s for s in steps if s["name"].startswith("verify")), None)
    if verify:
        lines += verify_section(figures.get("verify"), verify)
    lines += ["## Steps", "", "| step | status | seconds |", "| --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']:.1f} |" for s in steps]
    lines += ["", "The whole log of every step is in `logs.txt` beside this file (not committed)."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def machine(env: dict) -> list[str]:
    rows = [("device", env.get("device")), ("GPU memory", _unit(env.get("gpu_memory_gib"), "GiB")),
            ("driver", env.get("driver")), ("torch", env.get("torch")), ("CUDA", env.get("cuda")),
            ("transformers", env.get("transformers")), ("Python", env.get("python")),
            ("copy bandwidth (read + written)", f"{env['copy_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s"),
            ("commit", env.get("commit")), ("run", env.get("started"))]
    return ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows if v is not None]


def _unit(value, unit: str) -> str | None:
    return None if value is None else f"{value} {unit}"


def _step(by_name: dict, name: str) -> dict:
    return by_name.get(name, {"name": name, "status": "not run", "seconds": 0.0})


def _heading(title: str, step: dict) -> list[str]:
    command = step.get("command", "")
    head = [f"## {title}", "", f"`{command}`" if command else "", ""]
    if step["status"] != "ok":
        head += [f"**{step['status']}** after {step['seconds']:.0f} s: the figures below are what it left "
                 "(see logs.txt).", ""]
    return head


def tests_section(cases: list[dict] | None, step: dict) -> list[str]:
    lines = _heading("CUDA tests", step)
    if not cases:
        return lines + ["No test report.", ""]
    counts: dict[str, int] = {}
    for case in cases:
        counts[case["outcome"]] = counts.get(case["outcome"], 0) + 1
    lines += [", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())), "",
              "| test | outcome | seconds |", "| --- | --- | --- |"]
    for case in cases:
        note = f" ({case['message']})" if case["message"] else ""
        lines.append(f"| {case['name']} | {case['outcome']}{note} | {case['seconds']:.1f} |")
    return lines + [""]


def engine_section(summary: dict | None, step: dict, env: dict) -> list[str]:
    lines = _heading(f"Engine, one stream ({step['name'].split(' ', 1)[1]})", step)
    if not summary:
        return lines + ["No figures.", ""]
    weights, kv = summary["weight_bytes_per_step"], summary["kv_bytes_per_step"]
    lines += [f"{summary['model']}, {summary['dtype']}, {summary['parameters'] / 1e6:.0f}M parameters, prompt "
              f"{summary['prompt_tokens']} tokens; peak memory {summary['peak_memory_mb']:.0f} MiB.", "",
              "| engine | prefill ms | decode ms/step | x real time | TTFA ms | TTFA ms, cached voice | GB/s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in summary["results"].items():
        if "error" in row:
            lines.append(f"| {name} | {row['error']} | | | | | |")
            continue
        lines.append(f"| {name} | {row['prefill_ms']:.1f} | {row['decode_ms_per_step']:.2f} | "
                     f"{row['x_real_time']:.1f} | {_ms(row.get('ttfa_ms'))} | {_ms(row.get('ttfa_cached_voice_ms'))} | "
                     f"{row['achieved_GB_per_s']:.0f} |")
    ours = summary["results"].get("higgs-tts", {})
    bandwidth = env["copy_bandwidth_bytes_per_s"]
    if "decode_ms_per_step" in ours:
        floor_ms = (weights + kv) / bandwidth * 1000
        step_ms = ours["decode_ms_per_step"]
        lines += ["", f"Bandwidth floor: {weights / 1e9:.2f} GB of weights + {kv / 1e6:.0f} MB of KV read per step "
                  f"/ {bandwidth / 1e9:.0f} GB/s = {floor_ms:.2f} ms; the step takes {step_ms:.2f} ms, "
                  f"{step_ms / floor_ms:.2f}x the floor."]
        eager = summary["results"].get("higgs-tts (no CUDA graphs)", {})
        if "decode_ms_per_step" in eager:
            lines.append(f"CUDA graphs: {eager['decode_ms_per_step'] / ours['decode_ms_per_step']:.2f}x faster "
                         f"steps than without (graph capture {ours.get('graph_capture_s', 0):.1f} s).")
    return lines + [""]


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def serving_section(rows: list[dict] | None, step: dict) -> list[str]:
    lines = _heading(f"Serving, many streams ({step['name'].split(' ', 1)[1]})", step)
    measured = [r for r in rows or [] if r.get("mode") == "batched"]
    if not measured:
        return lines + ["No figures.", ""]
    lines += ["| streams | voice cache | audio s per s | x real time per stream | TTFA p50 ms | TTFA p95 ms | "
              "ms/step |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in measured:
        lines.append(f"| {r['streams']} | {r['voice_cache']} | {r['audio_seconds_per_second']:.1f} | "
                     f"{r['audio_seconds_per_second'] / r['streams']:.2f} | {r['ttfa_p50_ms']:.0f} | "
                     f"{r['ttfa_p95_ms']:.0f} | {r['ms_per_step']:.2f} |")
    memory = next((r for r in rows or [] if r.get("mode") == "memory"), None)
    if memory:
        lines += ["", f"Peak memory {memory['peak_memory_mb']:.0f} MiB (KV cache of {memory['max_batch']} slots: "
                  f"{memory['kv_cache_mb']:.0f} MiB)."]
    return lines + [""]


def cold_section(cold: dict | None, step: dict) -> list[str]:
    lines = _heading(f"Cold start ({step['name'].split(' ', 2)[2]})", step)
    if not cold:
        return lines + ["No figures.", ""]
    lines += [f"A bundle of {cold['bundle_bytes'] / 1e9:.2f} GB, written just before (in the page cache), loaded by "
              "a fresh process through the service's own path.", "",
              "| imports (torch) | imports (all) | load | warm-up (graphs, one generation) | to ready | "
              "first request's first audio |", "| --- | --- | --- | --- | --- | --- |",
              f"| {cold['torch_import_s']:.2f} s | {cold['imports_s']:.2f} s | {cold['load_s']:.2f} s | "
              f"{cold['warm_up_s']:.2f} s ({cold['graphs_captured']} graphs, {cold['graph_fallbacks']} fallbacks) | "
              f"{cold['to_ready_s']:.2f} s | {_seconds(cold['first_request_first_audio_s'])} |"]
    if cold.get("kv_plan"):
        lines += ["", cold["kv_plan"]]
    return lines + [""]


def verify_section(verify: dict | None, step: dict) -> list[str]:
    lines = _heading(f"The ASR pass ({step['name'].split(' ', 1)[1]}-shaped random Whisper)", step)
    if not verify:
        return lines + ["No figures.", ""]
    lines += ["| text | mode | audio s | ASR s per audio s | wall s per audio s | first audio s | attempts/chunk |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['text']} | {r['mode']} | {r['audio_s']} | {r['asr_s_per_audio_s']} | {r['wall_s_per_audio_s']} "
              f"| {r['first_audio_s']} | {r['attempts_per_chunk']} |" for r in verify["rows"]]
    c = verify.get("concurrent")
    if c:
        lines += ["", f"{c['requests']} requests at once (report): {c['chunks']} chunks in {c['whisper_batches']} "
                      f"Whisper batches, {c['wall_s_per_audio_s']} wall s per audio s."]
    return lines + [""]


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f} s"
