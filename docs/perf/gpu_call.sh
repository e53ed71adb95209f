#!/usr/bin/env bash
# One call of the lent GPU machine for issue 10's calibration, from the repository root there (the device
# tool's `run`, carrying .whl from docs/perf/fetch_wheels.sh). Everything it makes goes into ONE file,
# $OUT/all.tgz: the device returns at most 8 files a call.
#
#   LIMIT=560 TOPICS="inf20 inf21 inf33 inf12" [CORRECTNESS=1] [PYTESTS=1] [WRITE=1] [BENCH=1] \
#       bash docs/perf/gpu_call.sh
#
# LIMIT      seconds this script may take in all (keep ~30 s under run's timeout_s for the tarball);
# TOPICS     topics for ONE `gpu_check --skip-correctness --topics a,b,...` (speed.json, speed.log): what
#            `make gpu-check` runs, one fork server for all (each gpu_check starts its own, ~5 s on session 14's
#            H200 host); its JSON is rewritten after every process, so a cut call keeps what it measured;
# PER_TOPIC=1  instead one gpu_check per topic (speed-<topic>.json), as sessions 8-14 ran them;
# CORRECTNESS=1  first every topic's GPU correctness tests (`gpu_check --skip-speed`, correctness.json);
# PYTESTS=1  then the lab's own tests that touch the grader and the clock, on this machine's Python;
# STARTUP=1  first time the parts of a speed process's start-up (imports, CUDA, pytest's collection): ~30 s;
# FRESH=1    gpu_check --fresh (fresh interpreters; the default forks them from a warm server, grading.forkserver);
# FRESH_TOPICS  topics measured again after TOPICS, with --fresh (speed-<topic>-fresh.json);
# WRITE=1    gpu_check --write (the card's profile; lab/profiles/*.toml come back in the tarball);
# BENCH=1    last, the benchmarks issue 10 asks of an H200 (decode_bench, flash_bench, paged_bench, the
#            W8A8 sweep and docs/perf/w8a8_gap.py), as time allows.
# DECODE_VARIANTS, DECODE_BUDGET  BENCH's decode_bench variants and --budget-s (default hf-eager,lab-fused and 300;
#            lab-triton tunes a Triton GEMV per matrix shape first, ~1-2 min more).
# GEMV=1     last, docs/perf/gemv_sweep.py quick: decode's weight matrices alone, cuBLAS / Inductor / gemv_kernel.py (~2 min).
# CPROFILE   topics whose reference speed tests run once more under cProfile, last (cprofile-<topic>.log: the
#            functions by cumulative and by own time): what "the rest" of a process's seconds line is made of
#            (inf12 and inf30: 7-11 s a process outside compare's rounds on session 13's H100).
# Each step runs under `timeout` with the time left: its SIGTERM stops gpu_check as Ctrl-C does (the running
# topic's pytest process group is killed, the partial JSON stays; grading.processes.run_cli, since session 9);
# a step with under 30 s left is skipped and listed in steps.txt.
# Pool the JSONs here with: python -m grading gpu_check --skip-correctness --skip-speed --merge A --merge B ...
set -u
began=$(date +%s)
LIMIT=${LIMIT:-560}
O=/tmp/gpu-call
rm -rf "$O" && mkdir -p "$O"

finish() {
    cp lab/profiles/*.toml "$O/" 2>/dev/null
    tar czf "${OUT:-/tmp}/all.tgz" -C "$O" .
}
trap finish EXIT

left() { echo $(( LIMIT - ($(date +%s) - began) )); }

step() {            # step NAME COMMAND...: run it with the time left, log to NAME.log, note rc and seconds
    local name=$1; shift
    local budget; budget=$(left)
    if [ "$budget" -lt 30 ]; then
        echo "$name: skipped, ${budget} s left" | tee -a "$O/steps.txt"
        return
    fi
    local t0; t0=$(date +%s)
    timeout -k 20 "$budget" "$@" > "$O/$name.log" 2>&1
    local rc=$?
    echo "$name: rc $rc in $(( $(date +%s) - t0 )) s (at $(( $(date +%s) - began )) s)" | tee -a "$O/steps.txt"
    tail -n 25 "$O/$name.log"
}

if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl > "$O/pip.log" 2>&1 || { echo "wheel install failed:"; tail "$O/pip.log"; }
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "no .whl/: gguf, bitsandbytes and nbformat are missing here (docs/perf/fetch_wheels.sh, carry .whl)"
    export PYTHONPATH=$PWD
fi
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv; \
  python3 -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__, triton.__version__)"; \
  git log --oneline -1 2>/dev/null; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"

if [ -n "${STARTUP:-}" ]; then       # where a speed process's ~5 s of start-up go (a fork server saves only imports)
    {
        for what in "import torch" "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()" \
                    "import torch, transformers, triton, pytest; torch.zeros(1, device='cuda') @ torch.zeros(1, 1, device='cuda')"; do
            for i in 1 2 3; do
                TIMEFORMAT="%R s  python -c \"$what\""
                time python3 -c "$what"
            done
        done
        for i in 1 2 3; do
            TIMEFORMAT="%R s  pytest --collect-only exercises/inf30 -m 'speed and gpu'"
            time python3 -m pytest -q -p no:cacheprovider -p no:hypothesispytest --impl solutions \
                -m "speed and gpu" --collect-only exercises/inf30 > /dev/null
        done
    } > "$O/startup.txt" 2>&1
    cat "$O/startup.txt"
fi

write=${WRITE:+--write}
if [ -n "${CORRECTNESS:-}" ]; then
    step correctness python3 -m grading gpu_check --skip-speed --json "$O/correctness.json"
fi
fresh=${FRESH:+--fresh}
if [ -n "${PER_TOPIC:-}" ]; then
    for topic in ${TOPICS:-}; do
        step "speed-$topic" python3 -m grading gpu_check --topics "$topic" --skip-correctness $write $fresh \
            --json "$O/speed-$topic.json"
    done
elif [ -n "${TOPICS:-}" ]; then
    step speed python3 -m grading gpu_check --topics "$(echo ${TOPICS} | tr ' ' ',')" --skip-correctness $write $fresh \
        --json "$O/speed.json"
fi
for topic in ${FRESH_TOPICS:-}; do       # the same topics again in fresh interpreters: the seconds, the ratios
    step "speed-$topic-fresh" python3 -m grading gpu_check --topics "$topic" --skip-correctness --fresh \
        --json "$O/speed-$topic-fresh.json"
done
if [ -n "${PYTESTS:-}" ]; then
    step pytests python3 -m pytest -q -p no:cacheprovider tests/test_guard.py tests/test_speed_tiers.py \
        tests/test_lab_testing.py tests/test_readout.py tests/test_lab_commands.py
fi
if [ -n "${BENCH:-}" ]; then
    step w8a8-gap python3 docs/perf/w8a8_gap.py
    step decode-bench python3 -m lab.decode_bench --impl solutions --variants "${DECODE_VARIANTS:-hf-eager,lab-fused}" \
        --budget-s "${DECODE_BUDGET:-300}"
    step flash-bench python3 -m lab.flash_bench --impl solutions
    step paged-bench python3 -m lab.paged_bench --impl solutions --batch 16,32 --context 4096,8192
    step w8a8-sweep python3 docs/perf/w8a8_sweep.py quick
fi
if [ -n "${GEMV:-}" ]; then
    step gemv-sweep python3 docs/perf/gemv_sweep.py quick
fi
for topic in ${CPROFILE:-}; do
    step "cprofile-$topic" bash -c "python3 -m cProfile -o '$O/cprofile-$topic.prof' -m pytest -q -p no:cacheprovider \
        --impl solutions -m 'speed and gpu' exercises/$topic && python3 -c \"import pstats; s = pstats.Stats('$O/cprofile-$topic.prof'); \
        s.sort_stats('cumulative').print_stats(45); s.sort_stats('tottime').print_stats(25)\""
done
echo "done in $(( $(date +%s) - began )) s"
